//! What the containerd and podman harnesses share: whether an engine can be tested here
//! (loud SKIP otherwise), copying the test image out of Docker, cleaning up what an engine
//! leaves on the host whatever its own directories, and waiting for a source's events.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

/// Why an engine cannot be tested here, if it cannot: not root, one of `commands` missing
/// (`install` says how to get them), or no test image in Docker to copy into it.
pub fn engine_missing(commands: &[&str], install: &str) -> Option<String> {
    let ok = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".to_string());
    }
    if let Some(c) = commands
        .iter()
        .find(|c| !ok(Command::new(c).arg("--version")))
    {
        return Some(format!("{c} not installed ({install})"));
    }
    if !ok(Command::new("docker").args(["image", "inspect", crate::IMAGE])) {
        return Some(format!(
            "no {} in Docker to copy from (run cargo xtask setup)",
            crate::IMAGE
        ));
    }
    None
}

/// True when `why` is `None`; otherwise says `SKIP: <why>` loudly, and on CI (`CI=true`)
/// fails instead: a missing capability is never a silent pass.
pub fn skip_unless(what: &str, why: Option<String>) -> bool {
    match why {
        None => true,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{what} test cannot run on CI: {why}");
            }
            eprintln!("SKIP: {why}");
            false
        }
    }
}

/// Copies a Docker image into another engine: `docker save` into a tar under `dir`, then
/// `load` with the tar's path as its last argument (`ctr images import`, `podman load -i`).
pub fn copy_from_docker(image: &str, dir: &Path, mut load: Command) {
    let tar = dir.join("image.tar");
    let out = Command::new("docker")
        .args(["save", "-o"])
        .arg(&tar)
        .arg(image)
        .output()
        .expect("docker save");
    assert!(
        out.status.success(),
        "docker save: {}",
        crate::text(&out.stderr)
    );
    let out = load.arg(&tar).output().expect("image load");
    assert!(
        out.status.success(),
        "{load:?}: {}",
        crate::text(&out.stderr)
    );
    let _ = std::fs::remove_file(tar);
}

/// Host paths an engine creates whatever its own root and state directories (containerd's
/// shims keep runc state in `/run/containerd/runc/<namespace>`, `ctr` its fifos in
/// `/run/containerd/fifo`; podman its blob-info cache in `/var/lib/containers/cache`). The ones
/// that did not exist when the test's engine started are removed when it stops; directories
/// only when empty, so a node's own engine state is never touched.
pub struct HostLeftovers(Vec<PathBuf>);

impl HostLeftovers {
    /// `paths` deepest first.
    pub fn note(paths: &[&str]) -> HostLeftovers {
        HostLeftovers(
            paths
                .iter()
                .map(PathBuf::from)
                .filter(|p| !p.exists())
                .collect(),
        )
    }

    pub fn remove(&self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
}

/// Unmounts whatever is still mounted under `dir` (deepest first), so it can be removed.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let base = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&base))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg(p).status();
    }
}

/// The next source event matching `pred` within 30 s; panics with what arrived instead.
pub async fn expect_event(
    rx: &mut tokio::sync::mpsc::Receiver<seawall_engines::SourceEvent>,
    what: &str,
    pred: impl Fn(&seawall_engines::SourceEvent) -> bool,
) -> seawall_engines::SourceEvent {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(e)) => seen.push(format!("{e:?}")),
            Ok(None) => panic!("source ended before: {what}\nseen:\n{}", seen.join("\n")),
            Err(_) => panic!("no event: {what}\nseen:\n{}", seen.join("\n")),
        }
    }
}

/// The unified hierarchy's mount point on this host (pure v2 or hybrid).
pub fn unified_root() -> PathBuf {
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// Removes each directory (deepest first) from every cgroup hierarchy where it is empty.
pub fn remove_cgroup_dirs(dirs: &[String]) {
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    let hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    for d in &dirs {
        let rel = d.trim_start_matches('/');
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
        for h in &hierarchies {
            let _ = std::fs::remove_dir(h.join(rel));
        }
    }
}
