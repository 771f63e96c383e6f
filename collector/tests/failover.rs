//! Issue 17 §2: an agent given several collectors moves to the next when the one in use dies
//! (kill -9) or stops answering (SIGSTOP: the process and its TCP connection stay, as behind a
//! network cut), resumes from its last acknowledgement, and loses and reorders nothing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use seawall_collector::store::{Store, StoreOptions};
use seawall_proto::event::Severity;

fn stored_seqs(data: &Path) -> Vec<u64> {
    let store = Store::open(&data.join("events"), StoreOptions::default()).unwrap();
    store
        .read_after(0, 100_000)
        .unwrap()
        .iter()
        .map(|r| r.event.seq)
        .collect()
}

fn start(tmp: &Path, name: &str) -> CollectorProcess {
    CollectorProcess::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        tmp.join(name).display().to_string(),
        "--insecure".into(),
    ])
}

/// What collectors A (used first, lost after seq `acked_on_a` was acknowledged) and B hold
/// together: every event 1..=`total`, each store in order, and on B only what A had not acked.
fn assert_moved_without_loss(tmp: &Path, acked_on_a: u64, total: u64) {
    let on_a = stored_seqs(&tmp.join("a"));
    let on_b = stored_seqs(&tmp.join("b"));
    assert!(on_a.windows(2).all(|w| w[0] < w[1]), "collector A in order");
    assert!(on_b.windows(2).all(|w| w[0] < w[1]), "collector B in order");
    assert!(
        on_a.len() as u64 >= acked_on_a,
        "A had everything acknowledged before it was lost"
    );
    let (last_a, first_b) = (*on_a.last().unwrap(), on_b[0]);
    assert!(
        first_b <= last_a + 1,
        "no gap at the move: A ends at {last_a}, B starts at {first_b}"
    );
    // B started after the last acknowledgement A gave, so anything both hold was in flight.
    assert!(
        first_b > acked_on_a,
        "B re-received only what A had not acknowledged"
    );
    assert_eq!(*on_b.last().unwrap(), total);
    let mut all: Vec<u64> = on_a.iter().chain(&on_b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every event reached a collector"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fails_over_to_the_next_collector_without_loss_or_reordering() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = start(tmp.path(), "a");
    let b = start(tmp.path(), "b");
    let d = deliver_to_both(&a, &b, &tmp.path().join("spool")).await;
    const TOTAL: u64 = 600;
    for seq in 1..=200 {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    wait_acked(&d, 200, Duration::from_secs(30)).await;
    for seq in 201..=300 {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    a.kill9(); // mid-stream: some of 201..300 may be in flight
    for seq in 301..=TOTAL {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    wait_acked(&d, TOTAL, Duration::from_secs(30)).await;
    assert_eq!(d.stats().spool_depth_events, 0);
    d.shutdown().await;
    drop(b);
    assert_moved_without_loss(tmp.path(), 200, TOTAL);
}

/// A collector that keeps its connection but acknowledges nothing (SIGSTOP) is given up on after
/// the delivery's ack deadline (15 s), well before HTTP/2 keep-alive would notice (30–40 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_leaves_a_collector_that_stops_acknowledging() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = start(tmp.path(), "a");
    let b = start(tmp.path(), "b");
    let d = deliver_to_both(&a, &b, &tmp.path().join("spool")).await;
    const TOTAL: u64 = 400;
    for seq in 1..=200 {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    wait_acked(&d, 200, Duration::from_secs(30)).await;
    a.signal("STOP");
    let stopped = Instant::now();
    for seq in 201..=TOTAL {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    // Keep-alive alone needs at least 30 s: this bound fails without the ack deadline.
    wait_acked(&d, TOTAL, Duration::from_secs(28)).await;
    let took = stopped.elapsed();
    assert_eq!(d.stats().spool_depth_events, 0);
    d.shutdown().await;
    a.signal("CONT");
    a.kill9();
    drop(b);
    eprintln!("moved off the stopped collector and delivered everything in {took:.1?}");
    assert_moved_without_loss(tmp.path(), 200, TOTAL);
}
