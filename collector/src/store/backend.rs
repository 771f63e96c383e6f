//! The store as the service and the sinks see it: the embedded [`Store`] (default) or NATS
//! JetStream ([`super::nats`]), behind one trait.

use std::path::Path;
use std::sync::Arc;

use seawall_proto::event::Event;
use tokio::sync::watch;

use super::{Appended, Record, Store, StoreError};

/// A filter applied while reading backwards (`Query`).
pub type Keep = Box<dyn Fn(&Record) -> bool + Send + Sync>;

/// Where events are stored and read back.
#[tonic::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores an instance's events above its highest stored seq, durably, in order.
    async fn append(
        &self,
        agent: &str,
        instance: &str,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError>;
    /// Up to `max` records with `id > after`, in id order.
    async fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, StoreError>;
    /// The newest `max` records `keep` accepts, oldest first.
    async fn newest_matching(&self, max: usize, keep: Keep) -> Result<Vec<Record>, StoreError>;
    /// Deletes what is past the retention limits (JetStream applies its own limits).
    async fn apply_retention(&self) -> Result<(), StoreError>;
    fn last_id(&self) -> u64;
    /// Changes whenever records are stored.
    fn watch_last_id(&self) -> watch::Receiver<u64>;
    fn agent_count(&self) -> usize;
    /// Where the sink `name` keeps its position, so it survives a collector restart.
    async fn sink_position(&self, data: &Path, name: &str) -> Result<SinkPosition, StoreError>;
    /// Asks the store something that needs it to work (its lock for the embedded store, the
    /// stream's state for JetStream), for the watchdog; answers the bytes it holds.
    async fn probe(&self) -> Result<u64, StoreError>;
}

/// A sink's durable position: a file next to the embedded store, or the last message on the
/// sink's subject in a JetStream stream that every collector on the event stream shares.
pub enum SinkPosition {
    File(std::path::PathBuf),
    Stream {
        js: Box<async_nats::jetstream::Context>,
        stream: String,
        subject: String,
    },
}

impl SinkPosition {
    /// The saved position; 0 when the sink has none yet. A store that cannot answer is an
    /// error, not 0: starting from 0 would re-send everything retained.
    pub async fn load(&self) -> Result<u64, StoreError> {
        let parse = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        match self {
            SinkPosition::File(p) => match std::fs::read(p) {
                // A torn cursor (a crash mid-write of an old collector) counts as none; the
                // file sink still continues from its own output.
                Ok(b) => Ok(parse(&b).unwrap_or(0)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(source) => Err(StoreError::Io {
                    path: p.clone(),
                    source,
                }),
            },
            SinkPosition::Stream {
                js,
                stream,
                subject,
            } => {
                let st = js.get_stream(stream).await.map_err(|e| StoreError::Nats {
                    what: "opening the sink position stream",
                    source: e.into(),
                })?;
                match st.get_last_raw_message_by_subject(subject).await {
                    Ok(m) => Ok(parse(&m.payload).unwrap_or(0)),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                    {
                        Ok(0)
                    }
                    Err(e) => Err(StoreError::Nats {
                        what: "reading a sink position",
                        source: e.into(),
                    }),
                }
            }
        }
    }

    pub async fn save(&self, id: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            SinkPosition::File(p) => Ok(super::super::sinks::write_cursor(p, id)?),
            SinkPosition::Stream { js, subject, .. } => {
                js.publish(subject.clone(), id.to_string().into_bytes().into())
                    .await?
                    .await?;
                Ok(())
            }
        }
    }
}

/// The embedded store behind the trait: its blocking calls run on the blocking pool.
pub struct Embedded(pub Arc<Store>);

fn joined<T>(r: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    r.map_err(StoreError::Task)?
}

#[tonic::async_trait]
impl EventStore for Embedded {
    async fn append(
        &self,
        agent: &str,
        instance: &str,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let (s, a, i) = (self.0.clone(), agent.to_string(), instance.to_string());
        joined(tokio::task::spawn_blocking(move || s.append(&a, &i, events)).await)
    }

    async fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, StoreError> {
        let s = self.0.clone();
        joined(tokio::task::spawn_blocking(move || s.read_after(after, max)).await)
    }

    async fn newest_matching(&self, max: usize, keep: Keep) -> Result<Vec<Record>, StoreError> {
        let s = self.0.clone();
        joined(tokio::task::spawn_blocking(move || s.newest_matching(max, keep)).await)
    }

    async fn apply_retention(&self) -> Result<(), StoreError> {
        let s = self.0.clone();
        joined(tokio::task::spawn_blocking(move || s.apply_retention()).await)
    }

    fn last_id(&self) -> u64 {
        self.0.last_id()
    }

    fn watch_last_id(&self) -> watch::Receiver<u64> {
        self.0.watch_last_id()
    }

    fn agent_count(&self) -> usize {
        self.0.agent_count()
    }

    async fn sink_position(&self, data: &Path, name: &str) -> Result<SinkPosition, StoreError> {
        Ok(SinkPosition::File(
            data.join("sinks").join(format!("{name}.cursor")),
        ))
    }

    async fn probe(&self) -> Result<u64, StoreError> {
        let s = self.0.clone();
        tokio::task::spawn_blocking(move || s.size_bytes())
            .await
            .map_err(StoreError::Task)
    }
}
