//! The load generators Debian ships, run on the host against a server on loopback: `wrk`
//! (nginx), `redis-benchmark` (Redis), `pgbench` (PostgreSQL). Each run yields operations per
//! second and any error the generator saw (a failed request makes a throughput meaningless, so it
//! is reported beside the number, never dropped).

use std::process::{Command, Output};

use anyhow::{bail, Context as _, Result};

use super::images;

/// One measured load against one server.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum ServerLoad {
    /// `wrk` GETs of nginx's default page (a static file under a `read_only` rule).
    NginxStatic,
    /// `redis-benchmark -t set`.
    RedisSet,
    /// `redis-benchmark -t get`.
    RedisGet,
    /// `pgbench`'s default TPC-B-like read/write transaction.
    PgbenchTpcb,
    /// `pgbench -S`, select only.
    PgbenchSelect,
}

impl ServerLoad {
    pub const ALL: [ServerLoad; 5] = [
        ServerLoad::NginxStatic,
        ServerLoad::RedisSet,
        ServerLoad::RedisGet,
        ServerLoad::PgbenchTpcb,
        ServerLoad::PgbenchSelect,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ServerLoad::NginxStatic => "nginx: static page (wrk)",
            ServerLoad::RedisSet => "Redis: SET (redis-benchmark)",
            ServerLoad::RedisGet => "Redis: GET (redis-benchmark)",
            ServerLoad::PgbenchTpcb => "PostgreSQL: TPC-B-like (pgbench)",
            ServerLoad::PgbenchSelect => "PostgreSQL: select-only (pgbench -S)",
        }
    }

    /// The unit of the throughput.
    pub fn unit(self) -> &'static str {
        match self {
            ServerLoad::NginxStatic => "requests/s",
            ServerLoad::RedisSet | ServerLoad::RedisGet => "requests/s",
            ServerLoad::PgbenchTpcb | ServerLoad::PgbenchSelect => "transactions/s",
        }
    }
}

/// How much load each generator offers.
#[derive(Clone, Copy)]
pub struct LoadSize {
    /// Seconds of `wrk` and of each `pgbench` run.
    pub secs: u64,
    /// Requests per `redis-benchmark` test.
    pub redis_requests: u64,
    /// `pgbench -i -s` scale (100,000 rows of `pgbench_accounts` per unit).
    pub pgbench_scale: u32,
}

/// A measured throughput and what the generator reported as failing.
pub struct Measured {
    pub per_sec: f64,
    pub errors: Option<String>,
}

fn output(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let o = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !o.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(o)
}

/// `wrk` on two threads with 32 connections (the machine has two CPUs, shared with the server).
pub fn wrk(port: u16, secs: u64) -> Result<Measured> {
    let o = output(Command::new("wrk").args([
        "-t2",
        "-c32",
        &format!("-d{secs}s"),
        &format!("http://127.0.0.1:{port}/"),
    ]))?;
    parse_wrk(&String::from_utf8_lossy(&o.stdout))
}

fn parse_wrk(text: &str) -> Result<Measured> {
    let per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Non-2xx") || l.starts_with("Socket errors"))
        .collect();
    Ok(Measured {
        per_sec,
        errors: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}

/// `redis-benchmark` of SET and GET with 50 clients; returns (SET, GET).
pub fn redis(port: u16, requests: u64) -> Result<(Measured, Measured)> {
    let o = output(Command::new("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-c",
        "50",
        "-n",
        &requests.to_string(),
        "-t",
        "set,get",
        "--csv",
    ]))?;
    parse_redis(&String::from_utf8_lossy(&o.stdout))
}

fn parse_redis(text: &str) -> Result<(Measured, Measured)> {
    let rps = |test: &str| -> Result<Measured> {
        let quoted = format!("\"{test}\"");
        let line = text
            .lines()
            .find(|l| l.starts_with(&quoted))
            .with_context(|| format!("no {test} line in redis-benchmark's output:\n{text}"))?;
        let per_sec = line
            .split(',')
            .nth(1)
            .map(|v| v.trim_matches('"'))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no requests/s in {line:?}"))?;
        Ok(Measured {
            per_sec,
            errors: None,
        })
    };
    Ok((rps("SET")?, rps("GET")?))
}

/// Debian's pgbench ships only in the server package (`postgresql-15`), whose installation
/// would start a host cluster on the port the bench needs; so it runs from the server image's
/// cached rootfs, with `chroot`, as a host process.
fn pg_tool(tool: &str) -> Command {
    let mut c = Command::new("chroot");
    c.arg(images::rootfs())
        .arg(format!("/usr/lib/postgresql/15/bin/{tool}"));
    c
}

/// Whether PostgreSQL answers on `port` (`pg_isready`).
pub fn pg_ready(port: u16) -> bool {
    pg_tool("pg_isready")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn pgbench() -> Command {
    let mut c = pg_tool("pgbench");
    // The server's snakeoil TLS would put encryption cost into every number; the bench measures
    // the database, over loopback.
    c.env("PGSSLMODE", "disable")
        .args(["-h", "127.0.0.1", "-U", "postgres"]);
    c
}

/// `pgbench -i`: the tables a run needs, in database `postgres`.
pub fn pgbench_init(port: u16, scale: u32) -> Result<()> {
    output(pgbench().args([
        "-p",
        &port.to_string(),
        "-i",
        "-q",
        "-s",
        &scale.to_string(),
        "postgres",
    ]))?;
    Ok(())
}

/// `pgbench` with 8 clients on 2 threads for `secs`; `select_only` adds `-S`.
pub fn pgbench_run(port: u16, secs: u64, select_only: bool) -> Result<Measured> {
    let mut c = pgbench();
    c.args([
        "-p",
        &port.to_string(),
        "-c",
        "8",
        "-j",
        "2",
        "-n",
        "-T",
        &secs.to_string(),
    ]);
    if select_only {
        c.arg("-S");
    }
    let o = output(c.arg("postgres"))?;
    parse_pgbench(&String::from_utf8_lossy(&o.stdout))
}

fn parse_pgbench(text: &str) -> Result<Measured> {
    let per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no `tps =` in pgbench's output:\n{text}"))?;
    let failed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of failed transactions:"))
        .map(|v| v.trim().to_string());
    Ok(Measured {
        per_sec,
        errors: failed
            .filter(|f| !f.starts_with("0 "))
            .map(|f| format!("failed transactions: {f}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk() {
        let t = "Running 5s test @ http://127.0.0.1:8080/\n  2 threads and 32 connections\n\
                 40123 requests in 5.00s, 32.5MB read\nRequests/sec:   8024.55\nTransfer/sec:      6.50MB\n";
        let m = parse_wrk(t).unwrap();
        assert!((m.per_sec - 8024.55).abs() < 1e-6);
        assert!(m.errors.is_none());
        let bad = format!("{t}  Non-2xx or 3xx responses: 17\n");
        assert_eq!(
            parse_wrk(&bad).unwrap().errors.as_deref(),
            Some("Non-2xx or 3xx responses: 17")
        );
        assert!(parse_wrk("connection refused").is_err());
    }

    #[test]
    fn parses_redis_benchmark_csv() {
        let t = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\
                 \"SET\",\"61349.69\",\"0.433\",\"0.120\"\n\"GET\",\"70422.54\",\"0.379\",\"0.104\"\n";
        let (set, get) = parse_redis(t).unwrap();
        assert!((set.per_sec - 61349.69).abs() < 1e-6);
        assert!((get.per_sec - 70422.54).abs() < 1e-6);
        assert!(parse_redis("\"SET\",\"1\"\n").is_err());
    }

    #[test]
    fn parses_pgbench() {
        let t = "transaction type: <builtin: TPC-B (sort of)>\nnumber of clients: 8\n\
                 number of transactions actually processed: 9000\n\
                 number of failed transactions: 0 (0.000%)\nlatency average = 8.9 ms\n\
                 initial connection time = 12.3 ms\ntps = 897.123456 (without initial connection time)\n";
        let m = parse_pgbench(t).unwrap();
        assert!((m.per_sec - 897.123456).abs() < 1e-6);
        assert!(m.errors.is_none());
        let failed = t.replace("0 (0.000%)", "3 (0.030%)");
        assert_eq!(
            parse_pgbench(&failed).unwrap().errors.as_deref(),
            Some("failed transactions: 3 (0.030%)")
        );
    }
}
