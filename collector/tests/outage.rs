//! kill -9 the collector while an agent streams; events produced during the outage are delivered
//! after the restart, exactly once at the sink and in per-agent order.

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_crash_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let agents = [
        pki.agent_for("agent-a", &["node-1"]),
        pki.agent_for("agent-b", &["node-1"]),
    ];
    let data = tmp.path().join("data");
    let sink_file = tmp.path().join("out/events.jsonl");
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\nmax_bytes = 20000\nkeep = 100\n",
            sink_file.display()
        ),
    )
    .unwrap();
    let args = |listen: &str| {
        let mut a = mtls_args(&pki, &server, listen, &data);
        a.extend(["--config".to_string(), config.display().to_string()]);
        a
    };
    let mut collector = CollectorProcess::start(&args("127.0.0.1:0"));
    let listen = collector.addr.to_string();

    let mut deliveries = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let spool = tmp.path().join(format!("spool-{i}"));
        let (d, _) = Delivery::start(agent_config(collector.addr, &pki, a, &spool))
            .await
            .unwrap();
        deliveries.push(d);
    }
    const TOTAL: u64 = 600;
    let mut seq = 0;
    // Phase 1: stream while the collector is up, and kill it mid-stream.
    while seq < 200 {
        seq += 1;
        for d in &deliveries {
            d.publish(&event(seq, Severity::Medium)).unwrap();
        }
        if seq % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    collector.kill9();
    // Phase 2: produce during the outage.
    while seq < 400 {
        seq += 1;
        for d in &deliveries {
            d.publish(&event(seq, Severity::Medium)).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        deliveries.iter().all(|d| d.stats().acked_seq < 400),
        "nothing can be acknowledged during the outage"
    );
    assert!(deliveries.iter().all(|d| d.stats().spool_depth_events > 0));
    // Phase 3: restart on the same address and data, keep producing.
    let _collector = CollectorProcess::start(&args(&listen));
    while seq < TOTAL {
        seq += 1;
        for d in &deliveries {
            d.publish(&event(seq, Severity::Medium)).unwrap();
        }
    }
    for d in &deliveries {
        wait_acked(d, TOTAL, Duration::from_secs(60)).await;
        assert_eq!(d.stats().spool_depth_events, 0);
        assert_eq!(d.stats().dropped_total, 0);
    }
    wait_until(Duration::from_secs(60), "all events at the sink", || {
        all_sink_lines(&sink_file).len() as u64 >= 2 * TOTAL
    })
    .await;
    // Give a wrongly re-sent batch the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = all_sink_lines(&sink_file);
    assert_eq!(
        lines.len() as u64,
        2 * TOTAL,
        "every event exactly once at the sink"
    );
    for agent in ["agent-a", "agent-b"] {
        let seqs: Vec<u64> = lines
            .iter()
            .filter(|l| l["collector"]["agent"] == agent)
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=TOTAL).collect::<Vec<_>>(),
            "{agent}: all seqs, once, in order"
        );
    }
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["collector"]["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "store order preserved at the sink"
    );
    for d in deliveries {
        d.shutdown().await;
    }
}

/// The sink file and its rotated predecessors, oldest first.
fn all_sink_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for i in (1..=100).rev() {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        out.extend(sink_lines(std::path::Path::new(&p)));
    }
    out.extend(sink_lines(path));
    out
}
