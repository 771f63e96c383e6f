//! Issue 5: the container image from deploy/Dockerfile (FROM scratch, static musl seawall)
//! runs the agent as a privileged container, and that agent blocks a drift exec in another
//! container.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use seawall_integration::*;

/// The capabilities deploy/docker-run.sh grants (the agent's whole set; `--privileged` also works
/// where the host's bounding set has every capability, which this VM's lacks CAP_SYS_RESOURCE).
const CAPS: &[&str] = &[
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "KILL",
];

fn musl_bin() -> PathBuf {
    std::env::var_os("SEAWALL_MUSL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/x86_64-unknown-linux-musl/release/seawall")
        })
}

struct Cleanup {
    container: String,
    image: String,
    bpffs: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["stop", "-t", "10", &self.container]);
        quiet(&["rm", "-f", &self.container]);
        quiet(&["rmi", "-f", &self.image]);
        let _ = Command::new(agent_bin())
            .args(["uninstall", "--bpffs", &self.bpffs])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn the_agent_image_runs_privileged_and_blocks_drift_in_another_container() {
    if !privileged() {
        return;
    }
    let bin = musl_bin();
    if !bin.exists() {
        let why = format!("{} not built (cargo xtask test builds it)", bin.display());
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("SKIP: {why}");
        return;
    }
    let tag = unique_name("deploy");
    let image = format!("seawall-agent-test:{tag}");
    let bpffs = format!("/sys/fs/bpf/seawall-test-{tag}");
    let guard = Cleanup {
        container: tag.clone(),
        image: image.clone(),
        bpffs: bpffs.clone(),
    };

    // Build context: the Dockerfile and the one binary it copies (no registry, no target/ upload).
    let ctx = tempfile::tempdir().unwrap();
    let dest = ctx.path().join("target/x86_64-unknown-linux-musl/release");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(&bin, dest.join("seawall")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile"),
        ctx.path().join("Dockerfile"),
    )
    .unwrap();
    let build = Command::new("docker")
        .args(["build", "-q", "-t", &image])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "docker build: {}",
        text(&build.stderr)
    );

    let etc = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(etc.path().join("profiles")).unwrap();
    std::fs::write(etc.path().join("profiles/default.toml"), DEFAULT_PROFILE).unwrap();
    std::fs::write(
        etc.path().join("profiles/busybox.toml"),
        test_profile("busybox", "enforce", "[drift]\nprevent = true\n"),
    )
    .unwrap();
    std::fs::write(
        etc.path().join("agent.toml"),
        format!(
            "profiles = \"/etc/seawall/profiles\"\noutput = \"/out/events.jsonl\"\napi_socket = \"/out/agent.sock\"\nbpffs = \"{bpffs}\"\n"
        ),
    )
    .unwrap();
    // The documented `docker run` (deploy/docker-run.sh), with this test's config and output.
    let run = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &tag,
            "--pid=host",
            "--cgroupns=host",
            "--network=host",
        ])
        .args(CAPS.iter().flat_map(|c| ["--cap-add", c]))
        .args([
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
        ])
        .args([
            "-v",
            "/sys/fs/bpf:/sys/fs/bpf",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup",
            "-v",
            "/sys/kernel:/sys/kernel:ro",
        ])
        .args([
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            "/var/lib/docker:/var/lib/docker:ro,rslave",
        ])
        .arg("-v")
        .arg(format!("{}:/etc/seawall:ro", etc.path().display()))
        .arg("-v")
        .arg(format!("{}:/out", out.path().display()))
        .args([&image, "agent", "--config", "/etc/seawall/agent.toml"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "docker run of the agent: {}",
        text(&run.stderr)
    );

    let events = out.path().join("events.jsonl");
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let start = Instant::now();
    while !read().iter().any(|e| {
        e["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("agent started")
    }) {
        if start.elapsed() > Duration::from_secs(60) {
            let logs = Command::new("docker")
                .args(["logs", &tag])
                .output()
                .unwrap();
            panic!(
                "the agent container did not start: {}{}",
                text(&logs.stdout),
                text(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let (c, out_run) = run_sh(
        "deploy-victim",
        "none",
        "cp /bin/busybox /tmp/x && /tmp/x true",
    );
    assert_eq!(
        out_run.status.code(),
        Some(137),
        "drift must be killed: {}",
        text(&out_run.stderr)
    );
    let id = c.id();
    let start = Instant::now();
    loop {
        if read().iter().any(|e| {
            e["control"] == "drift"
                && e["action"] == "blocked"
                && e["container"]["id"] == id.as_str()
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no blocked drift event from the containerised agent: {:?}",
            read()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(guard);
}
