//! Any CRI runtime (CRI-O on `/var/run/crio/crio.sock`, containerd's CRI plugin, cri-dockerd)
//! through `runtime.v1.RuntimeService`: `ListContainers`, `ContainerStatus` with verbose info
//! for the pid and the OCI spec, and `GetContainerEvents` — or, where the runtime predates it
//! (containerd 1.6, CRI-O before 1.26), polling `ListContainers`.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::{transport::Channel, Code, Streaming};
use tracing::{info, warn};

use crate::{
    cgroup_path,
    error::EngineError,
    grpc::{cri, unix_channel, AbortOnDrop, CALL_TIMEOUT},
    host::complete,
    record::{ContainerRecord, Runtime, LABEL_CONTAINER_NAME},
    source::{run_reconnecting, ContainerKey, Session, SourceEvent, SourceId},
};

/// How often a runtime without `GetContainerEvents` is listed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A connected CRI client, knowing which runtime answers.
#[derive(Clone)]
pub struct CriClient {
    socket: PathBuf,
    channel: Channel,
    /// For the event stream: no call timeout.
    events: Channel,
    runtime: Runtime,
    version: String,
}

fn rpc(runtime: Runtime, call: &'static str) -> impl FnOnce(tonic::Status) -> EngineError {
    move |source| EngineError::Rpc {
        runtime,
        call,
        source,
    }
}

/// The runtime a CRI `Version` answer names.
pub fn runtime_named(name: &str) -> Option<Runtime> {
    match name {
        "cri-o" => Some(Runtime::CriO),
        "containerd" => Some(Runtime::Containerd),
        "docker" => Some(Runtime::Docker),
        _ => None,
    }
}

impl CriClient {
    pub async fn connect(socket: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let socket = socket.into();
        let err = |source| EngineError::Connect {
            // Unknown until it answers; CRI-O is what a CRI socket usually is.
            runtime: Runtime::CriO,
            socket: socket.clone(),
            source,
        };
        let channel = unix_channel(&socket, Some(CALL_TIMEOUT))
            .await
            .map_err(err)?;
        let events = unix_channel(&socket, None).await.map_err(err)?;
        let v = cri::runtime_service_client::RuntimeServiceClient::new(channel.clone())
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(rpc(Runtime::CriO, "RuntimeService.Version"))?
            .into_inner();
        let runtime =
            runtime_named(&v.runtime_name).ok_or_else(|| EngineError::UnknownCriRuntime {
                socket: socket.clone(),
                name: v.runtime_name.clone(),
            })?;
        Ok(CriClient {
            socket,
            channel,
            events,
            runtime,
            version: v.runtime_version,
        })
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The runtime's own version (`1.29.1`, ...), for the startup summary.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn client(&self) -> cri::runtime_service_client::RuntimeServiceClient<Channel> {
        cri::runtime_service_client::RuntimeServiceClient::new(self.channel.clone())
    }

    /// Every container (or the one with `id`), as `ListContainers` gives it.
    async fn listing(&self, id: Option<&str>) -> Result<Vec<cri::Container>, EngineError> {
        Ok(self
            .client()
            .list_containers(cri::ListContainersRequest {
                filter: id.map(|id| cri::ContainerFilter { id: id.to_string() }),
            })
            .await
            .map_err(rpc(self.runtime, "RuntimeService.ListContainers"))?
            .into_inner()
            .containers)
    }

    /// Ids and states of every container.
    async fn states(&self) -> Result<Vec<(String, cri::ContainerState)>, EngineError> {
        Ok(self
            .listing(None)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c.state()))
            .collect())
    }

    /// Every container, each with its verbose status and its pod's labels.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        let mut pods: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
        let mut out = Vec::new();
        for c in self.listing(None).await? {
            if !pods.contains_key(&c.pod_sandbox_id) {
                let labels = self.sandbox_labels(&c.pod_sandbox_id).await?;
                pods.insert(c.pod_sandbox_id.clone(), labels);
            }
            let labels = pods.get(&c.pod_sandbox_id).cloned().flatten();
            if let Some(r) = self.status(&c.id, labels).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One container, or `None` if it is gone already.
    pub async fn container(&self, id: &str) -> Result<Option<ContainerRecord>, EngineError> {
        let Some(c) = self
            .listing(Some(id))
            .await?
            .into_iter()
            .find(|c| c.id == id)
        else {
            return Ok(None);
        };
        let labels = self.sandbox_labels(&c.pod_sandbox_id).await?;
        self.status(id, labels).await
    }

    /// The labels of pod sandbox `id`, or `None` if there is none.
    async fn sandbox_labels(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        if id.is_empty() {
            return Ok(None);
        }
        match self
            .client()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
        {
            Ok(r) => Ok(r
                .into_inner()
                .status
                .map(|s| s.labels.into_iter().collect())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc(self.runtime, "RuntimeService.PodSandboxStatus")(s)),
        }
    }

    /// The verbose status of container `id`, with its pod's labels.
    async fn status(
        &self,
        id: &str,
        pod_labels: Option<BTreeMap<String, String>>,
    ) -> Result<Option<ContainerRecord>, EngineError> {
        let got = self
            .client()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: true,
            })
            .await;
        match got {
            Ok(r) => {
                let r = r.into_inner();
                Ok(r.status.map(|s| {
                    let mut rec = record_from_status(self.runtime, s, &r.info);
                    if let (Some(k), Some(labels)) = (rec.kubernetes.as_mut(), &pod_labels) {
                        k.set_pod_labels(labels);
                    }
                    complete(rec)
                }))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc(self.runtime, "RuntimeService.ContainerStatus")(s)),
        }
    }

    /// Starts the event stream (`None` once awaited when the runtime has none). In a task of
    /// its own, as for containerd: a stream's head may come only with its first event.
    fn events(
        &self,
    ) -> AbortOnDrop<Result<Option<Streaming<cri::ContainerEventResponse>>, EngineError>> {
        let mut client =
            cri::runtime_service_client::RuntimeServiceClient::new(self.events.clone());
        let runtime = self.runtime;
        AbortOnDrop(tokio::spawn(async move {
            match client.get_container_events(cri::GetEventsRequest {}).await {
                Ok(s) => Ok(Some(s.into_inner())),
                Err(s) if s.code() == Code::Unimplemented => Ok(None),
                Err(s) => Err(rpc(runtime, "RuntimeService.GetContainerEvents")(s)),
            }
        }))
    }
}

/// The `info` JSON of a verbose `ContainerStatus` (containerd and CRI-O agree on these keys).
#[derive(serde::Deserialize, Default)]
struct VerboseInfo {
    #[serde(default)]
    pid: u32,
    #[serde(rename = "runtimeSpec", default)]
    runtime_spec: Option<serde_json::Value>,
}

fn record_from_status(
    runtime: Runtime,
    s: cri::ContainerStatus,
    info: &HashMap<String, String>,
) -> ContainerRecord {
    let state = s.state();
    let labels: BTreeMap<String, String> = s.labels.into_iter().collect();
    let mut r = ContainerRecord::new(runtime, s.id).with_labels(labels);
    r.name = s
        .metadata
        .map(|m| m.name)
        .filter(|n| !n.is_empty())
        .or_else(|| r.labels.get(LABEL_CONTAINER_NAME).cloned())
        .unwrap_or_else(|| r.id.clone());
    r.image = s.image.map(|i| i.image).unwrap_or_default();
    r.image_id = if s.image_id.is_empty() {
        s.image_ref.clone()
    } else {
        s.image_id
    };
    if s.image_ref.contains('@') {
        r.image_digests.push(s.image_ref);
    }
    let verbose: VerboseInfo = info
        .get("info")
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let live = matches!(
        state,
        cri::ContainerState::ContainerRunning | cri::ContainerState::ContainerCreated
    );
    r.init_pid = (live && verbose.pid > 0).then_some(verbose.pid);
    r.cgroup_path = verbose
        .runtime_spec
        .as_ref()
        .and_then(|spec| spec.pointer("/linux/cgroupsPath"))
        .and_then(|p| p.as_str())
        .and_then(cgroup_path::from_oci_cgroups_path);
    r
}

/// A change seen by comparing two listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Created,
    Started,
    Exited,
    Deleted,
}

/// What happened between listing `before` and listing `now`. A container first seen running
/// is `Started` (its creation fell between two polls); one first seen exited is not reported.
pub(crate) fn changes(
    before: &HashMap<String, cri::ContainerState>,
    now: &[(String, cri::ContainerState)],
) -> Vec<(String, Change)> {
    use cri::ContainerState as S;
    let mut out = Vec::new();
    for (id, state) in now {
        let change = match (before.get(id), state) {
            (None, S::ContainerCreated) => Some(Change::Created),
            (None | Some(S::ContainerCreated), S::ContainerRunning) => Some(Change::Started),
            (Some(S::ContainerRunning | S::ContainerCreated), S::ContainerExited) => {
                Some(Change::Exited)
            }
            _ => None,
        };
        if let Some(c) = change {
            out.push((id.clone(), c));
        }
    }
    let still: std::collections::HashSet<&String> = now.iter().map(|(id, _)| id).collect();
    let mut gone: Vec<_> = before.keys().filter(|id| !still.contains(id)).collect();
    gone.sort();
    out.extend(gone.into_iter().map(|id| (id.clone(), Change::Deleted)));
    out
}

/// A CRI runtime as a source of the container table.
pub struct CriSource {
    socket: PathBuf,
    /// Known once connected; CRI-O until then.
    runtime: Runtime,
}

impl CriSource {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        CriSource {
            socket: socket.into(),
            runtime: Runtime::CriO,
        }
    }

    pub async fn run(self, tx: mpsc::Sender<SourceEvent>) {
        run_reconnecting(self, tx).await
    }
}

impl Session for CriSource {
    fn endpoint(&self) -> (Runtime, &std::path::Path) {
        (self.runtime, &self.socket)
    }

    async fn session(
        &mut self,
        tx: &mpsc::Sender<SourceEvent>,
        listed: &mut bool,
    ) -> Result<(), EngineError> {
        let client = CriClient::connect(&self.socket).await?;
        self.runtime = client.runtime();
        let source = self.id();
        let mut pending = client.events();
        let mut states: HashMap<String, cri::ContainerState> =
            client.states().await?.into_iter().collect();
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
        let stream = pending.join(client.runtime()).await??;
        let send = |change: Change, id: String| {
            let client = client.clone();
            let source = source.clone();
            async move { to_event(&client, source, change, id).await }
        };
        match stream {
            Some(mut stream) => {
                info!(runtime = %source.runtime, socket = %source.socket.display(), "following CRI container events");
                while let Some(ev) = stream.next().await {
                    let ev =
                        ev.map_err(rpc(source.runtime, "RuntimeService.GetContainerEvents"))?;
                    use cri::ContainerEventType as T;
                    let change = match ev.container_event_type() {
                        T::ContainerCreatedEvent => Change::Created,
                        T::ContainerStartedEvent => Change::Started,
                        T::ContainerStoppedEvent => Change::Exited,
                        T::ContainerDeletedEvent => Change::Deleted,
                    };
                    if let Some(event) = send(change, ev.container_id).await? {
                        if tx.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(EngineError::StreamEnded {
                    runtime: source.runtime,
                })
            }
            None => {
                warn!(runtime = %source.runtime, socket = %source.socket.display(),
                      interval_ms = POLL_INTERVAL.as_millis() as u64,
                      "CRI runtime has no GetContainerEvents: polling ListContainers; a new container's policy can lag by up to the interval");
                loop {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    let now = client.states().await?;
                    for (id, change) in changes(&states, &now) {
                        if let Some(event) = send(change, id).await? {
                            if tx.send(event).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    states = now.into_iter().collect();
                }
            }
        }
    }
}

async fn to_event(
    client: &CriClient,
    source: SourceId,
    change: Change,
    id: String,
) -> Result<Option<SourceEvent>, EngineError> {
    let key = ContainerKey {
        namespace: String::new(),
        id,
    };
    Ok(match change {
        Change::Created => client
            .container(&key.id)
            .await?
            .map(|container| SourceEvent::Created { source, container }),
        Change::Started => client
            .container(&key.id)
            .await?
            .map(|container| SourceEvent::Started { source, container }),
        Change::Exited => Some(SourceEvent::Exited {
            source,
            key,
            exit_status: None,
        }),
        Change::Deleted => Some(SourceEvent::Deleted { source, key }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri::ContainerState as S;

    #[test]
    fn verbose_status_gives_pid_cgroup_and_identity() {
        let status = cri::ContainerStatus {
            id: "abc".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "nginx".into(),
                attempt: 0,
            }),
            state: S::ContainerRunning as i32,
            image: Some(cri::ImageSpec {
                image: "docker.io/library/nginx:1.27".into(),
            }),
            image_ref: "docker.io/library/nginx@sha256:d1".into(),
            image_id: "sha256:c1".into(),
            labels: [
                ("io.kubernetes.pod.namespace", "shop"),
                ("io.kubernetes.pod.name", "web-0"),
                ("io.kubernetes.pod.uid", "u-1"),
                ("io.kubernetes.container.name", "nginx"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        };
        let info: HashMap<String, String> = [(
            "info".to_string(),
            r#"{"pid":4242,"sandboxID":"s","runtimeSpec":{"linux":{"cgroupsPath":"kubepods-burstable-podu_1.slice:crio:abc"}}}"#.to_string(),
        )]
        .into();
        let r = record_from_status(Runtime::CriO, status, &info);
        assert_eq!(r.runtime, Runtime::CriO);
        assert_eq!(r.name, "nginx");
        assert_eq!(r.init_pid, Some(4242));
        assert_eq!(r.image_id, "sha256:c1");
        assert_eq!(r.image_digests, ["docker.io/library/nginx@sha256:d1"]);
        assert_eq!(
            r.cgroup_path.as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice/crio-abc.scope")
        );
        assert_eq!(r.kubernetes.unwrap().pod, "web-0");
    }

    #[test]
    fn an_exited_container_has_no_pid_and_missing_info_is_not_guessed() {
        let status = cri::ContainerStatus {
            id: "abc".into(),
            state: S::ContainerExited as i32,
            ..Default::default()
        };
        let info: HashMap<String, String> = [("info".into(), r#"{"pid":4242}"#.into())].into();
        let r = record_from_status(Runtime::CriO, status.clone(), &info);
        assert_eq!(r.init_pid, None);
        let r = record_from_status(Runtime::CriO, status, &HashMap::new());
        assert_eq!((r.init_pid, r.cgroup_path), (None, None));
        assert_eq!(r.name, "abc");
    }

    #[test]
    fn polling_turns_listings_into_changes() {
        let before: HashMap<String, S> = [
            ("created".to_string(), S::ContainerCreated),
            ("running".to_string(), S::ContainerRunning),
            ("gone".to_string(), S::ContainerExited),
            ("same".to_string(), S::ContainerRunning),
        ]
        .into();
        let now = vec![
            ("created".to_string(), S::ContainerRunning),
            ("running".to_string(), S::ContainerExited),
            ("same".to_string(), S::ContainerRunning),
            ("new".to_string(), S::ContainerCreated),
            ("new-running".to_string(), S::ContainerRunning),
            ("new-exited".to_string(), S::ContainerExited),
        ];
        assert_eq!(
            changes(&before, &now),
            vec![
                ("created".to_string(), Change::Started),
                ("running".to_string(), Change::Exited),
                ("new".to_string(), Change::Created),
                ("new-running".to_string(), Change::Started),
                ("gone".to_string(), Change::Deleted),
            ]
        );
    }

    #[test]
    fn cri_runtime_names() {
        assert_eq!(runtime_named("cri-o"), Some(Runtime::CriO));
        assert_eq!(runtime_named("containerd"), Some(Runtime::Containerd));
        assert_eq!(runtime_named("docker"), Some(Runtime::Docker));
        assert_eq!(runtime_named("rkt"), None);
    }
}
