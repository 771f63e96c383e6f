//! Network controls in cgroup sock_addr and sock_create programs, attached once at each
//! container *parent* cgroup (never a hierarchy root) and gated on membership. Returning 0 makes
//! the syscall fail with EPERM, synchronously.
//!
//! Another name for the same host: a rule about `127.0.0.1` (or `::1`) also judges every other
//! way a container reaches the host's loopback — the rest of `127/8`, `0.0.0.0`, `::`, and
//! their IPv4-mapped forms — so a deny cannot be walked around by spelling the address another
//! way. ICMP datagram ("ping") sockets: their `connect` passes the connect programs (Linux
//! ≥ 6.0), their unconnected sends pass no cgroup program, so on this backend creating one is
//! refused whenever the profile has egress rules (fail closed); BPF LSM judges each send.

use agent_common::{
    ContainerPolicy, NetEvent, NetRule, NetRuleKey, ACTION_ALLOWED, ACTION_BLOCKED,
    CONTROL_NETWORK, COUNTER_DENIES, COUNTER_RINGBUF_DROPS, EVENT_NET, FAMILY_INET, FAMILY_INET6,
    FAMILY_PACKET, MAX_NET_RULES, NET_LIST_ALLOW, NET_LIST_DENY, NET_LIST_LISTEN, NET_OP_BIND,
    NET_OP_CONNECT, NET_OP_ICMP, NET_OP_RAW_SOCKET, NET_OP_SENDMSG, PROTO_ANY, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_RAW, PROTO_TCP, PROTO_UDP, RULES_NET_ALLOW, RULES_NET_LISTEN,
};
use aya_ebpf::{
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
};

use crate::{
    container::{self, action_for},
    emit::{self, Context},
    kernel::fill_header,
    maps::{count, EVENTS, NET_RULES},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_ICMPV6: u32 = 58;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_CONNECT, FAMILY_INET)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_CONNECT, FAMILY_INET6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_SENDMSG, FAMILY_INET)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_SENDMSG, FAMILY_INET6)
}

#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_BIND, FAMILY_INET)
}

#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, NET_OP_BIND, FAMILY_INET6)
}

/// Raw sockets (`block_raw_sockets`; inet only: the kernel runs this program for `AF_INET` and
/// `AF_INET6` sockets, so `AF_PACKET` needs BPF LSM `socket_create`), and ICMP datagram
/// sockets when egress rules exist (their sends are unseen here).
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let Some(m) = container::current() else {
        return ALLOW;
    };
    // SAFETY: the context pointer is the kernel's bpf_sock for this program.
    let (family, ty, protocol) =
        unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    let p = &m.policy;
    let icmp = ty == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
    if icmp {
        let ruled = p.net_mode != 0
            && (p.rules & RULES_NET_ALLOW != 0
                || p.net_deny_count != 0
                || p.block_raw_sockets != 0);
        if !ruled || crate::maps::lsm_active() {
            return ALLOW;
        }
        let proto = if protocol == IPPROTO_ICMP {
            PROTO_ICMP
        } else {
            PROTO_ICMPV6
        };
        let action = action_for(p.net_mode);
        emit(m.cgroup_id, NET_OP_ICMP, family, proto, 0, [0; 16], action);
        return verdict(action);
    }
    if !(ty == SOCK_RAW || family == FAMILY_PACKET) {
        return ALLOW;
    }
    verdict(judge_raw_socket(&m, family))
}

/// A raw or packet socket of `family` made by a task of container `m`: under
/// `block_raw_sockets` reported, and the action returned (allowed otherwise). Shared by the
/// cgroup program above, BPF LSM `socket_create` and the fallback's opt-in `socket()` hook.
#[inline(always)]
pub(crate) fn judge_raw_socket(m: &container::Membership, family: u32) -> u32 {
    if m.policy.block_raw_sockets == 0 {
        return ACTION_ALLOWED;
    }
    let action = action_for(m.policy.net_mode);
    emit(
        m.cgroup_id,
        NET_OP_RAW_SOCKET,
        family,
        PROTO_RAW,
        0,
        [0; 16],
        action,
    );
    action
}

fn on_addr(ctx: &SockAddrContext, op: u32, family: u32) -> i32 {
    let Some(m) = container::current() else {
        return ALLOW;
    };
    // SAFETY: the context pointer is the kernel's bpf_sock_addr for this program; fields are
    // read as the u32s the verifier expects.
    let sa = unsafe { &*ctx.sock_addr };
    let mut addr = [0u8; 16];
    let mut fam = family;
    if family == FAMILY_INET {
        addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        let w = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        // An IPv4-mapped address (::ffff:a.b.c.d) on a dual-stack socket is IPv4 to the rules.
        if w[0] == 0 && w[1] == 0 && w[2].to_ne_bytes() == [0, 0, 0xff, 0xff] {
            addr[..4].copy_from_slice(&w[3].to_ne_bytes());
            fam = FAMILY_INET;
        }
        if fam == FAMILY_INET6 {
            addr[0..4].copy_from_slice(&w[0].to_ne_bytes());
            addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
            addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
            addr[12..16].copy_from_slice(&w[3].to_ne_bytes());
        }
    }
    let port = u16::from_be(sa.user_port as u16);
    let proto = match (sa.type_, sa.protocol) {
        (SOCK_DGRAM, IPPROTO_ICMP) => PROTO_ICMP,
        (SOCK_DGRAM, IPPROTO_ICMPV6) => PROTO_ICMPV6,
        (SOCK_STREAM, _) => PROTO_TCP,
        (SOCK_DGRAM, _) => PROTO_UDP,
        _ => PROTO_ANY,
    };
    let p = &m.policy;
    let violates = p.net_mode != 0
        && match op {
            NET_OP_BIND => {
                // Port 0 asks the kernel for an ephemeral port: not a listen decision.
                port != 0
                    && p.rules & RULES_NET_LISTEN != 0
                    && !listed(
                        p,
                        NET_LIST_LISTEN,
                        p.net_listen_count,
                        fam,
                        &addr,
                        port,
                        proto,
                    )
            }
            _ => egress_violates(p, fam, &addr, port, proto),
        };
    let action = if violates {
        action_for(p.net_mode)
    } else {
        ACTION_ALLOWED
    };
    let (control, action) = crate::intel::judge(&m, op, fam, &addr, action);
    // Unconnected sends are too frequent to report one by one unless a rule matched.
    if op != NET_OP_SENDMSG || action != ACTION_ALLOWED {
        let op = if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
            NET_OP_ICMP
        } else {
            op
        };
        emit_as(control, m.cgroup_id, op, fam, proto, port, addr, action);
    }
    verdict(action)
}

/// Whether `addr` is another name for the host's loopback: `127/8`, `0.0.0.0` (IPv4-mapped forms
/// arrive as IPv4), `::1` or `::`.
#[inline(always)]
fn host_alias(family: u32, addr: &[u8; 16]) -> bool {
    if family == FAMILY_INET {
        addr[0] == 127 || addr[..4] == [0; 4]
    } else {
        addr[..15] == [0; 15] && addr[15] <= 1
    }
}

/// Egress rules (deny wins, then the allow list) for (`family`, `addr`, `port`, `proto`). A host
/// alias is judged as itself and as `127.0.0.1` and `::1`: denied if any of them is denied,
/// allowed if any of them is allowed.
#[inline(always)]
pub(crate) fn egress_violates(
    p: &ContainerPolicy,
    family: u32,
    addr: &[u8; 16],
    port: u16,
    proto: u32,
) -> bool {
    let alias = host_alias(family, addr);
    let mut v4 = [0u8; 16];
    v4[0] = 127;
    v4[3] = 1;
    let mut v6 = [0u8; 16];
    v6[15] = 1;
    let on = |list: u32, n: u32| {
        listed(p, list, n, family, addr, port, proto)
            || (alias
                && (listed(p, list, n, FAMILY_INET, &v4, port, proto)
                    || listed(p, list, n, FAMILY_INET6, &v6, port, proto)))
    };
    if on(NET_LIST_DENY, p.net_deny_count) {
        return true;
    }
    p.rules & RULES_NET_ALLOW != 0 && !on(NET_LIST_ALLOW, p.net_allow_count)
}

#[inline(always)]
fn verdict(action: u32) -> i32 {
    if action == ACTION_BLOCKED {
        count(COUNTER_DENIES);
        DENY
    } else {
        ALLOW
    }
}

#[repr(C)]
struct ListCtx {
    key: NetRuleKey,
    addr: [u8; 16],
    family: u32,
    proto: u32,
    port: u16,
    _pad: u16,
    found: u32,
}

/// Rule `i` of the list. Returns 1 to stop (found).
#[inline(never)]
extern "C" fn rule_step(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the ListCtx on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut ListCtx) };
    c.key.index = i as u32;
    // SAFETY: copied fields only.
    if let Some(r) = unsafe { NET_RULES.get(c.key) } {
        if rule_matches(r, c.family, &c.addr, c.port, c.proto) {
            c.found = 1;
            return 1;
        }
    }
    0
}

/// Whether a rule of `list` (of `n` rules) of the profile matches. A `bpf_loop`, so each use is
/// verified once instead of unrolled (the unrolled loops exceeded the verifier's budget).
#[inline(always)]
pub(crate) fn listed(
    p: &ContainerPolicy,
    list: u32,
    n: u32,
    family: u32,
    addr: &[u8; 16],
    port: u16,
    proto: u32,
) -> bool {
    let mut c = ListCtx {
        key: NetRuleKey {
            profile_id: p.profile_id,
            list,
            index: 0,
            _pad: 0,
        },
        addr: *addr,
        family,
        proto,
        port,
        _pad: 0,
        found: 0,
    };
    let n = if n > MAX_NET_RULES { MAX_NET_RULES } else { n };
    if n == 0 {
        return false;
    }
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            n,
            rule_step as *mut core::ffi::c_void,
            (&mut c as *mut ListCtx).cast(),
            0,
        )
    };
    c.found != 0
}

#[inline(always)]
fn rule_matches(r: &NetRule, family: u32, addr: &[u8; 16], port: u16, proto: u32) -> bool {
    if r.protocol != PROTO_ANY && r.protocol != proto {
        return false;
    }
    if port < r.port_lo || port > r.port_hi {
        return false;
    }
    if r.family == 0 {
        return true;
    }
    if r.family != family {
        return false;
    }
    let mut bits = r.prefix_len;
    let mut i = 0usize;
    while i < 16 {
        if bits == 0 {
            return true;
        }
        let mask: u8 = if bits >= 8 {
            0xff
        } else {
            0xffu8 << (8 - bits)
        };
        if (addr[i] & mask) != (r.addr[i] & mask) {
            return false;
        }
        bits = bits.saturating_sub(8);
        i += 1;
    }
    true
}

#[inline(always)]
pub(crate) fn emit(
    cgroup: u64,
    op: u32,
    family: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
    action: u32,
) {
    emit_record(
        rules_control(action),
        cgroup,
        op,
        family,
        protocol,
        port,
        addr,
        action,
        true,
    );
}

/// [`emit`] of a decision another control took (intel, after the rules).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_as(
    control: u32,
    cgroup: u64,
    op: u32,
    family: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
    action: u32,
) {
    emit_record(
        control, cgroup, op, family, protocol, port, addr, action, true,
    );
}

/// Like [`emit`], from softirq context: the header names no process (the current task is
/// whoever the packet interrupted).
#[inline(always)]
pub(crate) fn emit_for(
    cgroup: u64,
    op: u32,
    family: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
    action: u32,
) {
    emit_record(
        rules_control(action),
        cgroup,
        op,
        family,
        protocol,
        port,
        addr,
        action,
        false,
    );
}

/// The control a network rule's verdict is reported under: none for a plain allowed operation.
#[inline(always)]
fn rules_control(action: u32) -> u32 {
    match action {
        ACTION_ALLOWED => agent_common::CONTROL_NONE,
        _ => CONTROL_NETWORK,
    }
}

/// The one writer of network records (also the intel egress program's, in softirq context).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn emit_record(
    control: u32,
    cgroup: u64,
    op: u32,
    family: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
    action: u32,
    task: bool,
) {
    let ctx = if task { Context::Task } else { Context::Kernel };
    if !emit::admit(cgroup, EVENT_NET, action, false, ctx) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: the reservation is ours until submitted; every field is written below.
    unsafe {
        if task {
            fill_header(&mut (*ev).header, EVENT_NET, cgroup, 0);
        } else {
            (*ev).header = core::mem::zeroed();
            (*ev).header.kind = EVENT_NET;
            (*ev).header.ktime_ns = aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns();
            (*ev).header.cgroup_id = cgroup;
            (*ev).header.container_cgroup_id = cgroup;
        }
        (*ev).header.control = control;
        (*ev).header.action = action;
        (*ev).op = op;
        (*ev).family = family;
        (*ev).protocol = protocol;
        (*ev).port = port;
        (*ev)._pad = 0;
        (*ev).addr = addr;
    }
    emit::submit(entry);
}
