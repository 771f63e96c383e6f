//! Issue 11: the DaemonSet in `deploy/kubernetes/` renders with `kubectl kustomize`, and what
//! it mounts and sets is what the agent needs: the runtimes' sockets (from this crate's
//! defaults) and storage, bpffs, BTF, the cgroup hierarchy, the node name, a config whose
//! profiles directory is mounted, writable places for everything the agent writes, probes on
//! the agent's own health. Unprivileged: needs only `kubectl` (installed by `cargo xtask setup`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use seawall_engines::detect::{DEFAULTS, DOCKER_SOCKET, HOST_DIRS};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize DIR` as JSON documents, or `None` (after a loud SKIP) without kubectl.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("kubectl is needed on CI (cargo xtask setup installs it): {e}");
            }
            eprintln!(
                "SKIP: no kubectl ({e}); cargo xtask setup installs Debian's kubernetes-client"
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("yaml document");
            serde_json::to_value(v).expect("as json")
        })
        .filter(|v| !v.is_null())
        .collect();
    Some(docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn arr(v: &Value) -> &Vec<Value> {
    static EMPTY: Vec<Value> = Vec::new();
    v.as_array().unwrap_or(&EMPTY)
}

/// The DaemonSet's pod spec and its agent container.
fn agent(docs: &[Value]) -> (&Value, &Value) {
    let ds = of_kind(docs, "DaemonSet");
    assert_eq!(ds.len(), 1, "one DaemonSet");
    let pod = &ds[0]["spec"]["template"]["spec"];
    let containers = arr(&pod["containers"]);
    assert_eq!(containers.len(), 1, "one container");
    (pod, &containers[0])
}

/// The volume mounted at `path` in the agent container, with its mount.
fn mount_at<'a>(pod: &'a Value, c: &'a Value, path: &str) -> Option<(&'a Value, &'a Value)> {
    let m = arr(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == path)?;
    let v = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == m["name"])?;
    Some((m, v))
}

/// The mount whose path is `path` or the nearest ancestor of it.
fn covering_mount<'a>(pod: &'a Value, c: &'a Value, path: &str) -> Option<(&'a Value, &'a Value)> {
    let mut p = Path::new(path);
    loop {
        if let Some(found) = mount_at(pod, c, p.to_str()?) {
            return Some(found);
        }
        p = p.parent()?;
    }
}

/// A hostPath volume of the same path, mounted at `path`.
fn assert_host_dir(pod: &Value, c: &Value, path: &str, writable: bool) {
    let (m, v) = mount_at(pod, c, path).unwrap_or_else(|| panic!("nothing mounted at {path}"));
    assert_eq!(
        v["hostPath"]["path"], path,
        "{path} comes from the node's {path}"
    );
    assert_eq!(
        m["readOnly"].as_bool().unwrap_or(false),
        !writable,
        "{path} writable: {writable}"
    );
}

#[test]
fn the_daemonset_renders_and_mounts_what_the_agent_needs() {
    let Some(docs) = kustomize(&repo().join("deploy/kubernetes")) else {
        return;
    };
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"], "seawall",
                "{}",
                d["metadata"]["name"]
            );
        }
    }
    let ns = of_kind(&docs, "Namespace");
    assert_eq!(
        ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    // The agent calls no Kubernetes API: no RBAC, no token.
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        assert!(of_kind(&docs, kind).is_empty(), "no {kind}");
    }
    let (pod, c) = agent(&docs);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["hostPID"], true, "the agent sees the node's processes");
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["image"], "seawall:0.1.0");

    // Events are named after the node: NODE_NAME from the downward API.
    let node = arr(&c["env"])
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME in env");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");

    // Kernel-facing mounts.
    assert_host_dir(pod, c, "/sys/fs/bpf", true);
    assert_host_dir(pod, c, "/sys/fs/cgroup", false);
    let (_, btf) = covering_mount(pod, c, "/sys/kernel/btf/vmlinux").expect("BTF mounted");
    assert_eq!(btf["hostPath"]["path"], "/sys/kernel");

    // Every runtime socket the agent looks for by default is reachable at the same path, in a
    // directory mount (a socket-file mount would go stale when the runtime restarts).
    for (_, runtime, socket) in DEFAULTS {
        if *socket == DOCKER_SOCKET {
            continue; // only on Docker nodes: the docker-node component, tested below
        }
        let (m, v) = covering_mount(pod, c, socket)
            .unwrap_or_else(|| panic!("{runtime}'s socket {socket} is not mounted"));
        let dir = m["mountPath"].as_str().unwrap();
        assert_ne!(
            dir, *socket,
            "{runtime}: mount the directory, not the socket file"
        );
        assert_eq!(v["hostPath"]["path"], dir);
    }
    // The runtimes' storage and state, where container filesystems live, with the node's
    // later mounts propagated into the pod.
    for dir in HOST_DIRS {
        assert_host_dir(pod, c, dir, false);
        let (m, _) = mount_at(pod, c, dir).unwrap();
        assert_eq!(m["mountPropagation"], "HostToContainer", "{dir}");
    }

    // Config: the args name the file, a ConfigMap provides it, and the profiles directory it
    // names is mounted from the profiles ConfigMap, whose profiles all parse.
    let args: Vec<&str> = arr(&c["args"]).iter().filter_map(|a| a.as_str()).collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_path = Path::new(args[at + 1]);
    let (_, config_vol) = mount_at(pod, c, config_path.parent().unwrap().to_str().unwrap())
        .expect("config directory mounted");
    let configmap = |name: &Value| {
        of_kind(&docs, "ConfigMap")
            .into_iter()
            .find(|m| m["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("ConfigMap {name}"))
    };
    let config_cm = configmap(&config_vol["configMap"]["name"]);
    let agent_toml = config_cm["data"][config_path.file_name().unwrap().to_str().unwrap()]
        .as_str()
        .expect("agent.toml in the ConfigMap");
    let cfg: toml::Table = toml::from_str(agent_toml).expect("agent.toml parses");
    let profiles_dir = cfg["profiles"].as_str().expect("profiles key");
    let (_, profiles_vol) = mount_at(pod, c, profiles_dir).expect("profiles directory mounted");
    let profiles = &configmap(&profiles_vol["configMap"]["name"])["data"];
    let profiles = profiles.as_object().expect("profiles data");
    assert!(!profiles.is_empty(), "at least one profile");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in profiles {
        assert!(name.ends_with(".toml"), "{name}: the agent loads *.toml");
        std::fs::write(dir.path().join(name), text.as_str().unwrap()).unwrap();
    }
    let set = seawall_profile::ProfileSet::load_dir(dir.path())
        .unwrap_or_else(|report| panic!("the ConfigMap's profiles do not load: {report:?}"));
    assert_eq!(set.profiles().count(), profiles.len());

    // The root filesystem is read-only, so everything the agent writes is a writable mount:
    // the spool, the local API socket's directory, the pins under bpffs.
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_host_dir(pod, c, "/var/lib/seawall", true);
    assert_host_dir(pod, c, "/run/seawall", true);

    // Ready when the agent answers on its local API (in the writable /run/seawall); alive
    // while its metrics endpoint answers on the port agent.toml configures.
    let ready: Vec<&str> = arr(&c["readinessProbe"]["exec"]["command"])
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(ready[..2], ["/usr/local/bin/seawall", "status"]);
    let api = ready[ready.iter().position(|a| *a == "--api-socket").unwrap() + 1];
    assert!(api.starts_with("/run/seawall/"), "{api}");
    let metrics = cfg["metrics"].as_str().expect("metrics in agent.toml");
    let port: u64 = metrics.rsplit(':').next().unwrap().parse().unwrap();
    let named = arr(&c["ports"])
        .iter()
        .find(|p| p["name"] == c["livenessProbe"]["httpGet"]["port"])
        .expect("liveness port is a named container port");
    assert_eq!(named["containerPort"], port);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/metrics");

    for what in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][what][r].is_string(), "resources.{what}.{r}");
        }
    }
}

#[test]
fn the_docker_node_component_adds_the_docker_socket() {
    // An overlay in a temporary directory; kustomize wants paths relative to it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = "../".repeat(tmp.path().components().count() - 1);
    let base = repo().join("deploy/kubernetes").canonicalize().unwrap();
    let rel = format!("{up}{}", base.display().to_string().trim_start_matches('/'));
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        format!("resources:\n  - {rel}\ncomponents:\n  - {rel}/docker-node\n"),
    )
    .unwrap();
    let Some(docs) = kustomize(tmp.path()) else {
        return;
    };
    let (pod, c) = agent(&docs);
    let (_, v) = mount_at(pod, c, DOCKER_SOCKET).expect("docker socket mounted");
    assert_eq!(v["hostPath"]["path"], DOCKER_SOCKET);
    assert_eq!(v["hostPath"]["type"], "Socket");
    // The base's mounts are all still there.
    assert!(mount_at(pod, c, "/run/containerd").is_some());
}
