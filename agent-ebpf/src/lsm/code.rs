//! Code that was not in the image, whatever door it comes through: `execve` of it
//! (`bprm_check_security`, once per binfmt stage, so a `#!` script is judged as itself), an
//! executable mapping of it (`mmap_file`, `file_mprotect`: the dynamic loader run on a dropped
//! file, `LD_PRELOAD`, `dlopen`, a memfd), and writing into another process (`ptrace` attach,
//! `PTRACE_TRACEME`, `/proc/<pid>/mem`, `process_vm_writev`: all pass `ptrace_access_check` with
//! `PTRACE_MODE_ATTACH`). All of it is the drift control.

use agent_common::{
    ExecEvent, ACTION_BLOCKED, COUNTER_UNREADABLE, EVENT_EXEC, EXEC_FROM_EXEC_SESSION,
    EXEC_ROOT_NOT_OVERLAY, EXEC_UNREADABLE, ORIGIN_EXEC_SESSION,
};
use aya_ebpf::{helpers::generated::bpf_get_current_task, macros::lsm, programs::LsmContext};

use super::verdict;
use crate::{
    container, emit,
    exec::{decide, describe_file, origin_of},
    injection::{judge_mapping, judge_ptrace, judge_vma_file, ppid_of},
    kernel::{fill_header, offsets, read, read_ptr},
    maps::{count, SCRATCH_EXEC},
};

const PROT_EXEC: u64 = 0x4;
const VM_EXEC: u64 = 0x4;
const PTRACE_MODE_ATTACH: u32 = 0x02;

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    try_bprm_check(&ctx).unwrap_or(0)
}

/// Drift, exec lists and `docker exec` sessions, decided exactly as `exec.rs` decides them
/// (same helpers), but before the new image replaces the old one. argv is not in the event:
/// it sits in the new, not yet installed mm; the tp_btf exec event of an allowed exec has it.
fn try_bprm_check(ctx: &LsmContext) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let bprm: u64 = ctx.arg(0);
    let o = offsets();
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };

    let ev = SCRATCH_EXEC.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, ppid_of(task));
    ev.flags = 0;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = 0;

    // SAFETY (read): bpf_probe_read_kernel tolerates any address.
    let file = unsafe { read_ptr(bprm, o.bprm_file) }.unwrap_or(0);
    describe_file(ev, task, file, Some(m.cgroup_id));

    if origin_of(ev.header.tgid, ev.header.ppid, m.cgroup_id).0 == ORIGIN_EXEC_SESSION {
        ev.flags |= EXEC_FROM_EXEC_SESSION;
    }
    if ev.flags & EXEC_ROOT_NOT_OVERLAY == 0 {
        decide(ev, &m.policy);
    }
    crate::assurance::refuse(ev, m.cgroup_id);
    // Only a blocked exec is reported here: it never reaches `sched_process_exec`. Allowed and
    // audited execs go on and the tp_btf program reports them once, with their argv.
    if ev.header.action != ACTION_BLOCKED {
        return Ok(0);
    }
    if ev.flags & EXEC_UNREADABLE != 0 {
        count(COUNTER_UNREADABLE);
    }
    emit::copy(&*ev);
    Ok(verdict(ev.header.action))
}

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(4);
    if retval != 0 {
        return retval;
    }
    let file: u64 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    // Cheap filters first: this hook runs for every mmap on the host.
    if file == 0 || prot & PROT_EXEC == 0 {
        return 0;
    }
    try_exec_mapping(file).unwrap_or(0)
}

#[lsm(hook = "file_mprotect")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(3);
    if retval != 0 {
        return retval;
    }
    let vma: u64 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let (file, vm_flags) = unsafe {
        (
            read::<u64>(vma, o.vma_vm_file).unwrap_or(0),
            read::<u64>(vma, o.vma_vm_flags).unwrap_or(0),
        )
    };
    // Anonymous memory made executable is a JIT's (not covered, see the README); a mapping
    // that is executable already was judged when it was mapped.
    if file == 0 || vm_flags & VM_EXEC != 0 {
        return 0;
    }
    // A mapping's file is overlayfs's backing file (since 4.19), not the container's file
    // `mmap_file` saw: judged by its layer, as the fallback's mprotect hook does.
    let Some(m) = container::current() else {
        return 0;
    };
    judge_vma_file(&m, file).map(verdict).unwrap_or(0)
}

/// A file mapped executable by a container task: refused when it is drift (`injection.rs`).
#[inline(always)]
fn try_exec_mapping(file: u64) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    judge_mapping(&m, file).map(verdict)
}

#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(2);
    if retval != 0 {
        return retval;
    }
    let child: u64 = ctx.arg(0);
    let mode: u32 = ctx.arg(1);
    // Reading another process's memory map or environment (`ps`, `/proc/<pid>/environ`) asks
    // for PTRACE_MODE_READ only; writing into it needs ATTACH.
    if mode & PTRACE_MODE_ATTACH == 0 {
        return 0;
    }
    try_ptrace(child).unwrap_or(0)
}

#[lsm(hook = "ptrace_traceme")]
pub fn ptrace_traceme(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    // The tracer-to-be is the parent; the target is the current task itself.
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    try_ptrace(task).unwrap_or(0)
}

/// Attaching to (or offering oneself to) a tracer from inside a container: refused under
/// drift (`injection.rs`).
fn try_ptrace(target: u64) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    // SAFETY (read): bpf_probe_read_kernel tolerates any address.
    let target_tgid = unsafe { read::<u32>(target, offsets().task_tgid) }.unwrap_or(0);
    judge_ptrace(&m, target_tgid).map(verdict)
}
