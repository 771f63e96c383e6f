//! `seawall-collector`: receives agents' event streams over mutual TLS, stores them durably and
//! forwards them to SIEM sinks. The binary (`main.rs`) is a thin CLI over [`run`].

pub mod config;
pub mod filter;
pub mod identity;
pub mod intake;
pub mod service;
pub mod sinks;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use seawall_proto::pb::collector_server::CollectorServer;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::SinkConfig;
use crate::store::backend::{Embedded, EventStore};
use crate::store::nats::{NatsConfig, NatsStore};
use crate::store::{Store, StoreOptions};

/// An error and each of its sources, `": "`-separated: for log fields and peer-visible statuses,
/// where the error's own `Display` (which leaves the source out) would hide the cause.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Default largest gRPC message: a batch of events.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How the server authenticates agents.
#[derive(Debug, Clone)]
pub enum Security {
    /// Mutual TLS: the server's certificate and key, and the CA that signs agents' certificates.
    MutualTls {
        cert: PathBuf,
        key: PathBuf,
        client_ca: PathBuf,
    },
    /// Plain text, no authentication. Local trials only.
    Insecure,
}

/// Everything [`run`] needs, resolved from flags and the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: PathBuf,
    pub security: Security,
    pub store: StoreOptions,
    pub sinks: Vec<SinkConfig>,
    pub max_message_bytes: usize,
    /// How client certificates get their role (mutual TLS only).
    pub roles: identity::RolesConfig,
    /// Store events in NATS JetStream instead of the embedded store.
    pub nats: Option<NatsConfig>,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Serves on `listener` until `shutdown` completes, then stops the sinks.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store: Arc<dyn EventStore> = match &settings.nats {
        Some(nats) => NatsStore::connect(nats)
            .await
            .context("opening the NATS JetStream store")?,
        None => {
            let store_dir = settings.data.join("events");
            let dir = store_dir.clone();
            let opts = settings.store.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&dir, opts)).await??;
            tracing::info!(path = %store_dir.display(), last_id = store.last_id(), agents = store.agent_count(), "event store open");
            Arc::new(Embedded(Arc::new(store)))
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sink_tasks = sinks::spawn_all(&settings.sinks, store.clone(), &settings.data, stop_rx)
        .await
        .context("starting sinks")?;

    // Hourly retention pass, so age-based retention applies even when nothing is written.
    let retention_store = store.clone();
    let retention = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = retention_store.apply_retention().await {
                tracing::error!(error = %ErrorChain(&e), "retention pass failed");
            }
        }
    });

    let insecure = matches!(settings.security, Security::Insecure);
    let mut builder = Server::builder();
    if let Security::MutualTls {
        cert,
        key,
        client_ca,
    } = &settings.security
    {
        let identity =
            Identity::from_pem(read(cert, "server certificate")?, read(key, "server key")?);
        // With a client CA set, tonic requires every client to present a certificate that CA
        // signed; a client without one fails the handshake and never reaches the service.
        let tls = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read(client_ca, "client CA")?));
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    let access = if insecure {
        service::Access::Insecure
    } else {
        service::Access::Roles(settings.roles.clone())
    };
    let service = CollectorServer::new(service::CollectorService::new(store.clone(), access))
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes.max(DEFAULT_MAX_MESSAGE_BYTES));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mtls = !insecure, "collector listening");
    let result = builder
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .context("gRPC server");
    let _ = stop_tx.send(true);
    retention.abort();
    for t in sink_tasks.tasks {
        let _ = t.await;
    }
    result
}
