//! Exec: visibility, drift, exec allow/deny lists and `docker exec` sessions, decided at
//! `sched_process_exec` (tp_btf). This is the fallback enforcement backend: when a control in
//! enforce mode matches, `bpf_send_signal(SIGKILL)` kills the new image before it runs a single
//! user instruction (the signal is delivered on the return to user mode); the parent sees 137.

use agent_common::{
    ExecEvent, ACTION_ALLOWED, ACTION_BLOCKED, ARGS_BUF, CONTROL_CONTAINER_EXEC, CONTROL_DRIFT,
    CONTROL_EXEC, COUNTER_HELD_FULL, COUNTER_INIT_FULL, COUNTER_KILLS, COUNTER_ORIGIN_FULL,
    EVENT_EXEC, EXEC_ARGS_TRUNCATED, EXEC_FOREIGN_FS, EXEC_FROM_EXEC_SESSION, EXEC_HELD,
    EXEC_ORIGIN_UNKNOWN, EXEC_PATH_TRUNCATED, EXEC_ROOT_NOT_OVERLAY, EXEC_UNLINKED,
    EXEC_UPPER_LAYER, HEARTBEAT_FRESH_NS, LIST_DRIFT_ALLOW, LIST_EXEC_ALLOW, LIST_EXEC_DENY,
    ORIGIN_EXEC_SESSION, ORIGIN_INIT, ORIGIN_UNKNOWN, OVERLAYFS_SUPER_MAGIC, RULES_DRIFT_ALLOW,
    RULES_EXEC_ALLOW, RULES_EXEC_DENY,
};
use aya_ebpf::{
    helpers::generated::{bpf_probe_read_user, bpf_send_signal},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    container::{self, action_for},
    emit::{self, Context},
    kernel::{fill_header, host_events, offsets, read, read_ptr},
    maps::{count, AGENT_HEARTBEAT, CONTAINER_INIT, HELD_EXECS, SCRATCH_EXEC, TASK_ORIGIN},
};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// Whether the agent's heartbeat is fresh.
#[inline(always)]
fn agent_alive() -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() };
    match AGENT_HEARTBEAT.get(0) {
        Some(&t) => t != 0 && now.saturating_sub(t) < HEARTBEAT_FRESH_NS,
        None => false,
    }
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    // A failure to read kernel memory leaves the exec alone: this hook cannot block anything
    // it could not describe (fail open, reported by the missing event).
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let member = container::current();
    if member.is_none() && !host_events() {
        return Ok(());
    }
    let task: u64 = ctx.arg(0);
    let bprm: u64 = ctx.arg(2);
    let o = offsets();

    let ev = SCRATCH_EXEC.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };

    // SAFETY (all reads below): bpf_probe_read_kernel tolerates any address.
    let parent = unsafe { read_ptr(task, o.task_real_parent)? };
    let ppid: u32 = unsafe { read(parent, o.task_tgid)? };
    let ccg = member.as_ref().map(|m| m.cgroup_id).unwrap_or(0);
    fill_header(&mut ev.header, EVENT_EXEC, ccg, ppid);
    ev.flags = 0;
    ev.path_len = 0;
    ev.args_len = 0;

    let file = unsafe { read_ptr(bprm, o.bprm_file)? };
    describe_file(ev, task, file)?;
    read_args(ev, task)?;

    if let Some(m) = member {
        let origin = origin_of(ev.header.tgid, ppid, m.cgroup_id);
        if origin == ORIGIN_EXEC_SESSION {
            ev.flags |= EXEC_FROM_EXEC_SESSION;
        } else if origin == ORIGIN_UNKNOWN {
            ev.flags |= EXEC_ORIGIN_UNKNOWN;
        }
        if ev.flags & EXEC_ROOT_NOT_OVERLAY == 0 {
            decide(ev, &m.policy);
        }
        if ev.header.action == ACTION_BLOCKED {
            // SAFETY: plain helper call; signals the current task only, which the gate above
            // proved is in a monitored container.
            unsafe { bpf_send_signal(SIGKILL) };
            count(COUNTER_KILLS);
        } else if !m.configured && agent_alive() {
            // A container younger than its own policy: stop the new image before its first
            // instruction and let the agent decide under the container's real profile. Only
            // while the agent is alive (fresh heartbeat), so no process waits for nobody, and
            // only once the hold is recorded where any agent finds it (HELD_EXECS), so a lost
            // ring record or a dead agent never strands it: the agent sweeps that map.
            ev.flags |= EXEC_HELD;
            // By reference: a copy of the record would not fit the 512-byte stack.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let recorded = HELD_EXECS.insert(ev.header.tgid, &*ev, 0).is_ok();
            if recorded {
                // SAFETY: as above, the current task of a monitored container.
                unsafe { bpf_send_signal(SIGSTOP) };
            } else {
                // Full: run on under the default policy already decided above.
                ev.flags &= !EXEC_HELD;
                count(COUNTER_HELD_FULL);
            }
        }
    }

    let critical = ev.flags & EXEC_HELD != 0;
    if emit::admit(ccg, EVENT_EXEC, ev.header.action, critical, Context::Task) {
        emit::copy(&*ev);
    }
    Ok(())
}

/// Sets the `EXEC_*` drift flags of `file` (about to run in `task`) and its path as seen from
/// the task's root. Shared with the BPF LSM backend (`lsm.rs`) so both take the same decision.
#[inline(always)]
pub(crate) fn describe_file(ev: &mut ExecEvent, task: u64, file: u64) -> Result<(), i64> {
    let o = offsets();
    // The executed file and where it lives.
    let inode = unsafe { read_ptr(file, o.file_f_inode)? };
    let sb = unsafe { read_ptr(inode, o.inode_i_sb)? };
    let magic: u64 = unsafe { read(sb, o.sb_s_magic)? };
    let nlink: u32 = unsafe { read(inode, o.inode_i_nlink)? };

    // The process's root: the container's overlay once it has pivoted into it.
    let fs = unsafe { read_ptr(task, o.task_fs)? };
    let root_mnt = unsafe { read_ptr(fs, o.fs_root + o.path_mnt)? };
    let root_dentry = unsafe { read_ptr(fs, o.fs_root + o.path_dentry)? };
    let root_sb = unsafe { read_ptr(root_dentry, o.dentry_d_sb)? };
    let root_magic: u64 = unsafe { read(root_sb, o.sb_s_magic)? };

    if root_magic != OVERLAYFS_SUPER_MAGIC {
        // Not (yet) inside an overlay root, e.g. the runtime's own helper joining the cgroup
        // before it enters the container's mount namespace: drift and path rules do not apply.
        ev.flags |= EXEC_ROOT_NOT_OVERLAY;
    } else {
        if sb != root_sb {
            ev.flags |= EXEC_FOREIGN_FS;
        } else if magic == OVERLAYFS_SUPER_MAGIC {
            let upper: u64 = unsafe { read(inode, o.ovl_upperdentry_from_inode)? };
            if upper != 0 {
                ev.flags |= EXEC_UPPER_LAYER;
            }
        }
        if nlink == 0 {
            ev.flags |= EXEC_UNLINKED;
        }
    }

    let f_path = file + o.file_f_path as u64;
    let mnt = unsafe { read_ptr(f_path, o.path_mnt)? };
    let dentry = unsafe { read_ptr(f_path, o.path_dentry)? };
    build_path(ev, mnt, dentry, root_mnt, root_dentry)?;
    Ok(())
}

/// Drift first (the strongest signal), then the exec lists, then `docker exec` sessions.
#[inline(always)]
pub(crate) fn decide(ev: &mut ExecEvent, p: &agent_common::ContainerPolicy) {
    let drift = ev.flags & (EXEC_UPPER_LAYER | EXEC_FOREIGN_FS | EXEC_UNLINKED) != 0;
    if p.drift_mode != 0
        && drift
        && !(p.rules & RULES_DRIFT_ALLOW != 0 && path_listed(ev, p.profile_id, LIST_DRIFT_ALLOW))
    {
        ev.header.control = CONTROL_DRIFT;
        ev.header.action = action_for(p.drift_mode);
        return;
    }
    if p.exec_mode != 0 {
        let denied =
            p.rules & RULES_EXEC_DENY != 0 && path_listed(ev, p.profile_id, LIST_EXEC_DENY);
        let not_allowed =
            p.rules & RULES_EXEC_ALLOW != 0 && !path_listed(ev, p.profile_id, LIST_EXEC_ALLOW);
        if denied || not_allowed {
            ev.header.control = CONTROL_EXEC;
            ev.header.action = action_for(p.exec_mode);
            return;
        }
    }
    if p.container_exec_mode != 0 && ev.flags & EXEC_FROM_EXEC_SESSION != 0 {
        ev.header.control = CONTROL_CONTAINER_EXEC;
        ev.header.action = action_for(p.container_exec_mode);
        return;
    }
    ev.header.action = ACTION_ALLOWED;
}

/// How this process came into its container. A process the maps do not know yet entered it
/// from outside: the first one is the container's init, every later one a `docker exec`.
/// Full maps never make an init or its descendants look like a `docker exec` session: a
/// process whose parent has an origin inherits it (its own entry was lost to a full
/// `TASK_ORIGIN` at fork), and when `CONTAINER_INIT` is full the origin is unknown.
#[inline(always)]
pub(crate) fn origin_of(tgid: u32, ppid: u32, container: u64) -> u32 {
    // SAFETY: the value is copied out at once.
    if let Some(o) = unsafe { TASK_ORIGIN.get(tgid) } {
        return *o;
    }
    const BPF_NOEXIST: u64 = 1;
    const EEXIST: i64 = 17;
    // SAFETY: as above.
    let origin = if let Some(o) = unsafe { TASK_ORIGIN.get(ppid) } {
        *o
    } else {
        match CONTAINER_INIT.insert(container, tgid, BPF_NOEXIST) {
            Ok(()) => ORIGIN_INIT,
            Err(e) if e as i64 == -EEXIST => ORIGIN_EXEC_SESSION,
            Err(_) => {
                count(COUNTER_INIT_FULL);
                ORIGIN_UNKNOWN
            }
        }
    };
    if TASK_ORIGIN.insert(tgid, origin, 0).is_err() {
        count(COUNTER_ORIGIN_FULL);
    }
    origin
}

/// Whether the event's path is on `list` of `profile` (see `walk::path_listed`).
#[inline(always)]
pub(crate) fn path_listed(ev: &ExecEvent, profile_id: u32, list: u32) -> bool {
    crate::walk::path_listed(&ev.path, ev.path_len, profile_id, list)
}

/// Builds the path of (`mnt`, `dentry`) as seen from the process's root into `ev.path`.
#[inline(always)]
pub(crate) fn build_path(
    ev: &mut ExecEvent,
    vfsmnt: u64,
    dentry: u64,
    root_mnt: u64,
    root_dentry: u64,
) -> Result<(), i64> {
    let (len, truncated) =
        crate::walk::build_path(&mut ev.path, vfsmnt, dentry, root_mnt, root_dentry)?;
    ev.path_len = len;
    if truncated {
        ev.flags |= EXEC_PATH_TRUNCATED;
    }
    Ok(())
}

#[inline(always)]
fn read_args(ev: &mut ExecEvent, task: u64) -> Result<(), i64> {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let mm = unsafe { read_ptr(task, o.task_mm)? };
    let start: u64 = unsafe { read(mm, o.mm_arg_start)? };
    let end: u64 = unsafe { read(mm, o.mm_arg_end)? };
    if end <= start {
        return Ok(());
    }
    let mut len = end - start;
    if len > (ARGS_BUF - 1) as u64 {
        len = (ARGS_BUF - 1) as u64;
        ev.flags |= EXEC_ARGS_TRUNCATED;
    }
    let len = (len as u32) & (ARGS_BUF as u32 - 1);
    if len == 0 {
        return Ok(());
    }
    // SAFETY: len < ARGS_BUF; reading the current task's own user memory.
    let r = unsafe { bpf_probe_read_user(ev.args.as_mut_ptr().cast(), len, start as *const _) };
    if r == 0 {
        ev.args_len = len;
    }
    Ok(())
}

#[allow(dead_code)]
const _: () = assert!(ORIGIN_INIT != ORIGIN_EXEC_SESSION);
