//! The container table: every container the agent knows, keyed by its cgroup v2 id (the
//! in-kernel key). Runtime-agnostic: Docker, containerd, CRI-O and podman fill the same rows,
//! and a container cgroup no engine describes gets a row with its id only.

use std::collections::{BTreeMap, HashMap};

use seawall_engines::{PodIdentity, Runtime, SourceId};
use seawall_proto::event::{Container, Kubernetes};

/// What the agent knows of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// Image reference as the user gave it (`nginx:1.27`).
    pub image: String,
    /// Image id (`sha256:…`).
    pub image_id: String,
    /// Repo digests of the image (`nginx@sha256:…`), for digest-pinned profiles.
    pub image_digests: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Host pid of the container's init, 0 when not running.
    pub init_pid: u32,
    /// Overlay merged directory (the container's root filesystem as the host sees it).
    pub rootfs: Option<String>,
    /// Overlay upper directory (what the container wrote).
    pub upperdir: Option<String>,
    /// Storage driver name (`overlay2` …).
    pub storage_driver: String,
    /// Name of the profile applied.
    pub profile: String,
    /// The engine that runs it, when known (from its source, or from its cgroup's name).
    pub runtime: Option<Runtime>,
    /// The source that reported it; `None` for a container registered from its cgroup alone.
    pub source: Option<SourceId>,
    /// The pod it belongs to, from the runtime's `io.kubernetes.*` labels and the pod's labels.
    pub kubernetes: Option<PodIdentity>,
}

impl ContainerInfo {
    /// The `container` object of an event, with Kubernetes labels kept as they are.
    pub fn to_event(&self) -> Container {
        Container {
            id: self.id.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            labels: self.labels.clone(),
            kubernetes: self.kubernetes.as_ref().map(|k| Kubernetes {
                namespace: k.namespace.clone(),
                pod: k.pod.clone(),
                pod_uid: k.pod_uid.clone(),
                container: k.container.clone(),
            }),
            runtime: self
                .runtime
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
        }
    }

    /// Whether a listing by `source` speaks for this row: the source reported it, or the row
    /// was registered from a cgroup whose name says it is that source's runtime.
    pub fn listed_by(&self, source: &SourceId) -> bool {
        match &self.source {
            Some(s) => s == source,
            None => self.runtime == Some(source.runtime),
        }
    }
}

/// What an [`ContainerTable::upsert`] changed, for the caller to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A container the table did not know.
    Added,
    /// A known container's row was replaced (a reload, or a later, fuller inspect).
    Updated,
    /// The table is full: the container is not recorded and its events lack metadata.
    TableFull,
}

/// Bounded: rows are removed when a container dies; `max` guards against a runaway engine.
#[derive(Debug)]
pub struct ContainerTable {
    by_cgroup: HashMap<u64, ContainerInfo>,
    cgroup_of: HashMap<String, u64>,
    max: usize,
}

impl Default for ContainerTable {
    fn default() -> Self {
        Self::new(16_384)
    }
}

impl ContainerTable {
    pub fn new(max: usize) -> Self {
        Self {
            by_cgroup: HashMap::new(),
            cgroup_of: HashMap::new(),
            max,
        }
    }

    /// Inserts or replaces, and says which.
    pub fn upsert(&mut self, cgroup_id: u64, info: ContainerInfo) -> Change {
        let known = self.by_cgroup.contains_key(&cgroup_id);
        if !known && self.by_cgroup.len() >= self.max {
            return Change::TableFull;
        }
        self.cgroup_of.insert(info.id.clone(), cgroup_id);
        self.by_cgroup.insert(cgroup_id, info);
        if known {
            Change::Updated
        } else {
            Change::Added
        }
    }

    pub fn get(&self, cgroup_id: u64) -> Option<&ContainerInfo> {
        self.by_cgroup.get(&cgroup_id)
    }

    pub fn get_mut(&mut self, cgroup_id: u64) -> Option<&mut ContainerInfo> {
        self.by_cgroup.get_mut(&cgroup_id)
    }

    pub fn cgroup_of(&self, container_id: &str) -> Option<u64> {
        self.cgroup_of.get(container_id).copied()
    }

    pub fn remove_container(&mut self, container_id: &str) -> Option<(u64, ContainerInfo)> {
        let cg = self.cgroup_of.remove(container_id)?;
        self.by_cgroup.remove(&cg).map(|i| (cg, i))
    }

    pub fn len(&self) -> usize {
        self.by_cgroup.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_cgroup.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &ContainerInfo)> {
        self.by_cgroup.iter()
    }

    /// The engine ids of every container in the table.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.cgroup_of.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: format!("n-{id}"),
            image: "seawall-test/busybox:latest".into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_name_the_runtime_and_the_pod() {
        let mut c = info("a");
        assert_eq!(c.to_event().runtime, "");
        assert_eq!(c.to_event().kubernetes, None);
        c.runtime = Some(Runtime::Containerd);
        c.kubernetes = Some(PodIdentity {
            namespace: "shop".into(),
            pod: "web-0".into(),
            pod_uid: "u-1".into(),
            container: "nginx".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
        });
        let ev = c.to_event();
        assert_eq!(ev.runtime, "containerd");
        assert_eq!(
            ev.kubernetes,
            Some(Kubernetes {
                namespace: "shop".into(),
                pod: "web-0".into(),
                pod_uid: "u-1".into(),
                container: "nginx".into(),
            })
        );
    }

    #[test]
    fn a_listing_speaks_for_its_own_rows_and_for_unclaimed_rows_of_its_runtime() {
        let containerd = SourceId {
            runtime: Runtime::Containerd,
            socket: "/run/containerd/containerd.sock".into(),
        };
        let docker = SourceId {
            runtime: Runtime::Docker,
            socket: "/var/run/docker.sock".into(),
        };
        let mut c = info("a");
        assert!(!c.listed_by(&containerd), "no source, no runtime: nobody's");
        c.runtime = Some(Runtime::Containerd);
        assert!(c.listed_by(&containerd));
        assert!(!c.listed_by(&docker));
        c.source = Some(docker.clone());
        assert!(c.listed_by(&docker) && !c.listed_by(&containerd));
    }

    #[test]
    fn rows_are_found_by_cgroup_and_by_container_id_and_removed_on_die() {
        let mut t = ContainerTable::new(2);
        assert_eq!(t.upsert(10, info("a")), Change::Added);
        assert_eq!(t.upsert(11, info("b")), Change::Added);
        assert_eq!(
            t.upsert(12, info("c")),
            Change::TableFull,
            "the table is bounded"
        );
        assert_eq!(
            t.upsert(10, info("a")),
            Change::Updated,
            "replacing a row is always allowed"
        );
        assert_eq!(t.get(11).unwrap().name, "n-b");
        assert_eq!(t.cgroup_of("a"), Some(10));
        assert_eq!(t.remove_container("a").map(|(cg, _)| cg), Some(10));
        assert!(t.get(10).is_none());
        assert_eq!(t.len(), 1);
    }
}
