//! The Docker engine as a source of the container table (bollard over the unix socket).
//!
//! The source runs as a task of its own: engine events become [`SourceEvent`]s in order (an
//! inspect each, so a container's `die` never overtakes its `start`), and lookups by id are
//! inspected concurrently beside them. The daemon's loop never waits on the engine.

use std::{collections::HashMap, time::Duration};

use bollard::{
    container::ListContainersOptions, models::ContainerInspectResponse, system::EventsOptions,
    Docker,
};
use futures_util::{Stream, StreamExt};
use seawall_service::{health::Liveness, ErrorChain};
use tokio::{sync::mpsc, task::JoinSet};

use super::{table::ContainerInfo, Runtime, SourceEvent, SourceId};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {socket} (is dockerd running? set --docker-socket)"
    )]
    Connect {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker API")]
    Api(#[from] bollard::errors::Error),
    #[error("Docker API: no answer within {0:?}")]
    Timeout(Duration),
}

impl DockerError {
    /// Whether the engine said it has no such container (rather than failing to answer).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }
}

/// How long one inspect may take before it is asked again.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lookups answered at once; more wait in the lookup queue.
const LOOKUPS_IN_FLIGHT: usize = 32;
/// Reconnection backoff after the engine went away: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// How often the source shows it is alive while the engine is quiet. Its health bound must
/// exceed [`BACKOFF_LAST`] plus an inspect.
const IDLE_BEAT: Duration = Duration::from_secs(1);
/// The health bound the daemon registers the source with.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(90);

/// One container lifecycle change from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lifecycle {
    container_id: String,
    /// `create`, `start`, `die`, `destroy`, …
    action: String,
}

/// A connection to the Docker engine.
#[derive(Clone)]
pub struct DockerSource {
    docker: Docker,
    source: SourceId,
}

impl DockerSource {
    pub async fn connect(socket: &str) -> Result<Self, DockerError> {
        let err = |source| DockerError::Connect {
            socket: socket.to_string(),
            source,
        };
        let docker =
            Docker::connect_with_unix(socket, 10, bollard::API_DEFAULT_VERSION).map_err(err)?;
        // Speak the engine's version (Debian's docker.io is older than bollard's default).
        let docker = docker.negotiate_version().await.map_err(err)?;
        Ok(Self {
            docker,
            source: source_id(socket),
        })
    }

    /// Ids of the running containers.
    pub async fn running(&self) -> Result<Vec<String>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: false,
                ..Default::default()
            }))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Everything the table needs about one container.
    pub async fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        let c = tokio::time::timeout(INSPECT_TIMEOUT, self.docker.inspect_container(id, None))
            .await
            .map_err(|_| DockerError::Timeout(INSPECT_TIMEOUT))??;
        let mut info = from_inspect(c);
        info.source = Some(self.source.clone());
        if !info.image_id.is_empty() {
            if let Ok(img) = self.docker.inspect_image(&info.image_id).await {
                info.image_digests = img.repo_digests.unwrap_or_default();
            }
        }
        Ok(info)
    }

    /// A new container (its event, or the agent asked). The fault tests slow it down or fail it
    /// (failpoints `docker_inspect_delay_secs`, `docker_inspect_failures`), as a loaded engine
    /// does.
    async fn inspect_new(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        if let Some(secs) = crate::failpoint::armed_number("docker_inspect_delay_secs") {
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        if let Some(n) = crate::failpoint::armed_number("docker_inspect_failures") {
            static FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            if FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                return Err(DockerError::Timeout(INSPECT_TIMEOUT));
            }
        }
        self.inspect(id).await
    }

    /// Every running container, inspected.
    async fn running_inspected(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut out = Vec::new();
        for id in self.running().await? {
            match self.inspect(&id).await {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %ErrorChain(&e), "inspecting a running container failed")
                }
            }
        }
        Ok(out)
    }

    /// Container lifecycle events, from now on.
    fn lifecycle(&self) -> impl Stream<Item = Result<Lifecycle, DockerError>> + Send + 'static {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        self.docker
            .events(Some(EventsOptions::<String> {
                filters,
                ..Default::default()
            }))
            .filter_map(|ev| async move {
                match ev {
                    Err(e) => Some(Err(DockerError::Api(e))),
                    Ok(m) => {
                        let action = m.action?;
                        let id = m.actor?.id?;
                        // `exec_start: sh` etc. carry a suffix: keep the verb.
                        let action = action.split(':').next().unwrap_or("").trim().to_string();
                        Some(Ok(Lifecycle {
                            container_id: id,
                            action,
                        }))
                    }
                }
            })
    }
}

/// The Docker source: watches the engine at `socket` and sends what it sees on `events`,
/// answers `lookups` (container ids), and reconnects with backoff whenever the engine goes
/// away, re-listing the running containers after every gap ([`SourceEvent::Resync`]).
/// Ends when `shutdown` resolves or the daemon stops listening. Beats `liveness` on every
/// turn, at least every second while connected and before every retry while not.
pub async fn watch(
    socket: String,
    events: mpsc::Sender<SourceEvent>,
    mut lookups: mpsc::Receiver<String>,
    liveness: Liveness,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let id = source_id(&socket);
    let mut backoff = BACKOFF_FIRST;
    let mut first = true;
    // Whether the daemon was told the engine is down (once per outage).
    let mut said_down = false;
    let mut inspecting = JoinSet::new();
    let mut idle = tokio::time::interval(IDLE_BEAT);
    if crate::failpoint::armed("docker_source_exit").is_some() {
        tracing::error!("failpoint docker_source_exit: the Docker source ends");
        return;
    }
    loop {
        liveness.beat();
        let source = tokio::select! {
            _ = &mut shutdown => return,
            connected = DockerSource::connect(&socket) => connected,
        };
        let source = match source {
            Ok(s) => s,
            Err(e) => {
                if first || backoff == BACKOFF_LAST {
                    tracing::error!(error = %ErrorChain(&e), retry_in = ?backoff, "container engine unavailable: containers are monitored with the default profile and no metadata until it answers");
                }
                let down = SourceEvent::Unreachable { source: id.clone() };
                if !said_down && events.send(down).await.is_err() {
                    return;
                }
                said_down = true;
                first = false;
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_LAST);
                continue;
            }
        };
        if !first {
            tracing::info!("container engine answers again: re-listing its containers");
        }
        first = false;
        backoff = BACKOFF_FIRST;
        // Subscribe before listing, so nothing that happens in between is missed.
        let mut stream = Box::pin(source.lifecycle());
        match source.running_inspected().await {
            Ok(running) => {
                let listed = SourceEvent::Resync {
                    source: id.clone(),
                    running,
                };
                if events.send(listed).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(error = %ErrorChain(&e), "listing running containers failed"),
        }
        loop {
            liveness.beat();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = idle.tick() => {}
                Some(id) = lookups.recv() => {
                    if inspecting.len() >= LOOKUPS_IN_FLIGHT {
                        inspecting.join_next().await;
                    }
                    let (source, events) = (source.clone(), events.clone());
                    inspecting.spawn(async move {
                        let answer = match source.inspect_new(&id).await {
                            Ok(info) => SourceEvent::Created(info),
                            Err(e) if e.is_not_found() => SourceEvent::Unknown { id },
                            Err(e) => {
                                tracing::warn!(container_id = %id, error = %ErrorChain(&e), "inspecting a new container failed: asking again");
                                SourceEvent::LookupFailed { id }
                            }
                        };
                        let _ = events.send(answer).await;
                    });
                }
                Some(_) = inspecting.join_next(), if !inspecting.is_empty() => {}
                item = stream.next() => match item {
                    // In order: a container's `die` must not overtake its `start`.
                    Some(Ok(l)) => forward(&source, l, &events).await,
                    Some(Err(e)) => {
                        tracing::error!(error = %ErrorChain(&e), "Docker event stream failed: reconnecting");
                        break;
                    }
                    None => {
                        tracing::error!("Docker event stream ended: reconnecting");
                        break;
                    }
                },
            }
        }
        // The stream broke: the engine is gone until it answers again (new containers wait
        // for it only briefly, `seawall status` says so).
        if events
            .send(SourceEvent::Unreachable { source: id.clone() })
            .await
            .is_err()
        {
            return;
        }
        said_down = true;
    }
}

/// Turns one engine event into what the daemon needs, inspecting where it must.
async fn forward(source: &DockerSource, l: Lifecycle, events: &mpsc::Sender<SourceEvent>) {
    let event = match l.action.as_str() {
        "create" | "start" => match source.inspect_new(&l.container_id).await {
            Ok(info) if l.action == "create" => SourceEvent::Created(info),
            Ok(info) => SourceEvent::Started(info),
            Err(e) => {
                tracing::warn!(container_id = %l.container_id, action = %l.action, error = %ErrorChain(&e), "inspecting a container failed");
                return;
            }
        },
        "die" | "destroy" => SourceEvent::Stopped { id: l.container_id },
        _ => return,
    };
    let _ = events.send(event).await;
}

fn from_inspect(c: ContainerInspectResponse) -> ContainerInfo {
    let config = c.config.unwrap_or_default();
    let graph = c.graph_driver.unwrap_or_default();
    let labels: std::collections::BTreeMap<String, String> =
        config.labels.unwrap_or_default().into_iter().collect();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        image_digests: Vec::new(),
        init_pid: c
            .state
            .and_then(|s| s.pid)
            .filter(|&p| p > 0)
            .map(|p| p as u32)
            .unwrap_or(0),
        rootfs: graph.data.get("MergedDir").cloned(),
        upperdir: graph.data.get("UpperDir").cloned(),
        storage_driver: graph.name,
        profile: String::new(),
        runtime: Some(Runtime::Docker),
        source: None,
        // Pods run by cri-dockerd carry the kubelet's labels.
        kubernetes: seawall_engines::PodIdentity::from_labels(&labels),
        labels,
    }
}

/// The source id of the Docker engine at `socket`.
pub fn source_id(socket: &str) -> SourceId {
    SourceId {
        runtime: Runtime::Docker,
        socket: socket.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, DriverData};

    #[tokio::test]
    async fn an_engine_that_does_not_answer_is_reported_and_retried_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock").display().to_string();
        let socket_path = socket.clone();
        let (tx, mut rx) = mpsc::channel(8);
        let (_lookup, requests) = crate::runtime::Lookup::channel(8);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let health = seawall_service::health::Health::new();
        let liveness = health.register("docker source", LIVENESS_BOUND);
        let source = tokio::spawn(watch(socket, tx, requests, liveness, async {
            let _ = stopped.await;
        }));
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the source reports at once");
        assert_eq!(
            first,
            Some(SourceEvent::Unreachable {
                source: source_id(&socket_path)
            })
        );
        // It keeps retrying (with backoff) rather than ending, and says Unreachable only once.
        tokio::time::sleep(BACKOFF_FIRST * 3).await;
        assert!(!source.is_finished());
        assert!(rx.try_recv().is_err());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), source)
            .await
            .expect("the source ends on shutdown")
            .unwrap();
    }

    #[test]
    fn inspect_maps_to_a_table_row() {
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.pod.name".to_string(), "web-0".to_string());
        let mut data = HashMap::new();
        data.insert(
            "MergedDir".to_string(),
            "/var/lib/docker/overlay2/x/merged".to_string(),
        );
        let c = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/web".into()),
            image: Some("sha256:123".into()),
            config: Some(ContainerConfig {
                image: Some("nginx:1.27".into()),
                labels: Some(labels),
                ..Default::default()
            }),
            state: Some(ContainerState {
                pid: Some(4242),
                ..Default::default()
            }),
            graph_driver: Some(DriverData {
                name: "overlay2".into(),
                data,
            }),
            ..Default::default()
        };
        let info = from_inspect(c);
        assert_eq!(info.name, "web");
        assert_eq!(info.image, "nginx:1.27");
        assert_eq!(info.image_id, "sha256:123");
        assert_eq!(info.init_pid, 4242);
        assert_eq!(info.labels["io.kubernetes.pod.name"], "web-0");
        assert_eq!(
            info.rootfs.as_deref(),
            Some("/var/lib/docker/overlay2/x/merged")
        );
        assert_eq!(info.storage_driver, "overlay2");
    }
}
