//! Issue 12 §7 and the unit we ship (`systemd/seawall-collector.service`: `Type=notify`,
//! `WatchdogSec=`, `ExecReload=kill -HUP`), against a stand-in service manager: a datagram
//! socket in a temp dir given to the real collector binary as `NOTIFY_SOCKET`.
//!
//! - `READY=1` once it serves, then `WATCHDOG=1` at half of `WATCHDOG_USEC`;
//! - SIGHUP: `RELOADING=1` (with `MONOTONIC_USEC`), then `READY=1`; the process keeps running
//!   and the new `[[sink]]` tables apply: a new sink starts and catches up, the unchanged one
//!   is left alone (no event twice), a changed one continues from its position;
//! - a reload with a broken file is refused: `READY=1` with a status saying so, the running
//!   sinks keep delivering, the metrics count it;
//! - SIGTERM: `STOPPING=1` and a clean exit.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use seawall_delivery::Delivery;
use seawall_proto::event::Severity;

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    got: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            socket,
            got: Vec::new(),
        }
    }

    /// Waits up to `limit` for a message that `want` accepts, returning it; every message seen
    /// stays in `got`.
    fn wait_for(&mut self, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push(m.clone());
                if want(&m) {
                    return m;
                }
            }
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}; got {:?}",
                self.got
            );
        }
    }

    /// Watchdog pings that arrive within `d`.
    fn pings_during(&mut self, d: Duration) -> usize {
        let start = Instant::now();
        let before = self.got.len();
        let mut buf = [0u8; 4096];
        while start.elapsed() < d {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.got
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.got[before..]
            .iter()
            .filter(|m| *m == "WATCHDOG=1\n")
            .count()
    }
}

fn file_sink(name: &str, path: &Path, min_severity: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"file\"\npath = \"{}\"\nmin_severity = \"{min_severity}\"\n",
        path.display()
    )
}

fn seqs(path: &Path) -> Vec<u64> {
    sink_lines(path)
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect()
}

/// Every event with an even seq is high, the rest low.
fn severity(seq: u64) -> Severity {
    if seq.is_multiple_of(2) {
        Severity::High
    } else {
        Severity::Low
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_a_sighup_reload_that_applies_the_new_sinks() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("notify.sock");
    let mut manager = Manager::bind(&socket);
    let (archive, alerts) = (
        tmp.path().join("archive.jsonl"),
        tmp.path().join("alerts.jsonl"),
    );
    let config = tmp.path().join("collector.toml");
    std::fs::write(&config, file_sink("archive", &archive, "info")).unwrap();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--insecure",
        "--data",
        &tmp.path().join("data").display().to_string(),
        "--config",
        &config.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let socket_path = socket.display().to_string();
    let mut collector = CollectorProcess::start_with_env(
        &args,
        &[
            ("NOTIFY_SOCKET", socket_path.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );

    let ready = manager.wait_for(Duration::from_secs(10), "READY=1", |m| {
        m.starts_with("READY=1")
    });
    assert_eq!(ready, "READY=1\nSTATUS=serving, 1 sinks\n");
    // Half of a 1 s watchdog: about four pings in 2 s (wide bounds for a loaded machine).
    let pings = manager.pings_during(Duration::from_secs(2));
    assert!((2..=8).contains(&pings), "{pings} pings in 2 s");

    let (d, _) = Delivery::start(insecure_agent_config(
        collector.addr,
        &tmp.path().join("spool"),
    ))
    .await
    .unwrap();
    for seq in 1..=40 {
        d.publish(&event(seq, severity(seq))).unwrap();
    }
    wait_acked(&d, 40, Duration::from_secs(20)).await;
    wait_until(Duration::from_secs(10), "40 events archived", || {
        seqs(&archive).len() == 40
    })
    .await;

    // Reload: archive as it was, a new "alerts" sink for high events only.
    std::fs::write(
        &config,
        file_sink("archive", &archive, "info") + &file_sink("alerts", &alerts, "high"),
    )
    .unwrap();
    collector.signal("HUP");
    let reloading = manager.wait_for(Duration::from_secs(10), "RELOADING=1", |m| {
        m.starts_with("RELOADING=1")
    });
    assert!(
        reloading.lines().nth(1).is_some_and(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "{reloading:?}"
    );
    let ready = manager.wait_for(Duration::from_secs(30), "READY=1 after the reload", |m| {
        m.starts_with("READY=1")
    });
    assert_eq!(ready, "READY=1\nSTATUS=serving, 2 sinks\n");
    assert!(collector.is_running(), "SIGHUP must not end the collector");
    // The new sink catches up from the oldest event: the high ones among the first 40.
    let high: Vec<u64> = (1..=40u64).filter(|s| s.is_multiple_of(2)).collect();
    wait_until(Duration::from_secs(10), "alerts caught up", || {
        seqs(&alerts) == high
    })
    .await;

    for seq in 41..=60 {
        d.publish(&event(seq, severity(seq))).unwrap();
    }
    wait_acked(&d, 60, Duration::from_secs(20)).await;
    wait_until(Duration::from_secs(10), "60 events archived", || {
        seqs(&archive).len() == 60
    })
    .await;
    wait_until(Duration::from_secs(10), "30 alerts", || {
        seqs(&alerts).len() == 30
    })
    .await;
    assert_eq!(
        seqs(&archive),
        (1..=60).collect::<Vec<_>>(),
        "every event archived once, in order, across the reloads"
    );

    // A broken file: refused, the sinks stay, the collector keeps running and says so.
    std::fs::write(&config, "[[sink]]\nname = \"x\"\ntype = \"kafka\"\n").unwrap();
    collector.signal("HUP");
    manager.wait_for(Duration::from_secs(10), "RELOADING=1", |m| {
        m.starts_with("RELOADING=1")
    });
    let ready = manager.wait_for(
        Duration::from_secs(10),
        "READY=1 after a refused reload",
        |m| m.starts_with("READY=1"),
    );
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving, 2 sinks; reload refused: ")
            && ready.contains("kafka"),
        "{ready:?}"
    );
    assert!(collector.is_running());
    for seq in 61..=70 {
        d.publish(&event(seq, severity(seq))).unwrap();
    }
    wait_acked(&d, 70, Duration::from_secs(20)).await;
    wait_until(Duration::from_secs(10), "70 archived, 35 alerts", || {
        seqs(&archive).len() == 70 && seqs(&alerts).len() == 35
    })
    .await;
    let metrics = collector.scrape().await;
    assert_eq!(
        sample(&metrics, "seawall_collector_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "seawall_collector_reloads_total{result=\"error\"}"
        ),
        Some(1.0)
    );
    // Still healthy, so still pinging.
    let pings = manager.pings_during(Duration::from_secs(2));
    assert!(pings >= 2, "{pings} pings after the reloads");

    d.shutdown().await;
    collector.signal("TERM");
    manager.wait_for(Duration::from_secs(10), "STOPPING=1", |m| {
        m == "STOPPING=1\n"
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = collector.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the collector did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
