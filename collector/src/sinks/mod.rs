//! SIEM outputs. Each sink runs as its own task with its own durable cursor into the store.
//!
//! Delivery guarantee: at-least-once, in store order (so in per-agent `seq` order). A sink reads
//! the records after its cursor, delivers them (retrying with backoff until the receiver takes
//! them), then writes the new cursor to `DATA/sinks/NAME.cursor` (write, fsync, rename). A crash
//! between delivery and the cursor write re-sends that one batch after restart; receivers can
//! drop such repeats by the stable key `collector.id` (or `agent` + `seq`). The file sink is
//! exactly-once: on start it reads the last id it wrote from its own output file.

mod file;
mod format;
mod http;
mod syslog;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{SinkConfig, SinkKind};
use crate::store::{Record, Store};

pub use format::{cef, export_json, rfc5424};

/// Records read from the store per delivery attempt.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("receiver answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("sink setup: {0}")]
    Setup(String),
}

/// A configured output.
enum Output {
    File(file::FileSink),
    Syslog(syslog::SyslogSink),
    Http(http::HttpSink),
}

impl Output {
    async fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Output::File(s) => s.deliver(records),
            Output::Syslog(s) => s.deliver(records).await,
            Output::Http(s) => s.deliver(records).await,
        }
    }
}

fn cursor_path(data: &Path, name: &str) -> PathBuf {
    data.join("sinks").join(format!("{name}.cursor"))
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(path: &Path, id: u64) -> std::io::Result<()> {
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

/// Starts one task per sink. They stop when `shutdown` turns true.
pub fn spawn_all(
    sinks: &[SinkConfig],
    store: Arc<Store>,
    data: &Path,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SinkError> {
    std::fs::create_dir_all(data.join("sinks"))?;
    let mut handles = Vec::new();
    for cfg in sinks {
        let path = cursor_path(data, &cfg.name);
        let mut cursor = read_cursor(&path);
        let output = match &cfg.kind {
            SinkKind::File {
                path: out,
                max_bytes,
                keep,
            } => {
                let sink = file::FileSink::open(out, *max_bytes, *keep)?;
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
            other => Output::Http(http::HttpSink::new(other)?),
        };
        let name = cfg.name.clone();
        let min = cfg.min_severity;
        let store = store.clone();
        let shutdown = shutdown.clone();
        tracing::info!(sink = %name, cursor, "sink starting");
        handles.push(tokio::spawn(run(
            name, output, min, store, path, cursor, shutdown,
        )));
    }
    Ok(handles)
}

async fn run(
    name: String,
    mut output: Output,
    min: seawall_proto::event::Severity,
    store: Arc<Store>,
    cursor_file: PathBuf,
    mut cursor: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_id = store.watch_last_id();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let s = store.clone();
        let after = cursor;
        let recs = match tokio::task::spawn_blocking(move || s.read_after(after, BATCH)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(sink = %name, error = %crate::ErrorChain(&e), "sink cannot read the store; retrying");
                if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let Some(last) = recs.last().map(|r| r.id) else {
            tokio::select! {
                changed = last_id.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => {}
            }
            continue;
        };
        if let Some(first) = recs.first() {
            if cursor > 0 && first.id > cursor + 1 {
                tracing::warn!(sink = %name, from = cursor + 1, to = first.id - 1, "retention deleted events before this sink delivered them");
            }
        }
        let wanted: Vec<Record> = recs
            .into_iter()
            .filter(|r| r.event.severity >= min)
            .collect();
        let mut backoff = Duration::from_millis(200);
        if !wanted.is_empty() {
            loop {
                match output.deliver(&wanted).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "sink delivery failed; will retry");
                        if sleep_or_shutdown(backoff, &mut shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        cursor = last;
        if let Err(e) = write_cursor(&cursor_file, cursor) {
            tracing::error!(sink = %name, path = %cursor_file.display(), error = %e, "cannot save the sink cursor; events may be re-sent after a restart");
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
