//! Issue 17 §3 end to end: a file sink with `format = "ocsf"` writes OCSF 1.2.0 events of the
//! class each kind maps to (the required-field validation is in `sinks::ocsf`'s unit tests), and
//! stays exactly-once across a collector kill -9 (it finds its last id in OCSF lines).

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::{File, Kind, Network, Severity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsf_file_sink_writes_each_kind_as_its_class_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ocsf.jsonl");
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"lake\"\ntype = \"file\"\nformat = \"ocsf\"\npath = \"{}\"\n",
            out.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let args = |listen: &str| -> Vec<String> {
        vec![
            "--listen".into(),
            listen.into(),
            "--data".into(),
            data.display().to_string(),
            "--insecure".into(),
            "--config".into(),
            config.display().to_string(),
        ]
    };
    let mut collector = CollectorProcess::start(&args("127.0.0.1:0"));
    let listen = collector.addr.to_string();
    let (d, _) = Delivery::start(insecure_agent_config(
        collector.addr,
        &tmp.path().join("spool"),
    ))
    .await
    .unwrap();
    let mut seq = 0;
    let mut publish = |kind: Kind| {
        seq += 1;
        let mut e = event(seq, Severity::High);
        e.kind = kind;
        match kind {
            Kind::File => {
                e.file = Some(File {
                    path: "/etc/passwd".into(),
                    flags: "O_RDONLY".into(),
                })
            }
            Kind::Network => {
                e.network = Some(Network {
                    op: "connect".into(),
                    protocol: "tcp".into(),
                    address: "127.0.0.9".into(),
                    port: 80,
                })
            }
            _ => {}
        }
        d.publish(&e).unwrap();
    };
    for kind in [Kind::Exec, Kind::File, Kind::Network, Kind::Container] {
        publish(kind);
    }
    wait_until(Duration::from_secs(20), "4 OCSF lines", || {
        sink_lines(&out).len() == 4
    })
    .await;
    collector.kill9();
    let _collector = CollectorProcess::start(&args(&listen));
    for kind in [Kind::Exec, Kind::Agent] {
        publish(kind);
    }
    wait_acked(&d, 6, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(20), "6 OCSF lines", || {
        sink_lines(&out).len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = sink_lines(&out);
    let classes: Vec<u64> = lines
        .iter()
        .map(|l| l["class_uid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        classes,
        [1007, 1001, 4001, 0, 1007, 0],
        "each event once, as its class"
    );
    for l in &lines {
        assert_eq!(l["metadata"]["version"], "1.2.0");
        assert_eq!(l["metadata"]["product"]["vendor_name"], "Seawall");
        assert_eq!(l["container"]["name"], "web");
        let (c, a) = (
            l["class_uid"].as_u64().unwrap(),
            l["activity_id"].as_u64().unwrap(),
        );
        assert_eq!(l["type_uid"].as_u64().unwrap(), c * 100 + a);
    }
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["metadata"]["uid"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    d.shutdown().await;
}
