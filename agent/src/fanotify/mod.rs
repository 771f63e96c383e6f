//! File controls and file visibility through fanotify permission events on each container's own
//! overlay superblock (`FAN_MARK_FILESYSTEM` on its merged directory). The process waits in
//! `open(2)` until we answer; `FAN_DENY` gives it EPERM. Only the containers' superblocks are
//! marked, so no host open ever waits on the agent.
//!
//! A sensor and nothing else: it answers permission events under the container's policy
//! (`policy::verdict`) and reports plain [`FileEvent`] records, which `output` turns into
//! events.
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

mod answer;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::Path,
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

/// Superblock device → the container whose root filesystem it is.
type ByDev = Arc<Mutex<HashMap<u64, Watched>>>;

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
    /// The opening process.
    pub pid: u32,
    /// The path inside the container.
    pub path: String,
    /// open(2) flags, when the agent could read them.
    pub flags: Option<i32>,
    /// What the answer was.
    pub action: Action,
    /// `deny`, `read_only`, `monitor`, `drift`, or empty for plain visibility.
    pub rule: &'static str,
    /// An exec of a script written in the container (control `drift`), not an open.
    pub exec: bool,
}

/// The fanotify group, its marks, and the thread that answers its permission events.
pub struct FileGuard {
    group: Arc<Fanotify>,
    audit_all: bool,
    by_dev: ByDev,
    /// cgroup → (device, merged dir) of each marked container.
    marked: HashMap<u64, (u64, String)>,
    rx: Option<mpsc::Receiver<FileEvent>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<FileCounters>,
    ended: Option<tokio::sync::oneshot::Receiver<ThreadEnd>>,
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
    #[error("fanotify_mark on {path}")]
    Mark {
        path: String,
        #[source]
        source: Errno,
    },
    #[error("reading {path}")]
    Stat {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl FileGuard {
    /// Starts the fanotify group and its thread. `audit_all` reports every open in monitored
    /// containers (`--audit-files`); the thread beats `liveness` at least every second.
    pub fn start(audit_all: bool, liveness: Liveness) -> Result<Self, FileGuardError> {
        let group = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_UNLIMITED_QUEUE,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(FileGuardError::Init)?;
        let group = Arc::new(group);
        let by_dev: ByDev = Arc::default();
        let depth = crate::failpoint::armed_number("file_channel_capacity").unwrap_or(8192);
        let (tx, rx) = mpsc::channel(depth as usize);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FileCounters::default());
        let (end_tx, ended) = tokio::sync::oneshot::channel();
        let answerer = answer::Answerer {
            group: group.clone(),
            by_dev: by_dev.clone(),
            audit_all,
            cgroup_root: crate::runtime::cgroup::cgroup2_root().ok(),
            tx,
            stop: stop.clone(),
            liveness,
            counters: counters.clone(),
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
            by_dev,
            marked: HashMap::new(),
            rx: Some(rx),
            stop,
            thread: Some(thread),
            counters,
            ended: Some(ended),
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
        let mut mask = MaskFlags::empty();
        if has_rules || self.audit_all {
            mask |= MaskFlags::FAN_OPEN_PERM;
        }
        if scripts {
            mask |= MaskFlags::FAN_OPEN_EXEC_PERM;
        }
        if mask.is_empty() {
            self.unwatch_container(cgroup_id);
            return Ok(());
        }
        let dev = std::fs::metadata(merged)
            .map_err(|source| FileGuardError::Stat {
                path: merged.into(),
                source,
            })?
            .dev();
        self.group
            .mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
                mask,
                AT_FDCWD,
                Some(Path::new(merged)),
            )
            .map_err(|source| FileGuardError::Mark {
                path: merged.into(),
                source,
            })?;
        self.marked.insert(cgroup_id, (dev, merged.to_string()));
        // Cached "never matches" answers were for the previous rules. FAN_MARK_FLUSH without
        // a mark type flushes the inode marks (the cache) only.
        if let Err(e) = self.group.mark::<_, Path>(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            AT_FDCWD,
            None,
        ) {
            tracing::warn!(error = %e, "flushing fanotify's cached answers failed");
        }
        self.by_dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
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

    /// Removes a container's marks (its opens stop waiting on us).
    pub fn unwatch_container(&mut self, cgroup_id: u64) {
        if let Some((dev, merged)) = self.marked.remove(&cgroup_id) {
            self.by_dev
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&dev);
            // Failure (the overlay is already unmounted) leaves nothing to remove.
            let _ = self.group.mark(
                MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_FILESYSTEM,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM,
                AT_FDCWD,
                Some(Path::new(&merged)),
            );
        }
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
