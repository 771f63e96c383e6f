//! SIEM outputs. Each sink runs as its own task with its own durable cursor into the store.
//!
//! Delivery guarantee: at-least-once, in store order (so in per-agent `seq` order). A sink reads
//! the records after its cursor, delivers them (retrying with backoff until the receiver takes
//! them), then writes the new cursor to `DATA/sinks/NAME.cursor` (write, fsync, rename). A crash
//! between delivery and the cursor write re-sends that one batch after restart; receivers can
//! drop such repeats by the stable key `collector.id` (or `agent` + `seq`). The file sink is
//! exactly-once: on start it reads the last id it wrote from its own output file.
//!
//! Errors: a transient one (connection, timeout, HTTP 5xx, 408, 429) is retried with backoff
//! and the cursor waits. A permanent one (any other HTTP 4xx: the receiver will never take that
//! request) is narrowed to the events that cause it by sending the batch one event at a time;
//! those go to the sink's dead-letter file ([`dead_letter`]) and are counted, and the cursor
//! moves on. Each sink is its own task, so a slow or stuck receiver delays only its own sink.
//!
//! [`SinkSet`] starts the tasks, replaces the ones whose table changed on a reload, and tells
//! the watchdog whether each task still shows it is alive.

mod dead_letter;
mod file;
mod format;
mod http;
pub mod ocsf;
mod set;
mod syslog;
mod task;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::SinkKind;
use crate::store::Record;

pub use format::{cef, export_json, rfc5424};
pub use set::{Reloaded, SinkList, SinkSet, SinkUnhealthy, SINK_STALL_BOUND};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink I/O")]
    Io(#[from] std::io::Error),
    #[error("opening the output file {path}")]
    OpenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    #[error("receiver answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("reading the CA file {path}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} is not a PEM certificate")]
    BadCa {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("reading the sink's position")]
    Position(#[source] Box<crate::store::StoreError>),
    #[error("sink {sink}")]
    Sink {
        sink: String,
        #[source]
        source: Box<SinkError>,
    },
}

impl SinkError {
    /// True when sending the same request again cannot succeed: an HTTP 4xx other than 408
    /// (request timeout) and 429 (too many requests).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Status { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429)
    }
}

/// Counters of one sink, for metrics and logs.
#[derive(Debug)]
pub struct SinkStats {
    /// Events the receiver accepted.
    pub delivered: AtomicU64,
    /// Events the receiver refused for good, kept in the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Failed delivery attempts (each retried).
    pub errors: AtomicU64,
    /// The store id the sink has handled up to.
    pub cursor: AtomicU64,
    born: Instant,
    /// When the task last showed it is alive, in nanoseconds since `born`.
    alive: AtomicU64,
}

impl Default for SinkStats {
    fn default() -> Self {
        SinkStats {
            delivered: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            born: Instant::now(),
            alive: AtomicU64::new(0),
        }
    }
}

impl SinkStats {
    /// The task is alive: it finished a step (a read, a delivery attempt, a backoff, an idle
    /// wait).
    fn beat(&self) {
        self.alive
            .store(self.born.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// How long since the task last showed it is alive.
    pub fn silent_for(&self) -> Duration {
        self.born
            .elapsed()
            .saturating_sub(Duration::from_nanos(self.alive.load(Ordering::Relaxed)))
    }
}

/// A configured output.
enum Output {
    File(file::FileSink),
    Syslog(syslog::SyslogSink),
    Http(http::HttpSink),
}

impl Output {
    /// What can be found wrong before the sink runs (an unreadable CA, a file sink's directory
    /// or file that cannot be made), so a bad table is refused at start or on reload while the
    /// sinks already running carry on. Opens nothing for good: a file sink's output is opened
    /// by its task, after the task it replaces has stopped writing to it.
    fn check(kind: &SinkKind) -> Result<(), SinkError> {
        match kind {
            SinkKind::File { path, .. } => {
                let opened = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                    });
                opened.map(drop).map_err(|source| SinkError::OpenFile {
                    path: path.clone(),
                    source,
                })
            }
            SinkKind::Syslog { .. } => Ok(()),
            other => http::HttpSink::new(other)
                .expect("the other kinds are HTTP")
                .map(drop),
        }
    }

    fn open(kind: &SinkKind) -> Result<Output, SinkError> {
        Ok(match kind {
            SinkKind::File {
                path,
                max_bytes,
                keep,
                format,
            } => Output::File(
                file::FileSink::open(path, *max_bytes, *keep, *format).map_err(|e| match e {
                    SinkError::Io(source) => SinkError::OpenFile {
                        path: path.clone(),
                        source,
                    },
                    other => other,
                })?,
            ),
            SinkKind::Syslog {
                address,
                protocol,
                format,
                facility,
            } => Output::Syslog(syslog::SyslogSink::new(
                address.clone(),
                *protocol,
                *format,
                *facility,
            )),
            other => Output::Http(http::HttpSink::new(other).expect("the other kinds are HTTP")?),
        })
    }

    /// The last id the output itself says it took (the file sink reads its own file), which
    /// wins over a cursor that a crash kept from being saved.
    fn last_written_id(&self) -> u64 {
        match self {
            Output::File(f) => f.last_written_id(),
            Output::Syslog(_) | Output::Http(_) => 0,
        }
    }

    /// Most records in one request to the receiver.
    fn max_request(&self) -> usize {
        match self {
            Output::File(_) | Output::Syslog(_) => task::BATCH,
            Output::Http(h) => h.max_request(),
        }
    }

    async fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Output::File(s) => s.deliver(records),
            Output::Syslog(s) => s.deliver(records).await,
            Output::Http(s) => s.deliver(records).await,
        }
    }
}

/// Writes a cursor file durably (temporary file, fsync, rename, fsync of the directory).
pub(crate) fn write_cursor(path: &Path, id: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("cursor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{id}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Sleeps; true when shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
