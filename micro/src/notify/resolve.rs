//! Which file a path argument names, resolved as the caller's kernel would (its cwd, its
//! directory fd, its root, symlinks), from the supervisor. This feeds events and predictions
//! only: the decision on the file is Landlock's, taken by the kernel on what it resolves itself.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::target::Target;
use crate::fs::walk::FileId;

/// A resolved path argument.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Absolute and symlink-free as the supervisor sees it (the container's view), or the
    /// kernel's name for a file with no path (`/memfd:x (deleted)`).
    pub path: PathBuf,
    /// The file, when it exists.
    pub id: Option<FileId>,
    /// Mode bits, when it exists.
    pub mode: u32,
    /// A memfd or a deleted file: nothing on disk to have been in the image.
    pub detached: bool,
}

const AT_FDCWD: i32 = libc::AT_FDCWD;

fn open_path(dirfd: i32, path: &[u8], flags: i32, in_root: bool) -> Option<OwnedFd> {
    let c = CString::new(path).ok()?;
    // SAFETY: a plain struct, zero is its neutral value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | flags) as u64;
    how.resolve = if in_root { libc::RESOLVE_IN_ROOT } else { 0 };
    // SAFETY: valid C string and open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    // SAFETY: a new fd we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn describe_fd(fd: &OwnedFd) -> Option<Resolved> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    Some(from_link(link, &meta))
}

fn from_link(link: PathBuf, meta: &std::fs::Metadata) -> Resolved {
    let s = link.as_os_str().as_bytes();
    let detached = s.starts_with(b"/memfd:") || s.ends_with(b" (deleted)");
    Resolved {
        path: link,
        id: Some((meta.dev(), meta.ino())),
        mode: meta.mode(),
        detached,
    }
}

/// `/proc/self/…` in the caller means the caller, not the supervisor.
fn rewrite_self(t: &Target, path: &[u8]) -> Vec<u8> {
    for (prefix, with) in [
        (&b"/proc/self"[..], format!("/proc/{}", t.tgid)),
        (
            &b"/proc/thread-self"[..],
            format!("/proc/{}/task/{}", t.tgid, t.tid),
        ),
    ] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest[0] == b'/' {
                let mut v = with.into_bytes();
                v.extend_from_slice(rest);
                return v;
            }
        }
    }
    path.to_vec()
}

/// Resolves `path` relative to the caller's `dirfd` (`AT_FDCWD` for its cwd). An empty path
/// with `empty_is_fd` names the fd itself (`AT_EMPTY_PATH`). When the last component does not
/// exist, the result is its parent's resolved path joined with it, with no `id`.
pub fn resolve(
    t: &Target,
    dirfd: i32,
    path: &[u8],
    follow: bool,
    empty_is_fd: bool,
) -> Option<Resolved> {
    if path.is_empty() {
        if !empty_is_fd {
            return None;
        }
        let fdlink = t.proc_path(&format!("fd/{dirfd}"));
        let link = std::fs::read_link(&fdlink).ok()?;
        let meta = std::fs::metadata(&fdlink).ok()?;
        return Some(from_link(link, &meta));
    }
    let path = rewrite_self(t, path);
    let absolute = path.first() == Some(&b'/');
    let base = if absolute {
        t.proc_path("root")
    } else if dirfd == AT_FDCWD {
        t.proc_path("cwd")
    } else {
        t.proc_path(&format!("fd/{dirfd}"))
    };
    let base_fd = open_path(
        AT_FDCWD,
        base.as_os_str().as_bytes(),
        libc::O_DIRECTORY,
        false,
    )?;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    // A caller in a root of its own (chroot) gets its absolute symlinks resolved in it. That
    // also refuses magic links (`/proc/self/fd/N`, `/proc/self/root/…`), so a caller in our
    // root is resolved plainly: its absolute symlinks mean what they mean for us.
    let in_root = absolute && !same_root(t);
    if let Some(fd) = open_path(base_fd.as_raw_fd(), &path, nofollow, in_root) {
        return describe_fd(&fd);
    }
    // Not there (yet): resolve the directory it would be created in.
    let trimmed = path.strip_suffix(b"/").unwrap_or(&path);
    let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let dfd = open_path(base_fd.as_raw_fd(), dir, libc::O_DIRECTORY, in_root)?;
    let parent = describe_fd(&dfd)?;
    Some(Resolved {
        path: parent
            .path
            .join(Path::new(std::ffi::OsStr::from_bytes(name))),
        id: None,
        mode: 0,
        detached: false,
    })
}

/// Absolute path as a string for globs and messages.
pub fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Whether the caller's root is ours (it may have chrooted elsewhere).
pub fn same_root(t: &Target) -> bool {
    let ours = std::fs::metadata("/");
    let theirs = std::fs::metadata(t.proc_path("root"));
    matches!((ours, theirs), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino())
}
