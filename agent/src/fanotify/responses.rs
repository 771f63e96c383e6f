//! The answers to one batch of permission events, written together.
//!
//! The kernel takes one response per `write(2)` (since Linux 6.3 a write is one response and
//! its optional info records), but the fanotify file has no `write_iter`, so `writev(2)` runs
//! one write per segment inside a single syscall: a burst of N events is answered with one
//! syscall instead of N. A segment the kernel refuses stops the `writev`; that answer is
//! logged and the rest are written after it, so one bad answer never leaves others unwritten.
//!
//! Every answer pushed is written exactly once, also when the thread unwinds from a panic
//! (drop), since an unanswered opener waits until the group closes.

use std::{io::IoSlice, os::fd::AsRawFd};

use nix::sys::{
    fanotify::{Fanotify, Response},
    uio::writev,
};

/// The most answers one `writev` carries (the kernel's `UIO_MAXIOV` is 1024).
const MAX_SEGMENTS: usize = 1024;

/// Answers decided and not yet written.
pub(super) struct Answers<'g> {
    group: &'g Fanotify,
    pending: Vec<libc::fanotify_response>,
}

impl<'g> Answers<'g> {
    /// An empty batch for `group`; `capacity` is what the batch will likely hold.
    pub fn new(group: &'g Fanotify, capacity: usize) -> Self {
        Self {
            group,
            pending: Vec::with_capacity(capacity),
        }
    }

    /// Queues the answer for the event whose descriptor is `fd` (it must stay open until the
    /// batch is written).
    pub fn push(&mut self, fd: impl AsRawFd, response: Response) {
        self.pending.push(libc::fanotify_response {
            fd: fd.as_raw_fd(),
            response: response.bits(),
        });
    }

    /// Writes every queued answer.
    pub fn flush(&mut self) {
        let mut done = 0;
        while done < self.pending.len() {
            let end = self.pending.len().min(done + MAX_SEGMENTS);
            let segments: Vec<IoSlice<'_>> = self.pending[done..end].iter().map(as_bytes).collect();
            let written = match writev(self.group, &segments) {
                Ok(n) => n / size_of::<libc::fanotify_response>(),
                Err(e) => {
                    // The first answer failed; the kernel lets it through when the group
                    // closes. The others are still written.
                    let fd = self.pending[done].fd;
                    tracing::warn!(error = %e, fd, "answering a fanotify permission event failed");
                    1
                }
            };
            done += written.max(1);
        }
        self.pending.clear();
    }
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

fn as_bytes(r: &libc::fanotify_response) -> IoSlice<'_> {
    // SAFETY: a plain C struct of two 32-bit fields, no padding; the slice lives as long as
    // the borrow of `r`.
    IoSlice::new(unsafe {
        std::slice::from_raw_parts(
            (r as *const libc::fanotify_response).cast::<u8>(),
            size_of::<libc::fanotify_response>(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{
        fcntl::AT_FDCWD,
        sys::fanotify::{EventFFlags, FanotifyEvent, InitFlags, MarkFlags, MaskFlags},
    };
    use std::{sync::mpsc, time::Duration};

    /// A fanotify group asking permission for every open of one scratch file (an inode mark:
    /// nothing else on the host waits on it), or a loud skip without CAP_SYS_ADMIN.
    fn group_on(file: &std::path::Path) -> Option<Fanotify> {
        let group = match Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_REPORT_TID,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
        ) {
            Ok(g) => g,
            Err(e) => {
                let msg = format!("SKIP: fanotify permission events need CAP_SYS_ADMIN: {e}");
                assert!(std::env::var_os("CI").is_none(), "{msg}");
                eprintln!("{msg}");
                return None;
            }
        };
        group
            .mark(
                MarkFlags::FAN_MARK_ADD,
                MaskFlags::FAN_OPEN_PERM,
                AT_FDCWD,
                Some(file),
            )
            .unwrap();
        Some(group)
    }

    /// `n` threads open `file`; their (tid, open result) come back on the channel.
    fn openers(file: &std::path::Path, n: usize) -> Opens {
        let (tx, rx) = mpsc::channel();
        for _ in 0..n {
            let (file, tx) = (file.to_owned(), tx.clone());
            std::thread::spawn(move || {
                let tid = nix::unistd::gettid().as_raw();
                let opened = std::fs::File::open(&file)
                    .map(drop)
                    .map_err(|e| e.raw_os_error().unwrap_or(0));
                let _ = tx.send((tid, opened));
            });
        }
        rx
    }

    fn pending(group: &Fanotify, n: usize) -> Vec<FanotifyEvent> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut events = Vec::new();
        while events.len() < n {
            let mut fds = [PollFd::new(group.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
            assert!(
                ready > 0,
                "no permission event within 10 s ({} of {n})",
                events.len()
            );
            events.extend(group.read_events().unwrap());
        }
        events
    }

    type Opens = mpsc::Receiver<(i32, Result<(), i32>)>;

    /// `n` threads waiting in `open(2)` of a scratch file, and their events.
    fn opens_waiting(n: usize) -> Option<(tempfile::TempDir, Fanotify, Opens, Vec<FanotifyEvent>)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watched");
        std::fs::write(&file, b"x").unwrap();
        let group = group_on(&file)?;
        let results = openers(&file, n);
        let events = pending(&group, n);
        Some((dir, group, results, events))
    }

    #[test]
    fn one_batch_answers_every_opener_each_with_its_own_answer() {
        let Some((_dir, group, results, events)) = opens_waiting(3) else {
            return;
        };
        let denied = events[1].pid();
        let mut answers = Answers::new(&group, 4);
        // An answer the kernel refuses (no such pending event) first: the rest still go.
        answers.push(i32::MAX - 1, Response::FAN_ALLOW);
        for (i, e) in events.iter().enumerate() {
            let r = if i == 1 {
                Response::FAN_DENY
            } else {
                Response::FAN_ALLOW
            };
            answers.push(e.fd().unwrap(), r);
        }
        answers.flush();
        let seen: Vec<_> = (0..3)
            .map(|_| results.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        for (tid, opened) in seen {
            if tid == denied {
                assert_eq!(opened, Err(libc::EPERM), "thread {tid} was denied");
            } else {
                assert_eq!(opened, Ok(()), "thread {tid} was allowed");
            }
        }
    }

    #[test]
    fn answers_not_flushed_are_written_when_the_batch_is_dropped() {
        let Some((_dir, group, results, events)) = opens_waiting(1) else {
            return;
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut answers = Answers::new(&group, 1);
            answers.push(events[0].fd().unwrap(), Response::FAN_DENY);
            panic!("a decision after this one panicked");
        }));
        assert!(unwound.is_err());
        let (_, opened) = results.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(opened, Err(libc::EPERM), "the queued answer was written");
    }
}
