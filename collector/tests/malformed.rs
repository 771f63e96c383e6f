//! Malformed input from a peer gets an error and never takes the collector down.

mod common;

use std::time::Duration;

use common::*;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

/// `PublishRequest` as a future agent might send it: with a field this collector does not know.
#[derive(Clone, PartialEq, prost::Message)]
struct PublishRequestV2 {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(message, repeated, tag = "2")]
    events: Vec<pb::Event>,
    #[prost(string, tag = "99")]
    future_field: String,
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{}", addr.port()))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

async fn publish_once(
    ch: Channel,
    events: Vec<pb::Event>,
) -> Result<pb::PublishAck, tonic::Status> {
    let req = pb::PublishRequest {
        agent_id: "probe".into(),
        events,
        instance: String::new(),
    };
    let mut acks = CollectorClient::new(ch)
        .publish(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    acks.message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("no ack"))
}

/// Sends raw bytes and reads until the peer closes (or 5 s pass).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut sink = vec![0; 65536];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while s.read(&mut sink).await.unwrap_or(0) > 0 {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_invalid_messages_are_refused_and_the_collector_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let mut insecure = CollectorProcess::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        tmp.path().join("data").display().to_string(),
        "--insecure".into(),
    ]);
    let addr = insecure.addr;

    // Garbage bytes, a bare HTTP/2 preface followed by garbage frames, and HTTP/1 to a gRPC port.
    raw(addr, &[0xff; 4096]).await;
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 8, 0xee, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    h2.extend_from_slice(&[0xff; 64]);
    raw(addr, &h2).await;
    raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        insecure.is_running(),
        "garbage frames took the collector down"
    );

    // An oversized batch (over the 4 MiB default) is refused with an error.
    let big = pb::Event {
        message: "x".repeat(5 << 20),
        ..pb::Event::from(&event(1, Severity::Low))
    };
    let err = publish_once(channel(addr).await, vec![big])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal
        ),
        "oversized: {err:?}"
    );
    assert!(
        err.message().contains("message length too large") || err.message().contains("too large"),
        "{err:?}"
    );

    // An unknown enum value and out-of-order seqs are rejected one event at a time, with the
    // reason in the acknowledgement (issue 12 §6; tests/poison.rs has the details).
    let mut bad_kind = pb::Event::from(&event(1, Severity::Low));
    bad_kind.kind = 42;
    let ack = publish_once(channel(addr).await, vec![bad_kind])
        .await
        .unwrap();
    assert_eq!(ack.acked_seq, 1);
    assert!(ack.rejected[0].reason.contains("kind"), "{ack:?}");
    let ack = publish_once(
        channel(addr).await,
        vec![
            pb::Event::from(&event(5, Severity::Low)),
            pb::Event::from(&event(3, Severity::Low)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ack.rejected.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
    let health = CollectorClient::new(channel(addr).await)
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.last_id, 2,
        "the rejection record of seq 1 and event 5; nothing for the out-of-order seq 3"
    );

    // Unknown fields (a newer agent) are ignored: the batch is stored and acknowledged.
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.unwrap();
    let req = PublishRequestV2 {
        agent_id: "newer-agent".into(),
        events: vec![pb::Event::from(&event(1, Severity::Low))],
        future_field: "something new".into(),
    };
    let mut acks = grpc
        .streaming::<_, PublishRequestV2, pb::PublishAck, _>(
            tonic::Request::new(tokio_stream::iter(vec![req])),
            "/seawall.v1.Collector/Publish".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().acked_seq, 1);

    // A bad filter is an error, not a crash.
    let err = CollectorClient::new(channel(addr).await)
        .query(pb::QueryRequest {
            filter: Some(pb::Filter {
                since: "yesterday".into(),
                ..Default::default()
            }),
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(insecure.is_running());
    drop(insecure);

    // Garbage to a mutual-TLS port: the handshake fails, the collector carries on.
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let mut mtls = CollectorProcess::start(&mtls_args(
        &pki,
        &server,
        "127.0.0.1:0",
        &tmp.path().join("data2"),
    ));
    raw(mtls.addr, &[0x16, 3, 1, 0xff, 0xff, 1, 2, 3]).await;
    raw(mtls.addr, &[0u8; 10000]).await;
    assert!(mtls.is_running(), "garbage took the mTLS collector down");

    // A config file with an unknown key is refused at start, with the key named.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[sink]]\nname = \"s\"\ntype = \"file\"\npaht = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seawall-collector"))
        .args(["--insecure", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data3"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("paht"), "{stderr}");
}
