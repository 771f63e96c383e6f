//! `listen_allow` for listeners no `bind` check saw: a TCP socket bound to port 0 (the kernel
//! picks the port) or put in `listen(2)` unbound (autobind) has a port no rule named. There is
//! no cgroup hook at `listen(2)`, so on the fallback the rule is kept on the traffic: this
//! cgroup_skb ingress program, attached once at the container parent cgroup like the sock_addr
//! programs, drops every packet that reaches a container's socket in the LISTEN state on a port
//! `listen_allow` does not name (in enforce mode; audit reports and passes). The listener gets
//! nothing; a client sees its SYN go unanswered. BPF LSM refuses the `listen(2)` itself.
//!
//! This runs in softirq context: the container is found from the socket's cgroup, never from
//! the current task. Packets to sockets that are not listening return at the first test.

use agent_common::{
    ContainerPolicy, MAX_CGROUP_LEVEL, NET_LIST_LISTEN, NET_OP_LISTEN, PROTO_TCP, RULES_NET_LISTEN,
};
use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_sk_fullsock, bpf_skb_ancestor_cgroup_id},
    macros::{cgroup_skb, map},
    maps::LruHashMap,
    programs::SkBuffContext,
};

use crate::{
    container::action_for,
    maps::{count, CONTAINERS, CONTAINER_PARENTS},
    net,
};

const PASS: i32 = 1;
const DROP: i32 = 0;
const BPF_TCP_LISTEN: u32 = 10;
const IPPROTO_TCP: u32 = 6;
/// One report per (container, port) per this many nanoseconds: a flood of SYNs is one event.
const REPORT_EVERY_NS: u64 = 10_000_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct ListenKey {
    cgroup: u64,
    port: u32,
    _pad: u32,
}

#[map]
static LISTEN_REPORTED: LruHashMap<ListenKey, u64> = LruHashMap::with_max_entries(4096, 0);

/// The container cgroup (and its policy) of the socket that owns `skb`: the same walk as
/// `container::current`, over the socket's cgroup ancestors instead of the current task's.
#[inline(always)]
fn member_of(skb: *mut aya_ebpf::bindings::__sk_buff) -> Option<(u64, ContainerPolicy)> {
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
        // SAFETY: presence check only.
        if unsafe { CONTAINER_PARENTS.get(id) }.is_some() {
            // SAFETY: plain helper call.
            let child = unsafe { bpf_skb_ancestor_cgroup_id(skb, level + 1) };
            if child == 0 {
                return None;
            }
            // SAFETY: copied out at once.
            let policy = unsafe { CONTAINERS.get(child) }
                .or_else(|| unsafe { CONTAINERS.get(0u64) })
                .copied()
                .unwrap_or_default();
            return Some((child, policy));
        }
        level += 1;
    }
    None
}

#[cgroup_skb(ingress)]
pub fn listen_gate(ctx: SkBuffContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: the context is the kernel's __sk_buff for this program; `sk` may be NULL.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return PASS;
    }
    // SAFETY: plain helper call on a socket pointer the verifier tracks.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return PASS;
    }
    // SAFETY: a full socket the helper returned.
    let (state, protocol, port, family) = unsafe {
        (
            (*full).state,
            (*full).protocol,
            (*full).src_port,
            (*full).family,
        )
    };
    if state != BPF_TCP_LISTEN || protocol != IPPROTO_TCP {
        return PASS;
    }
    let Some((cgroup, p)) = member_of(skb) else {
        return PASS;
    };
    if p.net_mode == 0 || p.rules & RULES_NET_LISTEN == 0 {
        return PASS;
    }
    let port = port as u16;
    if net::listed(
        &p,
        NET_LIST_LISTEN,
        p.net_listen_count,
        family,
        &[0; 16],
        port,
        PROTO_TCP,
    ) {
        return PASS;
    }
    let action = action_for(p.net_mode);
    report(cgroup, family, port, action);
    if action == agent_common::ACTION_BLOCKED {
        count(agent_common::COUNTER_DENIES);
        DROP
    } else {
        PASS
    }
}

/// Reports the listener once per `REPORT_EVERY_NS`.
#[inline(always)]
fn report(cgroup: u64, family: u32, port: u16, action: u32) {
    let key = ListenKey {
        cgroup,
        port: port as u32,
        _pad: 0,
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: copied out at once.
    if let Some(&last) = unsafe { LISTEN_REPORTED.get(key) } {
        if now.saturating_sub(last) < REPORT_EVERY_NS {
            return;
        }
    }
    let _ = LISTEN_REPORTED.insert(key, now, 0);
    net::emit_for(
        cgroup,
        NET_OP_LISTEN,
        family,
        PROTO_TCP,
        port,
        [0; 16],
        action,
    );
}
