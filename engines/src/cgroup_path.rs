//! Container cgroups by path: where each runtime and cgroup driver puts a container in the
//! cgroup v2 (unified) hierarchy, the OCI `linux.cgroupsPath` forms, and `/proc/<pid>/cgroup`.
//!
//! Layouts recognised (paths from the root of the unified hierarchy):
//! - Docker: `/docker/<id>` (cgroupfs driver), `/system.slice/docker-<id>.scope` (systemd)
//! - Kubernetes, cgroupfs driver: `/kubepods[/<qos>]/pod<uid>/<id>` (CRI-O: `.../crio-<id>`)
//! - Kubernetes, systemd driver: `/kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid>.slice/
//!   cri-containerd-<id>.scope` (CRI-O: `crio-<id>.scope`, cri-dockerd: `docker-<id>.scope`)
//! - podman: `/libpod_parent/libpod-<id>` (cgroupfs), `/machine.slice/libpod-<id>.scope` (systemd)
//!
//! Never a container: host services (`/system.slice/foo.service`), sessions, `init.scope`, and
//! the runtimes' monitor processes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`), which
//! run outside the container.

use crate::record::Runtime;

/// What a container cgroup's path says about the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The container id the path names.
    pub container_id: String,
    /// The runtime the layout belongs to, where the layout tells (a bare id under a pod is
    /// containerd's or cri-dockerd's; the path alone cannot say which).
    pub runtime: Option<Runtime>,
    /// The pod's uid (with dashes), for Kubernetes layouts.
    pub pod_uid: Option<String>,
    /// The top-level container parent (`/docker`, `/kubepods`, `/kubepods.slice`,
    /// `/libpod_parent`, `/machine.slice`, `/system.slice`): where cgroup programs are attached
    /// once, gated on membership. Never the hierarchy root.
    pub parent: String,
}

/// The unified-hierarchy path in the text of `/proc/<pid>/cgroup` (its `0::` line). `None`
/// when there is none (a pure cgroup v1 host) or when the path lies outside the reader's cgroup
/// namespace (it starts with `/..`, as for a host process read from inside a pod): such a path
/// names no directory the reader can find, so it is not guessed at.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    let path = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_end();
    if !path.starts_with('/') || path == "/.." || path.starts_with("/../") {
        return None;
    }
    Some(path)
}

/// The unified cgroup path of a running process, from `/proc/<pid>/cgroup`.
pub fn unified_path_of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unified_path(&text).map(str::to_string)
}

/// The cgroup path an OCI spec's `linux.cgroupsPath` denotes, as runc resolves it:
/// - `/a/b` (cgroupfs, absolute): as is;
/// - `a/b` (cgroupfs, relative): from the hierarchy root, as runc does it;
/// - `slice:prefix:name` (systemd driver): the slice expanded to its ancestors
///   (`kubepods-burstable-pod1.slice` is `/kubepods.slice/kubepods-burstable.slice/
///   kubepods-burstable-pod1.slice`) and the unit `prefix-name.scope` under it (a `name` that
///   is itself a `.slice` is used as is).
///
/// `None` for an empty or malformed value (`..` components, a bad slice name): a path that
/// cannot be resolved exactly is not resolved approximately.
pub fn from_oci_cgroups_path(cgroups_path: &str) -> Option<String> {
    let p = cgroups_path.trim();
    if p.is_empty() {
        return None;
    }
    let parts: Vec<&str> = p.split(':').collect();
    let path = match parts.as_slice() {
        [_] => {
            if p.split('/').any(|c| c == "..") {
                return None;
            }
            let joined: Vec<&str> = p
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            format!("/{}", joined.join("/"))
        }
        [slice, prefix, name] => {
            if name.is_empty() || name.contains('/') || prefix.contains('/') {
                return None;
            }
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            let mut path = expand_slice(slice)?;
            let unit = if name.ends_with(".slice") {
                name.to_string()
            } else if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            if path != "/" {
                path.push('/');
            }
            path.push_str(&unit);
            path
        }
        _ => return None,
    };
    Some(path)
}

/// `linux.cgroupsPath` of an OCI runtime spec (JSON).
pub fn spec_cgroups_path(spec_json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    serde_json::from_slice::<Spec>(spec_json)
        .ok()?
        .linux?
        .cgroups_path
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
fn expand_slice(slice: &str) -> Option<String> {
    let stem = slice.strip_suffix(".slice")?;
    if stem == "-" {
        return Some("/".to_string());
    }
    if stem.is_empty() || stem.contains('/') || stem.starts_with('-') || stem.ends_with('-') {
        return None;
    }
    if stem.contains("--") {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Some(path)
}

/// The container whose cgroup is `path` or contains it (a container may make sub-cgroups of
/// its own, e.g. with a private cgroup namespace): the component nearest the root that is a
/// container cgroup, so a container nested inside another (Docker-in-Docker) is attributed to
/// the outer container, the one the host's runtime knows.
pub fn container_of(path: &str) -> Option<ContainerCgroup> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    (0..comps.len()).find_map(|i| classify(&comps[..=i]))
}

/// Whether `comps` (root first) ends in a container cgroup.
fn classify(comps: &[&str]) -> Option<ContainerCgroup> {
    let (leaf, ancestors) = comps.split_last()?;
    let top = format!("/{}", ancestors.first().copied().unwrap_or(leaf));
    let found = |id: &str, runtime: Option<Runtime>, pod_uid: Option<String>, parent: &str| {
        Some(ContainerCgroup {
            container_id: id.to_string(),
            runtime,
            pod_uid,
            parent: parent.to_string(),
        })
    };
    // The runtimes' monitors live next to their containers but are not them.
    if leaf.starts_with("crio-conmon-") || leaf.starts_with("libpod-conmon-") {
        return None;
    }
    if ancestors.is_empty() {
        // A container directly at the root would need a program at the root: never.
        return None;
    }
    let in_kubepods = matches!(ancestors[0], "kubepods" | "kubepods.slice");
    let pod_uid = if in_kubepods {
        ancestors.iter().rev().find_map(|c| pod_uid_of(c))
    } else {
        None
    };
    if let Some(scope) = leaf.strip_suffix(".scope") {
        for (prefix, runtime) in [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("docker-", Runtime::Docker),
            ("libpod-", Runtime::Podman),
        ] {
            if let Some(id) = scope.strip_prefix(prefix).filter(|id| is_id(id)) {
                // A container under kubepods must sit in a pod.
                if in_kubepods && pod_uid.is_none() {
                    return None;
                }
                return found(id, Some(runtime), pod_uid, &top);
            }
        }
        return None;
    }
    if in_kubepods {
        // cgroupfs driver: a container is a child of a `pod<uid>` directory.
        let parent = ancestors.last()?;
        pod_uid_of(parent)?;
        if let Some(id) = leaf.strip_prefix("crio-").filter(|id| is_id(id)) {
            return found(id, Some(Runtime::CriO), pod_uid, &top);
        }
        return is_id(leaf).then(|| ContainerCgroup {
            container_id: leaf.to_string(),
            runtime: None,
            pod_uid,
            parent: top,
        });
    }
    match (ancestors, *leaf) {
        (["docker"], id) if is_hex64(id) => found(id, Some(Runtime::Docker), None, "/docker"),
        (["libpod_parent"], l) => l
            .strip_prefix("libpod-")
            .filter(|id| is_id(id))
            .and_then(|id| found(id, Some(Runtime::Podman), None, "/libpod_parent")),
        _ => None,
    }
}

/// The pod uid a cgroup component names: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd).
fn pod_uid_of(comp: &str) -> Option<String> {
    let uid = if let Some(stem) = comp.strip_suffix(".slice") {
        let at = stem.rfind("-pod")?;
        stem[at + 4..].replace('_', "-")
    } else {
        comp.strip_prefix("pod")?.to_string()
    };
    (!uid.is_empty() && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(uid)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id as runtimes make them (and as `ctr run` accepts them).
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    const UID: &str = "0f6c4a4e-1b2c-4d5e-8f90-123456789abc";
    const UID_: &str = "0f6c4a4e_1b2c_4d5e_8f90_123456789abc";

    fn c(id: &str, runtime: Option<Runtime>, pod: Option<&str>, parent: &str) -> ContainerCgroup {
        ContainerCgroup {
            container_id: id.into(),
            runtime,
            pod_uid: pod.map(str::to_string),
            parent: parent.into(),
        }
    }

    #[test]
    fn proc_cgroup_unified_line() {
        let hybrid = "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n";
        assert_eq!(unified_path(hybrid), Some("/docker/abc"));
        assert_eq!(unified_path("0::/\n"), Some("/"));
        assert_eq!(unified_path("4:memory:/x\n"), None, "v1 only");
        // Read from inside a pod's cgroup namespace: not a path we can find.
        assert_eq!(unified_path("0::/../../kubepods/pod1/c\n"), None);
        assert_eq!(unified_path("0::/..\n"), None);
    }

    #[test]
    fn oci_cgroupfs_paths() {
        assert_eq!(
            from_oci_cgroups_path("/kubepods/burstable/pod1/c1").as_deref(),
            Some("/kubepods/burstable/pod1/c1")
        );
        assert_eq!(
            from_oci_cgroups_path("kubepods/besteffort/pod1/c1/").as_deref(),
            Some("/kubepods/besteffort/pod1/c1")
        );
        assert_eq!(from_oci_cgroups_path("/kubepods/../etc"), None);
        assert_eq!(from_oci_cgroups_path(""), None);
    }

    #[test]
    fn oci_systemd_paths_expand_the_slice() {
        assert_eq!(
            from_oci_cgroups_path(&format!(
                "kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"
            ))
            .as_deref(),
            Some(
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
                )
                .as_str()
            )
        );
        assert_eq!(
            from_oci_cgroups_path(&format!("kubepods-pod{UID_}.slice:crio:{ID}")).as_deref(),
            Some(format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope").as_str())
        );
        assert_eq!(
            from_oci_cgroups_path(&format!("system.slice:docker:{ID}")).as_deref(),
            Some(format!("/system.slice/docker-{ID}.scope").as_str())
        );
        assert_eq!(
            from_oci_cgroups_path(&format!(":libpod:{ID}")).as_deref(),
            Some(format!("/system.slice/libpod-{ID}.scope").as_str())
        );
        assert_eq!(
            from_oci_cgroups_path("-.slice:x:y").as_deref(),
            Some("/x-y.scope")
        );
        assert_eq!(from_oci_cgroups_path("bad--name.slice:x:y"), None);
        assert_eq!(from_oci_cgroups_path("a.slice:x"), None);
        assert_eq!(from_oci_cgroups_path("notaslice:x:y"), None);
    }

    #[test]
    fn kubernetes_cgroupfs_layouts() {
        for qos in ["burstable/", "besteffort/", ""] {
            assert_eq!(
                container_of(&format!("/kubepods/{qos}pod{UID}/{ID}")),
                Some(c(ID, None, Some(UID), "/kubepods")),
                "{qos}"
            );
        }
        assert_eq!(
            container_of(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            Some(c(ID, Some(Runtime::CriO), Some(UID), "/kubepods"))
        );
        // The pod's own cgroup and the QoS level are not containers.
        assert_eq!(container_of(&format!("/kubepods/burstable/pod{UID}")), None);
        assert_eq!(container_of("/kubepods/burstable"), None);
        assert_eq!(container_of("/kubepods"), None);
    }

    #[test]
    fn kubernetes_systemd_layouts() {
        let pod =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        assert_eq!(
            container_of(&format!("{pod}/cri-containerd-{ID}.scope")),
            Some(c(
                ID,
                Some(Runtime::Containerd),
                Some(UID),
                "/kubepods.slice"
            ))
        );
        assert_eq!(
            container_of(&format!("{pod}/crio-{ID}.scope")),
            Some(c(ID, Some(Runtime::CriO), Some(UID), "/kubepods.slice"))
        );
        // Guaranteed QoS: no QoS slice.
        assert_eq!(
            container_of(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
            )),
            Some(c(
                ID,
                Some(Runtime::Containerd),
                Some(UID),
                "/kubepods.slice"
            ))
        );
        // CRI-O's conmon runs in the pod's slice but outside the container.
        assert_eq!(container_of(&format!("{pod}/crio-conmon-{ID}.scope")), None);
        assert_eq!(container_of(&pod), None);
        // A scope under kubepods that is in no pod is not a pod container.
        assert_eq!(
            container_of(&format!("/kubepods.slice/cri-containerd-{ID}.scope")),
            None
        );
    }

    #[test]
    fn docker_and_podman_layouts() {
        assert_eq!(
            container_of(&format!("/docker/{ID}")),
            Some(c(ID, Some(Runtime::Docker), None, "/docker"))
        );
        assert_eq!(
            container_of(&format!("/system.slice/docker-{ID}.scope")),
            Some(c(ID, Some(Runtime::Docker), None, "/system.slice"))
        );
        assert_eq!(
            container_of(&format!("/libpod_parent/libpod-{ID}")),
            Some(c(ID, Some(Runtime::Podman), None, "/libpod_parent"))
        );
        assert_eq!(
            container_of(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(c(ID, Some(Runtime::Podman), None, "/machine.slice"))
        );
        assert_eq!(
            container_of(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        // Docker's bare ids are its own 64-hex ids only.
        assert_eq!(container_of("/docker/buildkit"), None);
    }

    #[test]
    fn host_cgroups_are_never_containers() {
        for p in [
            "/",
            "",
            "/system.slice/foo.service",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/init.scope",
            "/docker",
            "/libpod_parent",
            &format!("/{ID}"),
            &format!("/docker-{ID}.scope"),
        ] {
            assert_eq!(container_of(p), None, "{p}");
        }
    }

    #[test]
    fn sub_cgroups_and_nested_containers_belong_to_the_outer_container() {
        assert_eq!(
            container_of(&format!("/docker/{ID}/init.scope")),
            Some(c(ID, Some(Runtime::Docker), None, "/docker"))
        );
        let inner = "aa".repeat(32);
        assert_eq!(
            container_of(&format!("/docker/{ID}/docker/{inner}")).map(|c| c.container_id),
            Some(ID.to_string())
        );
    }
}
