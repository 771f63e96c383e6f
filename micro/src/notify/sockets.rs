//! The sockets the supervisor made for the tree.
//!
//! A default container's seccomp profile refuses `pidfd_getfd`, so the supervisor cannot take a
//! socket out of the tree to connect or send on it. It makes every socket itself instead and
//! hands the tree its own copy (`SECCOMP_IOCTL_NOTIF_ADDFD`): the supervisor keeps one too.
//! That copy keeps the socket open, so it is let go as soon as it cannot be needed: a stream
//! socket once connected or listening (a later connect on it fails anyway), any socket once no
//! process of the tree holds it (a scan of `/proc/*/fd`).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// `SOCK_PACKET`: the obsolete packet socket type of AF_INET, still a raw socket to refuse.
pub const SOCK_PACKET: i32 = 10;

/// A socket's inode number, as `/proc/PID/fd/N` shows it (`socket:[INODE]`).
pub type SocketIno = u64;

/// What the supervisor knows about one socket it made.
#[derive(Debug)]
pub struct Made {
    pub family: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, … (flags removed).
    pub ty: i32,
    pub protocol: i32,
    /// The supervisor's copy, while it may still be needed.
    pub fd: Option<Arc<OwnedFd>>,
}

impl Made {
    /// Whether a send on it can reach an arbitrary network address.
    pub fn sends_anywhere(&self) -> bool {
        matches!(self.family, libc::AF_INET | libc::AF_INET6) && self.ty != libc::SOCK_STREAM
    }
}

/// Every socket made for the tree that may still be alive.
#[derive(Default)]
pub struct SocketTable {
    made: Mutex<HashMap<SocketIno, Made>>,
}

/// `socket:[123]` → 123.
pub fn parse_link(link: &str) -> Option<SocketIno> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn sock_opt(fd: &OwnedFd, level: i32, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: an int option into an int.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// A stream socket that is connected or listening: nothing left to check on it.
fn settled(fd: &OwnedFd) -> bool {
    if sock_opt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1) {
        return true;
    }
    // SAFETY: sockaddr_storage is large enough for any peer.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
    }
}

impl SocketTable {
    /// Records a socket just made; returns its inode.
    pub fn insert(&self, fd: OwnedFd, family: i32, ty: i32, protocol: i32) -> Option<SocketIno> {
        // SAFETY: fstat into a local.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return None;
        }
        let ino = st.st_ino;
        self.lock().insert(
            ino,
            Made {
                family,
                ty,
                protocol,
                fd: Some(Arc::new(fd)),
            },
        );
        Some(ino)
    }

    /// The supervisor's copy and the socket's kind.
    pub fn get(&self, ino: SocketIno) -> Option<(Option<Arc<OwnedFd>>, i32, i32, i32)> {
        self.lock()
            .get(&ino)
            .map(|m| (m.fd.clone(), m.family, m.ty, m.protocol))
    }

    /// Whether a socket that is not (or no longer) held could send to any address.
    pub fn sends_anywhere(&self, ino: SocketIno) -> Option<bool> {
        self.lock().get(&ino).map(Made::sends_anywhere)
    }

    /// Lets go of a stream socket's copy once it is connected or listening.
    pub fn settle(&self, ino: SocketIno) {
        if let Some(m) = self.lock().get_mut(&ino) {
            if m.ty == libc::SOCK_STREAM && m.fd.as_deref().is_some_and(settled) {
                m.fd = None;
            }
        }
    }

    /// Drops settled stream sockets, and every socket no process holds any more.
    pub fn collect(&self) {
        if self.lock().is_empty() {
            return;
        }
        let live = live_sockets();
        let mut t = self.lock();
        t.retain(|ino, m| {
            if m.ty == libc::SOCK_STREAM && m.fd.as_deref().is_some_and(settled) {
                m.fd = None;
            }
            live.contains(ino)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketIno, Made>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Socket inodes some other process holds (ours are skipped: our copies do not count).
fn live_sockets() -> HashSet<SocketIno> {
    let me = std::process::id().to_string();
    let mut out = HashSet::new();
    for proc_ in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = proc_.file_name();
        let Some(pid) = name.to_str() else { continue };
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Threads may have fd tables of their own.
        for task in std::fs::read_dir(proc_.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(fds) = std::fs::read_dir(task.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Some(ino) = std::fs::read_link(fd.path())
                    .ok()
                    .and_then(|l| l.to_str().and_then(parse_link))
                {
                    out.insert(ino);
                }
            }
        }
    }
    out
}

/// Whether an inet datagram or raw socket with this inode exists in this network namespace
/// (for sockets the supervisor did not make).
pub fn foreign_sends_anywhere(ino: SocketIno) -> bool {
    let needle = format!(" {ino} ");
    [
        "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "icmp", "icmp6",
    ]
    .iter()
    .any(|t| {
        std::fs::read_to_string(format!("/proc/net/{t}"))
            .is_ok_and(|s| s.lines().any(|l| l.contains(&needle)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn links_parse() {
        assert_eq!(parse_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_link("pipe:[1]"), None);
    }

    #[test]
    fn a_socket_nobody_else_holds_is_collected_and_a_listener_settles() {
        let t = SocketTable::default();
        // SAFETY: new sockets, owned by the table.
        let udp = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)) };
        let tcp =
            unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)) };
        let udp_ino = t.insert(udp, libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let tcp_ino = t.insert(tcp, libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        assert_eq!(t.sends_anywhere(udp_ino), Some(true));
        assert_eq!(t.sends_anywhere(tcp_ino), Some(false));
        let (fd, ..) = t.get(tcp_ino).unwrap();
        let fd = fd.unwrap();
        // SAFETY: listen on our own socket.
        assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 1) }, 0);
        drop(fd);
        t.settle(tcp_ino);
        assert!(t.get(tcp_ino).unwrap().0.is_none());
        assert!(t.get(udp_ino).unwrap().0.is_some());
        // Only this process holds them: gone after a collection.
        t.collect();
        assert!(t.get(udp_ino).is_none());
    }
}
