//! The sender task: streams the spool to the collector and applies its acknowledgements.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::spool::ReadPos;
use super::{CollectorConfig, DeliveryError, Shared};

/// Batches sent and not yet acknowledged at once.
const WINDOW: usize = 8;
const BATCH_EVENTS: usize = 500;
/// Stays well under the collector's default 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The collector endpoint, resolved once at start so that configuration errors surface then.
pub(crate) struct Target {
    endpoint: Endpoint,
    url: String,
    agent_id: String,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, DeliveryError> {
    std::fs::read(path).map_err(|source| DeliveryError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A connection to the collector for `cfg` (used by the sender and by `seawall events`).
pub(crate) fn endpoint(cfg: &CollectorConfig) -> Result<Endpoint, DeliveryError> {
    let endpoint = Endpoint::from_shared(cfg.url.clone())
        .map_err(|e| DeliveryError::Config(format!("collector URL {:?}: {e}", cfg.url)))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    if cfg.insecure {
        if cfg.url.starts_with("https://") {
            return Err(DeliveryError::Config(
                "an insecure collector connection needs an http:// URL".into(),
            ));
        }
        return Ok(endpoint);
    }
    if !cfg.url.starts_with("https://") {
        return Err(DeliveryError::Config(format!(
            "collector URL {:?} must start with https:// (mutual TLS); use insecure mode only for a local trial",
            cfg.url
        )));
    }
    let (Some(ca), Some(cert), Some(key)) = (&cfg.ca, &cfg.cert, &cfg.key) else {
        return Err(DeliveryError::Config(
            "mutual TLS needs the collector CA, this agent's certificate and its key (ca, cert, key)".into(),
        ));
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("collector CA", ca)?))
        .identity(Identity::from_pem(
            read("agent certificate", cert)?,
            read("agent key", key)?,
        ));
    endpoint
        .tls_config(tls)
        .map_err(|source| DeliveryError::Connect {
            url: cfg.url.clone(),
            source,
        })
}

impl Target {
    pub(crate) fn new(cfg: &CollectorConfig) -> Result<Target, DeliveryError> {
        let agent_id = cfg.agent_id.clone().unwrap_or_else(host_name);
        Ok(Target {
            endpoint: endpoint(cfg)?,
            url: cfg.url.clone(),
            agent_id,
        })
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs until `stop` turns true, reconnecting with backoff after every failure.
pub(crate) async fn run(shared: Arc<Shared>, target: Target, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = session(&shared, &target, &mut stop, &mut backoff).await;
        shared.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(collector = %target.url, error = %e, retry_in_ms = backoff.as_millis() as u64, "collector unavailable; events stay spooled");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One Publish stream: send from the last acknowledgement on, until an error or `stop`.
async fn session(
    shared: &Shared,
    target: &Target,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), DeliveryError> {
    let channel: Channel = tokio::select! {
        c = target.endpoint.connect() => c.map_err(|source| DeliveryError::Connect { url: target.url.clone(), source })?,
        _ = stop.changed() => return Ok(()),
    };
    let mut client = CollectorClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::PublishRequest>(WINDOW);
    let mut acks = client.publish(ReceiverStream::new(rx)).await?.into_inner();
    shared.connected.store(true, Ordering::Relaxed);
    let mut sent = shared.spool().acked();
    let mut pos = ReadPos::default();
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    tracing::info!(collector = %target.url, resume_after = sent, "connected to the collector");
    loop {
        while in_flight.len() < WINDOW {
            let batch = shared
                .spool()
                .read_after(sent, &mut pos, BATCH_EVENTS, BATCH_BYTES)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let req = pb::PublishRequest {
                agent_id: target.agent_id.clone(),
                events: batch.iter().map(pb::Event::from).collect(),
            };
            tx.send(req).await.map_err(|_| DeliveryError::Stopped)?;
            sent = last;
            in_flight.push_back(last);
        }
        tokio::select! {
            ack = acks.message() => {
                let Some(ack) = ack? else {
                    return Err(DeliveryError::Stream(tonic::Status::unavailable("collector closed the stream")));
                };
                while in_flight.front().is_some_and(|&s| s <= ack.acked_seq) {
                    in_flight.pop_front();
                }
                shared.spool().ack(ack.acked_seq)?;
                if let Ok(mut t) = shared.last_progress.lock() {
                    *t = Instant::now();
                }
                *backoff = Duration::from_millis(100);
            }
            _ = shared.wake.notified(), if in_flight.len() < WINDOW => {}
            _ = flush.tick() => shared.sync()?,
            _ = stop.changed() => return Ok(()),
        }
    }
}
