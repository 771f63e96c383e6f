//! The agent's spool reader on whatever a crash, a full disk or a tampered file left behind:
//! `Spool::open` and `read_after` must never panic, only return what is readable, and leave a
//! spool that takes new events and reads them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall_delivery::spool::{ReadPos, Spool};
use seawall_proto::event::{Action, Event, Kind, Severity};

fuzz_target!(|data: &[u8]| {
    // First line: the `acked` file; the rest: the one segment file.
    let (acked, segment) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    std::fs::write(dir.path().join("acked"), acked).unwrap();
    std::fs::write(dir.path().join("00000000000000000001.spool"), segment).unwrap();
    let Ok(mut spool) = Spool::open(dir.path(), 1 << 20) else {
        return;
    };
    let after = spool.acked();
    let read = spool
        .read_after(after, &mut ReadPos::default(), 100_000, 1 << 30)
        .unwrap();
    assert!(
        read.iter().all(|e| e.seq > after),
        "read_after returned acknowledged events"
    );
    let next = spool.last_seq().saturating_add(1);
    if next == u64::MAX {
        return;
    }
    let e = Event::new(
        next,
        "t".into(),
        "n".into(),
        Kind::Agent,
        Action::Allowed,
        "agent",
        Severity::Info,
        String::new(),
    );
    spool.append(&e).unwrap();
    let again = spool
        .read_after(next - 1, &mut ReadPos::default(), 100_000, 1 << 30)
        .unwrap();
    assert_eq!(
        again.last().map(|e| e.seq),
        Some(next),
        "a new event reads back"
    );
});
