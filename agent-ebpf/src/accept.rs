//! Accepted connections: TCP sockets of a container's listener that reach ESTABLISHED from
//! SYN_RECV (tp_btf `inet_sock_set_state`). This runs in softirq context, so the container is
//! found from the socket's cgroup (inherited from the listener), not from the current task.
//! Visibility only: nothing is denied here.

use agent_common::{
    NetEvent, ACTION_ALLOWED, COUNTER_RINGBUF_DROPS, EVENT_NET, FAMILY_INET, FAMILY_INET6,
    NET_OP_ACCEPT, PROTO_TCP,
};
use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    container,
    emit::{self, Context},
    kernel::{offsets, read, read_ptr},
    maps::{count, EVENTS},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let _ = try_state(&ctx);
    0
}

fn try_state(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old != TCP_SYN_RECV || new != TCP_ESTABLISHED {
        return Ok(());
    }
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let cgrp = unsafe { read_ptr(sk, o.sock_cgroup)? };
    let Some(container) = container::of_cgroup(cgrp)? else {
        return Ok(());
    };
    let family: u16 = unsafe { read(sk, o.sock_family)? };
    let dport: u16 = unsafe { read(sk, o.sock_dport)? };
    let mut addr = [0u8; 16];
    let fam = if family as u32 == FAMILY_INET6 {
        addr = unsafe { read(sk, o.sock_v6_daddr)? };
        FAMILY_INET6
    } else {
        let a: [u8; 4] = unsafe { read(sk, o.sock_daddr)? };
        addr[..4].copy_from_slice(&a);
        FAMILY_INET
    };
    if !emit::admit(container, EVENT_NET, ACTION_ALLOWED, false, Context::Kernel) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: the reservation is ours until submitted; every field is written below. The
    // header names no process: accept(2) has not been called yet.
    unsafe {
        (*ev).header = core::mem::zeroed();
        (*ev).header.kind = EVENT_NET;
        (*ev).header.ktime_ns = bpf_ktime_get_boot_ns();
        (*ev).header.cgroup_id = container;
        (*ev).header.container_cgroup_id = container;
        (*ev).op = NET_OP_ACCEPT;
        (*ev).family = fam;
        (*ev).protocol = PROTO_TCP;
        (*ev).port = u16::from_be(dport);
        (*ev)._pad = 0;
        (*ev).addr = addr;
    }
    emit::submit(entry);
    Ok(())
}
