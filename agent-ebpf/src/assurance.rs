//! Image assurance in the kernel: a container the agent refused (its image is not approved,
//! `[assurance] mode = "enforce"`) runs no exec at all — not its entrypoint, not a `docker
//! exec`. The agent writes the refusal when it writes the container's own policy; until then
//! the container's first exec is held (SIGSTOP, `EXEC_HELD`) and the agent kills it, so not one
//! instruction of an unapproved image runs either way.
//!
//! Gating: `refuse` is called only for an exec of a task in a monitored container, and only
//! changes that exec's verdict.

use agent_common::{ExecEvent, ACTION_BLOCKED, CONTROL_ASSURANCE, INTEL_CONTAINERS_MAX};
use aya_ebpf::{macros::map, maps::HashMap};

#[map]
pub static ASSURANCE: HashMap<u64, u32> = HashMap::pinned(INTEL_CONTAINERS_MAX, 0);

/// Marks the exec blocked by assurance when the container is refused. It overrides any other
/// control's verdict: nothing of a refused container may run, whatever its profile says.
#[inline(always)]
pub fn refuse(ev: &mut ExecEvent, container: u64) {
    // SAFETY: presence check only.
    if unsafe { ASSURANCE.get(container) }.is_some() {
        ev.header.control = CONTROL_ASSURANCE;
        ev.header.action = ACTION_BLOCKED;
    }
}
