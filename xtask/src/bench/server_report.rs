//! The real-server part of the results file: how the images and loads are made, the
//! throughput ratios, what the agent spent, and every event the servers caused.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    configs::Config,
    images,
    loadgen::ServerLoad,
    report::median,
    servers::{ServerResults, CONFIGS},
    Plan, Results,
};

fn ci(c: Config) -> usize {
    CONFIGS
        .iter()
        .position(|&x| x == c)
        .expect("a server configuration")
}

/// Per-round throughput ratios of configuration `c` to no agent, for `load`.
pub fn ratios(s: &ServerResults, c: Config, load: ServerLoad) -> Vec<f64> {
    let (Some(base), Some(runs)) = (
        s.runs.get(&(ci(Config::NoAgent), load)),
        s.runs.get(&(ci(c), load)),
    ) else {
        return Vec::new();
    };
    let mut v: Vec<f64> = base
        .iter()
        .zip(runs)
        .map(|(b, r)| r.per_sec / b.per_sec)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

pub fn method(o: &mut String, plan: &Plan) {
    let l = plan.server_load;
    let _ = writeln!(
        o,
        "- Servers: Debian {suite} images built here (`debootstrap --variant=minbase` from the mirror apt uses, \
         `docker import`; rootfs cached in `{cache}`): {images}. Each runs in its own container with \
         `--network host` on loopback under the profiles in `profiles/`: *seawall enforce* is the directory as \
         shipped, *seawall audit* the same files with every `mode = \"enforce\"` set to `\"audit\"`. Loads from \
         the host: `wrk -t2 -c32 -d{s}s` of Debian's default page; `redis-benchmark -c 50 -n {n} -t set,get`; \
         `pgbench -c 8 -j 2 -T {s}` (TPC-B-like, then `-S`) after `pgbench -i -s {scale}`, with \
         `PGSSLMODE=disable` (pgbench is the one in the image's rootfs, run with `chroot` on the host: Debian ships \
         it only in the server package). A fresh container per configuration and round, warmed up with a short \
         run first. Throughput is higher-is-better: a ratio below 1 is a cost.",
        suite = images::SUITE,
        cache = images::CACHE_DIR,
        images = images::ALL
            .iter()
            .map(|i| format!("`{}` ({}, as user {}, port {})", i.reference, i.name, i.user, i.port))
            .collect::<Vec<_>>()
            .join(", "),
        s = l.secs,
        n = l.redis_requests,
        scale = l.pgbench_scale,
    );
    let _ = writeln!(o, "{PROFILE_NOTES}");
}

/// What the bench changed in `profiles/` for the Debian images, and how each image is matched
/// (a unit test in `servers` checks the matching and the ports against the files).
const PROFILE_NOTES: &str = "- Profiles: used as shipped, after three corrections where they were wrong for Debian's \
packages (nothing was removed or loosened): `nginx.toml` `read_only` also covers `/var/www/**` (Debian's document \
root; the official image's is `/usr/share/nginx/html`), `postgres.toml` also matches `postgres:15*` (bookworm packages \
PostgreSQL 15; the profile named only 16) and also monitors `/var/lib/postgresql/*/main/*.conf` (Debian's data \
directory). Matching: `nginx:seawall-bench` by nginx.toml's `nginx`, `redis:seawall-bench` by redis.toml's `redis*`, \
`postgres:15-seawall-bench` by postgres.toml's `postgres:15*`; each server listens on 127.0.0.1 on a port its \
profile's `listen_allow` allows (nginx 8080, Redis 6379, PostgreSQL 5432).";

pub fn section(o: &mut String, r: &Results) {
    let _ = writeln!(o, "\n## Real servers under the shipped profiles\n");
    let s = match &r.servers {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(o, "n/a: {e}");
            return;
        }
    };
    let _ = writeln!(
        o,
        "| server and load | no agent (median) | seawall audit | seawall enforce | agent CPU, enforce (median, % of a core) | agent wakeups per 1,000 ops, enforce |\n|---|---:|---:|---:|---:|---:|"
    );
    for load in ServerLoad::ALL {
        let Some(base) = s.runs.get(&(ci(Config::NoAgent), load)) else {
            continue;
        };
        let mut b: Vec<f64> = base.iter().map(|r| r.per_sec).collect();
        let _ = write!(
            o,
            "| {} | {:.0} {} |",
            load.label(),
            median(&mut b),
            load.unit()
        );
        for c in [Config::SeawallAudit, Config::SeawallEnforce] {
            let v = ratios(s, c, load);
            if v.is_empty() {
                let _ = write!(o, " – |");
            } else {
                let m = median(&mut v.clone());
                let _ = write!(o, " {m:.3}× [{:.3}–{:.3}] |", v[0], v[v.len() - 1]);
            }
        }
        let runs = s.runs.get(&(ci(Config::SeawallEnforce), load));
        let mut cpu: Vec<f64> = runs
            .into_iter()
            .flatten()
            .filter_map(|r| r.agent.map(|a| a.cpu_percent))
            .collect();
        let mut wake: Vec<f64> = runs
            .into_iter()
            .flatten()
            .filter_map(|r| {
                r.agent
                    .map(|a| a.voluntary_switches as f64 * 1000.0 / r.ops.max(1.0))
            })
            .collect();
        let cell = |v: &mut Vec<f64>, unit: &str| {
            if v.is_empty() {
                "–".to_string()
            } else {
                format!("{:.1}{unit}", median(v))
            }
        };
        let _ = writeln!(o, " {} | {} |", cell(&mut cpu, "%"), cell(&mut wake, ""));
    }
    let _ = writeln!(
        o,
        "\nAgent CPU and wakeups (voluntary context switches of all its threads) are over each whole generator \
         run; for Redis the one `redis-benchmark` run measures SET and GET, so both rows show it."
    );
    if !s.errors.is_empty() {
        let _ = writeln!(o, "\n**The load generators reported failures** (those runs' throughput counts only what succeeded):\n");
        for (c, load, e) in &s.errors {
            let _ = writeln!(o, "- {} under {}: {e}", load.label(), CONFIGS[*c].label());
        }
    }
    let _ = writeln!(o, "\n### Events the servers caused\n");
    let mut any = false;
    for ((c, server), lines) in &s.violations {
        if lines.is_empty() {
            continue;
        }
        any = true;
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for l in lines {
            let field = |k: &str| {
                l.split(&format!("\"{k}\":\""))
                    .nth(1)
                    .and_then(|x| x.split('"').next())
                    .unwrap_or("?")
                    .to_string()
            };
            *by.entry(format!("{} {}", field("action"), field("control")))
                .or_default() += 1;
        }
        let _ = writeln!(
            o,
            "- {server} under {}: {} ({})",
            CONFIGS[*c].label(),
            lines.len(),
            by.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for l in lines.iter().take(3) {
            let _ = writeln!(o, "  - `{}`", l.chars().take(300).collect::<String>());
        }
    }
    if !any {
        let _ = writeln!(
            o,
            "None: no server did anything its shipped profile blocks or audits, in any configuration."
        );
    }
}
