//! NATS JetStream as the store (`--nats URL[,URL…]`): collectors become stateless in front of a
//! replicated stream, any of them serves any agent, consumer and sink.
//!
//! - One subject per agent instance, `seawall.ev.<hex(identity)>.<hex(instance)>`. Before storing
//!   a batch the collector reads the last message on that subject: the instance's highest stored
//!   seq, the same for every collector on the stream. Events at or below it are duplicates.
//! - Each event is published with `Nats-Msg-Id: identity/instance/seq`, so JetStream's own
//!   duplicate window drops a re-send that raced past that check (two collectors at once).
//! - Events are published one at a time, each acknowledged by JetStream (replicated, on disk)
//!   before the next: a publish that fails mid-batch can then never let a later event of the
//!   same instance land before it. The agent is acknowledged only after all of them.
//! - A record's id is its stream sequence. Reads use short-lived ordered pull consumers.
//! - Sink positions live in the stream `<stream>_SINKS` (one subject per sink, last message
//!   kept), shared by every collector.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use seawall_proto::event::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backend::{EventStore, Keep, SinkPosition};
use super::{Appended, Record, StoreError};

/// How to reach JetStream (`--nats …` and the `[nats]` table).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs, `nats://HOST:PORT` (`tls://` for TLS).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Stream name (default `SEAWALL_EVENTS`).
    pub stream: Option<String>,
    /// Stream replicas (default 1; 3 on a three-node cluster).
    pub replicas: Option<usize>,
    /// NATS credentials file (JWT + NKey seed).
    pub creds: Option<PathBuf>,
    /// CA for the servers' certificates (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The default stream name.
pub const DEFAULT_STREAM: &str = "SEAWALL_EVENTS";

/// What is stored in a message: the record without its id (the stream sequence is the id).
#[derive(Serialize, Deserialize)]
struct Body {
    agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    instance: String,
    received: String,
    event: Event,
}

fn nats_err(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    move |source| StoreError::Nats { what, source }
}

fn hex(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub struct NatsStore {
    js: jetstream::Context,
    stream: String,
    subjects: String,
    last_id: watch::Sender<u64>,
    /// Agent identities this collector has stored for (for `Health`).
    agents: Mutex<HashSet<String>>,
    /// The stream holding each sink's position.
    positions: String,
}

impl NatsStore {
    /// Connects, and creates the stream and the sink bucket when they do not exist.
    pub async fn connect(cfg: &NatsConfig) -> Result<std::sync::Arc<NatsStore>, StoreError> {
        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect();
        if let Some(c) = &cfg.creds {
            opts = opts
                .credentials_file(c)
                .await
                .map_err(|e| nats_err("reading the credentials file")(e.into()))?;
        }
        if let Some(ca) = &cfg.ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let client = opts
            .connect(cfg.urls.clone())
            .await
            .map_err(|e| nats_err("connecting")(e.into()))?;
        let js = jetstream::new(client);
        let name = cfg.stream.clone().unwrap_or_else(|| DEFAULT_STREAM.into());
        let subjects = format!("seawall.ev.{name}.>");
        let replicas = cfg.replicas.unwrap_or(1);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        };
        // A cluster that is starting has no JetStream leader yet: wait for it a while.
        let mut attempt = 0;
        let mut st = loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(st) => break st,
                Err(e) if attempt < 30 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(nats_err("creating the stream")(e.into())),
            }
        };
        let last = st
            .info()
            .await
            .map_err(|e| nats_err("reading the stream")(e.into()))?
            .state
            .last_sequence;
        // Sink positions: one subject per sink, only its last message kept (a key-value bucket
        // in all but name; the bucket API of this client does not speak to 2.9 servers).
        let positions = format!("{name}_SINKS");
        let position_config = stream::Config {
            name: positions.clone(),
            subjects: vec![format!("seawall.sinkpos.{name}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_messages_per_subject: 1,
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            match js.get_or_create_stream(position_config.clone()).await {
                Ok(_) => break,
                Err(e) if attempt < 30 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "creating the sink position stream; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(nats_err("creating the sink position stream")(e.into())),
            }
        }
        let (last_id, _) = watch::channel(last);
        let store = std::sync::Arc::new(NatsStore {
            js,
            stream: name,
            subjects: subjects.trim_end_matches('>').to_string(),
            last_id,
            agents: Mutex::default(),
            positions,
        });
        // Other collectors store too: follow the stream's last sequence.
        let weak = std::sync::Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let Some(s) = weak.upgrade() else { return };
                if let Ok(mut st) = s.js.get_stream(&s.stream).await {
                    if let Ok(info) = st.info().await {
                        let seq = info.state.last_sequence;
                        s.last_id.send_if_modified(|v| {
                            let changed = *v != seq;
                            *v = seq;
                            changed
                        });
                    }
                }
            }
        });
        tracing::info!(stream = %store.stream, replicas, last_id = last, "NATS JetStream store open");
        Ok(store)
    }

    fn subject(&self, agent: &str, instance: &str) -> String {
        format!("{}{}.{}", self.subjects, hex(agent), hex(instance))
    }

    /// A short-lived ordered reader from `after + 1`.
    async fn reader(
        &self,
        after: u64,
    ) -> Result<(stream::Stream, consumer::Consumer<consumer::pull::Config>), StoreError> {
        let st = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_err("opening the stream")(e.into()))?;
        let c = st
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("creating a reader")(e.into()))?;
        Ok((st, c))
    }

    /// The highest seq stored for an instance: the last message on its subject.
    async fn high_water(&self, subject: &str) -> Result<u64, StoreError> {
        let st = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_err("opening the stream")(e.into()))?;
        match st.get_last_raw_message_by_subject(subject).await {
            Ok(m) => {
                let body: Body = serde_json::from_slice(&m.payload)
                    .map_err(|e| nats_err("decoding a stored event")(e.into()))?;
                Ok(body.event.seq)
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(nats_err("reading an instance's last event")(e.into())),
        }
    }
}

#[tonic::async_trait]
impl EventStore for NatsStore {
    async fn append(
        &self,
        agent: &str,
        instance: &str,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let subject = self.subject(agent, instance);
        let mut last_seq = self.high_water(&subject).await?;
        let batch_last = events.last().map_or(0, |e| e.seq);
        let received = super::now_rfc3339();
        let (mut stored, mut duplicates) = (0, 0);
        let mut last_stream_seq = None;
        for event in events {
            if event.seq <= last_seq {
                duplicates += 1;
                continue;
            }
            let seq = event.seq;
            let body = serde_json::to_vec(&Body {
                agent: agent.to_string(),
                instance: instance.to_string(),
                received: received.clone(),
                event,
            })
            .expect("a record always serializes");
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{agent}/{instance}/{seq}").as_str());
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .map_err(|e| nats_err("publishing")(e.into()))?
                .await
                .map_err(|e| nats_err("waiting for JetStream's acknowledgement")(e.into()))?;
            if ack.duplicate {
                duplicates += 1;
            } else {
                stored += 1;
                last_stream_seq = Some(ack.sequence);
            }
            last_seq = seq;
        }
        if stored > 0 {
            self.agents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent.to_string());
        }
        if let Some(s) = last_stream_seq {
            self.last_id.send_if_modified(|v| {
                let newer = s > *v;
                if newer {
                    *v = s;
                }
                newer
            });
        }
        Ok(Appended {
            acked_seq: batch_last,
            duplicates,
            stored,
        })
    }

    async fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, StoreError> {
        if max == 0 || after >= self.last_id() {
            return Ok(Vec::new());
        }
        // Right after a node dies the cluster may take a few seconds to move leaders.
        let mut attempt = 0;
        let (st, c) = loop {
            match self.reader(after).await {
                Ok(r) => break r,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %crate::ErrorChain(&e), attempt, "JetStream read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mut batch = c
            .fetch()
            .max_messages(max)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| nats_err("reading")(e.into()))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| nats_err("reading a message")(e))?;
            let id = m
                .info()
                .map_err(|e| nats_err("reading a message's sequence")(e))?
                .stream_sequence;
            match serde_json::from_slice::<Body>(&m.payload) {
                Ok(b) => out.push(Record {
                    id,
                    agent: b.agent,
                    instance: b.instance,
                    received: b.received,
                    event: b.event,
                }),
                Err(e) => {
                    tracing::error!(id, error = %e, "skipped a message that is not a stored event")
                }
            }
        }
        let _ = st.delete_consumer(c.cached_info().name.as_str()).await;
        Ok(out)
    }

    async fn newest_matching(&self, max: usize, keep: Keep) -> Result<Vec<Record>, StoreError> {
        const WINDOW: u64 = 1000;
        let mut out: Vec<Record> = Vec::new();
        let mut end = self.last_id();
        while out.len() < max && end > 0 {
            let start = end.saturating_sub(WINDOW);
            let mut window = self.read_after(start, (end - start) as usize).await?;
            window.retain(|r| r.id <= end);
            for r in window.into_iter().rev() {
                if out.len() < max && keep(&r) {
                    out.push(r);
                }
            }
            end = start;
        }
        out.reverse();
        Ok(out)
    }

    async fn apply_retention(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn last_id(&self) -> u64 {
        *self.last_id.borrow()
    }

    fn watch_last_id(&self) -> watch::Receiver<u64> {
        self.last_id.subscribe()
    }

    fn agent_count(&self) -> usize {
        self.agents.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn probe(&self) -> Result<u64, StoreError> {
        let mut st = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_err("opening the stream")(e.into()))?;
        let info = st
            .info()
            .await
            .map_err(|e| nats_err("reading the stream")(e.into()))?;
        Ok(info.state.bytes)
    }

    async fn sink_position(&self, _data: &Path, name: &str) -> Result<SinkPosition, StoreError> {
        Ok(SinkPosition::Stream {
            js: Box::new(self.js.clone()),
            stream: self.positions.clone(),
            subject: format!("seawall.sinkpos.{}.{}", self.stream, hex(name)),
        })
    }
}
