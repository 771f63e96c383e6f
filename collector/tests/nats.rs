//! Issue 17 with real components: a three-node JetStream cluster of Debian's `nats-server` on
//! loopback (each node with its own store directory), two collectors on one replicated stream,
//! one agent that knows both. Mid-stream the collector the agent uses and the stream's leader
//! node are killed with -9: every event is stored exactly once and read back through the
//! surviving collector in per-agent order. The sinks, taken over by a third collector, continue
//! from their positions in the stream: the file sink exactly once, the webhook re-sending
//! nothing from before the dead collector's last saved position.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::receiver::{receiver, Bodies};
use common::*;
use seawall_proto::event::Severity;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;

/// `n` distinct free loopback ports (all held until every one is chosen, so none repeats).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One nats-server process; killed (by its pid) when dropped.
struct NatsNode {
    child: Child,
    url: String,
    name: String,
}

/// The server name of the stream's current leader.
async fn stream_leader(url: &str, stream: &str) -> String {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let mut st = js.get_stream(stream).await.expect("the stream exists");
    let info = st.info().await.expect("stream info");
    info.cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a replicated stream has a leader")
}

/// The `seq`s in webhook bodies (`{"events": [...]}`), in the order received.
fn webhook_seqs(bodies: &Bodies) -> Vec<u64> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server() -> Option<&'static str> {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is missing and CI=true (cargo xtask setup installs it)"
        );
        eprintln!("SKIP: nats-server is not installed (cargo xtask setup installs it)");
        return None;
    }
    Some("nats-server")
}

fn cluster(bin: &str, dir: &Path) -> Vec<NatsNode> {
    let ports = free_ports(6);
    let (client, route) = ports.split_at(3);
    (0..3)
        .map(|i| {
            let routes: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", route[j]))
                .collect();
            let store = dir.join(format!("n{i}"));
            let conf = dir.join(format!("n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: seawall-test\n listen: 127.0.0.1:{}\n routes: [{}] }}\n",
                    client[i],
                    store.display(),
                    route[i],
                    routes.join(", ")
                ),
            )
            .unwrap();
            let child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            NatsNode {
                child,
                url: format!("nats://127.0.0.1:{}", client[i]),
                name: format!("n{i}"),
            }
        })
        .collect()
}

async fn stored(addr: std::net::SocketAddr) -> Vec<pb::StoredEvent> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    CollectorClient::new(ch)
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
async fn collectors_on_a_jetstream_cluster_lose_nothing_when_a_collector_and_a_node_die() {
    let Some(bin) = nats_server() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = cluster(bin, tmp.path());
    let urls = nodes
        .iter()
        .map(|n| n.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let out = tmp.path().join("sink/events.jsonl");
    let (hook_port, hook) = receiver(|_, _| Some(200)).await;
    let sink_config = tmp.path().join("sink.toml");
    std::fs::write(
        &sink_config,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n\
             [[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/\"\n",
            out.display()
        ),
    )
    .unwrap();
    let collector = |name: &str, sink: bool| {
        let mut args = vec![
            "--listen".to_string(),
            "127.0.0.1:0".into(),
            "--data".into(),
            tmp.path().join(name).display().to_string(),
            "--insecure".into(),
            "--nats".into(),
            urls.clone(),
            "--nats-replicas".into(),
            "3".into(),
        ];
        if sink {
            args.extend(["--config".to_string(), sink_config.display().to_string()]);
        }
        CollectorProcess::start(&args)
    };
    // A serves the sink; B does not (one collector serves a sink at a time).
    let mut a = collector("a", true);
    let b = collector("b", false);
    let d = deliver_to_both(&a, &b, &tmp.path().join("spool")).await;
    const TOTAL: u64 = 600;
    for seq in 1..=200 {
        d.publish(&event(seq, Severity::Medium)).unwrap();
    }
    wait_acked(&d, 200, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(60), "A's sinks delivered 200", || {
        sink_lines(&out).len() == 200 && webhook_seqs(&hook).len() == 200
    })
    .await;
    // An idle sink saves its position at once; give it time to land in the stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for seq in 201..=300 {
        d.publish(&event(seq, Severity::Medium)).unwrap();
    }
    a.kill9();
    // The stream's leader node dies too (SIGKILL, as a crash would): the cluster must elect
    // another while the agent fails over to B.
    let leader = stream_leader(&nodes[0].url, "SEAWALL_EVENTS").await;
    let i = nodes.iter().position(|n| n.name == leader).unwrap();
    drop(nodes.remove(i));
    for seq in 301..=TOTAL {
        d.publish(&event(seq, Severity::Medium)).unwrap();
    }
    wait_acked(&d, TOTAL, Duration::from_secs(120)).await;

    // Read back through the surviving collector: each event once, in the agent's order.
    let mut got = Vec::new();
    for _ in 0..100 {
        got = stored(b.addr).await;
        if got.len() as u64 >= TOTAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seqs: Vec<u64> = got.iter().map(|s| s.event.as_ref().unwrap().seq).collect();
    assert_eq!(
        seqs,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let ids: Vec<u64> = got.iter().map(|s| s.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // A third collector takes the sinks over from where A left them.
    let _c = collector("c", true);
    wait_until(Duration::from_secs(60), "every event at both sinks", || {
        sink_lines(&out).len() as u64 >= TOTAL && {
            let mut got = webhook_seqs(&hook);
            got.sort_unstable();
            got.dedup();
            got.len() as u64 == TOTAL
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = webhook_seqs(&hook);
    let mut seen = std::collections::HashSet::new();
    let again: Vec<u64> = sent.iter().copied().filter(|s| !seen.insert(*s)).collect();
    assert!(
        again.iter().all(|s| *s > 200),
        "C re-sent events from before A's saved position (position lost?): {again:?}"
    );
    let mut distinct: Vec<u64> = seen.into_iter().collect();
    distinct.sort_unstable();
    assert_eq!(
        distinct,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every event at the webhook"
    );
    let lines: Vec<u64> = sink_lines(&out)
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        lines,
        (1..=TOTAL).collect::<Vec<_>>(),
        "exactly once at the file sink, in order"
    );
    d.shutdown().await;
    drop(b);
}
