//! A sink's dead-letter file: events its receiver refused for good (HTTP 4xx other than 408 and
//! 429), one JSON object per line, so they are kept and can be replayed after a fix instead of
//! being retried forever (which stalled every event behind them) or dropped silently.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{format, SinkError};
use crate::store::Record;

pub struct DeadLetter {
    path: PathBuf,
    file: Option<File>,
}

/// `DATA/sinks/NAME.deadletter.jsonl`.
pub fn path(data: &Path, sink: &str) -> PathBuf {
    data.join("sinks").join(format!("{sink}.deadletter.jsonl"))
}

impl DeadLetter {
    pub fn new(path: PathBuf) -> DeadLetter {
        DeadLetter { path, file: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"sink", "error", "status"?, "dead_lettered", "event"}` and syncs it, so the
    /// sink's cursor only moves past an event once it is either delivered or kept here.
    pub fn keep(&mut self, sink: &str, r: &Record, why: &SinkError) -> std::io::Result<()> {
        let status = match why {
            SinkError::Status { status, .. } => Some(*status),
            _ => None,
        };
        let mut line = json!({
            "sink": sink,
            "error": crate::ErrorChain(why).to_string(),
            "status": status,
            "dead_lettered": crate::store::now_rfc3339(),
            "event": format::export_json(r),
        })
        .to_string();
        line.push('\n');
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let f = self.file.as_mut().expect("opened above");
        let result = f.write_all(line.as_bytes()).and_then(|()| f.sync_data());
        if result.is_err() {
            // Reopen next time; a torn line is at worst one unreadable line for the replayer.
            self.file = None;
        }
        result
    }
}
