//! `cargo xtask bench [--quick|--smoke] [--only loops|servers|profile] [--no-profile]`: what Seawall
//! costs, measured against no agent and against the alternatives (Linux audit, an empty
//! bpftrace) in one run, configurations alternating round by round so machine drift cancels
//! out: synthetic loops in a container and on the host, and real servers (nginx, Redis,
//! PostgreSQL from Debian) under the profiles we ship. Writes `bench/results/<date>.md`,
//! regenerates the README's overhead table from it, and prints it. Nothing here is an
//! assertion: the targets are reported, met or not.

mod agent_stats;
mod configs;
mod images;
mod leftovers;
mod loadgen;
pub mod micro;
mod noise;
mod plan;
mod profile_report;
mod profiling;
mod readme;
mod report;
mod server_report;
mod servers;
mod targets;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use configs::{bench_profiles, Agent, Auditd, Bpftrace, Config, BENCH_IMAGE};
use plan::parse_args;
pub use plan::{Plan, RunKind};

use crate::{cargo, root, run, setup::TEST_IMAGE};

/// Packages the bench runs: the peers it compares against, the image builder, the load
/// generators and the profilers. Installed when missing, so no column reads "not installed".
/// (`debootstrap` only recommends the keyring it checks bookworm's Release file with, and
/// setup installs without recommends; an Ubuntu host has no Debian keyring of its own.)
const BENCH_PACKAGES: &[&str] = &[
    "auditd",
    "bpftrace",
    "debootstrap",
    "debian-archive-keyring",
    "wrk",
    "redis-tools",
    "linux-perf",
    "strace",
    "valgrind",
];

/// The lock every run that loads BPF programs or starts containers holds on a shared host.
const HOST_LOCK: &str = "/tmp/seawall-host.lock";

/// The workloads, each the same command in the container and on the host.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Workload {
    Open,
    Exec,
    Tcp,
    Mixed,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Open,
        Workload::Exec,
        Workload::Tcp,
        Workload::Mixed,
    ];

    pub fn label(self, plan: &Plan) -> String {
        match self {
            Workload::Open => format!("open/close ×{}", plan.open_n),
            Workload::Exec => format!("fork+exec /bin/true ×{}", plan.exec_n),
            Workload::Tcp => format!("TCP connect/accept ×{}", plan.tcp_n),
            Workload::Mixed => format!("tar x + md5sum of a source tree ×{}", plan.mixed_n),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Side {
    Container,
    Host,
}

/// A `swload serve` process: in the container (through `docker run -i`) or on the host.
struct Load {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    container: Option<String>,
    /// Paths as this side sees them: the workload directory and a scratch directory.
    bench_dir: String,
    scratch: String,
}

impl Load {
    fn container(name: &str) -> Result<Load> {
        let mut child = Command::new("docker")
            .args([
                "run",
                "-i",
                "--rm",
                "--name",
                name,
                "--network",
                "host",
                BENCH_IMAGE,
                "/bench/swload",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("docker run")?;
        Ok(Load {
            stdin: child.stdin.take().expect("piped"),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
            container: Some(name.to_string()),
            bench_dir: "/bench".into(),
            scratch: "/tmp/mixed".into(),
        })
    }

    fn host(bin: &Path, dir: &Path) -> Result<Load> {
        let mut child = Command::new(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Load {
            stdin: child.stdin.take().expect("piped"),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
            container: None,
            bench_dir: dir.display().to_string(),
            scratch: dir.join("mixed").display().to_string(),
        })
    }

    /// Sends one command; returns the nanoseconds it took (measured by swload) and any extra
    /// words of the answer.
    fn call(&mut self, cmd: &str) -> Result<(u64, Vec<u64>)> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ok") => {
                let ns = words
                    .next()
                    .context("swload answered ok without a time")?
                    .parse()?;
                Ok((ns, words.filter_map(|w| w.parse().ok()).collect()))
            }
            Some("err") => bail!("swload {cmd:?} failed: {}", line.trim()),
            _ => bail!("swload {cmd:?}: no answer (it exited?)"),
        }
    }

    fn command(&self, w: Workload, plan: &Plan, scale: u64) -> String {
        let n = |base: u64| (base / scale).max(1);
        match w {
            Workload::Open => format!("open {} /etc/passwd", n(plan.open_n)),
            Workload::Exec => format!("exec {} /bin/true", n(plan.exec_n)),
            Workload::Tcp => format!("tcp {} {}", n(plan.tcp_n), free_port()),
            Workload::Mixed => format!(
                "sh {} {b}/mixed.sh {b}/src.tar {}",
                n(plan.mixed_n),
                self.scratch,
                b = self.bench_dir
            ),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(name) = &self.container {
            let _ = Command::new("docker")
                .args(["rm", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (on loopback; the workload binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(39_000)
}

static mut NAME_COUNTER: u32 = 0;

/// A unique container name for this bench process.
pub fn unique_name(tag: &str) -> String {
    // SAFETY: the bench is single-threaded where it names containers.
    let n = unsafe {
        NAME_COUNTER += 1;
        NAME_COUNTER
    };
    format!("sw-bench-{tag}-{}-{n}", std::process::id())
}

/// What is beside the workload while a configuration is measured.
enum Running {
    Nothing,
    Agent(Agent),
    /// auditd or bpftrace: only its drop (which undoes it) matters.
    Held {
        _guard: Box<dyn std::any::Any>,
    },
}

struct Env {
    plan: Plan,
    agent_bin: PathBuf,
    swload: PathBuf,
    work: PathBuf,
    host_dir: PathBuf,
}

impl Env {
    fn start(&self, c: Config) -> Result<Running> {
        Ok(match c {
            Config::NoAgent => Running::Nothing,
            Config::SeawallAudit => Running::Agent(Agent::start(
                &self.agent_bin,
                &self.work.join("agent"),
                &bench_profiles("audit"),
                None,
                None,
            )?),
            Config::SeawallEnforce => Running::Agent(Agent::start(
                &self.agent_bin,
                &self.work.join("agent"),
                &bench_profiles("enforce"),
                None,
                None,
            )?),
            Config::SeawallEnforceHooks => {
                let agent = Agent::start_with(
                    &self.agent_bin,
                    &self.work.join("agent"),
                    &bench_profiles("enforce"),
                    None,
                    None,
                    &["--fallback-syscall-hooks"],
                )?;
                // Where BPF LSM is the backend the hooks are never loaded: nothing to measure.
                if !agent.log().contains("fallback syscall hooks attached") {
                    bail!("the syscall hooks were not attached (BPF LSM backend, or refused: see the agent log)");
                }
                Running::Agent(agent)
            }
            Config::Auditd => Running::Held {
                _guard: Box::new(Auditd::start(&self.work.join("auditd"))?),
            },
            Config::Bpftrace => Running::Held {
                _guard: Box::new(Bpftrace::start()?),
            },
        })
    }
}

/// Times per (configuration, side, workload): one per round, in nanoseconds.
pub type Times = BTreeMap<(usize, Side, Workload), Vec<u64>>;

/// Results of the whole run, for the report. A part that was not run or failed holds why.
pub struct Results {
    pub times: Times,
    pub unavailable: BTreeMap<usize, String>,
    /// Events the agent reported as blocked or audited during the workloads (should be none).
    pub violations: Vec<String>,
    pub throughput: Result<agent_stats::Throughput, String>,
    pub cpu: Result<agent_stats::Cpu, String>,
    pub rss: Result<Vec<(usize, u64)>, String>,
    pub criterion: Result<Vec<(String, f64)>, String>,
    pub servers: Result<servers::ServerResults, String>,
    pub profile: Result<profiling::Profile, String>,
    /// The same loops under seawall-micro, with no agent.
    pub micro: Result<Vec<micro::Row>, String>,
    pub noise: noise::Noise,
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether one of this process's ancestors holds `file`'s flock (`flock /tmp/seawall-host.lock
/// cargo xtask bench`, as the shared-host rules write it): then waiting for it would wait forever.
fn held_by_ancestor(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let dev = meta.dev();
    // glibc's gnu_dev_major / gnu_dev_minor, as /proc/locks prints them (hex).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let key = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let holders: Vec<u32> = locks
        .lines()
        .filter(|l| l.contains("FLOCK") && l.split_whitespace().any(|w| w == key))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .collect();
    let mut pid = std::process::id();
    while let Some(parent) = parent_of(pid).filter(|&p| p > 1) {
        if holders.contains(&parent) {
            return true;
        }
        pid = parent;
    }
    false
}

/// Holds the host lock (see the repository's rules for shared hosts) until dropped; `None`
/// when an ancestor already holds it for us.
fn host_lock() -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(HOST_LOCK)
        .with_context(|| format!("opening {HOST_LOCK}"))?;
    if held_by_ancestor(&file) {
        return Ok(None);
    }
    if file.try_lock().is_err() {
        eprintln!("xtask bench: waiting for {HOST_LOCK} (another agent or privileged test runs)");
        file.lock()
            .with_context(|| format!("locking {HOST_LOCK}"))?;
    }
    Ok(Some(file))
}

/// The server images, which the learn tests use too (one debootstrap, cached), and the host's
/// Redis client the Redis test loads them with.
pub fn server_images() -> Result<()> {
    crate::setup::ensure_packages(&["debootstrap", "debian-archive-keyring", "redis-tools"])?;
    images::ensure_all()
}

pub fn bench(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("--readme") {
        return readme::regenerate(args.get(1).map(Path::new));
    }
    let plan = parse_args(args)?;
    crate::setup::setup()?;
    crate::setup::ensure_packages(BENCH_PACKAGES)?;
    // Everything that compiles or downloads happens before the host lock is taken.
    run(cargo().args(["build", "--release", "-p", "seawall", "--bin", "seawall"]))?;
    if plan.loops {
        agent_stats::build_criterion()?;
        crate::micro_binaries()?;
    }
    let swload = build_workload()?;
    let work = std::env::temp_dir().join(format!("seawall-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let host_dir = work.join("host");
    std::fs::create_dir_all(&host_dir)?;
    build_image(&swload, &host_dir)?;
    if plan.servers || plan.profile {
        // The profile runs nginx too.
        images::ensure_all()?;
    }
    let env = Env {
        plan,
        agent_bin: root().join("target/release/seawall"),
        swload,
        work: work.clone(),
        host_dir,
    };
    let lock = host_lock()?;
    leftovers::remove(&env.agent_bin);
    let result = measure(&env);
    drop(lock);
    let _ = std::fs::remove_dir_all(&work);
    let mut results = result?;
    if env.plan.loops {
        eprintln!("xtask bench: criterion micro-benchmarks (decode → enrich → serialize)");
        results.criterion =
            agent_stats::criterion(env.plan.quick).map_err(|e| brief("criterion", e));
    }
    let md = report::markdown(&env.plan, &results, args)?;
    println!("{md}");
    let (dir, suffix) = match env.plan.kind {
        RunKind::Full => ("bench/results", ""),
        RunKind::Quick => ("bench/results", "-quick"),
        // Smoke numbers mean nothing: they stay out of the repository.
        RunKind::Smoke => ("bench/tmp", "-smoke"),
    };
    let dir = root().join(dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{}{suffix}.md", report::today()));
    std::fs::write(&file, &md)?;
    eprintln!("xtask bench: wrote {}", file.display());
    if env.plan.kind == RunKind::Full && env.plan.loops && env.plan.servers {
        readme::regenerate(Some(&file))?;
    }
    Ok(())
}

/// A table cell holds the first line of an error; the whole error goes to stderr.
fn brief(what: &str, e: anyhow::Error) -> String {
    eprintln!("xtask bench: {what} failed: {e:#}");
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn measure(env: &Env) -> Result<Results> {
    let mut noise = noise::Noise::start();
    fn not_run<T>(why: &str) -> Result<T, String> {
        Err(why.to_string())
    }
    let mut results = Results {
        times: Times::new(),
        unavailable: BTreeMap::new(),
        violations: Vec::new(),
        throughput: not_run("not run (--only)"),
        cpu: not_run("not run (--only)"),
        rss: not_run("not run (--only)"),
        criterion: not_run("not run (--only)"),
        servers: not_run("not run (--only)"),
        profile: not_run("not run (--no-profile)"),
        micro: not_run("not run (--only)"),
        noise: noise::Noise::default(),
    };
    if env.plan.loops {
        measure_loops(env, &mut results, &mut noise)?;
        eprintln!("xtask bench: event throughput, agent CPU and RSS");
        results.throughput = agent_stats::throughput(env).map_err(|e| brief("throughput", e));
        results.cpu = agent_stats::cpu(env).map_err(|e| brief("agent CPU", e));
        results.rss = agent_stats::rss(env).map_err(|e| brief("agent RSS", e));
        eprintln!("xtask bench: the loops under seawall-micro (no agent)");
        let micro_bin = root().join("target/x86_64-unknown-linux-musl/release/seawall-micro");
        let profile = configs::bench_profile("enforce");
        results.micro = micro::measure(&micro::Setup {
            micro_bin: &micro_bin,
            image: configs::BENCH_IMAGE,
            swload: "/bench/swload",
            profile: &profile,
            rounds: env.plan.rounds,
            open_n: env.plan.open_n,
            exec_n: env.plan.exec_n,
            tcp_n: env.plan.tcp_n,
        })
        .map_err(|e| brief("seawall-micro", e));
    }
    if env.plan.servers {
        results.servers = servers::measure(env, &mut noise).map_err(|e| brief("servers", e));
    }
    if env.plan.profile {
        eprintln!("xtask bench: profiling the agent (perf)");
        results.profile = profiling::profile(env).map_err(|e| brief("profile", e));
    }
    results.noise = noise.finish();
    Ok(results)
}

fn measure_loops(env: &Env, results: &mut Results, noise: &mut noise::Noise) -> Result<()> {
    let plan = &env.plan;
    let times = &mut results.times;
    let unavailable = &mut results.unavailable;
    let violations = &mut results.violations;
    for round in 0..plan.rounds {
        noise.sample();
        for (ci, &c) in Config::ALL.iter().enumerate() {
            if unavailable.contains_key(&ci) {
                continue;
            }
            eprintln!(
                "xtask bench: round {}/{}: {}",
                round + 1,
                plan.rounds,
                c.label()
            );
            let running = match env.start(c) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        c,
                        Config::Auditd | Config::Bpftrace | Config::SeawallEnforceHooks
                    ) =>
                {
                    eprintln!("xtask bench: {} n/a: {e:#}", c.label());
                    unavailable.insert(ci, format!("{e:#}"));
                    continue;
                }
                Err(e) => return Err(e.context(format!("starting {}", c.label()))),
            };
            let name = unique_name("load");
            let mut ctr = Load::container(&name)?;
            if let Running::Agent(a) = &running {
                a.wait_monitoring(&name, "bench")?;
            }
            let mut host = Load::host(&env.swload, &env.host_dir)?;
            for load in [&mut ctr, &mut host] {
                // Warm-up: page cache, dentries, and the agent's per-inode allow cache.
                for w in Workload::ALL {
                    load.call(&load.command(w, plan, 20))?;
                }
            }
            for (side, load) in [(Side::Container, &mut ctr), (Side::Host, &mut host)] {
                for w in Workload::ALL {
                    let (ns, _) = load.call(&load.command(w, plan, 1))?;
                    times.entry((ci, side, w)).or_default().push(ns);
                }
            }
            drop(ctr);
            drop(host);
            if let Running::Agent(a) = &running {
                for line in a.events().lines() {
                    // Only our container: the agent sees every container on the host, and other
                    // people's containers get the default (audit) profile.
                    if !line.contains(&format!("\"name\":\"{name}\"")) {
                        continue;
                    }
                    if line.contains("\"action\":\"blocked\"")
                        || line.contains("\"action\":\"audited\"")
                    {
                        violations.push(format!("{}: {line}", c.label()));
                    }
                }
            }
            drop(running);
        }
    }
    Ok(())
}

/// Builds `bench/workload` (swload) statically for musl, so the same file runs in the busybox
/// image and on the host.
fn build_workload() -> Result<PathBuf> {
    let target_dir = root().join("target/bench-workload");
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "--manifest-path",
        ])
        .arg(root().join("bench/workload/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir))?;
    Ok(target_dir.join("x86_64-unknown-linux-musl/release/swload"))
}

/// `seawall-test/bench:latest`: the test image plus /bench (swload, mixed.sh and a tarball of
/// this repository's tracked files), committed as an image layer so executing swload is not
/// drift. The host copy of the same files goes to `host_dir`.
fn build_image(swload: &Path, host_dir: &Path) -> Result<()> {
    std::fs::copy(swload, host_dir.join("swload"))?;
    std::fs::copy(root().join("bench/mixed.sh"), host_dir.join("mixed.sh"))?;
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .context("git ls-files")?;
    let mut tar = Command::new("tar")
        .arg("cf")
        .arg(host_dir.join("src.tar"))
        .args(["--null", "-T", "-"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .spawn()
        .context("tar")?;
    tar.stdin.take().expect("piped").write_all(&files.stdout)?;
    if !tar.wait()?.success() {
        bail!("tar of the repository's files failed");
    }
    let name = unique_name("image");
    run(Command::new("docker").args(["create", "--name", &name, TEST_IMAGE, "/bin/true"]))?;
    let result = (|| {
        run(Command::new("docker")
            .arg("cp")
            .arg(host_dir)
            .arg(format!("{name}:/bench")))?;
        run(Command::new("docker").args(["commit", &name, BENCH_IMAGE]))
    })();
    let _ = Command::new("docker")
        .args(["rm", "-f", &name])
        .stdout(Stdio::null())
        .status();
    result
}
