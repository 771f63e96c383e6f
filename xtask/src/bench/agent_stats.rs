//! The agent's own numbers: the event rate it sustains without ring-buffer drops, its CPU at a
//! fixed rate, its RSS with 10 and 100 containers, and the criterion micro-benchmarks of the
//! userspace path.

use std::{
    io::{Read as _, Write as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    configs::{bench_profiles, Agent, BENCH_IMAGE},
    free_port, unique_name, Env, Load,
};
use crate::{cargo, run};

/// One step of the rate ladder.
pub struct Step {
    pub target: u64,
    /// Events generated per second (UDP connects, one network event each).
    pub achieved: f64,
    pub drops: u64,
}

pub struct Throughput {
    pub secs: u64,
    pub steps: Vec<Step>,
}

pub struct Cpu {
    pub rate: f64,
    /// Events generated in the interval.
    pub events: u64,
    /// The agent's CPU and context switches over the interval.
    pub cost: AgentCost,
}

fn scrape(port: u16) -> Result<String> {
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting to --metrics")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Sum of a metric's samples (all label sets).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the metrics endpoint answers and the agent's 1 s counter poll has run.
fn drops(port: u16) -> Result<u64> {
    Ok(metric(&scrape(port)?, "seawall_ringbuf_drops_total"))
}

fn start_with_load(env: &Env) -> Result<(Agent, Load, u16)> {
    let port = free_port();
    let agent = Agent::start(
        &env.agent_bin,
        &env.work.join("agent-rate"),
        &bench_profiles("audit"),
        Some(port),
        Some(std::path::Path::new("/dev/null")),
    )?;
    let name = unique_name("rate");
    let load = Load::container(&name)?;
    agent.wait_monitoring(&name, "bench")?;
    let start = Instant::now();
    while scrape(port).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("--metrics 127.0.0.1:{port} does not answer");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((agent, load, port))
}

/// Rate ladder: each step runs `secs`; stops at the first step with drops or when the
/// generator cannot reach the rate asked (then the agent was not the limit).
pub fn throughput(env: &Env) -> Result<Throughput> {
    let secs = env.plan.rate_secs;
    let (_agent, mut load, port) = start_with_load(env)?;
    let mut steps = Vec::new();
    for target in [25_000u64, 50_000, 100_000, 200_000, 300_000, 400_000] {
        let before = drops(port)?;
        // Two generator threads from 200,000/s: one thread alone tops out about there.
        let threads = if target >= 200_000 { 2 } else { 1 };
        let (ns, extra) = load.call(&format!("udp {target} {secs} {} {threads}", free_port()))?;
        // The agent polls its kernel counters once a second.
        std::thread::sleep(Duration::from_millis(2500));
        let after = drops(port)?;
        let calls = extra.first().copied().unwrap_or(0);
        let achieved = calls as f64 / (ns as f64 / 1e9);
        eprintln!(
            "xtask bench: {target}/s asked, {achieved:.0}/s generated, {} drops",
            after - before
        );
        steps.push(Step {
            target,
            achieved,
            drops: after - before,
        });
        if after > before || achieved < 0.9 * target as f64 {
            break;
        }
    }
    Ok(Throughput { secs, steps })
}

/// What the agent spent during one measured interval.
#[derive(Clone, Copy, Debug)]
pub struct AgentCost {
    /// CPU (user + system) as a percentage of one core.
    pub cpu_percent: f64,
    /// Context switches of all its threads (voluntary: each is a sleep and a wakeup).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// A reading of the agent's CPU time and context switches.
pub struct AgentSample {
    ticks: u64,
    voluntary: u64,
    involuntary: u64,
}

/// Reads the agent's counters (every thread's context switches, from `/proc/<pid>/task`).
pub fn cost_now(pid: u32) -> Result<AgentSample> {
    let (mut voluntary, mut involuntary) = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        voluntary += field("voluntary_ctxt_switches:");
        involuntary += field("nonvoluntary_ctxt_switches:");
    }
    Ok(AgentSample {
        ticks: cpu_ticks(pid)?,
        voluntary,
        involuntary,
    })
}

impl AgentSample {
    /// The cost between `before` and this reading, `wall` apart. Threads that exited in
    /// between take their switches with them, so a count can only be an underestimate.
    pub fn since(&self, before: &AgentSample, wall: Duration) -> AgentCost {
        AgentCost {
            cpu_percent: self.ticks.saturating_sub(before.ticks) as f64
                / clk_tck()
                / wall.as_secs_f64()
                * 100.0,
            voluntary_switches: self.voluntary.saturating_sub(before.voluntary),
            involuntary_switches: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces): state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("malformed /proc/pid/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub const CPU_RATE: u64 = 50_000;

/// Agent CPU while the container generates `CPU_RATE` network events per second.
pub fn cpu(env: &Env) -> Result<Cpu> {
    let secs = env.plan.rate_secs;
    let (agent, mut load, _port) = start_with_load(env)?;
    let before = cost_now(agent.pid())?;
    let start = Instant::now();
    let (ns, extra) = load.call(&format!("udp {CPU_RATE} {secs} {}", free_port()))?;
    // Let the agent drain what it has not processed yet, within the measured interval.
    std::thread::sleep(Duration::from_millis(1000));
    let cost = cost_now(agent.pid())?.since(&before, start.elapsed());
    let events = extra.first().copied().unwrap_or(0);
    Ok(Cpu {
        rate: events as f64 / (ns as f64 / 1e9),
        events,
        cost,
    })
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Sleeping containers, removed (by name) on drop.
struct Sleepers(Vec<String>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for chunk in self.0.chunks(50) {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(chunk)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Agent RSS (KiB) with 10, 100 and (full runs) 1,000 sleeping containers (`--network none`).
pub fn rss(env: &Env) -> Result<Vec<(usize, u64)>> {
    let agent = Agent::start(
        &env.agent_bin,
        &env.work.join("agent-rss"),
        &bench_profiles("audit"),
        None,
        None,
    )?;
    let mut sleepers = Sleepers(Vec::new());
    let mut out = Vec::new();
    let steps: &[usize] = if env.plan.quick {
        &[10, 100]
    } else {
        &[10, 100, 1000]
    };
    for &want in steps {
        while sleepers.0.len() < want {
            // A few `docker run`s at a time: a thousand one after the other take many minutes.
            let batch = (want - sleepers.0.len()).min(8);
            let mut children = Vec::new();
            for _ in 0..batch {
                let name = unique_name("sleep");
                let child = Command::new("docker")
                    .args(["run", "-d", "--network", "none", "--name", &name])
                    .args([BENCH_IMAGE, "sleep", "3600"])
                    .stdout(Stdio::null())
                    .spawn()
                    .context("docker run")?;
                // Named before it is waited for, so a failure still removes what was created.
                sleepers.0.push(name);
                children.push(child);
            }
            for mut child in children {
                let st = child.wait()?;
                if !st.success() {
                    bail!("docker run of a sleeping container failed: {st}");
                }
            }
        }
        let last = sleepers.0.last().expect("at least one").clone();
        agent.wait_monitoring(&last, "bench")?;
        std::thread::sleep(Duration::from_secs(2));
        out.push((want, vm_rss_kib(agent.pid())?));
    }
    Ok(out)
}

/// Compiles the criterion benchmark, so running it later measures and does not build.
pub fn build_criterion() -> Result<()> {
    run(cargo().args(["bench", "--no-run", "-p", "seawall", "--bench", "pipeline"]))
}

/// Runs `agent/benches/pipeline.rs`; returns (benchmark, events per second).
pub fn criterion(quick: bool) -> Result<Vec<(String, f64)>> {
    let mut c = cargo();
    c.args(["bench", "-p", "seawall", "--bench", "pipeline", "--"]);
    if quick {
        c.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    eprintln!("xtask: {c:?}");
    let o = c
        .current_dir(crate::root())
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench")?;
    let text = String::from_utf8_lossy(&o.stdout);
    eprint!("{text}");
    if !o.status.success() {
        bail!(
            "cargo bench -p seawall --bench pipeline failed: {}",
            o.status
        );
    }
    Ok(parse_criterion(&text))
}

/// Criterion's text output: a benchmark name (alone, or before `time:`), then a `thrpt:` line
/// `[low mid high]`; returns the middle estimate in elements per second.
pub fn parse_criterion(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) && !line.is_empty() {
            let head = line.split("time:").next().unwrap_or("").trim();
            if !head.is_empty() && !head.starts_with("Benchmarking") && !head.starts_with("Found") {
                name = head.to_string();
            }
        }
        if let Some(rest) = line.trim().strip_prefix("thrpt:") {
            let w: Vec<&str> = rest
                .trim()
                .trim_matches(['[', ']'])
                .split_whitespace()
                .collect();
            if w.len() >= 4 {
                let scale = match w[3] {
                    "Gelem/s" => 1e9,
                    "Melem/s" => 1e6,
                    "Kelem/s" => 1e3,
                    _ => 1.0,
                };
                if let Ok(v) = w[2].parse::<f64>() {
                    out.push((name.clone(), v * scale));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_throughput() {
        let text = "pipeline/exec           time:   [800.1 ns 810.2 ns 820.3 ns]\n                        thrpt:  [1.2190 Melem/s 1.2342 Melem/s 1.2498 Melem/s]\n";
        let r = parse_criterion(text);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, "pipeline/exec");
        assert!((r[0].1 - 1_234_200.0).abs() < 1.0);
    }

    #[test]
    fn sums_metric_samples() {
        let t = "# TYPE seawall_ringbuf_drops_total counter\nseawall_ringbuf_drops_total 7\nseawall_ringbuf_drops_totalx 9\n";
        assert_eq!(metric(t, "seawall_ringbuf_drops_total"), 7);
    }
}
