//! Sockets, where the cgroup programs cannot see: `socket_create` (every family, so
//! `AF_PACKET` is refused under `block_raw_sockets`; the cgroup `sock_create` program only runs
//! for inet sockets), `socket_connect` (egress, before the cgroup connect programs),
//! `socket_listen` (`listen_allow`, including a listener on a port the kernel picks: `bind` to
//! port 0, or `listen` on an unbound socket), and `socket_sendmsg` for ICMP datagram sockets
//! (the cgroup sendmsg programs run for UDP only).

use agent_common::{
    ACTION_ALLOWED, ACTION_BLOCKED, FAMILY_INET, FAMILY_INET6, FAMILY_PACKET, NET_LIST_LISTEN,
    NET_OP_CONNECT, NET_OP_ICMP, NET_OP_LISTEN, PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP, RULES_NET_LISTEN,
};
use aya_ebpf::{macros::lsm, programs::LsmContext};

use super::verdict;
use crate::{
    container::{self, action_for},
    kernel::{offsets, read, read_ptr},
    net,
};

const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const SOCK_RAW: i32 = 3;
const IPPROTO_ICMP: u16 = 1;
const IPPROTO_ICMPV6: u16 = 58;

#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(4);
    if retval != 0 {
        return retval;
    }
    let family: i32 = ctx.arg(0);
    let ty: i32 = ctx.arg(1);
    let kern: i32 = ctx.arg(3);
    // Sockets the kernel makes for itself are never the container's doing.
    if kern != 0 || !(family as u32 == FAMILY_PACKET || ty == SOCK_RAW) {
        return 0;
    }
    let Some(m) = container::current() else {
        return 0;
    };
    verdict(net::judge_raw_socket(&m, family as u32))
}

#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(3);
    if retval != 0 {
        return retval;
    }
    // Unreadable memory here means no address to judge: the cgroup connect programs, which
    // read the kernel's own copy, still decide.
    try_socket_connect(&ctx).unwrap_or(0)
}

/// The protocol of a socket as the rules name it.
#[inline(always)]
fn proto_of(sock: u64) -> u32 {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let ty: u16 = unsafe { read(sock, o.socket_type) }.unwrap_or(0);
    let protocol: u16 =
        unsafe { read_ptr(sock, o.socket_sk).and_then(|sk| read(sk, o.sock_protocol)) }
            .unwrap_or(0);
    match (ty, protocol) {
        (SOCK_DGRAM, IPPROTO_ICMP) => PROTO_ICMP,
        (SOCK_DGRAM, IPPROTO_ICMPV6) => PROTO_ICMPV6,
        (SOCK_STREAM, _) => PROTO_TCP,
        (SOCK_DGRAM, _) => PROTO_UDP,
        _ => PROTO_ANY,
    }
}

/// A `sockaddr` in kernel memory as (family, address, port), IPv4-mapped IPv6 as IPv4; `None`
/// for families that are not egress (`AF_UNIX`, `AF_UNSPEC` disconnect).
#[inline(always)]
fn sockaddr(address: u64, len: i32) -> Option<(u32, [u8; 16], u16)> {
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let family: u16 = unsafe { read(address, 0) }.ok()?;
    let port = u16::from_be(unsafe { read::<u16>(address, 2) }.ok()?);
    let mut addr = [0u8; 16];
    match family as u32 {
        FAMILY_INET if len >= 8 => {
            addr[..4].copy_from_slice(&unsafe { read::<[u8; 4]>(address, 4) }.ok()?);
            Some((FAMILY_INET, addr, port))
        }
        FAMILY_INET6 if len >= 24 => {
            let a: [u8; 16] = unsafe { read(address, 8) }.ok()?;
            if a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff {
                addr[..4].copy_from_slice(&a[12..16]);
                Some((FAMILY_INET, addr, port))
            } else {
                Some((FAMILY_INET6, a, port))
            }
        }
        _ => None,
    }
}

/// Egress allow/deny rules on `connect(2)`, matched by the same code as the cgroup programs.
fn try_socket_connect(ctx: &LsmContext) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let p = &m.policy;
    if p.net_mode == 0 {
        return Ok(0);
    }
    let sock: u64 = ctx.arg(0);
    let address: u64 = ctx.arg(1);
    let addrlen: i32 = ctx.arg(2);
    // The sockaddr was copied into kernel memory by the syscall before this hook.
    let Some((fam, addr, port)) = sockaddr(address, addrlen) else {
        return Ok(0);
    };
    let proto = proto_of(sock);
    let action = if net::egress_violates(p, fam, &addr, port, proto) {
        action_for(p.net_mode)
    } else {
        ACTION_ALLOWED
    };
    // Only a blocked connect is reported here: the LSM hook runs before the cgroup connect
    // programs, which never see it. Allowed and audited connects go on and the cgroup programs
    // (attached on every host, and run for ICMP sockets' connect since Linux 6.0) report them.
    if action == ACTION_BLOCKED {
        let op = if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
            NET_OP_ICMP
        } else {
            NET_OP_CONNECT
        };
        net::emit(m.cgroup_id, op, fam, proto, port, addr, action);
    }
    Ok(verdict(action))
}

#[lsm(hook = "socket_sendmsg")]
pub fn socket_sendmsg(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(3);
    if retval != 0 {
        return retval;
    }
    let sock: u64 = ctx.arg(0);
    // Cheap filter first: every send on the host passes here; only ICMP datagram sockets lack a
    // cgroup program that judges the destination.
    let proto = proto_of(sock);
    if proto != PROTO_ICMP && proto != PROTO_ICMPV6 {
        return 0;
    }
    try_icmp_send(ctx.arg(1), proto).unwrap_or(0)
}

fn try_icmp_send(msg: u64, proto: u32) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let p = &m.policy;
    if p.net_mode == 0 {
        return Ok(0);
    }
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address; `msg_name` points at the
    // kernel's copy of the destination (a connected socket has none: judged at connect).
    let name: u64 = unsafe { read(msg, o.msghdr_msg_name) }.unwrap_or(0);
    if name == 0 {
        return Ok(0);
    }
    let len: i32 = unsafe { read(msg, o.msghdr_msg_namelen) }.unwrap_or(0);
    let Some((fam, addr, port)) = sockaddr(name, len) else {
        return Ok(0);
    };
    let action = if net::egress_violates(p, fam, &addr, port, proto) {
        action_for(p.net_mode)
    } else {
        ACTION_ALLOWED
    };
    if action != ACTION_ALLOWED {
        net::emit(m.cgroup_id, NET_OP_ICMP, fam, proto, port, addr, action);
    }
    Ok(verdict(action))
}

#[lsm(hook = "socket_listen")]
pub fn socket_listen(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(2);
    if retval != 0 {
        return retval;
    }
    try_listen(ctx.arg(0)).unwrap_or(0)
}

/// `listen_allow` at `listen(2)`: an unbound socket gets a port the kernel picks, which no
/// rule can name, so it is a violation whenever a listen list exists (fail closed).
fn try_listen(sock: u64) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let p = &m.policy;
    if p.net_mode == 0 || p.rules & RULES_NET_LISTEN == 0 {
        return Ok(0);
    }
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let sk = unsafe { read_ptr(sock, o.socket_sk) };
    let family: u16 = sk
        .and_then(|sk| unsafe { read(sk, o.sock_family) })
        .unwrap_or(0);
    if family as u32 != FAMILY_INET && family as u32 != FAMILY_INET6 {
        return Ok(0);
    }
    let port: u16 = sk
        .and_then(|sk| unsafe { read(sk, o.sock_num) })
        .unwrap_or(0);
    let proto = proto_of(sock);
    let allowed = port != 0
        && net::listed(
            p,
            NET_LIST_LISTEN,
            p.net_listen_count,
            family as u32,
            &[0; 16],
            port,
            proto,
        );
    let action = if allowed {
        ACTION_ALLOWED
    } else {
        action_for(p.net_mode)
    };
    if action != ACTION_ALLOWED {
        net::emit(
            m.cgroup_id,
            NET_OP_LISTEN,
            family as u32,
            proto,
            port,
            [0; 16],
            action,
        );
    }
    Ok(verdict(action))
}
