//! Every way out to a listed destination. The sock_addr programs judge `connect` and the
//! unconnected `sendmsg` of UDP, but a raw socket (`SOCK_RAW`, which root in a default Docker
//! container may open: `CAP_NET_RAW`), an ICMP datagram ("ping") socket's `sendto` and any
//! other protocol pass no sock_addr program. This cgroup_skb egress program, attached once at
//! each container parent cgroup like the others (never a hierarchy root), judges the packet
//! itself: the destination in its IP header is what the kernel resolved and routes to, however
//! the socket named it (hdrincl raw sockets write their own header: that header is read too).
//! In enforce mode the packet is dropped, and the sender's `sendto`/`sendmsg` fails with EPERM;
//! audit passes it and reports.
//!
//! Cost: one LPM trie lookup per outgoing packet of the containers below a parent; the
//! membership walk runs only for a listed destination. The host never runs this program.
//!
//! This can run in softirq context (TCP retransmits, ACKs): the container is found from the
//! socket that owns the packet, never from the current task, and the event names no process.
//!
//! TCP and UDP sockets were judged per operation by the sock_addr programs (a listed
//! destination was refused at `connect`/`sendmsg`, or reported there in audit). Their packets
//! are still dropped here in enforce mode (a reply to a peer a feed lists, which no connect
//! saw), but an audited one is not reported twice.
//!
//! Not read: later hops named inside the packet (IPv4 source-route options, IPv6 routing
//! headers); the kernel routes to the header's destination, which is what is judged.
//!
//! Fail-open/closed: a packet too short for its IP header cannot be routed by the kernel
//! either; it passes. The membership gate decides before anything is dropped (DESIGN.md,
//! Safety).

use agent_common::{
    ContainerPolicy, ACTION_AUDITED, ACTION_BLOCKED, CONTROL_INTEL, COUNTER_DENIES, FAMILY_INET,
    FAMILY_INET6, MAX_CGROUP_LEVEL, NET_OP_PACKET, PARENT_NESTED, PROTO_ANY, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_RAW, PROTO_TCP, PROTO_UDP,
};
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_sk_fullsock, bpf_skb_ancestor_cgroup_id},
    macros::{cgroup_skb, map},
    maps::LruHashMap,
    programs::SkBuffContext,
};

use crate::{
    container::{action_for, CONTAINER_CGROUPS},
    intel::listed,
    maps::{count, CONTAINERS, CONTAINER_PARENTS},
};

const PASS: i32 = 1;
const DROP: i32 = 0;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
/// Offset of the destination in an IPv4 header, and in an IPv6 header.
const V4_DADDR: usize = 16;
const V6_DADDR: usize = 24;
/// Offset of the protocol in an IPv4 header, and of the next header in an IPv6 header.
const V4_PROTOCOL: usize = 9;
const V6_NEXT_HEADER: usize = 6;
/// One report per (container, destination) per this many nanoseconds: a flood is one event.
const REPORT_EVERY_NS: u64 = 10_000_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct ReportKey {
    cgroup: u64,
    addr: [u8; 16],
    family: u32,
    _pad: u32,
}

#[map]
static INTEL_EGRESS_REPORTED: LruHashMap<ReportKey, u64> = LruHashMap::with_max_entries(4096, 0);

#[cgroup_skb(egress)]
pub fn intel_egress(ctx: SkBuffContext) -> i32 {
    try_intel_egress(&ctx).unwrap_or(PASS)
}

/// `None`: the packet is not an IP packet this program can read; it passes (see the module).
#[inline(always)]
fn try_intel_egress(ctx: &SkBuffContext) -> Option<i32> {
    let first: u8 = ctx.load(0).ok()?;
    let mut addr = [0u8; 16];
    let (family, ip_proto) = match first >> 4 {
        4 => {
            let d: [u8; 4] = ctx.load(V4_DADDR).ok()?;
            addr[..4].copy_from_slice(&d);
            (FAMILY_INET, ctx.load::<u8>(V4_PROTOCOL).ok()?)
        }
        6 => {
            addr = ctx.load(V6_DADDR).ok()?;
            (FAMILY_INET6, ctx.load::<u8>(V6_NEXT_HEADER).ok()?)
        }
        _ => return Some(PASS),
    };
    // An IPv4-mapped IPv6 destination is listed as the IPv4 address it names.
    let family = if family == FAMILY_INET6 && addr[..10] == [0; 10] && addr[10..12] == [0xff; 2] {
        let v4 = [addr[12], addr[13], addr[14], addr[15]];
        addr = [0; 16];
        addr[..4].copy_from_slice(&v4);
        FAMILY_INET
    } else {
        family
    };
    if !listed(family, &addr) {
        return Some(PASS);
    }
    let skb = ctx.skb.skb;
    let (cgroup, policy) = member_of(skb)?;
    if policy.intel_mode == 0 {
        return Some(PASS);
    }
    let action = action_for(policy.intel_mode);
    let (sock_type, sock_proto) = socket_kind(skb);
    let judged_per_operation = (sock_type == SOCK_STREAM && sock_proto == PROTO_TCP)
        || (sock_type == SOCK_DGRAM && sock_proto == PROTO_UDP);
    if !(action == ACTION_AUDITED && judged_per_operation) {
        let proto = if sock_type == SOCK_RAW {
            PROTO_RAW
        } else {
            match ip_proto as u32 {
                p @ (PROTO_ICMP | PROTO_ICMPV6 | PROTO_TCP | PROTO_UDP) => p,
                _ => PROTO_ANY,
            }
        };
        report(cgroup, family, proto, addr, action);
    }
    if action == ACTION_BLOCKED {
        count(COUNTER_DENIES);
        Some(DROP)
    } else {
        Some(PASS)
    }
}

/// The type and protocol of the socket that sent `skb` (0, 0 when it has no full socket).
#[inline(always)]
fn socket_kind(skb: *mut __sk_buff) -> (u32, u32) {
    // SAFETY: the context is the kernel's __sk_buff for this program; `sk` may be NULL.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return (0, 0);
    }
    // SAFETY: plain helper call on a socket pointer the verifier tracks.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return (0, 0);
    }
    // SAFETY: a full socket the helper returned.
    unsafe { ((*full).type_, (*full).protocol) }
}

/// The container cgroup (and its policy) of the socket that owns `skb`, by the rule of
/// `container::current` over the socket's cgroup ancestors: an ancestor the agent registered,
/// one the kernel recognised at `cgroup_mkdir` (default policy), or the child of a plain
/// parent (`/docker`) on the path (its own policy, or the default). A nested parent decides
/// nothing; a socket in no container is `None`.
#[inline(always)]
fn member_of(skb: *mut __sk_buff) -> Option<(u64, ContainerPolicy)> {
    let default = || {
        // SAFETY: copied out at once.
        unsafe { CONTAINERS.get(0u64) }.copied().unwrap_or_default()
    };
    let mut level: i32 = 1;
    while level <= MAX_CGROUP_LEVEL as i32 {
        // SAFETY: plain helper call on the program's own context.
        let id = unsafe { bpf_skb_ancestor_cgroup_id(skb, level) };
        if id == 0 {
            return None;
        }
        // SAFETY: copied out at once.
        if let Some(p) = unsafe { CONTAINERS.get(id) } {
            return Some((id, *p));
        }
        if CONTAINER_CGROUPS.get_ptr(id).is_some() {
            return Some((id, default()));
        }
        // SAFETY: copied out at once.
        match unsafe { CONTAINER_PARENTS.get(id) }.copied() {
            Some(kind) if kind != PARENT_NESTED => {
                // SAFETY: plain helper call.
                let child = unsafe { bpf_skb_ancestor_cgroup_id(skb, level + 1) };
                if child == 0 {
                    // A socket of the parent itself (the engine's own cgroup).
                    return None;
                }
                // SAFETY: copied out at once.
                let policy = unsafe { CONTAINERS.get(child) }
                    .copied()
                    .unwrap_or_else(default);
                return Some((child, policy));
            }
            _ => {}
        }
        level += 1;
    }
    None
}

/// Reports the destination once per `REPORT_EVERY_NS` per container.
#[inline(always)]
fn report(cgroup: u64, family: u32, protocol: u32, addr: [u8; 16], action: u32) {
    let key = ReportKey {
        cgroup,
        addr,
        family,
        _pad: 0,
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: copied out at once.
    if let Some(&last) = unsafe { INTEL_EGRESS_REPORTED.get(key) } {
        if now.saturating_sub(last) < REPORT_EVERY_NS {
            return;
        }
    }
    let _ = INTEL_EGRESS_REPORTED.insert(key, now, 0);
    crate::net::emit_record(
        CONTROL_INTEL,
        cgroup,
        NET_OP_PACKET,
        family,
        protocol,
        0,
        addr,
        action,
        false,
    );
}
