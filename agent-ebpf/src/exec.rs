//! Exec: visibility, drift, exec allow/deny lists and `docker exec` sessions, decided at
//! `sched_process_exec` (tp_btf). This is the fallback enforcement backend: when a control in
//! enforce mode matches, `bpf_send_signal(SIGKILL)` kills the new image before it runs a single
//! user instruction (the signal is delivered on the return to user mode); the parent sees 137.

use agent_common::{
    ExecEvent, ACTION_ALLOWED, ACTION_BLOCKED, ARGS_BUF, CONTROL_CONTAINER_EXEC, CONTROL_DRIFT,
    CONTROL_EXEC, COUNTER_HELD_FULL, COUNTER_INIT_FULL, COUNTER_KILLS, COUNTER_ORIGIN_FULL,
    COUNTER_UNREADABLE, EVENT_EXEC, EXEC_ARGS_TRUNCATED, EXEC_DRIFT_FLAGS, EXEC_FILE_DRIFT_FLAGS,
    EXEC_FOREIGN_FS, EXEC_FROM_EXEC_SESSION, EXEC_HELD, EXEC_LOADER, EXEC_ORIGIN_UNKNOWN,
    EXEC_OUTSIDE_ROOT, EXEC_PATH_TRUNCATED, EXEC_PATH_UNTRUSTED, EXEC_ROOT_NOT_OVERLAY,
    EXEC_SCRIPT_VIA_FD, EXEC_UNLINKED, EXEC_UNREADABLE, EXEC_UPPER_LAYER, HEARTBEAT_FRESH_NS,
    LIST_DRIFT_ALLOW, LIST_EXEC_ALLOW, LIST_EXEC_DENY, ORIGIN_EXEC_SESSION, ORIGIN_INIT,
    ORIGIN_UNKNOWN, OVERLAYFS_SUPER_MAGIC, RULES_DRIFT_ALLOW, RULES_EXEC_ALLOW, RULES_EXEC_DENY,
    RULES_EXEC_DENY_TREES, RULES_HOLD_FIRST_EXEC,
};
use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user, bpf_send_signal},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    container::{self, action_for},
    emit::{self, Context},
    kernel::{fill_header, host_events, offsets, read, read_ptr},
    maps::{
        count, lsm_active, AGENT_HEARTBEAT, CONTAINER_INIT, HELD_EXECS, SCRATCH_EXEC, TASK_ORIGIN,
    },
    root,
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
    let ppid: u32 = unsafe { read_ptr(task, o.task_real_parent) }
        .and_then(|parent| unsafe { read(parent, o.task_tgid) })
        .unwrap_or(0);
    let ccg = member.as_ref().map(|m| m.cgroup_id).unwrap_or(0);
    fill_header(&mut ev.header, EVENT_EXEC, ccg, ppid);
    ev.flags = 0;
    ev.path_len = 0;
    ev.args_len = 0;
    ev.target_tgid = 0;

    let file = unsafe { read_ptr(bprm, o.bprm_file) }.unwrap_or(0);
    describe_file(ev, task, file, member.as_ref().map(|m| m.cgroup_id));
    let _ = read_args(ev, task);

    if let Some(m) = member {
        // The runtime's own exec inside the new cgroup, before the container has started and
        // in the root it was forked with (see `root::same_as_parent`): nothing of the
        // container runs yet, so there is nothing to decide (its root is not the container's),
        // it is not the container's init, and it is never held. Holding it would stop the
        // runtime half-way through creating the container, and an engine that locks the
        // container meanwhile (podman) could not describe it: the container's real first exec
        // would then wait for the engine in vain. The container's init is its first exec
        // after that, the one that entered its root, and that is the exec held.
        let runtime_exec =
            ev.flags & EXEC_ROOT_NOT_OVERLAY != 0 && crate::root::same_as_parent(task);
        let (origin, first_exec) = if runtime_exec {
            (ORIGIN_INIT, false)
        } else {
            origin_of(ev.header.tgid, ppid, m.cgroup_id)
        };
        if origin == ORIGIN_EXEC_SESSION {
            ev.flags |= EXEC_FROM_EXEC_SESSION;
        } else if origin == ORIGIN_UNKNOWN {
            ev.flags |= EXEC_ORIGIN_UNKNOWN;
        }
        if ev.flags & EXEC_ROOT_NOT_OVERLAY == 0 {
            if m.policy.drift_mode != 0 && !lsm_active() {
                // What only the fallback needs: BPF LSM sees every mapped file and every stage
                // of a script, so these heuristics stand down where it is live.
                fallback_doors(ev, bprm, file, task, &m.policy);
            }
            decide(ev, &m.policy);
        }
        crate::assurance::refuse(ev, m.cgroup_id);
        if ev.flags & EXEC_UNREADABLE != 0 {
            count(COUNTER_UNREADABLE);
        }
        if ev.header.action == ACTION_BLOCKED {
            // SAFETY: plain helper call; signals the current task only, which the gate above
            // proved is in a monitored container.
            unsafe { bpf_send_signal(SIGKILL) };
            count(COUNTER_KILLS);
        } else if !runtime_exec
            && agent_alive()
            && (!m.configured || (m.policy.rules & RULES_HOLD_FIRST_EXEC != 0 && first_exec))
        {
            // A container younger than its own policy, or one whose kernel-enforced mounts the
            // agent makes at its first exec: stop the new image before its first instruction
            // and let the agent finish. Only while the agent is alive (fresh heartbeat), so no
            // process waits for nobody, and only once the hold is recorded where any agent
            // finds it (HELD_EXECS), so a lost ring record or a dead agent never strands it:
            // the agent sweeps that map.
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

/// Sets the `EXEC_*` drift flags of `file` (about to run in `task`) and its path from the
/// container's root. Never fails: what cannot be read is flagged `EXEC_UNREADABLE`, which
/// counts as drift and matches no allow list. Shared with the BPF LSM backend (`lsm/`) so
/// both take the same decision. `container` is `None` for host processes (events only).
#[inline(always)]
pub(crate) fn describe_file(ev: &mut ExecEvent, task: u64, file: u64, container: Option<u64>) {
    let o = offsets();
    let root = match container {
        Some(cg) => root::reference(cg, task),
        None => root::host(task),
    };
    ev.flags |= root.flags;
    if file == 0 {
        ev.flags |= EXEC_UNREADABLE;
        return;
    }
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address. Each read falls back to a
    // defined value and a flag (no `Result` carried across helper calls: the verifier refuses
    // code that may compare an uninitialised register).
    let inode = unsafe { read_ptr(file, o.file_f_inode) }.unwrap_or(0);
    let sb = if inode == 0 {
        0
    } else {
        unsafe { read_ptr(inode, o.inode_i_sb) }.unwrap_or(0)
    };
    let magic: u64 = if sb == 0 {
        0
    } else {
        unsafe { read(sb, o.sb_s_magic) }.unwrap_or(0)
    };
    let nlink: u32 = if inode == 0 {
        1
    } else {
        unsafe { read(inode, o.inode_i_nlink) }.unwrap_or(1)
    };
    if inode == 0 || sb == 0 || magic == 0 {
        ev.flags |= EXEC_UNREADABLE;
    } else if root.flags & EXEC_ROOT_NOT_OVERLAY == 0 {
        if sb != root.sb {
            ev.flags |= EXEC_FOREIGN_FS;
        } else if magic == OVERLAYFS_SUPER_MAGIC {
            let upper: u64 = unsafe { read(inode, o.ovl_upperdentry_from_inode) }.unwrap_or(1);
            if upper != 0 {
                ev.flags |= EXEC_UPPER_LAYER;
            }
        }
        if nlink == 0 {
            ev.flags |= EXEC_UNLINKED;
        }
    }
    let f_path = file + o.file_f_path as u64;
    let mnt = unsafe { read_ptr(f_path, o.path_mnt) }.unwrap_or(0);
    let dentry = unsafe { read_ptr(f_path, o.path_dentry) }.unwrap_or(0);
    if mnt == 0 || dentry == 0 || build_path(ev, mnt, dentry, root.mnt, root.dentry).is_err() {
        ev.flags |= EXEC_UNREADABLE;
    }
}

/// Drift first (the strongest signal), then the exec lists, then `docker exec` sessions. A path
/// that cannot be trusted (truncated, outside the root, unreadable) matches no allow list and
/// counts as matching a deny list: uncertainty never lets an exec through.
#[inline(always)]
pub(crate) fn decide(ev: &mut ExecEvent, p: &agent_common::ContainerPolicy) {
    let untrusted = ev.flags & EXEC_PATH_UNTRUSTED != 0;
    let file_drift = ev.flags & EXEC_FILE_DRIFT_FLAGS != 0;
    let door_drift = ev.flags & (EXEC_DRIFT_FLAGS & !EXEC_FILE_DRIFT_FLAGS) != 0;
    let drift_allowed = file_drift
        && !untrusted
        && p.rules & RULES_DRIFT_ALLOW != 0
        && path_listed(ev, p.profile_id, LIST_DRIFT_ALLOW);
    if p.drift_mode != 0 && ((file_drift && !drift_allowed) || door_drift) {
        ev.header.control = CONTROL_DRIFT;
        ev.header.action = action_for(p.drift_mode);
        return;
    }
    if p.exec_mode != 0 {
        let denied = p.rules & RULES_EXEC_DENY != 0
            && ((untrusted && p.rules & RULES_EXEC_DENY_TREES != 0)
                || path_listed(ev, p.profile_id, LIST_EXEC_DENY));
        let not_allowed = p.rules & RULES_EXEC_ALLOW != 0
            && (untrusted || !path_listed(ev, p.profile_id, LIST_EXEC_ALLOW));
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

/// The doors the fallback cannot watch once the new image runs, judged at exec: the dynamic
/// loader run as a program (it maps whatever its argument names), `LD_PRELOAD`/`LD_AUDIT`/
/// `LD_LIBRARY_PATH` naming what the drift allow list does not, and a script run through a
/// descriptor path (its file is unseen: memfd, deleted).
#[inline(always)]
fn fallback_doors(
    ev: &mut ExecEvent,
    bprm: u64,
    file: u64,
    task: u64,
    p: &agent_common::ContainerPolicy,
) {
    let o = offsets();
    if file != 0 && is_loader(file) {
        let allowed = ev.flags & EXEC_PATH_UNTRUSTED == 0
            && p.rules & RULES_DRIFT_ALLOW != 0
            && path_listed(ev, p.profile_id, LIST_DRIFT_ALLOW);
        if !allowed {
            ev.flags |= EXEC_LOADER;
        }
    }
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let filename: u64 = unsafe { read(bprm, o.bprm_filename) }.unwrap_or(0);
    let interp: u64 = unsafe { read(bprm, o.bprm_interp) }.unwrap_or(0);
    if filename == 0 || interp == 0 {
        ev.flags |= EXEC_UNREADABLE;
    } else if filename != interp && via_descriptor(filename) {
        ev.flags |= EXEC_SCRIPT_VIA_FD;
    }
    ev.flags |= crate::env::scan(task, p);
}

/// Whether the file's name is the dynamic loader's: `ld-*.so*`, `ld.so*` (glibc) or
/// `ld-musl-*`/`libc.musl-*` (musl). An image file keeps its image name: renaming or linking it
/// in the container copies it up, and then it is drift anyway.
#[inline(always)]
fn is_loader(file: u64) -> bool {
    let o = offsets();
    let mut name = [0u8; 16];
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let Ok(dentry) = (unsafe { read_ptr(file + o.file_f_path as u64, o.path_dentry) }) else {
        return false;
    };
    let Ok(ptr) = (unsafe { read::<u64>(dentry, o.dentry_d_name_name) }) else {
        return false;
    };
    // SAFETY: a 16-byte destination.
    let r = unsafe {
        bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), name.len() as u32, ptr as *const _)
    };
    if r <= 3 {
        return false;
    }
    name.starts_with(b"ld-") || name.starts_with(b"ld.so") || name.starts_with(b"libc.musl-")
}

/// Whether the name `execve` was given is a descriptor path (`/dev/fd/N`, `/proc/…/fd/N`).
#[inline(always)]
fn via_descriptor(filename: u64) -> bool {
    let mut head = [0u8; 8];
    // SAFETY: an 8-byte destination; the name is a kernel copy of the execve argument.
    let r = unsafe {
        bpf_probe_read_kernel_str(
            head.as_mut_ptr().cast(),
            head.len() as u32,
            filename as *const _,
        )
    };
    r > 6 && (head.starts_with(b"/dev/fd") || head.starts_with(b"/proc/"))
}

/// How this process came into its container, and whether this is the container's very first
/// exec. A process the maps do not know yet entered it from outside: the first one is the
/// container's init, every later one a `docker exec`. Full maps never make an init or its
/// descendants look like a `docker exec` session: a process whose parent has an origin
/// inherits it (its own entry was lost to a full `TASK_ORIGIN` at fork), and when
/// `CONTAINER_INIT` is full the origin is unknown.
#[inline(always)]
pub(crate) fn origin_of(tgid: u32, ppid: u32, container: u64) -> (u32, bool) {
    // SAFETY: the value is copied out at once.
    if let Some(o) = unsafe { TASK_ORIGIN.get(tgid) } {
        return (*o, false);
    }
    const BPF_NOEXIST: u64 = 1;
    const EEXIST: i64 = 17;
    let mut first = false;
    // SAFETY: as above.
    let origin = if let Some(o) = unsafe { TASK_ORIGIN.get(ppid) } {
        *o
    } else {
        match CONTAINER_INIT.insert(container, tgid, BPF_NOEXIST) {
            Ok(()) => {
                first = true;
                ORIGIN_INIT
            }
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
    (origin, first)
}

/// Whether the event's path is on `list` of `profile` (see `walk::path_listed`).
#[inline(always)]
pub(crate) fn path_listed(ev: &ExecEvent, profile_id: u32, list: u32) -> bool {
    crate::walk::path_listed(&ev.path, ev.path_len, profile_id, list)
}

/// Builds the path of (`mnt`, `dentry`) from the root (`root_mnt`, `root_dentry`) into `ev.path`.
#[inline(always)]
pub(crate) fn build_path(
    ev: &mut ExecEvent,
    vfsmnt: u64,
    dentry: u64,
    root_mnt: u64,
    root_dentry: u64,
) -> Result<(), i64> {
    let w = crate::walk::build_path(&mut ev.path, vfsmnt, dentry, root_mnt, root_dentry)?;
    ev.path_len = w.len;
    if w.truncated {
        ev.flags |= EXEC_PATH_TRUNCATED;
    }
    if w.outside_root {
        ev.flags |= EXEC_OUTSIDE_ROOT;
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
