//! Issue 12 §1: acknowledgements name exactly what was stored, and an agent run is recognised by
//! its spool instance, not by its certificate alone.
//!
//! - An agent whose spool is wiped restarts its seq at 1: every event of its second run must reach
//!   the store (before the fix the collector took them for duplicates and acknowledged them away).
//! - Two nodes sharing one certificate must not swallow each other's events.
//! - The collector never acknowledges above what a stream sent, and the agent never applies an ack
//!   above what it sent (a collector that over-acknowledges must not make it delete unsent events).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use seawall_proto::pb::collector_server::{Collector, CollectorServer};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status, Streaming};

async fn query_all(addr: std::net::SocketAddr, pki: &Pki, reader: &Pair) -> Vec<pb::StoredEvent> {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_spool_was_wiped_is_stored_again_from_seq_1() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let agent = pki.agent("node-1");
    let reader = pki.reader("soc");
    let collector = CollectorProcess::start(&mtls_args(
        &pki,
        &server,
        "127.0.0.1:0",
        &tmp.path().join("data"),
    ));
    let spool = tmp.path().join("spool");
    for run in 1..=2 {
        let (d, last) = Delivery::start(agent_config(collector.addr, &pki, &agent, &spool))
            .await
            .unwrap();
        assert_eq!(last, 0, "run {run}: a new spool numbers from 1");
        for seq in 1..=13 {
            let mut e = event(seq, Severity::High);
            e.message = format!("run {run} event {seq}");
            d.publish(&e).unwrap();
        }
        wait_acked(&d, 13, Duration::from_secs(30)).await;
        d.shutdown().await;
        // The node is reinstalled: its spool (and every seq it remembered) is gone.
        std::fs::remove_dir_all(&spool).unwrap();
    }
    let stored = query_all(collector.addr, &pki, &reader).await;
    let messages: BTreeSet<String> = stored
        .iter()
        .map(|s| s.event.as_ref().unwrap().message.clone())
        .collect();
    for run in 1..=2 {
        for seq in 1..=13 {
            assert!(
                messages.contains(&format!("run {run} event {seq}")),
                "run {run} event {seq} never reached the store; stored: {messages:?}"
            );
        }
    }
    assert_eq!(stored.len(), 26, "each event once");
    let instances: BTreeSet<&str> = stored.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(instances.len(), 2, "two spool instances: {instances:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_one_certificate_keep_all_their_events() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    // One certificate for a pool of nodes: it names both in its subject alternative names.
    let shared = pki.agent_for("pool", &["node-1", "node-2"]);
    let reader = pki.reader("soc");
    let collector = CollectorProcess::start(&mtls_args(
        &pki,
        &server,
        "127.0.0.1:0",
        &tmp.path().join("data"),
    ));
    let mut nodes = Vec::new();
    for node in ["node-1", "node-2"] {
        let spool = tmp.path().join(format!("spool-{node}"));
        let (d, _) = Delivery::start(agent_config(collector.addr, &pki, &shared, &spool))
            .await
            .unwrap();
        nodes.push((node, d));
    }
    for seq in 1..=50 {
        for (node, d) in &nodes {
            let mut e = event(seq, Severity::Medium);
            e.node = node.to_string();
            d.publish(&e).unwrap();
        }
    }
    for (_, d) in &nodes {
        wait_acked(d, 50, Duration::from_secs(30)).await;
    }
    let stored = query_all(collector.addr, &pki, &reader).await;
    for node in ["node-1", "node-2"] {
        let seqs: Vec<u64> = stored
            .iter()
            .map(|s| s.event.as_ref().unwrap())
            .filter(|e| e.node == node)
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=50).collect::<Vec<_>>(),
            "{node}: every event once, in order"
        );
    }
    assert!(stored.iter().all(|s| s.agent == "pool"));
    for (_, d) in nodes {
        d.shutdown().await;
    }
}

async fn publish(
    addr: std::net::SocketAddr,
    instance: &str,
    seqs: &[u64],
) -> Result<pb::PublishAck, Status> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = pb::PublishRequest {
        agent_id: "probe".into(),
        instance: instance.into(),
        events: seqs
            .iter()
            .map(|&s| pb::Event::from(&event(s, Severity::Low)))
            .collect(),
    };
    let mut acks = CollectorClient::new(channel)
        .publish(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    acks.message()
        .await?
        .ok_or_else(|| Status::unknown("no ack"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_never_acknowledges_above_what_the_stream_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        tmp.path().join("data").display().to_string(),
        "--insecure".into(),
    ]);
    let ack = publish(collector.addr, "i-1", &(1..=10).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!((ack.acked_seq, ack.duplicates), (10, 0));
    // A re-send of an old batch is acknowledged for what it carried, not for 10.
    let ack = publish(collector.addr, "i-1", &[3, 4]).await.unwrap();
    assert_eq!((ack.acked_seq, ack.duplicates), (4, 2));
    // Another instance of the same agent starts from nothing.
    let ack = publish(collector.addr, "i-2", &[1, 2]).await.unwrap();
    assert_eq!((ack.acked_seq, ack.duplicates), (2, 0));
}

/// A collector whose first stream acknowledges its first batch with a seq far above anything
/// sent, then drops the stream; later streams acknowledge honestly. Records what later streams got.
struct OverAcker {
    streams: Arc<Mutex<u32>>,
    later: Arc<Mutex<Vec<u64>>>,
    first_batch: Arc<Notify>,
    release: Arc<Notify>,
}

#[tonic::async_trait]
impl Collector for OverAcker {
    type PublishStream = ReceiverStream<Result<pb::PublishAck, Status>>;
    type SubscribeStream = ReceiverStream<Result<pb::StoredEvent, Status>>;

    async fn publish(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let stream_no = {
            let mut n = self.streams.lock().unwrap();
            *n += 1;
            *n
        };
        let later = self.later.clone();
        let first_batch = self.first_batch.clone();
        let release = self.release.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let last = batch.events.last().map_or(0, |e| e.seq);
                if stream_no == 1 {
                    first_batch.notify_one();
                    release.notified().await;
                    let bogus = pb::PublishAck {
                        acked_seq: 1_000_000,
                        ..Default::default()
                    };
                    let _ = tx.send(Ok(bogus)).await;
                    return;
                }
                later
                    .lock()
                    .unwrap()
                    .extend(batch.events.iter().map(|e| e.seq));
                let ack = pb::PublishAck {
                    acked_seq: last,
                    ..Default::default()
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("test collector"))
    }

    async fn query(
        &self,
        _: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        Err(Status::unimplemented("test collector"))
    }

    async fn health(
        &self,
        _: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Err(Status::unimplemented("test collector"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_never_applies_an_ack_above_what_it_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let later: Arc<Mutex<Vec<u64>>> = Arc::default();
    let first_batch = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let svc = OverAcker {
        streams: Arc::default(),
        later: later.clone(),
        first_batch: first_batch.clone(),
        release: release.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CollectorServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let cfg = insecure_agent_config(addr, &tmp.path().join("spool"));
    let (d, _) = Delivery::start(cfg).await.unwrap();
    d.publish(&event(1, Severity::Low)).unwrap();
    tokio::time::timeout(Duration::from_secs(20), first_batch.notified())
        .await
        .expect("the first batch reached the collector");
    // Spooled while the first batch waits for its (bogus) acknowledgement.
    for seq in 2..=5 {
        d.publish(&event(seq, Severity::Low)).unwrap();
    }
    release.notify_one();
    wait_until(
        Duration::from_secs(30),
        "events 1..=5 re-sent and honestly acknowledged",
        || d.stats().acked_seq == 5 && d.stats().spool_depth_events == 0,
    )
    .await;
    let got = later.lock().unwrap().clone();
    assert!(
        (1..=5).all(|s| got.contains(&s)),
        "after the bogus ack the agent must re-send what was never acknowledged: {got:?}"
    );
    d.shutdown().await;
}
