//! The test's own containerd: its own `--config`, root, state directory and socket under a
//! temporary directory, so Docker's containerd (and any node containerd) is never touched. The
//! test image is imported into namespace `k8s.io`, and containers are run with `ctr` the way
//! the kubelet's CRI plugin lays them out: `io.kubernetes.*` labels, and a cgroup per container
//! under its pod in either cgroup layout:
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`;
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
//!   cri-containerd-<id>.scope`. There is no systemd here (`ctr run --cgroup slice:prefix:name`
//!   needs systemd over D-Bus to create the scope), so the harness gives runc the systemd
//!   layout's *path* with the cgroupfs driver: the directories, names and depth are exactly the
//!   systemd driver's; only who creates them differs, which the kernel and the agent cannot see.
//!
//! Everything is removed on drop: tasks and containers (in every namespace), the cgroup
//! directories the containers' pods needed (in every hierarchy, deepest first, only if empty),
//! the containerd process (by pid) and its directories.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::engine::{
    copy_from_docker, engine_missing, remove_cgroup_dirs, skip_unless, unified_root, unmount_under,
    HostLeftovers,
};

/// The name `ctr images import` gives the test image saved from Docker.
pub const CTR_IMAGE: &str = "docker.io/seawall-test/busybox:latest";
/// The namespace the kubelet's CRI plugin uses.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// Whether this host can run a containerd of the test's own: root, `containerd` and `ctr`
/// installed, and the test image in Docker to import. Says `SKIP: <why>` otherwise (a failure
/// on CI).
pub fn containerd_available() -> bool {
    skip_unless(
        "containerd",
        engine_missing(
            &["containerd", "ctr"],
            "cargo xtask setup installs Debian's containerd",
        )
        .or_else(|| {
            (!unified_root().join("cgroup.procs").exists())
                .then(|| "no cgroup v2 (unified) hierarchy".to_string())
        }),
    )
}

/// What the test's shims and `ctr` leave under `/run/containerd`, deepest first. Not
/// `/run/containerd/s`: every containerd 1.6 on the host (Docker's too) puts its shims' sockets
/// there, whatever its state directory, so it is not the test's to remove.
const CONTAINERD_LEFTOVERS: &[&str] = &[
    "/run/containerd/runc/k8s.io",
    "/run/containerd/runc/moby",
    "/run/containerd/runc/default",
    "/run/containerd/runc",
    "/run/containerd/fifo",
    "/run/containerd",
];

/// A random lowercase hex string of `n` digits.
fn hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s.truncate(n);
    s
}

/// A container id as containerd's CRI plugin makes them: 64 hex digits.
pub fn container_id() -> String {
    hex(64)
}

/// A pod uid in the kubelet's form (a UUID).
pub fn pod_uid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A sandbox ("pause") image for CRI pods, built from the test image: a pod's sandbox runs its
/// image's command, and the test image has none. Removed from Docker on drop.
pub struct PauseImage {
    pub name: String,
}

impl PauseImage {
    pub fn build() -> PauseImage {
        let name = format!("seawall-test/pause:{}", crate::unique_name("pause"));
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &name, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            write!(stdin, "FROM {}\nCMD [\"sleep\", \"86400\"]\n", crate::IMAGE).unwrap();
        }
        let out = child.wait_with_output().expect("docker build");
        let image = PauseImage { name };
        assert!(
            out.status.success(),
            "docker build: {}",
            crate::text(&out.stderr)
        );
        image
    }

    /// Its name once imported into containerd.
    pub fn ctr_name(&self) -> String {
        format!("docker.io/{}", self.name)
    }
}

impl Drop for PauseImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The two cgroup drivers' layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    Cgroupfs,
    Systemd,
}

/// A pod, as far as the runtime sees one: labels and a cgroup parent.
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub layout: CgroupLayout,
}

impl Pod {
    pub fn new(namespace: &str, name: &str, layout: CgroupLayout) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            uid: pod_uid(),
            layout,
        }
    }

    /// The cgroup directories from the top-level parent down to the pod (burstable QoS).
    pub fn cgroup_dirs(&self) -> Vec<String> {
        match self.layout {
            CgroupLayout::Cgroupfs => vec![
                "/kubepods".into(),
                "/kubepods/burstable".into(),
                format!("/kubepods/burstable/pod{}", self.uid),
            ],
            CgroupLayout::Systemd => {
                let uid_ = self.uid.replace('-', "_");
                vec![
                    "/kubepods.slice".into(),
                    "/kubepods.slice/kubepods-burstable.slice".into(),
                    format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice"
                    ),
                ]
            }
        }
    }

    /// The cgroup path of container `id` in this pod.
    pub fn container_cgroup(&self, id: &str) -> String {
        let pod = self.cgroup_dirs().pop().expect("pod dir");
        match self.layout {
            CgroupLayout::Cgroupfs => format!("{pod}/{id}"),
            CgroupLayout::Systemd => format!("{pod}/cri-containerd-{id}.scope"),
        }
    }

    /// The labels the kubelet's CRI plugin puts on the pod's container `container`.
    pub fn labels(&self, container: &str) -> Vec<(String, String)> {
        vec![
            ("io.kubernetes.pod.namespace".into(), self.namespace.clone()),
            ("io.kubernetes.pod.name".into(), self.name.clone()),
            ("io.kubernetes.pod.uid".into(), self.uid.clone()),
            ("io.kubernetes.container.name".into(), container.into()),
            ("io.cri-containerd.kind".into(), "container".into()),
        ]
    }
}

/// A containerd instance of the test's own.
pub struct Containerd {
    dir: tempfile::TempDir,
    pub socket: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// Every pod cgroup directory a container of this instance may have created.
    cgroup_dirs: Vec<String>,
    leftovers: HostLeftovers,
}

impl Containerd {
    /// Starts containerd on its own directories, without its CRI plugin (as Docker's own
    /// containerd runs), and waits until it answers.
    pub fn start() -> Containerd {
        Self::start_with(None)
    }

    /// Starts containerd with its CRI plugin serving `runtime.v1.RuntimeService` on the same
    /// socket, as on a Kubernetes node, with `sandbox_image` as the pods' sandbox ("pause")
    /// image. Pods must use the node's network: there is no CNI configuration (the plugin says
    /// so in its log and carries on).
    pub fn start_with_cri(sandbox_image: &str) -> Containerd {
        Self::start_with(Some(sandbox_image))
    }

    fn start_with(cri_sandbox_image: Option<&str>) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("sw-containerd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        let mut text = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"{debug}\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            debug = d.join("debug.sock").display(),
        );
        match cri_sandbox_image {
            // Docker's own containerd disables the CRI plugin too.
            None => text.insert_str(0, "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"),
            Some(image) => {
                for sub in ["cni-bin", "cni-conf"] {
                    std::fs::create_dir(d.join(sub)).expect("cni dir");
                }
                // The streaming server (exec/attach) listens on loopback, on a free port. The
                // kubelet's sandboxes ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE
                // (not in this host's bounding set): keep scores at or above containerd's.
                text.push_str(&format!(
                    "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
                     \x20 sandbox_image = \"{image}\"\n\
                     \x20 stream_server_address = \"127.0.0.1\"\n\
                     \x20 stream_server_port = \"0\"\n\
                     \x20 disable_apparmor = true\n\
                     \x20 restrict_oom_score_adj = true\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
                     \x20 bin_dir = \"{bin}\"\n\
                     \x20 conf_dir = \"{conf}\"\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
                     \x20 default_runtime_name = \"runc\"\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                     \x20 runtime_type = \"io.containerd.runc.v2\"\n",
                    bin = d.join("cni-bin").display(),
                    conf = d.join("cni-conf").display(),
                ));
            }
        }
        std::fs::write(&config, text).expect("write containerd config");
        let mut c = Containerd {
            dir,
            socket,
            config,
            child: None,
            cgroup_dirs: Vec::new(),
            leftovers: HostLeftovers::note(CONTAINERD_LEFTOVERS),
        };
        c.spawn();
        c
    }

    /// Records cgroup directories a pod of this instance creates, for removal on drop.
    pub fn owns_cgroup_dirs(&mut self, dirs: &[String]) {
        for d in dirs {
            if !self.cgroup_dirs.contains(d) {
                self.cgroup_dirs.push(d.clone());
            }
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctr_ok(&["version"]) {
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {}:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops containerd (SIGTERM, by pid). Running containers keep running (their shims
    /// outlive containerd), as on a node whose containerd restarts.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts it again on the same directories and socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` on this instance's socket, in namespace `k8s.io`.
    pub fn ctr(&self) -> Command {
        self.ctr_in(K8S_NAMESPACE)
    }

    /// `ctr` on this instance's socket, in `namespace`.
    pub fn ctr_in(&self, namespace: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.socket).args(["-n", namespace]);
        c
    }

    fn ctr_ok(&self, args: &[&str]) -> bool {
        self.ctr()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Imports the test image (saved from Docker) into `k8s.io`.
    pub fn import_test_image(&self) {
        self.import_from_docker(crate::IMAGE);
    }

    /// Imports a Docker image into `k8s.io` (as `docker.io/<name>`).
    pub fn import_from_docker(&self, image: &str) {
        self.import_into(K8S_NAMESPACE, image);
    }

    /// Imports a Docker image into `namespace`.
    pub fn import_into(&self, namespace: &str, image: &str) {
        let mut load = self.ctr_in(namespace);
        load.args(["images", "import"]);
        copy_from_docker(image, self.dir.path(), load);
    }

    /// The digest `k8s.io`'s image `name` points at.
    pub fn image_digest(&self, name: &str) -> String {
        let out = self
            .ctr()
            .args(["images", "ls"])
            .output()
            .expect("ctr images ls");
        crate::text(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_default()
            .to_string()
    }

    fn run_args(&mut self, pod: &Pod, name: &str, id: &str, network: &str) -> Command {
        for d in pod.cgroup_dirs() {
            if !self.cgroup_dirs.contains(&d) {
                self.cgroup_dirs.push(d);
            }
        }
        let mut c = self.ctr();
        c.arg("run");
        if network == "host" {
            c.arg("--net-host");
        }
        c.arg("--cgroup").arg(pod.container_cgroup(id));
        for (k, v) in pod.labels(name) {
            c.arg("--label").arg(format!("{k}={v}"));
        }
        c
    }

    /// Starts the pod's container `name` running `sh -c script` in the background (`network`
    /// is `host` or `none`); removed when the returned handle drops.
    pub fn start_sh(&mut self, pod: &Pod, name: &str, network: &str, script: &str) -> PodContainer {
        let id = container_id();
        let out = self
            .run_args(pod, name, &id, network)
            .arg("-d")
            .args([CTR_IMAGE, &id, "sh", "-c", script])
            .output()
            .expect("ctr run -d");
        // Built before the assert so that a half-made container is removed too.
        let c = PodContainer {
            cgroup: pod.container_cgroup(&id),
            id,
            socket: self.socket.clone(),
        };
        assert!(
            out.status.success(),
            "ctr run -d: {}",
            crate::text(&out.stderr)
        );
        c
    }

    /// Runs the pod's container `name` with `sh -c script` in the foreground and returns its
    /// output (exit status included). The container stays (removed on drop) so its record can
    /// be looked at.
    pub fn run_sh(
        &mut self,
        pod: &Pod,
        name: &str,
        network: &str,
        script: &str,
    ) -> (PodContainer, Output) {
        let id = container_id();
        let out = self
            .run_args(pod, name, &id, network)
            .args([CTR_IMAGE, &id, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("ctr run");
        let cgroup = pod.container_cgroup(&id);
        (
            PodContainer {
                id,
                cgroup,
                socket: self.socket.clone(),
            },
            out,
        )
    }

    /// Every container of every namespace, removed with its task.
    fn remove_all_containers(&self) {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["namespaces", "ls", "-q"])
            .output();
        let Ok(out) = out else { return };
        for ns in crate::text(&out.stdout).lines() {
            let ctr = |args: &[&str]| {
                Command::new("ctr")
                    .arg("-a")
                    .arg(&self.socket)
                    .args(["-n", ns])
                    .args(args)
                    .output()
            };
            let Ok(list) = ctr(&["containers", "ls", "-q"]) else {
                continue;
            };
            for id in crate::text(&list.stdout).lines() {
                remove_container(&self.socket, ns, id);
            }
        }
    }
}

/// Kills and deletes a container's task, then the container.
fn remove_container(socket: &Path, namespace: &str, id: &str) {
    let ctr = |args: &[&str]| {
        let _ = Command::new("ctr")
            .arg("-a")
            .arg(socket)
            .args(["-n", namespace])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
    // The kill is asynchronous; `delete -f` waits for the task to be gone.
    ctr(&["tasks", "delete", "-f", id]);
    ctr(&["containers", "delete", id]);
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_none() {
            // Stopped by the test: start it again to remove what it still runs.
            self.spawn();
        }
        self.remove_all_containers();
        self.stop();
        remove_cgroup_dirs(&self.cgroup_dirs);
        self.leftovers.remove();
        // Anything still mounted under the instance's directories (an interrupted task's
        // rootfs) must go before the directories can.
        unmount_under(self.dir.path());
    }
}

/// The host pid of container `id`'s init process in `k8s.io`, as `ctr tasks ls` reports it.
pub fn task_pid(socket: &Path, id: &str) -> Option<u32> {
    let out = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(["-n", K8S_NAMESPACE, "tasks", "ls"])
        .output()
        .ok()?;
    crate::text(&out.stdout).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(id))
            .then(|| w.next()?.parse().ok())
            .flatten()
            .filter(|&p: &u32| p > 0)
    })
}

/// A container the test started; removed (task and container) on drop.
pub struct PodContainer {
    pub id: String,
    /// Its cgroup path from the root of the unified hierarchy.
    pub cgroup: String,
    socket: PathBuf,
}

impl PodContainer {
    /// The host pid of its init process, as containerd reports it.
    pub fn pid(&self) -> Option<u32> {
        task_pid(&self.socket, &self.id)
    }

    /// Its cgroup directory on this host.
    pub fn cgroup_dir(&self) -> PathBuf {
        unified_root().join(self.cgroup.trim_start_matches('/'))
    }

    /// Removes it now (task and container).
    pub fn remove(&self) {
        remove_container(&self.socket, K8S_NAMESPACE, &self.id);
    }
}

impl Drop for PodContainer {
    fn drop(&mut self) {
        self.remove();
    }
}
