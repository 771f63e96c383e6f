//! Listed hashes at the exec permission event (`FAN_OPEN_EXEC_PERM`): the process waits in
//! `execve(2)` while the agent hashes the file it is about to run (once per file version, see
//! `intel::exec_hash`), and a listed file is refused with `FAN_DENY` — `execve` fails with
//! EPERM before the new image exists, on every backend.
//!
//! Scope: every mount of the container is marked, as for the file controls (volumes and tmpfs
//! mounts included; see `FileGuard::watch_mounts`), and only a process inside the container is
//! ever refused. The container's first exec runs before its mounts can be marked: the kernel
//! holds it (`RULES_HOLD_FIRST_EXEC`) and the daemon judges it itself, from the held process's
//! `/proc/<pid>/exe`.
//!
//! Audit mode reports and lets the exec go on through the other checks; an allowed answer may
//! then be cached as an ignore mark, which the kernel drops when the file changes and the
//! daemon flushes when the feeds change, so an audited file is reported again after either.

use nix::sys::fanotify::{FanotifyEvent, FanotifyResponse, MaskFlags, Response};
use seawall_proto::event::Action;

use std::os::fd::BorrowedFd;

use super::{answer::Answerer, Watched};
use crate::intel::exec::{ExecIntel, ListedExec};

/// The permission events intel needs on a container's filesystem.
pub(super) fn exec_mask(intel: &ExecIntel, cgroup_id: u64) -> MaskFlags {
    if intel.mode(cgroup_id) == seawall_profile::Mode::Off {
        MaskFlags::empty()
    } else {
        MaskFlags::FAN_OPEN_EXEC_PERM
    }
}

/// Judges an exec permission event by the content of the file (`file`, at `path` in the
/// container `w`, as `Answerer::locate` found them). True when it answered the event (refused
/// it); false when the other checks decide (not an exec, not listed, audit).
pub(super) fn answered(
    a: &Answerer,
    event: &FanotifyEvent,
    file: BorrowedFd<'_>,
    w: &Watched,
    path: &[u8],
) -> bool {
    if !event.mask().contains(MaskFlags::FAN_OPEN_EXEC_PERM) {
        return false;
    }
    let pid = event.pid() as u32;
    // The engine, or the host, reading the container's files is never refused.
    if a.intel.mode(w.cgroup_id) == seawall_profile::Mode::Off || !a.opener_in(pid, w) {
        return false;
    }
    let Some((action, intel)) = a.intel.judge(w.cgroup_id, file) else {
        return false;
    };
    let refused = action == Action::Blocked;
    if refused {
        // A failed answer leaves the kernel to allow it when the group closes: logged, and
        // the record says what was decided.
        if let Err(e) = a
            .group
            .write_response(FanotifyResponse::new(file, Response::FAN_DENY))
        {
            tracing::warn!(error = %e, pid, "refusing the exec of a listed file failed");
        }
    }
    a.intel.report(ListedExec {
        cgroup_id: w.cgroup_id,
        pid,
        path: String::from_utf8_lossy(path).into_owned(),
        action,
        intel,
    });
    refused
}
