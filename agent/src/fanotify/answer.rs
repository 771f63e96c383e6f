//! The thread that answers fanotify permission events: which container the file belongs to,
//! whether the opener is inside it, the verdict, the answer, the cache mark, the record.
//!
//! Every process in a watched container that opens a watched file waits in `open(2)` until
//! this thread answers, and the kernel has no timeout, so the thread never stops answering on
//! its own: a full channel to the event loop costs the *report* (counted, the answer was
//! given under the profile's decision), a read or poll error is counted and retried with a
//! short backoff, and a decision that panics is answered "allow" (fail open, counted). Only
//! errors that last [`GIVE_UP_AFTER`] end the thread, and its end is fatal for the agent: the
//! fanotify group closes with the process, and the kernel then lets every pending and later
//! open through until the next agent marks the containers again.

use std::{
    os::{fd::BorrowedFd, unix::fs::MetadataExt},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::{
        fanotify::{Fanotify, FanotifyEvent, FanotifyResponse, MarkFlags, MaskFlags, Response},
        stat::{fstat, FileStat},
        uio::pread,
    },
};
use procfs::process::Syscall;
use seawall_profile::Mode;
use seawall_proto::event::Action;
use seawall_service::health::Liveness;
use tokio::sync::mpsc;

use super::{ByDev, FileCounters, FileEvent, Watched};
use crate::{
    failpoint,
    policy::verdict::{could_match, decide},
};

/// How long one wait for events lasts: the thread beats and checks for shutdown this often.
const POLL_MS: u16 = 1000;
/// Errors without one good read in between for this long end the thread (and the agent).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// Longest pause between retries after an error.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Everything the answering thread holds.
pub(super) struct Answerer {
    pub group: Arc<Fanotify>,
    pub by_dev: ByDev,
    pub audit_all: bool,
    pub cgroup_root: Option<PathBuf>,
    pub tx: mpsc::Sender<FileEvent>,
    pub stop: Arc<AtomicBool>,
    pub liveness: Liveness,
    pub counters: Arc<FileCounters>,
}

/// A run of errors with no good read in between.
#[derive(Default)]
struct ErrorStreak {
    since: Option<Instant>,
    count: u32,
}

impl Answerer {
    /// Waits for events (a second at a time, so an idle sensor still beats), answers each.
    /// Returns only on shutdown, when the daemon is gone, or after errors that lasted
    /// [`GIVE_UP_AFTER`].
    pub fn run(self) {
        let mut streak = ErrorStreak::default();
        loop {
            if streak.since.is_none() {
                // A thread in an error streak does not claim progress: the watchdog sees it.
                self.liveness.beat();
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let mut fds = [PollFd::new(self.group_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    if !self.recover(&mut streak, "waiting for fanotify events", e) {
                        return;
                    }
                    continue;
                }
            }
            let events = match self.group.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => {
                    if !self.recover(&mut streak, "reading fanotify events", e) {
                        return;
                    }
                    continue;
                }
            };
            if streak.since.take().is_some() {
                tracing::info!(errors = streak.count, "fanotify reads work again");
                streak.count = 0;
            }
            for event in events {
                if failpoint::armed("fanotify_thread_panic").is_some() {
                    panic!("failpoint fanotify_thread_panic");
                }
                if let Some(record) = self.answer(&event) {
                    match self.tx.try_send(record) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Answered already; only the report is lost, and counted.
                            self.counters.unreported.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                // Dropping the event closes its fd.
            }
        }
    }

    /// Counts an error and waits a little before the next try; false once errors lasted
    /// [`GIVE_UP_AFTER`] with no good read (the thread ends, and with it the agent).
    fn recover(&self, streak: &mut ErrorStreak, what: &str, e: Errno) -> bool {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        let since = *streak.since.get_or_insert_with(Instant::now);
        streak.count += 1;
        if since.elapsed() > GIVE_UP_AFTER {
            tracing::error!(error = %e, errors = streak.count, "{what} keeps failing: the fanotify thread gives up (the agent stops; the kernel lets watched opens through)");
            return false;
        }
        if streak.count.is_power_of_two() {
            tracing::error!(error = %e, errors = streak.count, "{what} failed: retrying (the kernel denied the events it could not hand over)");
        }
        let pause = Duration::from_millis(10)
            .saturating_mul(streak.count)
            .min(BACKOFF_MAX);
        std::thread::sleep(pause);
        true
    }

    fn group_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.group.as_fd()
    }

    /// Decides one event, answers it, caches what can be cached; the record to report. A
    /// permission event is answered exactly once whatever the decision does: a decision that
    /// panics is answered "allow" (fail open, counted).
    fn answer(&self, event: &FanotifyEvent) -> Option<FileEvent> {
        let file = event.fd()?;
        let pid = event.pid() as u32;
        let exec = event.mask().contains(MaskFlags::FAN_OPEN_EXEC_PERM);
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if exec {
                self.exec_permission(file, pid)
            } else {
                self.open_permission(file, pid)
            }
        }));
        let (record, cacheable) = decided.unwrap_or_else(|_| {
            self.counters.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                pid,
                "deciding a fanotify event panicked: allowed (fail open)"
            );
            (None, false)
        });
        if cacheable {
            // No rule can ever match this inode's path: later opens skip the round trip. Not
            // surviving modification: a cached answer about a file is dropped as soon as the
            // file changes (a modified image script is upper).
            let bit = if exec {
                MaskFlags::FAN_OPEN_EXEC_PERM
            } else {
                MaskFlags::FAN_OPEN_PERM
            };
            if let Err(e) = self.group.mark::<_, Path>(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK,
                bit,
                file,
                None,
            ) {
                tracing::debug!(error = %e, "caching a fanotify answer failed");
            }
        }
        if event
            .mask()
            .intersects(MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM)
        {
            let response = if record.as_ref().is_some_and(|r| r.action == Action::Blocked) {
                Response::FAN_DENY
            } else {
                Response::FAN_ALLOW
            };
            // A failed answer leaves the kernel to allow the open when the group closes.
            if let Err(e) = self
                .group
                .write_response(FanotifyResponse::new(file, response))
            {
                tracing::warn!(error = %e, pid, "answering a fanotify permission event failed");
            }
        }
        record
    }

    /// The watched container an event's file belongs to (by superblock device), the file's
    /// stat, and its path as seen inside the container: opened through the container's own
    /// root mount the fd's path already reads that way; through the host's view of the merged
    /// directory it carries that prefix, which is stripped.
    fn locate(&self, file: BorrowedFd<'_>) -> Option<(Watched, FileStat, String)> {
        use std::os::fd::AsRawFd;
        let st = fstat(file).ok()?;
        let w = self.by_dev.lock().ok()?.get(&st.st_dev).cloned()?;
        let host_path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let host_path = host_path.to_string_lossy();
        let path = match host_path.strip_prefix(w.merged.as_str()) {
            Some("") => "/".to_string(),
            Some(p) => p.to_string(),
            None => host_path.into_owned(),
        };
        Some((w, st, path))
    }

    fn open_permission(&self, file: BorrowedFd<'_>, pid: u32) -> (Option<FileEvent>, bool) {
        let Some((w, st, path)) = self.locate(file) else {
            return (None, false);
        };
        if !self.audit_all && !could_match(&w.policy, &path) {
            // No rule can match this inode's path, whoever opens it: allow, and cache the
            // answer when the inode has a single link (a hard link elsewhere could carry a
            // ruled path).
            return (None, st.st_nlink == 1);
        }
        // Scope: only processes inside this container are ever denied (the engine itself, or
        // `docker cp`, also open these files).
        if !self.opener_in(pid, w.cgroup_id) {
            return (None, false);
        }
        let flags = pending_open_flags(pid);
        let (action, rule) = decide(&w.policy, &path, flags);
        if action == Action::Allowed && !self.audit_all {
            return (None, false);
        }
        let record = FileEvent {
            cgroup_id: w.cgroup_id,
            pid,
            path,
            flags,
            action,
            rule,
            exec: false,
        };
        (Some(record), false)
    }

    /// Permission to execute a file of the container. Files not in the overlay upper layer
    /// are image files: allowed and cached. Upper-layer ELF binaries are left to the kernel's
    /// exec hook (which kills them before their first instruction); upper-layer scripts (`#!`)
    /// are drift here, decided under the container's drift policy, for processes inside the
    /// container only.
    fn exec_permission(&self, file: BorrowedFd<'_>, pid: u32) -> (Option<FileEvent>, bool) {
        let Some((w, _, path)) = self.locate(file) else {
            return (None, false);
        };
        let Some(upper) = &w.upper else {
            return (None, false);
        };
        let in_upper = std::fs::symlink_metadata(format!("{upper}{path}"))
            .map(|m| m.file_type().is_file())
            .unwrap_or(false);
        if !in_upper {
            return (None, true);
        }
        let mut magic = [0u8; 2];
        if pread(file, &mut magic, 0) != Ok(2) || magic != *b"#!" {
            return (None, false);
        }
        if w.drift.allow.iter().any(|r| r.matches(&path)) || !self.opener_in(pid, w.cgroup_id) {
            return (None, false);
        }
        let action = match w.drift.mode {
            Mode::Enforce => Action::Blocked,
            Mode::Audit => Action::Audited,
            Mode::Off => return (None, false),
        };
        let record = FileEvent {
            cgroup_id: w.cgroup_id,
            pid,
            path,
            flags: None,
            action,
            rule: "drift",
            exec: true,
        };
        (Some(record), false)
    }

    /// Whether `pid` is in the container cgroup `cgroup_id` (or below it).
    fn opener_in(&self, pid: u32, cgroup_id: u64) -> bool {
        crate::runtime::cgroup::pid_cgroup(pid)
            .and_then(|p| {
                self.cgroup_root
                    .as_ref()
                    .map(|r| r.join(p.trim_start_matches('/')))
            })
            .and_then(|dir| {
                let mut d = dir.as_path();
                loop {
                    if std::fs::metadata(d).ok()?.ino() == cgroup_id {
                        return Some(true);
                    }
                    d = d.parent()?;
                }
            })
            .unwrap_or(false)
    }
}

/// open(2) flags of the syscall a task is blocked in, from `/proc/<pid>/syscall`.
fn pending_open_flags(pid: u32) -> Option<i32> {
    let syscall = procfs::process::Process::new(pid as i32)
        .ok()?
        .syscall()
        .ok()?;
    open_flags(&syscall)
}

/// The flags argument of an open(2), openat(2) or creat(2) a task is blocked in.
fn open_flags(syscall: &Syscall) -> Option<i32> {
    let Syscall::Blocked {
        syscall_number,
        argument_registers: args,
        ..
    } = syscall
    else {
        return None;
    };
    let flags = match syscall_number {
        2 => args[1],   // open(path, flags, mode)
        257 => args[2], // openat(dirfd, path, flags, mode)
        85 => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64, // creat
        _ => return None,
    };
    Some(flags as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    fn parse_syscall_flags(line: &str) -> Option<i32> {
        open_flags(&Syscall::from_read(line.as_bytes()).ok()?)
    }

    #[test]
    fn reads_open_flags_from_proc_syscall_lines() {
        // openat(AT_FDCWD, p, O_WRONLY|O_CREAT|O_TRUNC, 0666)
        let line = "257 0xffffffffffffff9c 0x7ffd1234 0x241 0x1b6 0x0 0x0 0x7ffd0000 0x7f000000\n";
        assert_eq!(parse_syscall_flags(line), Some(0x241));
        assert_eq!(parse_syscall_flags("2 0x7ffd 0x0 0x0 0 0 0 0 0"), Some(0));
        assert_eq!(parse_syscall_flags("running\n"), None);
        assert_eq!(
            parse_syscall_flags("0 0x3 0x7ffd 0x10 0 0 0 0 0"),
            None,
            "read(2) is not an open"
        );
    }
}
