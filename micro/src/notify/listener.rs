//! The seccomp listener's ioctls: take a notification, answer it, put an fd into the caller,
//! and check that a notification is still pending (its caller alive and still waiting), which
//! is what makes a pid read from it safe to use.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// One intercepted syscall.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub id: u64,
    /// Thread id of the caller, in the supervisor's pid namespace.
    pub tid: u32,
    pub nr: i32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Request {
    /// Argument `i` as the C `int` the kernel reads (low 32 bits).
    pub fn int(&self, i: usize) -> i32 {
        self.args[i] as u32 as i32
    }
}

/// How to answer a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Let the kernel run the call as made. Only for decisions that do not rest on memory or
    /// fds the caller's other threads could change.
    Continue,
    /// Fail with this errno.
    Errno(i32),
    /// Succeed with this return value (the call was done on the caller's behalf).
    Value(i64),
}

/// The listener fd.
pub struct Listener {
    fd: OwnedFd,
}

fn ioctl<T>(fd: RawFd, req: libc::Ioctl, arg: *mut T) -> io::Result<i32> {
    // SAFETY: every caller passes the struct the ioctl number was built for.
    let r = unsafe { libc::ioctl(fd, req, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Listener {
        Listener { fd }
    }

    /// Blocks for the next notification. `Ok(None)` when the caller went away before it could
    /// be taken (nothing to answer).
    pub fn recv(&self) -> io::Result<Option<Request>> {
        // SAFETY: the kernel requires a zeroed buffer.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        match ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) {
            Ok(_) => Ok(Some(Request {
                id: n.id,
                tid: n.pid,
                nr: n.data.nr,
                arch: n.data.arch,
                args: n.data.args,
            })),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Answers a notification. A caller that died meanwhile is not an error.
    pub fn reply(&self, id: u64, r: Reply) {
        let (val, error, flags) = match r {
            Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
            Reply::Errno(e) => (0, -e, 0),
            Reply::Value(v) => (v, 0, 0),
        };
        let mut resp = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        if let Err(e) = ioctl(
            self.fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        ) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!(error = %e, id, "answering a seccomp notification failed");
            }
        }
    }

    /// Whether the notification is still pending: its caller is alive and waiting, so the
    /// thread id it carries still names that caller.
    pub fn valid(&self, id: u64) -> bool {
        let mut id = id;
        ioctl(
            self.fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id,
        )
        .is_ok()
    }

    /// Installs `fd` in the caller (close-on-exec when asked). With `answer`, the call also
    /// returns that fd number, atomically; otherwise the number is returned here and the
    /// notification stays pending.
    pub fn add_fd(
        &self,
        id: u64,
        fd: BorrowedFd<'_>,
        cloexec: bool,
        answer: bool,
    ) -> io::Result<i32> {
        let mut a = libc::seccomp_notif_addfd {
            id,
            flags: if answer {
                libc::SECCOMP_ADDFD_FLAG_SEND as u32
            } else {
                0
            },
            srcfd: fd.as_raw_fd() as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &mut a)
    }
}
