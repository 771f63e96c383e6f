//! Fork and exit, so the agent keeps its process table, and so a process's origin (container
//! init or `docker exec` session) passes to its children.

use agent_common::{
    ExitEvent, ForkEvent, ACTION_ALLOWED, COUNTER_ORIGIN_FULL, EVENT_EXIT, EVENT_FORK,
};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    container,
    emit::{self, Context},
    kernel::{fill_header, host_events, offsets, read, read_ptr},
    maps::{count, HELD_EXECS, TASK_ORIGIN},
};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let child_pid: u32 = unsafe { read(child, o.task_pid)? };
    let child_tgid: u32 = unsafe { read(child, o.task_tgid)? };
    if child_pid != child_tgid {
        return Ok(()); // a thread, not a process
    }
    let parent_tgid: u32 = unsafe { read(parent, o.task_tgid)? };
    // SAFETY: copied out at once.
    if let Some(origin) = unsafe { TASK_ORIGIN.get(parent_tgid) }.copied() {
        if TASK_ORIGIN.insert(child_tgid, origin, 0).is_err() {
            count(COUNTER_ORIGIN_FULL);
        }
    }
    let member = container::current();
    if member.is_none() && !host_events() {
        return Ok(());
    }
    let grandparent = unsafe { read_ptr(parent, o.task_real_parent)? };
    let ppid: u32 = unsafe { read(grandparent, o.task_tgid)? };
    let mut ev = ForkEvent {
        header: unsafe { core::mem::zeroed() },
        child_tgid,
        _pad: 0,
    };
    let container = member.map(|m| m.cgroup_id).unwrap_or(0);
    fill_header(&mut ev.header, EVENT_FORK, container, ppid);
    if emit::admit(container, EVENT_FORK, ACTION_ALLOWED, false, Context::Task) {
        emit::copy(&ev);
    }
    Ok(())
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let task: u64 = ctx.arg(0);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let pid: u32 = unsafe { read(task, o.task_pid)? };
    let tgid: u32 = unsafe { read(task, o.task_tgid)? };
    if pid != tgid {
        return Ok(());
    }
    let _ = TASK_ORIGIN.remove(tgid);
    // A held process that dies (killed while stopped) leaves nothing for the agent to decide.
    let _ = HELD_EXECS.remove(tgid);
    let member = container::current();
    if member.is_none() && !host_events() {
        return Ok(());
    }
    let parent = unsafe { read_ptr(task, o.task_real_parent)? };
    let ppid: u32 = unsafe { read(parent, o.task_tgid)? };
    let exit_code: u32 = unsafe { read(task, o.task_exit_code)? };
    let mut ev = ExitEvent {
        header: unsafe { core::mem::zeroed() },
        exit_code,
        _pad: 0,
    };
    let container = member.map(|m| m.cgroup_id).unwrap_or(0);
    fill_header(&mut ev.header, EVENT_EXIT, container, ppid);
    if emit::admit(container, EVENT_EXIT, ACTION_ALLOWED, false, Context::Task) {
        emit::copy(&ev);
    }
    Ok(())
}
