//! The runtime-agnostic container record every source produces, and the Kubernetes identity
//! read from a container's `io.kubernetes.*` labels.

use std::{collections::BTreeMap, fmt, path::PathBuf};

/// The engine that runs a container, as events name it (`container.runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    /// The name in events and `seawall status`: `docker`, `containerd`, `cri-o`, `podman`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which pod a container belongs to (`container.kubernetes` in events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The container's name in the pod spec; empty for the pod's sandbox ("pause") container.
    pub container: String,
    /// The pod's own labels (`app`, `tier`, ...), for selecting profiles. The kubelet gives
    /// them to the pod's sandbox only, so sources read them from there; runtime bookkeeping
    /// (`io.kubernetes.*`, `io.cri-containerd.*`) is left out.
    pub labels: BTreeMap<String, String>,
}

/// The labels the kubelet puts on every container it asks a CRI runtime for.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

impl PodIdentity {
    /// The pod identity in `labels`, if the container belongs to a pod: both the namespace and
    /// the pod name must be present and non-empty (a lone `io.kubernetes.pod.name` set by hand
    /// on a Docker container says nothing about which namespace's policy applies, so it is not
    /// taken as a pod).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<PodIdentity> {
        let get = |k: &str| labels.get(k).map(|v| v.trim()).unwrap_or("");
        let namespace = get(LABEL_POD_NAMESPACE);
        let pod = get(LABEL_POD_NAME);
        if namespace.is_empty() || pod.is_empty() {
            return None;
        }
        Some(PodIdentity {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            pod_uid: get(LABEL_POD_UID).to_string(),
            container: get(LABEL_CONTAINER_NAME).to_string(),
            labels: BTreeMap::new(),
        })
    }

    /// Sets the pod's labels from its sandbox's labels.
    pub fn set_pod_labels(&mut self, sandbox_labels: &BTreeMap<String, String>) {
        self.labels = pod_labels(sandbox_labels);
    }
}

/// The pod's own labels among a sandbox's labels.
pub fn pod_labels(sandbox_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    sandbox_labels
        .iter()
        .filter(|(k, _)| !k.starts_with("io.kubernetes.") && !k.starts_with("io.cri-containerd."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One container as a runtime reports it. Every field a runtime cannot tell is empty or `None`;
/// none is guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The engine that reported it.
    pub runtime: Runtime,
    /// The runtime's container id (64 hex digits for all four runtimes).
    pub id: String,
    /// The human name: Docker's/podman's name; a pod's container name; else the id.
    pub name: String,
    /// containerd's namespace (`k8s.io` for the kubelet's containers); empty elsewhere.
    pub namespace: String,
    /// The image reference the container was created from, as the runtime stores it.
    pub image: String,
    /// The runtime's identifier of the image: Docker's and podman's image id, containerd's
    /// manifest digest, the CRI's `image_id` / `image_ref`.
    pub image_id: String,
    /// Repo digests (`name@sha256:...`) where the runtime knows them.
    pub image_digests: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Host pid of the container's init process; `None` before it starts or after it exits.
    pub init_pid: Option<u32>,
    /// The container's cgroup, as a path from the root of the cgroup v2 (unified) hierarchy,
    /// for example `/kubepods/burstable/pod<uid>/<id>`.
    pub cgroup_path: Option<String>,
    /// The merged root filesystem on the host, where the runtime says.
    pub rootfs: Option<PathBuf>,
    /// The overlay upper directory on the host (where drift lands).
    pub upper_dir: Option<PathBuf>,
    /// The pod, when the labels say the container belongs to one.
    pub kubernetes: Option<PodIdentity>,
}

impl ContainerRecord {
    /// A record with only the runtime and the id known.
    pub fn new(runtime: Runtime, id: impl Into<String>) -> Self {
        let id = id.into();
        ContainerRecord {
            runtime,
            name: id.clone(),
            id,
            namespace: String::new(),
            image: String::new(),
            image_id: String::new(),
            image_digests: Vec::new(),
            labels: BTreeMap::new(),
            init_pid: None,
            cgroup_path: None,
            rootfs: None,
            upper_dir: None,
            kubernetes: None,
        }
    }

    /// Sets `labels` and the pod identity they carry.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.kubernetes = PodIdentity::from_labels(&labels);
        self.labels = labels;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubelet_labels_map_to_the_pod_identity() {
        let l = labels(&[
            (LABEL_POD_NAMESPACE, "shop"),
            (LABEL_POD_NAME, "web-0"),
            (LABEL_POD_UID, "0f6c4a4e-1b2c-4d5e-8f90-123456789abc"),
            (LABEL_CONTAINER_NAME, "nginx"),
            ("io.cri-containerd.kind", "container"),
        ]);
        assert_eq!(
            PodIdentity::from_labels(&l),
            Some(PodIdentity {
                namespace: "shop".into(),
                pod: "web-0".into(),
                pod_uid: "0f6c4a4e-1b2c-4d5e-8f90-123456789abc".into(),
                container: "nginx".into(),
                labels: BTreeMap::new(),
            })
        );
    }

    #[test]
    fn pod_labels_leave_runtime_bookkeeping_out() {
        let sandbox = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("io.cri-containerd.kind", "sandbox"),
            (LABEL_POD_NAME, "web-0"),
            (LABEL_POD_NAMESPACE, "shop"),
        ]);
        assert_eq!(
            pod_labels(&sandbox),
            labels(&[("app", "web"), ("tier", "front")])
        );
    }

    #[test]
    fn a_sandbox_has_a_pod_but_no_container_name() {
        let l = labels(&[
            (LABEL_POD_NAMESPACE, "shop"),
            (LABEL_POD_NAME, "web-0"),
            (LABEL_POD_UID, "u"),
        ]);
        let id = PodIdentity::from_labels(&l).expect("pod");
        assert_eq!(id.container, "");
        assert_eq!(id.pod, "web-0");
    }

    #[test]
    fn a_pod_needs_both_namespace_and_name() {
        assert_eq!(PodIdentity::from_labels(&labels(&[])), None);
        assert_eq!(
            PodIdentity::from_labels(&labels(&[(LABEL_POD_NAME, "web-0")])),
            None
        );
        assert_eq!(
            PodIdentity::from_labels(&labels(&[(LABEL_POD_NAMESPACE, "shop")])),
            None
        );
        assert_eq!(
            PodIdentity::from_labels(&labels(&[
                (LABEL_POD_NAMESPACE, " "),
                (LABEL_POD_NAME, "web-0")
            ])),
            None
        );
    }

    #[test]
    fn with_labels_keeps_labels_and_identity_together() {
        let r = ContainerRecord::new(Runtime::Containerd, "c1").with_labels(labels(&[
            (LABEL_POD_NAMESPACE, "shop"),
            (LABEL_POD_NAME, "web-0"),
        ]));
        assert_eq!(r.labels.len(), 2);
        assert_eq!(r.kubernetes.unwrap().namespace, "shop");
    }

    #[test]
    fn runtime_names_are_the_event_schema_names() {
        let names: Vec<_> = [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
        ]
        .iter()
        .map(|r| r.to_string())
        .collect();
        assert_eq!(names, ["docker", "containerd", "cri-o", "podman"]);
    }
}
