//! Path building and path-rule lookup, written as `bpf_loop` callbacks so the verifier checks
//! each step once instead of unrolling every iteration for every state that reaches it (the
//! unrolled loops exceeded the verifier's one-million-instruction budget).

use core::ffi::c_void;

use agent_common::{
    fnv1a_step, PathRuleKey, FNV_OFFSET, FORM_DIR, FORM_EXACT, FORM_TREE, MAX_PATH_DEPTH, NAME_BUF,
    PATH_BUF, PATH_MAX_OFF,
};
use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_kernel_str},
    macros::map,
    maps::PerCpuArray,
};

use crate::{
    kernel::{offsets, read},
    maps::PATH_RULES,
};

/// State of one path walk: where we are, and the dentries seen, leaf first.
#[repr(C)]
pub struct WalkState {
    vfsmnt: u64,
    dentry: u64,
    root_mnt: u64,
    root_dentry: u64,
    n: u64,
    truncated: u64,
    /// 1 once the walk met the root; a walk that ends anywhere else (the top of the mount tree,
    /// a disconnected dentry) was outside the root.
    reached_root: u64,
    comps: [u64; MAX_PATH_DEPTH],
}

/// How a path walk ended.
pub struct Walked {
    /// Bytes of the path.
    pub len: u32,
    /// Deeper than [`MAX_PATH_DEPTH`] or longer than the buffer: only the tail was kept.
    pub truncated: bool,
    /// The walk never met the root: the path is not a path below it.
    pub outside_root: bool,
}

#[map]
static SCRATCH_WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct WalkCtx {
    st: *mut WalkState,
}

/// One step up: a component, or a mount crossed. Returns 1 to stop.
#[inline(never)]
extern "C" fn walk_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the WalkCtx on the caller's stack; st is the per-CPU scratch.
    let st = unsafe { &mut *(*(ctx as *mut WalkCtx)).st };
    let o = offsets();
    // Pointer comparisons only: the root may be a stored pointer of a container that is gone.
    if st.dentry == st.root_dentry && st.vfsmnt == st.root_mnt {
        st.reached_root = 1;
        return 1;
    }
    // SAFETY (reads): bpf_probe_read_kernel tolerates any address.
    let Ok(mnt_root) = (unsafe { read::<u64>(st.vfsmnt, o.vfsmount_mnt_root) }) else {
        return 1;
    };
    if st.dentry == mnt_root {
        let mount = st.vfsmnt - o.mount_mnt as u64;
        let Ok(parent) = (unsafe { read::<u64>(mount, o.mount_mnt_parent) }) else {
            return 1;
        };
        if parent == mount || parent == 0 {
            return 1;
        }
        let Ok(mp) = (unsafe { read::<u64>(mount, o.mount_mnt_mountpoint) }) else {
            return 1;
        };
        st.dentry = mp;
        st.vfsmnt = parent + o.mount_mnt as u64;
        return 0;
    }
    let Ok(up) = (unsafe { read::<u64>(st.dentry, o.dentry_d_parent) }) else {
        return 1;
    };
    let n = st.n as usize;
    if n >= MAX_PATH_DEPTH {
        st.truncated = 1;
        return 1;
    }
    if up == st.dentry || up == 0 {
        // A disconnected dentry (memfd, pipe, an anonymous inode): keep its own name, so the
        // event says `memfd:x` rather than `/`, and stop outside the root.
        st.comps[n] = st.dentry;
        st.n += 1;
        return 1;
    }
    st.comps[n] = st.dentry;
    st.n += 1;
    st.dentry = up;
    0
}

#[repr(C)]
struct WriteCtx {
    st: *mut WalkState,
    path: *mut u8,
    off: u64,
}

/// Writes component `i` (root first) as `/name`. Returns 1 to stop.
#[inline(never)]
extern "C" fn write_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the WriteCtx on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut WriteCtx) };
    // SAFETY: the per-CPU scratch.
    let st = unsafe { &mut *c.st };
    if i >= st.n {
        return 1;
    }
    let idx = (st.n - 1 - i) as usize;
    if idx >= MAX_PATH_DEPTH {
        return 1;
    }
    let d = st.comps[idx];
    let off = c.off as usize;
    if off >= PATH_MAX_OFF {
        st.truncated = 1;
        return 1;
    }
    // SAFETY: off < PATH_MAX_OFF and the buffer is PATH_BUF >= PATH_MAX_OFF + NAME_BUF long.
    unsafe { *c.path.add(off & (PATH_MAX_OFF - 1)) = b'/' };
    let off = off + 1;
    // SAFETY (read): bpf_probe_read_kernel tolerates any address.
    let Ok(name) = (unsafe { read::<u64>(d, offsets().dentry_d_name_name) }) else {
        return 1;
    };
    // SAFETY: room for NAME_BUF bytes at any offset below PATH_MAX_OFF.
    let r = unsafe {
        bpf_probe_read_kernel_str(
            c.path.add(off & (PATH_MAX_OFF - 1)).cast(),
            NAME_BUF as u32,
            name as *const c_void,
        )
    };
    if r <= 1 {
        c.off = off as u64;
        return 1;
    }
    c.off = (off + (r - 1) as usize) as u64;
    0
}

/// Builds the path of (`mnt`, `dentry`) as seen from the root (`root_mnt`, `root_dentry`),
/// crossing mounts, into `path`. The root is only compared with, never read.
#[inline(always)]
pub fn build_path(
    path: &mut [u8; PATH_BUF],
    mnt: u64,
    dentry: u64,
    root_mnt: u64,
    root_dentry: u64,
) -> Result<Walked, i64> {
    let st = SCRATCH_WALK.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    unsafe {
        (*st).vfsmnt = mnt;
        (*st).dentry = dentry;
        (*st).root_mnt = root_mnt;
        (*st).root_dentry = root_dentry;
        (*st).n = 0;
        (*st).truncated = 0;
        (*st).reached_root = 0;
    }
    let mut wctx = WalkCtx { st };
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        bpf_loop(
            (MAX_PATH_DEPTH + 8) as u32,
            walk_step as *mut c_void,
            (&mut wctx as *mut WalkCtx).cast(),
            0,
        )
    };
    let mut c = WriteCtx {
        st,
        path: path.as_mut_ptr(),
        off: 0,
    };
    // SAFETY: as above.
    unsafe {
        bpf_loop(
            MAX_PATH_DEPTH as u32,
            write_step as *mut c_void,
            (&mut c as *mut WriteCtx).cast(),
            0,
        )
    };
    let mut len = c.off as usize;
    if len == 0 {
        path[0] = b'/';
        len = 1;
    }
    // SAFETY: per-CPU scratch.
    let (truncated, reached) = unsafe { ((*st).truncated != 0, (*st).reached_root != 0) };
    Ok(Walked {
        len: len.min(PATH_BUF) as u32,
        truncated,
        outside_root: !reached && !truncated,
    })
}

#[repr(C)]
struct HashCtx {
    path: *const u8,
    len: u64,
    h: u64,
    last_dir: u64,
    found: u64,
    key: PathRuleKey,
}

/// Hashes byte `i`; at each `/` looks the prefix up as a tree rule. Returns 1 to stop.
#[inline(never)]
extern "C" fn hash_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the HashCtx on the caller's stack.
    let c = unsafe { &mut *(ctx as *mut HashCtx) };
    if i >= c.len {
        return 1;
    }
    // SAFETY: i < len <= PATH_MAX_OFF, masked for the verifier.
    let b = unsafe { *c.path.add((i as usize) & (PATH_MAX_OFF - 1)) };
    c.h = fnv1a_step(c.h, b);
    if b == b'/' {
        c.key.hash = c.h;
        if PATH_RULES.get_ptr(c.key).is_some() {
            c.found = 1;
            return 1;
        }
        c.last_dir = c.h;
    }
    0
}

/// Whether `path[..len]` is on `list` of `profile_id`: below a `dir/**` rule, exactly a rule,
/// or directly inside a `dir/*` rule. Hashes are FNV-1a of the path and of prefixes ending in `/`.
#[inline(always)]
pub fn path_listed(path: &[u8; PATH_BUF], len: u32, profile_id: u32, list: u32) -> bool {
    if len as usize >= PATH_MAX_OFF {
        // Longer than the kernel hashes: never matches a rule (the event says truncated).
        return false;
    }
    let mut c = HashCtx {
        path: path.as_ptr(),
        len: len as u64,
        h: FNV_OFFSET,
        last_dir: 0,
        found: 0,
        key: PathRuleKey {
            profile_id,
            list,
            form: FORM_TREE,
            _pad: 0,
            hash: 0,
        },
    };
    // SAFETY: callback and context follow bpf_loop's contract.
    unsafe {
        bpf_loop(
            PATH_MAX_OFF as u32,
            hash_step as *mut c_void,
            (&mut c as *mut HashCtx).cast(),
            0,
        )
    };
    if c.found != 0 {
        return true;
    }
    c.key.form = FORM_EXACT;
    c.key.hash = c.h;
    if PATH_RULES.get_ptr(c.key).is_some() {
        return true;
    }
    c.key.form = FORM_DIR;
    c.key.hash = c.last_dir;
    PATH_RULES.get_ptr(c.key).is_some()
}
