//! The cgroup v2 hierarchy on this host: where it is mounted, and the id of a cgroup (the inode
//! number of its directory, which is what `bpf_get_current_cgroup_id` returns). Works on pure
//! cgroup v2 hosts (`/sys/fs/cgroup`) and hybrid ones (`/sys/fs/cgroup/unified`).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (looked in /proc/self/mountinfo): Seawall keys containers by cgroup v2 id; mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`")]
    NoCgroup2,
    #[error("reading /proc/self/mountinfo")]
    MountInfo(#[source] procfs::ProcError),
    #[error("cgroup {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let mounts = procfs::process::Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(CgroupError::MountInfo)?;
    mounts
        .0
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .ok_or(CgroupError::NoCgroup2)
}

/// The id of the cgroup at `path` (absolute, on the cgroup2 mount).
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| CgroupError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The cgroup v2 path of a process relative to the hierarchy root (`0::/docker/<id>` →
/// `/docker/<id>`). One open, one read into a stack buffer, one close; a content too long for
/// the buffer is read again whole.
pub fn pid_cgroup(pid: u32) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/cgroup")).ok()?;
    let mut buf = [0u8; 4096];
    let n = file.read(&mut buf).ok()?;
    let path = if n < buf.len() {
        unified_path_bytes(&buf[..n])?.to_vec()
    } else {
        let mut all = buf.to_vec();
        file.read_to_end(&mut all).ok()?;
        unified_path_bytes(&all)?.to_vec()
    };
    String::from_utf8(path).ok()
}

/// The unified (hierarchy 0) path in the content of a `/proc/<pid>/cgroup`.
pub fn unified_path_bytes(content: &[u8]) -> Option<&[u8]> {
    content
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
        .map(|p| p.trim_ascii())
}

/// Whether the cgroup at `path` is `dir` or lies below it (both from the hierarchy root).
pub fn is_at_or_below(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// The path (from the hierarchy root) of the cgroup with id `id` that `pid` is in or below:
/// the pid's own cgroup, or its nearest ancestor with that id. Never the root.
pub fn ancestor_with_id(root: &Path, pid: u32, id: u64) -> Option<String> {
    let own = pid_cgroup(pid)?;
    ancestor_path_with_id(root, &own, id).map(str::to_owned)
}

/// The nearest ancestor of `path` (itself included, the root excluded) whose id is `id`.
fn ancestor_path_with_id<'p>(root: &Path, path: &'p str, id: u64) -> Option<&'p str> {
    let mut p = path.trim_end_matches('/');
    while !p.is_empty() {
        if cgroup_id(&root.join(p.trim_start_matches('/'))).ok()? == id {
            return Some(p);
        }
        p = &p[..p.rfind('/')?];
    }
    None
}

/// The container id in a cgroup path's last component (`<id>`, `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>`, `libpod-<id>.scope`, …), when it is a
/// 64-hex-digit container id, and the runtime its prefix names.
pub fn container_id_from_path(path: &str) -> Option<(String, Option<Runtime>)> {
    let last = path.rsplit('/').next()?;
    let bare = last.strip_suffix(".scope").unwrap_or(last);
    let (id, runtime) = [
        ("cri-containerd-", Some(Runtime::Containerd)),
        ("crio-", Some(Runtime::CriO)),
        ("docker-", Some(Runtime::Docker)),
        ("libpod-", Some(Runtime::Podman)),
    ]
    .into_iter()
    .find_map(|(prefix, runtime)| bare.strip_prefix(prefix).map(|id| (id, runtime)))
    .unwrap_or((bare, None));
    (id.len() == agent_common::CONTAINER_ID_HEX && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (id.to_string(), runtime))
}

/// Whether the last component of `path` (from the root of the hierarchy) names a container, by
/// the rule the kernel applies at `cgroup_mkdir` below nested parents.
pub fn names_a_container(path: &str) -> bool {
    let mut buf = [0u8; agent_common::CGROUP_PATH_BUF];
    let bytes = path.as_bytes();
    if bytes.len() >= buf.len() {
        return false;
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    agent_common::names_a_container(&buf, bytes.len() as u32)
}

/// How containers sit below a container parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentKind {
    /// Every child is a container (`/docker`, or a parent the operator named).
    Children,
    /// Containers at any depth, beside cgroups that are not containers, recognised by name
    /// ([`names_a_container`]): Kubernetes' `kubepods`, podman's `libpod_parent` and
    /// `machine.slice`, systemd's `system.slice` (Docker's systemd driver).
    Nested,
}

/// Parents whose layouts are nested (see [`ParentKind::Nested`]).
pub const NESTED_PARENTS: &[&str] = &[
    "kubepods",
    "kubepods.slice",
    "libpod_parent",
    "machine.slice",
    "system.slice",
];

impl ParentKind {
    /// The kind of the parent at `path` (below the hierarchy root): nested for the runtimes'
    /// well-known nested parents, children for any other.
    pub fn of(path: &str) -> ParentKind {
        if NESTED_PARENTS.contains(&path.trim_matches('/')) {
            ParentKind::Nested
        } else {
            ParentKind::Children
        }
    }

    /// How many levels below the parent containers are looked for.
    fn depth(self) -> usize {
        match self {
            ParentKind::Children => 1,
            ParentKind::Nested => NESTED_DEPTH,
        }
    }

    /// The value the kernel's `CONTAINER_PARENTS` map holds for it.
    pub fn abi(self) -> u32 {
        match self {
            ParentKind::Children => agent_common::PARENT_CHILDREN,
            ParentKind::Nested => agent_common::PARENT_NESTED,
        }
    }
}

/// A registered container parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerParent {
    /// Its directory (absolute, on the cgroup2 mount).
    pub dir: PathBuf,
    /// Its cgroup id.
    pub id: u64,
    pub kind: ParentKind,
}

/// Where containers live on this host: the cgroup2 mount and the registered parents.
#[derive(Debug, Clone, Default)]
pub struct ContainerParents {
    pub root: PathBuf,
    pub parents: Vec<ContainerParent>,
}

/// How deep below a nested parent a container is looked for (`kubepods.slice/<qos>/<pod>/<c>`
/// is 3 levels down; one more for a container's own sub-cgroups).
const NESTED_DEPTH: usize = 5;

impl ContainerParents {
    /// The container's cgroup directory for a cgroup path (from the hierarchy root), when it is
    /// in a container below a parent: the child of a children parent on the path, or below a
    /// nested parent the component nearest the top that names a container (the same one the
    /// kernel's membership walk finds first).
    pub fn container_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        let full = self.root.join(cgroup_path.trim_start_matches('/'));
        for parent in &self.parents {
            let Ok(rest) = full.strip_prefix(&parent.dir) else {
                continue;
            };
            let mut dir = parent.dir.clone();
            for component in rest.components() {
                dir.push(component);
                match parent.kind {
                    ParentKind::Children => return Some(dir),
                    ParentKind::Nested => {
                        let rel = dir.strip_prefix(&self.root).ok()?;
                        if names_a_container(&format!("/{}", rel.display())) {
                            return Some(dir);
                        }
                    }
                }
            }
            return None;
        }
        None
    }

    /// The container directory of a container whose init runs in `cgroup_path`: as
    /// [`Self::container_dir`], or, below a nested parent, the init's own cgroup when its name is
    /// not a runtime's (the engine said it is a container; the kernel then knows it by its
    /// policy entry only, from registration on).
    pub fn container_dir_of_init(&self, cgroup_path: &str) -> Option<PathBuf> {
        self.container_dir(cgroup_path).or_else(|| {
            let full = self.root.join(cgroup_path.trim_start_matches('/'));
            self.parents
                .iter()
                .any(|p| p.kind == ParentKind::Nested && full.starts_with(&p.dir) && full != p.dir)
                .then_some(full)
        })
    }

    /// The directory of a container cgroup by id (its inode), if it still exists below a
    /// parent.
    pub fn dir_of(&self, cgroup_id: u64) -> Option<PathBuf> {
        self.parents
            .iter()
            .find_map(|p| find_inode(&p.dir, cgroup_id, p.kind.depth()))
    }

    /// The ids of every cgroup below the parents (as deep as [`Self::dir_of`] looks), read in
    /// one walk.
    pub fn live_ids(&self) -> std::collections::HashSet<u64> {
        let mut ids = std::collections::HashSet::new();
        for p in &self.parents {
            collect_inodes(&p.dir, p.kind.depth(), &mut ids);
        }
        ids
    }

    /// The parent a directory lies below, if any.
    pub fn parent_of(&self, dir: &Path) -> Option<&ContainerParent> {
        self.parents
            .iter()
            .find(|p| dir.starts_with(&p.dir) && dir != p.dir)
    }
}

/// Adds the inode of every directory below `dir` (at most `depth` levels down) to `ids`.
fn collect_inodes(dir: &Path, depth: usize, ids: &mut std::collections::HashSet<u64>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_dir() {
                ids.insert(m.ino());
                collect_inodes(&e.path(), depth - 1, ids);
            }
        }
    }
}

/// The directory below `dir` (at most `depth` levels down) whose inode is `ino`.
fn find_inode(dir: &Path, ino: u64, depth: usize) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !m.is_dir() {
            continue;
        }
        if m.ino() == ino {
            return Some(e.path());
        }
        subdirs.push(e.path());
    }
    subdirs.iter().find_map(|d| find_inode(d, ino, depth - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_hosts() {
        use procfs::{process::MountInfos, FromRead};
        let root = |text: &str| {
            MountInfos::from_read(text.as_bytes())
                .unwrap()
                .0
                .into_iter()
                .find(|m| m.fs_type == "cgroup2")
                .map(|m| m.mount_point)
        };
        let hybrid =
            "30 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n\
                      31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(root(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(root(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(root("1 2 0:1 / / rw - ext4 /dev/vda rw\n"), None);
        assert!(
            cgroup2_root().is_ok(),
            "this machine has a cgroup v2 hierarchy"
        );
    }

    #[test]
    fn reads_the_unified_line_of_proc_pid_cgroup() {
        let text = b"9:name=systemd:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n";
        assert_eq!(unified_path_bytes(text), Some(&b"/docker/abc"[..]));
        assert_eq!(unified_path_bytes(b"0::/\n"), Some(&b"/"[..]));
        assert_eq!(unified_path_bytes(b"1:cpu:/x\n"), None, "no unified line");
        let mine = pid_cgroup(std::process::id()).unwrap();
        assert!(mine.starts_with('/'), "{mine}");
    }

    #[test]
    fn a_cgroup_is_below_a_directory_only_at_a_component_boundary() {
        assert!(is_at_or_below(b"/docker/abc", b"/docker/abc"));
        assert!(is_at_or_below(b"/docker/abc/init", b"/docker/abc"));
        assert!(!is_at_or_below(b"/docker/abcd", b"/docker/abc"));
        assert!(!is_at_or_below(b"/docker", b"/docker/abc"));
        assert!(!is_at_or_below(b"/user.slice", b"/docker/abc"));
    }

    #[test]
    fn the_container_cgroup_is_found_among_the_ancestors_by_id() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("docker/c1/sub/deeper")).unwrap();
        let id = cgroup_id(&root.path().join("docker/c1")).unwrap();
        let r = root.path();
        assert_eq!(
            ancestor_path_with_id(r, "/docker/c1/sub/deeper", id),
            Some("/docker/c1")
        );
        assert_eq!(
            ancestor_path_with_id(r, "/docker/c1", id),
            Some("/docker/c1")
        );
        assert_eq!(ancestor_path_with_id(r, "/docker", id), None);
        let root_id = cgroup_id(r).unwrap();
        assert_eq!(
            ancestor_path_with_id(r, "/docker", root_id),
            None,
            "never the root"
        );
        assert_eq!(ancestor_path_with_id(r, "/gone/x", id), None);
    }

    #[test]
    fn extracts_container_ids_from_cgroupfs_and_systemd_layouts() {
        let id = "a".repeat(64);
        let found = |path: &str| container_id_from_path(path);
        assert_eq!(found(&format!("/docker/{id}")), Some((id.clone(), None)));
        assert_eq!(
            found(&format!("/system.slice/docker-{id}.scope")),
            Some((id.clone(), Some(Runtime::Docker)))
        );
        assert_eq!(
            found(&format!(
                "/kubepods.slice/x.slice/p.slice/cri-containerd-{id}.scope"
            )),
            Some((id.clone(), Some(Runtime::Containerd)))
        );
        assert_eq!(
            found(&format!("/kubepods/burstable/pod1/crio-{id}")),
            Some((id.clone(), Some(Runtime::CriO)))
        );
        assert_eq!(
            found(&format!("/machine.slice/libpod-{id}.scope")),
            Some((id.clone(), Some(Runtime::Podman)))
        );
        assert_eq!(found("/docker"), None);
        assert_eq!(found("/user.slice/x"), None);
        assert_eq!(found(&format!("/kubepods/pod1/crio-conmon-{id}")), None);
    }

    /// Parents as directories of a scratch tree standing in for the cgroup2 mount.
    fn tree(paths: &[&str]) -> (tempfile::TempDir, ContainerParents) {
        let root = tempfile::tempdir().unwrap();
        for p in paths {
            std::fs::create_dir_all(root.path().join(p)).unwrap();
        }
        let parents = ["docker", "kubepods", "kubepods.slice", "system.slice"]
            .iter()
            .map(|p| {
                let dir = root.path().join(p);
                std::fs::create_dir_all(&dir).unwrap();
                ContainerParent {
                    id: cgroup_id(&dir).unwrap(),
                    dir,
                    kind: ParentKind::of(p),
                }
            })
            .collect();
        let parents = ContainerParents {
            root: root.path().to_path_buf(),
            parents,
        };
        (root, parents)
    }

    #[test]
    fn containers_are_found_at_any_depth_below_nested_parents_and_as_children_of_docker() {
        let id = "b".repeat(64);
        let pod = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice";
        let scope = format!("{pod}/cri-containerd-{id}.scope");
        let cgroupfs = format!("kubepods/burstable/pod1-2/{id}");
        let (root, parents) = tree(&[&scope, &cgroupfs, "system.slice/foo.service"]);
        let r = root.path();
        assert_eq!(
            parents.container_dir(&format!("/{scope}/sub")),
            Some(r.join(&scope)),
            "a container's own sub-cgroup belongs to it"
        );
        assert_eq!(
            parents.container_dir(&format!("/{cgroupfs}")),
            Some(r.join(&cgroupfs))
        );
        assert_eq!(
            parents.container_dir(&format!("/docker/{id}/init")),
            Some(r.join(format!("docker/{id}")))
        );
        // Pod and QoS levels and host services are in no container.
        for host in [
            pod,
            "kubepods/burstable",
            "system.slice/foo.service",
            "user.slice/x",
        ] {
            assert_eq!(parents.container_dir(&format!("/{host}")), None, "{host}");
        }
        // An engine's container whose cgroup name is its own: its init's cgroup.
        assert_eq!(
            parents.container_dir_of_init("/kubepods/burstable/pod1-2/my-ctr"),
            Some(r.join("kubepods/burstable/pod1-2/my-ctr"))
        );
        assert_eq!(parents.container_dir_of_init("/kubepods"), None);
        assert_eq!(parents.container_dir_of_init("/user.slice/x"), None);
        // And found again by inode, however deep.
        let ino = cgroup_id(&r.join(&scope)).unwrap();
        assert_eq!(parents.dir_of(ino), Some(r.join(&scope)));
        let docker = r.join("docker").join(&id);
        std::fs::create_dir_all(&docker).unwrap();
        assert_eq!(
            parents.dir_of(cgroup_id(&docker).unwrap()),
            Some(docker.clone())
        );
        let live = parents.live_ids();
        assert!(live.contains(&ino) && live.contains(&cgroup_id(&docker).unwrap()));
    }

    #[test]
    fn only_the_runtimes_nested_parents_are_nested() {
        assert_eq!(ParentKind::of("docker"), ParentKind::Children);
        assert_eq!(ParentKind::of("/kubepods/"), ParentKind::Nested);
        assert_eq!(ParentKind::of("kubepods.slice"), ParentKind::Nested);
        assert_eq!(ParentKind::of("my-containers"), ParentKind::Children);
        assert_eq!(ParentKind::Nested.abi(), agent_common::PARENT_NESTED);
        assert_eq!(ParentKind::Children.abi(), agent_common::PARENT_CHILDREN);
    }
}
