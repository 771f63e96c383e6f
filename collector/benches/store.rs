//! Store and sink throughput (issue 12 §3): `cargo bench -p seawall-collector --bench store`.
//!
//! Fills a store with realistic events, then measures, each on its own:
//! - ingest: `Store::append` in agent-sized batches (500 events, one fdatasync each);
//! - a file sink catching up from the oldest event, through the real sink task (store read,
//!   export JSON, write, fsync, cursor), in events/s;
//! - `read_after` of one 256-record batch from a position near the start and near the end of the
//!   store (equal times mean a read from a position does not scan);
//! - `Query`'s newest-100 without a filter, and with a filter that only the oldest events match.
//!
//! - with `SEAWALL_BENCH_NATS=nats://HOST:PORT`: ingest through one collector's JetStream store
//!   (a fresh stream, one replica), each event acknowledged by JetStream.
//!
//! Set `SEAWALL_BENCH_EVENTS` to change the store size (default 300000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use seawall_collector::config::{SinkConfig, SinkKind};
use seawall_collector::store::{Store, StoreOptions};
use seawall_proto::event::{Action, Container, Event, Kind, Process, Severity};

fn event(seq: u64) -> Event {
    let mut e = Event::new(
        seq,
        "2026-05-01T10:00:00.123456789Z".into(),
        "node-1".into(),
        Kind::Exec,
        Action::Audited,
        "exec",
        Severity::Medium,
        format!("exec of /usr/bin/curl in web (seq {seq})"),
    );
    e.process = Some(Process {
        pid: 4242,
        ppid: 1,
        uid: 0,
        comm: "curl".into(),
        exe: "/usr/bin/curl".into(),
        args: vec![
            "curl".into(),
            "-s".into(),
            "https://example.invalid/x".into(),
        ],
        args_truncated: false,
    });
    e.container = Some(Container {
        id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        name: if seq <= 1000 {
            "old".into()
        } else {
            "web".into()
        },
        image: "nginx:1.27".into(),
        image_id: "sha256:4f67c83422ec747235357c04556616234e66fc3fa39cb4f40b2d4441ddd8f100".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        runtime: "docker".into(),
        kubernetes: None,
    });
    e
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Events/s into JetStream through the collector's NATS store.
fn bench_nats(rt: &tokio::runtime::Runtime, url: &str) {
    use seawall_collector::store::nats::{NatsConfig, NatsStore};
    const N: u64 = 20_000;
    rt.block_on(async {
        let cfg = NatsConfig {
            urls: vec![url.to_string()],
            stream: Some(format!("BENCH_{}", std::process::id())),
            replicas: Some(1),
            ..NatsConfig::default()
        };
        let store = NatsStore::connect(&cfg).await.expect("connect to NATS");
        // One agent stream: its publishes are acknowledged one at a time, to keep its order.
        let d = ingest_nats(&store, "node-1", N).await;
        println!(
            "JetStream ingest (one collector, R1, one agent): {N} events in {d:.2?}: {:.0} events/s",
            per_second(N, d)
        );
        // A fleet: agent streams are stored side by side.
        const AGENTS: u64 = 8;
        let start = Instant::now();
        let tasks: Vec<_> = (0..AGENTS)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { ingest_nats(&store, &format!("node-{i}-fleet"), N / AGENTS).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("ingest task");
        }
        let d = start.elapsed();
        println!(
            "JetStream ingest (one collector, R1, {AGENTS} agents at once): {N} events in {d:.2?}: {:.0} events/s",
            per_second(N, d)
        );
    });
}

/// Appends events 1..=`n` of `agent` in agent-sized batches; how long that took.
async fn ingest_nats(
    store: &seawall_collector::store::nats::NatsStore,
    agent: &str,
    n: u64,
) -> Duration {
    use seawall_collector::store::backend::EventStore;
    let start = Instant::now();
    let mut seq = 0;
    while seq < n {
        let batch: Vec<Event> = (seq + 1..=(seq + 500).min(n)).map(event).collect();
        seq += batch.len() as u64;
        store.append(agent, "bench", batch).await.expect("append");
    }
    start.elapsed()
}

fn main() {
    let total: u64 = std::env::var("SEAWALL_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let opts = StoreOptions {
        segment_bytes: 16 << 20,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&tmp.path().join("events"), opts).expect("open store"));

    let start = Instant::now();
    let mut seq = 0;
    while seq < total {
        let batch: Vec<Event> = (seq + 1..=(seq + 500).min(total)).map(event).collect();
        seq += batch.len() as u64;
        store.append("node-1", "bench", batch).expect("append");
    }
    let ingest = start.elapsed();
    println!(
        "ingest: {total} events in {:.2?}: {:.0} events/s (batches of 500, fdatasync each); store {} MiB",
        ingest,
        per_second(total, ingest),
        store.size_bytes() >> 20
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Ok(url) = std::env::var("SEAWALL_BENCH_NATS") {
        bench_nats(&rt, &url);
    }
    let out = tmp.path().join("sink/events.jsonl");
    let sinks = vec![SinkConfig {
        name: "bench".into(),
        min_severity: Severity::Info,
        kind: SinkKind::File {
            path: out.clone(),
            max_bytes: u64::MAX,
            keep: 1,
            format: seawall_collector::config::ExportFormat::Seawall,
        },
    }];
    let cursor = tmp.path().join("sinks/bench.cursor");
    let start = Instant::now();
    rt.block_on(async {
        let backend: Arc<dyn seawall_collector::store::backend::EventStore> =
            Arc::new(seawall_collector::store::backend::Embedded(store.clone()));
        let set =
            seawall_collector::sinks::SinkSet::start(&sinks, backend, tmp.path()).expect("sinks");
        loop {
            let at: u64 = std::fs::read_to_string(&cursor)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            if at >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        set.stop().await;
    });
    let sink = start.elapsed();
    println!(
        "file sink catching up: {total} events in {:.2?}: {:.0} events/s",
        sink,
        per_second(total, sink)
    );

    for (name, after) in [("near the start", 10), ("near the end", total - 300)] {
        let times: Vec<Duration> = (0..50)
            .map(|_| {
                let t = Instant::now();
                let r = store.read_after(after, 256).expect("read");
                assert_eq!(r.len(), 256);
                t.elapsed()
            })
            .collect();
        println!(
            "read_after 256 from a position {name}: median {:.2?}",
            median(times)
        );
    }
    let times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(
                store.newest_matching(100, |_| true).expect("query").len(),
                100
            );
            t.elapsed()
        })
        .collect();
    println!("query newest 100, no filter: median {:.2?}", median(times));
    let t = Instant::now();
    let old = store
        .newest_matching(100, |r| {
            r.event.container.as_ref().is_some_and(|c| c.name == "old")
        })
        .expect("query");
    assert_eq!(old.len(), 100);
    println!(
        "query newest 100 matching only the oldest events (a full backwards scan): {:.2?}: {:.0} events/s",
        t.elapsed(),
        per_second(total, t.elapsed())
    );
}
