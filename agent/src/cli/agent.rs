//! `seawall agent`: builds the daemon's dependencies from the configuration and runs it until
//! SIGTERM or Ctrl-C.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use seawall_delivery::{CollectorConfig, Delivery};
use seawall_service::{health::Health, notify::Notifier};

use crate::{
    daemon::{self, config::AgentConfig, Agent, Output},
    ops::{api, metrics::Metrics, status::Status},
    output::sinks::Sinks,
};

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs the agent with `cfg`.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    // Installed first, so a SIGTERM during start-up is not lost.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let metrics = Arc::new(Metrics::new());
    let metrics_listener = match &cfg.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?,
        ),
        None => None,
    };
    let api = api::bind(&cfg.api_socket)
        .with_context(|| format!("binding the local API socket {}", cfg.api_socket.display()))?;
    let mut sinks = Sinks::open(&cfg.output, metrics.clone())?;
    let mut first_seq = 1;
    let delivery = match &cfg.collector {
        None => None,
        Some(url) => {
            let (d, last_seq) = Delivery::start(CollectorConfig {
                url: url.clone(),
                ca: cfg.collector_ca.clone(),
                cert: cfg.collector_cert.clone(),
                key: cfg.collector_key.clone(),
                insecure: cfg.collector_insecure,
                spool_dir: cfg.spool_dir.clone(),
                spool_max_bytes: cfg.spool_max_bytes,
                agent_id: cfg.node.clone(),
            })
            .await
            .with_context(|| format!("starting delivery to the collector {url}"))?;
            // Numbering continues after everything this agent ever spooled.
            first_seq = last_seq + 1;
            sinks.forward_to(d.clone());
            Some(d)
        }
    };
    let agent = Agent {
        api,
        metrics_listener,
        metrics,
        status: Arc::new(Mutex::new(Status::default())),
        health: Health::new(),
        notifier: Notifier::from_env(),
        output: Output {
            sinks,
            delivery,
            first_seq,
        },
        sources: crate::runtime::sources::choose(&cfg.source_sockets()),
        config: cfg.clone(),
    };
    let result = daemon::run(agent, shutdown_signal(term)).await;
    let _ = std::fs::remove_file(&cfg.api_socket);
    result.map_err(anyhow::Error::from)
}
