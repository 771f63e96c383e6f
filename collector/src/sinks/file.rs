//! JSON lines file sink with size-based rotation (`events.jsonl`, `events.jsonl.1`, …).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{format, SinkError};
use crate::config::ExportFormat;
use crate::store::Record;

pub struct FileSink {
    path: PathBuf,
    format: ExportFormat,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl FileSink {
    pub fn open(
        path: &Path,
        max_bytes: u64,
        keep: u32,
        format: ExportFormat,
    ) -> Result<Self, SinkError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = cut_torn_tail(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            format,
            file,
            size,
            max_bytes,
            keep,
        })
    }

    /// The `collector.id` of the last complete line in the current (or, when it is empty, the
    /// newest rotated) file; 0 if none.
    pub fn last_written_id(&self) -> u64 {
        std::iter::once(self.path.clone())
            .chain((1..=self.keep).map(|i| rotated(&self.path, i)))
            .find_map(|p| last_id_in(&p))
            .unwrap_or(0)
    }

    pub fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(format::render_line(self.format, r).as_bytes());
            buf.push(b'\n');
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        if self.keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(&self.path, self.keep));
        for i in (1..self.keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Cuts a line left half-written by a crash, so the next line starts clean; returns the size.
fn cut_torn_tail(path: &Path) -> std::io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let start = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if buf.last() == Some(&b'\n') {
        return Ok(len);
    }
    let keep = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None => start,
    };
    f.set_len(keep)?;
    f.sync_all()?;
    Ok(keep)
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Reads the tail of a file and returns the id of its last complete line.
fn last_id_in(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    // Only complete lines count: a line without its newline was torn by a crash.
    let end = buf.iter().rposition(|b| *b == b'\n')?;
    buf[..end].split(|b| *b == b'\n').rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        // Seawall format: collector.id; OCSF: metadata.uid (the same id, as a string).
        match v.get("collector") {
            Some(c) => c.get("id")?.as_u64(),
            None => v.get("metadata")?.get("uid")?.as_str()?.parse().ok(),
        }
    })
}
