//! The container table: every container the agent knows, keyed by its cgroup v2 id (the
//! in-kernel key). Runtime-agnostic: Docker fills it today; containerd/CRI-O or a test that
//! registers its own cgroup are other sources of the same rows.

use std::collections::{BTreeMap, HashMap};

use seawall_proto::event::Container;

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
            kubernetes: None,
            runtime: String::new(),
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
