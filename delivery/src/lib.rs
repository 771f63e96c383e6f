//! Durable delivery of events to the central collector (`seawall.v1.Collector.Publish`).
//!
//! [`Delivery::publish`] appends to a bounded on-disk [`spool`] and returns at once; a sender task
//! streams the spool to the collector over mutual TLS in seq order and deletes events only when
//! the collector acknowledges that it stored them. After any outage (network, collector, agent
//! restart) the sender resumes after the last acknowledgement. Generated protobuf types never
//! leave this module.

pub mod events_cli;
mod sender;
pub mod spool;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seawall_proto::event::{Action, Event, Kind, Severity};
use tokio::sync::{watch, Notify};

/// Where and how to deliver events (`seawall agent --collector …` and the `[collector]` table).
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// `https://HOST:PORT` (or `http://` with `insecure`), or several separated by commas:
    /// the first is used until it fails, then the next, and so on round; each takes over from
    /// the last acknowledgement, in seq order. All use the same CA, certificate and key.
    pub url: String,
    /// CA that signed the collector's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// This agent's client certificate (PEM); its subject is the agent's identity.
    pub cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    pub key: Option<PathBuf>,
    /// Plain-text gRPC without TLS, for a collector started with `--insecure`.
    pub insecure: bool,
    pub spool_dir: PathBuf,
    /// Size limit of the spool; past it the oldest events are dropped (and counted).
    pub spool_max_bytes: u64,
    /// Sent as `agent_id`; the identity only for an `--insecure` collector. Default: host name.
    pub agent_id: Option<String>,
}

/// Default spool size limit: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;

impl Default for CollectorConfig {
    /// No collector, mutual TLS, the default spool limit: fill in `url`, the TLS files and
    /// `spool_dir`.
    fn default() -> Self {
        CollectorConfig {
            url: String::new(),
            ca: None,
            cert: None,
            key: None,
            insecure: false,
            spool_dir: PathBuf::new(),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            agent_id: None,
        }
    }
}

impl CollectorConfig {
    /// Every collector in `url`, in the order they are tried.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("spool {path}: {source}; check that the spool directory is writable and has space")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event seq {seq} is not above the last spooled seq {last}; seq numbers must increase")]
    OutOfOrder { seq: u64, last: u64 },
    #[error("collector configuration: {0}")]
    Config(String),
    #[error("reading {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to the collector {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("collector stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("the collector acknowledged seq {acked} on a stream that only sent up to {sent}; ignoring it and reconnecting")]
    AckAboveSent { acked: u64, sent: u64 },
    #[error("the collector {url} acknowledged none of {unacked} batches in {waited:?}; trying the next collector")]
    AckTimeout {
        url: String,
        waited: std::time::Duration,
        unacked: usize,
    },
    #[error("the delivery task has stopped")]
    Stopped,
}

/// A snapshot of the delivery state, for `seawall status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryStats {
    /// Events spooled and not yet acknowledged.
    pub spool_depth_events: u64,
    pub spool_bytes: u64,
    /// Events dropped because the spool was full, since the agent started.
    pub dropped_total: u64,
    /// Highest seq the collector acknowledged.
    pub acked_seq: u64,
    /// A Publish stream is open.
    pub connected: bool,
    /// Seconds since the collector last acknowledged, while events are waiting (0 when none).
    pub lag_seconds: u64,
    /// Highest seq known to be on disk (`fdatasync`ed), connected to a collector or not.
    pub synced_seq: u64,
    /// Events the collector refused individually (recorded there as delivery records), since
    /// the agent started.
    pub rejected_total: u64,
}

pub(crate) struct Shared {
    // A std Mutex: the spool is plain file I/O and `publish` is synchronous.
    spool: Mutex<spool::Spool>,
    /// Wakes the sender when an event is spooled.
    wake: Notify,
    connected: AtomicBool,
    /// Dropped events not yet handed to `take_dropped`.
    dropped_unreported: AtomicU64,
    rejected_total: AtomicU64,
    last_progress: Mutex<Instant>,
    /// Highest seq `fdatasync`ed.
    synced_seq: AtomicU64,
}

impl Shared {
    fn spool(&self) -> std::sync::MutexGuard<'_, spool::Spool> {
        // The spool's files stay consistent if a holder panicked (recovery handles torn lines).
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `fdatasync`s the spool and records how far that reached.
    pub(crate) fn sync(&self) -> Result<(), DeliveryError> {
        let spool = self.spool();
        let last = spool.last_seq();
        spool.sync()?;
        self.synced_seq.fetch_max(last, Ordering::Relaxed);
        Ok(())
    }
}

/// How often the spool is `fdatasync`ed, whatever the collector does.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Syncs the spool every [`SYNC_EVERY`] until `stop`, so a host crash loses at most the last
/// second of events even while no collector answers (the sender only syncs while connected).
async fn sync_spool(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(SYNC_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "syncing the delivery spool failed"),
            Err(e) => tracing::warn!(error = %e, "the spool sync task failed"),
        }
    }
}

/// Handle to the delivery pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Delivery {
    /// Opens (or creates) the spool, returns the highest seq ever spooled (0 if none) so the
    /// agent numbers on from it, and spawns the sender task.
    pub async fn start(cfg: CollectorConfig) -> Result<(Delivery, u64), DeliveryError> {
        let target = sender::Target::new(&cfg)?;
        let dir = cfg.spool_dir.clone();
        let max = cfg.spool_max_bytes;
        let spool = tokio::task::spawn_blocking(move || spool::Spool::open(&dir, max))
            .await
            .map_err(|_| DeliveryError::Stopped)??;
        let last_seq = spool.last_seq();
        tracing::info!(spool = %cfg.spool_dir.display(), instance = spool.instance(), last_seq, acked = spool.acked(), pending = spool.depth(), collectors = ?cfg.urls().collect::<Vec<_>>(), "delivery starting");
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            dropped_unreported: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            last_progress: Mutex::new(Instant::now()),
            synced_seq: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(sync_spool(shared.clone(), stop_rx.clone()));
        let task = tokio::spawn(sender::run(shared.clone(), target, stop_rx));
        Ok((
            Delivery {
                shared,
                stop: Arc::new(stop),
                task: Arc::new(Mutex::new(Some(task))),
            },
            last_seq,
        ))
    }

    /// Appends to the spool (one `write(2)`: survives an agent crash; fsync'd within about a
    /// second). Never blocks on the network. When the spool is full the oldest unacknowledged
    /// events are dropped: they are counted in [`DeliveryStats::dropped_total`], logged, and
    /// returned once by [`Delivery::take_dropped`] so the agent can emit [`dropped_event`].
    pub fn publish(&self, event: &Event) -> Result<(), DeliveryError> {
        let dropped = match self.shared.spool().append(event) {
            Ok(d) => d,
            Err(e) => {
                // Counted in the spool's dropped_total; reported like a full spool's drops.
                self.shared
                    .dropped_unreported
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        if dropped > 0 {
            self.shared
                .dropped_unreported
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "delivery spool full: dropped the oldest unacknowledged events"
            );
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Events dropped since the last call (0 if none). The agent publishes
    /// [`dropped_event`] with its next seq when this is non-zero.
    pub fn take_dropped(&self) -> u64 {
        self.shared.dropped_unreported.swap(0, Ordering::Relaxed)
    }

    pub fn stats(&self) -> DeliveryStats {
        let spool = self.shared.spool();
        let depth = spool.depth();
        let lag = if depth == 0 {
            0
        } else {
            self.shared
                .last_progress
                .lock()
                .map(|t| t.elapsed().as_secs())
                .unwrap_or(0)
        };
        DeliveryStats {
            spool_depth_events: depth,
            spool_bytes: spool.bytes(),
            dropped_total: spool.dropped_total(),
            acked_seq: spool.acked(),
            connected: self.shared.connected.load(Ordering::Relaxed),
            lag_seconds: lag,
            synced_seq: self.shared.synced_seq.load(Ordering::Relaxed),
            rejected_total: self.shared.rejected_total.load(Ordering::Relaxed),
        }
    }

    /// Whether the sender task is still running (false once it ended before `shutdown`: it
    /// panicked, and nothing is delivered any more).
    pub fn is_running(&self) -> bool {
        self.task
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| !t.is_finished()))
            .unwrap_or(false)
    }

    /// Ends the sender task as a crash would, for the agent's fault tests (the daemon must
    /// notice it through [`Delivery::is_running`]).
    #[doc(hidden)]
    pub fn abort_sender(&self) {
        if let Ok(Some(t)) = self.task.lock().as_deref() {
            t.abort();
        }
    }

    /// Stops the sender and flushes the spool. Unacknowledged events stay spooled for the next
    /// start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(e) = self.shared.sync() {
            tracing::warn!(error = %e, "flushing the delivery spool at shutdown");
        }
    }
}

/// The `kind: "agent"` event that reports events dropped because the spool was full.
pub fn dropped_event(seq: u64, time: String, node: String, dropped: u64) -> Event {
    Event {
        seq,
        time,
        node,
        kind: Kind::Agent,
        action: Action::Allowed,
        control: "delivery".into(),
        severity: Severity::High,
        message: format!(
            "delivery spool full: {dropped} events were dropped before the collector acknowledged them"
        ),
        process: None,
        container: None,
        file: None,
        network: None,
        intel: None,
    }
}
