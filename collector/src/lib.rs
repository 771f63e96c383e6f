//! `seawall-collector`: receives agents' event streams over mutual TLS, stores them durably and
//! forwards them to SIEM sinks. The binary (`main.rs`) is a thin CLI over [`run`].

pub mod config;
pub mod filter;
pub mod identity;
pub mod intake;
pub mod metrics;
mod server;
pub mod service;
pub mod sinks;
pub mod store;

use std::path::PathBuf;

use seawall_service::notify::Notifier;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::SinkConfig;
use crate::store::nats::NatsConfig;
use crate::store::StoreOptions;

pub use seawall_service::ErrorChain;
pub use server::run;

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
    /// The configuration file a reload reads its `[[sink]]` tables from.
    pub config_file: Option<PathBuf>,
}

/// What the process hands the collector: its bound sockets, the service manager, and the
/// requests to reload. Bound by the caller, so tests and scripts can listen on port 0.
pub struct Host {
    /// The gRPC listener.
    pub listener: TcpListener,
    /// The Prometheus endpoint's listener (`--metrics`).
    pub metrics: Option<TcpListener>,
    /// systemd's notification socket, when run as `Type=notify`.
    pub notifier: Option<Notifier>,
    /// Each message asks for the sink configuration to be reloaded (SIGHUP).
    pub reload: mpsc::Receiver<()>,
}
