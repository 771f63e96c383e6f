//! The bounded on-disk spool: events wait here until the collector acknowledges them.
//!
//! Events are JSON lines in segment files named after their first seq (`<seq>.spool`). The
//! highest acknowledged seq is kept in `acked` (written to a temporary file, fsync'd, renamed).
//! `instance` holds a random id made when the spool is created: seqs count within one instance,
//! so when a spool is lost and numbering restarts at 1 the collector sees a new instance and
//! does not take the new events for re-sends of the old ones.
//! A segment is deleted once every event in it is acknowledged. When a new event would push the
//! spool over its size limit, the oldest segment is deleted and its unacknowledged events are
//! counted as dropped.
//!
//! Durability: `append` is one positioned `write(2)` per event at the end of what is known to be
//! good, so the event survives a crash of the agent process as soon as `publish` returns. A write
//! that fails (a full disk) is cut off again and the event is counted as dropped: the next event
//! never lands behind half a line, and the spool stays readable; [`Spool::sync`] (called by the sender about once a
//! second and at shutdown) `fdatasync`s it, so a crash of the host loses at most the last second.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use seawall_proto::event::{Event, MAX_EVENT_BYTES};

use super::DeliveryError;

#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// Where the sender stopped reading, so the next read does not rescan the segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadPos {
    segment: u64,
    offset: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: Vec<Segment>,
    active: File,
    /// A failed write could not be cut off: cut it before the next one.
    dirty_tail: bool,
    acked: u64,
    last_seq: u64,
    /// Empty for a spool made before instances existed (its seqs are already known by it).
    instance: String,
    /// Seqs spooled and not yet acknowledged, oldest first.
    pending: VecDeque<u64>,
    dropped_total: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Spool {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.spool"))
}

impl Spool {
    /// Opens or creates the spool in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, DeliveryError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        // Eight segments per spool, so dropping one when full drops an eighth, not everything.
        let segment_bytes = (max_bytes / 8).clamp(4 << 10, 8 << 20);
        let acked = fs::read_to_string(dir.join("acked"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let n = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".spool")?
                    .parse()
                    .ok()?;
                Some((n, p))
            })
            .collect();
        names.sort();
        let mut segments = Vec::new();
        let mut pending = VecDeque::new();
        let mut last_seq = acked;
        let count = names.len();
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            let mut seg = Segment {
                first_seq,
                last_seq: first_seq.saturating_sub(1),
                path: path.clone(),
                bytes: 0,
            };
            let mut reader = BufReader::new(File::open(&path).map_err(io(&path))?);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                let Ok(e) = serde_json::from_str::<Event>(line.trim_end()) else {
                    // Only the newest segment can end in a torn write (the agent crashed mid
                    // line); anything else unreadable is skipped rather than blocking delivery.
                    tracing::warn!(path = %path.display(), "spool: skipping an unreadable record");
                    if i + 1 == count && !line.ends_with('\n') {
                        break;
                    }
                    seg.bytes += n as u64;
                    continue;
                };
                if !line.ends_with('\n') {
                    break;
                }
                seg.bytes += n as u64;
                seg.last_seq = e.seq;
                last_seq = last_seq.max(e.seq);
                if e.seq > acked {
                    pending.push_back(e.seq);
                }
            }
            if i + 1 == count {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(seg.bytes).map_err(io(&path))?;
            }
            segments.push(seg);
        }
        // Nothing was ever spooled here, so the collector knows no seq of this spool yet.
        let fresh = last_seq == 0;
        let instance = load_instance(dir, fresh)?;
        if segments.is_empty() {
            segments.push(Segment {
                first_seq: last_seq + 1,
                last_seq,
                path: segment_path(dir, last_seq + 1),
                bytes: 0,
            });
        }
        let active_path = segments.last().expect("one segment").path.clone();
        let active = open_active(&active_path)?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            segments,
            active,
            dirty_tail: false,
            acked,
            last_seq,
            instance,
            pending,
            dropped_total: 0,
        };
        spool.delete_acked_segments()?;
        Ok(spool)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
    /// This spool's instance id, sent with every batch (empty for a pre-instance spool).
    pub fn instance(&self) -> &str {
        &self.instance
    }
    pub fn acked(&self) -> u64 {
        self.acked
    }
    pub fn depth(&self) -> u64 {
        self.pending.len() as u64
    }
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Appends one event; returns how many unacknowledged events were dropped to make room.
    /// When the event cannot be written (a full disk) it is counted as dropped and the error
    /// returned; the spool is as it was before the call.
    pub fn append(&mut self, event: &Event) -> Result<u64, DeliveryError> {
        if event.seq <= self.last_seq {
            return Err(DeliveryError::OutOfOrder {
                seq: event.seq,
                last: self.last_seq,
            });
        }
        let mut line = serde_json::to_vec(event).expect("an Event always serializes");
        if line.len() > MAX_EVENT_BYTES {
            // An event no collector batch could carry would stall delivery on every retry:
            // spool it cut to size, saying so in its message.
            let mut bounded = event.clone();
            let before = bounded.bound(MAX_EVENT_BYTES);
            tracing::warn!(seq = event.seq, bytes = ?before, "event too large to deliver: spooled a truncated copy");
            line = serde_json::to_vec(&bounded).expect("an Event always serializes");
        }
        line.push(b'\n');
        let len = line.len() as u64;
        let active = self.segments.last().expect("one segment");
        if active.bytes > 0 && active.bytes + len > self.segment_bytes {
            let path = segment_path(&self.dir, event.seq);
            match open_active(&path) {
                Ok(f) => {
                    self.active = f;
                    self.dirty_tail = false;
                    self.segments.push(Segment {
                        first_seq: event.seq,
                        last_seq: event.seq - 1,
                        path,
                        bytes: 0,
                    });
                }
                Err(e) => {
                    self.dropped_total += 1;
                    return Err(e);
                }
            }
        }
        let mut dropped = 0;
        while self.segments.len() > 1 && self.bytes() + len > self.max_bytes {
            let old = self.segments.remove(0);
            while self.pending.front().is_some_and(|&s| s <= old.last_seq) {
                self.pending.pop_front();
                dropped += 1;
            }
            fs::remove_file(&old.path).map_err(io(&old.path))?;
        }
        self.dropped_total += dropped;
        let seg = self.segments.last().expect("one segment");
        let (path, start) = (seg.path.clone(), seg.bytes);
        let written = (|| {
            if self.dirty_tail {
                self.active.set_len(start)?;
                self.dirty_tail = false;
            }
            self.active.write_all_at(&line, start)
        })();
        if let Err(source) = written {
            if self.active.set_len(start).is_err() {
                self.dirty_tail = true;
            }
            self.dropped_total += 1;
            return Err(DeliveryError::Spool { path, source });
        }
        let seg = self.segments.last_mut().expect("one segment");
        seg.bytes += len;
        seg.last_seq = event.seq;
        self.last_seq = event.seq;
        self.pending.push_back(event.seq);
        Ok(dropped)
    }

    /// Flushes appended events to the disk.
    pub fn sync(&self) -> Result<(), DeliveryError> {
        let path = &self.segments.last().expect("one segment").path;
        self.active.sync_data().map_err(io(path))
    }

    /// Records the collector's acknowledgement and deletes fully acknowledged segments. The
    /// `acked` file is written first, so memory never runs ahead of what a restart would find.
    pub fn ack(&mut self, seq: u64) -> Result<(), DeliveryError> {
        if seq <= self.acked {
            return Ok(());
        }
        let acked = seq.min(self.last_seq);
        let path = self.dir.join("acked");
        let tmp = self.dir.join("acked.tmp");
        (|| {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{acked}")?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        })()
        .map_err(io(&path))?;
        self.acked = acked;
        while self.pending.front().is_some_and(|&s| s <= self.acked) {
            self.pending.pop_front();
        }
        self.delete_acked_segments()
    }

    fn delete_acked_segments(&mut self) -> Result<(), DeliveryError> {
        while self.segments.len() > 1 && self.segments[0].last_seq <= self.acked {
            let old = self.segments.remove(0);
            fs::remove_file(&old.path).map_err(io(&old.path))?;
        }
        Ok(())
    }

    /// Up to `max_events` (and about `max_bytes`) events with `seq > after`, in order.
    pub fn read_after(
        &self,
        after: u64,
        pos: &mut ReadPos,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>, DeliveryError> {
        let mut out = Vec::new();
        let mut size = 0;
        for seg in self.segments.iter().filter(|s| s.last_seq > after) {
            let start = if pos.segment == seg.first_seq {
                pos.offset.min(seg.bytes)
            } else {
                0
            };
            let mut f = File::open(&seg.path).map_err(io(&seg.path))?;
            f.seek(SeekFrom::Start(start)).map_err(io(&seg.path))?;
            let mut buf = Vec::new();
            f.take(seg.bytes - start)
                .read_to_end(&mut buf)
                .map_err(io(&seg.path))?;
            let mut offset = start;
            for line in buf.split_inclusive(|b| *b == b'\n') {
                // Stop before the event that would overflow the batch (one always goes).
                if out.len() >= max_events || (!out.is_empty() && size + line.len() > max_bytes) {
                    return Ok(out);
                }
                offset += line.len() as u64;
                *pos = ReadPos {
                    segment: seg.first_seq,
                    offset,
                };
                match serde_json::from_slice::<Event>(line) {
                    Ok(e) if e.seq > after => {
                        size += line.len();
                        out.push(e);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!(path = %seg.path.display(), "spool: skipping an unreadable record")
                    }
                }
            }
        }
        Ok(out)
    }
}

fn open_active(path: &Path) -> Result<File, DeliveryError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))
}

/// Reads the spool's instance id, or makes one for a new spool. A spool that already holds
/// events but no id predates instances: it keeps the empty id, under which the collector already
/// knows its seqs, so nothing it re-sends is stored twice.
fn load_instance(dir: &Path, fresh: bool) -> Result<String, DeliveryError> {
    let path = dir.join("instance");
    match fs::read_to_string(&path) {
        Ok(s) => return Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let id = if fresh {
        random_id().map_err(io(Path::new("/dev/urandom")))?
    } else {
        String::new()
    };
    let tmp = dir.join("instance.tmp");
    (|| {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    })()
    .map_err(io(&path))?;
    Ok(id)
}

/// 128 random bits as hex.
fn random_id() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
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
            action: Action::Audited,
            control: "exec".into(),
            severity: Severity::Low,
            message: "x".repeat(100),
            process: None,
            container: None,
            file: None,
            network: None,
            intel: None,
        }
    }

    fn seqs(v: &[Event]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn resumes_after_the_last_ack_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=10 {
            s.append(&ev(i)).unwrap();
        }
        s.ack(4).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.last_seq(), s.acked(), s.depth()), (10, 4, 6));
        let mut pos = ReadPos::default();
        let got = s.read_after(s.acked(), &mut pos, 3, 1 << 20).unwrap();
        assert_eq!(seqs(&got), [5, 6, 7]);
        let got = s.read_after(7, &mut pos, 100, 1 << 20).unwrap();
        assert_eq!(seqs(&got), [8, 9, 10]);
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20).unwrap().append(&ev(3)),
            Err(DeliveryError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_new_spool_gets_an_instance_that_survives_reopen_and_a_wiped_one_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s");
        let first = Spool::open(&spool, 1 << 20).unwrap().instance().to_string();
        assert_eq!(first.len(), 32, "{first:?}");
        assert_eq!(Spool::open(&spool, 1 << 20).unwrap().instance(), first);
        fs::remove_dir_all(&spool).unwrap();
        let second = Spool::open(&spool, 1 << 20).unwrap().instance().to_string();
        assert_ne!(first, second);
        // A spool written before instances existed keeps the empty instance.
        let old = dir.path().join("old");
        fs::create_dir_all(&old).unwrap();
        fs::write(old.join("acked"), "7\n").unwrap();
        assert_eq!(Spool::open(&old, 1 << 20).unwrap().instance(), "");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // 32 KiB spool, 4 KiB segments, ~230-byte events.
        let mut s = Spool::open(dir.path(), 32 << 10).unwrap();
        let mut dropped = 0;
        for i in 1..=1000 {
            dropped += s.append(&ev(i)).unwrap();
        }
        assert!(dropped > 0);
        assert_eq!(s.dropped_total(), dropped);
        assert!(s.bytes() <= 32 << 10, "spool is {} bytes", s.bytes());
        assert_eq!(
            s.depth() + dropped,
            1000,
            "every event is either spooled or counted"
        );
        let got = s
            .read_after(0, &mut ReadPos::default(), 10_000, 1 << 30)
            .unwrap();
        assert_eq!(got.last().unwrap().seq, 1000, "the newest are kept");
        assert_eq!(
            got.first().unwrap().seq,
            dropped + 1,
            "the oldest were dropped"
        );
    }

    #[test]
    fn a_full_disk_fails_and_counts_the_event_and_leaves_the_spool_readable() {
        let Some(fs) = crate::testing::Tmpfs::mount(128 << 10) else {
            return;
        };
        let dir = fs.path().join("spool");
        let filler = fs.path().join("filler");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        std::fs::write(&filler, vec![0u8; 100 << 10]).unwrap();
        let mut spooled = Vec::new();
        let mut seq = 0;
        let failed = loop {
            seq += 1;
            match s.append(&ev(seq)) {
                Ok(_) => spooled.push(seq),
                Err(e) => break e,
            }
            assert!(seq < 10_000, "the disk never filled");
        };
        assert!(
            matches!(&failed, DeliveryError::Spool { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
            "{failed}"
        );
        assert_eq!(
            s.dropped_total(),
            1,
            "the event that did not fit is counted"
        );
        std::fs::remove_file(&filler).unwrap();
        for more in seq + 1..=seq + 5 {
            s.append(&ev(more)).unwrap();
            spooled.push(more);
        }
        let read = |s: &Spool| {
            seqs(
                &s.read_after(0, &mut ReadPos::default(), 100_000, 1 << 30)
                    .unwrap(),
            )
        };
        assert_eq!(read(&s), spooled, "every spooled event reads back");
        drop(s);
        let s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(read(&s), spooled, "and after a restart");
        assert_eq!(s.depth(), spooled.len() as u64);
    }

    #[test]
    fn acknowledged_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 32 << 10).unwrap();
        for i in 1..=100 {
            s.append(&ev(i)).unwrap();
        }
        let files = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "spool")
                })
                .count()
        };
        assert!(files() > 1);
        s.ack(100).unwrap();
        assert_eq!(files(), 1, "only the active segment is kept");
        assert_eq!(s.depth(), 0);
    }
}
