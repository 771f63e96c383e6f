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

mod dead_letter;
mod file;
mod format;
mod http;
pub mod ocsf;
mod syslog;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{SinkConfig, SinkKind};
use crate::store::backend::{EventStore, SinkPosition};
use crate::store::Record;

pub use format::{cef, export_json, rfc5424};

/// Records read from the store per round. Outputs send them in requests of at most
/// [`Output::max_request`]; file and syslog outputs take a round in one write and one sync.
const BATCH: usize = 4096;
/// How often a moving cursor is made durable. A crash re-sends at most this much, which the
/// at-least-once contract allows (and the file sink skips by its own last id); an fsync'd
/// cursor per request capped a file sink near 10,000 events/s.
const CURSOR_SYNC: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink I/O")]
    Io(#[from] std::io::Error),
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
    #[error("opening the sink's position")]
    Position(#[source] Box<crate::store::StoreError>),
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
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events the receiver accepted.
    pub delivered: AtomicU64,
    /// Events the receiver refused for good, kept in the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Failed delivery attempts (each retried).
    pub errors: AtomicU64,
    /// The store id the sink has handled up to.
    pub cursor: AtomicU64,
}

/// The running sinks.
pub struct Sinks {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each sink's name and counters, in configuration order.
    pub stats: Vec<(String, Arc<SinkStats>)>,
}

/// A configured output.
enum Output {
    File(file::FileSink),
    Syslog(syslog::SyslogSink),
    Http(http::HttpSink),
}

impl Output {
    /// Most records in one request to the receiver.
    fn max_request(&self) -> usize {
        match self {
            Output::File(_) | Output::Syslog(_) => BATCH,
            Output::Http(_) => 256,
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

/// A sink's durable position, saved at most once per [`CURSOR_SYNC`] unless asked to now.
struct Cursor {
    position: SinkPosition,
    saved: u64,
    saved_at: std::time::Instant,
}

impl Cursor {
    async fn save(
        &mut self,
        id: u64,
        now: bool,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if id == self.saved || (!now && self.saved_at.elapsed() < CURSOR_SYNC) {
            return Ok(());
        }
        self.position.save(id).await?;
        self.saved = id;
        self.saved_at = std::time::Instant::now();
        Ok(())
    }
}

/// Starts one task per sink. They stop when `shutdown` turns true.
pub async fn spawn_all(
    sinks: &[SinkConfig],
    store: Arc<dyn EventStore>,
    data: &Path,
    shutdown: watch::Receiver<bool>,
) -> Result<Sinks, SinkError> {
    std::fs::create_dir_all(data.join("sinks"))?;
    let mut out = Sinks {
        tasks: Vec::new(),
        stats: Vec::new(),
    };
    for cfg in sinks {
        let position = store
            .sink_position(data, &cfg.name)
            .await
            .map_err(|e| SinkError::Position(Box::new(e)))?;
        let saved = position.load().await;
        let mut cursor = saved;
        let output = match &cfg.kind {
            SinkKind::File {
                path: out,
                max_bytes,
                keep,
                format,
            } => {
                let sink = file::FileSink::open(out, *max_bytes, *keep, *format)?;
                // The output file knows better than the cursor when the crash came in between.
                cursor = cursor.max(sink.last_written_id());
                Output::File(sink)
            }
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
        };
        let stats = Arc::new(SinkStats::default());
        stats.cursor.store(cursor, Ordering::Relaxed);
        tracing::info!(sink = %cfg.name, cursor, "sink starting");
        let task = SinkTask {
            name: cfg.name.clone(),
            output,
            min: cfg.min_severity,
            store: store.clone(),
            cursor_file: Cursor {
                position,
                saved,
                saved_at: std::time::Instant::now(),
            },
            cursor,
            dead_letter: dead_letter::DeadLetter::new(dead_letter::path(data, &cfg.name)),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        out.tasks.push(tokio::spawn(task.run()));
        out.stats.push((cfg.name.clone(), stats));
    }
    Ok(out)
}

struct SinkTask {
    name: String,
    output: Output,
    min: seawall_proto::event::Severity,
    store: Arc<dyn EventStore>,
    cursor_file: Cursor,
    cursor: u64,
    dead_letter: dead_letter::DeadLetter,
    stats: Arc<SinkStats>,
    shutdown: watch::Receiver<bool>,
}

/// Shutdown came first.
struct Stopped;

impl SinkTask {
    async fn run(mut self) {
        let mut last_id = self.store.watch_last_id();
        loop {
            if *self.shutdown.borrow() {
                self.save_cursor(true).await;
                return;
            }
            let recs = match self.store.read_after(self.cursor, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %crate::ErrorChain(&e), "sink cannot read the store; retrying");
                    if sleep_or_shutdown(Duration::from_secs(1), &mut self.shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(last) = recs.last().map(|r| r.id) else {
                self.save_cursor(true).await;
                tokio::select! {
                    changed = last_id.changed() => if changed.is_err() { return },
                    _ = self.shutdown.changed() => {}
                }
                continue;
            };
            if let Some(first) = recs.first() {
                if self.cursor > 0 && first.id > self.cursor + 1 {
                    tracing::warn!(sink = %self.name, from = self.cursor + 1, to = first.id - 1, "retention deleted events before this sink delivered them");
                }
            }
            let wanted: Vec<Record> = recs
                .into_iter()
                .filter(|r| r.event.severity >= self.min)
                .collect();
            for chunk in wanted.chunks(self.output.max_request()) {
                if self.deliver(chunk).await.is_err() {
                    self.save_cursor(true).await;
                    return;
                }
                // Progress inside a round counts too: a later chunk may take a long time.
                self.cursor = chunk.last().map_or(self.cursor, |r| r.id);
                self.save_cursor(false).await;
            }
            self.cursor = last;
            self.save_cursor(false).await;
        }
    }

    /// Publishes the cursor and makes it durable when `now` or once [`CURSOR_SYNC`] has passed.
    async fn save_cursor(&mut self, now: bool) {
        self.stats.cursor.store(self.cursor, Ordering::Relaxed);
        if let Err(e) = self.cursor_file.save(self.cursor, now).await {
            tracing::error!(sink = %self.name, error = %e, "cannot save the sink position; events may be re-sent after a restart");
        }
    }

    /// Delivers a batch, or keeps in the dead-letter file each of its events that the receiver
    /// refuses for good.
    async fn deliver(&mut self, batch: &[Record]) -> Result<(), Stopped> {
        match self.attempt(batch).await? {
            Ok(()) => return Ok(()),
            Err(e) if batch.len() == 1 => return self.keep(&batch[0], &e).await,
            Err(e) => {
                tracing::warn!(sink = %self.name, error = %crate::ErrorChain(&e), events = batch.len(), "receiver refused a batch for good; sending its events one by one");
            }
        }
        for r in batch {
            if let Err(e) = self.attempt(std::slice::from_ref(r)).await? {
                self.keep(r, &e).await?;
            }
        }
        Ok(())
    }

    /// Sends until the receiver takes `records` (`Ok`) or refuses them for good (`Err`),
    /// backing off after each transient error.
    async fn attempt(&mut self, records: &[Record]) -> Result<Result<(), SinkError>, Stopped> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.output.deliver(records).await {
                Ok(()) => {
                    self.stats
                        .delivered
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    return Ok(Ok(()));
                }
                Err(e) if e.is_permanent() => return Ok(Err(e)),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sink = %self.name, error = %crate::ErrorChain(&e), retry_in_ms = backoff.as_millis() as u64, "sink delivery failed; will retry");
                    if sleep_or_shutdown(backoff, &mut self.shutdown).await {
                        return Err(Stopped);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Keeps a refused event in the dead-letter file; retries while that file cannot be
    /// written, since moving the cursor past it then would lose it silently.
    async fn keep(&mut self, r: &Record, why: &SinkError) -> Result<(), Stopped> {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        loop {
            match self.dead_letter.keep(&self.name, r, why) {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %self.name, id = r.id, agent = %r.agent, seq = r.event.seq, error = %crate::ErrorChain(why), path = %self.dead_letter.path().display(), "receiver refused an event for good; kept in the dead-letter file");
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(sink = %self.name, path = %self.dead_letter.path().display(), error = %e, "cannot write the dead-letter file; retrying");
                    if sleep_or_shutdown(Duration::from_secs(1), &mut self.shutdown).await {
                        return Err(Stopped);
                    }
                }
            }
        }
    }
}

/// Sleeps; true when shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
