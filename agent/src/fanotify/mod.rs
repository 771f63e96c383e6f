//! File controls and file visibility through fanotify permission events on each container's own
//! overlay superblock (`FAN_MARK_FILESYSTEM` on its merged directory). The process waits in
//! `open(2)` until we answer; `FAN_DENY` gives it EPERM. Only the containers' superblocks are
//! marked, so no host open ever waits on the agent.
//!
//! Fail-open, written down: when the agent cannot tell what an open is (procfs raced, a path
//! it cannot read), it allows it and reports what it knew. When the agent dies, the kernel
//! allows every pending open as the fanotify group closes.
//!
//! Allowed answers for inodes no rule can match (by path, whatever the flags) are cached as
//! fanotify ignore marks, so a hot file costs one round trip, not one per open; the cache is
//! flushed whenever a policy is applied. Only single-link inodes are cached.
//!
//! Not covered here: unlink, rename and truncate(2) of read-only paths (fanotify has no
//! permission event for them; BPF LSM does), and files on other filesystems (volumes, and
//! Docker's bind-mounted /etc/hosts, /etc/hostname, /etc/resolv.conf).

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    sync::{Arc, Mutex},
};

use seawall_profile::{DriftPolicy, FilePolicy, Mode, Profile};
use seawall_proto::event::Action;
use tokio::sync::mpsc;

use crate::policy::verdict::{could_match, decide};

/// What one container's file policy needs at answer time.
#[derive(Clone)]
struct Watched {
    cgroup_id: u64,
    merged: String,
    policy: FilePolicy,
    /// The container's overlay upper directory, when script drift is checked.
    upper: Option<String>,
    drift: DriftPolicy,
}

/// One open the guard saw.
#[derive(Debug, Clone)]
pub struct FileEvent {
    pub cgroup_id: u64,
    pub pid: u32,
    pub path: String,
    /// open(2) flags, when the agent could read them.
    pub flags: Option<i32>,
    pub action: Action,
    /// `deny`, `read_only`, `monitor` or empty for plain visibility.
    pub rule: &'static str,
    /// An exec of a script written in the container (control `drift`), not an open.
    pub exec: bool,
}

pub struct FileGuard {
    fd: Arc<OwnedFd>,
    audit_all: bool,
    /// st_dev of each marked superblock → container.
    by_dev: Arc<Mutex<HashMap<u64, Watched>>>,
    marked: HashMap<u64, (u64, String)>,
    rx: Option<mpsc::Receiver<FileEvent>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileGuardError {
    #[error("fanotify_init: {0} (needs CAP_SYS_ADMIN and a kernel with CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")]
    Init(io::Error),
    #[error("fanotify_mark on {path}: {source}")]
    Mark { path: String, source: io::Error },
}

const FAN_MARK_FILESYSTEM: u32 = 0x0000_0100;

impl FileGuard {
    /// Starts the fanotify group and its reader thread. `audit_all` reports every open in
    /// monitored containers (`--audit-files`).
    pub fn start(audit_all: bool) -> Result<Self, FileGuardError> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_UNLIMITED_QUEUE,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if raw < 0 {
            return Err(FileGuardError::Init(io::Error::last_os_error()));
        }
        // SAFETY: fresh fd from the kernel.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let by_dev: Arc<Mutex<HashMap<u64, Watched>>> = Arc::default();
        let (tx, rx) = mpsc::channel(65_536);
        let (fd2, map2) = (fd.clone(), by_dev.clone());
        let root = crate::runtime::cgroup::cgroup2_root().ok();
        std::thread::Builder::new()
            .name("seawall-fanotify".into())
            .spawn(move || reader(fd2, map2, audit_all, root, tx))
            .expect("spawn the fanotify thread");
        Ok(Self {
            fd,
            audit_all,
            by_dev,
            marked: HashMap::new(),
            rx: Some(rx),
        })
    }

    /// The stream of file events (taken once).
    pub fn events(&mut self) -> mpsc::Receiver<FileEvent> {
        self.rx.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Marks the container's root filesystem when its profile has file rules or all opens are
    /// audited; otherwise nothing is marked and its opens cost nothing.
    pub fn watch_container(
        &mut self,
        cgroup_id: u64,
        merged: &str,
        upper: Option<&str>,
        profile: &Profile,
    ) -> Result<(), FileGuardError> {
        let p = &profile.files;
        let has_rules = p.mode != Mode::Off
            && !(p.deny.is_empty() && p.read_only.is_empty() && p.monitor.is_empty());
        // Scripts written in the container: the exec tracepoint only sees their (image)
        // interpreter, so their drift is checked here, at the permission to exec the script.
        let scripts = profile.drift.mode != Mode::Off && upper.is_some();
        let mut mask = 0;
        if has_rules || self.audit_all {
            mask |= libc::FAN_OPEN_PERM;
        }
        if scripts {
            mask |= libc::FAN_OPEN_EXEC_PERM;
        }
        if mask == 0 {
            self.unwatch_container(cgroup_id);
            return Ok(());
        }
        let dev = std::fs::metadata(merged)
            .map_err(|source| FileGuardError::Mark {
                path: merged.into(),
                source,
            })?
            .dev();
        {
            let c = CString::new(merged).map_err(|_| FileGuardError::Mark {
                path: merged.into(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?;
            // SAFETY: valid fd and NUL-terminated path.
            let r = unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                    mask,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if r < 0 {
                return Err(FileGuardError::Mark {
                    path: merged.into(),
                    source: io::Error::last_os_error(),
                });
            }
            self.marked.insert(cgroup_id, (dev, merged.to_string()));
        }
        // Cached "never matches" answers were for the previous rules.
        // SAFETY: valid fd; FAN_MARK_FLUSH without a type flushes the inode marks only.
        unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_FLUSH,
                0,
                libc::AT_FDCWD,
                std::ptr::null(),
            )
        };
        self.by_dev.lock().expect("fileguard lock").insert(
            dev,
            Watched {
                cgroup_id,
                merged: merged.to_string(),
                policy: profile.files.clone(),
                upper: upper.filter(|_| scripts).map(str::to_string),
                drift: profile.drift.clone(),
            },
        );
        Ok(())
    }

    pub fn unwatch_container(&mut self, cgroup_id: u64) {
        if let Some((dev, merged)) = self.marked.remove(&cgroup_id) {
            self.by_dev.lock().expect("fileguard lock").remove(&dev);
            if let Ok(c) = CString::new(merged) {
                // SAFETY: valid fd and path; failure (already unmounted) is fine.
                unsafe {
                    libc::fanotify_mark(
                        self.fd.as_raw_fd(),
                        libc::FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM,
                        libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM,
                        libc::AT_FDCWD,
                        c.as_ptr(),
                    )
                };
            }
        }
    }
}

/// open(2) flags of the syscall a task is blocked in, from `/proc/<pid>/syscall`.
pub fn pending_open_flags(pid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    parse_syscall_flags(&text)
}

fn parse_syscall_flags(text: &str) -> Option<i32> {
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    let args: Vec<u64> = it
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let flags = match nr {
        2 => *args.get(1)?,   // open(path, flags, mode)
        257 => *args.get(2)?, // openat(dirfd, path, flags, mode)
        85 => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64, // creat
        _ => return None,
    };
    Some(flags as i32)
}

fn reader(
    fd: Arc<OwnedFd>,
    by_dev: Arc<Mutex<HashMap<u64, Watched>>>,
    audit_all: bool,
    cgroup_root: Option<std::path::PathBuf>,
    tx: mpsc::Sender<FileEvent>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "reading fanotify events failed: file controls stopped");
            return;
        }
        let mut off = 0usize;
        let n = n as usize;
        let hdr = std::mem::size_of::<libc::fanotify_event_metadata>();
        while off + hdr <= n {
            // SAFETY: bounds checked; unaligned read of a plain struct.
            let m: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            if m.event_len < hdr as u32 {
                break;
            }
            off += m.event_len as usize;
            if m.fd < 0 {
                continue;
            }
            // SAFETY: the kernel gave us this fd; it is closed when `file` drops.
            let file = unsafe { OwnedFd::from_raw_fd(m.fd) };
            let exec = m.mask & libc::FAN_OPEN_EXEC_PERM != 0;
            let (ev, cacheable) = if exec {
                handle_exec(&file, m.pid as u32, &by_dev, cgroup_root.as_deref())
            } else {
                handle(
                    &file,
                    m.pid as u32,
                    &by_dev,
                    audit_all,
                    cgroup_root.as_deref(),
                )
            };
            let cache_bit = if exec {
                libc::FAN_OPEN_EXEC_PERM
            } else {
                libc::FAN_OPEN_PERM
            };
            if cacheable {
                // No rule can ever match this inode's path: later opens skip the round trip.
                // SAFETY: valid fds; a NULL path marks the inode the event fd refers to.
                unsafe {
                    libc::fanotify_mark(
                        fd.as_raw_fd(),
                        // Not surviving modification: a cached answer about a file is dropped
                        // as soon as the file changes (a modified image script is upper).
                        libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK,
                        cache_bit,
                        m.fd,
                        std::ptr::null(),
                    )
                };
            }
            if m.mask & (libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM) != 0 {
                let response = libc::fanotify_response {
                    fd: m.fd,
                    response: if ev.as_ref().is_some_and(|e| e.action == Action::Blocked) {
                        libc::FAN_DENY
                    } else {
                        libc::FAN_ALLOW
                    },
                };
                // SAFETY: valid fd and struct; a failed answer leaves the kernel to allow it
                // when the group closes.
                unsafe {
                    libc::write(
                        fd.as_raw_fd(),
                        (&response as *const libc::fanotify_response).cast(),
                        std::mem::size_of::<libc::fanotify_response>(),
                    )
                };
            }
            drop(file);
            if let Some(ev) = ev {
                if tx.blocking_send(ev).is_err() {
                    return;
                }
            }
        }
    }
}

/// The watched container an event's file belongs to (by superblock device), the file's stat,
/// and its path as seen inside the container: opened through the container's own root mount the
/// fd's path already reads that way; through the host's view of the merged directory it carries
/// that prefix, which is stripped.
fn locate(
    file: &OwnedFd,
    by_dev: &Mutex<HashMap<u64, Watched>>,
) -> Option<(Watched, libc::stat, String)> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    let w = by_dev.lock().ok()?.get(&st.st_dev).cloned()?;
    let host_path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let host_path = host_path.to_string_lossy();
    let path = match host_path.strip_prefix(w.merged.as_str()) {
        Some("") => "/".to_string(),
        Some(p) => p.to_string(),
        None => host_path.into_owned(),
    };
    Some((w, st, path))
}

fn handle(
    file: &OwnedFd,
    pid: u32,
    by_dev: &Mutex<HashMap<u64, Watched>>,
    audit_all: bool,
    cgroup_root: Option<&std::path::Path>,
) -> (Option<FileEvent>, bool) {
    let Some((w, st, path)) = locate(file, by_dev) else {
        return (None, false);
    };
    if !audit_all && !could_match(&w.policy, &path) {
        // No rule can match this inode's path, whoever opens it: allow, and cache the answer
        // when the inode has a single link (a hard link elsewhere could carry a ruled path).
        return (None, st.st_nlink == 1);
    }
    // Scope: only processes inside this container are ever denied (the engine itself, or
    // `docker cp`, also open these files).
    if !opener_in(pid, w.cgroup_id, cgroup_root) {
        return (None, false);
    }
    let flags = pending_open_flags(pid);
    let (action, rule) = decide(&w.policy, &path, flags);
    if action == Action::Allowed && !audit_all {
        return (None, false);
    }
    (
        Some(FileEvent {
            cgroup_id: w.cgroup_id,
            pid,
            path,
            flags,
            action,
            rule,
            exec: false,
        }),
        false,
    )
}

/// Permission to execute a file of the container. Files not in the overlay upper layer are
/// image files: allowed and cached. Upper-layer ELF binaries are left to the kernel's exec
/// hook (which kills them before their first instruction); upper-layer scripts (`#!`) are drift
/// here, decided under the container's drift policy, for processes inside the container only.
fn handle_exec(
    file: &OwnedFd,
    pid: u32,
    by_dev: &Mutex<HashMap<u64, Watched>>,
    cgroup_root: Option<&std::path::Path>,
) -> (Option<FileEvent>, bool) {
    let Some((w, _, path)) = locate(file, by_dev) else {
        return (None, false);
    };
    let Some(upper) = &w.upper else {
        return (None, false);
    };
    let in_upper = std::fs::symlink_metadata(format!("{upper}{path}"))
        .map(|m| m.file_type().is_file())
        .unwrap_or(false);
    if !in_upper {
        return (None, true);
    }
    let mut magic = [0u8; 2];
    // SAFETY: valid fd and buffer.
    let n = unsafe { libc::pread(file.as_raw_fd(), magic.as_mut_ptr().cast(), 2, 0) };
    if n != 2 || magic != *b"#!" {
        return (None, false);
    }
    if w.drift.allow.iter().any(|r| r.matches(&path)) || !opener_in(pid, w.cgroup_id, cgroup_root) {
        return (None, false);
    }
    let action = match w.drift.mode {
        Mode::Enforce => Action::Blocked,
        Mode::Audit => Action::Audited,
        Mode::Off => return (None, false),
    };
    (
        Some(FileEvent {
            cgroup_id: w.cgroup_id,
            pid,
            path,
            flags: None,
            action,
            rule: "drift",
            exec: true,
        }),
        false,
    )
}

/// Whether `pid` is in the container cgroup `cgroup_id` (or below it).
fn opener_in(pid: u32, cgroup_id: u64, cgroup_root: Option<&std::path::Path>) -> bool {
    crate::runtime::cgroup::pid_cgroup(pid)
        .and_then(|p| cgroup_root.map(|r| r.join(p.trim_start_matches('/'))))
        .and_then(|dir| {
            let mut d = dir.as_path();
            loop {
                if std::fs::metadata(d).ok()?.ino() == cgroup_id {
                    return Some(true);
                }
                d = d.parent()?;
            }
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_open_flags_from_proc_syscall_lines() {
        // openat(AT_FDCWD, p, O_WRONLY|O_CREAT|O_TRUNC, 0666)
        let line = "257 0xffffffffffffff9c 0x7ffd1234 0x241 0x1b6 0x0 0x0 0x7ffd0000 0x7f000000\n";
        assert_eq!(parse_syscall_flags(line), Some(0x241));
        assert_eq!(parse_syscall_flags("2 0x7ffd 0x0 0x0 0 0 0 0 0"), Some(0));
        assert_eq!(parse_syscall_flags("running\n"), None);
        assert_eq!(
            parse_syscall_flags("0 0x3 0x7ffd 0x10 0 0 0 0 0"),
            None,
            "read(2) is not an open"
        );
    }
}
