//! socket, connect, bind, sendto, sendmsg, sendmmsg.
//!
//! The address a call names lives in the caller's memory, where another thread (or another
//! process sharing the page) can rewrite it between a check and the kernel's own read. So under
//! `enforce` nothing here answers "continue" on an address: the supervisor copies it, checks the
//! copy, and makes the call itself on its own copy of the socket (see `sockets`), from a thread
//! inside the tree's Landlock domain, then returns the result. The only calls let through are
//! those where no address can matter: a single-threaded caller (nobody can swap its fds) on a
//! socket that cannot reach an arbitrary address anyway (unix, netlink, connected TCP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use seawall_profile::{Mode, Protocol};
use seawall_proto::event::{Action, Kind, Network};

use super::listener::{Reply, Request};
use super::resolve::same_root;
use super::sockets::{foreign_sends_anywhere, parse_link, SocketIno, SOCK_PACKET};
use super::target::{Target, TargetError};
use super::Context;
use crate::events::Draft;

/// Largest payload copied for a send done on the caller's behalf (a datagram is at most 64 KiB).
const MAX_SEND: usize = 1 << 20;
const MAX_IOV: usize = 1024;
const MAX_CONTROL: usize = 64 << 10;
const SOCKADDR_MAX: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// A socket address as the caller passed it (a copy).
#[derive(Debug, Clone)]
enum Addr {
    Inet(IpAddr, u16),
    /// A unix socket path; relative to the caller's cwd when it does not start with `/`.
    UnixPath(Vec<u8>),
    UnixAbstract,
    /// AF_UNSPEC and families with no network destination (netlink…).
    Other,
}

fn parse_addr(b: &[u8]) -> Addr {
    if b.len() < 2 {
        return Addr::Other;
    }
    let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    match family {
        libc::AF_INET if b.len() >= 8 => Addr::Inet(
            IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])),
            u16::from_be_bytes([b[2], b[3]]),
        ),
        libc::AF_INET6 if b.len() >= 24 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            Addr::Inet(
                IpAddr::V6(Ipv6Addr::from(o)),
                u16::from_be_bytes([b[2], b[3]]),
            )
        }
        libc::AF_UNIX if b.len() > 2 && b[2] == 0 => Addr::UnixAbstract,
        libc::AF_UNIX if b.len() > 2 => {
            let p = &b[2..];
            Addr::UnixPath(p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())].to_vec())
        }
        _ => Addr::Other,
    }
}

fn protocol(ty: i32, proto: i32) -> (Protocol, &'static str) {
    match (ty, proto) {
        (libc::SOCK_STREAM, _) => (Protocol::Tcp, "tcp"),
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => (Protocol::Any, "icmp"),
        (libc::SOCK_DGRAM, _) => (Protocol::Udp, "udp"),
        (libc::SOCK_RAW, _) => (Protocol::Any, "raw"),
        _ => (Protocol::Any, "other"),
    }
}

/// Why an egress breaks the profile: `egress_deny` matched, or `egress_allow` did not.
fn egress_violation(ctx: &Context, ip: IpAddr, port: u16, proto: Protocol) -> Option<&'static str> {
    let n = &ctx.profile.network;
    if n.egress_deny.iter().any(|r| r.matches(ip, port, proto)) {
        return Some("egress_deny");
    }
    match &n.egress_allow {
        Some(a) if !a.iter().any(|r| r.matches(ip, port, proto)) => Some("not in egress_allow"),
        _ => None,
    }
}

fn listen_violation(ctx: &Context, port: u16) -> bool {
    // Port 0 asks for an ephemeral port: not a listening decision (as for the agent).
    port != 0
        && ctx
            .profile
            .network
            .listen_allow
            .as_ref()
            .is_some_and(|l| !l.iter().any(|r| r.contains(port)))
}

fn emit(ctx: &Context, t: &Target, action: Action, net: Network, why: &str) {
    let message = if net.op == "raw_socket" {
        format!("network: {} socket {action} ({why})", net.protocol)
    } else {
        format!(
            "network: {} {} {} port {} {action} ({why})",
            net.op, net.protocol, net.address, net.port
        )
    };
    ctx.events.emit(Draft {
        kind: Kind::Network,
        action,
        control: "network",
        message,
        process: Some(t.process()),
        file: None,
        network: Some(net),
    });
}

fn seen(op: &str, protocol: &str, address: String, port: u16) -> Network {
    Network {
        op: op.into(),
        protocol: protocol.into(),
        address,
        port,
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn socket_of(t: &Target, fd: i32) -> Option<SocketIno> {
    let link = std::fs::read_link(t.proc_path(&format!("fd/{fd}"))).ok()?;
    parse_link(link.to_str()?)
}

/// socket(2): refused when raw and blocked; otherwise made here and handed over.
pub fn on_socket(ctx: &Arc<Context>, req: &Request) -> Option<Reply> {
    let (family, ty_flags, proto) = (req.int(0), req.int(1), req.int(2));
    let ty = ty_flags & 0xf;
    let raw = family == libc::AF_PACKET || ty == libc::SOCK_RAW || ty == SOCK_PACKET;
    if raw && ctx.plan.raw_sockets != Mode::Off {
        let blocked = ctx.plan.raw_sockets == Mode::Enforce;
        let action = if blocked {
            Action::Blocked
        } else {
            Action::Audited
        };
        if let Ok(t) = Target::open(&ctx.listener, req, false) {
            let fam = if family == libc::AF_PACKET {
                "packet"
            } else {
                "inet"
            };
            emit(
                ctx,
                &t,
                action,
                seen("raw_socket", fam, String::new(), 0),
                "block_raw_sockets",
            );
        }
        if blocked {
            return Some(Reply::Errno(libc::EPERM));
        }
        if !ctx.plan.net_on_behalf {
            return Some(Reply::Continue);
        }
    }
    // SAFETY: plain socket(2); our copy is always close-on-exec.
    let fd = unsafe { libc::socket(family, ty_flags | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Some(Reply::Errno(last_errno()));
    }
    // SAFETY: the fd just made.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cloexec = ty_flags & libc::SOCK_CLOEXEC != 0;
    let answer = ctx.listener.add_fd(req.id, fd.as_fd(), cloexec, true);
    match answer {
        Ok(_) => {
            ctx.sockets.insert(fd, family, ty, proto);
            None
        }
        Err(e) => Some(Reply::Errno(e.raw_os_error().unwrap_or(libc::EMFILE))),
    }
}

/// A call that cannot be done on the caller's behalf: let it through only when nothing can
/// change what it reaches, else refuse it.
fn unchecked(ctx: &Context, t: &Target, ino: Option<SocketIno>, op: &str) -> Reply {
    let anywhere = match ino {
        Some(i) => ctx
            .sockets
            .sends_anywhere(i)
            .unwrap_or_else(|| foreign_sends_anywhere(i)),
        None => false,
    };
    if t.threads() == 1 && !anywhere {
        return Reply::Continue;
    }
    emit(ctx, t, Action::Blocked, seen(op, "unchecked", String::new(), 0), "a socket seawall-micro did not make, or fds passed from a multi-threaded process: its destination cannot be checked race-free");
    Reply::Errno(libc::EPERM)
}

/// Runs `call` on a domain worker with the socket, after checking the caller still waits.
fn on_behalf(ctx: &Arc<Context>, req: &Request, call: impl FnOnce() -> Reply + Send + 'static) {
    let l = ctx.listener.clone();
    let id = req.id;
    ctx.domain.submit(Box::new(move || {
        if l.valid(id) {
            let r = call();
            l.reply(id, r);
        }
    }));
}

/// For a unix path the caller gave relative to its cwd (or its root): where the worker must
/// stand. `Err` when the caller's root is not ours.
fn unix_base(t: &Target, addr: &Addr) -> Result<Option<OwnedFd>, i32> {
    match addr {
        Addr::UnixPath(p) if p.first() == Some(&b'/') => {
            if same_root(t) {
                Ok(None)
            } else {
                Err(libc::EPERM)
            }
        }
        Addr::UnixPath(_) => {
            let c = std::ffi::CString::new(t.proc_path("cwd").as_os_str().as_encoded_bytes())
                .map_err(|_| libc::EINVAL)?;
            // SAFETY: opening the caller's cwd as a directory handle.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(last_errno());
            }
            // SAFETY: just opened.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        _ => Ok(None),
    }
}

/// The caller's umask, for a unix socket file bound on its behalf.
fn umask_of(t: &Target) -> u32 {
    std::fs::read_to_string(t.proc_path("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Moves the worker into the caller's cwd (and umask) for a relative unix path.
fn stand_in(base: &Option<OwnedFd>, umask: Option<u32>) -> Result<(), i32> {
    if let Some(fd) = base {
        // SAFETY: this worker has its own fs context (unshare(CLONE_FS) at start).
        if unsafe { libc::fchdir(fd.as_raw_fd()) } != 0 {
            return Err(last_errno());
        }
    }
    if let Some(m) = umask {
        // SAFETY: as above.
        unsafe { libc::umask(m) };
    }
    Ok(())
}

/// connect(2) and bind(2).
pub fn on_address(ctx: &Arc<Context>, req: &Request) -> Option<Reply> {
    let bind = i64::from(req.nr) == libc::SYS_bind;
    let op = if bind { "bind" } else { "connect" };
    let t = match Target::open(&ctx.listener, req, false) {
        Ok(t) => t,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    let len = (req.args[2] as u32 as usize).min(SOCKADDR_MAX);
    let bytes = match t.read(req.args[1], len) {
        Ok(b) => b,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    let addr = parse_addr(&bytes);
    let ino = socket_of(&t, req.int(0));
    let made = ino.and_then(|i| ctx.sockets.get(i));
    let (proto, proto_name) = made
        .as_ref()
        .map_or((Protocol::Any, "other"), |m| protocol(m.2, m.3));
    let enforce = ctx.plan.network == Mode::Enforce;
    if let Addr::Inet(ip, port) = addr {
        let why = if bind {
            listen_violation(ctx, port).then_some("not in listen_allow")
        } else {
            egress_violation(ctx, ip, port, proto)
        };
        if let Some(why) = why {
            let action = if enforce {
                Action::Blocked
            } else {
                Action::Audited
            };
            emit(
                ctx,
                &t,
                action,
                seen(op, proto_name, ip.to_string(), port),
                why,
            );
            if enforce {
                return Some(Reply::Errno(libc::EPERM));
            }
        }
    }
    if !ctx.plan.net_on_behalf {
        return Some(Reply::Continue);
    }
    let Some((Some(sock), ..)) = made else {
        return Some(unchecked(ctx, &t, ino, op));
    };
    let base = match unix_base(&t, &addr) {
        Ok(b) => b,
        Err(e) => return Some(Reply::Errno(e)),
    };
    let umask = (bind && matches!(addr, Addr::UnixPath(_))).then(|| umask_of(&t));
    let sockets_ctx = ctx.clone();
    let ino = ino.unwrap_or_default();
    on_behalf(ctx, req, move || {
        if let Err(e) = stand_in(&base, umask) {
            return Reply::Errno(e);
        }
        let ptr = bytes.as_ptr().cast::<libc::sockaddr>();
        let len = bytes.len() as libc::socklen_t;
        // SAFETY: our copy of the address, on our copy of the socket.
        let r = unsafe {
            if bind {
                libc::bind(sock.as_raw_fd(), ptr, len)
            } else {
                libc::connect(sock.as_raw_fd(), ptr, len)
            }
        };
        let reply = if r == 0 {
            Reply::Value(0)
        } else {
            Reply::Errno(last_errno())
        };
        drop(sock);
        if !bind {
            sockets_ctx.sockets.settle(ino);
        }
        reply
    });
    None
}

/// A message copied out of the caller, ready to be sent from here.
struct Message {
    name: Vec<u8>,
    data: Vec<u8>,
    control: Vec<u8>,
    /// Ancillary data that carries fds or credentials: cannot be sent by someone else.
    passes_rights: bool,
}

fn read_msghdr(t: &Target, at: u64) -> Result<Message, TargetError> {
    let h: libc::msghdr = t.read_value(at)?;
    let name = if h.msg_name.is_null() || h.msg_namelen == 0 {
        Vec::new()
    } else {
        t.read(
            h.msg_name as u64,
            (h.msg_namelen as usize).min(SOCKADDR_MAX),
        )?
    };
    let mut data = Vec::new();
    // musl's msghdr has int and socklen_t lengths where glibc's has size_t.
    #[allow(clippy::unnecessary_cast)]
    let (iovlen, controllen) = (h.msg_iovlen as usize, h.msg_controllen as usize);
    for i in 0..iovlen.min(MAX_IOV) {
        let iov: libc::iovec =
            t.read_value(h.msg_iov as u64 + (i * std::mem::size_of::<libc::iovec>()) as u64)?;
        let room = MAX_SEND - data.len();
        data.extend(t.read(iov.iov_base as u64, iov.iov_len.min(room))?);
    }
    let control = if h.msg_control.is_null() || h.msg_controllen == 0 {
        Vec::new()
    } else {
        t.read(h.msg_control as u64, controllen.min(MAX_CONTROL))?
    };
    let passes_rights = cmsg_passes_rights(&control);
    Ok(Message {
        name,
        data,
        control,
        passes_rights,
    })
}

/// Whether ancillary data holds SCM_RIGHTS or SCM_CREDENTIALS.
fn cmsg_passes_rights(c: &[u8]) -> bool {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut off = 0usize;
    while off + hdr <= c.len() {
        // SAFETY: bounds checked; unaligned read of a plain struct.
        let h: libc::cmsghdr = unsafe { std::ptr::read_unaligned(c[off..].as_ptr().cast()) };
        let len = h.cmsg_len as usize;
        if h.cmsg_level == libc::SOL_SOCKET
            && (h.cmsg_type == libc::SCM_RIGHTS || h.cmsg_type == libc::SCM_CREDENTIALS)
        {
            return true;
        }
        if len < hdr {
            return false;
        }
        off += (len + 7) & !7;
    }
    false
}

fn send_one(fd: RawFd, m: &mut Message, flags: i32) -> Result<usize, i32> {
    let mut iov = libc::iovec {
        iov_base: m.data.as_mut_ptr().cast(),
        iov_len: m.data.len(),
    };
    // SAFETY: a msghdr over our own buffers.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    if !m.name.is_empty() {
        h.msg_name = m.name.as_mut_ptr().cast();
        h.msg_namelen = m.name.len() as u32;
    }
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    if !m.control.is_empty() {
        h.msg_control = m.control.as_mut_ptr().cast();
        h.msg_controllen = m.control.len() as _;
    }
    // SAFETY: as above.
    let n = unsafe { libc::sendmsg(fd, &h, flags | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// sendto(2) with an address, sendmsg(2), sendmmsg(2).
pub fn on_send(ctx: &Arc<Context>, req: &Request) -> Option<Reply> {
    let nr = i64::from(req.nr);
    let t = match Target::open(&ctx.listener, req, nr == libc::SYS_sendmmsg) {
        Ok(t) => t,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    let flags = req.int(if nr == libc::SYS_sendmsg { 2 } else { 3 });
    let msgs: Result<Vec<Message>, TargetError> = match nr {
        libc::SYS_sendto => {
            let len = (req.args[2] as usize).min(MAX_SEND);
            let alen = (req.args[5] as u32 as usize).min(SOCKADDR_MAX);
            t.read(req.args[1], len).and_then(|data| {
                Ok(vec![Message {
                    name: t.read(req.args[4], alen)?,
                    data,
                    control: Vec::new(),
                    passes_rights: false,
                }])
            })
        }
        libc::SYS_sendmsg => read_msghdr(&t, req.args[1]).map(|m| vec![m]),
        _ => (0..(req.args[2] as u32 as usize).min(MAX_IOV))
            .map(|i| {
                read_msghdr(
                    &t,
                    req.args[1] + (i * std::mem::size_of::<libc::mmsghdr>()) as u64,
                )
            })
            .collect(),
    };
    let mut msgs = match msgs {
        Ok(m) => m,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    let ino = socket_of(&t, req.int(0));
    let made = ino.and_then(|i| ctx.sockets.get(i));
    let (proto, proto_name) = made
        .as_ref()
        .map_or((Protocol::Any, "other"), |m| protocol(m.2, m.3));
    let enforce = ctx.plan.network == Mode::Enforce;
    for m in &msgs {
        if let Addr::Inet(ip, port) = parse_addr(&m.name) {
            if let Some(why) = egress_violation(ctx, ip, port, proto) {
                let action = if enforce {
                    Action::Blocked
                } else {
                    Action::Audited
                };
                emit(
                    ctx,
                    &t,
                    action,
                    seen("sendmsg", proto_name, ip.to_string(), port),
                    why,
                );
                if enforce {
                    return Some(Reply::Errno(libc::EPERM));
                }
            }
        }
    }
    if !ctx.plan.net_on_behalf {
        return Some(Reply::Continue);
    }
    let sock = match &made {
        Some((Some(sock), ..)) if !msgs.iter().any(|m| m.passes_rights) => sock.clone(),
        _ => return Some(unchecked(ctx, &t, ino, "sendmsg")),
    };
    let base = match msgs.first().map(|m| parse_addr(&m.name)) {
        Some(a) => match unix_base(&t, &a) {
            Ok(b) => b,
            Err(e) => return Some(Reply::Errno(e)),
        },
        None => None,
    };
    let many = nr == libc::SYS_sendmmsg;
    let vec_at = req.args[1];
    let tid = t.tid;
    on_behalf(ctx, req, move || {
        if let Err(e) = stand_in(&base, None) {
            return Reply::Errno(e);
        }
        let mut sent = 0i64;
        for (i, m) in msgs.iter_mut().enumerate() {
            match send_one(sock.as_raw_fd(), m, flags) {
                Ok(n) if many => {
                    // The kernel reports each message's length in the caller's array.
                    let at = vec_at
                        + (i * std::mem::size_of::<libc::mmsghdr>()) as u64
                        + std::mem::size_of::<libc::msghdr>() as u64;
                    let _ = t.write(at, &(n as u32).to_ne_bytes());
                    sent += 1;
                }
                Ok(n) => return Reply::Value(n as i64),
                Err(e) if sent == 0 => {
                    if e == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                        // What the kernel would have done to the caller.
                        // SAFETY: signalling the calling thread of the tree.
                        unsafe { libc::syscall(libc::SYS_tkill, tid, libc::SIGPIPE) };
                    }
                    return Reply::Errno(e);
                }
                Err(_) => break,
            }
        }
        Reply::Value(sent)
    });
    None
}
