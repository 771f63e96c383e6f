//! Where the agent's time goes, under the loads that cost the most: a flat `perf record`
//! (software clock; this VM has no hardware counters) of the agent process, then a `perf trace
//! -s` of its syscalls, each over a run of the same load, with the agent's CPU and context
//! switches per operation. The numbers go into the results file; the reading of them is
//! `bench/findings.md`.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    agent_stats::{self, AgentCost},
    configs::{bench_profiles, Agent},
    free_port,
    images::NGINX,
    loadgen,
    servers::{shipped_profiles, ServerContainer},
    unique_name, Env, Load,
};

/// One profiled load.
pub struct Scenario {
    pub name: &'static str,
    /// What one operation is (`request`, `event`, `open`).
    pub op: &'static str,
    /// Operations during the `perf record` run.
    pub ops: u64,
    pub cost: AgentCost,
    /// (percent of samples, `[k]`/`[.]` symbol), highest first.
    pub top: Vec<(f64, String)>,
    /// Syscalls of all the agent's threads during the `perf trace` run, with that run's ops.
    pub syscalls: Vec<(String, u64)>,
    pub syscall_ops: u64,
    /// One answer of the fanotify thread, syscall by syscall (`strace -y`), when the load
    /// goes through it.
    pub answer: Vec<String>,
}

pub struct Profile {
    pub secs: u64,
    pub scenarios: Vec<Scenario>,
}

/// The command lines, for the results file (PID is the agent's).
pub fn commands(secs: u64) -> [String; 4] {
    [
        format!("perf record -e cpu-clock -F 999 -p PID -o agent.perf -- sleep {secs}"),
        "perf report -i agent.perf --stdio --no-children --sort dso,symbol -q".into(),
        "perf trace -s -o agent.trace -p PID (stopped with SIGINT when the load ends)".into(),
        format!("strace -y -o answer.strace -p TID (TID: the agent's `{FANOTIFY_THREAD}` thread, over 200 more opens)"),
    ]
}

/// The agent's fanotify thread as `/proc/<pid>/task/<tid>/comm` shows it (15 bytes).
const FANOTIFY_THREAD: &str = "seawall-fanotif";

/// The thread of `pid` named `comm`.
fn thread_named(pid: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|t| t.ok())
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == comm))?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// The syscalls of one fanotify answer in `strace -y` output: from the second `poll` (the
/// first may be cut by the attach) up to the third (so the cycle is complete).
fn one_answer(text: &str) -> Vec<String> {
    let short = |l: &str| {
        let l = l.trim();
        if l.chars().count() > 160 {
            format!("{}…", l.chars().take(160).collect::<String>())
        } else {
            l.to_string()
        }
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("strace:"))
        .collect();
    let polls: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("poll("))
        .collect();
    match polls[..] {
        [_, from, to, ..] => lines[from..to].iter().map(|l| short(l)).collect(),
        _ => Vec::new(),
    }
}

/// `strace -y` of the agent's fanotify thread while `load` runs: one answer's syscalls.
fn answer_syscalls(env: &Env, pid: u32, load: impl FnOnce() -> Result<()>) -> Result<Vec<String>> {
    let tid = thread_named(pid, FANOTIFY_THREAD)
        .with_context(|| format!("the agent has no {FANOTIFY_THREAD} thread"))?;
    let file = env.work.join("answer.strace");
    let mut strace = Command::new("strace")
        .args(["-y", "-o"])
        .arg(&file)
        .args(["-p", &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting strace (apt-get install strace)")?;
    std::thread::sleep(Duration::from_millis(500));
    let loaded = load();
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait()?;
    loaded?;
    let seq = one_answer(&std::fs::read_to_string(&file).unwrap_or_default());
    if seq.is_empty() {
        bail!("strace of thread {tid} saw no complete answer");
    }
    Ok(seq)
}

fn perf_record(pid: u32, secs: u64, file: &std::path::Path) -> Result<Child> {
    Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(file)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(file.with_extension("record.log"))?)
        .spawn()
        .context("starting perf record (apt-get install linux-perf)")
}

/// `perf trace -s` until stopped with SIGINT, so its window is exactly the load's however long
/// the load takes under tracing.
fn perf_trace(pid: u32, file: &std::path::Path) -> Result<Child> {
    Command::new("perf")
        .args(["trace", "-s", "-o"])
        .arg(file)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(file.with_extension("log"))?)
        .spawn()
        .context("starting perf trace")
}

fn perf_report(file: &std::path::Path) -> Result<Vec<(f64, String)>> {
    let o = Command::new("perf")
        .args(["report", "-i"])
        .arg(file)
        .args(["--stdio", "--no-children", "--sort", "dso,symbol", "-q"])
        .stderr(Stdio::null())
        .output()
        .context("perf report")?;
    let top = parse_report(&String::from_utf8_lossy(&o.stdout));
    if top.is_empty() {
        bail!("perf report found no samples of the agent");
    }
    Ok(top)
}

/// `perf report -q` lines: `  12.34%  seawall  [.] symbol`.
fn parse_report(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            let mut w = rest.split_whitespace();
            let dso = w.next()?;
            let rest: Vec<&str> = w.collect();
            let sym = rest.join(" ");
            Some((pct, format!("{dso} {sym}")))
        })
        .take(15)
        .collect()
}

/// `perf trace -s` tables, summed over threads: `   read   1234   0   1.2 …`.
fn parse_trace(text: &str) -> Vec<(String, u64)> {
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 4 || !w[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let (Ok(calls), Ok(_errors)) = (w[1].parse::<u64>(), w[2].parse::<u64>()) {
            *sum.entry(w[0].to_string()).or_default() += calls;
        }
    }
    let mut v: Vec<(String, u64)> = sum.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v
}

/// Runs `load` (which returns its operation count) twice: under `perf record`, then under
/// `perf trace -s`.
fn profile_one(
    env: &Env,
    agent: &Agent,
    name: &'static str,
    op: &'static str,
    secs: u64,
    mut load: impl FnMut() -> Result<u64>,
) -> Result<Scenario> {
    let stem: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = env.work.join(format!("{stem}.perf"));
    let before = agent_stats::cost_now(agent.pid())?;
    let start = Instant::now();
    let mut rec = perf_record(agent.pid(), secs, &file)?;
    let ops = load()?;
    let cost = agent_stats::cost_now(agent.pid())?.since(&before, start.elapsed());
    let st = rec.wait()?;
    if !st.success() {
        let log = std::fs::read_to_string(file.with_extension("record.log")).unwrap_or_default();
        bail!(
            "perf record -p {} failed ({st}): {}",
            agent.pid(),
            log.trim()
        );
    }
    let top = perf_report(&file)?;
    let trace_file = file.with_extension("trace");
    let mut trace = perf_trace(agent.pid(), &trace_file)?;
    // perf trace attaches to every syscall tracepoint before it counts anything.
    std::thread::sleep(Duration::from_millis(1000));
    let syscall_ops = load()?;
    // Events still in flight (the agent drains what the load left) belong to the load.
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &trace.id().to_string()])
        .status();
    // Stopped by SIGINT, perf's exit status says nothing; its summary does.
    let _ = trace.wait()?;
    let trace_text = std::fs::read_to_string(&trace_file).unwrap_or_default();
    if !trace_text.contains("Summary of events") {
        let log = std::fs::read_to_string(trace_file.with_extension("log")).unwrap_or_default();
        bail!(
            "perf trace -p {} wrote no summary: {}",
            agent.pid(),
            log.trim()
        );
    }
    Ok(Scenario {
        name,
        op,
        ops,
        cost,
        top,
        syscalls: parse_trace(&trace_text),
        syscall_ops,
        answer: Vec::new(),
    })
}

pub fn profile(env: &Env) -> Result<Profile> {
    let secs = if env.plan.quick { 5 } else { 10 };
    let mut scenarios = Vec::new();

    // nginx under its shipped profile, enforcing: the fanotify path of a read_only file.
    {
        let agent = Agent::start(
            &env.agent_bin,
            &env.work.join("agent-profile-nginx"),
            &shipped_profiles(false)?,
            None,
            None,
        )?;
        let nginx = ServerContainer::start(&NGINX)?;
        agent.wait_monitoring(&nginx.name, NGINX.name)?;
        nginx.wait_ready(&NGINX)?;
        loadgen::wrk(NGINX.port, 2)?;
        scenarios.push(profile_one(
            env,
            &agent,
            "nginx static page, shipped profile (enforce)",
            "request",
            secs,
            || Ok((loadgen::wrk(NGINX.port, secs)?.per_sec * secs as f64) as u64),
        )?);
    }

    // The loops' container under the all-controls profile, enforcing.
    let agent = Agent::start(
        &env.agent_bin,
        &env.work.join("agent-profile-loops"),
        &bench_profiles("enforce"),
        None,
        None,
    )?;
    let name = unique_name("profile");
    let mut ctr = Load::container(&name)?;
    agent.wait_monitoring(&name, "bench")?;
    ctr.call("open 1000 /etc/passwd")?;
    // Opens of a read_only file, as many as fit in the window.
    let n_open = 20_000u64;
    let mut open = profile_one(
        env,
        &agent,
        "open/close of a read_only file in a container (enforce)",
        "open",
        secs,
        || {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut ops = 0;
            while Instant::now() < deadline {
                ctr.call(&format!("open {n_open} /etc/passwd"))?;
                ops += n_open;
            }
            Ok(ops)
        },
    )?;
    open.answer = answer_syscalls(env, agent.pid(), || {
        ctr.call("open 200 /etc/passwd").map(drop)
    })
    .unwrap_or_else(|e| vec![format!("n/a: {e:#}")]);
    scenarios.push(open);
    // fork+exec: three ring-buffer records (fork, exec, exit) and one JSON event per exec.
    let n_exec = 500u64;
    scenarios.push(profile_one(
        env,
        &agent,
        "fork+exec /bin/true in a container (enforce)",
        "exec",
        secs,
        || {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut ops = 0;
            while Instant::now() < deadline {
                ctr.call(&format!("exec {n_exec} /bin/true"))?;
                ops += n_exec;
            }
            Ok(ops)
        },
    )?);
    // Network events through the ring buffer at the rate of the CPU target.
    scenarios.push(profile_one(
        env,
        &agent,
        "UDP connects at 50,000/s in a container: ring buffer → JSON (enforce)",
        "event",
        secs,
        || {
            let (_, extra) = ctr.call(&format!(
                "udp {} {secs} {}",
                agent_stats::CPU_RATE,
                free_port()
            ))?;
            Ok(extra.first().copied().unwrap_or(0))
        },
    )?);
    Ok(Profile { secs, scenarios })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_report_lines() {
        let t = "    21.50%  seawall            [.] seawall::fileguard::Guard::answer\n     9.10%  [kernel.kallsyms]  [k] fsnotify\n\n# comment\n";
        let r = parse_report(t);
        assert_eq!(r.len(), 2);
        assert!((r[0].0 - 21.5).abs() < 1e-9);
        assert_eq!(r[0].1, "seawall [.] seawall::fileguard::Guard::answer");
        assert_eq!(r[1].1, "[kernel.kallsyms] [k] fsnotify");
    }

    #[test]
    fn cuts_one_answer_out_of_strace_output() {
        let t = "read(5</anon_inode:[fanotify]>, \"x\", 4096) = 24\n\
                 poll([{fd=5, events=POLLIN}], 1, 1000) = 1\n\
                 read(5</anon_inode:[fanotify]>, \"a\", 4096) = 24\n\
                 write(5</anon_inode:[fanotify]>, \"b\", 8) = 8\n\
                 poll([{fd=5, events=POLLIN}], 1, 1000) = 1\n\
                 read(5</anon_inode:[fanotify]>, \"c\", 4096) = 24\n\
                 close(7</etc/passwd>) = 0\n\
                 poll([{fd=5, events=POLLIN}], 1, 1000) = 1\n\
                 strace: Process 9 detached\n";
        let a = one_answer(t);
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a[0].starts_with("poll(") && a[2].starts_with("close(7</etc/passwd>)"));
        assert!(
            one_answer("poll(x) = 1\nread(y) = 1\npoll(x) = 1\nread(z) = 1\n").is_empty(),
            "no complete answer"
        );
    }

    #[test]
    fn sums_perf_trace_tables_over_threads() {
        let t = " Summary of events:\n\n seawall (100), 20 events, 50.0%\n\n   syscall            calls  errors  total       min       avg       max       stddev\n                                     (msec)    (msec)    (msec)    (msec)        (%)\n   --------------- --------  ------ -------- --------- --------- ---------     ------\n   read                   6      0     0.010     0.001     0.002     0.003      10.00%\n   write                  4      0     0.010     0.001     0.002     0.003      10.00%\n\n tokio-rt (101), 10 events\n   read                   5      1     0.010     0.001     0.002     0.003      10.00%\n";
        let r = parse_trace(t);
        assert_eq!(r[0], ("read".to_string(), 11));
        assert_eq!(r[1], ("write".to_string(), 4));
        assert_eq!(r.len(), 2);
    }
}
