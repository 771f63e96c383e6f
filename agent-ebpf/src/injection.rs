//! Code that did not come in through `execve`: a file mapped executable, and writing into
//! another process (`ptrace`, `process_vm_writev`) or into any process's memory through
//! `/proc/<pid>/mem`. One decision, the drift control's, shared by
//! the BPF LSM hooks (`lsm/code.rs`, which fail the syscall with `EPERM`) and the fallback's
//! opt-in syscall hooks (`syscalls.rs`, which kill the caller), so both backends report the
//! same event for the same door.

use agent_common::{
    ExecEvent, ACTION_ALLOWED, CONTROL_DRIFT, COUNTER_UNREADABLE, EVENT_EXEC, EXEC_DRIFT_FLAGS,
    EXEC_ROOT_NOT_OVERLAY, EXEC_ROOT_UNKNOWN, EXEC_UNLINKED, EXEC_UNREADABLE, EXEC_UPPER_LAYER,
    EXEC_VIA_MMAP, EXEC_VIA_PROC_MEM, EXEC_VIA_PTRACE, OVERLAYFS_SUPER_MAGIC,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_loop, bpf_probe_read_kernel_str},
    macros::map,
    maps::PerCpuArray,
};

use crate::{
    container::{action_for, Membership},
    emit,
    exec::{build_path, decide, describe_file},
    kernel::{fill_header, offsets, read, read_ptr},
    maps::count,
    root,
};

const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// Per-CPU scratch for executable mappings and ptrace: `mmap_file` also runs inside `execve`
/// (the ELF loader maps the binary), so it must not share `SCRATCH_EXEC` with
/// `bprm_check_security`.
#[map]
static SCRATCH_MMAP: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// The parent's tgid, 0 when it cannot be read (the event still goes out).
#[inline(always)]
pub(crate) fn ppid_of(task: u64) -> u32 {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    unsafe { read_ptr(task, o.task_real_parent) }
        .and_then(|p| unsafe { read(p, o.task_tgid) })
        .unwrap_or(0)
}

/// `file` mapped executable by the current task of container `m`: drift when the file is not
/// the image's (upper layer, another filesystem, unlinked, memfd). Reports it and returns the
/// action (`ACTION_ALLOWED` when there is nothing to report). The task's own executable is
/// skipped: its exec was judged, and the ELF loader maps it during `execve`. `file` 0 (the
/// caller could not learn the mapped file) is unreadable: drift (fail closed).
#[inline(always)]
pub(crate) fn judge_mapping(m: &Membership, file: u64) -> Result<u32, i64> {
    if m.policy.drift_mode == 0 {
        return Ok(ACTION_ALLOWED);
    }
    let o = offsets();
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let inode = unsafe { read::<u64>(file, o.file_f_inode) }.unwrap_or(0);
    let exe_inode = unsafe {
        read_ptr(task, o.task_mm)
            .and_then(|mm| read_ptr(mm, o.mm_exe_file))
            .and_then(|exe| read::<u64>(exe, o.file_f_inode))
    }
    .unwrap_or(0);
    if inode != 0 && inode == exe_inode {
        return Ok(ACTION_ALLOWED);
    }
    let ev = SCRATCH_MMAP.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    ev.flags = EXEC_VIA_MMAP;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = 0;
    describe_file(ev, task, file, Some(m.cgroup_id));
    if ev.flags & EXEC_ROOT_NOT_OVERLAY != 0 || ev.flags & EXEC_DRIFT_FLAGS == 0 {
        return Ok(ACTION_ALLOWED);
    }
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, ppid_of(task));
    decide(ev, &m.policy);
    if ev.header.control != CONTROL_DRIFT {
        // An image file on a drift allow list: not ours to report here.
        return Ok(ACTION_ALLOWED);
    }
    Ok(report(ev))
}

/// The most layers an overlay mount is searched for (overlayfs's own limit is 500); a mapping
/// on a deeper lower layer is not found and judged as a foreign file (fail closed).
const MAX_LAYERS: u32 = 512;

/// Where the file of an existing mapping lives, relative to the container's root overlay.
#[repr(C)]
struct LayerSearch {
    layers: u64,
    mnt: u64,
    size: u64,
    mnt_off: u64,
    /// The layer index found, or `u64::MAX`.
    found: u64,
}

/// Layer `i` of the search. Returns 1 to stop (found).
#[inline(never)]
extern "C" fn layer_step(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the LayerSearch on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut LayerSearch) };
    // SAFETY (read): bpf_probe_read_kernel tolerates any address.
    let mnt = unsafe { read::<u64>(c.layers + i * c.size, c.mnt_off as u32) }.unwrap_or(0);
    if mnt != 0 && mnt == c.mnt {
        c.found = i;
        return 1;
    }
    0
}

/// The index of the layer of overlay superblock `sb` whose private mount is `mnt` (0: the
/// upper layer), or `None` (`sb` is not an overlay, or `mnt` is none of its layers).
#[inline(always)]
fn layer_of(sb: u64, mnt: u64) -> Option<u64> {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let magic: u64 = unsafe { read(sb, o.sb_s_magic) }.unwrap_or(0);
    if magic != OVERLAYFS_SUPER_MAGIC {
        return None;
    }
    let ofs = unsafe { read_ptr(sb, o.sb_s_fs_info) }.unwrap_or(0);
    let layers = unsafe { read_ptr(ofs, o.ovl_fs_layers) }.unwrap_or(0);
    let n: u32 = unsafe { read(ofs, o.ovl_fs_numlayer) }.unwrap_or(0);
    if ofs == 0 || layers == 0 || n == 0 || n > MAX_LAYERS {
        return None;
    }
    let mut c = LayerSearch {
        layers,
        mnt,
        size: o.ovl_layer_size as u64,
        mnt_off: o.ovl_layer_mnt as u64,
        found: u64::MAX,
    };
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        bpf_loop(
            n,
            layer_step as *mut core::ffi::c_void,
            (&mut c as *mut LayerSearch).cast(),
            0,
        )
    };
    if c.found == u64::MAX {
        None
    } else {
        Some(c.found)
    }
}

/// `file`, the file of an existing mapping (`vm_area_struct.vm_file`), made executable by the
/// current task of container `m` (`mprotect`/`pkey_mprotect` with `PROT_EXEC`). A mapping of
/// an overlay file holds overlayfs's backing file, not the container's file. Since Linux 6.8
/// that file's path is the real one, on one layer's private mount: the layer is found from
/// that mount (the container's root overlay's `ovl_fs.layers`); before 6.8 its path is the
/// overlay's own (a "fake path") and the overlay inode is the path's. Upper layer (created or
/// changed in the container) is drift, a lower layer is the image's; any other file (a tmpfs,
/// a volume, a memfd) is judged as [`judge_mapping`] judges it (another filesystem: drift).
/// `file` 0 (the mapping could not be read) is drift (fail closed).
#[inline(always)]
pub(crate) fn judge_vma_file(m: &Membership, file: u64) -> Result<u32, i64> {
    if m.policy.drift_mode == 0 {
        return Ok(ACTION_ALLOWED);
    }
    let o = offsets();
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    let r = root::reference(m.cgroup_id, task);
    if file == 0 || r.flags & (EXEC_ROOT_NOT_OVERLAY | EXEC_ROOT_UNKNOWN) != 0 {
        return judge_mapping(m, file);
    }
    let f_path = file + o.file_f_path as u64;
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address. Unreadable fields fall
    // back to values that judge as drift.
    let mnt = unsafe { read_ptr(f_path, o.path_mnt) }.unwrap_or(0);
    let dentry = unsafe { read_ptr(f_path, o.path_dentry) }.unwrap_or(0);
    let dentry_sb = unsafe { read_ptr(dentry, o.dentry_d_sb) }.unwrap_or(0);
    let mut flags = EXEC_VIA_MMAP | r.flags;
    let (root_mnt, root_dentry) = if dentry_sb != 0 && dentry_sb == r.sb {
        // The overlay's own path: its inode says whether the file has an upper copy.
        let inode = unsafe { read_ptr(dentry, o.dentry_d_inode) }.unwrap_or(0);
        let upper: u64 = unsafe { read(inode, o.ovl_upperdentry_from_inode) }.unwrap_or(1);
        let nlink: u32 = unsafe { read(inode, o.inode_i_nlink) }.unwrap_or(0);
        if upper == 0 && nlink != 0 {
            return Ok(ACTION_ALLOWED);
        }
        if upper != 0 {
            flags |= EXEC_UPPER_LAYER;
        }
        if nlink == 0 {
            flags |= EXEC_UNLINKED;
        }
        (r.mnt, r.dentry)
    } else {
        match layer_of(r.sb, mnt) {
            None => return judge_mapping(m, file),
            // A lower layer: the image's own file.
            Some(layer) if layer != 0 => return Ok(ACTION_ALLOWED),
            Some(_) => {
                let inode = unsafe { read_ptr(file, o.file_f_inode) }.unwrap_or(0);
                let nlink: u32 = unsafe { read(inode, o.inode_i_nlink) }.unwrap_or(1);
                flags |= EXEC_UPPER_LAYER;
                if nlink == 0 {
                    flags |= EXEC_UNLINKED;
                }
                // The path inside the upper layer is the container's path (its root is `/`).
                let mnt_root = unsafe { read_ptr(mnt, o.vfsmount_mnt_root) }.unwrap_or(0);
                (mnt, mnt_root)
            }
        }
    };
    let ev = SCRATCH_MMAP.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    ev.flags = flags;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = 0;
    if mnt == 0
        || dentry == 0
        || root_dentry == 0
        || build_path(ev, mnt, dentry, root_mnt, root_dentry).is_err()
    {
        ev.flags |= EXEC_UNREADABLE;
    }
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, ppid_of(task));
    decide(ev, &m.policy);
    if ev.header.control != CONTROL_DRIFT {
        // On a drift allow list: not ours to report here.
        return Ok(ACTION_ALLOWED);
    }
    Ok(report(ev))
}

/// The current task of container `m` attaching to (or offering itself to, or writing into)
/// the process `target_tgid` (0: not known): under drift, a way to run code that was never in
/// the image inside an image process. Reports it and returns the action.
#[inline(always)]
pub(crate) fn judge_ptrace(m: &Membership, target_tgid: u32) -> Result<u32, i64> {
    if m.policy.drift_mode == 0 {
        return Ok(ACTION_ALLOWED);
    }
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    let ev = SCRATCH_MMAP.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, ppid_of(task));
    ev.flags = EXEC_VIA_PTRACE;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = target_tgid;
    ev.header.control = CONTROL_DRIFT;
    ev.header.action = action_for(m.policy.drift_mode);
    Ok(report(ev))
}

/// Whether the dentry is a `mem` file of procfs (`/proc/<pid>/mem`, `/proc/<pid>/task/<tid>/mem`).
/// A procfs name that cannot be read counts as `mem` (fail closed).
#[inline(always)]
pub(crate) fn is_proc_mem(dentry: u64) -> bool {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let magic =
        unsafe { read_ptr(dentry, o.dentry_d_sb).and_then(|sb| read::<u64>(sb, o.sb_s_magic)) };
    if magic != Ok(PROC_SUPER_MAGIC) {
        return false;
    }
    let Ok(name) = (unsafe { read::<u64>(dentry, o.dentry_d_name_name) }) else {
        return true;
    };
    let mut b = [0u8; 4];
    // SAFETY: a 4-byte destination.
    let r = unsafe { bpf_probe_read_kernel_str(b.as_mut_ptr().cast(), 4, name as *const _) };
    r != 4 || b == *b"mem\0"
}

/// `/proc/<pid>/mem` (`mnt`, `dentry`) opened for writing by the current task of container
/// `m`: writing into a process's code, its own included (`ptrace_access_check` does not run for
/// the caller's own thread group). Drift; reports it and returns the action.
#[inline(always)]
pub(crate) fn judge_proc_mem(m: &Membership, mnt: u64, dentry: u64) -> Result<u32, i64> {
    let ev = SCRATCH_MMAP.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    let r = root::reference(m.cgroup_id, task);
    ev.flags = EXEC_VIA_PROC_MEM | r.flags;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = 0;
    if build_path(ev, mnt, dentry, r.mnt, r.dentry).is_err() {
        ev.flags |= EXEC_UNREADABLE;
    }
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, 0);
    ev.header.control = CONTROL_DRIFT;
    ev.header.action = action_for(m.policy.drift_mode);
    emit::copy(&*ev);
    Ok(ev.header.action)
}

#[inline(always)]
fn report(ev: &ExecEvent) -> u32 {
    if ev.flags & EXEC_UNREADABLE != 0 {
        count(COUNTER_UNREADABLE);
    }
    emit::copy(ev);
    ev.header.action
}
