//! The embedded event store: an append-only log of JSON lines, split into segments.
//!
//! Each line is one [`Record`]: the agent's event plus the collector's own increasing `id`, the
//! agent identity and instance, and the time of receipt. A batch is written at the end of what is
//! known to be good and `fdatasync`'d before [`Store::append`] returns, so whatever the collector
//! acknowledged survives a crash. A write or sync that fails (a full disk, an I/O error) is cut
//! off again and changes nothing in memory: the batch is not acknowledged, the agent re-sends it.
//!
//! Reads go through a sparse index ([`segment`]) so a read from a position never parses more
//! than a few records it does not return. Each instance's highest stored seq (the
//! de-duplication state) and the next id survive retention and restarts ([`state`]). Retention
//! deletes whole segments, oldest first, by age and by total size.

pub mod backend;
pub mod nats;
pub mod segment;
pub mod state;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use seawall_proto::event::Event;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use segment::{HighWater, Summary};

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
    /// A segment is sealed and a new one started past this size.
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
    #[error("event store {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event store state")]
    State(#[from] state::StateError),
    #[error("event store task")]
    Task(#[source] tokio::task::JoinError),
    #[error("NATS JetStream: {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

#[derive(Debug)]
struct Segment {
    /// From the file name: the next id when the segment was opened.
    first_id: u64,
    path: PathBuf,
    summary: Summary,
}

struct Inner {
    segments: Vec<Segment>,
    /// The last segment, open for writing at `summary.bytes`.
    active: File,
    /// A failed write could not be cut off: cut it before the next one.
    dirty_tail: bool,
    next_id: u64,
    high_water: HighWater,
}

impl Inner {
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("the store always has an active segment")
    }

    fn state(&self) -> state::State {
        state::State {
            next_id: self.next_id,
            high_water: self.high_water.clone(),
        }
    }

    /// The segment and offset to read from for records with an id above `after`, and where the
    /// readable bytes of that segment end.
    fn locate(&self, after: u64) -> Option<(PathBuf, u64, u64)> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.summary.count > 0 && s.summary.last_id > after)?;
        Some((
            seg.path.clone(),
            seg.summary.seek_offset(after),
            seg.summary.bytes,
        ))
    }
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

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn merge(into: &mut HighWater, from: &HighWater) {
    for (k, &seq) in from {
        let e = into.entry(k.clone()).or_insert(0);
        *e = (*e).max(seq);
    }
}

fn open_active(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

impl Store {
    /// Opens the store in `dir` (created if missing), recovering from a crash mid-write and
    /// indexing segments written before index files existed.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let saved = state::load(dir)?;
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
        let count = names.len();
        for (i, (first_id, path)) in names.into_iter().enumerate() {
            let summary = if i + 1 < count {
                segment::load_sealed(&path).map_err(io_err(&path))?
            } else {
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                let summary = segment::scan(&bytes);
                if summary.bytes < bytes.len() as u64 {
                    // A write torn by a crash or a full disk: never acknowledged, so cutting
                    // it off loses nothing that was promised. Nothing before it is touched.
                    tracing::warn!(path = %path.display(), cut_bytes = bytes.len() as u64 - summary.bytes, "cutting off a torn write at the end of the store");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?;
                    f.set_len(summary.bytes).map_err(io_err(&path))?;
                    f.sync_all().map_err(io_err(&path))?;
                }
                summary
            };
            if summary.unreadable > 0 {
                tracing::error!(path = %path.display(), lines = summary.unreadable, "segment has damaged lines; they are skipped");
            }
            segments.push(Segment {
                first_id,
                path,
                summary,
            });
        }
        let mut high_water = saved.high_water.clone();
        for s in &segments {
            merge(&mut high_water, &s.summary.high_water);
        }
        let next_id = segments
            .iter()
            .map(|s| (s.summary.last_id + 1).max(s.first_id))
            .chain([saved.next_id, 1])
            .max()
            .expect("non-empty");
        if segments.is_empty() {
            segments.push(Segment {
                first_id: next_id,
                path: segment_path(dir, next_id),
                summary: Summary::default(),
            });
        }
        let active = open_active(&segments.last().expect("one segment").path)?;
        sync_dir(dir)?;
        let (last_id, _) = watch::channel(next_id - 1);
        let store = Store {
            dir: dir.to_path_buf(),
            opts,
            inner: Mutex::new(Inner {
                segments,
                active,
                dirty_tail: false,
                next_id,
                high_water,
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
            inner.high_water.keys().map(|(a, _)| a.as_str()).collect();
        agents.len()
    }

    /// The highest stored seq of an agent's spool instance (0 if none).
    pub fn agent_seq(&self, agent: &str, instance: &str) -> u64 {
        self.lock()
            .high_water
            .get(&(agent.to_string(), instance.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Bytes of records retained.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.summary.bytes).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the files inconsistent (a write only
        // counts once it is synced), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the events of an agent's spool instance whose seq is above the highest stored seq
    /// of that instance, in the given order, and makes them durable before returning. On an
    /// error nothing of the batch is stored.
    pub fn append(
        &self,
        agent: &str,
        instance: &str,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let key = (agent.to_string(), instance.to_string());
        let mut inner = self.lock();
        let mut last_seq = inner.high_water.get(&key).copied().unwrap_or(0);
        let batch_last = events.last().map_or(0, |e| e.seq);
        let received = now_rfc3339();
        let start = inner.active().summary.bytes;
        let mut summary = inner.active().summary.clone();
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
                    instance,
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
            let offset = start + buf.len() as u64;
            serde_json::to_writer(&mut buf, &rec).expect("a Record always serializes");
            buf.push(b'\n');
            summary.add(&rec, offset, start + buf.len() as u64);
            stored += 1;
        }
        let appended = Appended {
            acked_seq: batch_last,
            duplicates,
            stored,
        };
        if stored == 0 {
            return Ok(appended);
        }
        let path = inner.active().path.clone();
        if inner.dirty_tail {
            inner.active.set_len(start).map_err(io_err(&path))?;
            inner.dirty_tail = false;
        }
        let written = inner
            .active
            .write_all_at(&buf, start)
            .and_then(|()| inner.active.sync_data());
        if let Err(source) = written {
            // Cut the partial batch off so no reader and no restart ever sees it; if even that
            // fails, the next append cuts it first. Memory still describes the good prefix.
            if inner.active.set_len(start).is_err() {
                inner.dirty_tail = true;
            }
            tracing::error!(agent, path = %path.display(), error = %source, "storing a batch failed; it is not acknowledged");
            return Err(StoreError::Io { path, source });
        }
        inner.segments.last_mut().expect("one segment").summary = summary;
        inner.next_id = next_id;
        inner.high_water.insert(key, last_seq);
        let roll = inner.active().summary.bytes >= self.opts.segment_bytes;
        if roll {
            self.seal(&mut inner);
        }
        drop(inner);
        self.last_id.send_replace(next_id - 1);
        if roll {
            // The batch is durable whatever retention does; its failure is logged.
            if let Err(e) = self.apply_retention() {
                tracing::error!(error = %crate::ErrorChain(&e), "retention pass failed");
            }
        }
        Ok(appended)
    }

    /// Writes the active segment's index and the state, and opens a new segment. Each step that
    /// fails is logged and retried at the next roll or start; none loses a stored record.
    fn seal(&self, inner: &mut Inner) {
        let sealed = inner.active();
        if let Err(e) = segment::write_index(&sealed.path, &sealed.summary) {
            tracing::warn!(path = %sealed.path.display(), error = %e, "cannot write the segment index; it is rebuilt at the next start");
        }
        if let Err(e) = state::save(&self.dir, &inner.state()) {
            tracing::warn!(error = %e, "cannot save the store state");
        }
        let path = segment_path(&self.dir, inner.next_id);
        match open_active(&path).and_then(|f| sync_dir(&self.dir).map(|()| f)) {
            Ok(f) => {
                inner.active = f;
                inner.dirty_tail = false;
                inner.segments.push(Segment {
                    first_id: inner.next_id,
                    path,
                    summary: Summary::default(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new segment; appending to the current one")
            }
        }
    }

    /// Deletes the oldest sealed segments that are past the age limit or over the size limit,
    /// after saving the state they would otherwise take with them.
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let cutoff = (OffsetDateTime::now_utc() - self.opts.max_age).unix_timestamp();
        let mut saved = false;
        loop {
            if inner.segments.len() < 2 {
                break;
            }
            let total: u64 = inner.segments.iter().map(|s| s.summary.bytes).sum();
            let oldest = &inner.segments[0];
            if total <= self.opts.max_bytes && oldest.summary.newest >= cutoff {
                break;
            }
            if !saved {
                state::save(&self.dir, &inner.state()).map_err(io_err(&self.dir))?;
                saved = true;
            }
            let oldest = inner.segments.remove(0);
            tracing::info!(path = %oldest.path.display(), first_id = oldest.first_id, last_id = oldest.summary.last_id, "retention: deleting segment");
            fs::remove_file(&oldest.path).map_err(io_err(&oldest.path))?;
            let _ = fs::remove_file(segment::index_path(&oldest.path));
        }
        Ok(())
    }

    /// Up to `max` records with `id > after`, in id order.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < max {
            let Some((path, start, end)) = self.lock().locate(cursor) else {
                break;
            };
            let before = out.len();
            match segment::read_range(&path, start, end, cursor, max, &mut out) {
                Ok(0) => {}
                Ok(skipped) => {
                    tracing::error!(path = %path.display(), lines = skipped, "skipped damaged lines")
                }
                // Deleted by retention since it was located: those events are gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
            match out.last() {
                Some(r) if out.len() > before => cursor = r.id,
                // Nothing readable left in that segment: go on after it.
                _ => match self.lock().segments.iter().find(|s| s.path == path) {
                    Some(s) => cursor = cursor.max(s.summary.last_id),
                    None => continue,
                },
            }
        }
        Ok(out)
    }

    /// The newest `max` records for which `keep` is true, oldest first. Reads backwards one
    /// index block at a time, so a small answer reads a small part of the store.
    pub fn newest_matching(
        &self,
        max: usize,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<Vec<Record>, StoreError> {
        let blocks: Vec<(PathBuf, u64, u64)> = {
            let inner = self.lock();
            let mut v = Vec::new();
            for seg in &inner.segments {
                let m = &seg.summary.marks;
                for (i, mark) in m.iter().enumerate() {
                    let end = m.get(i + 1).map_or(seg.summary.bytes, |n| n.offset);
                    v.push((seg.path.clone(), mark.offset, end));
                }
            }
            v
        };
        let mut out: Vec<Record> = Vec::new();
        for (path, start, end) in blocks.into_iter().rev() {
            if out.len() >= max {
                break;
            }
            let mut block = Vec::new();
            match segment::read_range(&path, start, end, 0, usize::MAX, &mut block) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { path, source }),
            }
            for r in block.into_iter().rev() {
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
    use std::io::Write;

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

    fn is_enospc(e: &StoreError) -> bool {
        matches!(e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
    }

    #[test]
    fn a_full_disk_fails_the_batch_and_leaves_the_store_consistent() {
        let Some(fs) = seawall_delivery::testing::Tmpfs::mount(256 << 10) else {
            return;
        };
        let dir = fs.path().join("events");
        let filler = fs.path().join("filler");
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        // Take most of the space, so that batches fail part-way through a write.
        std::fs::write(&filler, vec![0u8; 200 << 10]).unwrap();
        let mut seq = 0;
        let mut acked = Vec::new();
        let err = loop {
            let batch: Vec<Event> = (seq + 1..=seq + 7).map(ev).collect();
            match store.append("a", "i", batch) {
                Ok(a) => {
                    assert_eq!(a.stored, 7);
                    acked.extend(seq + 1..=seq + 7);
                    seq += 7;
                }
                Err(e) => break e,
            }
            assert!(seq < 100_000, "the disk never filled");
        };
        assert!(is_enospc(&err), "{err}");
        let last_id = store.last_id();
        assert_eq!(last_id, acked.len() as u64, "a failed batch takes no ids");
        // The failed batch left nothing readable behind, and what was stored still reads.
        let got: Vec<u64> = store
            .read_after(0, 100_000)
            .unwrap()
            .iter()
            .map(|r| r.event.seq)
            .collect();
        assert_eq!(got, acked);
        // Space comes back: the re-sent batch is stored (not a duplicate), then more.
        std::fs::remove_file(&filler).unwrap();
        let a = store
            .append("a", "i", (seq + 1..=seq + 7).map(ev).collect())
            .unwrap();
        assert_eq!((a.stored, a.duplicates), (7, 0));
        store
            .append("a", "i", (seq + 8..=seq + 9).map(ev).collect())
            .unwrap();
        let want: Vec<u64> = (1..=seq + 9).collect();
        let read = |s: &Store| -> Vec<u64> {
            s.read_after(0, 100_000)
                .unwrap()
                .iter()
                .map(|r| r.event.seq)
                .collect()
        };
        assert_eq!(
            read(&store),
            want,
            "every stored event reads back, once, in order"
        );
        drop(store);
        // Restart never truncates what was acknowledged.
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        assert_eq!(read(&store), want, "after restart");
        let ids: Vec<u64> = store
            .read_after(0, 100_000)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, (1..=want.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn ids_and_high_water_marks_survive_retention_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            segment_bytes: 1000,
            max_bytes: 1,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        for s in 1..=40 {
            store.append("a", "i", vec![ev(s)]).unwrap();
        }
        let last_id = store.last_id();
        assert_eq!(last_id, 40);
        drop(store);
        // Retention has deleted every closed segment; what the store knew must not reset.
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.last_id(), 40, "record ids never reset");
        assert_eq!(store.agent_seq("a", "i"), 40, "high-water mark persisted");
        let a = store.append("a", "i", vec![ev(3)]).unwrap();
        assert_eq!(
            (a.stored, a.duplicates),
            (0, 1),
            "an old re-send is still a duplicate"
        );
        store.append("b", "", vec![ev(1)]).unwrap();
        assert_eq!(store.last_id(), 41);
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
