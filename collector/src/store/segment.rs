//! One segment file: JSON lines of [`Record`]s, its sparse index, and reading a range of it.
//!
//! A segment is named after the first id it was opened for (`<first_id>.jsonl`). Every
//! [`MARK_EVERY`]th record's id and byte offset is a [`Mark`], so a read from a position seeks
//! to the nearest mark instead of parsing the whole file. A sealed segment (no longer written)
//! keeps its marks and per-instance high-water marks in `<first_id>.idx`, so opening the store
//! reads only that small file; only the active segment is scanned at start-up. A segment from
//! before index files existed is scanned once and gets one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Record;

/// One mark per this many records.
pub const MARK_EVERY: u64 = 32;
/// Bytes read per step when reading a range.
const READ_CHUNK: usize = 256 << 10;
/// Version of the `.idx` format; another version is rebuilt from the segment.
const INDEX_VERSION: u32 = 1;

/// Where a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub id: u64,
    pub offset: u64,
}

/// Highest seq per (agent identity, spool instance).
pub type HighWater = HashMap<(String, String), u64>;

/// What a segment holds, from a scan or from its index file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Bytes up to the end of the last complete, readable record.
    pub bytes: u64,
    /// Highest id in the segment (0 when it holds none).
    pub last_id: u64,
    pub count: u64,
    pub marks: Vec<Mark>,
    pub high_water: HighWater,
    /// `received` of the newest record, seconds since the epoch (0 when none).
    pub newest: i64,
    /// Complete lines that are not records (damage from outside): kept, skipped by readers.
    pub unreadable: u64,
}

impl Summary {
    /// Accounts for one record that starts at `offset` and ends at `end`.
    pub fn add(&mut self, rec: &Record, offset: u64, end: u64) {
        if self.count.is_multiple_of(MARK_EVERY) {
            self.marks.push(Mark { id: rec.id, offset });
        }
        self.count += 1;
        self.bytes = end;
        self.last_id = rec.id;
        if let Some(t) = super::parse_time(&rec.received) {
            self.newest = t.unix_timestamp();
        }
        let hw = self
            .high_water
            .entry((rec.agent.clone(), rec.instance.clone()))
            .or_insert(0);
        *hw = (*hw).max(rec.event.seq);
    }

    /// Offset from which to read to find the first record with an id above `after`.
    pub fn seek_offset(&self, after: u64) -> u64 {
        let i = self
            .marks
            .partition_point(|m| m.id <= after.saturating_add(1));
        if i == 0 {
            0
        } else {
            self.marks[i - 1].offset
        }
    }
}

/// Scans a segment's bytes. Only complete lines count; a line that does not parse is skipped
/// (and counted), never a reason to drop what follows it. `bytes` of the result ends after the
/// last readable record: anything past it is a torn write that was never acknowledged.
pub fn scan(bytes: &[u8]) -> Summary {
    let mut s = Summary::default();
    let mut offset = 0u64;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let start = offset;
        offset += line.len() as u64;
        if line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Record>(&line[..line.len() - 1]) {
            Ok(rec) if rec.id > s.last_id => s.add(&rec, start, offset),
            _ => s.unreadable += 1,
        }
    }
    s
}

/// Reads records with `id > after` from `path`, starting at `start` and not past `end`, until
/// `out` holds `max`. Unreadable lines are skipped. Returns how many were skipped.
pub fn read_range(
    path: &Path,
    start: u64,
    end: u64,
    after: u64,
    max: usize,
    out: &mut Vec<Record>,
) -> std::io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    let mut carry: Vec<u8> = Vec::new();
    let mut skipped = 0;
    let mut chunk = vec![0u8; READ_CHUNK];
    while pos < end && out.len() < max {
        let want = READ_CHUNK.min((end - pos) as usize);
        let n = f.read(&mut chunk[..want])?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        carry.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        for line in carry.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') || out.len() >= max {
                break;
            }
            consumed += line.len();
            match serde_json::from_slice::<Record>(&line[..line.len() - 1]) {
                Ok(r) if r.id > after => out.push(r),
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
        carry.drain(..consumed);
    }
    Ok(skipped)
}

/// Path of a segment's index file.
pub fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    bytes: u64,
    last_id: u64,
    count: u64,
    newest: i64,
    unreadable: u64,
    marks: Vec<Mark>,
    high_water: Vec<(String, String, u64)>,
}

/// Decodes an index file; `None` when it is not one this version wrote.
pub fn decode_index(bytes: &[u8]) -> Option<Summary> {
    let f: IndexFile = serde_json::from_slice(bytes).ok()?;
    if f.version != INDEX_VERSION {
        return None;
    }
    let marks_sorted = f
        .marks
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].offset < w[1].offset);
    if !marks_sorted || f.marks.last().is_some_and(|m| m.offset >= f.bytes) {
        return None;
    }
    Some(Summary {
        bytes: f.bytes,
        last_id: f.last_id,
        count: f.count,
        marks: f.marks,
        high_water: f
            .high_water
            .into_iter()
            .map(|(a, i, s)| ((a, i), s))
            .collect(),
        newest: f.newest,
        unreadable: f.unreadable,
    })
}

/// Writes a sealed segment's index (temporary file, fsync, rename).
pub fn write_index(segment: &Path, s: &Summary) -> std::io::Result<()> {
    let f = IndexFile {
        version: INDEX_VERSION,
        bytes: s.bytes,
        last_id: s.last_id,
        count: s.count,
        newest: s.newest,
        unreadable: s.unreadable,
        marks: s.marks.clone(),
        high_water: s
            .high_water
            .iter()
            .map(|((a, i), s)| (a.clone(), i.clone(), *s))
            .collect(),
    };
    let path = index_path(segment);
    let tmp = path.with_extension("idx.tmp");
    let mut out = File::create(&tmp)?;
    out.write_all(&serde_json::to_vec(&f).expect("an index always serializes"))?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The summary of a sealed segment: from its index when that matches the file, else by a scan
/// (and the index is written for next time).
pub fn load_sealed(segment: &Path) -> std::io::Result<Summary> {
    let len = std::fs::metadata(segment)?.len();
    if let Ok(bytes) = std::fs::read(index_path(segment)) {
        if let Some(s) = decode_index(&bytes) {
            if s.bytes <= len {
                return Ok(s);
            }
        }
    }
    tracing::info!(path = %segment.display(), "indexing a segment (first start after an upgrade, or its index was lost)");
    let s = scan(&std::fs::read(segment)?);
    if let Err(e) = write_index(segment, &s) {
        tracing::warn!(path = %segment.display(), error = %e, "cannot write the segment index; it will be rebuilt at the next start");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::ev;

    fn line(id: u64, agent: &str, seq: u64) -> Vec<u8> {
        let r = Record {
            id,
            agent: agent.into(),
            instance: String::new(),
            received: "2026-05-01T10:00:00Z".into(),
            event: ev(seq),
        };
        let mut v = serde_json::to_vec(&r).unwrap();
        v.push(b'\n');
        v
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_skipped_not_a_cut() {
        let mut bytes = line(1, "a", 1);
        bytes.extend_from_slice(b"{\"id\":2,\"agent\":\"a\",\"rece\n");
        let keep = bytes.len() + line(3, "a", 3).len();
        bytes.extend(line(3, "a", 3));
        bytes.extend_from_slice(b"{\"id\":4,\"ag");
        let s = scan(&bytes);
        assert_eq!((s.count, s.last_id, s.unreadable), (2, 3, 1));
        assert_eq!(s.bytes, keep as u64, "only the torn tail is past `bytes`");
        assert_eq!(s.high_water[&("a".to_string(), String::new())], 3);
    }

    #[test]
    fn marks_let_a_read_start_near_its_position() {
        let mut bytes = Vec::new();
        let mut s = Summary::default();
        for id in 1..=200 {
            let l = line(id, "a", id);
            let start = bytes.len() as u64;
            bytes.extend(&l);
            s.add(
                &serde_json::from_slice(&l[..l.len() - 1]).unwrap(),
                start,
                bytes.len() as u64,
            );
        }
        assert_eq!(s, scan(&bytes));
        assert_eq!(s.marks.len(), 200usize.div_ceil(MARK_EVERY as usize));
        let off = s.seek_offset(150);
        assert!(off > 0 && off < bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.jsonl");
        std::fs::write(&p, &bytes).unwrap();
        let mut out = Vec::new();
        read_range(&p, off, s.bytes, 150, 5, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|r| r.id).collect::<Vec<_>>(),
            [151, 152, 153, 154, 155]
        );
        write_index(&p, &s).unwrap();
        assert_eq!(load_sealed(&p).unwrap(), s);
    }
}
