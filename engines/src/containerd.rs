//! containerd through its own gRPC API: every namespace (`k8s.io` is where the kubelet's CRI
//! plugin puts pod containers, `default` is `ctr`'s, `moby` is Docker's), containers with
//! their tasks, and the `/containers/create`, `/tasks/start`, `/tasks/exit`,
//! `/containers/delete` events.

use std::{collections::BTreeMap, collections::HashMap, path::PathBuf};

use futures_util::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::{transport::Channel, Code, Request};
use tracing::{debug, warn};

use crate::{
    cgroup_path,
    error::EngineError,
    grpc::{
        containerd::{containers, events, images, namespaces, tasks},
        unix_channel, AbortOnDrop, CALL_TIMEOUT,
    },
    host::complete,
    record::{ContainerRecord, Runtime, LABEL_CONTAINER_NAME},
    source::{run_reconnecting, ContainerKey, Session, SourceEvent, SourceId},
};

const RUNTIME: Runtime = Runtime::Containerd;

/// Docker 23+ keeps its containers in the system containerd's `moby` namespace. Docker's own
/// API describes them better (names, image references), and reading them here as well would
/// put every Docker container in the table twice, so the containerd source leaves them out.
pub const DOCKER_NAMESPACE: &str = "moby";

/// The topics a source needs, as containerd's event filters (ORed).
const TOPICS: &[&str] = &[
    "/containers/create",
    "/tasks/start",
    "/tasks/exit",
    "/containers/delete",
];

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> EngineError {
    move |source| EngineError::Rpc {
        runtime: RUNTIME,
        call,
        source,
    }
}

/// A request scoped to one containerd namespace.
fn in_namespace<T>(namespace: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if let Ok(v) = namespace.parse() {
        req.metadata_mut().insert("containerd-namespace", v);
    }
    req
}

/// A connected containerd client.
#[derive(Clone)]
pub struct ContainerdClient {
    socket: PathBuf,
    channel: Channel,
    /// For the event stream: no call timeout.
    events: Channel,
}

impl ContainerdClient {
    pub async fn connect(socket: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let socket = socket.into();
        let err = |source| EngineError::Connect {
            runtime: RUNTIME,
            socket: socket.clone(),
            source,
        };
        let channel = unix_channel(&socket, Some(CALL_TIMEOUT))
            .await
            .map_err(err)?;
        let events = unix_channel(&socket, None).await.map_err(err)?;
        Ok(ContainerdClient {
            socket,
            channel,
            events,
        })
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    pub async fn namespaces(&self) -> Result<Vec<String>, EngineError> {
        let mut c = namespaces::namespaces_client::NamespacesClient::new(self.channel.clone());
        let list = c
            .list(namespaces::ListNamespacesRequest::default())
            .await
            .map_err(rpc("Namespaces.List"))?;
        Ok(list
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect())
    }

    /// Every container in every namespace but Docker's ([`DOCKER_NAMESPACE`]), with the pid of
    /// its task where one runs.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        let mut out = Vec::new();
        for ns in self.namespaces().await? {
            if ns == DOCKER_NAMESPACE {
                continue;
            }
            let mut cc = containers::containers_client::ContainersClient::new(self.channel.clone());
            let list = cc
                .list(in_namespace(
                    &ns,
                    containers::ListContainersRequest::default(),
                ))
                .await
                .map_err(rpc("Containers.List"))?
                .into_inner()
                .containers;
            let pids = self.task_pids(&ns).await?;
            let labels_of: HashMap<String, BTreeMap<String, String>> = list
                .iter()
                .map(|c| (c.id.clone(), c.labels.clone().into_iter().collect()))
                .collect();
            for c in list {
                let pid = pids.get(&c.id).copied();
                let digest = self.image_digest(&ns, &c.image).await?;
                let sandbox = sandbox_of(&c);
                let mut r = record_from(&ns, c, pid, digest);
                if let (Some(k), Some(labels)) = (
                    r.kubernetes.as_mut(),
                    sandbox.and_then(|s| labels_of.get(&s)),
                ) {
                    k.set_pod_labels(labels);
                }
                out.push(complete(r));
            }
        }
        Ok(out)
    }

    /// One container, or `None` if it is gone already.
    pub async fn container(
        &self,
        namespace: &str,
        id: &str,
        pid: Option<u32>,
    ) -> Result<Option<ContainerRecord>, EngineError> {
        let mut cc = containers::containers_client::ContainersClient::new(self.channel.clone());
        let got = cc
            .get(in_namespace(
                namespace,
                containers::GetContainerRequest { id: id.to_string() },
            ))
            .await;
        let c = match got {
            Ok(r) => match r.into_inner().container {
                Some(c) => c,
                None => return Ok(None),
            },
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(rpc("Containers.Get")(s)),
        };
        let digest = self.image_digest(namespace, &c.image).await?;
        let sandbox = sandbox_of(&c);
        let own_labels: BTreeMap<String, String> = c.labels.clone().into_iter().collect();
        let mut r = record_from(namespace, c, pid, digest);
        if let Some(k) = r.kubernetes.as_mut() {
            match sandbox {
                Some(s) if s == r.id => k.set_pod_labels(&own_labels),
                Some(s) => {
                    if let Some(labels) = self.labels_of(namespace, &s).await? {
                        k.set_pod_labels(&labels);
                    }
                }
                None => {}
            }
        }
        Ok(Some(complete(r)))
    }

    /// The labels of container `id`, or `None` if it is gone.
    async fn labels_of(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        let mut cc = containers::containers_client::ContainersClient::new(self.channel.clone());
        match cc
            .get(in_namespace(
                namespace,
                containers::GetContainerRequest { id: id.to_string() },
            ))
            .await
        {
            Ok(r) => Ok(r
                .into_inner()
                .container
                .map(|c| c.labels.into_iter().collect())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("Containers.Get")(s)),
        }
    }

    /// Pids of the tasks in `namespace` that have a live init process.
    async fn task_pids(&self, namespace: &str) -> Result<HashMap<String, u32>, EngineError> {
        let mut tc = tasks::tasks_client::TasksClient::new(self.channel.clone());
        let list = tc
            .list(in_namespace(namespace, tasks::ListTasksRequest::default()))
            .await
            .map_err(rpc("Tasks.List"))?
            .into_inner()
            .tasks;
        Ok(list
            .into_iter()
            .filter(|t| t.pid > 0 && t.status() != tasks::Status::Stopped)
            // containerd 1.6 leaves `container_id` empty in listings: the init process's
            // `id` is the container's.
            .map(|t| {
                let id = if t.container_id.is_empty() {
                    t.id
                } else {
                    t.container_id
                };
                (id, t.pid)
            })
            .collect())
    }

    /// The digest of the manifest `image` names, if containerd has the image.
    async fn image_digest(
        &self,
        namespace: &str,
        image: &str,
    ) -> Result<Option<String>, EngineError> {
        if image.is_empty() {
            return Ok(None);
        }
        let mut ic = images::images_client::ImagesClient::new(self.channel.clone());
        match ic
            .get(in_namespace(
                namespace,
                images::GetImageRequest {
                    name: image.to_string(),
                },
            ))
            .await
        {
            Ok(r) => Ok(r
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| t.digest)
                .filter(|d| !d.is_empty())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("Images.Get")(s)),
        }
    }

    /// Starts subscribing to the lifecycle topics. containerd sends the stream's head only
    /// with the first event, so the call runs in a task of its own: the request is on its way
    /// (and the subscription made, one round trip before any listing the caller does next
    /// returns) while the caller lists; the stream is awaited afterwards.
    pub(crate) fn subscribe(
        &self,
    ) -> AbortOnDrop<Result<tonic::Streaming<events::Envelope>, EngineError>> {
        let mut ec = events::events_client::EventsClient::new(self.events.clone());
        let filters = TOPICS.iter().map(|t| format!("topic==\"{t}\"")).collect();
        AbortOnDrop(tokio::spawn(async move {
            Ok(ec
                .subscribe(events::SubscribeRequest { filters })
                .await
                .map_err(rpc("Events.Subscribe"))?
                .into_inner())
        }))
    }
}

/// The record for a containerd container (no host lookups: see `complete`).
fn record_from(
    namespace: &str,
    c: containers::Container,
    pid: Option<u32>,
    digest: Option<String>,
) -> ContainerRecord {
    let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
    let mut r = ContainerRecord::new(RUNTIME, c.id).with_labels(labels);
    r.namespace = namespace.to_string();
    r.name = r
        .labels
        .get(LABEL_CONTAINER_NAME)
        .or_else(|| r.labels.get("nerdctl/name"))
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| r.id.clone());
    if let Some(d) = digest {
        // `docker.io/library/nginx:1.27` → `docker.io/library/nginx@sha256:...`
        let repo = repository_of(&c.image);
        if !repo.is_empty() {
            r.image_digests.push(format!("{repo}@{d}"));
        }
        r.image_id = d;
    }
    r.image = c.image;
    r.init_pid = pid;
    r.cgroup_path = c
        .spec
        .as_ref()
        .and_then(|s| cgroup_path::spec_cgroups_path(&s.value))
        .and_then(|p| cgroup_path::from_oci_cgroups_path(&p));
    r
}

/// The id of the pod sandbox a CRI-made container belongs to (the sandbox's own id for the
/// sandbox itself): containerd 2's `sandbox` field, else the CRI plugin's spec annotation.
fn sandbox_of(c: &containers::Container) -> Option<String> {
    if !c.sandbox.is_empty() {
        return Some(c.sandbox.clone());
    }
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let spec: Spec = serde_json::from_slice(&c.spec.as_ref()?.value).ok()?;
    spec.annotations
        .get("io.kubernetes.cri.sandbox-id")
        .filter(|s| !s.is_empty())
        .cloned()
}

/// The image reference without its tag or digest.
fn repository_of(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].rfind(':') {
        Some(colon) => &no_digest[..last_slash + colon],
        None => no_digest,
    }
}

/// containerd as a source of the container table, reconnecting when containerd restarts.
pub struct ContainerdSource {
    socket: PathBuf,
}

impl ContainerdSource {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ContainerdSource {
            socket: socket.into(),
        }
    }

    /// Sends the source's events to `tx` until the receiver is dropped.
    pub async fn run(self, tx: mpsc::Sender<SourceEvent>) {
        run_reconnecting(self, tx).await
    }
}

impl Session for ContainerdSource {
    fn endpoint(&self) -> (Runtime, &std::path::Path) {
        (RUNTIME, &self.socket)
    }

    async fn session(
        &mut self,
        tx: &mpsc::Sender<SourceEvent>,
        listed: &mut bool,
    ) -> Result<(), EngineError> {
        let client = ContainerdClient::connect(&self.socket).await?;
        let source = self.id();
        // Subscribe first: what happens while we list is queued in the stream.
        let mut pending = client.subscribe();
        let containers = client.list().await?;
        let event = SourceEvent::Listed {
            source: source.clone(),
            containers,
        };
        if tx.send(event).await.is_err() {
            return Ok(());
        }
        *listed = true;
        let mut stream = pending.join(RUNTIME).await??;
        while let Some(envelope) = stream.next().await {
            let envelope = envelope.map_err(rpc("Events.Subscribe"))?;
            let Some(event) = lifecycle(&client, &source, envelope).await? else {
                continue;
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        Err(EngineError::StreamEnded { runtime: RUNTIME })
    }
}

/// The payload of an envelope, decoded as `M`.
fn payload<M: Message + Default>(
    envelope: &events::Envelope,
    what: &'static str,
) -> Result<M, EngineError> {
    let bytes = envelope
        .event
        .as_ref()
        .map(|e| e.value.as_slice())
        .unwrap_or(&[]);
    M::decode(bytes).map_err(|source| EngineError::Decode {
        runtime: RUNTIME,
        what,
        source,
    })
}

async fn lifecycle(
    client: &ContainerdClient,
    source: &SourceId,
    envelope: events::Envelope,
) -> Result<Option<SourceEvent>, EngineError> {
    let ns = envelope.namespace.clone();
    if ns == DOCKER_NAMESPACE {
        return Ok(None);
    }
    let key = |id: String| ContainerKey {
        namespace: ns.clone(),
        id,
    };
    debug!(topic = %envelope.topic, namespace = %ns, "containerd event");
    Ok(match envelope.topic.as_str() {
        "/containers/create" => {
            let ev: events::ContainerCreate = payload(&envelope, "ContainerCreate")?;
            client
                .container(&ns, &ev.id, None)
                .await?
                .map(|container| SourceEvent::Created {
                    source: source.clone(),
                    container,
                })
        }
        "/tasks/start" => {
            let ev: events::TaskStart = payload(&envelope, "TaskStart")?;
            let found = client
                .container(&ns, &ev.container_id, Some(ev.pid))
                .await?;
            if found.is_none() {
                warn!(namespace = %ns, container_id = %ev.container_id, "started container is gone already");
            }
            found.map(|container| SourceEvent::Started {
                source: source.clone(),
                container,
            })
        }
        "/tasks/exit" => {
            let ev: events::TaskExit = payload(&envelope, "TaskExit")?;
            // An exec'd process exiting is not the container exiting.
            (ev.id == ev.container_id || ev.id.is_empty()).then(|| SourceEvent::Exited {
                source: source.clone(),
                key: key(ev.container_id),
                exit_status: Some(ev.exit_status),
            })
        }
        "/containers/delete" => {
            let ev: events::ContainerDelete = payload(&envelope, "ContainerDelete")?;
            Some(SourceEvent::Deleted {
                source: source.clone(),
                key: key(ev.id),
            })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PodIdentity, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

    fn container(
        id: &str,
        image: &str,
        labels: &[(&str, &str)],
        spec: &str,
    ) -> containers::Container {
        containers::Container {
            id: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            image: image.into(),
            spec: Some(containers::AnyValue {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: spec.as_bytes().to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_cri_pod_container_maps_to_a_record() {
        let c = container(
            "c0ffee",
            "docker.io/library/nginx:1.27",
            &[
                (LABEL_POD_NAMESPACE, "shop"),
                (LABEL_POD_NAME, "web-0"),
                (LABEL_POD_UID, "u-1"),
                (LABEL_CONTAINER_NAME, "nginx"),
            ],
            r#"{"ociVersion":"1.0.2","linux":{"cgroupsPath":"kubepods-burstable-podu_1.slice:cri-containerd:c0ffee"}}"#,
        );
        let r = record_from("k8s.io", c, Some(42), Some("sha256:abc".into()));
        assert_eq!(r.runtime, Runtime::Containerd);
        assert_eq!(r.namespace, "k8s.io");
        assert_eq!(r.name, "nginx");
        assert_eq!(r.image, "docker.io/library/nginx:1.27");
        assert_eq!(r.image_id, "sha256:abc");
        assert_eq!(r.image_digests, ["docker.io/library/nginx@sha256:abc"]);
        assert_eq!(r.init_pid, Some(42));
        assert_eq!(
            r.cgroup_path.as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice/cri-containerd-c0ffee.scope")
        );
        assert_eq!(
            r.kubernetes,
            Some(PodIdentity {
                namespace: "shop".into(),
                pod: "web-0".into(),
                pod_uid: "u-1".into(),
                container: "nginx".into(),
                labels: BTreeMap::new(),
            })
        );
    }

    #[test]
    fn the_sandbox_comes_from_the_cri_annotation_or_the_sandbox_field() {
        let c = container(
            "c1",
            "img",
            &[],
            r#"{"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"s1"}}"#,
        );
        assert_eq!(sandbox_of(&c).as_deref(), Some("s1"));
        let mut c = container("c2", "img", &[], "{}");
        assert_eq!(sandbox_of(&c), None);
        c.sandbox = "s2".into();
        assert_eq!(sandbox_of(&c).as_deref(), Some("s2"));
    }

    #[test]
    fn a_plain_container_is_named_by_its_id_and_has_no_pod() {
        let c = container("plain", "busybox", &[], r#"{"linux":{}}"#);
        let r = record_from("default", c, None, None);
        assert_eq!(r.name, "plain");
        assert_eq!(r.kubernetes, None);
        assert_eq!(r.cgroup_path, None);
        assert!(r.image_digests.is_empty());
    }

    #[test]
    fn a_spec_that_is_not_json_gives_no_cgroup_path() {
        let c = container("x", "busybox", &[], "not json");
        assert_eq!(record_from("default", c, None, None).cgroup_path, None);
    }

    #[test]
    fn repositories_drop_tag_and_digest() {
        assert_eq!(
            repository_of("docker.io/library/nginx:1.27"),
            "docker.io/library/nginx"
        );
        assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository_of("app@sha256:1"), "app");
    }

    #[test]
    fn event_payloads_decode_with_containerd_field_numbers() {
        // TaskExit{container_id:"c", id:"c", pid:7, exit_status:137} as containerd encodes it.
        let bytes = [0x0a, 1, b'c', 0x12, 1, b'c', 0x18, 7, 0x20, 0x89, 0x01];
        let envelope = events::Envelope {
            topic: "/tasks/exit".into(),
            namespace: "k8s.io".into(),
            event: Some(events::AnyValue {
                type_url: "containerd.events.TaskExit".into(),
                value: bytes.to_vec(),
            }),
            ..Default::default()
        };
        let ev: events::TaskExit = payload(&envelope, "TaskExit").unwrap();
        assert_eq!(
            (ev.container_id.as_str(), ev.pid, ev.exit_status),
            ("c", 7, 137)
        );
    }
}
