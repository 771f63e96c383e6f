//! The file sensor of the fallback backend: fanotify permission events on every mount of each
//! monitored container (its overlay root, its tmpfs mounts, volumes, Docker's bind-mounted
//! `/etc/hosts` and friends, and the agent's own read-only and masking mounts), marked inside
//! its mount namespace (`FAN_MARK_MOUNT` through `/proc/<pid>/root`), so no host open ever waits
//! on the agent. The opener waits in `open(2)`/`execve(2)` until we answer; `FAN_DENY` gives it
//! EPERM.
//!
//! - Opens (`FAN_OPEN_PERM`): file deny / read-only / monitor rules, on the path's bytes, with
//!   the opener's flags read from the blocked thread (`FAN_REPORT_TID`, see `opener.rs`);
//!   unknown flags count as a write (fail closed). Literal and `dir/**` rules are also enforced
//!   by the kernel through mounts (`enforced.rs`): fanotify is then the reporter, and the only
//!   enforcer for `dir/*` rules and globs.
//! - Execs (`FAN_OPEN_EXEC_PERM`): a `#!` script that is not the image's file is drift
//!   (`scripts.rs`), wherever it lives; ELF files are the kernel's to judge.
//!
//! Answers for inodes no rule can match (and proven image files, for execs) are cached as
//! fanotify ignore marks, so a hot file costs one round trip, not one per open; the cache is
//! flushed whenever a policy is applied. Only single-link inodes are cached.
//!
//! Fail-open, written down: when the agent dies, the kernel allows every pending open as the
//! group closes (the kernel-enforced mounts stay). A process outside the container (the engine
//! itself, `docker cp` through `/proc/<pid>/root`) is never denied.

pub mod enforced;
mod event;
pub mod mountinfo;
pub mod opener;
pub mod scripts;

pub use event::to_event;

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    sync::{Arc, Mutex},
};

use seawall_profile::{DriftPolicy, FilePolicy, Mode, Profile};
use seawall_proto::event::Action;
use tokio::sync::mpsc;

use self::{
    opener::pending_open_flags,
    scripts::{FileFacts, Layers, Origin},
};

/// What one container's policy needs at answer time.
struct Watched {
    cgroup_id: u64,
    policy: FilePolicy,
    drift: DriftPolicy,
    /// The container's root mount (execs on other mounts are not the image's).
    root_mount: u64,
    layers: Option<Layers>,
    scripts: bool,
    opens: bool,
    /// Read-only bind mounts the agent made (`dir/**` read-only rules): a write open there
    /// fails in the kernel before it reaches us, so what does reach us is a read.
    read_only_mounts: Vec<u64>,
}

/// One open or exec the guard saw.
#[derive(Debug, Clone)]
pub struct FileEvent {
    pub cgroup_id: u64,
    pub pid: u32,
    /// From the container's root; bytes (file names need not be UTF-8).
    pub path: Vec<u8>,
    /// open(2) flags, when the agent could read them; `None` counts as a write.
    pub flags: Option<i32>,
    pub action: Action,
    /// `deny`, `read_only`, `monitor`, `drift` or empty for plain visibility.
    pub rule: &'static str,
    /// An exec of a script (control `drift`), not an open; with why it is drift.
    pub exec: Option<&'static str>,
}

pub struct FileGuard {
    fd: Arc<OwnedFd>,
    audit_all: bool,
    /// Whether scripts are judged here (the fallback: BPF LSM judges them in the kernel).
    judge_scripts: bool,
    /// Mount id of each marked mount → its container.
    by_mount: Arc<Mutex<HashMap<u64, Arc<Watched>>>>,
    /// Container → its marked mounts (id, marked path).
    marked: HashMap<u64, Vec<(u64, CString)>>,
    /// Container → its policy, until its mounts are known (first exec, or already running).
    pending: HashMap<u64, Profile>,
    rx: Option<mpsc::Receiver<FileEvent>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileGuardError {
    #[error("fanotify_init: {0} (needs CAP_SYS_ADMIN and a kernel with CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")]
    Init(io::Error),
    #[error("reading the mounts of pid {pid}: {source}")]
    Mounts { pid: u32, source: io::Error },
    #[error("fanotify_mark on {path}: {source}")]
    Mark { path: String, source: io::Error },
}

/// Whether a profile needs the guard for this container at all: (opens, scripts).
fn wanted(profile: &Profile, audit_all: bool, judge_scripts: bool) -> (bool, bool) {
    let f = &profile.files;
    let opens = audit_all
        || (f.mode != Mode::Off
            && !(f.deny.is_empty() && f.read_only.is_empty() && f.monitor.is_empty()));
    (opens, judge_scripts && profile.drift.mode != Mode::Off)
}

impl FileGuard {
    /// Starts the fanotify group and its reader thread. `audit_all` reports every open in
    /// monitored containers (`--audit-files`); `judge_scripts` is false where BPF LSM judges
    /// every binfmt stage of an exec itself.
    pub fn start(audit_all: bool, judge_scripts: bool) -> Result<Self, FileGuardError> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT
                    | libc::FAN_CLOEXEC
                    | libc::FAN_UNLIMITED_QUEUE
                    | libc::FAN_REPORT_TID,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if raw < 0 {
            return Err(FileGuardError::Init(io::Error::last_os_error()));
        }
        // SAFETY: fresh fd from the kernel.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let by_mount: Arc<Mutex<HashMap<u64, Arc<Watched>>>> = Arc::default();
        let (tx, rx) = mpsc::channel(65_536);
        let (fd2, map2) = (fd.clone(), by_mount.clone());
        let root = crate::cgroupfs::cgroup2_root().ok();
        std::thread::Builder::new()
            .name("seawall-fanotify".into())
            .spawn(move || reader(fd2, map2, audit_all, root, tx))
            .expect("spawn the fanotify thread");
        Ok(Self {
            fd,
            audit_all,
            judge_scripts,
            by_mount,
            marked: HashMap::new(),
            pending: HashMap::new(),
            rx: Some(rx),
        })
    }

    /// The stream of file events (taken once).
    pub fn events(&mut self) -> mpsc::Receiver<FileEvent> {
        self.rx.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Whether the container's mounts must be marked before its first process runs.
    pub fn needs(&self, profile: &Profile) -> bool {
        let (opens, scripts) = wanted(profile, self.audit_all, self.judge_scripts);
        opens || scripts
    }

    /// Records the container's profile; its mounts are marked by [`FileGuard::watch_mounts`]
    /// once its mount namespace exists (its first exec, held by the kernel for this).
    pub fn prepare(&mut self, cgroup_id: u64, profile: &Profile) {
        self.pending.insert(cgroup_id, profile.clone());
    }

    /// Whether the container is prepared but not marked yet.
    pub fn is_pending(&self, cgroup_id: u64) -> bool {
        self.pending.contains_key(&cgroup_id) && !self.marked.contains_key(&cgroup_id)
    }

    /// Marks every mount of the container `pid` is in, under its recorded profile (the old
    /// marks are replaced: a reload, or new mounts made by the agent).
    pub fn watch_mounts(
        &mut self,
        cgroup_id: u64,
        pid: u32,
        read_only: &[Vec<u8>],
    ) -> Result<usize, FileGuardError> {
        let Some(profile) = self.pending.get(&cgroup_id).cloned() else {
            return Ok(0);
        };
        self.unwatch_container(cgroup_id);
        self.pending.insert(cgroup_id, profile.clone());
        let (opens, scripts) = wanted(&profile, self.audit_all, self.judge_scripts);
        if !(opens || scripts) {
            return Ok(0);
        }
        let mounts =
            mountinfo::of_pid(pid).map_err(|source| FileGuardError::Mounts { pid, source })?;
        let root = mounts.iter().find(|m| m.is_root());
        let watched = Arc::new(Watched {
            cgroup_id,
            policy: profile.files.clone(),
            drift: profile.drift.clone(),
            root_mount: root.map(|m| m.id).unwrap_or(0),
            layers: root
                .and_then(|m| m.overlay_layers())
                .map(|(upper, lowers)| Layers { upper, lowers }),
            scripts,
            opens,
            read_only_mounts: mounts
                .iter()
                .filter(|m| read_only.contains(&m.mount_point))
                .map(|m| m.id)
                .collect(),
        });
        let mut mask = 0;
        if opens {
            mask |= libc::FAN_OPEN_PERM;
        }
        if scripts {
            mask |= libc::FAN_OPEN_EXEC_PERM;
        }
        let mut marked = Vec::new();
        for m in mounts.iter().filter(|m| m.markable()) {
            let mut p = format!("/proc/{pid}/root").into_bytes();
            if !m.is_root() {
                p.extend_from_slice(&m.mount_point);
            }
            let Ok(c) = CString::new(p) else { continue };
            // SAFETY: valid fd and NUL-terminated path.
            let r = unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                    mask,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if m.is_root() {
                    return Err(FileGuardError::Mark {
                        path: String::from_utf8_lossy(c.as_bytes()).into_owned(),
                        source: e,
                    });
                }
                tracing::warn!(container_cgroup_id = cgroup_id, mount = %String::from_utf8_lossy(&m.mount_point), error = %e, "a container mount could not be marked: its files are not covered");
                continue;
            }
            marked.push((m.id, c));
        }
        {
            let mut by = self.by_mount.lock().expect("fileguard lock");
            for (id, _) in &marked {
                by.insert(*id, watched.clone());
            }
        }
        let n = marked.len();
        self.marked.insert(cgroup_id, marked);
        self.flush_cache();
        Ok(n)
    }

    /// Cached "never matches" answers were for the previous rules.
    fn flush_cache(&self) {
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
    }

    pub fn unwatch_container(&mut self, cgroup_id: u64) {
        self.pending.remove(&cgroup_id);
        let Some(marks) = self.marked.remove(&cgroup_id) else {
            return;
        };
        let mut by = self.by_mount.lock().expect("fileguard lock");
        for (id, path) in marks {
            by.remove(&id);
            // SAFETY: valid fd and path; failure (the container is gone) is fine.
            unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_REMOVE | libc::FAN_MARK_MOUNT,
                    libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                )
            };
        }
    }
}

/// The decision for one open under a container's file policy; `flags: None` (unknown) counts as
/// a write.
pub fn decide(policy: &FilePolicy, path: &[u8], flags: Option<i32>) -> (Action, &'static str) {
    if policy.mode == Mode::Off {
        return (Action::Allowed, "");
    }
    let hit = match policy.mode {
        Mode::Enforce => Action::Blocked,
        _ => Action::Audited,
    };
    if policy.deny.matches_bytes(path) {
        return (hit, "deny");
    }
    let w = opener::writes(flags);
    if w && policy.read_only.matches_bytes(path) {
        return (hit, "read_only");
    }
    if w && policy.monitor.matches_bytes(path) {
        return (Action::Audited, "monitor");
    }
    (Action::Allowed, "")
}

/// Whether any rule could apply to this path under some open flags.
fn could_match(policy: &FilePolicy, path: &[u8]) -> bool {
    policy.mode != Mode::Off
        && (policy.deny.matches_bytes(path)
            || policy.read_only.matches_bytes(path)
            || policy.monitor.matches_bytes(path))
}

fn reader(
    fd: Arc<OwnedFd>,
    by_mount: Arc<Mutex<HashMap<u64, Arc<Watched>>>>,
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
            let tid = m.pid as u32;
            let (ev, cacheable) = match locate(&file, &by_mount) {
                None => (None, false),
                Some((w, facts, path)) if exec => {
                    handle_exec(&file, tid, &w, facts, path, cgroup_root.as_deref())
                }
                Some((w, facts, path)) => {
                    handle_open(tid, &w, facts, path, audit_all, cgroup_root.as_deref())
                }
            };
            if cacheable {
                let cache_bit = if exec {
                    libc::FAN_OPEN_EXEC_PERM
                } else {
                    libc::FAN_OPEN_PERM
                };
                // No rule can ever match this inode (or it is the image's): later opens skip
                // the round trip. Not surviving modification: a cached answer about a file is
                // dropped as soon as the file changes.
                // SAFETY: valid fds; a NULL path marks the inode the event fd refers to.
                unsafe {
                    libc::fanotify_mark(
                        fd.as_raw_fd(),
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

/// The watched container an event's file belongs to (by the mount it was reached through),
/// the facts of the file, and its path from the container's root, as bytes.
fn locate(
    file: &OwnedFd,
    by_mount: &Mutex<HashMap<u64, Arc<Watched>>>,
) -> Option<(Arc<Watched>, FileFacts, Vec<u8>)> {
    // SAFETY: a plain struct the kernel fills.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, out-pointer.
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_INO | libc::STATX_NLINK | libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return None;
    }
    let w = by_mount.lock().ok()?.get(&stx.stx_mnt_id).cloned()?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let mut path = link.as_os_str().as_bytes().to_vec();
    if stx.stx_nlink == 0 {
        if let Some(p) = path.strip_suffix(b" (deleted)") {
            path = p.to_vec();
        }
    }
    let facts = FileFacts {
        nlink: stx.stx_nlink as u64,
        ino: stx.stx_ino,
        on_root: stx.stx_mnt_id == w.root_mount,
        mount: stx.stx_mnt_id,
    };
    Some((w, facts, path))
}

fn handle_open(
    tid: u32,
    w: &Watched,
    facts: FileFacts,
    path: Vec<u8>,
    audit_all: bool,
    cgroup_root: Option<&std::path::Path>,
) -> (Option<FileEvent>, bool) {
    if !w.opens {
        return (None, false);
    }
    if !audit_all && !could_match(&w.policy, &path) {
        // No rule can match this inode's path, whoever opens it: allow, and cache the answer
        // when the inode has a single link (a hard link elsewhere could carry a ruled path).
        return (None, facts.nlink == 1);
    }
    if !audit_all
        && w.read_only_mounts.contains(&facts.mount)
        && !w.policy.deny.matches_bytes(&path)
        && !w.policy.monitor.matches_bytes(&path)
    {
        // Below a read-only mount: the kernel refused any write before it reached us, so this
        // is a read, and no per-open round trip is needed any more.
        return (None, facts.nlink == 1);
    }
    // Scope: only processes inside this container are ever denied.
    if !opener_in(tid, w.cgroup_id, cgroup_root) {
        return (None, false);
    }
    let flags = pending_open_flags(tid);
    let (action, rule) = decide(&w.policy, &path, flags);
    if action == Action::Allowed && !audit_all {
        return (None, false);
    }
    (
        Some(FileEvent {
            cgroup_id: w.cgroup_id,
            pid: tid,
            path,
            flags,
            action,
            rule,
            exec: None,
        }),
        false,
    )
}

/// Permission to execute a file of the container: a `#!` script that is not the image's file
/// is drift (for processes inside the container only); proven image files are cached.
fn handle_exec(
    file: &OwnedFd,
    tid: u32,
    w: &Watched,
    facts: FileFacts,
    path: Vec<u8>,
    cgroup_root: Option<&std::path::Path>,
) -> (Option<FileEvent>, bool) {
    if !w.scripts {
        return (None, false);
    }
    let why = match scripts::origin(facts, &path, w.layers.as_ref()) {
        Origin::Image => return (None, facts.nlink == 1),
        Origin::Drift(why) => why,
    };
    if !scripts::is_script(file) {
        // An ELF file: the kernel's exec hook kills it before its first instruction.
        return (None, false);
    }
    if w.drift.allow.iter().any(|r| r.matches_bytes(&path))
        || !opener_in(tid, w.cgroup_id, cgroup_root)
    {
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
            pid: tid,
            path,
            flags: None,
            action,
            rule: "drift",
            exec: Some(why),
        }),
        false,
    )
}

/// Whether thread `tid` is in the container cgroup `cgroup_id` (or below it).
fn opener_in(tid: u32, cgroup_id: u64, cgroup_root: Option<&std::path::Path>) -> bool {
    crate::cgroupfs::pid_cgroup(tid)
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
    use seawall_profile::PathGlobs;

    fn policy(mode: Mode) -> FilePolicy {
        FilePolicy {
            mode,
            deny: PathGlobs::new(vec!["/etc/shadow".into()]).unwrap(),
            read_only: PathGlobs::new(vec!["/etc/**".into()]).unwrap(),
            monitor: PathGlobs::new(vec!["/var/log/**".into()]).unwrap(),
        }
    }

    #[test]
    fn only_paths_no_rule_can_match_are_cacheable() {
        let p = policy(Mode::Enforce);
        assert!(
            could_match(&p, b"/etc/passwd"),
            "read_only /etc/** covers it"
        );
        assert!(could_match(&p, b"/var/log/x"));
        assert!(!could_match(&p, b"/tmp/x"));
        assert!(!could_match(&policy(Mode::Off), b"/etc/shadow"));
    }

    #[test]
    fn deny_read_only_and_monitor_decide_by_path_and_intent() {
        let p = policy(Mode::Enforce);
        assert_eq!(
            decide(&p, b"/etc/shadow", Some(0)),
            (Action::Blocked, "deny")
        );
        assert_eq!(decide(&p, b"/etc/passwd", Some(0)), (Action::Allowed, ""));
        assert_eq!(
            decide(&p, b"/etc/passwd", Some(0x241)),
            (Action::Blocked, "read_only")
        );
        assert_eq!(
            decide(&p, b"/etc/\xff", Some(0x241)),
            (Action::Blocked, "read_only"),
            "a name that is not UTF-8 is still below /etc"
        );
        assert_eq!(
            decide(&p, b"/var/log/app.log", Some(libc::O_WRONLY)),
            (Action::Audited, "monitor")
        );
        assert_eq!(decide(&p, b"/tmp/x", Some(0x241)), (Action::Allowed, ""));
        let a = policy(Mode::Audit);
        assert_eq!(
            decide(&a, b"/etc/shadow", Some(0)),
            (Action::Audited, "deny")
        );
        assert_eq!(
            decide(&policy(Mode::Off), b"/etc/shadow", Some(0)),
            (Action::Allowed, "")
        );
    }

    #[test]
    fn unknown_flags_never_count_as_read_only() {
        let p = policy(Mode::Enforce);
        assert_eq!(
            decide(&p, b"/etc/passwd", None),
            (Action::Blocked, "read_only")
        );
    }
}
