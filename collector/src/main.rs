//! `seawall-collector`: flags, config file and signals; everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use seawall_collector::config::Config;
use seawall_collector::{run, Host, Security, Settings, DEFAULT_MAX_MESSAGE_BYTES};
use seawall_service::notify::Notifier;

/// Seawall's central collector: receives agents' events over mutual TLS, stores them and
/// forwards them to SIEMs.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (default 0.0.0.0:7443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the event store and the sinks' cursors.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Server certificate (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA that signs agents' client certificates (PEM).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// TOML config file (store limits, sinks; flags override its top-level keys). SIGHUP
    /// re-reads its `[[sink]]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9466.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Plain-text gRPC without authentication: any client can publish as any agent. Local
    /// trials only.
    #[arg(long)]
    insecure: bool,
    /// Store events in NATS JetStream at these servers (comma-separated nats:// URLs) instead of
    /// the embedded store; several collectors may share one stream.
    #[arg(long, value_delimiter = ',')]
    nats: Vec<String>,
    /// JetStream stream name (default SEAWALL_EVENTS).
    #[arg(long)]
    nats_stream: Option<String>,
    /// Replicas of the stream when the collector creates it (default 1).
    #[arg(long)]
    nats_replicas: Option<usize>,
    /// NATS credentials file.
    #[arg(long)]
    nats_creds: Option<std::path::PathBuf>,
    /// CA of the NATS servers' certificates (PEM): connect with TLS.
    #[arg(long)]
    nats_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients.
    #[arg(long)]
    nats_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for `--nats-cert`.
    #[arg(long)]
    nats_key: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let nats = nats_settings(&cli, cfg.nats.clone());
    let listen = cli
        .listen
        .or(cfg.listen)
        .unwrap_or_else(|| "0.0.0.0:7443".parse().expect("valid default"));
    let data = cli.data.or(cfg.data.clone()).context(
        "--data DIR (or `data` in the config file) is required: where events are stored",
    )?;
    let insecure = cli.insecure || cfg.insecure;
    let security = if insecure {
        eprintln!(
            "WARNING: seawall-collector is running with --insecure: no TLS, no client \
             authentication, any client can publish events as any agent. Use only for local trials."
        );
        tracing::warn!("INSECURE MODE: plain-text gRPC without client authentication");
        Security::Insecure
    } else {
        let need = |flag: Option<PathBuf>, file: Option<PathBuf>, name: &str| {
            flag.or(file).with_context(|| {
                format!(
                    "--{name} is required for mutual TLS (or pass --insecure for a local trial)"
                )
            })
        };
        Security::MutualTls {
            cert: need(cli.tls_cert, cfg.tls.cert.clone(), "tls-cert")?,
            key: need(cli.tls_key, cfg.tls.key.clone(), "tls-key")?,
            client_ca: need(cli.client_ca, cfg.tls.client_ca.clone(), "client-ca")?,
        }
    };
    let settings = Settings {
        data,
        security,
        store: cfg.store.options(),
        sinks: cfg.sinks.clone(),
        max_message_bytes: cfg.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        roles: cfg.roles.clone(),
        nats,
        config_file: cli.config.clone(),
    };
    let metrics_addr = cli.metrics.or(cfg.metrics);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        // Before anything else: SIGHUP's default action would end the process.
        let reload = reload_requests().context("installing the SIGHUP handler")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let metrics = match metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("serving metrics on {addr}"))?,
            ),
            None => None,
        };
        // Tests and scripts read the bound addresses (useful with port 0) from these lines.
        announce(&format!("listening on {}", listener.local_addr()?));
        if let Some(m) = &metrics {
            announce(&format!("metrics on {}", m.local_addr()?));
        }
        let host = Host {
            listener,
            metrics,
            notifier: Notifier::from_env(),
            reload,
        };
        run(settings, host, shutdown_signal()).await
    })
}

/// A line on stdout; a closed stdout is no reason to stop.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// One message per SIGHUP; several before the collector gets to them make one reload.
fn reload_requests() -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the sink configuration");
            if tx.try_send(()).is_err() && tx.is_closed() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The `[nats]` table with the `--nats*` flags over it; `None` when neither names a server.
fn nats_settings(
    cli: &Cli,
    file: Option<seawall_collector::store::nats::NatsConfig>,
) -> Option<seawall_collector::store::nats::NatsConfig> {
    let mut n = file.unwrap_or_default();
    if !cli.nats.is_empty() {
        n.urls = cli.nats.clone();
    }
    n.stream = cli.nats_stream.clone().or(n.stream);
    n.replicas = cli.nats_replicas.or(n.replicas);
    n.creds = cli.nats_creds.clone().or(n.creds);
    n.ca = cli.nats_ca.clone().or(n.ca);
    n.cert = cli.nats_cert.clone().or(n.cert);
    n.key = cli.nats_key.clone().or(n.key);
    (!n.urls.is_empty()).then_some(n)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
