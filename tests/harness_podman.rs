//! The test's own podman: its own storage root, run root, temp dir and `containers.conf`, and
//! its own `podman system service` (the Docker-compatible API) on a socket in a temporary
//! directory; the host's podman storage (`/var/lib/containers`) is never touched.
//!
//! podman on this kind of host needs two settings in `containers.conf`:
//! - `default_ulimits`: podman asks runc for `RLIMIT_NOFILE`/`RLIMIT_NPROC` of 1048576, above
//!   this host's hard limits, and without `CAP_SYS_RESOURCE` in the bounding set runc's
//!   `setrlimit` fails ("error setting rlimit type 7: operation not permitted"). With 1024 for
//!   both, every container starts.
//! - `cgroup_manager = "cgroupfs"` and `events_logger = "file"`: there is no systemd or journald;
//!   the file logger is also what lets the API service report containers the CLI started.
//!
//! Everything is removed on drop: containers, the service (by pid), podman's `/libpod_parent`
//! cgroups (where empty), mounts under the temporary directory, the directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The name `podman load` gives the test image saved from Docker.
pub const PODMAN_IMAGE: &str = "localhost/seawall-test/busybox:latest";

/// Whether podman can be tested here (root, podman installed, the test image in Docker).
pub fn podman_available() -> bool {
    crate::engine::skip_unless(
        "podman",
        crate::engine::engine_missing(&["podman"], "cargo xtask setup installs it"),
    )
}

/// A podman of the test's own, with its API service running.
pub struct Podman {
    dir: tempfile::TempDir,
    pub socket: PathBuf,
    service: Option<Child>,
    /// Host paths podman writes whatever its `--root`.
    leftovers: crate::engine::HostLeftovers,
}

/// Host paths podman creates as root regardless of `--root` (its blob-info cache), deepest
/// first.
const HOST_LEFTOVERS: &[&str] = &[
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
];

impl Podman {
    pub fn start() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("sw-podman-")
            .tempdir()
            .expect("tempdir");
        // 1024 of each works here; limits at the host's own hard limits did not (runc still got
        // EPERM for RLIMIT_NPROC), so the harness does not try to be generous.
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{events}\"\n\
             [network]\n\
             network_config_dir = \"{net}\"\n",
            events = dir.path().join("events.log").display(),
            net = dir.path().join("networks").display(),
        );
        std::fs::write(dir.path().join("containers.conf"), conf).expect("containers.conf");
        let socket = dir.path().join("podman.sock");
        let mut p = Podman {
            dir,
            socket,
            service: None,
            leftovers: crate::engine::HostLeftovers::note(HOST_LEFTOVERS),
        };
        let log = std::fs::File::create(p.dir.path().join("service.log")).expect("log");
        let service = p
            .podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", p.socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("podman system service");
        p.service = Some(service);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&p.socket).is_err() {
            if Instant::now() > deadline {
                panic!("podman service did not listen:\n{}", p.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// `podman` on this instance's storage and configuration.
    pub fn podman(&self) -> Command {
        podman_in(self.dir.path())
    }

    /// Loads the test image (saved from Docker).
    pub fn load_test_image(&self) {
        let mut load = self.podman();
        load.args(["load", "-i"]);
        crate::engine::copy_from_docker(crate::IMAGE, self.dir.path(), load);
    }

    fn run(&self, name: &str, labels: &[(&str, &str)], detach: bool, script: &str) -> Output {
        let mut c = self.podman();
        c.arg("run");
        if detach {
            c.arg("-d");
        }
        c.args(["--name", name, "--network", "none"]);
        for (k, v) in labels {
            c.arg("--label").arg(format!("{k}={v}"));
        }
        c.args([PODMAN_IMAGE, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("podman run")
    }

    /// `podman run -d` of `sh -c script` (removed on drop of the handle).
    pub fn start_sh(&self, tag: &str, labels: &[(&str, &str)], script: &str) -> PodmanContainer {
        let name = crate::unique_name(tag);
        let out = self.run(&name, labels, true, script);
        let c = PodmanContainer {
            name,
            id: crate::text(&out.stdout).trim().to_string(),
            dir: self.dir.path().to_path_buf(),
        };
        assert!(
            out.status.success(),
            "podman run -d: {}",
            crate::text(&out.stderr)
        );
        c
    }
}

impl Podman {
    /// `podman run` of `sh -c script` in the foreground: its output (exit status included),
    /// and the container, kept (removed on drop of the handle) so its id can be matched.
    pub fn run_sh(
        &self,
        tag: &str,
        labels: &[(&str, &str)],
        script: &str,
    ) -> (PodmanContainer, Output) {
        let name = crate::unique_name(tag);
        let out = self.run(&name, labels, false, script);
        let id = self
            .podman()
            .args(["inspect", "-f", "{{.Id}}", &name])
            .output()
            .map(|o| crate::text(&o.stdout).trim().to_string())
            .ok()
            .filter(|id| !id.is_empty())
            // Not made at all: removing by name is as good (and as harmless).
            .unwrap_or_else(|| name.clone());
        let c = PodmanContainer {
            name,
            id,
            dir: self.dir.path().to_path_buf(),
        };
        (c, out)
    }
}

/// `podman` on the storage and configuration of the instance in `dir`.
fn podman_in(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", dir.join("containers.conf"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"));
    c
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .podman()
            .args(["rm", "-af", "-t", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut service) = self.service.take() {
            unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(service.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = service.kill();
                    let _ = service.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self
            .podman()
            .args(["system", "reset", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        crate::engine::remove_cgroup_dirs(&[
            "/libpod_parent".to_string(),
            "/libpod_parent/conmon".to_string(),
        ]);
        crate::engine::unmount_under(self.dir.path());
        self.leftovers.remove();
    }
}

/// A podman container the test started; removed on drop.
pub struct PodmanContainer {
    pub name: String,
    pub id: String,
    /// The instance's directory.
    dir: PathBuf,
}

impl PodmanContainer {
    fn podman(&self) -> Command {
        podman_in(&self.dir)
    }

    /// The host pid of its init process, as podman reports it.
    pub fn pid(&self) -> Option<u32> {
        let out = self
            .podman()
            .args(["inspect", "-f", "{{.State.Pid}}", &self.id])
            .output()
            .ok()?;
        crate::text(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|&p| p > 0)
    }

    /// `podman kill` (SIGKILL to its init).
    pub fn kill(&self) {
        let _ = self
            .podman()
            .args(["kill", "-s", "KILL", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn remove(&self) {
        let _ = self
            .podman()
            .args(["rm", "-f", "-t", "0", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        self.remove();
    }
}
