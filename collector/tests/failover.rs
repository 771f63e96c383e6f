//! Issue 17 §2: an agent given several collectors moves to the next when the one in use dies
//! (kill -9) or stops answering (SIGSTOP: the process and its TCP connection stay, as behind a
//! network cut), resumes from its last acknowledgement, and loses and reorders nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use seawall_collector::store::{Store, StoreOptions};
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;

fn stored_seqs(data: &std::path::Path) -> Vec<u64> {
    let store = Store::open(&data.join("events"), StoreOptions::default()).unwrap();
    store
        .read_after(0, 100_000)
        .unwrap()
        .iter()
        .map(|r| r.event.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fails_over_to_the_next_collector_without_loss_or_reordering() {
    let tmp = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        CollectorProcess::start(&[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            tmp.path().join(name).display().to_string(),
            "--insecure".into(),
        ])
    };
    let mut a = start("a");
    let b = start("b");
    let mut cfg = insecure_agent_config(a.addr, &tmp.path().join("spool"));
    cfg.url = format!(
        "http://127.0.0.1:{},http://127.0.0.1:{}",
        a.addr.port(),
        b.addr.port()
    );
    let (d, _) = Delivery::start(cfg).await.unwrap();
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

    let on_a = stored_seqs(&tmp.path().join("a"));
    let on_b = stored_seqs(&tmp.path().join("b"));
    assert!(on_a.windows(2).all(|w| w[0] < w[1]), "collector A in order");
    assert!(on_b.windows(2).all(|w| w[0] < w[1]), "collector B in order");
    assert!(
        on_a.len() >= 200,
        "A had everything acknowledged before it died"
    );
    let (last_a, first_b) = (*on_a.last().unwrap(), on_b[0]);
    assert!(
        first_b <= last_a + 1,
        "no gap at the move: A ends at {last_a}, B starts at {first_b}"
    );
    assert_eq!(*on_b.last().unwrap(), TOTAL);
    let mut all: Vec<u64> = on_a.iter().chain(&on_b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every event reached a collector"
    );
    // B started after the last acknowledgement A gave, so anything both hold was in flight.
    assert!(
        first_b > 200,
        "B re-received only what A had not acknowledged"
    );
}

/// A collector that keeps its connection but acknowledges nothing (SIGSTOP) is given up on after
/// the delivery's ack deadline (15 s), well before HTTP/2 keep-alive would notice (30–40 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_leaves_a_collector_that_stops_acknowledging() {
    let tmp = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        CollectorProcess::start(&[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            tmp.path().join(name).display().to_string(),
            "--insecure".into(),
        ])
    };
    let mut a = start("a");
    let b = start("b");
    let mut cfg = insecure_agent_config(a.addr, &tmp.path().join("spool"));
    cfg.url = format!(
        "http://127.0.0.1:{},http://127.0.0.1:{}",
        a.addr.port(),
        b.addr.port()
    );
    let (d, _) = Delivery::start(cfg).await.unwrap();
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

    let on_a = stored_seqs(&tmp.path().join("a"));
    let on_b = stored_seqs(&tmp.path().join("b"));
    assert!(on_b.windows(2).all(|w| w[0] < w[1]), "collector B in order");
    assert_eq!(
        on_a.len() as u64,
        on_a.last().copied().unwrap_or(0),
        "A holds 1..=n"
    );
    assert!(
        on_a.len() >= 200,
        "A had everything acknowledged before it stopped"
    );
    assert!(
        on_b[0] > 200,
        "B re-received only what A had not acknowledged"
    );
    let mut all: Vec<u64> = on_a.iter().chain(&on_b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every event reached a collector"
    );
    assert_eq!(*on_b.last().unwrap(), TOTAL);
}
