//! One sink's task: open the output and find the position (both retried until they work), then
//! read after the cursor, deliver, move the cursor, until told to stop.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use seawall_service::ErrorChain;
use tokio::sync::watch;

use super::{dead_letter, sleep_or_shutdown, Output, SinkError, SinkStats};
use crate::config::SinkConfig;
use crate::store::backend::{EventStore, SinkPosition};
use crate::store::Record;

/// Records read from the store per round. Outputs send them in requests of at most
/// [`Output::max_request`]; file and syslog outputs take a round in one write and one sync.
pub(super) const BATCH: usize = 4096;
/// How often a moving cursor is made durable. A crash re-sends at most this much, which the
/// at-least-once contract allows (and the file sink skips by its own last id); an fsync'd
/// cursor per request capped a file sink near 10,000 events/s.
const CURSOR_SYNC: Duration = Duration::from_secs(1);
/// An idle sink still shows it is alive this often.
const IDLE_BEAT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// What a sink task is given.
pub(super) struct SinkJob {
    pub config: SinkConfig,
    pub store: Arc<dyn EventStore>,
    pub data: PathBuf,
    pub stats: Arc<SinkStats>,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the sink until `shutdown` turns true.
pub(super) async fn run(mut job: SinkJob) {
    let Ok(task) = SinkTask::start(&mut job).await else {
        return;
    };
    task.run().await;
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
    /// Opens the output and loads the position, retrying with backoff: a file that cannot be
    /// opened yet or a store that cannot answer yet is a transient fault, like a receiver that
    /// is down, and nothing is lost while the cursor waits.
    async fn start(job: &mut SinkJob) -> Result<SinkTask, Stopped> {
        let name = job.config.name.clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            job.stats.beat();
            match Self::open(job).await {
                Ok(task) => return Ok(task),
                Err(e) => {
                    job.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %name, error = %ErrorChain(&e), retry_in_ms = backoff.as_millis() as u64, "sink cannot start; will retry");
                    if sleep_or_shutdown(backoff, &mut job.shutdown).await {
                        return Err(Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn open(job: &SinkJob) -> Result<SinkTask, SinkError> {
        let cfg = &job.config;
        let position = job
            .store
            .sink_position(&job.data, &cfg.name)
            .await
            .map_err(|e| SinkError::Position(Box::new(e)))?;
        let saved = position
            .load()
            .await
            .map_err(|e| SinkError::Position(Box::new(e)))?;
        let output = Output::open(&cfg.kind)?;
        // The output file knows better than the cursor when a crash came in between.
        let cursor = saved.max(output.last_written_id());
        job.stats.cursor.store(cursor, Ordering::Relaxed);
        tracing::info!(sink = %cfg.name, cursor, "sink starting");
        Ok(SinkTask {
            name: cfg.name.clone(),
            output,
            min: cfg.min_severity,
            store: job.store.clone(),
            cursor_file: Cursor {
                position,
                saved,
                saved_at: std::time::Instant::now(),
            },
            cursor,
            dead_letter: dead_letter::DeadLetter::new(dead_letter::path(&job.data, &cfg.name)),
            stats: job.stats.clone(),
            shutdown: job.shutdown.clone(),
        })
    }

    async fn run(mut self) {
        let mut last_id = self.store.watch_last_id();
        loop {
            self.stats.beat();
            if *self.shutdown.borrow() {
                self.save_cursor(true).await;
                return;
            }
            let recs = match self.store.read_after(self.cursor, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %self.name, error = %ErrorChain(&e), "sink cannot read the store; retrying");
                    if sleep_or_shutdown(Duration::from_secs(1), &mut self.shutdown).await {
                        self.save_cursor(true).await;
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
                    _ = tokio::time::sleep(IDLE_BEAT) => {}
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
                tracing::warn!(sink = %self.name, error = %ErrorChain(&e), events = batch.len(), "receiver refused a batch for good; sending its events one by one");
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
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.stats.beat();
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
                    tracing::warn!(sink = %self.name, error = %ErrorChain(&e), retry_in_ms = backoff.as_millis() as u64, "sink delivery failed; will retry");
                    self.stats.beat();
                    if sleep_or_shutdown(backoff, &mut self.shutdown).await {
                        return Err(Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Keeps a refused event in the dead-letter file; retries while that file cannot be
    /// written, since moving the cursor past it then would lose it silently.
    async fn keep(&mut self, r: &Record, why: &SinkError) -> Result<(), Stopped> {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        loop {
            self.stats.beat();
            match self.dead_letter.keep(&self.name, r, why) {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %self.name, id = r.id, agent = %r.agent, seq = r.event.seq, error = %ErrorChain(why), path = %self.dead_letter.path().display(), "receiver refused an event for good; kept in the dead-letter file");
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
