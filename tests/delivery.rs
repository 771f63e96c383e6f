//! Issue 4 end to end: the running agent streams its events to a real `seawall-collector`,
//! which writes them to its file sink.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use seawall_integration::*;

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `seawall-collector` on a loopback port with a file sink: the process, its address and the
/// sink's path.
fn start_collector(dir: &Path) -> (Collector, String, std::path::PathBuf) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/seawall-collector");
    if !bin.exists() {
        panic!(
            "{} not built (cargo xtask test builds the workspace)",
            bin.display()
        );
    }
    let sink = dir.join("sink.jsonl");
    let cfg = dir.join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
            sink.display()
        ),
    )
    .unwrap();
    // A local trial: plain text on loopback (the mTLS path is covered by collector/tests).
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--insecure", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let collector = Collector(child);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    (collector, addr, sink)
}

/// Waits for the container's `cat` exec (local seq `seq`) at the collector's sink.
fn expect_at_sink(sink: &Path, id: &str, seq: u64) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(sink).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e.to_string().contains(id) && e.to_string().contains("\"cat\""));
        if let Some(e) = found {
            assert!(
                e.to_string().contains(&format!("\"seq\":{seq}")),
                "same seq at the sink: {e}"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the event never reached the collector's sink: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `cat` in a container under `agent`; returns the container id and the event's seq.
fn cat_in_a_container(agent: &Agent, name: &str) -> (String, u64) {
    let (c, _) = run_sh(name, "none", "cat /etc/hostname");
    let id = c.id().to_string();
    let local = agent.expect("the exec, locally", |e| {
        e["kind"] == "exec"
            && e["container"]["id"] == id.as_str()
            && e["process"]["args"][0] == "cat"
    });
    (id, local["seq"].as_u64().unwrap())
}

#[test]
fn the_agent_delivers_container_events_to_the_collector_and_its_sink() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_collector, addr, sink) = start_collector(dir.path());
    let spool = dir.path().join("spool");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &[
            "--collector",
            &format!("http://{addr}"),
            "--collector-insecure",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
    );
    let (id, seq) = cat_in_a_container(&agent, "deliver");
    expect_at_sink(&sink, &id, seq);
}

#[test]
fn an_agent_given_two_collectors_moves_on_from_one_that_does_not_answer() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_collector, addr, sink) = start_collector(dir.path());
    // A port nothing listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spool = dir.path().join("spool");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &[
            "--collector",
            &format!("http://{dead}"),
            "--collector",
            &format!("http://{addr}"),
            "--collector-insecure",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
    );
    let (id, seq) = cat_in_a_container(&agent, "failover");
    expect_at_sink(&sink, &id, seq);
}
