//! Real servers under the profiles we ship: nginx, Redis and PostgreSQL from Debian (see
//! `images`), each in its own container with `--network host` on loopback, loaded from the
//! host by `wrk`, `redis-benchmark` and `pgbench`, under no agent / seawall audit / seawall
//! enforce in alternating rounds. *Enforce* is `profiles/` exactly as shipped; *audit* is the
//! same files with every `mode = "enforce"` turned into `"audit"`.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    agent_stats::{self, AgentCost},
    configs::{Agent, Config, ProfileFiles},
    images::{self, ServerImage},
    loadgen::{self, LoadSize, Measured, ServerLoad},
    noise::Noise,
    unique_name, Env,
};
use crate::root;

/// The configurations the servers run under, in round order.
pub const CONFIGS: [Config; 3] = [
    Config::NoAgent,
    Config::SeawallAudit,
    Config::SeawallEnforce,
];

/// One measured run of one load.
pub struct Run {
    pub per_sec: f64,
    /// Operations of the whole generator run this one is part of (both tests of one
    /// `redis-benchmark`), for per-operation agent costs.
    pub ops: f64,
    /// The agent's CPU and context switches during the load (none without an agent).
    pub agent: Option<AgentCost>,
}

/// Everything the real-server half of the bench measured.
#[derive(Default)]
pub struct ServerResults {
    /// Per (configuration, load): one run per round.
    pub runs: BTreeMap<(usize, ServerLoad), Vec<Run>>,
    /// What a load generator reported as failing: (configuration, load, message).
    pub errors: Vec<(usize, ServerLoad, String)>,
    /// Events the agent reported as blocked or audited for a server's container: per
    /// (configuration, server name), the event lines.
    pub violations: BTreeMap<(usize, &'static str), Vec<String>>,
}

/// The shipped profiles (`profiles/*.toml`), as shipped (`enforce`) or with every mode set to
/// audit (`audit`).
pub fn shipped_profiles(audit: bool) -> Result<ProfileFiles> {
    let dir = root().join("profiles");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        files.push((name, if audit { all_audit(&text) } else { text }));
    }
    files.sort();
    Ok(files)
}

/// The profile text with every `mode = "enforce"` (of the profile and of each control) set to
/// `"audit"`; everything else, comments included, stays as written.
pub fn all_audit(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("");
        let is_mode = code
            .trim_start()
            .strip_prefix("mode")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_mode && code.contains("\"enforce\"") {
            out.push_str(&line.replacen("\"enforce\"", "\"audit\"", 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// A server's container, removed (by its unique name) on drop.
pub struct ServerContainer {
    pub name: String,
}

impl ServerContainer {
    pub fn start(image: &ServerImage) -> Result<ServerContainer> {
        if std::net::TcpListener::bind(("127.0.0.1", image.port)).is_err() {
            bail!(
                "127.0.0.1:{} is in use; the {} profile's listen_allow leaves the server no other \
                 port here. Stop what listens there (ss -ltnp) and run the bench again",
                image.port,
                image.name
            );
        }
        let name = unique_name(image.name);
        let st = Command::new("docker")
            .args(["run", "-d", "--rm", "--network", "host", "--name", &name])
            .arg(image.reference)
            .stdout(Stdio::null())
            .status()
            .context("docker run")?;
        let c = ServerContainer { name };
        if !st.success() {
            bail!("docker run {} failed: {st}", image.reference);
        }
        Ok(c)
    }

    fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", "--tail", "30", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Waits until the server answers its own protocol on its port.
    pub fn wait_ready(&self, image: &ServerImage) -> Result<()> {
        let start = Instant::now();
        let port = image.port.to_string();
        loop {
            let ready = match image.name {
                "nginx" => http_ok(image.port),
                "redis" => Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &port, "ping"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG"),
                _ => loadgen::pg_ready(image.port),
            };
            if ready {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} did not answer on 127.0.0.1:{port} within 60 s; its log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ServerContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn http_ok(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// How many generator runs measure `image`: nginx one `wrk`, Redis one `redis-benchmark` (SET
/// and GET), PostgreSQL two `pgbench` (read/write, then select-only).
fn steps_of(image: &ServerImage) -> usize {
    if image.name == "postgres" {
        2
    } else {
        1
    }
}

/// Runs generator run `step` of `image` once (`size`): throughput per load it measured.
fn drive(image: &ServerImage, step: usize, size: LoadSize) -> Result<Vec<(ServerLoad, Measured)>> {
    Ok(match (image.name, step) {
        ("nginx", _) => vec![(
            ServerLoad::NginxStatic,
            loadgen::wrk(image.port, size.secs)?,
        )],
        ("redis", _) => {
            let (set, get) = loadgen::redis(image.port, size.redis_requests)?;
            vec![(ServerLoad::RedisSet, set), (ServerLoad::RedisGet, get)]
        }
        (_, 0) => vec![(
            ServerLoad::PgbenchTpcb,
            loadgen::pgbench_run(image.port, size.secs, false)?,
        )],
        _ => vec![(
            ServerLoad::PgbenchSelect,
            loadgen::pgbench_run(image.port, size.secs, true)?,
        )],
    })
}

/// The alternating rounds (the images are built before the host lock is taken).
pub fn measure(env: &Env, noise: &mut Noise) -> Result<ServerResults> {
    let plan = &env.plan;
    let mut results = ServerResults::default();
    for round in 0..plan.server_rounds {
        for (ci, &c) in CONFIGS.iter().enumerate() {
            noise.sample();
            eprintln!(
                "xtask bench: servers, round {}/{}: {}",
                round + 1,
                plan.server_rounds,
                c.label()
            );
            let agent = match c {
                Config::NoAgent => None,
                _ => Some(Agent::start(
                    &env.agent_bin,
                    &env.work.join("agent-servers"),
                    &shipped_profiles(c == Config::SeawallAudit)?,
                    None,
                    None,
                )?),
            };
            for image in images::ALL {
                measure_server(&mut results, ci, agent.as_ref(), image, plan.server_load)?;
            }
        }
    }
    Ok(results)
}

fn measure_server(
    results: &mut ServerResults,
    ci: usize,
    agent: Option<&Agent>,
    image: &'static ServerImage,
    size: LoadSize,
) -> Result<()> {
    let container = ServerContainer::start(image)?;
    if let Some(a) = agent {
        // The profile named after the server must be the one applied (the image globs).
        a.wait_monitoring(&container.name, image.name)?;
    }
    container.wait_ready(image)?;
    if image.name == "postgres" {
        loadgen::pgbench_init(image.port, size.pgbench_scale)?;
    }
    // Warm-up: page cache, the server's own caches and the agent's per-inode answers.
    let warm = LoadSize {
        secs: 2,
        redis_requests: size.redis_requests / 10,
        ..size
    };
    for step in 0..steps_of(image) {
        drive(image, step, warm)?;
    }
    for step in 0..steps_of(image) {
        let before = agent.map(|a| agent_stats::cost_now(a.pid())).transpose()?;
        let start = Instant::now();
        let measured = drive(image, step, size)?;
        let wall = start.elapsed();
        let cost = match (agent, before) {
            (Some(a), Some(b)) => Some(agent_stats::cost_now(a.pid())?.since(&b, wall)),
            _ => None,
        };
        let ops = match image.name {
            "redis" => 2.0 * size.redis_requests as f64,
            _ => measured.iter().map(|m| m.1.per_sec).sum::<f64>() * wall.as_secs_f64(),
        };
        for (load, mut one) in measured {
            if let Some(e) = one.errors.take() {
                results.errors.push((ci, load, e));
            }
            results.runs.entry((ci, load)).or_default().push(Run {
                per_sec: one.per_sec,
                ops,
                agent: cost,
            });
        }
    }
    let name = container.name.clone();
    drop(container);
    if let Some(a) = agent {
        let needle = format!("\"name\":\"{name}\"");
        let found: Vec<String> = a
            .events()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter(|l| {
                l.contains("\"action\":\"blocked\"") || l.contains("\"action\":\"audited\"")
            })
            .map(str::to_string)
            .collect();
        results
            .violations
            .entry((ci, image.name))
            .or_default()
            .extend(found);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_profile::{Mode, ProfileSet};

    fn load(files: &ProfileFiles) -> (tempfile_dir::Dir, ProfileSet) {
        let dir = tempfile_dir::Dir::new();
        for (name, text) in files {
            std::fs::write(dir.0.join(name), text).unwrap();
        }
        let set = ProfileSet::load_dir(&dir.0).unwrap_or_else(|r| panic!("{r}"));
        (dir, set)
    }

    /// A scratch directory removed on drop (xtask has no tempfile dependency).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("xtask-servers-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn each_server_image_gets_its_shipped_profile_and_may_listen_on_its_port() {
        let (_d, set) = load(&shipped_profiles(false).unwrap());
        for image in images::ALL {
            let p = set.for_image(image.reference, None);
            assert_eq!(
                p.name, image.name,
                "{} is matched by {}",
                image.reference, p.name
            );
            let listen = p.network.listen_allow.as_ref().expect("a listen list");
            assert!(
                listen.iter().any(|r| r.contains(image.port)),
                "{}: port {} not in listen_allow",
                image.name,
                image.port
            );
        }
    }

    #[test]
    fn audit_profiles_enforce_nothing_and_keep_every_rule() {
        let (_e, enforce) = load(&shipped_profiles(false).unwrap());
        let (_a, audit) = load(&shipped_profiles(true).unwrap());
        let mut enforced_somewhere = false;
        for (e, a) in enforce.profiles().zip(audit.profiles()) {
            assert_eq!(e.name, a.name);
            let modes = [
                a.mode,
                a.drift.mode,
                a.exec.mode,
                a.exec.container_exec,
                a.files.mode,
                a.network.mode,
            ];
            assert!(
                modes.iter().all(|&m| m != Mode::Enforce),
                "{}: {modes:?}",
                a.name
            );
            enforced_somewhere |= [
                e.mode,
                e.drift.mode,
                e.exec.mode,
                e.files.mode,
                e.network.mode,
            ]
            .contains(&Mode::Enforce);
            // Same rules: only the modes differ.
            assert_eq!(e.drift.allow, a.drift.allow);
            assert_eq!(e.exec.allow, a.exec.allow);
            assert_eq!(e.exec.deny, a.exec.deny);
            assert_eq!(e.network.egress_allow, a.network.egress_allow);
            assert_eq!(e.network.listen_allow, a.network.listen_allow);
            assert_eq!(
                e.drift.mode == Mode::Off,
                a.drift.mode == Mode::Off,
                "{}: audit must not switch a control off",
                a.name
            );
        }
        assert!(enforced_somewhere, "the shipped profiles enforce something");
    }

    #[test]
    fn all_audit_leaves_comments_and_other_values_alone() {
        let t = "# set mode = \"enforce\" later\n[profile]\nmode = \"enforce\" # now\n[files]\n  mode=\"enforce\"\nname = \"enforce\"\n";
        assert_eq!(
            all_audit(t),
            "# set mode = \"enforce\" later\n[profile]\nmode = \"audit\" # now\n[files]\n  mode=\"audit\"\nname = \"enforce\"\n"
        );
    }
}
