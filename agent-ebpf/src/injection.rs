//! Code that did not come in through `execve`: a file mapped executable, and writing into
//! another process (`ptrace`, `process_vm_writev`) or into any process's memory through
//! `/proc/<pid>/mem`. One decision, the drift control's, shared by
//! the BPF LSM hooks (`lsm/code.rs`, which fail the syscall with `EPERM`) and the fallback's
//! opt-in syscall hooks (`syscalls.rs`, which kill the caller), so both backends report the
//! same event for the same door.

use agent_common::{
    ExecEvent, ACTION_ALLOWED, CONTROL_DRIFT, COUNTER_UNREADABLE, EVENT_EXEC, EXEC_DRIFT_FLAGS,
    EXEC_ROOT_NOT_OVERLAY, EXEC_UNREADABLE, EXEC_VIA_MMAP, EXEC_VIA_PROC_MEM, EXEC_VIA_PTRACE,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_probe_read_kernel_str},
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
