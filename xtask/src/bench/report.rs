//! The markdown report: machine, command, ratio tables, agent numbers, and where we stand
//! against each target.

use std::{fmt::Write as _, process::Command};

use anyhow::Result;

use super::{
    agent_stats::CPU_RATE, configs::Config, profile_report, server_report, targets, Plan, Results,
    RunKind, Side, Workload,
};

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn today() -> String {
    sh("date", &["+%F"])
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per-round ratios of configuration `ci` against no agent (same round, same side).
pub fn ratios(r: &Results, ci: usize, side: Side, w: Workload) -> Vec<f64> {
    let (Some(base), Some(t)) = (r.times.get(&(0, side, w)), r.times.get(&(ci, side, w))) else {
        return Vec::new();
    };
    base.iter()
        .zip(t)
        .map(|(b, t)| *t as f64 / *b as f64)
        .collect()
}

pub fn median_ratio(r: &Results, ci: usize, side: Side, w: Workload) -> Option<f64> {
    let mut v = ratios(r, ci, side, w);
    (!v.is_empty()).then(|| median(&mut v))
}

pub fn ci_of(c: Config) -> usize {
    Config::ALL.iter().position(|&x| x == c).expect("listed")
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn table(out: &mut String, plan: &Plan, r: &Results, side: Side) {
    if r.times.is_empty() {
        let _ = writeln!(out, "not run (--only)");
        return;
    }
    let _ = write!(out, "| workload | no agent (median time) |");
    for c in &Config::ALL[1..] {
        let _ = write!(out, " {} |", c.label());
    }
    let _ = writeln!(out, "\n|---|---:|{}", "---:|".repeat(Config::ALL.len() - 1));
    for w in Workload::ALL {
        let base = r.times.get(&(0, side, w)).map(|v| {
            let mut s: Vec<f64> = v.iter().map(|&n| n as f64 / 1e9).collect();
            median(&mut s)
        });
        let _ = write!(
            out,
            "| {} | {} |",
            w.label(plan),
            base.map(|b| format!("{b:.3} s"))
                .unwrap_or_else(|| "–".into())
        );
        for ci in 1..Config::ALL.len() {
            if let Some(why) = r.unavailable.get(&ci) {
                let _ = write!(out, " n/a: {} |", why.replace('|', "/").replace('\n', " "));
                continue;
            }
            let mut v = ratios(r, ci, side, w);
            if v.is_empty() {
                let _ = write!(out, " – |");
                continue;
            }
            let m = median(&mut v);
            let _ = write!(out, " {m:.3}× [{:.3}–{:.3}] |", v[0], v[v.len() - 1]);
        }
        let _ = writeln!(out);
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

pub fn markdown(plan: &Plan, r: &Results, args: &[String]) -> Result<String> {
    let mut o = String::new();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let command = format!(
        "cargo xtask bench{}",
        args.iter().map(|a| format!(" {a}")).collect::<String>()
    );
    let _ = writeln!(o, "# Seawall benchmark, {}\n", today());
    let _ = writeln!(
        o,
        "- Command: `{command}` (as root, after `cargo xtask setup`)"
    );
    let _ = writeln!(
        o,
        "- Machine: {} CPUs ({cpu}), {:.1} GiB memory, kernel {}",
        sh("nproc", &[]),
        mem_kib as f64 / 1024.0 / 1024.0,
        sh("uname", &["-r"])
    );
    let _ = writeln!(o, "- How busy the machine was: {}", r.noise.describe());
    match plan.kind {
        RunKind::Full => {}
        RunKind::Quick => {
            let _ = writeln!(
                o,
                "- **Quick run: short workloads and few rounds; noisy, for development only.**"
            );
        }
        RunKind::Smoke => {
            let _ = writeln!(o, "- **Smoke run: one short round, to check that every part runs; the numbers mean nothing.**");
        }
    }
    let _ = writeln!(
        o,
        "- Loops: {} rounds; servers: {} rounds. In each round every configuration runs once, in the same order (A B C … A B C …), \
         and each ratio is against the no-agent run of the same round. Shown: median ratio [min–max].",
        plan.rounds, plan.server_rounds,
    );
    let _ = writeln!(
        o,
        "- Configurations: *seawall audit* and *seawall enforce* run one profile with every control on \
         (drift, exec allow/deny, container exec, file deny/read-only/monitor, network egress/listen, raw \
         sockets) in audit or enforce mode, with rules the workloads never break. *seawall enforce + syscall \
         hooks*: the same enforce run with the fallback's opt-in syscall tracepoints attached \
         (`--fallback-syscall-hooks`: ptrace, process_vm_writev, socket, mmap, mprotect, pkey_mprotect, \
         open, openat, openat2; n/a where BPF LSM is the backend). *auditd*: \
         `auditctl -a always,exit -F arch=b64 -S execve -S openat -S connect -S accept -S accept4`. \
         *bpftrace*: empty programs on `sched:sched_process_exec`, `syscalls:sys_enter_openat`, \
         `sys_enter_connect`, `sys_enter_accept`, `sys_enter_accept4` (the floor any tracepoint-based tool pays).\n"
    );
    server_report::method(&mut o, plan);
    server_report::section(&mut o, r);
    let _ = writeln!(
        o,
        "\n## Workloads in a container (seawall-test/bench, `--network host`)\n"
    );
    table(&mut o, plan, r, Side::Container);
    let _ = writeln!(
        o,
        "\n## The same workloads as host processes (not monitored by the agent)\n"
    );
    table(&mut o, plan, r, Side::Host);

    let _ = writeln!(o, "\n## Agent\n");
    let _ = writeln!(o, "| measure | result |\n|---|---|");
    match &r.throughput {
        Ok(t) => {
            let best = t
                .steps
                .iter()
                .filter(|s| s.drops == 0)
                .map(|s| s.achieved)
                .fold(0.0, f64::max);
            let _ = writeln!(
                o,
                "| highest event rate sustained {} s with zero ring-buffer drops | {:.0} events/s |",
                t.secs, best
            );
            for s in &t.steps {
                let _ = writeln!(
                    o,
                    "| step: {} events/s asked | {:.0}/s generated, {} drops |",
                    s.target, s.achieved, s.drops
                );
            }
        }
        Err(e) => {
            let _ = writeln!(o, "| event throughput | n/a: {e} |");
        }
    }
    match &r.cpu {
        Ok(c) => {
            let _ = writeln!(
                o,
                "| agent CPU at {CPU_RATE} events/s ({:.0} generated) | {:.1}% of one core; {:.3} voluntary context switches per event |",
                c.rate,
                c.cost.cpu_percent,
                c.cost.voluntary_switches as f64 / c.events.max(1) as f64
            );
        }
        Err(e) => {
            let _ = writeln!(o, "| agent CPU | n/a: {e} |");
        }
    }
    match &r.rss {
        Ok(v) => {
            for (n, kib) in v {
                let _ = writeln!(
                    o,
                    "| agent RSS with {n} containers | {:.1} MiB |",
                    mib(*kib)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(o, "| agent RSS | n/a: {e} |");
        }
    }
    match &r.criterion {
        Ok(v) if !v.is_empty() => {
            for (name, eps) in v {
                let _ = writeln!(o, "| userspace decode → enrich → serialize, `{name}` (criterion, one core) | {eps:.0} events/s |");
            }
        }
        Ok(_) => {
            let _ = writeln!(
                o,
                "| userspace path (criterion) | n/a: no throughput in criterion's output |"
            );
        }
        Err(e) => {
            let _ = writeln!(o, "| userspace path (criterion) | n/a: {e} |");
        }
    }

    match &r.micro {
        Ok(rows) => {
            let _ = writeln!(o, "\n{}", super::micro::markdown(rows));
        }
        Err(e) => {
            let _ = writeln!(
                o,
                "\n### seawall-micro (inside the container, no agent)\n\nn/a: {e}"
            );
        }
    }

    profile_report::section(&mut o, plan, r);
    targets::section(&mut o, plan, r);

    if !r.violations.is_empty() {
        let _ = writeln!(
            o,
            "\n## Events the loops should not have caused ({}; the bench profile needs fixing)\n",
            r.violations.len()
        );
        for v in r.violations.iter().take(10) {
            let _ = writeln!(o, "- `{}`", v.chars().take(400).collect::<String>());
        }
    }
    Ok(o)
}
