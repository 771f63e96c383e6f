//! The file sensor of the fallback backend: fanotify permission events on every mount of each
//! monitored container (its overlay root, its tmpfs mounts, volumes, Docker's bind-mounted
//! `/etc/hosts` and friends, and the agent's own read-only and masking mounts), marked inside
//! its mount namespace (`FAN_MARK_MOUNT` through `/proc/<pid>/root`), so no host open ever waits
//! on the agent. The opener waits in `open(2)`/`execve(2)` until we answer; `FAN_DENY` gives it
//! EPERM.
//!
//! - Opens (`FAN_OPEN_PERM`): file deny / read-only / monitor rules (`policy::verdict`), on the
//!   path's bytes, with the opener's flags read from the blocked thread (`FAN_REPORT_TID`, see
//!   `answer.rs`); unknown flags count as a write (fail closed). Literal and `dir/**` rules are
//!   also enforced by the kernel through mounts (`enforced.rs`): fanotify is then the reporter,
//!   and the only enforcer for `dir/*` rules and globs.
//! - Execs (`FAN_OPEN_EXEC_PERM`): a `#!` script that is not the image's file is drift
//!   (`scripts.rs`), wherever it lives; ELF files are the kernel's to judge. Not marked where
//!   BPF LSM runs: its exec hook judges every binfmt stage itself.
//!
//! A sensor and nothing else beyond that: it reports plain [`FileEvent`] records, which
//! `output` turns into events.
//!
//! Answers for inodes no rule can match (and proven image files, for execs) are cached as
//! fanotify ignore marks, so a hot file costs one round trip, not one per open; the cache is
//! flushed whenever a policy is applied. Only single-link inodes are cached.
//!
//! Fail-open, written down: when the agent dies, the kernel allows every pending open as the
//! group closes (the kernel-enforced mounts stay). A process outside the container (the engine
//! itself, `docker cp` through `/proc/<pid>/root`) is never denied.

mod answer;
pub mod enforced;
mod intel;
pub mod mountinfo;
mod opener;
mod responses;
pub mod scripts;

use std::{
    collections::HashMap,
    ffi::CString,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use nix::{
    errno::Errno,
    fcntl::AT_FDCWD,
    sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags},
};
use seawall_profile::{DriftPolicy, FilePolicy, Mode, Profile};
use seawall_proto::event::Action;
use seawall_service::health::Liveness;
use tokio::sync::mpsc;

use self::scripts::Layers;

/// What one container's policy needs at answer time.
struct Watched {
    cgroup_id: u64,
    /// The container cgroup's path from the hierarchy root, as `/proc/<pid>/cgroup` shows it,
    /// when it was found at marking time: membership is then a prefix test on the opener's
    /// path (the path names this cgroup for the life of these marks, which a new container's
    /// registration replaces), not a `statx` per ancestor.
    cgroup_path: Option<Vec<u8>>,
    policy: FilePolicy,
    drift: DriftPolicy,
    /// The container's root mount (execs on other mounts are not the image's).
    root_mount: u64,
    layers: Option<Layers>,
    /// Whether script execs are judged here.
    scripts: bool,
    /// Whether opens are judged (or reported) here.
    opens: bool,
    /// Read-only bind mounts the agent made (`dir/**` read-only rules): a write open there
    /// fails in the kernel before it reaches us, so what does reach us is a read.
    read_only_mounts: Vec<u64>,
}

/// Mount id (`statx(STATX_MNT_ID)`) → the container the mount belongs to.
type ByMount = Arc<Mutex<HashMap<u64, Arc<Watched>>>>;

/// What the answering thread could not report or had to recover from, counted.
#[derive(Debug, Default)]
pub struct FileCounters {
    /// Events answered whose record found the channel to the event loop full.
    pub unreported: std::sync::atomic::AtomicU64,
    /// Poll and read errors retried.
    pub read_errors: std::sync::atomic::AtomicU64,
    /// Decisions that panicked (answered "allow").
    pub panics: std::sync::atomic::AtomicU64,
}

/// How the answering thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadEnd {
    /// It returned (shutdown, or errors it gave up on).
    Returned,
    /// It panicked.
    Panicked,
}

/// Tells the daemon the thread ended, however it ended (drop runs while a panic unwinds).
struct EndSignal(Option<tokio::sync::oneshot::Sender<ThreadEnd>>);

impl Drop for EndSignal {
    fn drop(&mut self) {
        let how = if std::thread::panicking() {
            ThreadEnd::Panicked
        } else {
            ThreadEnd::Returned
        };
        if let Some(tx) = self.0.take() {
            let _ = tx.send(how);
        }
    }
}

/// One open (or script exec) the sensor saw and answered.
#[derive(Debug, Clone)]
pub struct FileEvent {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// The opening thread (`FAN_REPORT_TID`).
    pub pid: u32,
    /// From the container's root; bytes (file names need not be UTF-8).
    pub path: Vec<u8>,
    /// open(2) flags, when the agent could read them; `None` counted as a write.
    pub flags: Option<i32>,
    /// What the answer was.
    pub action: Action,
    /// `deny`, `read_only`, `monitor`, `drift`, or empty for plain visibility.
    pub rule: &'static str,
    /// An exec of a script (control `drift`), not an open; with why it is drift.
    pub exec: Option<&'static str>,
}

/// The fanotify group, its marks, and the thread that answers its permission events.
pub struct FileGuard {
    group: Arc<Fanotify>,
    audit_all: bool,
    /// Whether scripts are judged here (the fallback: BPF LSM judges them in the kernel).
    judge_scripts: bool,
    by_mount: ByMount,
    cgroup_root: Option<std::path::PathBuf>,
    /// Container → its marked mounts (id, marked path).
    marked: HashMap<u64, Vec<(u64, CString)>>,
    /// Container → its profile, until its mounts are known (first exec, or already running).
    pending: HashMap<u64, Profile>,
    rx: Option<mpsc::Receiver<FileEvent>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<FileCounters>,
    ended: Option<tokio::sync::oneshot::Receiver<ThreadEnd>>,
    intel: crate::intel::exec::ExecIntel,
}

/// Why the sensor cannot start or watch a container.
#[derive(Debug, thiserror::Error)]
pub enum FileGuardError {
    #[error(
        "fanotify_init (needs CAP_SYS_ADMIN and a kernel with CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
    )]
    Init(#[source] Errno),
    #[error("starting the fanotify thread")]
    Thread(#[source] std::io::Error),
    #[error("reading the mounts of pid {pid}")]
    Mounts {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("fanotify_mark on {path}")]
    Mark {
        path: String,
        #[source]
        source: Errno,
    },
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
    /// Starts the fanotify group and its thread. `audit_all` reports every open in monitored
    /// containers (`--audit-files`); `judge_scripts` is false where BPF LSM judges every binfmt
    /// stage of an exec itself; the thread beats `liveness` at least every second.
    pub fn start(
        audit_all: bool,
        judge_scripts: bool,
        liveness: Liveness,
        intel: crate::intel::exec::ExecIntel,
    ) -> Result<Self, FileGuardError> {
        // FAN_REPORT_TID: the event names the blocked thread, whose syscall holds the flags.
        // FAN_NONBLOCK: a busy group is drained by reads until EAGAIN, without a poll each.
        let group = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_NONBLOCK
                | InitFlags::FAN_UNLIMITED_QUEUE
                | InitFlags::FAN_REPORT_TID,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(FileGuardError::Init)?;
        let group = Arc::new(group);
        let by_mount: ByMount = Arc::default();
        let depth = crate::failpoint::armed_number("file_channel_capacity").unwrap_or(8192);
        let (tx, rx) = mpsc::channel(depth as usize);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FileCounters::default());
        let (end_tx, ended) = tokio::sync::oneshot::channel();
        let cgroup_root = crate::runtime::cgroup::cgroup2_root().ok();
        let answerer = answer::Answerer {
            group: group.clone(),
            by_mount: by_mount.clone(),
            audit_all,
            cgroup_root: cgroup_root.clone(),
            task_files: Default::default(),
            tx,
            stop: stop.clone(),
            liveness,
            counters: counters.clone(),
            intel: intel.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("seawall-fanotify".into())
            .spawn(move || {
                let _end = EndSignal(Some(end_tx));
                answerer.run();
            })
            .map_err(FileGuardError::Thread)?;
        Ok(Self {
            group,
            audit_all,
            judge_scripts,
            by_mount,
            cgroup_root,
            marked: HashMap::new(),
            pending: HashMap::new(),
            rx: Some(rx),
            stop,
            thread: Some(thread),
            counters,
            ended: Some(ended),
            intel,
        })
    }

    /// What the thread could not report or recovered from.
    pub fn counters(&self) -> &FileCounters {
        &self.counters
    }

    /// Resolves when the answering thread ends, with how (once; pending after that).
    pub async fn ended(&mut self) -> ThreadEnd {
        match self.ended.as_mut() {
            Some(rx) => {
                let how = rx.await.unwrap_or(ThreadEnd::Panicked);
                self.ended = None;
                how
            }
            None => std::future::pending().await,
        }
    }

    /// The stream of file events (taken once).
    pub fn events(&mut self) -> mpsc::Receiver<FileEvent> {
        self.rx.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Stops the thread (within its one-second poll) and joins it. Opens still waiting are
    /// allowed by the kernel when the group closes.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the fanotify thread panicked");
            }
        }
    }

    /// Whether the container's mounts must be marked before its first process runs.
    pub fn needs(&self, cgroup_id: u64, profile: &Profile) -> bool {
        let (opens, scripts) = wanted(profile, self.audit_all, self.judge_scripts);
        opens || scripts || !intel::exec_mask(&self.intel, cgroup_id).is_empty()
    }

    /// Records the container's profile; its mounts are marked by [`FileGuard::watch_mounts`]
    /// once its mount namespace exists (its first exec, held by the kernel for this).
    pub fn prepare(&mut self, cgroup_id: u64, profile: &Profile) {
        self.pending.insert(cgroup_id, profile.clone());
    }

    /// Marks every mount of the container `pid` is in, under its recorded profile (the old
    /// marks are replaced: a reload, or new mounts made by the agent). `read_only` names the
    /// read-only bind mounts the agent made there. Returns how many mounts are marked.
    pub fn watch_mounts(
        &mut self,
        cgroup_id: u64,
        pid: u32,
        read_only: &[Vec<u8>],
    ) -> Result<usize, FileGuardError> {
        let Some(profile) = self.pending.get(&cgroup_id).cloned() else {
            return Ok(0);
        };
        let (opens, scripts) = wanted(&profile, self.audit_all, self.judge_scripts);
        let intel_mask = intel::exec_mask(&self.intel, cgroup_id);
        if !(opens || scripts) && intel_mask.is_empty() {
            self.remove_marks(cgroup_id);
            return Ok(0);
        }
        // The old marks stay until the new ones are in place (a re-registration or a reload
        // re-marks a running container: an unmarked moment would let its opens through).
        let mounts =
            mountinfo::of_pid(pid).map_err(|source| FileGuardError::Mounts { pid, source })?;
        let root = mounts.iter().find(|m| m.is_root());
        let cgroup_path = self.cgroup_root.as_deref().and_then(|root| {
            crate::runtime::cgroup::ancestor_with_id(root, pid, cgroup_id).map(String::into_bytes)
        });
        if cgroup_path.is_none() {
            tracing::debug!(container_cgroup_id = cgroup_id, pid, "the container cgroup's path is unknown: openers are checked by a walk of their cgroup's ancestors");
        }
        let watched = Arc::new(Watched {
            cgroup_id,
            cgroup_path,
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
        let mut mask = MaskFlags::empty();
        if opens {
            mask |= MaskFlags::FAN_OPEN_PERM;
        }
        if scripts {
            mask |= MaskFlags::FAN_OPEN_EXEC_PERM;
        }
        mask |= intel_mask;
        let mut marked = Vec::new();
        for m in mounts.iter().filter(|m| m.markable()) {
            // Through the container's own root: the mount as the container sees it, whatever
            // the host's view of its namespace is.
            let mut p = format!("/proc/{pid}/root").into_bytes();
            if !m.is_root() {
                p.extend_from_slice(&m.mount_point);
            }
            let Ok(c) = CString::new(p) else { continue };
            if let Err(source) = self.group.mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT,
                mask,
                AT_FDCWD,
                Some(c.as_c_str()),
            ) {
                let path = String::from_utf8_lossy(c.as_bytes()).into_owned();
                if m.is_root() {
                    return Err(FileGuardError::Mark { path, source });
                }
                tracing::warn!(container_cgroup_id = cgroup_id, mount = %path, error = %source, "a container mount could not be marked: its files are not covered");
                continue;
            }
            marked.push((m.id, c));
        }
        let old = self
            .marked
            .insert(cgroup_id, marked.clone())
            .unwrap_or_default();
        {
            let mut by = self.by_mount.lock().unwrap_or_else(|e| e.into_inner());
            for (id, _) in &marked {
                by.insert(*id, watched.clone());
            }
            for (id, _) in &old {
                if !marked.iter().any(|(m, _)| m == id) {
                    by.remove(id);
                }
            }
        }
        let all = MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM;
        for (id, path) in &old {
            // A mount still marked keeps only the new mask; one that is gone loses its mark.
            let drop = if marked.iter().any(|(m, _)| m == id) {
                all - mask
            } else {
                all
            };
            if !drop.is_empty() {
                // Failure (the mount is gone) leaves nothing to remove.
                let _ = self.group.mark(
                    MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_MOUNT,
                    drop,
                    AT_FDCWD,
                    Some(path.as_c_str()),
                );
            }
        }
        let n = marked.len();
        self.flush_cache();
        Ok(n)
    }

    /// Cached "never matches" answers were for the previous rules. FAN_MARK_FLUSH without a
    /// mark type flushes the inode marks (the cache) only.
    fn flush_cache(&self) {
        if let Err(e) = self.group.mark::<_, std::path::Path>(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            AT_FDCWD,
            None,
        ) {
            tracing::warn!(error = %e, "flushing fanotify's cached answers failed");
        }
    }

    /// Removes a container's marks and its recorded profile (its opens stop waiting on us).
    pub fn unwatch_container(&mut self, cgroup_id: u64) {
        self.pending.remove(&cgroup_id);
        self.remove_marks(cgroup_id);
    }

    /// Removes the container's marks and their entries.
    fn remove_marks(&mut self, cgroup_id: u64) {
        let Some(marks) = self.marked.remove(&cgroup_id) else {
            return;
        };
        let mut by = self.by_mount.lock().unwrap_or_else(|e| e.into_inner());
        for (id, path) in marks {
            by.remove(&id);
            // Failure (the container and its mounts are gone) leaves nothing to remove.
            let _ = self.group.mark(
                MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_MOUNT,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM,
                AT_FDCWD,
                Some(path.as_c_str()),
            );
        }
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
