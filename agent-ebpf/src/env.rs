//! The new image's environment, read at `sched_process_exec` on the fallback backend: the
//! dynamic loader maps what `LD_PRELOAD`, `LD_AUDIT` and `LD_LIBRARY_PATH` name without any
//! hook the fallback can see, so each element of their values must be a path the drift allow
//! list names (exact, `dir/*` or `dir/**`), or the exec is drift. An empty element (the current
//! directory to the loader), a value too long to read, or an environment too large to scan is
//! drift too: fail closed. BPF LSM decides on each mapped file instead (`mmap_file`).
//!
//! The scan reads one string (or 512-byte piece of one) per step with
//! `bpf_probe_read_user_str`, from `mm.env_start` to `mm.env_end` of the current task (this runs
//! in the task, after the new image's stack was built).

use core::ffi::c_void;

use agent_common::{
    fnv1a_step, ContainerPolicy, PathRuleKey, ENV_CHUNK, EXEC_ENV_UNSCANNED, EXEC_PRELOAD_ENV,
    FNV_OFFSET, FORM_DIR, FORM_EXACT, FORM_TREE, LIST_DRIFT_ALLOW, MAX_ENV_CHUNKS,
    RULES_DRIFT_ALLOW,
};
use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_user_str},
    macros::map,
    maps::PerCpuArray,
};

use crate::{
    kernel::{offsets, read, read_ptr},
    maps::PATH_RULES,
};

/// Most `LD_*` variables checked; more (duplicates) is drift.
const MAX_FOUND: usize = 4;

#[repr(C)]
pub struct EnvScratch {
    buf: [u8; ENV_CHUNK],
}

#[map]
static SCRATCH_ENV: PerCpuArray<EnvScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct ScanCtx {
    buf: *mut u8,
    cursor: u64,
    end: u64,
    at_start: u64,
    done: u64,
    flags: u32,
    n_found: u32,
    /// User address of each `LD_*=` string found, and the length of its name with `=`.
    found: [u64; MAX_FOUND],
    name_len: [u64; MAX_FOUND],
}

/// Length of the `LD_*=` name the buffer starts with, 0 when it is none of them.
#[inline(always)]
fn ld_name(b: &[u8; ENV_CHUNK]) -> u64 {
    if b[0] != b'L' || b[1] != b'D' || b[2] != b'_' {
        return 0;
    }
    if b[3..11] == *b"PRELOAD=" {
        11
    } else if b[3..9] == *b"AUDIT=" {
        9
    } else if b[3..16] == *b"LIBRARY_PATH=" {
        16
    } else {
        0
    }
}

#[inline(never)]
extern "C" fn scan_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the ScanCtx on the caller's stack; buf is the per-CPU scratch.
    let c = unsafe { &mut *(ctx as *mut ScanCtx) };
    if c.cursor >= c.end {
        c.done = 1;
        return 1;
    }
    // SAFETY: ENV_CHUNK bytes of scratch; the current task's own user memory.
    let r = unsafe {
        bpf_probe_read_user_str(c.buf.cast(), ENV_CHUNK as u32, c.cursor as *const c_void)
    };
    if r <= 0 {
        // Unreadable environment: not scanned.
        return 1;
    }
    let r = r as u64;
    let whole = r < ENV_CHUNK as u64;
    if c.at_start != 0 {
        // SAFETY: the scratch is ENV_CHUNK bytes.
        let b = unsafe { &*(c.buf as *const [u8; ENV_CHUNK]) };
        let n = ld_name(b);
        if n != 0 {
            if !whole {
                // Longer than one piece: cannot be judged.
                c.flags |= EXEC_PRELOAD_ENV;
            } else if (c.n_found as usize) < MAX_FOUND {
                let k = c.n_found as usize & (MAX_FOUND - 1);
                c.found[k] = c.cursor;
                c.name_len[k] = n;
                c.n_found += 1;
            } else {
                c.flags |= EXEC_PRELOAD_ENV;
            }
        }
    }
    // A whole string ends at its NUL; a cut one continues where the piece ended.
    c.cursor += if whole { r } else { r - 1 };
    c.at_start = whole as u64;
    0
}

#[repr(C)]
struct ValueCtx {
    buf: *const u8,
    /// Offset of the value in `buf` (after `LD_…=`); `start + len < ENV_CHUNK`.
    start: u64,
    len: u64,
    h: u64,
    last_dir: u64,
    elem_len: u64,
    listed: u64,
    profile_id: u32,
    bad: u32,
}

#[inline(always)]
fn listed(profile_id: u32, form: u32, hash: u64) -> bool {
    let key = PathRuleKey {
        profile_id,
        list: LIST_DRIFT_ALLOW,
        form,
        _pad: 0,
        hash,
    };
    PATH_RULES.get_ptr(key).is_some()
}

/// One byte of a value: elements are separated by `:`, ` ` or `;`; each must be listed. Returns
/// 1 to stop (at the end, or at the first element that is not allowed).
#[inline(never)]
extern "C" fn value_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the ValueCtx on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut ValueCtx) };
    let end = i >= c.len;
    // SAFETY: start + i < ENV_CHUNK, masked for the verifier.
    let b = if end {
        0
    } else {
        unsafe { *c.buf.add(((c.start + i) as usize) & (ENV_CHUNK - 1)) }
    };
    if end || b == b':' || b == b' ' || b == b';' {
        // A directory element (`LD_LIBRARY_PATH=/opt/lib`) is inside a `/opt/lib/**` rule too.
        let ok = c.elem_len > 0
            && (c.listed != 0
                || listed(c.profile_id, FORM_EXACT, c.h)
                || listed(c.profile_id, FORM_TREE, fnv1a_step(c.h, b'/'))
                || (c.last_dir != 0 && listed(c.profile_id, FORM_DIR, c.last_dir)));
        if !ok {
            c.bad = 1;
            return 1;
        }
        if end {
            return 1;
        }
        c.h = FNV_OFFSET;
        c.last_dir = 0;
        c.elem_len = 0;
        c.listed = 0;
        return 0;
    }
    c.h = fnv1a_step(c.h, b);
    c.elem_len += 1;
    if b == b'/' {
        if listed(c.profile_id, FORM_TREE, c.h) {
            c.listed = 1;
        }
        c.last_dir = c.h;
    }
    0
}

/// `EXEC_PRELOAD_ENV` / `EXEC_ENV_UNSCANNED` for the current task's environment under `p`.
#[inline(always)]
pub fn scan(task: u64, p: &ContainerPolicy) -> u32 {
    let o = offsets();
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let mm = unsafe { read_ptr(task, o.task_mm) }.unwrap_or(0);
    if mm == 0 {
        return EXEC_ENV_UNSCANNED;
    }
    let start: u64 = unsafe { read(mm, o.mm_env_start) }.unwrap_or(0);
    let end: u64 = unsafe { read(mm, o.mm_env_end) }.unwrap_or(0);
    if start == 0 || end < start {
        return EXEC_ENV_UNSCANNED;
    }
    let Some(scratch) = SCRATCH_ENV.get_ptr_mut(0) else {
        return EXEC_ENV_UNSCANNED;
    };
    // SAFETY: the per-CPU scratch.
    let buf = unsafe { (*scratch).buf.as_mut_ptr() };
    let mut c = ScanCtx {
        buf,
        cursor: start,
        end,
        at_start: 1,
        done: 0,
        flags: 0,
        n_found: 0,
        found: [0; MAX_FOUND],
        name_len: [0; MAX_FOUND],
    };
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        bpf_loop(
            MAX_ENV_CHUNKS,
            scan_step as *mut c_void,
            (&mut c as *mut ScanCtx).cast(),
            0,
        )
    };
    let mut flags = c.flags;
    if c.done == 0 {
        flags |= EXEC_ENV_UNSCANNED;
    }
    let mut k = 0usize;
    while k < MAX_FOUND {
        if k as u32 >= c.n_found {
            break;
        }
        if !value_allowed(buf, c.found[k], c.name_len[k], p) {
            flags |= EXEC_PRELOAD_ENV;
        }
        k += 1;
    }
    flags
}

/// Whether every element of the value of the `LD_*` string at `at` is on the drift allow list.
#[inline(always)]
fn value_allowed(buf: *mut u8, at: u64, name_len: u64, p: &ContainerPolicy) -> bool {
    // SAFETY: ENV_CHUNK bytes of scratch; the string was read whole once already.
    let r = unsafe { bpf_probe_read_user_str(buf.cast(), ENV_CHUNK as u32, at as *const c_void) };
    if r <= 0 || r as u64 >= ENV_CHUNK as u64 || (r as u64) < name_len + 1 {
        return false;
    }
    let len = r as u64 - 1 - name_len;
    if len == 0 {
        // `LD_PRELOAD=`: nothing is loaded.
        return true;
    }
    if p.rules & RULES_DRIFT_ALLOW == 0 {
        return false;
    }
    let mut c = ValueCtx {
        buf,
        start: name_len,
        len,
        h: FNV_OFFSET,
        last_dir: 0,
        elem_len: 0,
        listed: 0,
        profile_id: p.profile_id,
        bad: 0,
    };
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        bpf_loop(
            ENV_CHUNK as u32,
            value_step as *mut c_void,
            (&mut c as *mut ValueCtx).cast(),
            0,
        )
    };
    c.bad == 0
}
