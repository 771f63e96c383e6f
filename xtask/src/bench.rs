//! `cargo xtask bench [--quick]`: what Seawall costs, measured against no agent and against the
//! alternatives (Linux audit, an empty bpftrace) in one run, configurations alternating round by
//! round so machine drift cancels out. Writes `bench/results/<date>.md` and prints the table.
//! Nothing here is an assertion: the targets are reported, met or not.

mod agent_stats;
mod configs;
mod report;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use configs::{Agent, Auditd, Bpftrace, Config, BENCH_IMAGE};

use crate::{cargo, root, run, setup::TEST_IMAGE};

/// How long and how often; `--quick` is for development, the default for the published table.
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub open_n: u64,
    pub exec_n: u64,
    pub tcp_n: u64,
    pub mixed_n: u64,
    pub rate_secs: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 3,
                open_n: 50_000,
                exec_n: 200,
                tcp_n: 1_000,
                mixed_n: 3,
                rate_secs: 10,
            }
        } else {
            Plan {
                quick,
                rounds: 7,
                open_n: 200_000,
                exec_n: 1_000,
                tcp_n: 5_000,
                mixed_n: 10,
                rate_secs: 60,
            }
        }
    }
}

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
                "audit",
                None,
                None,
            )?),
            Config::SeawallEnforce => Running::Agent(Agent::start(
                &self.agent_bin,
                &self.work.join("agent"),
                "enforce",
                None,
                None,
            )?),
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

/// Results of the whole run, for the report.
pub struct Results {
    pub times: Times,
    pub unavailable: BTreeMap<usize, String>,
    /// Events the agent reported as blocked or audited during the workloads (should be none).
    pub violations: Vec<String>,
    pub throughput: Result<agent_stats::Throughput, String>,
    pub cpu: Result<agent_stats::Cpu, String>,
    pub rss: Result<Vec<(usize, u64)>, String>,
    pub criterion: Result<Vec<(String, f64)>, String>,
}

pub fn bench(args: &[String]) -> Result<()> {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            other => bail!("cargo xtask bench [--quick]: unknown argument {other:?}"),
        }
    }
    let plan = Plan::new(quick);
    crate::setup::setup()?;
    run(cargo().args(["build", "--release", "-p", "seawall", "--bin", "seawall"]))?;
    let swload = build_workload()?;
    let work = std::env::temp_dir().join(format!("seawall-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let host_dir = work.join("host");
    std::fs::create_dir_all(&host_dir)?;
    build_image(&swload, &host_dir)?;
    let env = Env {
        plan,
        agent_bin: root().join("target/release/seawall"),
        swload,
        work: work.clone(),
        host_dir,
    };
    let result = measure(&env);
    let _ = std::fs::remove_dir_all(&work);
    let results = result?;
    let md = report::markdown(&env.plan, &results, args)?;
    println!("{md}");
    let dir = root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!(
        "{}{}.md",
        report::today(),
        if quick { "-quick" } else { "" }
    ));
    std::fs::write(&file, &md)?;
    eprintln!("xtask bench: wrote {}", file.display());
    Ok(())
}

fn measure(env: &Env) -> Result<Results> {
    let plan = &env.plan;
    let mut times = Times::new();
    let mut unavailable = BTreeMap::new();
    let mut violations = Vec::new();
    for round in 0..plan.rounds {
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
                Err(e) if matches!(c, Config::Auditd | Config::Bpftrace) => {
                    eprintln!("xtask bench: {} n/a: {e:#}", c.label());
                    unavailable.insert(ci, format!("{e:#}"));
                    continue;
                }
                Err(e) => return Err(e.context(format!("starting {}", c.label()))),
            };
            let name = unique_name("load");
            let mut ctr = Load::container(&name)?;
            if let Running::Agent(a) = &running {
                a.wait_monitoring(&name)?;
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
    eprintln!("xtask bench: event throughput, agent CPU and RSS");
    // A table cell holds the first line of an error; the whole error goes to stderr.
    let brief = |what: &str, e: anyhow::Error| {
        eprintln!("xtask bench: {what} failed: {e:#}");
        format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let throughput = agent_stats::throughput(env).map_err(|e| brief("throughput", e));
    let cpu = agent_stats::cpu(env).map_err(|e| brief("agent CPU", e));
    let rss = agent_stats::rss(env).map_err(|e| brief("agent RSS", e));
    eprintln!("xtask bench: criterion micro-benchmarks (decode → enrich → serialize)");
    let criterion = agent_stats::criterion(plan.quick).map_err(|e| brief("criterion", e));
    Ok(Results {
        times,
        unavailable,
        violations,
        throughput,
        cpu,
        rss,
        criterion,
    })
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
