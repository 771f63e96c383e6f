//! What every Seawall daemon (the agent, the collector) needs from the host it runs on:
//!
//! - [`metrics`]: a Prometheus endpoint (`GET /metrics`) over a [`prometheus_client`] registry;
//! - [`notify`]: systemd's notification protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`,
//!   `STATUS=`), through the `sd-notify` crate;
//! - [`health`]: named components that each show progress, and a watchdog that pings
//!   `WATCHDOG=1` only while every one of them has made progress within its bound;
//! - [`ErrorChain`]: an error and its sources on one line.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use seawall_service::{health::{self, Health}, metrics, notify::Notifier};
//!
//! let mut registry = prometheus_client::registry::Registry::default();
//! let requests = prometheus_client::metrics::counter::Counter::<u64>::default();
//! registry.register("collector_requests", "Requests served", requests.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9465").await?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let shutdown = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
//!     let _ = rx.wait_for(|s| *s).await;
//! };
//! tokio::spawn(metrics::serve(listener, Arc::new(registry), shutdown(stopped.clone())));
//!
//! let health = Health::new();
//! let store = health.register("store", Duration::from_secs(10));
//! let notifier = Notifier::from_env();
//! if let Some(n) = &notifier {
//!     n.ready("serving");
//! }
//! if let (Some(n), Some(every)) = (notifier, seawall_service::notify::watchdog_interval()) {
//!     tokio::spawn(health::watchdog(n, every, health.clone(), shutdown(stopped)));
//! }
//! store.beat(); // wherever the store makes progress (and on a timer when idle)
//! # let _ = stop;
//! # Ok(()) }
//! ```

mod error_chain;
pub mod health;
pub mod metrics;
pub mod notify;

pub use error_chain::ErrorChain;
pub use prometheus_client;
