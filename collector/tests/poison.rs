//! Issue 12 §6: an event the collector cannot take as it is never stalls an agent's delivery.
//! Before the fix each of these ended the stream with an error, the agent re-sent the same batch
//! on every retry, and nothing after it was ever delivered.

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tonic::transport::{Channel, Endpoint};

fn insecure(data: &std::path::Path, extra: &[String]) -> CollectorProcess {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.display().to_string(),
        "--insecure".into(),
    ];
    args.extend_from_slice(extra);
    CollectorProcess::start(&args)
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn stored(addr: std::net::SocketAddr) -> Vec<pb::Event> {
    CollectorClient::new(channel(addr).await)
        .query(pb::QueryRequest {
            filter: None,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .into_iter()
        .map(|s| s.event.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_values_are_rejected_one_by_one_and_the_rest_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = insecure(&tmp.path().join("data"), &[]);
    let mut batch: Vec<pb::Event> = (1..=5)
        .map(|s| pb::Event::from(&event(s, Severity::Low)))
        .collect();
    batch[1].kind = 42; // a kind from a newer agent
    batch[3].network = Some(pb::Network {
        op: "connect".into(),
        protocol: "tcp".into(),
        address: "127.0.0.1".into(),
        port: 70_000,
    });
    let req = pb::PublishRequest {
        agent_id: "probe".into(),
        instance: "i".into(),
        events: batch,
    };
    let mut acks = CollectorClient::new(channel(collector.addr).await)
        .publish(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().expect("an ack, not an error");
    assert_eq!(ack.acked_seq, 5);
    let rejected: Vec<u64> = ack.rejected.iter().map(|r| r.seq).collect();
    assert_eq!(rejected, [2, 4]);
    assert!(
        ack.rejected[0].reason.contains("kind"),
        "{:?}",
        ack.rejected
    );
    assert!(
        ack.rejected[1].reason.contains("port"),
        "{:?}",
        ack.rejected
    );

    let events = stored(collector.addr).await;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for e in [&events[1], &events[3]] {
        assert_eq!(e.kind, pb::Kind::Agent as i32);
        assert_eq!(e.control, "delivery");
        assert!(e.message.contains("rejected"), "{}", e.message);
    }
    assert_eq!(
        events[2].kind,
        pb::Kind::Exec as i32,
        "the good ones as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_message_limit_is_stored_bounded_and_delivery_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = insecure(&tmp.path().join("data"), &[]);
    let (d, _) = Delivery::start(insecure_agent_config(
        collector.addr,
        &tmp.path().join("spool"),
    ))
    .await
    .unwrap();
    let mut big = event(1, Severity::High);
    big.message = "x".repeat(5 << 20);
    big.process = Some(seawall_proto::event::Process {
        args: vec!["a".repeat(1 << 20); 4],
        ..Default::default()
    });
    d.publish(&big).unwrap();
    for seq in 2..=10 {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    wait_acked(&d, 10, Duration::from_secs(30)).await;
    let events = stored(collector.addr).await;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let first = &events[0];
    assert!(
        first.message.len() < 64 << 10,
        "message kept bounded: {} bytes",
        first.message.len()
    );
    assert!(first.message.contains("truncated"), "the cut is said");
    assert!(first.process.as_ref().unwrap().args_truncated);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_a_small_collector_limit_are_split_until_they_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("collector.toml");
    std::fs::write(&config, "max_message_bytes = 131072\n").unwrap();
    let collector = insecure(
        &tmp.path().join("data"),
        &["--config".into(), config.display().to_string()],
    );
    let (d, _) = Delivery::start(insecure_agent_config(
        collector.addr,
        &tmp.path().join("spool"),
    ))
    .await
    .unwrap();
    for seq in 1..=400 {
        let mut e = event(seq, Severity::Low);
        e.message = format!("{seq} {}", "m".repeat(1000));
        d.publish(&e).unwrap();
    }
    wait_acked(&d, 400, Duration::from_secs(60)).await;
    assert_eq!(stored(collector.addr).await.len(), 400);
    d.shutdown().await;
}
