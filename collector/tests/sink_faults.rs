//! Issue 12 §4: receivers that refuse, fail for a while, or hang.
//!
//! - A Splunk HEC that answers 400 to any body carrying a "poison" event: those events land in the
//!   sink's dead-letter file (counted once each), every other event is delivered. Before the fix
//!   the 400 was retried forever and nothing behind the first poison event was ever delivered.
//! - A webhook that answers 503, 503, then 429 before accepting: everything is delivered, nothing
//!   dead-lettered (transient errors back off and retry).
//! - A webhook that accepts connections and never answers: the other two sinks are not delayed.

mod common;

use std::time::Duration;

use common::receiver::{receiver, Bodies};
use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;

/// The `seq`s in HEC bodies (one JSON object per line) or webhook bodies (`{"events": [...]}`).
fn seqs(bodies: &Bodies) -> Vec<u64> {
    let mut out = Vec::new();
    for b in bodies.lock().unwrap().iter() {
        for line in b.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(events) = v.get("events") {
                out.extend(
                    events
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["seq"].as_u64().unwrap()),
                );
            } else {
                out.push(v["event"]["seq"].as_u64().unwrap());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_dead_lettered_transient_errors_retried_and_a_stuck_receiver_stalls_no_one(
) {
    let (hec, hec_got) =
        receiver(|_, body| Some(if body.contains("poison") { 400 } else { 200 })).await;
    let (hook, hook_got) = receiver(|n, _| {
        Some(match n {
            1 | 2 => 503,
            3 => 429,
            _ => 200,
        })
    })
    .await;
    let (stuck, _) = receiver(|_, _| None).await;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"hec\"\ntype = \"splunk_hec\"\nurl = \"http://127.0.0.1:{hec}/services/collector/event\"\ntoken = \"t\"\n\n\
             [[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/h\"\n\n\
             [[sink]]\nname = \"stuck\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{stuck}/h\"\n"
        ),
    )
    .unwrap();
    let collector = CollectorProcess::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.display().to_string(),
        "--insecure".into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let (d, _) = Delivery::start(insecure_agent_config(
        collector.addr,
        &tmp.path().join("spool"),
    ))
    .await
    .unwrap();
    const TOTAL: u64 = 60;
    for seq in 1..=TOTAL {
        let mut e = event(seq, Severity::High);
        if seq == 10 || seq == 41 {
            e.message = format!("poison pill #{seq}");
        }
        d.publish(&e).unwrap();
    }
    wait_acked(&d, TOTAL, Duration::from_secs(30)).await;

    let good: Vec<u64> = (1..=TOTAL).filter(|s| *s != 10 && *s != 41).collect();
    // Well inside the stuck receiver's 15 s request timeout: it cannot be what lets them through.
    wait_until(Duration::from_secs(10), "HEC and webhook delivery", || {
        seqs(&hec_got) == good && seqs(&hook_got).len() as u64 == TOTAL
    })
    .await;
    assert_eq!(
        seqs(&hook_got),
        (1..=TOTAL).collect::<Vec<_>>(),
        "each once after transient errors"
    );

    let dead = data.join("sinks/hec.deadletter.jsonl");
    let lines = sink_lines(&dead);
    let dead_seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["event"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(dead_seqs, [10, 41], "each refused event kept once");
    assert!(lines
        .iter()
        .all(|l| l["status"] == 400 && l["sink"] == "hec"));
    assert!(lines[0]["error"].as_str().unwrap().contains("400"));
    assert!(
        !data.join("sinks/hook.deadletter.jsonl").exists(),
        "transient errors are not dead-lettered"
    );
    d.shutdown().await;
}
