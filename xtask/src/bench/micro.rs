//! What seawall-micro costs the tree it wraps: the exec, open and TCP connect loops of `swload`
//! in one container image, started with and without seawall-micro in front of it, both with the
//! same container flags (no capability, no_new_privs, host network), configurations alternating
//! round by round so drift of the machine cancels out. Each workload is reported as the ratio
//! of its time under seawall-micro to its time without, per round: median [min–max].
//!
//! Self-contained: it only needs an image holding swload (the bench's `seawall-test/bench`),
//! the static seawall-micro binary (`crate::micro_binaries` builds it) and the profile to run,
//! so the numbers are for the same controls the agent is measured with.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The bench's profile (xtask/src/bench/configs.rs) in enforce mode, `images` left out as a
/// micro profile may: every control on, each allowing what the loops do.
pub const DEFAULT_PROFILE: &str = r#"[profile]
name = "bench-micro"
mode = "enforce"

[drift]
prevent = true

[exec]
allow = ["/bin/*", "/bench/*"]
deny = ["/usr/local/bin/wget"]

[files]
deny = ["/etc/shadow", "**/.ssh/**"]
read_only = ["/etc/**", "/bench/**"]
monitor = ["/etc/*", "/var/log/**"]

[network]
egress_allow = ["127.0.0.0/8"]
egress_deny = ["169.254.169.254"]
listen_allow = ["1024-65535"]
block_raw_sockets = true
"#;

/// What to measure and with what.
pub struct Setup<'a> {
    /// The static seawall-micro binary on the host; bind-mounted read-only into the container.
    pub micro_bin: &'a Path,
    /// An image holding swload.
    pub image: &'a str,
    /// swload's path inside the image.
    pub swload: &'a str,
    /// The profile seawall-micro runs.
    pub profile: &'a str,
    pub rounds: usize,
    pub open_n: u64,
    pub exec_n: u64,
    pub tcp_n: u64,
}

/// One workload's result.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    /// Median time of the loop without seawall-micro, in seconds.
    pub without_s: f64,
    /// Per-round ratios (with / without): median, smallest, largest.
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Loop {
    Open,
    Exec,
    Connect,
}

impl Loop {
    const ALL: [Loop; 3] = [Loop::Open, Loop::Exec, Loop::Connect];

    fn label(self, s: &Setup<'_>) -> String {
        match self {
            Loop::Open => format!("open/close /etc/passwd ×{}", s.open_n),
            Loop::Exec => format!("fork+exec /bin/true ×{}", s.exec_n),
            Loop::Connect => format!("TCP connect/accept on 127.0.0.1 ×{}", s.tcp_n),
        }
    }

    /// swload's command for this loop, `1/scale` of the full count (at least 1).
    fn command(self, s: &Setup<'_>, scale: u64) -> Result<String> {
        let n = |full: u64| (full / scale).max(1);
        Ok(match self {
            Loop::Open => format!("open {} /etc/passwd", n(s.open_n)),
            Loop::Exec => format!("exec {} /bin/true", n(s.exec_n)),
            Loop::Connect => {
                // A port nobody listens on now; swload's listener takes it next.
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .context("picking a free port")?
                    .port();
                format!("tcp {} {port}", n(s.tcp_n))
            }
        })
    }
}

/// swload serving commands in a container of its own; removed (by its unique name) on drop.
struct Swload {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Swload {
    fn start(s: &Setup<'_>, micro_dir: Option<&Path>) -> Result<Swload> {
        let name = format!(
            "sw-bench-micro-{}-{}",
            std::process::id(),
            if micro_dir.is_some() {
                "with"
            } else {
                "without"
            }
        );
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-i", "--rm", "--name", &name, "--network", "host"])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]);
        if let Some(dir) = micro_dir {
            cmd.arg("-v")
                .arg(format!("{}:/micro:ro", dir.display()))
                .arg(s.image)
                .args(["/micro/seawall-micro", "--profile", "/micro/profile.toml"])
                .args(["--output", "/dev/null", "--"]);
        } else {
            cmd.arg(s.image);
        }
        let mut child = cmd
            .arg(s.swload)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("docker run")?;
        Ok(Swload {
            stdin: child.stdin.take().expect("piped"),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
            name,
        })
    }

    /// Runs one command; the nanoseconds swload measured for it.
    fn time(&mut self, cmd: &str) -> Result<u64> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ok", ns, ..] => Ok(ns.parse()?),
            _ => bail!("swload {cmd:?} under {}: {:?}", self.name, line.trim()),
        }
    }
}

impl Drop for Swload {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Measures every loop without and with seawall-micro, alternating, `s.rounds` times.
pub fn measure(s: &Setup<'_>) -> Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("seawall-bench-micro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(s.micro_bin, dir.join("seawall-micro"))
        .with_context(|| format!("copying {}", s.micro_bin.display()))?;
    std::fs::write(dir.join("profile.toml"), s.profile)?;
    let result = rounds(s, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let times = result?;
    Ok(Loop::ALL
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let (without, with) = &times[i];
            let mut ratios: Vec<f64> = without
                .iter()
                .zip(with)
                .map(|(a, b)| *b as f64 / *a as f64)
                .collect();
            let mut secs: Vec<f64> = without.iter().map(|&n| n as f64 / 1e9).collect();
            Row {
                workload: l.label(s),
                without_s: median(&mut secs),
                min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                max: ratios.iter().copied().fold(0.0, f64::max),
                median: median(&mut ratios),
            }
        })
        .collect())
}

/// Per loop: (times without, times with), one per round, in nanoseconds.
type Times = Vec<(Vec<u64>, Vec<u64>)>;

fn rounds(s: &Setup<'_>, dir: &Path) -> Result<Times> {
    let mut times: Times = vec![(Vec::new(), Vec::new()); Loop::ALL.len()];
    for round in 0..s.rounds {
        for with in [false, true] {
            eprintln!(
                "xtask bench: micro round {}/{}: {}",
                round + 1,
                s.rounds,
                if with {
                    "under seawall-micro"
                } else {
                    "without"
                }
            );
            let mut load = Swload::start(s, with.then_some(dir))?;
            // Warm-up: page cache, dentries, the supervisor's first notifications.
            for l in Loop::ALL {
                load.time(&l.command(s, 20)?)?;
            }
            for (i, l) in Loop::ALL.into_iter().enumerate() {
                let ns = load.time(&l.command(s, 1)?)?;
                let slot = &mut times[i];
                if with { &mut slot.1 } else { &mut slot.0 }.push(ns);
            }
        }
    }
    Ok(times)
}

/// The results as a markdown section for the bench report.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "### seawall-micro (inside the container, no agent)\n\n\
         Same image, same container flags (`--cap-drop ALL --security-opt no-new-privileges`), \
         with and without seawall-micro in front of the workload; ratio per round, \
         median [min–max].\n\n\
         | workload | without (median time) | under seawall-micro |\n|---|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.3} s | {:.2}× [{:.2}–{:.2}] |\n",
            r.workload, r.without_s, r.median, r.min, r.max
        ));
    }
    out
}
