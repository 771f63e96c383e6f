//! What every source sends its consumer: a full listing after each (re)connect, then lifecycle
//! changes, and a word when the runtime went away.

use std::{path::PathBuf, sync::Arc};

use crate::{error::EngineError, record::ContainerRecord, record::Runtime};

/// One runtime endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceId {
    pub runtime: Runtime,
    pub socket: PathBuf,
}

/// A container within its source: containerd ids are unique per namespace only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerKey {
    /// containerd's namespace; empty for runtimes without namespaces.
    pub namespace: String,
    pub id: String,
}

impl ContainerRecord {
    pub fn key(&self) -> ContainerKey {
        ContainerKey {
            namespace: self.namespace.clone(),
            id: self.id.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// Every container the runtime has, right after a (re)connect. Whatever the consumer holds
    /// from this source and is not listed was deleted while the source was away; whatever is
    /// listed may have started during the gap. Events that follow are newer than the listing
    /// (the source subscribes before it lists, so nothing falls between the two; a change seen
    /// by both arrives twice, so consumers apply events idempotently).
    Listed {
        source: SourceId,
        containers: Vec<ContainerRecord>,
    },
    /// Created, not started: no init pid yet, but the cgroup path is known where the runtime
    /// says it (so policy can be ready before the container's first exec).
    Created {
        source: SourceId,
        container: ContainerRecord,
    },
    /// The init process started: `init_pid` is set.
    Started {
        source: SourceId,
        container: ContainerRecord,
    },
    /// The init process exited.
    Exited {
        source: SourceId,
        key: ContainerKey,
        exit_status: Option<u32>,
    },
    /// The container was removed.
    Deleted { source: SourceId, key: ContainerKey },
    /// The runtime went away; changes may be missed until the next `Listed`.
    Disconnected {
        source: SourceId,
        error: Arc<EngineError>,
    },
}

impl SourceEvent {
    pub fn source(&self) -> &SourceId {
        match self {
            SourceEvent::Listed { source, .. }
            | SourceEvent::Created { source, .. }
            | SourceEvent::Started { source, .. }
            | SourceEvent::Exited { source, .. }
            | SourceEvent::Deleted { source, .. }
            | SourceEvent::Disconnected { source, .. } => source,
        }
    }
}

/// One connection's worth of work: connect, subscribe, list, forward events until the runtime
/// goes away (`Err`) or the consumer does (`Ok`).
pub(crate) trait Session: Send {
    /// The runtime it is (as known so far) and the socket it reads.
    fn endpoint(&self) -> (crate::record::Runtime, &std::path::Path);

    fn id(&self) -> SourceId {
        let (runtime, socket) = self.endpoint();
        SourceId {
            runtime,
            socket: socket.to_path_buf(),
        }
    }

    /// Sets `*listed` once the listing has been sent: the connection worked.
    fn session<'a>(
        &'a mut self,
        tx: &'a tokio::sync::mpsc::Sender<SourceEvent>,
        listed: &'a mut bool,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send + 'a;
}

/// Runs sessions until the consumer drops its receiver: after each loss, one `Disconnected`
/// (not one per failed attempt), then reconnects with backoff; each new session lists again.
pub(crate) async fn run_reconnecting<S: Session>(
    mut s: S,
    tx: tokio::sync::mpsc::Sender<SourceEvent>,
) {
    use tracing::{debug, info, warn};
    let id = s.id();
    let mut backoff = crate::backoff::Backoff::default();
    // Whether the consumer has heard that the runtime is unreachable (so it is told once).
    let mut told_down = false;
    loop {
        let mut listed = false;
        let result = tokio::select! {
            r = s.session(&tx, &mut listed) => r,
            _ = tx.closed() => return,
        };
        if listed {
            backoff.reset();
            told_down = false;
            info!(runtime = %id.runtime, socket = %id.socket.display(), "container runtime session ended");
        }
        let error = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        if !told_down {
            warn!(runtime = %id.runtime, socket = %id.socket.display(), error = %error,
                  error.source = ?std::error::Error::source(&error).map(|s| s.to_string()),
                  retry_in_ms = delay.as_millis() as u64, "container runtime unreachable; reconnecting");
            let event = SourceEvent::Disconnected {
                source: id.clone(),
                error: Arc::new(error),
            };
            if tx.send(event).await.is_err() {
                return;
            }
            told_down = true;
        } else {
            debug!(runtime = %id.runtime, error = %error, retry_in_ms = delay.as_millis() as u64, "still unreachable");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = tx.closed() => return,
        }
    }
}
