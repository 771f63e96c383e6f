//! Shared test fixtures: a PKI made with rcgen, the collector binary as a real process, and the
//! agent's delivery client. Everything listens on 127.0.0.1 only.
#![allow(dead_code)]

pub mod receiver;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use seawall_delivery::{CollectorConfig, Delivery};
use seawall_proto::event::{Action, Container, Event, Kind, Severity};

/// A CA and the paths of the PEM files it signed.
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca: PathBuf,
}

pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A leaf certificate with this subject CN, valid for localhost and 127.0.0.1.
    pub fn leaf(&self, cn: &str) -> Pair {
        self.issue(cn, None, &["localhost", "127.0.0.1"])
    }

    /// An agent's certificate (subject `OU=seawall-agent`) for the node named `cn`.
    pub fn agent(&self, cn: &str) -> Pair {
        self.issue(cn, Some("seawall-agent"), &[cn])
    }

    /// An agent certificate shared by several nodes, each named in a DNS subject alternative name.
    pub fn agent_for(&self, cn: &str, nodes: &[&str]) -> Pair {
        self.issue(cn, Some("seawall-agent"), nodes)
    }

    /// A consumer's certificate (subject `OU=seawall-reader`).
    pub fn reader(&self, cn: &str) -> Pair {
        self.issue(cn, Some("seawall-reader"), &[])
    }

    fn issue(&self, cn: &str, ou: Option<&str>, names: &[&str]) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pair = Pair {
            cert: self.dir.join(format!("{cn}.pem")),
            key: self.dir.join(format!("{cn}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}

/// The collector binary running as a child process; killed (by its pid) when dropped.
pub struct CollectorProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The metrics endpoint, when started with `--metrics`.
    pub metrics: Option<SocketAddr>,
}

impl CollectorProcess {
    pub fn start(args: &[String]) -> CollectorProcess {
        Self::start_with_env(args, &[])
    }

    /// Starts it with extra environment variables (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> CollectorProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seawall-collector"))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start seawall-collector");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout for as long as the collector lives, so its pipe never closes under it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let next = |prefix: &str| -> SocketAddr {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("collector printed no {prefix:?} line"));
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected line {line:?}, wanted {prefix:?}"))
                .parse()
                .unwrap()
        };
        let addr = next("listening on ");
        let metrics = args
            .iter()
            .any(|a| a == "--metrics")
            .then(|| next("metrics on "));
        CollectorProcess {
            child,
            addr,
            metrics,
        }
    }

    /// The Prometheus exposition, as a scraper gets it.
    pub async fn scrape(&self) -> String {
        let addr = self.metrics.expect("started with --metrics");
        let res = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("scrape the metrics endpoint");
        assert!(res.status().is_success(), "{}", res.status());
        res.text().await.unwrap()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `HUP`, …) to this collector only.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} the collector");
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mtls_args(pki: &Pki, server: &Pair, listen: &str, data: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        listen.into(),
        "--data".into(),
        data.display().to_string(),
        "--tls-cert".into(),
        server.cert.display().to_string(),
        "--tls-key".into(),
        server.key.display().to_string(),
        "--client-ca".into(),
        pki.ca.display().to_string(),
    ]
}

pub fn agent_config(addr: SocketAddr, pki: &Pki, client: &Pair, spool: &Path) -> CollectorConfig {
    CollectorConfig {
        url: format!("https://127.0.0.1:{}", addr.port()),
        ca: Some(pki.ca.clone()),
        cert: Some(client.cert.clone()),
        key: Some(client.key.clone()),
        insecure: false,
        spool_dir: spool.to_path_buf(),
        spool_max_bytes: 64 << 20,
        agent_id: Some("claimed-id-is-ignored".into()),
    }
}

/// Delivery to a plain-text (`--insecure`) collector.
pub fn insecure_agent_config(addr: SocketAddr, spool: &Path) -> CollectorConfig {
    CollectorConfig {
        url: format!("http://127.0.0.1:{}", addr.port()),
        ca: None,
        cert: None,
        key: None,
        insecure: true,
        spool_dir: spool.to_path_buf(),
        spool_max_bytes: 64 << 20,
        agent_id: Some("insecure-agent".into()),
    }
}

pub fn event(seq: u64, severity: Severity) -> Event {
    Event {
        seq,
        time: "2026-05-01T10:00:00.123456789Z".into(),
        node: "node-1".into(),
        kind: Kind::Exec,
        action: Action::Blocked,
        control: "drift".into(),
        severity,
        message: format!("blocked exec #{seq}"),
        process: None,
        container: Some(Container {
            id: "0123456789abcdef0123".into(),
            name: "web".into(),
            image: "nginx:1.27".into(),
            image_id: "sha256:abc".into(),
            labels: Default::default(),
            kubernetes: None,
            runtime: String::new(),
        }),
        file: None,
        network: None,
        intel: None,
    }
}

/// Polls `cond` every 50 ms for at most `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent's delivery (no TLS) that knows collector `first`, then `second`.
pub async fn deliver_to_both(
    first: &CollectorProcess,
    second: &CollectorProcess,
    spool: &Path,
) -> Delivery {
    let mut cfg = insecure_agent_config(first.addr, spool);
    cfg.url = format!(
        "http://127.0.0.1:{},http://127.0.0.1:{}",
        first.addr.port(),
        second.addr.port()
    );
    Delivery::start(cfg).await.unwrap().0
}

pub async fn wait_acked(d: &Delivery, seq: u64, limit: Duration) {
    wait_until(limit, &format!("ack of seq {seq}"), || {
        d.stats().acked_seq >= seq
    })
    .await;
}

/// The value of the sample `name` (with its labels, as exposed, e.g. `x_total{sink="a"}`) in a
/// Prometheus exposition.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().unwrap())
    })
}

/// Lines of the JSON lines sink file, parsed.
pub fn sink_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("sink line is JSON"))
        .collect()
}
