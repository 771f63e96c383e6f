//! The embedded event store: an append-only log of JSON lines, split into segments.
//!
//! Each line is one [`Record`]: the agent's event plus the collector's own increasing `id`, the
//! agent identity and the time of receipt. A batch is written and `fdatasync`'d before
//! [`Store::append`] returns, so whatever the collector acknowledged survives a crash. The index
//! (which ids each segment holds, and each agent's highest stored `seq` for de-duplication) is
//! kept in memory and rebuilt by one scan at start-up; a line torn by a crash is cut off then.
//! Retention deletes whole segments, oldest first, by age and by total size.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use seawall_proto::event::Event;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

/// An event as stored: the agent's event and where the collector put it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The collector's position, increasing across all agents, never reused.
    pub id: u64,
    /// The agent identity (certificate subject CN).
    pub agent: String,
    /// The agent's spool instance (empty for agents that send none); seqs count within it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// When the collector stored it, RFC 3339 UTC.
    pub received: String,
    pub event: Event,
}

/// Limits of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Total size above which the oldest segments are deleted.
    pub max_bytes: u64,
    /// Segments whose newest record is older than this are deleted.
    pub max_age: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes: 64 << 20,
            max_bytes: 10 << 30,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event store {path} line {line}: not a stored record ({source}); move the file away or repair it")]
    Corrupt {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Store::append`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The batch's highest seq: each of its events is now durable or was already stored.
    pub acked_seq: u64,
    /// Events skipped because their seq was already stored.
    pub duplicates: u32,
    /// Events written.
    pub stored: u32,
}

#[derive(Debug, Clone)]
struct Segment {
    first_id: u64,
    last_id: u64,
    path: PathBuf,
    bytes: u64,
    newest: OffsetDateTime,
}

struct Inner {
    segments: Vec<Segment>,
    active: File,
    next_id: u64,
    /// Highest stored seq per (agent identity, spool instance): the de-duplication state.
    agents: HashMap<(String, String), u64>,
}

/// The store. Methods block on disk I/O: call them from `spawn_blocking` in async code.
pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    // A std Mutex: every critical section is plain file I/O, never an await.
    inner: Mutex<Inner>,
    last_id: watch::Sender<u64>,
}

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.jsonl"))
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

impl Store {
    /// Opens the store in `dir` (created if missing), recovering from a crash mid-write.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let stem = p.file_name()?.to_str()?.strip_suffix(".jsonl")?;
                Some((stem.parse().ok()?, p))
            })
            .collect();
        names.sort();
        let mut segments = Vec::new();
        let mut agents: HashMap<(String, String), u64> = HashMap::new();
        let mut next_id = 1;
        let count = names.len();
        for (i, (first_id, path)) in names.into_iter().enumerate() {
            let last = i + 1 == count;
            let mut seg = Segment {
                first_id,
                last_id: first_id.saturating_sub(1),
                path: path.clone(),
                bytes: 0,
                newest: OffsetDateTime::UNIX_EPOCH,
            };
            let file = File::open(&path).map_err(io_err(&path))?;
            let mut reader = BufReader::new(file);
            let mut good_len = 0u64;
            let mut line = String::new();
            let mut lineno = 0;
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io_err(&path))?;
                if n == 0 {
                    break;
                }
                lineno += 1;
                let complete = line.ends_with('\n');
                match serde_json::from_str::<Record>(line.trim_end()) {
                    Ok(rec) if complete => {
                        good_len += n as u64;
                        seg.last_id = rec.id;
                        next_id = rec.id + 1;
                        if let Some(t) = parse_time(&rec.received) {
                            seg.newest = t;
                        }
                        let s = agents.entry((rec.agent, rec.instance)).or_insert(0);
                        *s = (*s).max(rec.event.seq);
                    }
                    // A torn write at the very end of the newest segment: the batch was never
                    // acknowledged, so cutting it off loses nothing that was promised.
                    _ if last => {
                        tracing::warn!(path = %path.display(), line = lineno, "cutting off a torn record left by a crash");
                        break;
                    }
                    Ok(_) => good_len += n as u64,
                    Err(source) => {
                        return Err(StoreError::Corrupt {
                            path,
                            line: lineno,
                            source,
                        })
                    }
                }
            }
            if last {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(good_len).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            seg.bytes = good_len;
            segments.push(seg);
        }
        if segments.is_empty() {
            let path = segment_path(dir, 1);
            segments.push(Segment {
                first_id: 1,
                last_id: 0,
                path,
                bytes: 0,
                newest: OffsetDateTime::now_utc(),
            });
        }
        let active_path = segments.last().expect("one segment").path.clone();
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(io_err(&active_path))?;
        sync_dir(dir)?;
        let (last_id, _) = watch::channel(next_id - 1);
        let store = Store {
            dir: dir.to_path_buf(),
            opts,
            inner: Mutex::new(Inner {
                segments,
                active,
                next_id,
                agents,
            }),
            last_id,
        };
        store.apply_retention()?;
        Ok(store)
    }

    /// The highest stored id, changing whenever a batch is stored.
    pub fn watch_last_id(&self) -> watch::Receiver<u64> {
        self.last_id.subscribe()
    }

    pub fn last_id(&self) -> u64 {
        *self.last_id.borrow()
    }

    /// Number of agents that have stored events.
    pub fn agent_count(&self) -> usize {
        let inner = self.lock();
        let agents: std::collections::HashSet<&str> =
            inner.agents.keys().map(|(a, _)| a.as_str()).collect();
        agents.len()
    }

    /// The highest stored seq of an agent's spool instance (0 if none).
    pub fn agent_seq(&self, agent: &str, instance: &str) -> u64 {
        self.lock()
            .agents
            .get(&(agent.to_string(), instance.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the files inconsistent (recovery handles
        // torn writes), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the events of an agent's spool instance whose seq is above the highest stored seq
    /// of that instance, in the given order, and makes them durable before returning.
    pub fn append(
        &self,
        agent: &str,
        instance: &str,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let key = (agent.to_string(), instance.to_string());
        let mut inner = self.lock();
        let mut last_seq = inner.agents.get(&key).copied().unwrap_or(0);
        let batch_last = events.last().map_or(0, |e| e.seq);
        let received = now_rfc3339();
        let mut buf = Vec::new();
        let mut duplicates = 0;
        let mut stored = 0;
        let mut next_id = inner.next_id;
        for event in events {
            if event.seq <= last_seq {
                duplicates += 1;
                continue;
            }
            if last_seq != 0 && event.seq > last_seq + 1 {
                tracing::warn!(
                    agent,
                    from = last_seq + 1,
                    to = event.seq - 1,
                    "gap in the agent's sequence: the agent dropped these events (spool full)"
                );
            }
            last_seq = event.seq;
            let rec = Record {
                id: next_id,
                agent: agent.to_string(),
                instance: instance.to_string(),
                received: received.clone(),
                event,
            };
            next_id += 1;
            serde_json::to_writer(&mut buf, &rec).expect("a Record always serializes");
            buf.push(b'\n');
            stored += 1;
        }
        if stored > 0 {
            let path = inner.segments.last().expect("one segment").path.clone();
            inner.active.write_all(&buf).map_err(io_err(&path))?;
            inner.active.sync_data().map_err(io_err(&path))?;
            let seg = inner.segments.last_mut().expect("one segment");
            seg.bytes += buf.len() as u64;
            seg.last_id = next_id - 1;
            seg.newest = OffsetDateTime::now_utc();
            let roll = seg.bytes >= self.opts.segment_bytes;
            inner.next_id = next_id;
            inner.agents.insert(key, last_seq);
            if roll {
                let path = segment_path(&self.dir, next_id);
                inner.active = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                sync_dir(&self.dir)?;
                inner.segments.push(Segment {
                    first_id: next_id,
                    last_id: next_id - 1,
                    path,
                    bytes: 0,
                    newest: OffsetDateTime::now_utc(),
                });
            }
            drop(inner);
            self.last_id.send_replace(next_id - 1);
            if roll {
                self.apply_retention()?;
            }
        }
        Ok(Appended {
            acked_seq: batch_last,
            duplicates,
            stored,
        })
    }

    /// Deletes the oldest closed segments that are past the age limit or over the size limit.
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let cutoff = OffsetDateTime::now_utc() - self.opts.max_age;
        loop {
            if inner.segments.len() < 2 {
                break;
            }
            let total: u64 = inner.segments.iter().map(|s| s.bytes).sum();
            let oldest = &inner.segments[0];
            if total <= self.opts.max_bytes && oldest.newest >= cutoff {
                break;
            }
            let oldest = inner.segments.remove(0);
            tracing::info!(path = %oldest.path.display(), first_id = oldest.first_id, last_id = oldest.last_id, "retention: deleting segment");
            fs::remove_file(&oldest.path).map_err(io_err(&oldest.path))?;
        }
        Ok(())
    }

    /// Up to `max` records with `id > after`, in id order.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, StoreError> {
        let segments: Vec<Segment> = {
            let inner = self.lock();
            inner
                .segments
                .iter()
                .filter(|s| s.last_id > after && s.last_id >= s.first_id)
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for seg in segments {
            if out.len() >= max {
                break;
            }
            let recs = match read_segment(&seg) {
                Ok(r) => r,
                // Deleted by retention since the snapshot: those events are gone.
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            out.extend(
                recs.into_iter()
                    .filter(|r| r.id > after)
                    .take(max - out.len()),
            );
        }
        Ok(out)
    }

    /// The newest `max` records for which `keep` is true, oldest first.
    pub fn newest_matching(
        &self,
        max: usize,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<Vec<Record>, StoreError> {
        let segments: Vec<Segment> = self.lock().segments.clone();
        let mut out: Vec<Record> = Vec::new();
        for seg in segments.iter().rev() {
            if out.len() >= max {
                break;
            }
            let recs = match read_segment(seg) {
                Ok(r) => r,
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            for r in recs.into_iter().rev() {
                if out.len() >= max {
                    break;
                }
                if keep(&r) {
                    out.push(r);
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// Reads the complete records of a segment, up to the length the index knows to be written.
fn read_segment(seg: &Segment) -> Result<Vec<Record>, StoreError> {
    let mut f = File::open(&seg.path).map_err(io_err(&seg.path))?;
    f.seek(SeekFrom::Start(0)).map_err(io_err(&seg.path))?;
    let mut buf = Vec::with_capacity(seg.bytes as usize);
    f.take(seg.bytes)
        .read_to_end(&mut buf)
        .map_err(io_err(&seg.path))?;
    let mut out = Vec::new();
    for (i, line) in buf.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_slice(line).map_err(|source| StoreError::Corrupt {
            path: seg.path.clone(),
            line: i + 1,
            source,
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Makes a created or removed file name durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Action, Kind, Severity};

    pub(crate) fn ev(seq: u64) -> Event {
        Event {
            seq,
            time: "2026-05-01T10:00:00Z".into(),
            node: "n".into(),
            kind: Kind::Exec,
            action: Action::Blocked,
            control: "drift".into(),
            severity: Severity::High,
            message: format!("event {seq}"),
            process: None,
            container: None,
            file: None,
            network: None,
            intel: None,
        }
    }

    #[test]
    fn duplicates_are_skipped_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let a = store.append("a", "", (1..=3).map(ev).collect()).unwrap();
        assert_eq!((a.acked_seq, a.stored, a.duplicates), (3, 3, 0));
        let a = store.append("a", "", (2..=5).map(ev).collect()).unwrap();
        assert_eq!((a.acked_seq, a.stored, a.duplicates), (5, 2, 2));
        store.append("b", "", vec![ev(1)]).unwrap();
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.agent_seq("a", ""), 5);
        let recs = store.read_after(0, 100).unwrap();
        let ids: Vec<u64> = recs.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(recs[5].agent, "b");
        assert_eq!(store.append("a", "", vec![ev(5)]).unwrap().stored, 0);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.append("a", "", (1..=2).map(ev).collect()).unwrap();
        drop(store);
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"id\":3,\"agent\":\"a\",\"rece").unwrap();
        drop(f);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.last_id(), 2);
        store.append("a", "", vec![ev(3)]).unwrap();
        let recs = store.read_after(0, 100).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.event.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn retention_deletes_oldest_segments_over_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            segment_bytes: 1000,
            max_bytes: 3000,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts).unwrap();
        for s in 1..=100 {
            store.append("a", "", vec![ev(s)]).unwrap();
        }
        let recs = store.read_after(0, 1000).unwrap();
        assert!(recs.len() < 100, "old events were deleted");
        assert_eq!(recs.last().unwrap().event.seq, 100, "newest kept");
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 3000 + 1000, "store size {total} within limits");
        // De-duplication state outlives deleted segments within this process.
        assert_eq!(store.append("a", "", vec![ev(50)]).unwrap().stored, 0);
    }
}
