//! Kernel-enforced file rules on the fallback backend, made inside each container's own mount
//! namespace, at no per-open cost (Docker's default capabilities have no `CAP_SYS_ADMIN`, so
//! the container cannot unmount them):
//! - a `dir/**` `read_only` rule: a recursive read-only bind mount of the directory — the kernel
//!   refuses every write, create, truncate, `unlink`, `rename`, `link`, `chmod` and `chown`
//!   below it, from any thread, ABI or io_uring (`EROFS`; the attempt is not reported: fanotify
//!   never sees a refused write open);
//! - a literal or `dir/**` `deny` rule: a masking mount (an empty, read-only file or directory),
//!   so the content is gone whatever name reaches it, and fanotify refuses and reports its open;
//! - a literal `read_only` rule: the file bound onto itself (its name is then a mount point:
//!   `unlink` and `rename` are `EBUSY`, a hard link `EXDEV`), while fanotify refuses and
//!   reports every open for writing (EPERM, the event the operator sees). Left to the other
//!   backend: `truncate(2)`, `chmod` and `chown` of it (a read-only mount would refuse them but
//!   also refuse the write open before fanotify could report it).
//!
//! fanotify stays the only enforcer of `dir/*` rules and globs.
//!
//! In enforce mode only: audit must let the write happen (and fanotify reports it). The mounts
//! are made while the container's first exec is held by the kernel (`RULES_HOLD_FIRST_EXEC`), so
//! nothing in the container runs before them; for a container already running when the agent
//! starts they are made at once. With drift prevention on, `/etc/ld.so.preload` and
//! `/etc/ld.so.cache` are made read-only too (an empty preload file is created first where the
//! image has none): the glibc loader would otherwise map whatever they name, unseen.
//!
//! How: the agent forks a child that joins the container's mount namespace (`setns`), roots
//! itself at the container's root, and attaches detached mounts made with `open_tree` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)` + `move_mount`, so no path is ever bound writable, even
//! for an instant. The child does only raw syscalls on memory prepared before the fork.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use seawall_profile::{FilePolicy, Mode, PathRule};

/// What one mount does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MountKind {
    /// The file bound onto itself: its name cannot be unlinked, renamed or linked.
    Pin,
    /// The path (file, or directory tree) stays readable and cannot be changed.
    ReadOnly,
    /// The path shows an empty, read-only file or directory instead of its content.
    Mask,
}

/// One mount to make inside a container, at `path` (absolute, as the container sees it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlannedMount {
    pub path: String,
    pub kind: MountKind,
}

/// The mounts a container's file policy asks for (sorted outermost first, so a mask inside a
/// read-only tree goes on top of it). Only literal paths and `dir/**` trees: a `dir/*` rule
/// covers one level, which a mount of the directory would exceed, so fanotify keeps it.
pub fn plan(files: &FilePolicy, drift_enforced: bool) -> Vec<PlannedMount> {
    let mut out = Vec::new();
    if files.mode == Mode::Enforce {
        for (globs, deny) in [(&files.read_only, false), (&files.deny, true)] {
            for pattern in globs.patterns() {
                let (path, kind) = match (PathRule::parse(pattern), deny) {
                    (Ok(PathRule::Exact(p)), true) => (p, MountKind::Mask),
                    (Ok(PathRule::Exact(p)), false) => (p, MountKind::Pin),
                    (Ok(PathRule::Tree(d)), true) if d != "/" => {
                        (d.trim_end_matches('/').to_string(), MountKind::Mask)
                    }
                    (Ok(PathRule::Tree(d)), false) if d != "/" => {
                        (d.trim_end_matches('/').to_string(), MountKind::ReadOnly)
                    }
                    _ => continue,
                };
                out.push(PlannedMount { path, kind });
            }
        }
    }
    if drift_enforced {
        for path in [LD_SO_PRELOAD, "/etc/ld.so.cache"] {
            out.push(PlannedMount {
                path: path.into(),
                kind: MountKind::ReadOnly,
            });
        }
    }
    // A mask wins over a read-only mount of the same path; a path below a mask is hidden
    // already.
    out.sort_by(|a, b| {
        depth(&a.path)
            .cmp(&depth(&b.path))
            .then(a.path.cmp(&b.path))
            .then(b.kind.cmp(&a.kind))
    });
    out.dedup_by(|b, a| a.path == b.path);
    let masks: Vec<String> = out
        .iter()
        .filter(|m| m.kind == MountKind::Mask)
        .map(|m| format!("{}/", m.path))
        .collect();
    out.retain(|m| !masks.iter().any(|d| m.path.starts_with(d.as_str())));
    out
}

fn depth(p: &str) -> usize {
    p.matches('/').count()
}

/// The preload list glibc's loader reads for every dynamic program.
pub const LD_SO_PRELOAD: &str = "/etc/ld.so.preload";

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("opening the namespace of pid {pid}: {source}")]
    Namespace { pid: u32, source: io::Error },
    #[error("preparing the mask {path}: {source}")]
    Mask { path: PathBuf, source: io::Error },
    #[error("a path in the container's file rules is not a valid C string: {0:?}")]
    Path(String),
    #[error("forking the mount helper: {0}")]
    Fork(io::Error),
    #[error("mount {path} ({kind:?}) in the container: {source}")]
    Mount {
        path: String,
        kind: MountKind,
        source: io::Error,
    },
}

/// The outcome of [`apply`]: the mounts made, and the ones skipped because the path does not
/// exist in the container (nothing there to protect; fanotify still watches the name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub made: Vec<PlannedMount>,
    pub missing: Vec<PlannedMount>,
}

/// Where the agent keeps the empty file and directory its masks show.
pub fn mask_dir() -> PathBuf {
    PathBuf::from("/run/seawall/masks")
}

/// Creates the empty, read-only mask file and directory once.
fn masks(dir: &Path) -> Result<(PathBuf, PathBuf), MountError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| MountError::Mask { path, source }
    };
    let file = dir.join("empty-file");
    let empty = dir.join("empty-dir");
    std::fs::create_dir_all(&empty).map_err(err(&empty))?;
    if !file.exists() {
        std::fs::write(&file, b"").map_err(err(&file))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).map_err(err(&file))?;
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o555))
        .map_err(err(&empty))?;
    Ok((file, empty))
}

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const AT_RECURSIVE: u32 = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached, read-only copy of the mount at `dirfd`/`path` (recursive for directories).
///
/// # Safety
/// Raw syscalls only; safe to call in a forked child of a multithreaded process.
unsafe fn detached_rdonly(dirfd: i32, path: *const libc::c_char, recursive: bool) -> i32 {
    let flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: the caller passes a NUL-terminated path.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path, flags) } as i32;
    if fd < 0 {
        return fd;
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let at = libc::AT_EMPTY_PATH as u32 | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid mount fd and attribute struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            at,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return -1;
    }
    fd
}

/// A detached copy of the mount at `dirfd`/`path` (not recursive), writable as it was.
///
/// # Safety
/// Raw syscalls only; safe to call in a forked child of a multithreaded process.
unsafe fn detached(dirfd: i32, path: *const libc::c_char) -> i32 {
    // SAFETY: the caller passes a NUL-terminated path.
    unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path,
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        ) as i32
    }
}

/// What the child reports back: the index of the first failing mount (or `u32::MAX`), its
/// errno, and one bit per mount whose path was missing.
#[repr(C)]
#[derive(Clone, Copy)]
struct Report {
    failed: u32,
    errno: i32,
    missing: [u64; 4],
}

/// Makes `mounts` inside the mount namespace of `pid` (a process of the container), rooted at
/// the container's root. At most 256 mounts per call.
pub fn apply(pid: u32, mounts: &[PlannedMount]) -> Result<Applied, MountError> {
    let mounts = &mounts[..mounts.len().min(256)];
    if mounts.is_empty() {
        return Ok(Applied::default());
    }
    let (mask_file, mask_dir) = masks(&mask_dir())?;
    let ns_err = |source| MountError::Namespace { pid, source };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(ns_err)?;
    let root = std::fs::File::open(format!("/proc/{pid}/root")).map_err(ns_err)?;
    let cpath =
        |p: &str| CString::new(p.trim_start_matches('/')).map_err(|_| MountError::Path(p.into()));
    let targets: Vec<CString> = mounts
        .iter()
        .map(|m| cpath(&m.path))
        .collect::<Result<_, _>>()?;
    let dot = c".";
    // Masks are cloned from the host before joining the container's namespace: one detached
    // tree per target (a detached tree is attached once), a file and a directory, and the
    // child uses the one that matches what the target is in the container.
    let clone_mask = |src: &Path| -> Option<OwnedFd> {
        let c = CString::new(src.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: raw syscall on a valid path; the fd is owned below.
        let fd = unsafe { detached_rdonly(libc::AT_FDCWD, c.as_ptr(), false) };
        // SAFETY: a fresh descriptor.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mask_fds: Vec<(Option<OwnedFd>, Option<OwnedFd>)> = mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Mask => (clone_mask(&mask_file), clone_mask(&mask_dir)),
            MountKind::ReadOnly | MountKind::Pin => (None, None),
        })
        .collect();
    let mut fds = [0i32; 2];
    // SAFETY: room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(MountError::Fork(io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptors.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: the child below only makes raw syscalls on memory prepared above, then _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(MountError::Fork(io::Error::last_os_error()));
    }
    if child == 0 {
        let mut report = Report {
            failed: u32::MAX,
            errno: 0,
            missing: [0; 4],
        };
        // SAFETY (all): raw syscalls in the forked child.
        unsafe {
            let fail = |report: &mut Report, i: usize| {
                report.failed = i as u32;
                report.errno = *libc::__errno_location();
            };
            'work: {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0
                    || libc::fchdir(root.as_raw_fd()) != 0
                    || libc::chroot(dot.as_ptr()) != 0
                {
                    fail(&mut report, usize::MAX >> 1);
                    break 'work;
                }
                for (i, m) in mounts.iter().enumerate() {
                    let t = targets[i].as_ptr();
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::stat(t, &mut st) != 0 && m.path == LD_SO_PRELOAD {
                        // An empty preload list, so there is something to make read-only.
                        let fd =
                            libc::open(t, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                    }
                    if libc::stat(t, &mut st) != 0 {
                        report.missing[i / 64] |= 1u64 << (i % 64);
                        continue;
                    }
                    let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    let src = match (m.kind, &mask_fds[i]) {
                        (MountKind::ReadOnly, _) => detached_rdonly(libc::AT_FDCWD, t, dir),
                        (MountKind::Pin, _) => detached(libc::AT_FDCWD, t),
                        (MountKind::Mask, (Some(f), _)) if !dir => f.as_raw_fd(),
                        (MountKind::Mask, (_, Some(d))) if dir => d.as_raw_fd(),
                        (MountKind::Mask, _) => -1,
                    };
                    if src < 0
                        || libc::syscall(
                            libc::SYS_move_mount,
                            src,
                            c"".as_ptr(),
                            libc::AT_FDCWD,
                            t,
                            MOVE_MOUNT_F_EMPTY_PATH,
                        ) != 0
                    {
                        fail(&mut report, i);
                        break 'work;
                    }
                }
            }
            libc::write(
                wr.as_raw_fd(),
                (&report as *const Report).cast(),
                std::mem::size_of::<Report>(),
            );
            libc::_exit(0);
        }
    }
    drop(wr);
    let mut report = Report {
        failed: u32::MAX - 1,
        errno: 0,
        missing: [0; 4],
    };
    // SAFETY: reading the child's report into a plain struct.
    let n = unsafe {
        libc::read(
            rd.as_raw_fd(),
            (&mut report as *mut Report).cast(),
            std::mem::size_of::<Report>(),
        )
    };
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if n as usize != std::mem::size_of::<Report>() {
        return Err(MountError::Fork(io::Error::other("the mount helper died")));
    }
    if report.failed != u32::MAX {
        let (path, kind) = mounts
            .get(report.failed as usize)
            .map(|m| (m.path.clone(), m.kind))
            .unwrap_or_else(|| ("<namespace>".into(), MountKind::ReadOnly));
        return Err(MountError::Mount {
            path,
            kind,
            source: io::Error::from_raw_os_error(report.errno),
        });
    }
    let mut applied = Applied::default();
    for (i, m) in mounts.iter().enumerate() {
        if report.missing[i / 64] & (1u64 << (i % 64)) != 0 {
            applied.missing.push(m.clone());
        } else {
            applied.made.push(m.clone());
        }
    }
    Ok(applied)
}

/// Removes mounts made earlier (after a reload dropped their rules), innermost first.
pub fn remove(pid: u32, mounts: &[PlannedMount]) -> Result<(), MountError> {
    let ns_err = |source| MountError::Namespace { pid, source };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(ns_err)?;
    let root = std::fs::File::open(format!("/proc/{pid}/root")).map_err(ns_err)?;
    let targets: Vec<CString> = mounts
        .iter()
        .rev()
        .map(|m| {
            CString::new(m.path.trim_start_matches('/'))
                .map_err(|_| MountError::Path(m.path.clone()))
        })
        .collect::<Result<_, _>>()?;
    // SAFETY: the child only makes raw syscalls, then _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(MountError::Fork(io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: raw syscalls in the forked child.
        unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) == 0
                && libc::fchdir(root.as_raw_fd()) == 0
                && libc::chroot(c".".as_ptr()) == 0
            {
                for t in &targets {
                    libc::umount2(t.as_ptr(), libc::MNT_DETACH);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_profile::PathGlobs;

    fn files(mode: Mode, deny: &[&str], ro: &[&str]) -> FilePolicy {
        let g = |v: &[&str]| PathGlobs::new(v.iter().map(|s| s.to_string()).collect()).unwrap();
        FilePolicy {
            mode,
            deny: g(deny),
            read_only: g(ro),
            monitor: PathGlobs::default(),
        }
    }

    fn paths(p: &[PlannedMount]) -> Vec<(&str, MountKind)> {
        p.iter().map(|m| (m.path.as_str(), m.kind)).collect()
    }

    #[test]
    fn literal_and_tree_rules_become_mounts_outermost_first() {
        let p = plan(
            &files(
                Mode::Enforce,
                &["/etc/shadow", "/secrets/**"],
                &["/etc/**", "/etc/passwd", "/app/*", "/etc/*.conf"],
            ),
            false,
        );
        assert_eq!(
            paths(&p),
            vec![
                ("/etc", MountKind::ReadOnly),
                ("/secrets", MountKind::Mask),
                ("/etc/passwd", MountKind::Pin),
                ("/etc/shadow", MountKind::Mask),
            ],
            "`dir/*` and globs stay with fanotify"
        );
    }

    #[test]
    fn a_mask_wins_and_hides_what_is_below_it() {
        let p = plan(
            &files(Mode::Enforce, &["/data/**"], &["/data", "/data/x/y"]),
            false,
        );
        assert_eq!(paths(&p), vec![("/data", MountKind::Mask)]);
    }

    #[test]
    fn audit_makes_no_mounts_and_drift_protects_the_loader_files() {
        assert!(plan(
            &files(Mode::Audit, &["/etc/shadow"], &["/etc/passwd"]),
            false
        )
        .is_empty());
        assert_eq!(
            paths(&plan(&files(Mode::Off, &[], &[]), true)),
            vec![
                ("/etc/ld.so.cache", MountKind::ReadOnly),
                ("/etc/ld.so.preload", MountKind::ReadOnly),
            ]
        );
    }
}
