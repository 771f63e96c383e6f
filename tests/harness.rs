//! Harness for the privileged integration tests: starts the real `seawall agent` on its own
//! profiles directory and output file, runs real containers from `seawall-test/busybox:latest`,
//! and waits (bounded) for the events the agent writes. Everything it starts it stops by pid or
//! by name: containers carry unique names and are removed on drop.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

pub const IMAGE: &str = "seawall-test/busybox:latest";

/// The agent binary (`SEAWALL_BIN`, set by `cargo xtask test`, or the workspace's debug build).
pub fn agent_bin() -> PathBuf {
    std::env::var_os("SEAWALL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/seawall"))
}

/// Whether this machine can run the privileged tests. When it cannot, says `SKIP: <why>`
/// loudly; on CI (`CI=true`) a missing capability is a failure, never a silent pass.
pub fn privileged() -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not root".to_string())
    } else if !agent_bin().exists() {
        Some(format!(
            "{} not built (run cargo xtask test)",
            agent_bin().display()
        ))
    } else if !Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        Some(format!(
            "no Docker daemon or no {IMAGE} (run cargo xtask setup)"
        ))
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("privileged test cannot run on CI: {why}");
            }
            eprintln!("SKIP: {why}");
            false
        }
    }
}

/// A running agent. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    child: Child,
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    pub profiles: PathBuf,
    pub api: PathBuf,
    /// This test's own bpffs directory (removed with `seawall uninstall` on drop).
    pub bpffs: PathBuf,
    /// This test's own state directory (learned behaviour, promotion clocks), shared with a
    /// restarted agent and removed when the last of them goes; never the host's.
    state: Arc<tempfile::TempDir>,
    extra: Vec<String>,
    stopped: bool,
}

/// A profile matching the test image, with `body` after its `[profile]` table.
pub fn test_profile(name: &str, mode: &str, body: &str) -> String {
    format!("[profile]\nname = \"{name}\"\nimages = [\"seawall-test/busybox*\"]\nmode = \"{mode}\"\n\n{body}\n")
}

pub const DEFAULT_PROFILE: &str =
    "[profile]\nname = \"default\"\nmode = \"audit\"\n[drift]\nprevent = true\n";

impl Agent {
    /// Starts the agent with these profile files (name → TOML) and extra flags; returns once it
    /// has reported that it started.
    pub fn start(profiles: &[(&str, &str)], extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let pdir = dir.path().join("profiles");
        std::fs::create_dir(&pdir).unwrap();
        for (name, text) in profiles {
            std::fs::write(pdir.join(name), text).unwrap();
        }
        let events = dir.path().join("events.jsonl");
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/seawall-test-{}", unique_name("bpf")));
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let state = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::spawn(dir, pdir, events, bpffs, state, extra)
    }

    /// A new agent on the same profiles, output file and bpffs directory as `old` (which must
    /// have been stopped or killed), e.g. to test a restart.
    pub fn restart_after(old: &Agent) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn(
            dir,
            old.profiles.clone(),
            old.events.clone(),
            old.bpffs.clone(),
            old.state.clone(),
            old.extra.clone(),
        )
    }

    /// The agent's state directory (`--state-dir`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    fn spawn(
        dir: tempfile::TempDir,
        pdir: PathBuf,
        events: PathBuf,
        bpffs: PathBuf,
        state: Arc<tempfile::TempDir>,
        extra: Vec<String>,
    ) -> Agent {
        let api = dir.path().join("agent.sock");
        let stderr = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let already = std::fs::read_to_string(&events)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let child = Command::new(agent_bin())
            .arg("agent")
            .arg("--profiles")
            .arg(&pdir)
            .arg("--output")
            .arg(&events)
            .arg("--api-socket")
            .arg(&api)
            .arg("--bpffs")
            .arg(&bpffs)
            .arg("--state-dir")
            .arg(state.path())
            .args(&extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start seawall agent");
        let agent = Agent {
            child,
            dir,
            events,
            profiles: pdir,
            api,
            bpffs,
            state,
            extra,
            stopped: false,
        };
        let started = |e: &Value| {
            e["kind"] == "agent"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("agent started")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if agent.events().iter().skip(already).any(started) {
                break;
            }
            if Instant::now() > deadline {
                panic!("the agent did not start; its log:\n{}", agent.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    /// Waits at most `timeout` for the agent to exit on its own; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would: nothing is cleaned up by the agent itself.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// SIGTERM and wait (10 s at most, then SIGKILL): the agent shuts down as a service
    /// manager would stop it, saving its state; its pins stay for `restart_after`.
    pub fn stop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stopped = true;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        let Ok(f) = std::fs::File::open(&self.events) else {
            return Vec::new();
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// The first event matching `pred`, waiting at most `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(&pred) {
                return Some(e);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Like `wait_for`, but panics with the events seen and the agent's log.
    pub fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(Duration::from_secs(15), pred)
            .unwrap_or_else(|| {
                let seen: Vec<String> = self.events().iter().map(|e| e.to_string()).collect();
                panic!(
                    "no event: {what}\nevents:\n{}\nagent log:\n{}",
                    seen.join("\n"),
                    self.log()
                )
            })
    }

    /// Asks the agent to reload its profiles.
    pub fn sighup(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.stopped {
            let pid = self.child.id() as i32;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever this test pinned goes with it.
        let _ = Command::new(agent_bin())
            .arg("uninstall")
            .arg("--bpffs")
            .arg(&self.bpffs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique container name for this test process.
pub fn unique_name(tag: &str) -> String {
    format!(
        "sw-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A container this test created; removed (by name) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    pub fn id(&self) -> String {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.Id}}", &self.name])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `docker run [-d]` of `sh -c script` in a uniquely named container (removed on drop).
fn docker_run_sh(tag: &str, network: &str, script: &str, detach: bool) -> (Container, Output) {
    let name = unique_name(tag);
    let mut cmd = Command::new("docker");
    cmd.arg("run");
    if detach {
        cmd.arg("-d");
    }
    let out = cmd
        .args([
            "--name",
            &name,
            "--network",
            network,
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("docker run");
    (Container { name }, out)
}

/// `docker run` (foreground, not removed so its id stays inspectable) of `sh -c script`.
pub fn run_sh(tag: &str, network: &str, script: &str) -> (Container, Output) {
    docker_run_sh(tag, network, script, false)
}

/// `docker run -d` of `sh -c script`.
pub fn start_sh(tag: &str, network: &str, script: &str) -> Container {
    let (c, out) = docker_run_sh(tag, network, script, true);
    assert!(
        out.status.success(),
        "docker run -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether an event's `process.args` contains `needle`.
pub fn args_contain(e: &Value, needle: &str) -> bool {
    e["process"]["args"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x.as_str().is_some_and(|s| s.contains(needle)))
    })
}

/// Accepts one connection on `listener` in the background, reads one line (5 s at most) and
/// closes it, so a client like `nc` that waits for the peer to hang up can finish.
pub fn serve_once(listener: std::net::TcpListener) -> std::thread::JoinHandle<Option<String>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(false).ok()?;
        let (s, _) = listener.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line)
    })
}

/// A free loopback TCP port (nobody listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a connection arrives on `listener` within `wait`.
pub fn got_connection(listener: &std::net::TcpListener, wait: Duration) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    let start = Instant::now();
    while start.elapsed() < wait {
        if listener.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[path = "harness_engine.rs"]
pub mod engine;

#[path = "harness_containerd.rs"]
pub mod containerd;

#[path = "harness_podman.rs"]
pub mod podman;
