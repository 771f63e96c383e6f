//! The BPF LSM backend: the same exec, file and network decisions as the fallbacks, taken in LSM
//! hooks so an enforced control fails the syscall with `EPERM` instead of killing the process
//! (exec) or needing userspace (file), plus the doors only an LSM hook can watch: executable
//! mappings, `ptrace`, `/proc/<pid>/mem`, renames/links/unlinks of ruled files, `AF_PACKET`
//! sockets, `listen(2)` and ICMP sends. Loaded only where the kernel runs BPF LSM
//! (`lsm=...,bpf`); the agent reports which backend each control is on.
//!
//! Fail-open/fail-closed, decided here once for every hook: a task outside a monitored
//! container is never denied (DESIGN.md, Safety). Inside one, a decision the kernel memory it
//! needs could not be read for is taken as the worst case (drift, a rule match, a write):
//! uncertainty never lets an operation through, and the event says why (`EXEC_UNREADABLE`,
//! `COUNTER_UNREADABLE`). An earlier LSM's denial (`retval != 0`) is always passed on.
//!
//! Modules: `code` (exec, mmap/mprotect, ptrace), `file` (file_open and the path hooks), `net`
//! (sockets).

mod code;
mod file;
mod net;

use agent_common::{ACTION_BLOCKED, COUNTER_DENIES};

use crate::maps::count;

/// `-EPERM`: what an LSM hook returns to deny.
const EPERM: i32 = -1;

/// What the hook returns for `action`, counting denials.
#[inline(always)]
fn verdict(action: u32) -> i32 {
    if action == ACTION_BLOCKED {
        count(COUNTER_DENIES);
        EPERM
    } else {
        0
    }
}
