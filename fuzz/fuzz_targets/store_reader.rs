//! The collector's store readers on arbitrary bytes: a segment scan (start-up recovery), a
//! segment index file and the state file. None may panic; a scan's summary must describe a prefix
//! of the bytes with increasing ids and marks, and ranged reads of that prefix must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall_collector::store::{segment, state};

fuzz_target!(|data: &[u8]| {
    let _ = segment::decode_index(data);
    let _ = state::decode(data);
    let s = segment::scan(data);
    assert!(s.bytes as usize <= data.len());
    assert!(s.count >= s.marks.len() as u64);
    assert!(s
        .marks
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].offset < w[1].offset));
    assert!(s.marks.iter().all(|m| m.offset < s.bytes.max(1)));
    if s.count == 0 {
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("00000000000000000001.jsonl");
    std::fs::write(&path, data).unwrap();
    let mut all = Vec::new();
    segment::read_range(&path, 0, s.bytes, 0, usize::MAX, &mut all).unwrap();
    assert!(
        all.len() as u64 >= s.count,
        "a range read finds every record the scan counted"
    );
    for m in &s.marks {
        let mut from = Vec::new();
        segment::read_range(&path, m.offset, s.bytes, m.id - 1, 1, &mut from).unwrap();
        assert_eq!(
            from.first().map(|r| r.id),
            Some(m.id),
            "a mark points at its record"
        );
    }
});
