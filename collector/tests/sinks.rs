//! Every sink type against a local receiver the test runs: Splunk HEC (token checked), TCP and
//! UDP syslog (RFC 5424, JSON and CEF payloads), a generic webhook and Slack above a severity.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use seawall_delivery::{CollectorConfig, Delivery};
use seawall_proto::event::Severity;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

type Bodies = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal HTTP/1.1 server: records (authorization header, body); answers 403 when the
/// Authorization header differs from `want_auth` (if set), else 200.
async fn http_receiver(want_auth: Option<&'static str>) -> (u16, Bodies) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Bodies = Arc::default();
    let b = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let b = b.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut auth = String::new();
                    let mut len = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        reader.read_line(&mut line).await.unwrap();
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        let (k, v) = l.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).await.unwrap();
                    let ok = want_auth.is_none_or(|w| w == auth);
                    if ok {
                        b.lock()
                            .unwrap()
                            .push((auth, String::from_utf8(body).unwrap()));
                    }
                    let resp = if ok {
                        "HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{\"text\":\"Success\",\"code\":0}"
                    } else {
                        "HTTP/1.1 403 Forbidden\r\ncontent-length: 38\r\n\r\n{\"text\":\"Invalid token\",\"code\":4}\r\n\r\n"
                    };
                    reader.get_mut().write_all(resp.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, bodies)
}

/// Parses one RFC 5424 message: (PRI, HOSTNAME, MSGID, structured data, MSG).
fn parse_5424(m: &str) -> (u16, String, String, String, String) {
    let rest = m.strip_prefix('<').expect("PRI");
    let (pri, rest) = rest.split_once(">1 ").expect("version 1");
    let mut parts = rest.splitn(6, ' ');
    let time = parts.next().unwrap();
    assert!(
        time.starts_with("2026-05-01T10:00:00.123456Z"),
        "timestamp {time}"
    );
    let host = parts.next().unwrap().to_string();
    assert_eq!(parts.next().unwrap(), "seawall", "APP-NAME");
    assert_eq!(parts.next().unwrap(), "-", "PROCID");
    let msgid = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    let end = rest.find("] ").expect("structured data");
    (
        pri.parse().unwrap(),
        host,
        msgid,
        rest[..=end].to_string(),
        rest[end + 2..].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_delivers_to_its_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let (hec_port, hec) = http_receiver(Some("Splunk s3cret-token")).await;
    let (bad_hec_port, bad_hec) = http_receiver(Some("Splunk s3cret-token")).await;
    let (hook_port, hook) = http_receiver(None).await;
    let (slack_port, slack) = http_receiver(None).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();

    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[sink]]
name = "splunk"
type = "splunk_hec"
url = "http://127.0.0.1:{hec_port}/services/collector/event"
token = "s3cret-token"

[[sink]]
name = "splunk-wrong-token"
type = "splunk_hec"
url = "http://127.0.0.1:{bad_hec_port}/services/collector/event"
token = "wrong"

[[sink]]
name = "syslog-tcp"
type = "syslog"
address = "127.0.0.1:{tcp_port}"
protocol = "tcp"

[[sink]]
name = "qradar"
type = "syslog"
address = "127.0.0.1:{udp_port}"
protocol = "udp"
format = "cef"

[[sink]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{hook_port}/seawall"
authorization = "Bearer hook-token"

[[sink]]
name = "slack"
type = "slack"
url = "http://127.0.0.1:{slack_port}/services/T/B/X"
min_severity = "high"
"#
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let collector = CollectorProcess::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.display().to_string(),
        "--insecure".into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let (d, _) = Delivery::start(CollectorConfig {
        url: format!("http://127.0.0.1:{}", collector.addr.port()),
        ca: None,
        cert: None,
        key: None,
        insecure: true,
        spool_dir: tmp.path().join("spool"),
        spool_max_bytes: 1 << 20,
        agent_id: Some("trial-agent".into()),
    })
    .await
    .unwrap();
    let sev = [
        Severity::Low,
        Severity::High,
        Severity::Critical,
        Severity::Info,
    ];
    for seq in 1..=4 {
        d.publish(&event(seq, sev[seq as usize - 1])).unwrap();
    }
    wait_acked(&d, 4, Duration::from_secs(20)).await;

    // Syslog over TCP, octet-counting framing, JSON payload.
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(20), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut tcp_msgs = Vec::new();
    let mut buf = Vec::new();
    while tcp_msgs.len() < 4 {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "syslog TCP stream closed early");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp])
                .unwrap()
                .parse()
                .expect("octet count");
            if buf.len() < sp + 1 + len {
                break;
            }
            tcp_msgs.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    for (i, m) in tcp_msgs.iter().enumerate() {
        let (pri, host, msgid, sd, msg) = parse_5424(m);
        let expect_sev = [5, 3, 2, 6][i];
        assert_eq!(pri, 13 * 8 + expect_sev, "{m}");
        assert_eq!((host.as_str(), msgid.as_str()), ("node-1", "exec"));
        assert!(
            sd.contains(&format!("seq=\"{}\"", i + 1)) && sd.contains("agent=\"trial-agent\""),
            "{sd}"
        );
        let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["container"]["image"], "nginx:1.27");
    }

    // Syslog over UDP with a CEF payload.
    let mut udp_msgs = Vec::new();
    while udp_msgs.len() < 4 {
        let mut b = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(20), udp.recv(&mut b))
            .await
            .unwrap()
            .unwrap();
        udp_msgs.push(String::from_utf8(b[..n].to_vec()).unwrap());
    }
    for (i, m) in udp_msgs.iter().enumerate() {
        let (_, _, _, _, msg) = parse_5424(m);
        let fields: Vec<&str> = msg.splitn(8, '|').collect();
        assert_eq!(&fields[..3], ["CEF:0", "Seawall", "seawall"], "{msg}");
        assert_eq!(fields[4], "exec:drift:blocked");
        assert_eq!(fields[6], ["3", "8", "10", "1"][i], "CEF severity of {msg}");
        assert!(
            fields[7].contains(&format!("cn1={}", i + 1)) && fields[7].contains("cs4=nginx:1.27"),
            "{msg}"
        );
    }

    // Splunk HEC: right token, one JSON object per event.
    wait_until(Duration::from_secs(20), "HEC events", || {
        hec.lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.lines().count())
            .sum::<usize>()
            >= 4
    })
    .await;
    let hec_events: Vec<serde_json::Value> = hec
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(auth, body)| {
            assert_eq!(auth, "Splunk s3cret-token");
            body.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(hec_events.len(), 4);
    assert_eq!(hec_events[0]["sourcetype"], "seawall:event");
    assert_eq!(hec_events[0]["host"], "node-1");
    assert!(hec_events[0]["time"].as_f64().unwrap() > 1.7e9);
    assert_eq!(hec_events[3]["event"]["seq"], 4);
    assert_eq!(hec_events[3]["event"]["collector"]["agent"], "trial-agent");

    // Webhook: all events, with the configured Authorization header.
    wait_until(Duration::from_secs(20), "webhook", || {
        !hook.lock().unwrap().is_empty()
    })
    .await;
    let hook_events: Vec<serde_json::Value> = hook
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(auth, body)| {
            assert_eq!(auth, "Bearer hook-token");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["events"].as_array().unwrap().clone()
        })
        .collect();
    assert_eq!(
        hook_events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    // Slack: only high and critical.
    wait_until(Duration::from_secs(20), "slack", || {
        slack.lock().unwrap().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts: Vec<String> = slack
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("[high]") && texts[0].contains("blocked exec #2"),
        "{texts:?}"
    );
    assert!(texts[1].contains("[critical]"), "{texts:?}");

    // A receiver that refuses the token gets nothing accepted, and the collector keeps retrying
    // rather than moving its cursor.
    assert!(bad_hec.lock().unwrap().is_empty());
    let cursor =
        std::fs::read_to_string(data.join("sinks/splunk-wrong-token.cursor")).unwrap_or_default();
    assert!(
        cursor.trim().is_empty() || cursor.trim() == "0",
        "cursor moved: {cursor}"
    );
    let good = std::fs::read_to_string(data.join("sinks/splunk.cursor")).unwrap();
    assert_eq!(good.trim(), "4");
    d.shutdown().await;
    drop(collector);
}
