//! The configurations a workload runs under, each a guard that undoes itself on drop: the agent
//! stopped by its pid, auditd's rules removed and the auditd we started stopped by its pid,
//! bpftrace stopped by its pid.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// What runs beside the workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Config {
    NoAgent,
    SeawallAudit,
    SeawallEnforce,
    /// Enforce with the fallback's opt-in syscall hooks attached (`--fallback-syscall-hooks`):
    /// their cost is every syscall of every task taking the slow path.
    SeawallEnforceHooks,
    Auditd,
    Bpftrace,
}

impl Config {
    pub const ALL: [Config; 6] = [
        Config::NoAgent,
        Config::SeawallAudit,
        Config::SeawallEnforce,
        Config::SeawallEnforceHooks,
        Config::Auditd,
        Config::Bpftrace,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Config::NoAgent => "no agent",
            Config::SeawallAudit => "seawall audit",
            Config::SeawallEnforce => "seawall enforce",
            Config::SeawallEnforceHooks => "seawall enforce + syscall hooks",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace (empty)",
        }
    }
}

/// Image pattern the bench profile matches; the bench image is derived from the test image.
pub const BENCH_IMAGE: &str = "seawall-test/bench:latest";

/// Every control on, with rules the workloads never break: they exec only `/bin/*` and
/// `/bench/*` from the image, read `/etc/passwd`, connect and listen on 127.0.0.1 only.
pub fn bench_profile(mode: &str) -> String {
    format!(
        r#"[profile]
name = "bench"
images = ["seawall-test/bench*"]
mode = "{mode}"

[drift]
prevent = true

[exec]
allow = ["/bin/*", "/bench/*"]
deny = ["/usr/local/bin/wget"]
block_container_exec = true

[files]
deny = ["/etc/shadow", "**/.ssh/**"]
read_only = ["/etc/**", "/bench/**"]
monitor = ["/etc/*", "/var/log/**"]

[network]
egress_allow = ["127.0.0.0/8"]
egress_deny = ["169.254.169.254"]
listen_allow = ["1024-65535"]
block_raw_sockets = true
"#
    )
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops a child we started: `sig`, then SIGKILL after `grace`.
fn stop_child(child: &mut Child, sig: &str, grace: Duration) {
    kill(child.id(), sig);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Profile files an agent is started with: (file name, TOML text).
pub type ProfileFiles = Vec<(String, String)>;

/// The loops' profile set: the all-controls bench profile in `mode`, and an audit-only default
/// for every other container.
pub fn bench_profiles(mode: &str) -> ProfileFiles {
    vec![
        ("bench.toml".into(), bench_profile(mode)),
        (
            "default.toml".into(),
            "[profile]\nname = \"default\"\nmode = \"audit\"\n[drift]\nprevent = true\n".into(),
        ),
    ]
}

/// A running `seawall agent`, stopped by pid (SIGTERM) on drop, then its bpffs directory
/// removed with `seawall uninstall`.
pub struct Agent {
    child: Child,
    bin: PathBuf,
    pub dir: PathBuf,
    pub events: PathBuf,
    /// This agent's own bpffs directory: its pinned maps are neither another engineer's agent's
    /// nor the previous configuration's, so every configuration starts like a fresh install.
    bpffs: PathBuf,
}

impl Agent {
    /// Starts the agent with `profiles`; returns once it reported it started.
    /// `output` overrides the events file (e.g. `/dev/null` for throughput runs).
    pub fn start(
        bin: &Path,
        dir: &Path,
        profiles: &ProfileFiles,
        metrics: Option<u16>,
        output: Option<&Path>,
    ) -> Result<Agent> {
        Self::start_with(bin, dir, profiles, metrics, output, &[])
    }

    /// [`Agent::start`] with `extra` flags for `seawall agent`.
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        profiles: &ProfileFiles,
        metrics: Option<u16>,
        output: Option<&Path>,
        extra: &[&str],
    ) -> Result<Agent> {
        let _ = std::fs::remove_dir_all(dir);
        let profile_dir = dir.join("profiles");
        std::fs::create_dir_all(&profile_dir)?;
        for (file, text) in profiles {
            std::fs::write(profile_dir.join(file), text)?;
        }
        let events = dir.join("events.jsonl");
        // The "agent started" event goes to the events file, so a throughput run that discards
        // events still needs one to know when the agent is ready: it waits on the log instead.
        let out = output
            .map(Path::to_path_buf)
            .unwrap_or_else(|| events.clone());
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/{}", super::unique_name("agent")));
        let mut c = Command::new(bin);
        c.arg("agent")
            .arg("--profiles")
            .arg(&profile_dir)
            .arg("--output")
            .arg(&out)
            .arg("--api-socket")
            .arg(dir.join("agent.sock"))
            .arg("--bpffs")
            .arg(&bpffs)
            .args(extra)
            .env("RUST_LOG", "warn,seawall=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(port) = metrics {
            c.arg("--metrics").arg(format!("127.0.0.1:{port}"));
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let agent = Agent {
            child,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            events,
            bpffs,
        };
        let start = Instant::now();
        loop {
            if agent.log().contains("seawall agent ready") {
                return Ok(agent);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the agent did not start within 60 s; its log:\n{}",
                    agent.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The events written so far, one JSON line each.
    pub fn events(&self) -> String {
        std::fs::read_to_string(&self.events).unwrap_or_default()
    }

    /// Waits (bounded) until the agent monitors container `name` with profile `profile`.
    pub fn wait_monitoring(&self, name: &str, profile: &str) -> Result<()> {
        let needle = format!("monitoring container {name} (");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(line) = self.events().lines().find(|l| l.contains(&needle)) {
                if !line.contains(&format!("with profile {profile}")) {
                    bail!("container {name} got the wrong profile: {line}");
                }
                return Ok(());
            }
            // When events are discarded (`--output /dev/null`), the log says it too.
            let field = format!("name={name} ");
            let log = strip_ansi(&self.log());
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("monitoring container") && l.contains(&field))
            {
                if !line.contains(&format!("profile={profile}")) {
                    bail!("container {name} got the wrong profile: {line}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the agent did not report monitoring {name} within 20 s; log:\n{}",
            self.log()
        )
    }
}

/// The log without terminal colour codes (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-TERM", Duration::from_secs(10));
        if self.bpffs.exists() {
            let st = Command::new(&self.bin)
                .arg("uninstall")
                .arg("--bpffs")
                .arg(&self.bpffs)
                .stdout(Stdio::null())
                .status();
            if !st.is_ok_and(|s| s.success()) {
                eprintln!(
                    "xtask bench: removing {} failed; remove it with `seawall uninstall --bpffs {0}`",
                    self.bpffs.display()
                );
            }
        }
    }
}

/// Linux audit with rules on the workloads' syscalls. Starts auditd (its own config and log
/// under our temporary directory) when none runs; on drop removes the rules, restores the
/// enabled flag and stops the auditd it started, by pid.
pub struct Auditd {
    child: Option<Child>,
    prev_enabled: String,
    rules_added: bool,
}

const AUDITD_CONF: &str = "\
log_file = LOG
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 200
max_log_file_action = ROTATE
num_logs = 2
space_left = 100
space_left_action = IGNORE
admin_space_left = 50
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
";

fn auditctl(args: &[&str]) -> Result<String> {
    let o = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl (apt-get install auditd)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        bail!("auditctl {}: {}", args.join(" "), text.trim());
    }
    Ok(text)
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

impl Auditd {
    pub fn start(dir: &Path) -> Result<Auditd> {
        let rules = auditctl(&["-l"])?;
        if !rules.contains("No rules") {
            bail!("this host already has audit rules; not touching them (`auditctl -D` would delete them)");
        }
        let status = auditctl(&["-s"])?;
        let mut guard = Auditd {
            child: None,
            prev_enabled: status_field(&status, "enabled "),
            rules_added: false,
        };
        if status_field(&status, "pid ") == "0" {
            std::fs::create_dir_all(dir)?;
            let conf = AUDITD_CONF.replace("LOG", &dir.join("audit.log").display().to_string());
            std::fs::write(dir.join("auditd.conf"), conf)?;
            let log = std::fs::File::create(dir.join("auditd.out"))?;
            let child = Command::new("auditd")
                .arg("-n")
                .arg("-c")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting auditd -n (apt-get install auditd)")?;
            let pid = child.id().to_string();
            guard.child = Some(child);
            let start = Instant::now();
            loop {
                let s = auditctl(&["-s"]).unwrap_or_default();
                if status_field(&s, "pid ") == pid {
                    break;
                }
                if let Some(Ok(Some(st))) = guard.child.as_mut().map(|c| c.try_wait()) {
                    let out = std::fs::read_to_string(dir.join("auditd.out")).unwrap_or_default();
                    bail!("auditd exited ({st}): {}", out.trim());
                }
                if start.elapsed() > Duration::from_secs(10) {
                    bail!("auditd did not register with the kernel within 10 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        auditctl(&["-e", "1"])?;
        guard.rules_added = true;
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "execve",
            "-S",
            "openat",
            "-S",
            "connect",
            "-S",
            "accept",
            "-S",
            "accept4",
        ])?;
        Ok(guard)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        if self.rules_added {
            if let Err(e) = auditctl(&["-D"]) {
                eprintln!("xtask bench: removing audit rules failed: {e}; run `auditctl -D`");
            }
        }
        if !self.prev_enabled.is_empty() {
            let _ = auditctl(&["-e", &self.prev_enabled]);
        }
        if let Some(child) = &mut self.child {
            stop_child(child, "-TERM", Duration::from_secs(10));
        }
    }
}

/// The empty bpftrace programs: the floor an eBPF tool pays on the same hooks.
pub const BPFTRACE_PROGRAM: &str = "tracepoint:sched:sched_process_exec {} \
tracepoint:syscalls:sys_enter_openat {} tracepoint:syscalls:sys_enter_connect {} \
tracepoint:syscalls:sys_enter_accept {} tracepoint:syscalls:sys_enter_accept4 {}";

/// bpftrace attached to the same hooks with empty bodies, stopped by pid (SIGINT) on drop.
pub struct Bpftrace {
    child: Child,
}

impl Bpftrace {
    pub fn start() -> Result<Bpftrace> {
        // bpftrace reads tracepoint formats from tracefs. When the host has none mounted, mount
        // one in a private mount namespace, so the host's mount table is left alone; `unshare`
        // and `sh` exec, so the pid we hold is bpftrace's.
        let script = format!(
            "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || exit 97; exec bpftrace -e '{BPFTRACE_PROGRAM}'"
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace (apt-get install bpftrace)")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut guard = Bpftrace { child };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("Attaching") => {
                // Keep draining stdout so bpftrace never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                Ok(guard)
            }
            other => {
                stop_child(&mut guard.child, "-INT", Duration::from_secs(5));
                let mut err = String::new();
                if let Some(mut e) = guard.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("bpftrace did not attach ({other:?}): {}", err.trim())
            }
        }
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-INT", Duration::from_secs(10));
    }
}
