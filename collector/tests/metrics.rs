//! Issue 12 §7: `--metrics ADDR` shows what an operator checks, scraped from the real binary:
//! per-agent last-seen time and seq, per-sink lag, errors and dead letters, the store's size and
//! what was stored (whose rate is the ingest rate).
//!
//! Two agents publish; one sink delivers (lag 0), one points at a port nobody listens on (lag
//! = everything, errors counted), one webhook refuses one event for good (dead-lettered).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::receiver::receiver;
use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_agents_sinks_and_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook, _) = receiver(|_, body| {
        Some(if body.contains("\"seq\":7,") {
            400
        } else {
            200
        })
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n\
             [[sink]]\nname = \"down\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{closed_port}/\"\n\n\
             [[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/\"\n",
            tmp.path().join("archive.jsonl").display()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--insecure",
        "--data",
        &tmp.path().join("data").display().to_string(),
        "--config",
        &config.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let collector = CollectorProcess::start(&args);

    let before = collector.scrape().await;
    assert_eq!(
        sample(&before, "seawall_collector_events_stored_total"),
        Some(0.0)
    );
    assert!(before.contains("seawall_collector_build_info{version=\""));

    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut agents = Vec::new();
    for (name, n) in [("agent-a", 10u64), ("agent-b", 20)] {
        let mut cfg = insecure_agent_config(collector.addr, &tmp.path().join(name));
        cfg.agent_id = Some(name.into());
        let (d, _) = Delivery::start(cfg).await.unwrap();
        for seq in 1..=n {
            d.publish(&event(seq, Severity::Medium)).unwrap();
        }
        wait_acked(&d, n, Duration::from_secs(20)).await;
        agents.push(d);
    }

    let mut m = String::new();
    for _ in 0..200 {
        m = collector.scrape().await;
        let settled = sample(&m, "seawall_collector_sink_lag_events{sink=\"archive\"}")
            == Some(0.0)
            && sample(&m, "seawall_collector_sink_lag_events{sink=\"hook\"}") == Some(0.0)
            && sample(&m, "seawall_collector_store_bytes").is_some_and(|b| b > 0.0);
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get = |name: &str| sample(&m, name).unwrap_or_else(|| panic!("no {name} in\n{m}"));
    assert_eq!(get("seawall_collector_events_stored_total"), 30.0);
    assert_eq!(get("seawall_collector_store_last_id"), 30.0);
    assert!(get("seawall_collector_store_bytes") > 0.0);
    assert_eq!(get("seawall_collector_publish_streams"), 2.0);
    for (agent, seq) in [("agent-a", 10.0), ("agent-b", 20.0)] {
        assert_eq!(
            get(&format!(
                "seawall_collector_agent_last_seq{{agent=\"{agent}\"}}"
            )),
            seq
        );
        assert_eq!(
            get(&format!(
                "seawall_collector_agent_events_stored_total{{agent=\"{agent}\"}}"
            )),
            seq
        );
        let seen = get(&format!(
            "seawall_collector_agent_last_seen_timestamp_seconds{{agent=\"{agent}\"}}"
        ));
        assert!(
            seen >= start - 1.0 && seen <= start + 120.0,
            "{seen} vs {start}"
        );
    }

    assert_eq!(
        get("seawall_collector_sink_lag_events{sink=\"archive\"}"),
        0.0
    );
    assert_eq!(
        get("seawall_collector_sink_delivered_events_total{sink=\"archive\"}"),
        30.0
    );
    assert_eq!(
        get("seawall_collector_sink_errors_total{sink=\"archive\"}"),
        0.0
    );
    // Nobody listens: nothing delivered, everything behind, every failed attempt counted.
    assert_eq!(
        get("seawall_collector_sink_lag_events{sink=\"down\"}"),
        30.0
    );
    assert_eq!(
        get("seawall_collector_sink_delivered_events_total{sink=\"down\"}"),
        0.0
    );
    assert!(get("seawall_collector_sink_errors_total{sink=\"down\"}") >= 1.0);
    // Both agents sent a seq 7: each refused for good and dead-lettered; the rest delivered.
    assert_eq!(
        get("seawall_collector_sink_dead_lettered_events_total{sink=\"hook\"}"),
        2.0
    );
    assert_eq!(
        get("seawall_collector_sink_delivered_events_total{sink=\"hook\"}"),
        28.0
    );

    for d in agents {
        d.shutdown().await;
    }
    let mut open = None;
    for _ in 0..100 {
        open = sample(
            &collector.scrape().await,
            "seawall_collector_publish_streams",
        );
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, Some(0.0), "closed streams are no longer counted");
}
