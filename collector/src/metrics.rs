//! The collector's Prometheus metrics (`--metrics ADDR`), served by
//! `seawall_service::metrics::serve`: what comes in (per agent identity), what is stored, what
//! each sink has delivered and how far behind it is, and reloads.
//!
//! Per-sink lag and the store's size are read at scrape time, so they are never staler than
//! the scrape. The agent label is the certificate identity, a set the client CA bounds; the
//! table is capped all the same, since `--insecure` takes identities as claimed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::sinks::SinkList;
use crate::store::backend::EventStore;
use crate::store::Appended;

/// Agent identities tracked one by one; beyond this, new ones are only counted.
pub const MAX_AGENTS: usize = 100_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

/// What the collector last heard from one agent identity.
#[derive(Debug, Default, Clone)]
struct AgentSeen {
    /// Unix time, seconds, of its last batch.
    last_seen: f64,
    /// The highest seq of its last batch (what was acknowledged).
    last_seq: u64,
    stored: u64,
}

#[derive(Debug, Default)]
struct Agents {
    seen: BTreeMap<String, AgentSeen>,
    untracked: u64,
}

/// Every metric the collector exposes.
pub struct CollectorMetrics {
    registry: Arc<Registry>,
    stored: Counter,
    duplicates: Counter,
    rejected: Counter,
    cut: Counter,
    store_failures: Counter,
    publish_streams: Gauge,
    reloads: Family<ResultLabels, Counter>,
    // A std Mutex: held for a map update per batch or a copy per scrape, never across await.
    agents: Arc<Mutex<Agents>>,
    store_bytes: Arc<AtomicU64>,
}

/// Read at scrape time: per-agent, per-sink and store figures.
struct Live {
    store: Arc<dyn EventStore>,
    store_bytes: Arc<AtomicU64>,
    sinks: SinkList,
    agents: Arc<Mutex<Agents>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl CollectorMetrics {
    /// A registry with every family, reading `store` and `sinks` at each scrape.
    pub fn new(store: Arc<dyn EventStore>, sinks: SinkList) -> CollectorMetrics {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let stored = counter(
            &mut registry,
            "seawall_collector_events_stored",
            "Events stored (its rate is the ingest rate)",
        );
        let duplicates = counter(
            &mut registry,
            "seawall_collector_events_duplicate",
            "Events received again that were already stored, acknowledged and not stored twice",
        );
        let rejected = counter(
            &mut registry,
            "seawall_collector_events_rejected",
            "Events refused one by one with a reason (unknown values, a node the certificate does not cover)",
        );
        let cut = counter(
            &mut registry,
            "seawall_collector_events_cut",
            "Oversized events stored cut to the size limit",
        );
        let store_failures = counter(
            &mut registry,
            "seawall_collector_store_failures",
            "Batches the store could not write (not acknowledged; the agent re-sends them)",
        );
        let publish_streams = Gauge::default();
        registry.register(
            "seawall_collector_publish_streams",
            "Agent publish streams open now",
            publish_streams.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        for result in ["ok", "error"] {
            reloads.get_or_create(&ResultLabels { result }).inc_by(0);
        }
        registry.register(
            "seawall_collector_reloads",
            "Sink configuration reloads (SIGHUP), by result; on error the running sinks stay",
            reloads.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "seawall_collector_build_info",
            "The running collector's version (value 1)",
            build,
        );
        let agents = Arc::new(Mutex::new(Agents::default()));
        let store_bytes = Arc::new(AtomicU64::new(0));
        registry.register_collector(Box::new(Live {
            store,
            store_bytes: store_bytes.clone(),
            sinks,
            agents: agents.clone(),
        }));
        CollectorMetrics {
            registry: Arc::new(registry),
            stored,
            duplicates,
            rejected,
            cut,
            store_failures,
            publish_streams,
            reloads,
            agents,
            store_bytes,
        }
    }

    /// The registry, for the endpoint.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// A batch of `agent` was stored (or found stored already).
    pub fn batch_stored(&self, agent: &str, appended: &Appended, rejected: usize, cut: u32) {
        self.stored.inc_by(appended.stored.into());
        self.duplicates.inc_by(appended.duplicates.into());
        self.rejected.inc_by(rejected as u64);
        self.cut.inc_by(cut.into());
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let tracked = agents.seen.len() < MAX_AGENTS || agents.seen.contains_key(agent);
        if !tracked {
            if agents.untracked == 0 {
                tracing::warn!(
                    limit = MAX_AGENTS,
                    agent,
                    "more agent identities than the metrics track; the rest are not shown one by one"
                );
            }
            agents.untracked += 1;
            return;
        }
        let seen = agents.seen.entry(agent.to_string()).or_default();
        seen.last_seen = unix_now();
        seen.last_seq = appended.acked_seq;
        seen.stored += u64::from(appended.stored);
    }

    /// A batch could not be stored.
    pub fn store_failed(&self) {
        self.store_failures.inc();
    }

    /// A publish stream opened; the guard counts it until dropped.
    pub fn publish_stream(&self) -> StreamGuard {
        self.publish_streams.inc();
        StreamGuard(self.publish_streams.clone())
    }

    /// A reload finished, applied (`true`) or refused.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The store's size, as its last probe found it.
    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Counts an open publish stream while it lives.
pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let last_id = self.store.last_id();
        gauge(
            &mut encoder,
            "seawall_collector_store_last_id",
            "The highest record id stored.",
            last_id as i64,
        )?;
        gauge(
            &mut encoder,
            "seawall_collector_store_bytes",
            "Bytes the store holds (the embedded store's segments, or the JetStream stream).",
            self.store_bytes.load(Ordering::Relaxed) as i64,
        )?;

        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut e = encoder.encode_descriptor(
            "seawall_collector_sink_lag_events",
            "Records stored that the sink has not handled yet.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (name, s) in &sinks {
            let lag = last_id.saturating_sub(s.cursor.load(Ordering::Relaxed));
            ConstGauge::new(lag as i64)
                .encode(e.encode_family(&SinkLabels { sink: name.clone() })?)?;
        }
        for (metric, help, read) in [
            (
                "seawall_collector_sink_delivered_events",
                "Events the sink's receiver accepted.",
                (|s: &crate::sinks::SinkStats| s.delivered.load(Ordering::Relaxed))
                    as fn(&crate::sinks::SinkStats) -> u64,
            ),
            (
                "seawall_collector_sink_errors",
                "Failed delivery attempts (retried) and events refused for good.",
                |s| s.errors.load(Ordering::Relaxed),
            ),
            (
                "seawall_collector_sink_dead_lettered_events",
                "Events the receiver refused for good, kept in the sink's dead-letter file.",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
        ] {
            let mut e = encoder.encode_descriptor(
                metric,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (name, s) in &sinks {
                ConstCounter::new(read(s))
                    .encode(e.encode_family(&SinkLabels { sink: name.clone() })?)?;
            }
        }

        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let mut e = encoder.encode_descriptor(
            "seawall_collector_agent_last_seen_timestamp_seconds",
            "When the agent identity's last batch arrived (Unix time).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (agent, seen) in &agents.seen {
            ConstGauge::new(seen.last_seen).encode(e.encode_family(&AgentLabels {
                agent: agent.clone(),
            })?)?;
        }
        let mut e = encoder.encode_descriptor(
            "seawall_collector_agent_last_seq",
            "The highest seq of the agent identity's last batch, acknowledged.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (agent, seen) in &agents.seen {
            ConstGauge::new(seen.last_seq as i64).encode(e.encode_family(&AgentLabels {
                agent: agent.clone(),
            })?)?;
        }
        let mut e = encoder.encode_descriptor(
            "seawall_collector_agent_events_stored",
            "Events stored for the agent identity.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (agent, seen) in &agents.seen {
            ConstCounter::new(seen.stored).encode(e.encode_family(&AgentLabels {
                agent: agent.clone(),
            })?)?;
        }
        let untracked = ConstCounter::new(agents.untracked);
        let e = encoder.encode_descriptor(
            "seawall_collector_agent_batches_untracked",
            "Batches from agent identities beyond the metrics' per-agent limit.",
            None,
            untracked.metric_type(),
        )?;
        untracked.encode(e)
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let e = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(e)
}
