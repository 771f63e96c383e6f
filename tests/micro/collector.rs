//! `--collector`: seawall-micro streams its events to a real `seawall-collector` through the
//! agent's spool and acknowledged protocol, with `container.runtime: "micro"`, while the same
//! events still go to `--output`.

use std::{
    io::{BufRead as _, BufReader},
    process::Child,
    time::Instant,
};

use super::*;

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events_reach_the_collector_with_the_micro_runtime() {
    if !ready() {
        return;
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/seawall-collector");
    if !bin.exists() {
        let why = format!("{} not built (cargo xtask test builds it)", bin.display());
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{why}");
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("sink.jsonl");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
            sink.display()
        ),
    )
    .unwrap();
    // Plain text on loopback; the mTLS path is the delivery crate's and the collector's tests.
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--insecure", "--data"])
        .arg(dir.path().join("data"))
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
    let _collector = Collector(child);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();

    // The tree's own egress stays denied (only 127.0.0.2 is allowed): the supervisor's
    // connection to the collector is not the tree's.
    let url = format!("http://{addr}");
    let r = run_with(
        &enforce_profile("\"127.0.0.2\""),
        "host",
        &["-e", "SEAWALL_CONTAINER_NAME=micro-collector-test"],
        &[
            "--collector",
            &url,
            "--collector-insecure",
            "--spool-dir",
            "/out/spool",
        ],
        // Long enough for the sender to connect and be acknowledged before the tree ends.
        "cp /bin/busybox /tmp/copy; /tmp/copy true; echo copy=$?; sleep 3",
    );
    r.assert_out("copy=126");
    let local = r.event("the drift block, locally", |e| {
        is(e, "exec", "drift", "blocked") && e["process"]["exe"] == "/tmp/copy"
    });
    let seq = local["seq"].clone();
    let start = Instant::now();
    loop {
        let sunk = std::fs::read_to_string(&sink).unwrap_or_default();
        let found = sunk
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| is(e, "exec", "drift", "blocked") && e["process"]["exe"] == "/tmp/copy");
        if let Some(e) = found {
            assert_eq!(e["seq"], seq, "the same seq at the sink: {e}");
            assert_eq!(e["container"]["runtime"], "micro", "{e}");
            assert_eq!(e["container"]["name"], "micro-collector-test", "{e}");
            assert_eq!(e["message"], local["message"], "{e}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the drift event never reached the collector's sink:\n{sunk}\nlocal events: {:?}\nstderr: {}",
            r.events,
            text(&r.out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
