//! Agent delivery → collector over mutual TLS, with real certificates made in the test.

mod common;

use std::time::Duration;

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

async fn health(
    addr: std::net::SocketAddr,
    tls: ClientTlsConfig,
) -> Result<pb::HealthResponse, String> {
    let ep = Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    let channel = ep.connect().await.map_err(|e| format!("{e:?}"))?;
    CollectorClient::new(channel)
        .health(pb::HealthRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.to_string())
}

fn tls(pki: &common::Pki, client: Option<&common::Pair>) -> ClientTlsConfig {
    let mut t = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
    if let Some(c) = client {
        t = t.identity(Identity::from_pem(
            std::fs::read(&c.cert).unwrap(),
            std::fs::read(&c.key).unwrap(),
        ));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_with_the_certificate_identity_and_strangers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "seawall");
    let server = pki.leaf("collector");
    let agent = pki.agent_for("agent-a", &["node-1"]);
    let reader = pki.reader("soc");
    let data = tmp.path().join("data");
    let sink_file = tmp.path().join("out/events.jsonl");
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
            sink_file.display()
        ),
    )
    .unwrap();
    let mut args = mtls_args(&pki, &server, "127.0.0.1:0", &data);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let mut collector = CollectorProcess::start(&args);

    let spool = tmp.path().join("spool");
    let (delivery, last) = Delivery::start(agent_config(collector.addr, &pki, &agent, &spool))
        .await
        .unwrap();
    assert_eq!(last, 0, "a new spool starts at seq 0");
    for seq in 1..=20 {
        delivery.publish(&event(seq, Severity::High)).unwrap();
    }
    wait_acked(&delivery, 20, Duration::from_secs(30)).await;
    assert!(delivery.stats().connected);
    assert_eq!(delivery.stats().spool_depth_events, 0);

    // The stored agent is the certificate's CN, not the id the agent claimed.
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", collector.addr.port()))
        .unwrap()
        .tls_config(tls(&pki, Some(&reader)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stored = CollectorClient::new(channel)
        .query(pb::QueryRequest {
            filter: None,
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(stored.len(), 20);
    assert!(
        stored.iter().all(|s| s.agent == "agent-a"),
        "{:?}",
        stored[0].agent
    );
    let seqs: Vec<u64> = stored
        .iter()
        .map(|s| s.event.as_ref().unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());

    wait_until(Duration::from_secs(20), "file sink", || {
        sink_lines(&sink_file).len() == 20
    })
    .await;
    assert_eq!(sink_lines(&sink_file)[0]["collector"]["agent"], "agent-a");

    // An agent restart resumes numbering from the spool.
    delivery.shutdown().await;
    let (delivery, last) = Delivery::start(agent_config(collector.addr, &pki, &agent, &spool))
        .await
        .unwrap();
    assert_eq!(last, 20);
    delivery.shutdown().await;

    // No certificate, a certificate from another CA, or plain text: refused.
    assert!(
        health(collector.addr, tls(&pki, None)).await.is_err(),
        "no client certificate must be refused"
    );
    let other = Pki::new(&tmp.path().join("."), "rogue");
    let rogue = other.leaf("rogue-agent");
    assert!(
        health(collector.addr, tls(&pki, Some(&rogue)))
            .await
            .is_err(),
        "a certificate from another CA must be refused"
    );
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", collector.addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Ok(ch) => CollectorClient::new(ch)
            .health(pb::HealthRequest {})
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "plain-text gRPC must be refused");

    // The collector survived all of it and still serves the legitimate agent.
    assert!(collector.is_running());
    let h = health(collector.addr, tls(&pki, Some(&agent)))
        .await
        .unwrap();
    assert_eq!((h.status.as_str(), h.last_id, h.agents), ("serving", 20, 1));
}
