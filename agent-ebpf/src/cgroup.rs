//! New container cgroups: the agent learns of them here, before their first process runs, so
//! it can write the image's policy and attach the network programs ahead of the first exec.
//!
//! A new cgroup of the unified hierarchy is a container's when its parent is a
//! [`PARENT_CHILDREN`] parent (`/docker`), or when it lies at any depth below a [`PARENT_NESTED`]
//! parent (`/kubepods`, `/kubepods.slice`, `/machine.slice`, `/libpod_parent`, `/system.slice`)
//! and its name is one the runtimes give container cgroups ([`names_a_container`], the rule the
//! agent applies too). The latter are recorded in `CONTAINER_CGROUPS` here, synchronously,
//! before `mkdir(2)` returns and so before any process can enter them: the membership gate
//! (`container.rs`) then holds the default policy for them from their first exec. Names are
//! read from the path the tracepoint gives; a path longer than the buffer is not recognised
//! (such a container is registered when its engine reports it). cgroup v1 hierarchies are
//! ignored: their ids are not the ones the gate compares.

use agent_common::{
    names_a_container, CgroupEvent, CGROUP_PATH_BUF, EVENT_CGROUP_MKDIR, MAX_CGROUP_LEVEL,
    PARENT_NESTED,
};
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::btf_tracepoint, macros::map,
    maps::PerCpuArray, programs::BtfTracePointContext,
};

use crate::{
    container::CONTAINER_CGROUPS,
    kernel::{fill_header, offsets, read, read_ptr},
    maps::CONTAINER_PARENTS,
};

/// Per-CPU scratch for the event: it is classified before the ring is asked for room, so a full
/// ring cannot stop a container from being recognised.
#[map]
static SCRATCH_CGROUP: PerCpuArray<CgroupEvent> = PerCpuArray::with_max_entries(1, 0);

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
    let root = unsafe { read_ptr(cgrp, o.cgroup_root)? };
    let hierarchy: i32 = unsafe { read(root, o.cgroup_root_hierarchy_id)? };
    if hierarchy != 0 {
        // A cgroup v1 hierarchy (hybrid hosts make every container cgroup there too): its ids
        // are its own and may equal a unified cgroup's, so nothing here may be keyed by them.
        return Ok(());
    }
    let kn = unsafe { read_ptr(cgrp, o.cgroup_kn)? };
    let id: u64 = unsafe { read(kn, o.kernfs_node_id)? };
    let parent = unsafe { read_ptr(kn, o.kernfs_node_parent)? };
    let parent_id: u64 = unsafe { read(parent, o.kernfs_node_id)? };
    // SAFETY: the value is copied out at once.
    let children = unsafe { CONTAINER_PARENTS.get(parent_id) }
        .copied()
        .is_some_and(|kind| kind != PARENT_NESTED);
    if !children && !below_nested_parent(parent)? {
        return Ok(());
    }
    let ev = SCRATCH_CGROUP.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation; every field is written below.
    let ev: &mut CgroupEvent = unsafe { &mut *ev };
    fill_header(&mut ev.header, EVENT_CGROUP_MKDIR, id, 0);
    ev.id = id;
    ev._pad = 0;
    // SAFETY: the helper writes at most CGROUP_PATH_BUF bytes into the buffer.
    let r = unsafe {
        bpf_probe_read_kernel_str(
            ev.path.as_mut_ptr().cast(),
            CGROUP_PATH_BUF as u32,
            path as *const _,
        )
    };
    ev.path_len = if r > 1 { (r - 1) as u32 } else { 0 };
    if !children {
        // A full buffer may hold a truncated path, whose last component is not a name.
        if ev.path_len as usize >= CGROUP_PATH_BUF - 1 || !names_a_container(&ev.path, ev.path_len)
        {
            return Ok(());
        }
        // Before the event: the policy gate must know the container even if the ring is full.
        let _ = CONTAINER_CGROUPS.insert(id, 1, 0);
    }
    // A new container is critical: no budget holds it back (see `emit`).
    crate::emit::copy(&*ev);
    Ok(())
}

/// Whether `kn` (a `struct kernfs_node *`) or one of its ancestors is a nested parent.
#[inline(always)]
fn below_nested_parent(mut kn: u64) -> Result<bool, i64> {
    let o = offsets();
    let mut i = 0;
    while i < MAX_CGROUP_LEVEL {
        // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
        let id: u64 = unsafe { read(kn, o.kernfs_node_id)? };
        // SAFETY: the value is copied out at once.
        if unsafe { CONTAINER_PARENTS.get(id) }.copied() == Some(PARENT_NESTED) {
            return Ok(true);
        }
        let up: u64 = unsafe { read(kn, o.kernfs_node_parent)? };
        if up == 0 {
            return Ok(false);
        }
        kn = up;
        i += 1;
    }
    Ok(false)
}
