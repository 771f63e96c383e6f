//! The container's own root: the root filesystem and root mount its init entered, recorded at
//! the container's first exec whose root is the root of an overlay mount (the entrypoint, after
//! the runtime's `pivot_root`). Exec paths, drift and file rules are judged against it, never
//! against the task's current root: `chroot /bin /wget` runs `/bin/wget`, and a file on a
//! tmpfs, a volume or below a sub-directory root is measured from the container's `/`.
//!
//! The stored pointers are only compared with live ones, never dereferenced: the container may
//! be gone and its memory reused (its cgroup id, the key, is never reused).

use agent_common::{
    ContainerRoot, EXEC_CHROOTED, EXEC_ROOT_NOT_OVERLAY, EXEC_ROOT_UNKNOWN, EXEC_UNREADABLE,
    OVERLAYFS_SUPER_MAGIC,
};

use crate::{
    kernel::{offsets, read, read_ptr},
    maps::{CONTAINER_INIT, CONTAINER_ROOTS},
};

/// The root a decision is taken against, and how it was found (`EXEC_*` flags).
pub struct Reference {
    pub sb: u64,
    pub mnt: u64,
    pub dentry: u64,
    pub flags: u32,
}

/// The task's own root. Every field is defined (zero) when `ok` is false: the verifier refuses
/// a program that could compare an uninitialised register, which a `Result` destructured
/// after helper calls can compile to.
#[derive(Clone, Copy)]
struct TaskRoot {
    ok: bool,
    mnt: u64,
    dentry: u64,
    sb: u64,
    magic: u64,
    mnt_root: u64,
}

#[inline(always)]
fn task_root(task: u64) -> TaskRoot {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let r = unsafe {
        read_ptr(task, o.task_fs).and_then(|fs| {
            let mnt = read_ptr(fs, o.fs_root + o.path_mnt)?;
            let dentry = read_ptr(fs, o.fs_root + o.path_dentry)?;
            let sb = read_ptr(dentry, o.dentry_d_sb)?;
            let magic: u64 = read(sb, o.sb_s_magic)?;
            let mnt_root: u64 = read(mnt, o.vfsmount_mnt_root)?;
            Ok(TaskRoot {
                ok: true,
                mnt,
                dentry,
                sb,
                magic,
                mnt_root,
            })
        })
    };
    r.unwrap_or(TaskRoot {
        ok: false,
        mnt: 0,
        dentry: 0,
        sb: 0,
        magic: 0,
        mnt_root: 0,
    })
}

/// Whether `task` still has its parent's root: an exec in a new container's cgroup before
/// the container has started (no root recorded, its init not known) that never changed root
/// is the runtime's own (`runc init` re-executing itself after it was moved into the cgroup),
/// not the container's: a container's entrypoint has pivoted into its rootfs, away from the
/// shim or conmon that is its parent. Unreadable roots count as different (the exec is then
/// treated as the container's, as before).
#[inline(always)]
pub fn same_as_parent(task: u64) -> bool {
    let o = offsets();
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    let parent = unsafe { read_ptr(task, o.task_real_parent) }.unwrap_or(0);
    if parent == 0 {
        return false;
    }
    let own = task_root(task);
    let theirs = task_root(parent);
    own.ok && theirs.ok && own.mnt == theirs.mnt && own.dentry == theirs.dentry
}

/// The root of container `cgroup` for `task`, recording it on the container's first exec from
/// an overlay root. Once the container has started (its init is known) and no root was ever
/// recorded, the answer is `EXEC_ROOT_UNKNOWN` (fail closed), never "no decision".
#[inline(always)]
pub fn reference(cgroup: u64, task: u64) -> Reference {
    let own = task_root(task);
    // SAFETY: the value is copied out at once.
    if let Some(r) = unsafe { CONTAINER_ROOTS.get(cgroup) }.copied() {
        let chrooted = !own.ok || own.mnt != r.mnt || own.dentry != r.dentry;
        return Reference {
            sb: r.sb,
            mnt: r.mnt,
            dentry: r.dentry,
            flags: if chrooted { EXEC_CHROOTED } else { 0 },
        };
    }
    if !own.ok {
        return Reference {
            sb: 0,
            mnt: 0,
            dentry: 0,
            flags: EXEC_UNREADABLE | EXEC_ROOT_UNKNOWN,
        };
    }
    let TaskRoot {
        mnt,
        dentry,
        sb,
        magic,
        mnt_root,
        ..
    } = own;
    // The root of an overlay mount: the container's rootfs (no process in a default container
    // can mount another overlay, and a sub-directory root is not the root of its mount).
    if magic == OVERLAYFS_SUPER_MAGIC && dentry == mnt_root {
        let root = ContainerRoot { sb, mnt, dentry };
        const BPF_NOEXIST: u64 = 1;
        if CONTAINER_ROOTS.insert(cgroup, root, BPF_NOEXIST).is_err() {
            // Another CPU recorded it first (or the map is full): use what is there, if any.
            // SAFETY: copied out at once.
            if let Some(r) = unsafe { CONTAINER_ROOTS.get(cgroup) }.copied() {
                let chrooted = mnt != r.mnt || dentry != r.dentry;
                return Reference {
                    sb: r.sb,
                    mnt: r.mnt,
                    dentry: r.dentry,
                    flags: if chrooted { EXEC_CHROOTED } else { 0 },
                };
            }
        }
        return Reference {
            sb,
            mnt,
            dentry,
            flags: 0,
        };
    }
    // SAFETY: presence check only.
    let started = unsafe { CONTAINER_INIT.get(cgroup) }.is_some();
    Reference {
        sb,
        mnt,
        dentry,
        flags: if started {
            EXEC_ROOT_UNKNOWN
        } else {
            EXEC_ROOT_NOT_OVERLAY
        },
    }
}

/// The task's own root, for host processes (events only, nothing is decided for them).
#[inline(always)]
pub fn host(task: u64) -> Reference {
    let r = task_root(task);
    Reference {
        sb: r.sb,
        mnt: r.mnt,
        dentry: r.dentry,
        flags: if !r.ok {
            EXEC_UNREADABLE | EXEC_ROOT_NOT_OVERLAY
        } else if r.magic == OVERLAYFS_SUPER_MAGIC {
            0
        } else {
            EXEC_ROOT_NOT_OVERLAY
        },
    }
}
