//! Is the current task in a monitored container, and under which policy?
//!
//! Every kill and deny is gated on this answer (DESIGN.md, Safety): a task is in a container when
//! its cgroup (or an ancestor) has an entry in `CONTAINERS`, or when an ancestor is a container
//! *parent* (e.g. `/docker`): then its child on the path is the container's cgroup and, until the
//! agent has written that container's policy, the default policy (key 0) holds. That is what puts
//! drift prevention in force from the very first exec of a new container.

use agent_common::{ContainerPolicy, MAX_CGROUP_LEVEL};
use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;

use crate::maps::{CONTAINERS, CONTAINER_PARENTS};

pub struct Membership {
    /// The container's cgroup id (key of its state in the maps).
    pub cgroup_id: u64,
    pub policy: ContainerPolicy,
    /// False while the agent has not written this container's own policy yet (the default,
    /// key 0, is in force).
    pub configured: bool,
}

#[inline(always)]
pub fn current() -> Option<Membership> {
    // Level 0 is the root cgroup: never a container.
    let mut level: i32 = 1;
    while level <= MAX_CGROUP_LEVEL as i32 {
        // SAFETY: plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            return None;
        }
        // SAFETY: the value is copied out at once.
        if let Some(policy) = unsafe { CONTAINERS.get(id) } {
            return Some(Membership {
                cgroup_id: id,
                policy: *policy,
                configured: true,
            });
        }
        // SAFETY: as above.
        if unsafe { CONTAINER_PARENTS.get(id) }.is_some() {
            // SAFETY: plain helper call.
            let child = unsafe { bpf_get_current_ancestor_cgroup_id(level + 1) };
            if child == 0 {
                // The task sits in the parent itself (e.g. the engine's own cgroup).
                return None;
            }
            // SAFETY: as above.
            let own = unsafe { CONTAINERS.get(child) }.copied();
            let configured = own.is_some();
            let policy = own
                .or_else(|| unsafe { CONTAINERS.get(0u64) }.copied())
                .unwrap_or_default();
            return Some(Membership {
                cgroup_id: child,
                policy,
                configured,
            });
        }
        level += 1;
    }
    None
}

/// The action for a control in `mode` that matched: audit reports, enforce blocks.
#[inline(always)]
pub fn action_for(mode: u32) -> u32 {
    match mode {
        agent_common::MODE_ENFORCE => agent_common::ACTION_BLOCKED,
        agent_common::MODE_AUDIT => agent_common::ACTION_AUDITED,
        _ => agent_common::ACTION_ALLOWED,
    }
}
