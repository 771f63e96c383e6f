//! podman (and anything else that serves the Docker Engine API) through bollard: podman's
//! `podman system service` socket (`/run/podman/podman.sock`) speaks the Docker API.

use std::{collections::BTreeMap, collections::HashMap, path::PathBuf};

use bollard::{
    container::ListContainersOptions, models::ContainerInspectResponse, system::EventsOptions,
    Docker,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{
    error::EngineError,
    host::complete,
    record::{ContainerRecord, Runtime},
    source::{run_reconnecting, ContainerKey, Session, SourceEvent},
};

/// The event stream's call timeout: in effect none (ten years).
const STREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// A connected Docker-API client.
#[derive(Clone)]
pub struct DockerApiClient {
    runtime: Runtime,
    socket: PathBuf,
    docker: Docker,
}

impl DockerApiClient {
    pub async fn connect(
        runtime: Runtime,
        socket: impl Into<PathBuf>,
    ) -> Result<Self, EngineError> {
        let socket = socket.into();
        let err = |source| EngineError::DockerApi {
            runtime,
            socket: socket.clone(),
            source,
        };
        let path = socket.to_string_lossy().into_owned();
        let docker =
            Docker::connect_with_unix(&path, 30, bollard::API_DEFAULT_VERSION).map_err(err)?;
        // podman 4 and Debian's Docker speak older API versions than bollard's default.
        let docker = docker.negotiate_version().await.map_err(err)?;
        Ok(DockerApiClient {
            runtime,
            socket,
            docker,
        })
    }

    fn err(&self) -> impl Fn(bollard::errors::Error) -> EngineError + '_ {
        |source| EngineError::DockerApi {
            runtime: self.runtime,
            socket: self.socket.clone(),
            source,
        }
    }

    /// Every container, running or not.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(self.err())?;
        let mut out = Vec::new();
        for id in list.into_iter().filter_map(|c| c.id) {
            if let Some(r) = self.container(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One container, or `None` if it is gone already.
    pub async fn container(&self, id: &str) -> Result<Option<ContainerRecord>, EngineError> {
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(self.err()(e)),
        };
        let mut r = record_from_inspect(self.runtime, c);
        if !r.image_id.is_empty() {
            if let Ok(img) = self.docker.inspect_image(&r.image_id).await {
                r.image_digests = img.repo_digests.unwrap_or_default();
            }
        }
        Ok(Some(complete(r)))
    }
}

fn record_from_inspect(runtime: Runtime, c: ContainerInspectResponse) -> ContainerRecord {
    let config = c.config.unwrap_or_default();
    let graph = c.graph_driver.unwrap_or_default();
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let mut r = ContainerRecord::new(runtime, c.id.unwrap_or_default()).with_labels(labels);
    if let Some(name) = c.name.filter(|n| !n.is_empty()) {
        r.name = name.trim_start_matches('/').to_string();
    }
    r.image = config.image.unwrap_or_default();
    r.image_id = c.image.unwrap_or_default();
    r.init_pid = c
        .state
        .and_then(|s| s.pid)
        .filter(|&p| p > 0)
        .and_then(|p| u32::try_from(p).ok());
    r.rootfs = graph.data.get("MergedDir").map(PathBuf::from);
    r.upper_dir = graph.data.get("UpperDir").map(PathBuf::from);
    r
}

/// A Docker-API engine (podman) as a source of the container table.
pub struct DockerApiSource {
    runtime: Runtime,
    socket: PathBuf,
}

impl DockerApiSource {
    pub fn podman(socket: impl Into<PathBuf>) -> Self {
        DockerApiSource {
            runtime: Runtime::Podman,
            socket: socket.into(),
        }
    }

    /// Docker itself, through the same API (the agent's own Docker source may move here).
    pub fn docker(socket: impl Into<PathBuf>) -> Self {
        DockerApiSource {
            runtime: Runtime::Docker,
            socket: socket.into(),
        }
    }

    pub async fn run(self, tx: mpsc::Sender<SourceEvent>) {
        run_reconnecting(self, tx).await
    }
}

impl Session for DockerApiSource {
    fn endpoint(&self) -> (Runtime, &std::path::Path) {
        (self.runtime, &self.socket)
    }

    async fn session(
        &mut self,
        tx: &mpsc::Sender<SourceEvent>,
        listed: &mut bool,
    ) -> Result<(), EngineError> {
        let client = DockerApiClient::connect(self.runtime, &self.socket).await?;
        let source = self.id();
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        // Events from one second before the listing on (the engine replays them; bollard
        // sends the request only once the stream is polled, after the listing), so nothing
        // falls between listing and events (see `SourceEvent::Listed`).
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1).to_string())
            .unwrap_or_default();
        // No call timeout for the stream: podman sends the response only with its first
        // event, so a quiet engine would otherwise look unreachable every 30 s.
        let streaming = client.docker.clone().with_timeout(STREAM_TIMEOUT);
        let mut stream = Box::pin(streaming.events(Some(EventsOptions::<String> {
            since: Some(since),
            filters,
            ..Default::default()
        })));
        let containers = client.list().await?;
        if tx
            .send(SourceEvent::Listed {
                source: source.clone(),
                containers,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        *listed = true;
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(client.err())?;
            let (Some(action), Some(id)) = (msg.action, msg.actor.and_then(|a| a.id)) else {
                continue;
            };
            let key = ContainerKey {
                namespace: String::new(),
                id: id.clone(),
            };
            let event = match action.as_str() {
                "create" => client
                    .container(&id)
                    .await?
                    .map(|container| SourceEvent::Created {
                        source: source.clone(),
                        container,
                    }),
                "start" => client
                    .container(&id)
                    .await?
                    .map(|container| SourceEvent::Started {
                        source: source.clone(),
                        container,
                    }),
                "die" => Some(SourceEvent::Exited {
                    source: source.clone(),
                    key,
                    exit_status: None,
                }),
                "destroy" | "remove" => Some(SourceEvent::Deleted {
                    source: source.clone(),
                    key,
                }),
                _ => None,
            };
            if let Some(event) = event {
                if tx.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
        Err(EngineError::StreamEnded {
            runtime: self.runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, DriverData};

    #[test]
    fn podman_inspect_maps_to_a_record() {
        let c = ContainerInspectResponse {
            id: Some("p1".into()),
            name: Some("web".into()),
            image: Some("sha256:img".into()),
            config: Some(ContainerConfig {
                image: Some("localhost/app:1".into()),
                labels: Some(
                    [
                        ("io.kubernetes.pod.namespace", "shop"),
                        ("io.kubernetes.pod.name", "web-0"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ),
                ..Default::default()
            }),
            state: Some(ContainerState {
                pid: Some(77),
                ..Default::default()
            }),
            graph_driver: Some(DriverData {
                name: "overlay".into(),
                data: [(
                    "UpperDir".to_string(),
                    "/var/lib/containers/storage/overlay/x/diff".to_string(),
                )]
                .into(),
            }),
            ..Default::default()
        };
        let r = record_from_inspect(Runtime::Podman, c);
        assert_eq!(r.runtime, Runtime::Podman);
        assert_eq!(r.name, "web");
        assert_eq!(r.image, "localhost/app:1");
        assert_eq!(r.image_id, "sha256:img");
        assert_eq!(r.init_pid, Some(77));
        assert_eq!(
            r.upper_dir,
            Some(PathBuf::from("/var/lib/containers/storage/overlay/x/diff"))
        );
        assert_eq!(r.kubernetes.unwrap().namespace, "shop");
    }

    #[test]
    fn a_stopped_container_has_no_pid() {
        let c = ContainerInspectResponse {
            id: Some("p1".into()),
            state: Some(ContainerState {
                pid: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(record_from_inspect(Runtime::Podman, c).init_pid, None);
    }
}
