//! How long and how often a bench run measures, and which parts it runs: the command line.

use anyhow::{bail, Result};

use super::loadgen::LoadSize;

/// How thorough a run is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunKind {
    /// The published numbers.
    Full,
    /// Development: short workloads, three rounds; noisy.
    Quick,
    /// Checks that every part runs; one short round; numbers mean nothing.
    Smoke,
}

/// How long and how often; `--quick` is for development, the default for the published table.
pub struct Plan {
    pub kind: RunKind,
    /// Any run but the full one (shorter ladders, fewer containers).
    pub quick: bool,
    pub rounds: usize,
    pub open_n: u64,
    pub exec_n: u64,
    pub tcp_n: u64,
    pub mixed_n: u64,
    pub rate_secs: u64,
    pub server_rounds: usize,
    pub server_load: LoadSize,
    pub loops: bool,
    pub servers: bool,
    pub profile: bool,
}

impl Plan {
    fn new(kind: RunKind) -> Plan {
        let (rounds, open_n, exec_n, tcp_n, mixed_n, rate_secs) = match kind {
            RunKind::Full => (7, 200_000, 1_000, 5_000, 10, 60),
            RunKind::Quick => (3, 50_000, 200, 1_000, 3, 10),
            RunKind::Smoke => (1, 5_000, 50, 200, 1, 3),
        };
        let (server_rounds, server_load) = match kind {
            RunKind::Full => (
                5,
                LoadSize {
                    secs: 10,
                    redis_requests: 200_000,
                    pgbench_scale: 10,
                },
            ),
            RunKind::Quick => (
                3,
                LoadSize {
                    secs: 5,
                    redis_requests: 50_000,
                    pgbench_scale: 5,
                },
            ),
            RunKind::Smoke => (
                1,
                LoadSize {
                    secs: 2,
                    redis_requests: 10_000,
                    pgbench_scale: 1,
                },
            ),
        };
        Plan {
            kind,
            quick: kind != RunKind::Full,
            rounds,
            open_n,
            exec_n,
            tcp_n,
            mixed_n,
            rate_secs,
            server_rounds,
            server_load,
            loops: true,
            servers: true,
            profile: true,
        }
    }
}

const USAGE: &str = "cargo xtask bench [--quick|--smoke] [--only loops|servers|profile] [--no-profile]\n       cargo xtask bench --readme [RESULTS.md]";

pub fn parse_args(args: &[String]) -> Result<Plan> {
    let mut kind = RunKind::Full;
    let (mut loops, mut servers, mut profile) = (true, true, true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => kind = RunKind::Quick,
            "--smoke" => kind = RunKind::Smoke,
            "--no-profile" => profile = false,
            "--only" => match it.next().map(String::as_str) {
                Some("loops") => servers = false,
                Some("servers") => loops = false,
                Some("profile") => (loops, servers) = (false, false),
                other => {
                    bail!("--only takes loops, servers or profile, not {other:?}\n{USAGE}")
                }
            },
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let mut plan = Plan::new(kind);
    plan.loops = loops;
    plan.servers = servers;
    plan.profile = profile;
    Ok(plan)
}
