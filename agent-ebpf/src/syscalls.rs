//! The fallback's opt-in syscall hooks (`fallback_syscall_hooks`): the doors that only a BPF
//! LSM hook sees otherwise, watched from syscall tracepoints on hosts without BPF LSM. Any
//! syscall tracepoint puts every syscall of every task on the host on the slow path (DESIGN.md,
//! "What each hook costs"), so the agent attaches these only when asked, and never where BPF LSM
//! is the backend.
//!
//! A tracepoint cannot fail a syscall: in enforce mode the caller is killed
//! (`bpf_send_signal(SIGKILL)`, the whole thread group) and the event says blocked; in audit
//! mode the event says audited. Every program is gated first on membership of a monitored
//! container, then on the control's mode. The doors and why a kill stops them:
//! - `ptrace` (any request: attach, seize, traceme, poke…): killed at entry, before the kernel
//!   acts; no poke can follow an attach whose tracer died. Drift, as `ptrace_access_check`.
//! - `process_vm_writev`: killed at entry; with `SIGKILL` pending the kernel's page pinning of
//!   the target (`__get_user_pages` checks `fatal_signal_pending`) fails, so nothing is copied.
//! - `socket(AF_PACKET, …)` under `block_raw_sockets`: the socket is made, the caller dies before
//!   it returns; only a sibling thread racing on the new descriptor could use it first.
//! - `mmap`/`mprotect` with `PROT_EXEC` of a file: judged at syscall exit on the mapping the
//!   kernel made (`bpf_find_vma`: its `vm_file`), with exec's drift decision; killed before the
//!   return to user, so the mapped code never runs in the calling thread (another thread of the
//!   same process jumping into it before the kill lands is a window, see the README).
//!
//! - `open`/`openat`/`openat2` for writing: at syscall exit the new descriptor's file
//!   (`task->files->fdt->fd[fd]`) is checked; a procfs `mem` file opened with `FMODE_WRITE` is
//!   drift and the caller is killed before it returns (a sibling thread guessing the descriptor
//!   and writing through it first is a window).
//!
//! Not seen here: 32-bit (`int 0x80`) syscalls (x86 does not trace compat syscalls), and
//! `io_uring`'s socket and open operations.

use agent_common::{ACTION_BLOCKED, COUNTER_KILLS, FAMILY_PACKET};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_send_signal},
    },
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};

use crate::{
    container::{self, Membership},
    injection::{is_proc_mem, judge_mapping, judge_proc_mem, judge_ptrace},
    kernel::{offsets, read, read_ptr},
    maps::count,
    net,
};

const SIGKILL: u32 = 9;
const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;
const VM_EXEC: u64 = 0x4;
const PTRACE_TRACEME: u64 = 0;
const O_ACCMODE: u64 = 0o3;
const FMODE_WRITE: u32 = 0x2;
/// Tries of `bpf_find_vma`, which gives up (`-EBUSY`) while another thread holds the mmap lock.
const FIND_VMA_TRIES: u32 = 4;

/// Offset of `args[0]` in a `sys_enter_*` record, and of `ret` in a `sys_exit_*` one (the
/// formats in tracefs: 8 bytes of common fields, `__syscall_nr`, padding).
const ARGS: usize = 16;

/// [`PENDING_EXEC_MAPS`]'s value for an `mmap` (no address is page-aligned to all ones).
const MMAP_PENDING: u64 = u64::MAX;

/// An executable mapping asked for at `sys_enter`, judged at `sys_exit` (by thread id): the
/// address `mprotect` was given, or [`MMAP_PENDING`] for `mmap` (whose exit returns the
/// address). Each exit takes only its own syscall's entry, so an entry left by a thread that
/// never reached its exit cannot make another syscall judge a wrong address.
#[map]
static PENDING_EXEC_MAPS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Write opens of container tasks under drift, judged at `sys_exit` (by thread id).
#[map]
static PENDING_WRITE_OPENS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    // SAFETY: the record is the tracepoint's; a failed read is 0 (callers treat it as absent).
    unsafe { ctx.read_at::<u64>(ARGS + 8 * i) }.unwrap_or(0)
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: as above; an unreadable return is an error return (nothing to judge).
    unsafe { ctx.read_at::<i64>(ARGS) }.unwrap_or(-1)
}

#[inline(always)]
fn thread_id() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Kills the current task in enforce mode (`action` blocked). The caller proved it is in a
/// monitored container.
#[inline(always)]
fn enforce(action: u32) {
    if action == ACTION_BLOCKED {
        // SAFETY: plain helper call; signals the current thread group only, which the gate
        // proved is in a monitored container.
        unsafe { bpf_send_signal(SIGKILL) };
        count(COUNTER_KILLS);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let Some(m) = container::current() else {
        return 0;
    };
    // Only PTRACE_TRACEME names the target here (the caller itself); any other pid is the
    // caller's pid namespace's, which the event cannot translate: 0 (not known).
    let target = if arg(&ctx, 0) == PTRACE_TRACEME {
        (bpf_get_current_pid_tgid() >> 32) as u32
    } else {
        0
    };
    if let Ok(action) = judge_ptrace(&m, target) {
        enforce(action);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_writev")]
pub fn sys_enter_process_vm_writev(_ctx: TracePointContext) -> u32 {
    let Some(m) = container::current() else {
        return 0;
    };
    if let Ok(action) = judge_ptrace(&m, 0) {
        enforce(action);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    // Cheap filter first: every socket() on the host passes here. Inet raw sockets are the
    // cgroup sock_create program's.
    let family = arg(&ctx, 0) as u32;
    if family != FAMILY_PACKET {
        return 0;
    }
    let Some(m) = container::current() else {
        return 0;
    };
    enforce(net::judge_raw_socket(&m, family));
    0
}

/// Whether a container task asking for `prot` is worth judging at exit: drift is on and the
/// mapping would be executable.
#[inline(always)]
fn wants_judging(prot: u64) -> Option<Membership> {
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let m = container::current()?;
    (m.policy.drift_mode != 0).then_some(m)
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    // Anonymous executable memory is a JIT's: not judged (see the README).
    if arg(&ctx, 3) & MAP_ANONYMOUS != 0 {
        return 0;
    }
    if wants_judging(arg(&ctx, 2)).is_some() {
        let _ = PENDING_EXEC_MAPS.insert(thread_id(), MMAP_PENDING, 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mprotect")]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    let start = arg(&ctx, 0);
    if wants_judging(arg(&ctx, 2)).is_some() {
        let _ = PENDING_EXEC_MAPS.insert(thread_id(), start, 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let r = ret(&ctx);
    // A failed mmap returns -errno (above -4096): nothing was mapped.
    exit_exec_mapping(if (-4095..0).contains(&r) { 0 } else { r as u64 });
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mprotect")]
pub fn sys_exit_mprotect(ctx: TracePointContext) -> u32 {
    let ok = ret(&ctx) == 0;
    let tid = thread_id();
    // SAFETY: the value is copied out at once.
    let Some(start) = (unsafe { PENDING_EXEC_MAPS.get(tid) }).copied() else {
        return 0;
    };
    let _ = PENDING_EXEC_MAPS.remove(tid);
    if ok && start != MMAP_PENDING {
        judge_at(start);
    }
    0
}

/// `sys_exit_mmap`: the mapping at `addr` (0: the call failed), when its entry was recorded.
#[inline(always)]
fn exit_exec_mapping(addr: u64) {
    let tid = thread_id();
    // SAFETY: the value is copied out at once.
    let Some(pending) = (unsafe { PENDING_EXEC_MAPS.get(tid) }).copied() else {
        return;
    };
    let _ = PENDING_EXEC_MAPS.remove(tid);
    if addr != 0 && pending == MMAP_PENDING {
        judge_at(addr);
    }
}

/// What `bpf_find_vma` found: the mapping's file and flags.
#[repr(C)]
struct FoundVma {
    found: u64,
    file: u64,
    flags: u64,
}

/// `bpf_find_vma` callback (static, as the verifier requires): copies out what is needed
/// while the mmap lock is held.
extern "C" fn found_vma(_task: u64, vma: u64, out: *mut FoundVma) -> i64 {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address; `out` is the caller's stack.
    unsafe {
        (*out).found = 1;
        (*out).file = read::<u64>(vma, o.vma_vm_file).unwrap_or(0);
        (*out).flags = read::<u64>(vma, o.vma_vm_flags).unwrap_or(VM_EXEC);
    }
    0
}

/// The executable mapping at `addr` of the current (container) task, judged on the file the
/// kernel mapped. Not found, or the lock never free: judged as unreadable (fail closed).
#[inline(always)]
fn judge_at(addr: u64) {
    let Some(m) = container::current() else {
        return;
    };
    let mut out = FoundVma {
        found: 0,
        file: 0,
        flags: VM_EXEC,
    };
    let mut tries = 0;
    while tries < FIND_VMA_TRIES {
        // SAFETY: the current task's BTF pointer, a static callback and a stack context, as
        // the helper requires.
        let r = unsafe {
            bpf_find_vma(
                bpf_get_current_task_btf(),
                addr,
                found_vma as *mut _,
                &mut out as *mut FoundVma as *mut _,
                0,
            )
        };
        if r == 0 || out.found != 0 {
            break;
        }
        tries += 1;
    }
    // Anonymous memory made executable (a JIT), or a mapping that is not executable after
    // all (mprotect of a range whose first page is not the one asked for): not judged.
    if out.found != 0 && (out.file == 0 || out.flags & VM_EXEC == 0) {
        return;
    }
    if let Ok(action) = judge_mapping(&m, out.file) {
        enforce(action);
    }
}

/// At `sys_enter` of an open: a container task under drift opening for writing is noted.
#[inline(always)]
fn enter_open(flags: u64) {
    if flags & O_ACCMODE == 0 {
        return;
    }
    let Some(m) = container::current() else {
        return;
    };
    if m.policy.drift_mode != 0 {
        let _ = PENDING_WRITE_OPENS.insert(thread_id(), 0u32, 0);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    enter_open(arg(&ctx, 1));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    enter_open(arg(&ctx, 2));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // `struct open_how` is in user memory; its first field is the flags. Unreadable: judged as
    // a write (fail closed).
    let how = arg(&ctx, 2);
    let mut flags = O_ACCMODE;
    // SAFETY: an 8-byte destination; a user address, read with the user helper.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            &mut flags as *mut u64 as *mut _,
            8,
            how as *const _,
        )
    };
    enter_open(flags);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_open")]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    exit_open(ret(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    exit_open(ret(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    exit_open(ret(&ctx));
    0
}

/// At `sys_exit` of a noted open: the file behind descriptor `fd`, judged when it is a procfs
/// `mem` file opened for writing.
#[inline(always)]
fn exit_open(fd: i64) {
    let tid = thread_id();
    if PENDING_WRITE_OPENS.get_ptr(tid).is_none() {
        return;
    }
    let _ = PENDING_WRITE_OPENS.remove(tid);
    if fd < 0 {
        return;
    }
    let Some(m) = container::current() else {
        return;
    };
    let o = offsets();
    // SAFETY: plain helper call; the current task.
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let file = unsafe {
        read_ptr(task, o.task_files)
            .and_then(|files| read_ptr(files, o.files_fdt))
            .and_then(|fdt| {
                let max: u32 = read(fdt, o.fdtable_max_fds)?;
                if fd as u64 >= max as u64 {
                    return Err(-9);
                }
                let fds = read_ptr(fdt, o.fdtable_fd)?;
                read_ptr(fds + (fd as u64) * 8, 0)
            })
    };
    let Ok(file) = file else {
        // The descriptor was closed (or replaced) by another thread already: nothing to
        // find. Not judged: the open was for writing, but of anything.
        return;
    };
    let f_path = file + o.file_f_path as u64;
    // SAFETY (reads): as above.
    let (mnt, dentry, mode) = unsafe {
        (
            read_ptr(f_path, o.path_mnt).unwrap_or(0),
            read_ptr(f_path, o.path_dentry).unwrap_or(0),
            read::<u32>(file, o.file_f_mode).unwrap_or(FMODE_WRITE),
        )
    };
    if mode & FMODE_WRITE == 0 || !is_proc_mem(dentry) {
        return;
    }
    if let Ok(action) = judge_proc_mem(&m, mnt, dentry) {
        enforce(action);
    }
}
