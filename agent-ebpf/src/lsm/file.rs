//! File rules on the file, not on one of its names: `file_open` for opens, and the path hooks
//! for every other way to change or reach a ruled file — `unlink`, `rmdir`, `rename` (from,
//! onto, or of a directory that holds a ruled path), `link` (of a ruled file, which would give
//! it a second, unruled name; in overlayfs the link and the original share the copied-up
//! inode), `truncate(2)`, `chmod`, `chown`, and creating a ruled path (`O_CREAT` passes
//! `path_mknod` before the file exists, so a refused create leaves nothing behind).
//!
//! Paths are built from the container's root (`root.rs`), so a `chroot` does not rename a file.
//! A path that could not be read or was truncated counts as matching (fail closed); a path
//! outside the container's root (a pipe reopened through `/proc/self/fd`) matches nothing, as no
//! rule can name it.
//!
//! Also here, as the drift control: an open of `/proc/<pid>/mem` for writing (writing into a
//! process's code, its own included: `ptrace_access_check` does not run for the caller's own
//! thread group).

use agent_common::{
    ExecEvent, FileEvent, ACTION_ALLOWED, CONTROL_FILE, COUNTER_RINGBUF_DROPS, COUNTER_UNREADABLE,
    EVENT_FILE, EXEC_PATH_TRUNCATED, EXEC_UNREADABLE, FILE_OP_CHMOD, FILE_OP_CHOWN, FILE_OP_CREATE,
    FILE_OP_LINK, FILE_OP_OPEN, FILE_OP_RENAME, FILE_OP_TRUNCATE, FILE_OP_UNLINK, LIST_FILE_DENY,
    LIST_FILE_READ_ONLY, LIST_FILE_RULE_DIRS, PATH_BUF, RULES_FILE_DENY, RULES_FILE_DENY_TREES,
    RULES_FILE_READ_ONLY, RULES_FILE_READ_ONLY_TREES,
};
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_get_current_task},
    macros::{lsm, map},
    maps::PerCpuArray,
    programs::LsmContext,
};

use super::verdict;
use crate::{
    container::{self, action_for, Membership},
    emit,
    exec::{build_path, path_listed},
    injection::{is_proc_mem, judge_proc_mem},
    kernel::{fill_header, offsets, read, read_ptr},
    maps::{count, EVENTS},
    root,
};

const O_ACCMODE: u32 = 0o3;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
const FMODE_WRITE: u32 = 0x2;

/// Per-CPU scratch for the path of a file being opened or changed: `file_open` runs inside
/// syscalls of the exec path too, so it must not share `SCRATCH_EXEC` with
/// `bprm_check_security`.
#[map]
static SCRATCH_FILE: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// What an operation does to the file at a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Reads it (an open for reading): only `deny` applies.
    Read,
    /// Changes it or its name: `deny` and `read_only` apply.
    Change,
    /// Renames a directory: also refused when the directory holds a ruled path.
    RenameDir,
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    try_file_open(&ctx).unwrap_or(0)
}

fn try_file_open(ctx: &LsmContext) -> Result<i32, i64> {
    let Some(m) = container::current() else {
        return Ok(0);
    };
    let file: u64 = ctx.arg(0);
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address. Unreadable flags are a
    // write (fail closed).
    let flags: u32 = unsafe { read(file, o.file_f_flags) }.unwrap_or(O_ACCMODE);
    let mode: u32 = unsafe { read(file, o.file_f_mode) }.unwrap_or(FMODE_WRITE);
    let writes = flags & O_ACCMODE != 0
        || flags & (O_CREAT | O_TRUNC | O_APPEND) != 0
        || mode & FMODE_WRITE != 0;
    let f_path = file + o.file_f_path as u64;
    let (mnt, dentry) = unsafe {
        (
            read_ptr(f_path, o.path_mnt)?,
            read_ptr(f_path, o.path_dentry)?,
        )
    };
    if writes && m.policy.drift_mode != 0 && is_proc_mem(dentry) {
        return judge_proc_mem(&m, mnt, dentry).map(verdict);
    }
    let touch = if writes { Touch::Change } else { Touch::Read };
    check(&m, FILE_OP_OPEN, flags, mnt, dentry, touch)
}

/// The file rule decision for an operation on (`mnt`, `dentry`), reported when a rule matched.
#[inline(always)]
fn check(
    m: &Membership,
    op: u32,
    open_flags: u32,
    mnt: u64,
    dentry: u64,
    touch: Touch,
) -> Result<i32, i64> {
    let p = &m.policy;
    if p.file_mode == 0 || p.rules & (RULES_FILE_DENY | RULES_FILE_READ_ONLY) == 0 {
        return Ok(0);
    }
    if touch == Touch::Read && p.rules & RULES_FILE_DENY == 0 {
        return Ok(0);
    }
    let ev = SCRATCH_FILE.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let ev: &mut ExecEvent = unsafe { &mut *ev };
    // SAFETY: plain helper call; the current task.
    let task = unsafe { bpf_get_current_task() };
    let r = root::reference(m.cgroup_id, task);
    ev.flags = r.flags & EXEC_UNREADABLE;
    ev.path_len = 0;
    if build_path(ev, mnt, dentry, r.mnt, r.dentry).is_err() {
        ev.flags |= EXEC_UNREADABLE;
    }
    // A path that could not be read may be anything; a truncated one is deeper than any exact
    // rule, so only directory rules could hold it. Outside the root (a pipe reopened through
    // /proc/self/fd): no rule can name it.
    let unreadable = ev.flags & EXEC_UNREADABLE != 0;
    let truncated = ev.flags & EXEC_PATH_TRUNCATED != 0;
    let listed = |list, trees_bit| {
        unreadable || (truncated && p.rules & trees_bit != 0) || path_listed(ev, p.profile_id, list)
    };
    let matched = (p.rules & RULES_FILE_DENY != 0 && listed(LIST_FILE_DENY, RULES_FILE_DENY_TREES))
        || (touch != Touch::Read
            && p.rules & RULES_FILE_READ_ONLY != 0
            && listed(LIST_FILE_READ_ONLY, RULES_FILE_READ_ONLY_TREES))
        || (touch == Touch::RenameDir && listed(LIST_FILE_RULE_DIRS, 0));
    if !matched {
        return Ok(0);
    }
    let action = action_for(p.file_mode);
    if ev.flags & EXEC_UNREADABLE != 0 {
        count(COUNTER_UNREADABLE);
    }
    report(m, task, op, open_flags, ev, action);
    Ok(verdict(action))
}

#[inline(always)]
fn report(m: &Membership, task: u64, op: u32, open_flags: u32, ev: &ExecEvent, action: u32) {
    let o = offsets();
    let Some(mut entry) = EVENTS.reserve::<FileEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return;
    };
    let out = entry.as_mut_ptr();
    // SAFETY: the reservation is ours until submitted; every field is written below.
    unsafe {
        let ppid: u32 = read_ptr(task, o.task_real_parent)
            .and_then(|p| read(p, o.task_tgid))
            .unwrap_or(0);
        fill_header(&mut (*out).header, EVENT_FILE, m.cgroup_id, ppid);
        (*out).header.control = if action == ACTION_ALLOWED {
            0
        } else {
            CONTROL_FILE
        };
        (*out).header.action = action;
        (*out).open_flags = open_flags;
        (*out).op = op;
        (*out).flags = ev.flags;
        (*out).path_len = ev.path_len;
        if bpf_probe_read_kernel_buf(ev.path.as_ptr(), &mut (*out).path).is_err() {
            (*out).path = [0; PATH_BUF];
            (*out).path_len = 0;
        }
    }
    emit::submit(entry);
}

/// Reads `(mnt, dentry)` of a `const struct path *`.
#[inline(always)]
fn path_of(path: u64) -> Result<(u64, u64), i64> {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    unsafe { Ok((read_ptr(path, o.path_mnt)?, read_ptr(path, o.path_dentry)?)) }
}

/// A hook on (`dir`, `dentry`): unlink, rmdir, mkdir, mknod, symlink.
#[inline(always)]
fn on_dir_entry(dir: u64, dentry: u64, op: u32) -> i32 {
    let Some(m) = container::current() else {
        return 0;
    };
    let Ok((mnt, _)) = path_of(dir) else {
        return 0;
    };
    check(&m, op, 0, mnt, dentry, Touch::Change).unwrap_or(0)
}

/// A hook on a whole `struct path`: truncate, chmod, chown.
#[inline(always)]
fn on_path(path: u64, op: u32) -> i32 {
    let Some(m) = container::current() else {
        return 0;
    };
    let Ok((mnt, dentry)) = path_of(path) else {
        return 0;
    };
    check(&m, op, 0, mnt, dentry, Touch::Change).unwrap_or(0)
}

macro_rules! passed_on {
    ($ctx:expr, $n:expr) => {{
        let retval: i32 = $ctx.arg($n);
        if retval != 0 {
            return retval;
        }
    }};
}

#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 2);
    on_dir_entry(ctx.arg(0), ctx.arg(1), FILE_OP_UNLINK)
}

#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 2);
    on_dir_entry(ctx.arg(0), ctx.arg(1), FILE_OP_UNLINK)
}

#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 3);
    on_dir_entry(ctx.arg(0), ctx.arg(1), FILE_OP_CREATE)
}

#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 4);
    on_dir_entry(ctx.arg(0), ctx.arg(1), FILE_OP_CREATE)
}

#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 3);
    on_dir_entry(ctx.arg(0), ctx.arg(1), FILE_OP_CREATE)
}

#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 1);
    on_path(ctx.arg(0), FILE_OP_TRUNCATE)
}

#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 2);
    on_path(ctx.arg(0), FILE_OP_CHMOD)
}

#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 3);
    on_path(ctx.arg(0), FILE_OP_CHOWN)
}

/// `link(old, new)`: a second name for a ruled file, or a new file at a ruled path.
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 3);
    let Some(m) = container::current() else {
        return 0;
    };
    let old: u64 = ctx.arg(0);
    let new_dir: u64 = ctx.arg(1);
    let new: u64 = ctx.arg(2);
    let Ok((mnt, _)) = path_of(new_dir) else {
        return 0;
    };
    // Both names are on the same mount (link(2) across mounts is EXDEV).
    let r = check(&m, FILE_OP_LINK, 0, mnt, old, Touch::Change).unwrap_or(0);
    if r != 0 {
        return r;
    }
    check(&m, FILE_OP_LINK, 0, mnt, new, Touch::Change).unwrap_or(0)
}

/// `rename(old, new)`: moving a ruled file away (and back), replacing one, or moving a
/// directory that holds one.
#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    passed_on!(ctx, 5);
    let Some(m) = container::current() else {
        return 0;
    };
    let old_dir: u64 = ctx.arg(0);
    let old: u64 = ctx.arg(1);
    let new_dir: u64 = ctx.arg(2);
    let new: u64 = ctx.arg(3);
    let (Ok((old_mnt, _)), Ok((new_mnt, _))) = (path_of(old_dir), path_of(new_dir)) else {
        return 0;
    };
    let r = check(&m, FILE_OP_RENAME, 0, old_mnt, old, Touch::RenameDir).unwrap_or(0);
    if r != 0 {
        return r;
    }
    // RENAME_EXCHANGE moves the target too.
    check(&m, FILE_OP_RENAME, 0, new_mnt, new, Touch::RenameDir).unwrap_or(0)
}
