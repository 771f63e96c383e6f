//! Network controls on the container's own cgroup (cgroup sock_addr and sock_create programs,
//! attached by the agent to each container cgroup, never to a hierarchy root). Returning 0
//! makes the syscall fail with EPERM, synchronously.

use agent_common::{
    ContainerPolicy, NetEvent, NetRule, NetRuleKey, ACTION_ALLOWED, ACTION_BLOCKED,
    CONTROL_NETWORK, COUNTER_DENIES, COUNTER_RINGBUF_DROPS, EVENT_NET, FAMILY_INET, FAMILY_INET6,
    FAMILY_PACKET, MAX_NET_RULES, NET_LIST_ALLOW, NET_LIST_DENY, NET_LIST_LISTEN, NET_OP_BIND,
    NET_OP_CONNECT, NET_OP_RAW_SOCKET, NET_OP_SENDMSG, PROTO_ANY, PROTO_RAW, PROTO_TCP, PROTO_UDP,
    RULES_NET_ALLOW, RULES_NET_LISTEN,
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

/// Raw and packet sockets (`block_raw_sockets`).
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let Some(m) = container::current() else {
        return ALLOW;
    };
    // SAFETY: the context pointer is the kernel's bpf_sock for this program.
    let (family, ty) = unsafe { ((*ctx.sock).family, (*ctx.sock).type_) };
    if !(ty == SOCK_RAW || family == FAMILY_PACKET) || m.policy.block_raw_sockets == 0 {
        return ALLOW;
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
    verdict(action)
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
    let proto = match sa.type_ {
        SOCK_STREAM => PROTO_TCP,
        SOCK_DGRAM => PROTO_UDP,
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
            _ => {
                listed(p, NET_LIST_DENY, p.net_deny_count, fam, &addr, port, proto)
                    || (p.rules & RULES_NET_ALLOW != 0
                        && !listed(
                            p,
                            NET_LIST_ALLOW,
                            p.net_allow_count,
                            fam,
                            &addr,
                            port,
                            proto,
                        ))
            }
        };
    let action = if violates {
        action_for(p.net_mode)
    } else {
        ACTION_ALLOWED
    };
    // Unconnected sends are too frequent to report one by one unless a rule matched.
    if op != NET_OP_SENDMSG || action != ACTION_ALLOWED {
        emit(m.cgroup_id, op, fam, proto, port, addr, action);
    }
    verdict(action)
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
    let mut key = NetRuleKey {
        profile_id: p.profile_id,
        list,
        index: 0,
        _pad: 0,
    };
    let mut i = 0u32;
    while i < MAX_NET_RULES {
        if i >= n {
            break;
        }
        key.index = i;
        // SAFETY: copied fields only.
        if let Some(r) = unsafe { NET_RULES.get(key) } {
            if rule_matches(r, family, addr, port, proto) {
                return true;
            }
        }
        i += 1;
    }
    false
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
    if !emit::admit(cgroup, EVENT_NET, action, false, Context::Task) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: the reservation is ours until submitted; every field is written below.
    unsafe {
        fill_header(&mut (*ev).header, EVENT_NET, cgroup, 0);
        if action != ACTION_ALLOWED {
            (*ev).header.control = CONTROL_NETWORK;
        }
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
