//! containerd, CRI runtimes (CRI-O) and podman as sources of the container table: the
//! `seawall-engines` clients run here, and what they report becomes [`SourceEvent`]s. Those
//! clients reconnect with backoff and list everything again after every gap; a listing becomes a
//! [`SourceEvent::Resync`] of that source's running containers, so containers that started
//! during the gap are registered and those that ended are removed.

use std::{future::Future, time::Duration};

use seawall_engines::{
    ContainerRecord, DockerApiClient, Endpoint, Protocol, SourceEvent as EngineEvent, SourceId,
};
use seawall_service::ErrorChain;
use tokio::{sync::mpsc, task::JoinSet};

use super::{table::ContainerInfo, SourceEvent};

/// Runs the source at `endpoint`, sending what it sees on `events`, until `shutdown` resolves
/// or the daemon stops listening. Dropping the client's future on the way out ends its calls.
pub async fn watch(
    endpoint: Endpoint,
    events: mpsc::Sender<SourceEvent>,
    shutdown: impl Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::channel(256);
    let client = endpoint.run(tx);
    tokio::pin!(client, shutdown);
    loop {
        let news = tokio::select! {
            _ = &mut shutdown => return,
            _ = &mut client => return,
            news = rx.recv() => match news {
                Some(news) => news,
                None => return,
            },
        };
        // The fault tests: an engine whose event stream says nothing of new containers.
        if matches!(
            news,
            EngineEvent::Created { .. } | EngineEvent::Started { .. }
        ) && crate::failpoint::armed("engine_events_dropped").is_some()
        {
            continue;
        }
        for event in translate(news) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Lookups answered at once at most; more wait for one to finish.
const LOOKUPS_IN_FLIGHT: usize = 8;
/// How long one lookup (connect, inspect the container and its image) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the engine at `endpoint` answers lookups by container id (the Docker API does:
/// podman). containerd and CRI runtimes are not asked: their cgroup names carry no namespace,
/// and they report every container as it is made.
pub fn answers_lookups(endpoint: &Endpoint) -> bool {
    endpoint.protocol == Protocol::DockerApi
}

/// Answers the daemon's lookups (the container id a new cgroup's name gives) by inspecting
/// the container on a Docker-API engine: [`SourceEvent::Created`], [`SourceEvent::Unknown`]
/// when the engine does not know it, [`SourceEvent::LookupFailed`] when it did not answer.
/// A held first exec is then decided as soon as the engine can describe its container,
/// whatever its event stream does: podman writes its events to a log the API service reads
/// back, so a container's `create` may reach the agent late, or (when the engine is stalled)
/// not at all.
pub async fn answer_lookups(
    endpoint: Endpoint,
    events: mpsc::Sender<SourceEvent>,
    mut requests: mpsc::Receiver<String>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let source = SourceId {
        runtime: endpoint.runtime,
        socket: endpoint.socket.clone(),
    };
    let mut inflight = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            id = requests.recv() => {
                let Some(id) = id else { return };
                if inflight.len() >= LOOKUPS_IN_FLIGHT {
                    inflight.join_next().await;
                }
                let (source, events) = (source.clone(), events.clone());
                inflight.spawn(async move {
                    let answer = lookup(&source, &id).await;
                    let _ = events.send(answer).await;
                });
            }
        }
    }
}

/// One lookup on a connection of its own (they are rare: one per new container).
async fn lookup(source: &SourceId, id: &str) -> SourceEvent {
    let asked = async {
        let client = DockerApiClient::connect(source.runtime, &source.socket).await?;
        client.container(id).await
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, asked).await {
        Ok(Ok(Some(record))) => SourceEvent::Created(info(record, source)),
        Ok(Ok(None)) => SourceEvent::Unknown { id: id.to_string() },
        Ok(Err(e)) => {
            tracing::warn!(container_id = %id, runtime = %source.runtime, error = %ErrorChain(&e), "inspecting a new container failed: asking again");
            SourceEvent::LookupFailed { id: id.to_string() }
        }
        Err(_) => {
            tracing::warn!(container_id = %id, runtime = %source.runtime, timeout = ?LOOKUP_TIMEOUT, "inspecting a new container timed out: asking again");
            SourceEvent::LookupFailed { id: id.to_string() }
        }
    }
}

/// What one engine event means for the table.
fn translate(news: EngineEvent) -> Vec<SourceEvent> {
    match news {
        EngineEvent::Listed { source, containers } => {
            let (running, created): (Vec<_>, Vec<_>) =
                containers.into_iter().partition(|c| c.init_pid.is_some());
            let running = running.into_iter().map(|c| info(c, &source)).collect();
            let mut out = vec![SourceEvent::Resync {
                source: source.clone(),
                running,
            }];
            // Made but not started: known ahead, so their policy is ready when their cgroup is.
            out.extend(
                created
                    .into_iter()
                    .map(|c| SourceEvent::Created(info(c, &source))),
            );
            out
        }
        EngineEvent::Created { source, container } => {
            vec![SourceEvent::Created(info(container, &source))]
        }
        EngineEvent::Started { source, container } => {
            vec![SourceEvent::Started(info(container, &source))]
        }
        EngineEvent::Exited { key, .. } | EngineEvent::Deleted { key, .. } => {
            vec![SourceEvent::Stopped { id: key.id }]
        }
        EngineEvent::Disconnected { source, .. } => vec![SourceEvent::Unreachable { source }],
    }
}

/// A table row from a runtime's record.
fn info(r: ContainerRecord, source: &SourceId) -> ContainerInfo {
    ContainerInfo {
        storage_driver: if r.upper_dir.is_some() {
            "overlay".into()
        } else {
            String::new()
        },
        id: r.id,
        name: r.name,
        image: r.image,
        image_id: r.image_id,
        image_digests: r.image_digests,
        labels: r.labels,
        init_pid: r.init_pid.unwrap_or(0),
        rootfs: r.rootfs.map(|p| p.display().to_string()),
        upperdir: r.upper_dir.map(|p| p.display().to_string()),
        profile: String::new(),
        runtime: Some(r.runtime),
        source: Some(source.clone()),
        kubernetes: r.kubernetes,
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::PathBuf};

    use seawall_engines::{ContainerKey, EngineError, Runtime};

    use super::*;

    fn source() -> SourceId {
        SourceId {
            runtime: Runtime::Containerd,
            socket: PathBuf::from("/run/containerd/containerd.sock"),
        }
    }

    fn record(id: &str, pid: Option<u32>) -> ContainerRecord {
        let labels: BTreeMap<String, String> = [
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.container.name", "nginx"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut r = ContainerRecord::new(Runtime::Containerd, id).with_labels(labels);
        r.image = "docker.io/library/nginx:1.27".into();
        r.init_pid = pid;
        r.upper_dir = pid.map(|_| PathBuf::from("/var/lib/containerd/snapshots/7/fs"));
        r
    }

    #[test]
    fn a_listing_is_a_resync_of_the_running_and_the_rest_is_known_ahead() {
        let out = translate(EngineEvent::Listed {
            source: source(),
            containers: vec![record("run", Some(42)), record("made", None)],
        });
        let [SourceEvent::Resync { source: s, running }, SourceEvent::Created(made)] =
            out.as_slice()
        else {
            panic!("{out:?}");
        };
        assert_eq!(s, &source());
        assert_eq!(running.len(), 1);
        let row = &running[0];
        assert_eq!((row.id.as_str(), row.init_pid), ("run", 42));
        assert_eq!(row.runtime, Some(Runtime::Containerd));
        assert_eq!(row.source.as_ref(), Some(&source()));
        assert_eq!(
            row.kubernetes
                .as_ref()
                .map(|k| (k.namespace.as_str(), k.pod.as_str())),
            Some(("shop", "web-0"))
        );
        assert_eq!(row.storage_driver, "overlay");
        assert_eq!(row.image, "docker.io/library/nginx:1.27");
        assert_eq!((made.id.as_str(), made.init_pid), ("made", 0));
    }

    #[test]
    fn exits_and_deletes_stop_and_a_lost_runtime_is_unreachable() {
        let key = ContainerKey {
            namespace: "k8s.io".into(),
            id: "c".into(),
        };
        let exited = translate(EngineEvent::Exited {
            source: source(),
            key: key.clone(),
            exit_status: Some(0),
        });
        assert_eq!(exited, vec![SourceEvent::Stopped { id: "c".into() }]);
        let deleted = translate(EngineEvent::Deleted {
            source: source(),
            key,
        });
        assert_eq!(deleted, vec![SourceEvent::Stopped { id: "c".into() }]);
        let started = translate(EngineEvent::Started {
            source: source(),
            container: record("c", Some(7)),
        });
        assert!(matches!(started.as_slice(), [SourceEvent::Started(i)] if i.init_pid == 7));
        let down = translate(EngineEvent::Disconnected {
            source: source(),
            error: std::sync::Arc::new(EngineError::StreamEnded {
                runtime: Runtime::Containerd,
            }),
        });
        assert_eq!(down, vec![SourceEvent::Unreachable { source: source() }]);
    }
}
