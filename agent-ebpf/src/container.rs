//! Is the current task in a monitored container, and under which policy?
//!
//! Every kill and deny is gated on this answer (DESIGN.md, Safety). Walking the task's cgroup
//! ancestors from the top, the first of these decides:
//! - an ancestor with an entry in `CONTAINERS`: the container the agent registered, under its
//!   own policy;
//! - an ancestor in `CONTAINER_CGROUPS`: a container the kernel recognised by name when its
//!   cgroup was made below a nested parent (`/kubepods`, `/kubepods.slice`, …; see
//!   `cgroup.rs`), whose own policy is not written yet: the default policy (key 0) holds;
//! - an ancestor that is a [`PARENT_CHILDREN`] parent (`/docker`): its child on the path is the
//!   container, under the default policy until its own is written.
//!
//! The last two put drift prevention in force from the very first exec of a new container. A
//! nested parent itself decides nothing: a host service beside containers (`/system.slice/
//! foo.service`) or a pod's QoS level is in no container.

use agent_common::{ContainerPolicy, MAX_CGROUP_LEVEL, PARENT_NESTED};
use aya_ebpf::{
    helpers::generated::bpf_get_current_ancestor_cgroup_id, macros::map, maps::LruHashMap,
};

use crate::{
    kernel::{offsets, read, read_ptr},
    maps::{CONTAINERS, CONTAINER_PARENTS},
};

/// Containers recognised at `cgroup_mkdir`, before the agent knows them (`MAP_CONTAINER_CGROUPS`).
/// Pinned like the agent's maps, so containers made while no agent runs stay recognised.
#[map]
pub static CONTAINER_CGROUPS: LruHashMap<u64, u32> = LruHashMap::pinned(16_384, 0);

pub struct Membership {
    /// The container's cgroup id (key of its state in the maps).
    pub cgroup_id: u64,
    pub policy: ContainerPolicy,
    /// False while the agent has not written this container's own policy yet (the default,
    /// key 0, is in force).
    pub configured: bool,
}

/// The default policy for a container whose own is not written yet.
#[inline(always)]
fn unconfigured(cgroup_id: u64) -> Membership {
    // SAFETY: the value is copied out at once.
    let policy = unsafe { CONTAINERS.get(0u64) }.copied().unwrap_or_default();
    Membership {
        cgroup_id,
        policy,
        configured: false,
    }
}

#[inline(always)]
pub fn current() -> Option<Membership> {
    // Level 0 is the root cgroup: never a container.
    let mut level: i32 = 1;
    while level <= MAX_CGROUP_LEVEL as i32 {
        // SAFETY: plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            return None;
        }
        // SAFETY: the value is copied out at once.
        if let Some(policy) = unsafe { CONTAINERS.get(id) } {
            return Some(Membership {
                cgroup_id: id,
                policy: *policy,
                configured: true,
            });
        }
        if CONTAINER_CGROUPS.get_ptr(id).is_some() {
            return Some(unconfigured(id));
        }
        // SAFETY: the value is copied out at once.
        match unsafe { CONTAINER_PARENTS.get(id) }.copied() {
            Some(kind) if kind != PARENT_NESTED => {
                // SAFETY: plain helper call.
                let child = unsafe { bpf_get_current_ancestor_cgroup_id(level + 1) };
                if child == 0 {
                    // The task sits in the parent itself (e.g. the engine's own cgroup).
                    return None;
                }
                // SAFETY: as above.
                return Some(match unsafe { CONTAINERS.get(child) } {
                    Some(policy) => Membership {
                        cgroup_id: child,
                        policy: *policy,
                        configured: true,
                    },
                    None => unconfigured(child),
                });
            }
            _ => {}
        }
        level += 1;
    }
    None
}

/// The container cgroup a cgroup belongs to, walking up from `cgrp` (a `struct cgroup *`), for
/// hooks that run outside the task (softirq): itself or the nearest ancestor the agent
/// registered or the kernel recognised, or the child of a [`PARENT_CHILDREN`] parent on its
/// path. `None` when a nested parent is reached first: cgroups beside containers are in none.
#[inline(always)]
pub fn of_cgroup(cgrp: u64) -> Result<Option<u64>, i64> {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let mut kn = unsafe { read_ptr(cgrp, o.cgroup_kn)? };
    let mut child = 0u64;
    let mut i = 0;
    while i < MAX_CGROUP_LEVEL {
        let id: u64 = unsafe { read(kn, o.kernfs_node_id)? };
        if CONTAINERS.get_ptr(id).is_some() || CONTAINER_CGROUPS.get_ptr(id).is_some() {
            return Ok(Some(id));
        }
        // SAFETY: the value is copied out at once.
        if let Some(kind) = unsafe { CONTAINER_PARENTS.get(id) }.copied() {
            return Ok((kind != PARENT_NESTED && child != 0).then_some(child));
        }
        child = id;
        let up: u64 = unsafe { read(kn, o.kernfs_node_parent)? };
        if up == 0 {
            return Ok(None);
        }
        kn = up;
        i += 1;
    }
    Ok(None)
}

/// The action for a control in `mode` that matched: audit reports, enforce blocks.
#[inline(always)]
pub fn action_for(mode: u32) -> u32 {
    match mode {
        agent_common::MODE_ENFORCE => agent_common::ACTION_BLOCKED,
        agent_common::MODE_AUDIT => agent_common::ACTION_AUDITED,
        _ => agent_common::ACTION_ALLOWED,
    }
}
