//! The thread that answers fanotify permission events: which container the file belongs to (by
//! the mount it was reached through), whether the opener is inside it, the verdict, the answer,
//! the cache mark, the record.
//!
//! Who opened the file, and how: the event's descriptor is opened by fanotify with the group's
//! own `event_f_flags`, so its fdinfo says nothing about the opener's intent (checked: `flags:
//! 0100000` whatever the opener asked). The opener's flags are the syscall arguments of the very
//! thread that is blocked waiting for our answer (`FAN_REPORT_TID`), from `/proc/<tid>/syscall`
//! (read through a descriptor cached per thread, see `opener.rs`).
//! Fail closed: any syscall not known to be an `open(2)` of the 64-bit ABI — `openat2` (its
//! flags live in memory another thread can change), the 32-bit entry points, x32, io_uring
//! workers — has unknown flags, and unknown flags count as a write.
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
    cell::RefCell,
    os::{
        fd::{AsRawFd, BorrowedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
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
    sys::fanotify::{Fanotify, FanotifyEvent, MarkFlags, MaskFlags, Response},
};
use procfs::process::Syscall;
use seawall_profile::Mode;
use seawall_proto::event::Action;
use seawall_service::health::Liveness;
use tokio::sync::mpsc;

use super::{
    opener::{TaskFile, TaskFiles},
    responses::Answers,
    scripts::{self, FileFacts, Origin},
    ByMount, FileCounters, FileEvent, Watched,
};
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
    pub by_mount: ByMount,
    pub audit_all: bool,
    pub cgroup_root: Option<PathBuf>,
    /// Open `/proc/<tid>/` files of recent openers (one thread uses them: no lock).
    pub task_files: RefCell<TaskFiles>,
    pub tx: mpsc::Sender<FileEvent>,
    pub stop: Arc<AtomicBool>,
    pub liveness: Liveness,
    pub counters: Arc<FileCounters>,
    pub intel: crate::intel::exec::ExecIntel,
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
        // A burst is drained by reads until EAGAIN (the group is non-blocking); a lone event,
        // the common case of one opener at a time, costs one poll and one read.
        let mut drain = false;
        loop {
            if streak.since.is_none() {
                // A thread in an error streak does not claim progress: the watchdog sees it.
                self.liveness.beat();
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if !drain {
                let mut fds = [PollFd::new(self.group_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                    Ok(0) => {
                        // Idle: the threads whose files are cached may be gone.
                        self.task_files.borrow_mut().clear();
                        continue;
                    }
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        if !self.recover(&mut streak, "waiting for fanotify events", e) {
                            return;
                        }
                        continue;
                    }
                }
            }
            let events = match self.group.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    drain = false;
                    continue;
                }
                Err(e) => {
                    drain = false;
                    if !self.recover(&mut streak, "reading fanotify events", e) {
                        return;
                    }
                    continue;
                }
            };
            drain = events.len() > 1;
            if streak.since.take().is_some() {
                tracing::info!(errors = streak.count, "fanotify reads work again");
                streak.count = 0;
            }
            // Declared after `events`: on any exit, even unwinding, the answers are written
            // before the events' descriptors close.
            let mut answers = Answers::new(&self.group, events.len());
            for event in &events {
                if failpoint::armed("fanotify_thread_panic").is_some() {
                    panic!("failpoint fanotify_thread_panic");
                }
                if let Some(record) = self.answer(event, &mut answers) {
                    match self.tx.try_send(record) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Answered already; only the report is lost, and counted.
                            self.counters.unreported.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            answers.flush();
            // Dropping the events closes their fds.
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

    /// Decides one event, queues its answer, caches what can be cached; the record to report.
    /// A permission event is answered exactly once whatever the decision does: a decision that
    /// panics is answered "allow" (fail open, counted).
    fn answer(&self, event: &FanotifyEvent, answers: &mut Answers<'_>) -> Option<FileEvent> {
        let file = event.fd()?;
        let located = self.locate(file);
        if let Some((w, _, path)) = &located {
            if super::intel::answered(self, event, file, w, path) {
                return None;
            }
        }
        let tid = event.pid() as u32;
        let exec = event.mask().contains(MaskFlags::FAN_OPEN_EXEC_PERM);
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| match located {
            None => (None, false),
            Some((w, facts, path)) if exec => self.exec_permission(file, tid, &w, facts, path),
            Some((w, facts, path)) => self.open_permission(tid, &w, facts, path),
        }));
        let (record, cacheable) = decided.unwrap_or_else(|_| {
            self.counters.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                tid,
                "deciding a fanotify event panicked: allowed (fail open)"
            );
            (None, false)
        });
        if cacheable {
            // No rule can ever match this inode (or it is the image's): later opens skip the
            // round trip. Not surviving modification: a cached answer about a file is dropped
            // as soon as the file changes.
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
            answers.push(file, response);
        }
        record
    }

    /// The watched container an event's file belongs to (by the mount it was reached
    /// through), the facts of the file, and its path from the container's root, as bytes: the
    /// mounts are marked through `/proc/<pid>/root`, so the descriptor's path already reads as
    /// the container sees it.
    pub(super) fn locate(
        &self,
        file: BorrowedFd<'_>,
    ) -> Option<(Arc<Watched>, FileFacts, Vec<u8>)> {
        // SAFETY: a plain struct the kernel fills.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, empty path with AT_EMPTY_PATH, out-pointer. nix has no statx.
        let r = unsafe {
            libc::statx(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_INO | libc::STATX_NLINK | libc::STATX_MNT_ID,
                &mut stx,
            )
        };
        if r != 0 {
            return None;
        }
        let w = self.by_mount.lock().ok()?.get(&stx.stx_mnt_id).cloned()?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let mut path = link.as_os_str().as_bytes().to_vec();
        if stx.stx_nlink == 0 {
            if let Some(p) = path.strip_suffix(b" (deleted)") {
                path = p.to_vec();
            }
        }
        let facts = FileFacts {
            nlink: stx.stx_nlink as u64,
            ino: stx.stx_ino,
            on_root: stx.stx_mnt_id == w.root_mount,
            mount: stx.stx_mnt_id,
        };
        Some((w, facts, path))
    }

    fn open_permission(
        &self,
        tid: u32,
        w: &Watched,
        facts: FileFacts,
        path: Vec<u8>,
    ) -> (Option<FileEvent>, bool) {
        if !w.opens {
            return (None, false);
        }
        if !self.audit_all && !could_match(&w.policy, &path) {
            // No rule can match this inode's path, whoever opens it: allow, and cache the
            // answer when the inode has a single link (a hard link elsewhere could carry a
            // ruled path).
            return (None, facts.nlink == 1);
        }
        if !self.audit_all
            && w.read_only_mounts.contains(&facts.mount)
            && !w.policy.deny.matches_bytes(&path)
            && !w.policy.monitor.matches_bytes(&path)
        {
            // Below a read-only mount the kernel refuses a write open (EROFS) before the
            // permission event exists, so this is a read: no per-open round trip any more.
            return (None, facts.nlink == 1);
        }
        // Scope: only processes inside this container are ever denied (the engine itself, or
        // `docker cp`, also open these files).
        if !self.opener_in(tid, w) {
            return (None, false);
        }
        let flags = self.pending_open_flags(tid);
        let (action, rule) = decide(&w.policy, &path, flags);
        if action == Action::Allowed && !self.audit_all {
            return (None, false);
        }
        let record = FileEvent {
            cgroup_id: w.cgroup_id,
            pid: tid,
            path,
            flags,
            action,
            rule,
            exec: None,
        };
        (Some(record), false)
    }

    /// Permission to execute a file of the container: a `#!` script that is not the image's
    /// file is drift (for processes inside the container only); proven image files are cached.
    fn exec_permission(
        &self,
        file: BorrowedFd<'_>,
        tid: u32,
        w: &Watched,
        facts: FileFacts,
        path: Vec<u8>,
    ) -> (Option<FileEvent>, bool) {
        if !w.scripts {
            return (None, false);
        }
        let why = match scripts::origin(facts, &path, w.layers.as_ref()) {
            Origin::Image => return (None, facts.nlink == 1),
            Origin::Drift(why) => why,
        };
        if !scripts::is_script(file) {
            // An ELF file: the kernel's exec hook kills it before its first instruction.
            return (None, false);
        }
        let allowed = w.drift.allow.iter().any(|r| r.matches_bytes(&path));
        if allowed || !self.opener_in(tid, w) {
            return (None, false);
        }
        let action = match w.drift.mode {
            Mode::Enforce => Action::Blocked,
            Mode::Audit => Action::Audited,
            Mode::Off => return (None, false),
        };
        let record = FileEvent {
            cgroup_id: w.cgroup_id,
            pid: tid,
            path,
            flags: None,
            action,
            rule: "drift",
            exec: Some(why),
        };
        (Some(record), false)
    }

    /// Whether thread `tid` is in the container's cgroup (or below it), as it is now.
    pub(super) fn opener_in(&self, tid: u32, w: &Watched) -> bool {
        let mut buf = [0u8; 4096];
        let mut files = self.task_files.borrow_mut();
        if let Some(path) = files
            .read(tid, TaskFile::Cgroup, &mut buf)
            .and_then(crate::runtime::cgroup::unified_path_bytes)
        {
            return self.in_container(path, w);
        }
        drop(files);
        // Gone, or a content too long for the buffer: read again whole.
        crate::runtime::cgroup::pid_cgroup(tid).is_some_and(|p| self.in_container(p.as_bytes(), w))
    }

    /// Whether the cgroup at `path` (from the hierarchy root) is the container's or below it.
    fn in_container(&self, path: &[u8], w: &Watched) -> bool {
        match &w.cgroup_path {
            Some(dir) => crate::runtime::cgroup::is_at_or_below(path, dir),
            None => self.walk_to(path, w.cgroup_id),
        }
    }

    /// Whether a cgroup (its path from the hierarchy root) or one of its ancestors has the id
    /// `cgroup_id`: one `statx` per level, for containers whose path was not found.
    fn walk_to(&self, path: &[u8], cgroup_id: u64) -> bool {
        let Some(root) = &self.cgroup_root else {
            return false;
        };
        let rel = std::ffi::OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path));
        let dir = root.join(rel);
        let mut d = dir.as_path();
        loop {
            match std::fs::metadata(d) {
                Ok(m) if m.ino() == cgroup_id => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            match d.parent() {
                Some(p) if p.starts_with(root) => d = p,
                _ => return false,
            }
        }
    }

    /// The open flags of the syscall thread `tid` is blocked in, when they are known.
    fn pending_open_flags(&self, tid: u32) -> Option<i32> {
        use procfs::FromRead;
        let mut buf = [0u8; 512];
        let mut files = self.task_files.borrow_mut();
        let text = files.read(tid, TaskFile::Syscall, &mut buf)?;
        open_flags(&Syscall::from_read(text).ok()?)
    }
}

/// The flags argument of an open(2), openat(2) or creat(2) a task is blocked in. Only the
/// x86-64 open family is trusted: a 32-bit `int 0x80` shows its own numbers (5 is `open` there,
/// `fstat` here), which never collide with an x86-64 open (i386 2/85/257 are fork/readlink/
/// remap_file_pages, which open nothing).
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
    fn only_the_64_bit_open_family_has_known_flags() {
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
        // openat2: flags are in user memory another thread may change.
        assert_eq!(
            parse_syscall_flags("437 0xffffff9c 0x4000 0x7ffd 0x18 0 0 0 0"),
            None
        );
        // i386 open(2) through int 0x80 is number 5.
        assert_eq!(
            parse_syscall_flags("5 0x4c50a0 0x401 0x1a4 0 0 0 0x7ffd 0x401000"),
            None
        );
        // x32 openat.
        assert_eq!(parse_syscall_flags("1073742081 0 0 0x241 0 0 0 0 0"), None);
        // io_uring_enter: an io_uring open.
        assert_eq!(parse_syscall_flags("426 0x3 0x1 0x0 0x1 0 0 0 0"), None);
    }
}
