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
//! - `ptrace` (any request: attach, seize, traceme, poke…): killed at entry. The request itself
//!   still completes (an attach leaves its target stopped), but no poke can follow an attach
//!   whose tracer died. Drift, as `ptrace_access_check`.
//! - `process_vm_writev`: killed at entry; with `SIGKILL` pending the kernel's page pinning of
//!   the target (`__get_user_pages` checks `fatal_signal_pending`) fails, so nothing is copied.
//! - `socket(AF_PACKET, …)` under `block_raw_sockets`: the socket is made, the caller dies before
//!   it returns; only a sibling thread racing on the new descriptor could use it first.
//! - `mmap` with `PROT_EXEC` of a file: judged at syscall exit, when the mapping exists, on the
//!   file behind the descriptor the caller passed (what BPF LSM's `mmap_file` sees: the
//!   overlayfs file, not the layer's backing file the new vma holds), with exec's drift
//!   decision; killed before the return to user, so the mapped code never runs in the calling
//!   thread (another thread of the process jumping into it before the kill lands, or swapping
//!   the descriptor with `dup2` between the kernel's lookup and ours, is a window).
//! - `mprotect`/`pkey_mprotect` adding `PROT_EXEC` to a file mapping that was not executable:
//!   judged at entry on the mapping at the start address (`bpf_find_vma`), whose file is
//!   overlayfs's backing file for an overlay file: its layer is found from its mount
//!   (`injection::judge_vma_file`), upper is drift, lower is the image's. Killed with the
//!   change still to be made, so the code never runs in the calling thread. When the mapping
//!   cannot be looked up at entry (`bpf_find_vma` only try-locks the mm: `EBUSY` while another
//!   thread holds it), it is looked up again at exit, and judged drift (fail closed) if it
//!   still cannot be. Only the mapping at the start address is judged (a range spanning a
//!   second file mapping is a window). Anonymous memory made executable is a JIT's (not
//!   judged, as for `mmap`).
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
        generated::{
            bpf_find_vma, bpf_get_current_task, bpf_get_current_task_btf, bpf_send_signal,
        },
    },
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};

use crate::{
    container,
    injection::{is_proc_mem, judge_mapping, judge_proc_mem, judge_ptrace, judge_vma_file},
    kernel::{offsets, read, read_ptr},
    maps::count,
    net,
};

const SIGKILL: u32 = 9;
const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;
const PTRACE_TRACEME: u64 = 0;
const O_ACCMODE: u64 = 0o3;
const FMODE_WRITE: u32 = 0x2;
const VM_EXEC: u64 = 0x4;
const EBUSY: i64 = -16;

/// Offset of `args[0]` in a `sys_enter_*` record, and of `ret` in a `sys_exit_*` one (the
/// formats in tracefs: 8 bytes of common fields, `__syscall_nr`, padding).
const ARGS: usize = 16;

/// An executable file mapping asked for at `sys_enter_mmap`, judged at its `sys_exit` (by
/// thread id): the descriptor it was given.
#[map]
static PENDING_EXEC_MAPS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// `mprotect(PROT_EXEC)` calls whose mapping could not be looked up at `sys_enter` (the mm was
/// busy), judged at `sys_exit` (by thread id): the start address.
#[map]
static PENDING_MPROTECTS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

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

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    // Cheap filters first: every mmap on the host passes here. Anonymous executable memory is
    // a JIT's: not judged (see the README).
    if arg(&ctx, 2) & PROT_EXEC == 0 || arg(&ctx, 3) & MAP_ANONYMOUS != 0 {
        return 0;
    }
    let Some(m) = container::current() else {
        return 0;
    };
    if m.policy.drift_mode != 0 {
        let _ = PENDING_EXEC_MAPS.insert(thread_id(), arg(&ctx, 4), 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let r = ret(&ctx);
    let tid = thread_id();
    // SAFETY: the value is copied out at once.
    let Some(fd) = (unsafe { PENDING_EXEC_MAPS.get(tid) }).copied() else {
        return 0;
    };
    let _ = PENDING_EXEC_MAPS.remove(tid);
    // A failed mmap returns -errno (above -4096): nothing was mapped.
    if (-4095..0).contains(&r) {
        return 0;
    }
    let Some(m) = container::current() else {
        return 0;
    };
    // A descriptor closed by another thread meanwhile: unreadable, drift (fail closed).
    let file = file_of_fd(fd as i64).unwrap_or(0);
    if let Ok(action) = judge_mapping(&m, file) {
        enforce(action);
    }
    0
}

/// The current task's `struct file` behind descriptor `fd`.
#[inline(always)]
fn file_of_fd(fd: i64) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let o = offsets();
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    unsafe {
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
    }
    .ok()
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
    let Some(file) = file_of_fd(fd) else {
        // The descriptor was closed (or replaced) by another thread already: nothing to
        // find. Not judged: the open was for writing, but of anything.
        return;
    };
    let o = offsets();
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

/// What `bpf_find_vma` found at an address: the mapping's file (0: anonymous) and flags.
#[repr(C)]
struct VmaFound {
    file: u64,
    flags: u64,
    /// 1 when the mapping's fields could not be read.
    unreadable: u64,
}

#[inline(never)]
extern "C" fn vma_found(
    _task: *mut core::ffi::c_void,
    vma: *mut core::ffi::c_void,
    ctx: *mut core::ffi::c_void,
) -> i64 {
    // SAFETY: ctx is the VmaFound on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut VmaFound) };
    let o = offsets();
    let vma = vma as u64;
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    match unsafe {
        (
            read::<u64>(vma, o.vma_vm_file),
            read::<u64>(vma, o.vma_vm_flags),
        )
    } {
        (Ok(file), Ok(flags)) => {
            c.file = file;
            c.flags = flags;
        }
        _ => c.unreadable = 1,
    }
    0
}

/// What became of looking up the current task's mapping at `addr`.
enum Lookup {
    /// A file mapping (its `struct file`) that is not executable yet.
    Judge(u64),
    /// Nothing to judge: anonymous memory, a mapping that is executable already (judged when
    /// it was mapped), or no mapping at `addr` (the syscall fails with `ENOMEM`).
    Nothing,
    /// The mm was busy (another thread holds its lock).
    Busy,
    /// The mapping could not be read: judged as drift (fail closed).
    Unreadable,
}

#[inline(always)]
fn lookup_vma(addr: u64) -> Lookup {
    let mut c = VmaFound {
        file: 0,
        flags: 0,
        unreadable: 0,
    };
    // SAFETY: the current task (a BTF pointer, as the helper wants); callback and context
    // follow bpf_find_vma's contract.
    let r = unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            addr,
            vma_found as *mut core::ffi::c_void,
            (&mut c as *mut VmaFound).cast(),
            0,
        )
    };
    if r == EBUSY {
        return Lookup::Busy;
    }
    if r != 0 {
        return Lookup::Nothing;
    }
    if c.unreadable != 0 {
        return Lookup::Unreadable;
    }
    if c.file == 0 || c.flags & VM_EXEC != 0 {
        return Lookup::Nothing;
    }
    Lookup::Judge(c.file)
}

/// At `sys_enter` of `mprotect`/`pkey_mprotect` (same first three arguments).
#[inline(always)]
fn enter_mprotect(ctx: &TracePointContext) {
    // Cheap filter first: every mprotect on the host passes here.
    if arg(ctx, 2) & PROT_EXEC == 0 {
        return;
    }
    let Some(m) = container::current() else {
        return;
    };
    if m.policy.drift_mode == 0 {
        return;
    }
    let start = arg(ctx, 0);
    let file = match lookup_vma(start) {
        Lookup::Nothing => return,
        Lookup::Busy => {
            let _ = PENDING_MPROTECTS.insert(thread_id(), start, 0);
            return;
        }
        Lookup::Unreadable => 0,
        Lookup::Judge(file) => file,
    };
    if let Ok(action) = judge_vma_file(&m, file) {
        enforce(action);
    }
}

/// At `sys_exit` of an `mprotect` whose mapping was busy at entry: looked up again, now that
/// the change is made (so an executable mapping is judged too); still busy is drift.
#[inline(always)]
fn exit_mprotect(ctx: &TracePointContext) {
    let tid = thread_id();
    // SAFETY: the value is copied out at once.
    let Some(start) = (unsafe { PENDING_MPROTECTS.get(tid) }).copied() else {
        return;
    };
    let _ = PENDING_MPROTECTS.remove(tid);
    if ret(ctx) != 0 {
        return;
    }
    let Some(m) = container::current() else {
        return;
    };
    let mut c = VmaFound {
        file: 0,
        flags: 0,
        unreadable: 0,
    };
    // SAFETY: as in lookup_vma.
    let r = unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            start,
            vma_found as *mut core::ffi::c_void,
            (&mut c as *mut VmaFound).cast(),
            0,
        )
    };
    let file = if r != 0 || c.unreadable != 0 {
        0
    } else if c.file == 0 {
        return;
    } else {
        c.file
    };
    if let Ok(action) = judge_vma_file(&m, file) {
        enforce(action);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_mprotect")]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    enter_mprotect(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mprotect")]
pub fn sys_exit_mprotect(ctx: TracePointContext) -> u32 {
    exit_mprotect(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_pkey_mprotect")]
pub fn sys_enter_pkey_mprotect(ctx: TracePointContext) -> u32 {
    enter_mprotect(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_pkey_mprotect")]
pub fn sys_exit_pkey_mprotect(ctx: TracePointContext) -> u32 {
    exit_mprotect(&ctx);
    0
}
