//! "Where the time goes" in the results file: what `perf` saw in the agent under each profiled
//! load, the per-operation costs derived from the loops, and the hand-written reading of them
//! (`bench/findings.md`, the to-do list for the hot-path fixes).

use std::fmt::Write as _;

use super::{
    configs::Config,
    profiling::{commands, Profile},
    report::ci_of,
    Plan, Results, Side, Workload,
};
use crate::root;

/// Median extra nanoseconds per operation of `w` in a container under enforce.
fn extra_ns_per_op(r: &Results, w: Workload, n: u64) -> Option<f64> {
    let base = r.times.get(&(0, Side::Container, w))?;
    let enf = r
        .times
        .get(&(ci_of(Config::SeawallEnforce), Side::Container, w))?;
    let mut d: Vec<f64> = base
        .iter()
        .zip(enf)
        .map(|(b, e)| (*e as f64 - *b as f64) / n as f64)
        .collect();
    (!d.is_empty()).then(|| super::report::median(&mut d))
}

fn profile_tables(o: &mut String, p: &Profile) {
    for s in &p.scenarios {
        let per = |n: u64| n as f64 / s.ops.max(1) as f64;
        let _ = writeln!(
            o,
            "\n### {}\n\n{} {}s in {} s; agent CPU {:.1}% of a core; {:.3} voluntary and {:.3} involuntary context switches per {}.\n",
            s.name,
            s.ops,
            s.op,
            p.secs,
            s.cost.cpu_percent,
            per(s.cost.voluntary_switches),
            per(s.cost.involuntary_switches),
            s.op
        );
        let _ = writeln!(o, "| share of the agent's samples | function |\n|---:|---|");
        for (pct, sym) in s.top.iter().take(12) {
            let _ = writeln!(o, "| {pct:.1}% | `{}` |", sym.replace('|', "/"));
        }
        if s.syscalls.is_empty() {
            let _ = writeln!(o, "\nperf trace counted no syscalls.");
        } else {
            let _ = writeln!(o, "\n{}", syscall_line(s));
        }
        if !s.answer.is_empty() {
            let _ = writeln!(
                o,
                "\nOne answer of the fanotify thread, syscall by syscall (`strace -y` of that thread; fds show their files):\n\n```"
            );
            for l in &s.answer {
                let _ = writeln!(o, "{l}");
            }
            let _ = writeln!(o, "```");
        }
    }
}

/// The agent's syscalls per operation: every one made at least once per 200 operations, and
/// their total.
fn syscall_line(s: &super::profiling::Scenario) -> String {
    let per = |n: u64| n as f64 / s.syscall_ops.max(1) as f64;
    let total: u64 = s.syscalls.iter().map(|x| x.1).sum();
    let shown: Vec<String> = s
        .syscalls
        .iter()
        .filter(|(_, n)| per(*n) >= 0.005)
        .map(|(name, n)| format!("{name} {:.3}", per(*n)))
        .collect();
    format!(
        "Syscalls of all agent threads per {} (second run, {} {}s): **{:.2} in all**: {}.",
        s.op,
        s.syscall_ops,
        s.op,
        per(total),
        shown.join(", ")
    )
}

pub fn section(o: &mut String, plan: &Plan, r: &Results) {
    let _ = writeln!(o, "\n## Where the time goes\n");
    if let Some(ns) = extra_ns_per_op(r, Workload::Open, plan.open_n) {
        let _ = writeln!(
            o,
            "- One open of a file under a `read_only` rule in a container, enforcing, costs {:.1} µs more than \
             with no agent (median over rounds of (enforce − no agent) / opens): the fanotify permission round \
             trip to the agent.",
            ns / 1000.0
        );
    }
    if let Some(ns) = extra_ns_per_op(r, Workload::Exec, plan.exec_n) {
        let _ = writeln!(
            o,
            "- One fork+exec in a container, enforcing, costs {:.1} µs more than with no agent.",
            ns / 1000.0
        );
    }
    match &r.profile {
        Ok(p) => {
            let [rec, rep, trace, strace] = commands(p.secs);
            let _ = writeln!(
                o,
                "- Measured by `cargo xtask bench` itself: `{rec}`, `{rep}`, then `{trace}` over a second run of \
                 the same load, and for the open loop `{strace}`. cpu-clock sampling (this VM exposes no hardware counters) of a release build \
                 without frame pointers, so the shares are self time per function, not call graphs."
            );
            profile_tables(o, p);
        }
        Err(e) => {
            let _ = writeln!(o, "- perf profile: n/a: {e}");
        }
    }
    let findings = root().join("bench/findings.md");
    if let Ok(text) = std::fs::read_to_string(&findings) {
        let _ = writeln!(
            o,
            "\n### Reading of the profile (hand-written, `bench/findings.md`)\n"
        );
        // The file's own headings go one level down, under this section.
        for line in text.lines() {
            if line.starts_with('#') {
                let _ = writeln!(o, "###{line}");
            } else {
                let _ = writeln!(o, "{line}");
            }
        }
    }
}
