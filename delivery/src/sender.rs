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
/// Smallest batch budget: one bounded event always fits a collector's smallest allowed limit.
const MIN_BATCH_BYTES: usize = seawall_proto::event::MAX_EVENT_BYTES;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A collector that holds sent batches this long without acknowledging any is given up on
/// (the next one takes over from the last acknowledgement). HTTP/2 keep-alive alone would notice
/// a stopped or cut-off collector only after 30–40 s, and never one whose process still answers
/// pings while its store hangs.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(15);

/// The collectors, resolved once at start so that configuration errors surface then.
pub(crate) struct Target {
    collectors: Vec<Collector>,
    agent_id: String,
}

struct Collector {
    endpoint: Endpoint,
    url: String,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, DeliveryError> {
    std::fs::read(path).map_err(|source| DeliveryError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A connection to the collector at `url` with `cfg`'s security (used by the sender and by
/// `seawall events`).
pub(crate) fn endpoint(cfg: &CollectorConfig, url: &str) -> Result<Endpoint, DeliveryError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| DeliveryError::Config(format!("collector URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    if cfg.insecure {
        if url.starts_with("https://") {
            return Err(DeliveryError::Config(
                "an insecure collector connection needs an http:// URL".into(),
            ));
        }
        return Ok(endpoint);
    }
    if !url.starts_with("https://") {
        return Err(DeliveryError::Config(format!(
            "collector URL {url:?} must start with https:// (mutual TLS); use insecure mode only for a local trial"
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
            url: url.to_string(),
            source,
        })
}

impl Target {
    pub(crate) fn new(cfg: &CollectorConfig) -> Result<Target, DeliveryError> {
        let agent_id = cfg.agent_id.clone().unwrap_or_else(host_name);
        if cfg.urls().next().is_none() {
            return Err(DeliveryError::Config("no collector URL".into()));
        }
        let collectors = cfg
            .urls()
            .map(|url| {
                Ok(Collector {
                    endpoint: endpoint(cfg, url)?,
                    url: url.to_string(),
                })
            })
            .collect::<Result<_, DeliveryError>>()?;
        Ok(Target {
            collectors,
            agent_id,
        })
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs until `stop` turns true. After a failure it moves to the next collector at once; once
/// every collector has failed in a row it backs off before the next round.
pub(crate) async fn run(shared: Arc<Shared>, target: Target, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    let mut batch_bytes = BATCH_BYTES;
    let mut at = 0;
    let mut failed_in_a_row = 0;
    loop {
        let collector = &target.collectors[at];
        let result = session(
            &shared,
            &target,
            collector,
            &mut stop,
            &mut backoff,
            batch_bytes,
        )
        .await;
        shared.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            // The collector's message limit is below our batches: the same batch would fail on
            // every retry, so send smaller ones from now on.
            Err(DeliveryError::Stream(status))
                if matches!(
                    status.code(),
                    tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
                ) && batch_bytes > MIN_BATCH_BYTES =>
            {
                batch_bytes = (batch_bytes / 2).max(MIN_BATCH_BYTES);
                tracing::warn!(collector = %collector.url, error = %status, batch_bytes, "batch over the collector's message limit; sending smaller batches");
                continue;
            }
            Err(e) => {
                failed_in_a_row += 1;
                at = (at + 1) % target.collectors.len();
                tracing::warn!(collector = %collector.url, error = %e, next = %target.collectors[at].url, "collector unavailable; events stay spooled");
            }
        }
        let pause = if failed_in_a_row < target.collectors.len() {
            Duration::from_millis(100)
        } else {
            failed_in_a_row = 0;
            let b = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            b
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One Publish stream: send from the last acknowledgement on, until an error or `stop`.
async fn session(
    shared: &Shared,
    target: &Target,
    collector: &Collector,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
    batch_bytes: usize,
) -> Result<(), DeliveryError> {
    let channel: Channel = tokio::select! {
        c = collector.endpoint.connect() => c.map_err(|source| DeliveryError::Connect { url: collector.url.clone(), source })?,
        _ = stop.changed() => return Ok(()),
    };
    let mut client = CollectorClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::PublishRequest>(WINDOW);
    let mut acks = client.publish(ReceiverStream::new(rx)).await?.into_inner();
    shared.connected.store(true, Ordering::Relaxed);
    let (mut sent, instance) = {
        let spool = shared.spool();
        (spool.acked(), spool.instance().to_string())
    };
    let mut pos = ReadPos::default();
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    // When the oldest unacknowledged batch (or the last acknowledgement after it) was sent.
    let mut waiting_since = tokio::time::Instant::now();
    tracing::info!(collector = %collector.url, resume_after = sent, "connected to the collector");
    loop {
        while in_flight.len() < WINDOW {
            let batch = shared
                .spool()
                .read_after(sent, &mut pos, BATCH_EVENTS, batch_bytes)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let req = pb::PublishRequest {
                agent_id: target.agent_id.clone(),
                instance: instance.clone(),
                events: batch.iter().map(pb::Event::from).collect(),
            };
            tx.send(req).await.map_err(|_| DeliveryError::Stopped)?;
            if in_flight.is_empty() {
                waiting_since = tokio::time::Instant::now();
            }
            sent = last;
            in_flight.push_back(last);
        }
        tokio::select! {
            ack = acks.message() => {
                let Some(ack) = ack? else {
                    return Err(DeliveryError::Stream(tonic::Status::unavailable("collector closed the stream")));
                };
                // An acknowledgement above what this stream sent would delete events the
                // collector never saw: distrust the whole stream and resume from the last
                // acknowledgement we did apply.
                if ack.acked_seq > sent {
                    return Err(DeliveryError::AckAboveSent { acked: ack.acked_seq, sent });
                }
                for r in &ack.rejected {
                    tracing::warn!(seq = r.seq, reason = %r.reason, "the collector rejected an event (stored as a delivery record)");
                }
                shared.rejected_total.fetch_add(ack.rejected.len() as u64, Ordering::Relaxed);
                while in_flight.front().is_some_and(|&s| s <= ack.acked_seq) {
                    in_flight.pop_front();
                }
                waiting_since = tokio::time::Instant::now();
                shared.spool().ack(ack.acked_seq)?;
                if let Ok(mut t) = shared.last_progress.lock() {
                    *t = Instant::now();
                }
                *backoff = Duration::from_millis(100);
            }
            _ = shared.wake.notified(), if in_flight.len() < WINDOW => {}
            _ = flush.tick() => shared.sync()?,
            _ = tokio::time::sleep_until(waiting_since + ACK_TIMEOUT), if !in_flight.is_empty() => {
                return Err(DeliveryError::AckTimeout { url: collector.url.clone(), waited: ACK_TIMEOUT, unacked: in_flight.len() });
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}
