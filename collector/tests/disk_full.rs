//! Issue 12 §2 end to end: the collector's disk fills up mid-stream (a real tmpfs, filled for
//! real). Nothing is acknowledged that was not stored, the agent keeps the rest spooled, and once
//! space is back every event is stored exactly once, also after a kill -9 and restart.

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::testing::Tmpfs;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

async fn stored_seqs(addr: std::net::SocketAddr, pki: &Pki, reader: &Pair) -> Vec<u64> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(&reader.cert).unwrap(),
            std::fs::read(&reader.key).unwrap(),
        ));
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    CollectorClient::new(channel)
        .query(pb::QueryRequest {
            filter: None,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .map(|s| s.event.as_ref().unwrap().seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_collector_disk_loses_nothing_and_stores_nothing_twice() {
    let Some(disk) = Tmpfs::mount(1 << 20) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let agent = pki.agent("node-1");
    let reader = pki.reader("soc");
    let data = disk.path().join("data");
    let args = |listen: &str| mtls_args(&pki, &server, listen, &data);
    let mut collector = CollectorProcess::start(&args("127.0.0.1:0"));
    let listen = collector.addr.to_string();
    // Leave room for a few dozen events only.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; (1 << 20) - (40 << 10)]).unwrap();

    let spool = tmp.path().join("spool");
    let (d, _) = Delivery::start(agent_config(collector.addr, &pki, &agent, &spool))
        .await
        .unwrap();
    const TOTAL: u64 = 400;
    for seq in 1..=TOTAL {
        d.publish(&event(seq, Severity::Medium)).unwrap();
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = d.stats().acked_seq;
    assert!(acked < TOTAL, "a full disk cannot have stored everything");
    assert!(
        collector.is_running(),
        "a full disk must not take the collector down"
    );
    let partial = stored_seqs(collector.addr, &pki, &reader).await;
    assert!(
        partial.len() as u64 >= acked,
        "acked {acked} but only {} stored",
        partial.len()
    );

    // Space comes back: the agent's retries get through.
    std::fs::remove_file(&filler).unwrap();
    wait_acked(&d, TOTAL, Duration::from_secs(60)).await;
    assert_eq!(d.stats().spool_depth_events, 0);
    assert_eq!(
        stored_seqs(collector.addr, &pki, &reader).await,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every event once, in order"
    );

    // A crash and restart on the same disk keeps every acknowledged record.
    collector.kill9();
    let collector = CollectorProcess::start(&args(&listen));
    assert_eq!(
        stored_seqs(collector.addr, &pki, &reader).await,
        (1..=TOTAL).collect::<Vec<_>>(),
        "after kill -9 and restart"
    );
    d.shutdown().await;
    drop(collector);
}
