//! Issue 12 §5: a certificate from the client CA is not enough. Agents (subject
//! `OU=seawall-agent`) may only publish, and only for the nodes their certificate names; readers
//! (`OU=seawall-reader`) may only read; a certificate with no role may do nothing.

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

async fn client(addr: std::net::SocketAddr, pki: &Pki, who: &Pair) -> CollectorClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(&who.cert).unwrap(),
            std::fs::read(&who.key).unwrap(),
        ));
    let ch = Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    CollectorClient::new(ch)
}

async fn query(c: &mut CollectorClient<Channel>) -> Result<Vec<pb::StoredEvent>, tonic::Status> {
    c.query(pb::QueryRequest {
        filter: None,
        limit: 1000,
    })
    .await
    .map(|r| r.into_inner().events)
}

async fn publish(c: &mut CollectorClient<Channel>) -> Result<pb::PublishAck, tonic::Status> {
    let req = pb::PublishRequest {
        agent_id: "x".into(),
        instance: "reader-instance".into(),
        events: vec![pb::Event::from(&event(1, Severity::Low))],
    };
    let mut acks = c.publish(tokio_stream::iter(vec![req])).await?.into_inner();
    acks.message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("no ack"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_can_do_only_what_their_role_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let agent = pki.agent("node-1");
    let reader = pki.reader("soc");
    let stranger = pki.leaf("stranger");
    let collector = CollectorProcess::start(&mtls_args(
        &pki,
        &server,
        "127.0.0.1:0",
        &tmp.path().join("data"),
    ));
    let addr = collector.addr;

    // The agent publishes for itself, and tries to publish as another node.
    let (d, _) = Delivery::start(agent_config(addr, &pki, &agent, &tmp.path().join("spool")))
        .await
        .unwrap();
    for seq in 1..=5 {
        d.publish(&event(seq, Severity::Medium)).unwrap();
    }
    let mut forged = event(6, Severity::Critical);
    forged.node = "victim".into();
    forged.message = "forged drift on another host".into();
    d.publish(&forged).unwrap();
    wait_acked(&d, 6, Duration::from_secs(30)).await;
    assert_eq!(d.stats().rejected_total, 1, "the forged event was refused");
    d.shutdown().await;

    let stored = query(&mut client(addr, &pki, &reader).await).await.unwrap();
    assert_eq!(stored.len(), 6);
    assert!(
        stored
            .iter()
            .all(|s| s.event.as_ref().unwrap().node == "node-1" && s.agent == "node-1"),
        "nothing is stored under another node: {stored:?}"
    );
    let record = stored[5].event.as_ref().unwrap();
    assert_eq!((record.seq, record.control.as_str()), (6, "delivery"));
    assert!(record.message.contains("victim"), "{}", record.message);
    assert!(!stored
        .iter()
        .any(|s| s.event.as_ref().unwrap().message.contains("forged")));

    // An agent cannot read anyone's events.
    let mut as_agent = client(addr, &pki, &agent).await;
    let err = query(&mut as_agent).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("reader"), "{err:?}");
    let err = as_agent
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    as_agent.health(pb::HealthRequest {}).await.unwrap();

    // A reader cannot publish.
    let mut as_reader = client(addr, &pki, &reader).await;
    let err = publish(&mut as_reader).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    as_reader.health(pb::HealthRequest {}).await.unwrap();

    // A certificate the CA signed but with no role can do nothing at all.
    let mut as_stranger = client(addr, &pki, &stranger).await;
    for err in [
        query(&mut as_stranger).await.unwrap_err(),
        publish(&mut as_stranger).await.unwrap_err(),
        as_stranger.health(pb::HealthRequest {}).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            err.message().contains("OU=seawall-agent"),
            "says what is missing: {err:?}"
        );
    }
    assert_eq!(
        query(&mut as_reader).await.unwrap().len(),
        6,
        "nothing was stored by the refused calls"
    );
}
