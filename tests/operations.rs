//! Issue 5: what an operator asks the running agent — `seawall status`, `seawall events` from
//! the local agent, and the Prometheus endpoint.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use seawall_integration::*;

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn status_events_and_metrics_describe_what_the_agent_does() {
    if !privileged() {
        return;
    }
    let port = free_port();
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--metrics", &format!("127.0.0.1:{port}")],
    );
    let c = start_sh(
        "ops",
        "none",
        "while true; do cat /etc/hostname > /dev/null; sleep 0.2; done",
    );
    let id = c.id();
    agent.expect("the container is monitored", |e| {
        e["kind"] == "container" && e["container"]["id"] == id.as_str()
    });

    // seawall status --json: backends and the container with its profile.
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        s["backends"]["exec"].as_str().unwrap().contains("SIGKILL")
            || s["backends"]["exec"].as_str().unwrap().contains("LSM")
    );
    assert!(s["backends"]["network"]
        .as_str()
        .unwrap()
        .contains("cgroup"));
    let row = s["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("container in status");
    assert_eq!(row["profile"], "busybox");
    assert!(row["modes"].as_str().unwrap().contains("drift=enforce"));
    // The human form says the same.
    let human = Command::new(agent_bin())
        .args(["status", "--api-socket"])
        .arg(&agent.api)
        .output()
        .unwrap();
    let h = text(&human.stdout);
    assert!(
        h.contains("backends:") && h.contains(&c.name) && h.contains("profile=busybox"),
        "{h}"
    );

    // seawall events from the local agent: a live table row for this container.
    let mut follower = Command::new(agent_bin())
        .args(["events", "--json", "--container"])
        .arg(&c.name)
        .arg("--api-socket")
        .arg(&agent.api)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(follower.stdout.take().unwrap());
    r.read_line(&mut line).unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    let e: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["container"]["name"], c.name.as_str());

    // Metrics: events by kind/action/control, the backend per control, containers monitored.
    let m = scrape(port);
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.contains("seawall_events_total{kind=\"exec\",action=\"allowed\",control=\"visibility\"}"),
        "{m}"
    );
    assert!(m.contains("seawall_backend_info{control=\"drift\""), "{m}");
    assert!(m.contains("seawall_ringbuf_drops_total 0"), "{m}");
    let containers: f64 = m
        .lines()
        .find(|l| l.starts_with("seawall_containers_monitored "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("seawall_containers_monitored");
    assert!(containers >= 1.0);
}

#[test]
fn the_agent_tells_systemd_it_is_ready_only_once_it_enforces_and_feeds_the_watchdog() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    std::env::set_var("WATCHDOG_USEC", "2000000");
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    std::env::remove_var("NOTIFY_SOCKET");
    std::env::remove_var("WATCHDOG_USEC");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10)
        && got
            .iter()
            .filter(|m: &&String| m.contains("WATCHDOG=1"))
            .count()
            < 2
    {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1 was sent");
    assert!(
        got.iter()
            .skip(ready)
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
            >= 2,
        "watchdog pings after READY: {got:?}"
    );
    // READY came after the agent reported itself started (programs attached, profiles loaded).
    assert!(agent.events().iter().any(|e| e["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("agent started")));
}
