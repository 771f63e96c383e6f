//! New container cgroups: the agent learns of them here, before their first process runs, so
//! it can write the image's policy and attach the network programs ahead of the first exec.

use agent_common::{CgroupEvent, CGROUP_PATH_BUF, COUNTER_RINGBUF_DROPS, EVENT_CGROUP_MKDIR};
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    kernel::{fill_header, offsets, read, read_ptr},
    maps::{count, CONTAINER_PARENTS, EVENTS},
};

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    let _ = try_mkdir(&ctx);
    0
}

fn try_mkdir(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let cgrp: u64 = ctx.arg(0);
    let path: u64 = ctx.arg(1);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let kn = unsafe { read_ptr(cgrp, o.cgroup_kn)? };
    let id: u64 = unsafe { read(kn, o.kernfs_node_id)? };
    let parent = unsafe { read_ptr(kn, o.kernfs_node_parent)? };
    let parent_id: u64 = unsafe { read(parent, o.kernfs_node_id)? };
    // SAFETY: presence check only.
    if unsafe { CONTAINER_PARENTS.get(parent_id) }.is_none() {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: the reservation is ours until submitted; every field is written below.
    unsafe {
        fill_header(&mut (*ev).header, EVENT_CGROUP_MKDIR, id, 0);
        (*ev).id = id;
        (*ev)._pad = 0;
        let r = bpf_probe_read_kernel_str(
            (*ev).path.as_mut_ptr().cast(),
            CGROUP_PATH_BUF as u32,
            path as *const _,
        );
        (*ev).path_len = if r > 1 { (r - 1) as u32 } else { 0 };
    }
    // A new container is critical: no budget holds it back (see `emit`).
    crate::emit::submit(entry);
    Ok(())
}
