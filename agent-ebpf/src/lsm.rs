//! The BPF LSM backend: the same exec, file and network decisions as the fallbacks, taken in LSM
//! hooks so an enforced control fails the syscall with `EPERM` instead of killing the process
//! (exec) or needing userspace (file). Loaded only where the kernel runs BPF LSM
//! (`lsm=...,bpf`); the agent reports which backend each control is on.
//!
//! Fail-open/fail-closed, decided here once for all three hooks: a task outside a monitored
//! container is never denied (DESIGN.md, Safety), and when the kernel memory a decision needs
//! cannot be read the hook *allows* (fail open). A denial we cannot describe would block a
//! container for a reason nobody can see; the missing event (and `COUNTER_DENIES` not moving)
//! is the trace it leaves. An earlier LSM's denial (`retval != 0`) is always passed on.

use agent_common::{
    ExecEvent, FileEvent, ACTION_ALLOWED, ACTION_BLOCKED, CONTROL_FILE, COUNTER_DENIES,
    COUNTER_RINGBUF_DROPS, EVENT_EXEC, EVENT_FILE, EXEC_FROM_EXEC_SESSION, EXEC_ROOT_NOT_OVERLAY,
    FAMILY_INET, FAMILY_INET6, LIST_FILE_DENY, LIST_FILE_READ_ONLY, NET_LIST_ALLOW, NET_LIST_DENY,
    NET_OP_CONNECT, ORIGIN_EXEC_SESSION, PATH_BUF, PROTO_ANY, PROTO_TCP, PROTO_UDP,
    RULES_FILE_DENY, RULES_FILE_READ_ONLY, RULES_NET_ALLOW,
};
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_get_current_task},
    macros::{lsm, map},
    maps::PerCpuArray,
    programs::LsmContext,
};

use crate::{
    container::{self, action_for},
    emit,
    exec::{build_path, decide, describe_file, origin_of, path_listed},
    kernel::{fill_header, offsets, read, read_ptr},
    maps::{count, EVENTS, SCRATCH_EXEC},
    net,
};

/// `-EPERM`: what an LSM hook returns to deny.
const EPERM: i32 = -1;
const O_ACCMODE: u32 = 0o3;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;

/// Per-CPU scratch for the path of a file being opened: `file_open` runs inside syscalls of the
/// exec path too, so it must not share `SCRATCH_EXEC` with `bprm_check_security`.
#[map]
static SCRATCH_FILE: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    // Fail open on unreadable kernel memory (see the module comment).
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

    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let parent = unsafe { read_ptr(task, o.task_real_parent)? };
    let ppid: u32 = unsafe { read(parent, o.task_tgid)? };
    fill_header(&mut ev.header, EVENT_EXEC, m.cgroup_id, ppid);
    ev.flags = 0;
    ev.path_len = 0;
    ev.args_len = 0;

    let file = unsafe { read_ptr(bprm, o.bprm_file)? };
    describe_file(ev, task, file)?;

    if origin_of(ev.header.tgid, ppid, m.cgroup_id) == ORIGIN_EXEC_SESSION {
        ev.flags |= EXEC_FROM_EXEC_SESSION;
    }
    if ev.flags & EXEC_ROOT_NOT_OVERLAY == 0 {
        decide(ev, &m.policy);
    }
    // Only a blocked exec is reported here: it never reaches `sched_process_exec`. Allowed and
    // audited execs go on and the tp_btf program reports them once, with their argv.
    if ev.header.action != ACTION_BLOCKED {
        return Ok(0);
    }
    emit::copy(&*ev);
    Ok(verdict(ev.header.action))
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    // Fail open on unreadable kernel memory (see the module comment).
    try_file_open(&ctx).unwrap_or(0)
}

/// File deny and read-only rules: the path as seen from the task's root, matched like exec
/// paths (exact, `dir/*`, `dir/**`).
fn try_file_open(ctx: &LsmContext) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let p = &m.policy;
    if p.file_mode == 0 || p.rules & (RULES_FILE_DENY | RULES_FILE_READ_ONLY) == 0 {
        return Ok(0);
    }
    let file: u64 = ctx.arg(0);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let flags: u32 = unsafe { read(file, o.file_f_flags)? };
    let writes = flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC | O_APPEND) != 0;
    if p.rules & RULES_FILE_DENY == 0 && !writes {
        return Ok(0);
    }

    let ev = SCRATCH_FILE.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    ev.flags = 0;
    ev.path_len = 0;
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    let fs = unsafe { read_ptr(task, o.task_fs)? };
    let root_mnt = unsafe { read_ptr(fs, o.fs_root + o.path_mnt)? };
    let root_dentry = unsafe { read_ptr(fs, o.fs_root + o.path_dentry)? };
    let f_path = file + o.file_f_path as u64;
    let mnt = unsafe { read_ptr(f_path, o.path_mnt)? };
    let dentry = unsafe { read_ptr(f_path, o.path_dentry)? };
    build_path(ev, mnt, dentry, root_mnt, root_dentry)?;

    let matched = (p.rules & RULES_FILE_DENY != 0 && path_listed(ev, p.profile_id, LIST_FILE_DENY))
        || (writes
            && p.rules & RULES_FILE_READ_ONLY != 0
            && path_listed(ev, p.profile_id, LIST_FILE_READ_ONLY));
    if !matched {
        return Ok(0);
    }
    let action = action_for(p.file_mode);

    match EVENTS.reserve::<FileEvent>(0) {
        Some(mut entry) => {
            let out = entry.as_mut_ptr();
            // SAFETY: the reservation is ours until submitted; every field is written below.
            unsafe {
                let parent = read_ptr(task, o.task_real_parent).unwrap_or(0);
                let ppid: u32 = if parent == 0 {
                    0
                } else {
                    read(parent, o.task_tgid).unwrap_or(0)
                };
                fill_header(&mut (*out).header, EVENT_FILE, m.cgroup_id, ppid);
                (*out).header.control = CONTROL_FILE;
                (*out).header.action = action;
                (*out).open_flags = flags;
                (*out).path_len = ev.path_len;
                if bpf_probe_read_kernel_buf(ev.path.as_ptr(), &mut (*out).path).is_err() {
                    (*out).path = [0; PATH_BUF];
                    (*out).path_len = 0;
                }
            }
            emit::submit(entry);
        }
        None => count(COUNTER_RINGBUF_DROPS),
    }
    Ok(verdict(action))
}

#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(3);
    if retval != 0 {
        return retval;
    }
    // Fail open on unreadable kernel memory (see the module comment).
    try_socket_connect(&ctx).unwrap_or(0)
}

/// Egress allow/deny rules on `connect(2)`, matched by the same code as the cgroup programs.
fn try_socket_connect(ctx: &LsmContext) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let p = &m.policy;
    if p.net_mode == 0 {
        return Ok(0);
    }
    let sock: u64 = ctx.arg(0);
    let address: u64 = ctx.arg(1);
    let addrlen: i32 = ctx.arg(2);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address; the sockaddr was copied
    // into kernel memory by the syscall before this hook.
    let family: u16 = unsafe { read(address, 0)? };
    let mut fam = family as u32;
    let mut addr = [0u8; 16];
    let port = u16::from_be(unsafe { read::<u16>(address, 2)? });
    if fam == FAMILY_INET && addrlen >= 8 {
        addr[..4].copy_from_slice(&unsafe { read::<[u8; 4]>(address, 4)? });
    } else if fam == FAMILY_INET6 && addrlen >= 24 {
        let a: [u8; 16] = unsafe { read(address, 8)? };
        // An IPv4-mapped address (::ffff:a.b.c.d) on a dual-stack socket is IPv4 to the rules.
        if a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff {
            addr[..4].copy_from_slice(&a[12..16]);
            fam = FAMILY_INET;
        } else {
            addr = a;
        }
    } else {
        // AF_UNIX, AF_UNSPEC (disconnect) and the rest: not egress.
        return Ok(0);
    }
    let ty: u16 = unsafe { read(sock, o.socket_type)? };
    let proto = match ty {
        SOCK_STREAM => PROTO_TCP,
        SOCK_DGRAM => PROTO_UDP,
        _ => PROTO_ANY,
    };
    let violates = net::listed(p, NET_LIST_DENY, p.net_deny_count, fam, &addr, port, proto)
        || (p.rules & RULES_NET_ALLOW != 0
            && !net::listed(
                p,
                NET_LIST_ALLOW,
                p.net_allow_count,
                fam,
                &addr,
                port,
                proto,
            ));
    let action = if violates {
        action_for(p.net_mode)
    } else {
        ACTION_ALLOWED
    };
    // Only a blocked connect is reported here: the LSM hook runs before the cgroup connect
    // programs, which never see it. Allowed and audited connects go on and the cgroup programs
    // (attached on every host) report them once.
    if action == ACTION_BLOCKED {
        net::emit(m.cgroup_id, NET_OP_CONNECT, fam, proto, port, addr, action);
    }
    Ok(verdict(action))
}

/// What the hook returns for `action`, counting denials.
#[inline(always)]
fn verdict(action: u32) -> i32 {
    if action == ACTION_BLOCKED {
        count(COUNTER_DENIES);
        EPERM
    } else {
        0
    }
}
