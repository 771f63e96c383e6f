//! The cgroup v2 hierarchy on this host: where it is mounted, and the id of a cgroup (the inode
//! number of its directory, which is what `bpf_get_current_cgroup_id` returns). Works on pure
//! cgroup v2 hosts (`/sys/fs/cgroup`) and hybrid ones (`/sys/fs/cgroup/unified`).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

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
/// `/docker/<id>`).
pub fn pid_cgroup(pid: u32) -> Option<String> {
    let groups = procfs::process::Process::new(pid as i32)
        .ok()?
        .cgroups()
        .ok()?;
    unified_path(&groups)
}

/// The unified (hierarchy 0) entry of a `/proc/<pid>/cgroup`.
fn unified_path(groups: &procfs::ProcessCGroups) -> Option<String> {
    groups
        .0
        .iter()
        .find(|g| g.hierarchy == 0)
        .map(|g| g.pathname.trim().to_string())
}

/// The container id in a cgroup path: the last component, with systemd's `docker-…scope`
/// wrapping removed, when it looks like a 64-hex-digit container id.
pub fn container_id_from_path(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    let last = last
        .strip_prefix("docker-")
        .and_then(|s| s.strip_suffix(".scope"))
        .unwrap_or(last);
    (last.len() == 64 && last.bytes().all(|b| b.is_ascii_hexdigit())).then(|| last.to_string())
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
        use procfs::FromRead;
        let text = "9:name=systemd:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n";
        let groups = procfs::ProcessCGroups::from_read(text.as_bytes()).unwrap();
        assert_eq!(unified_path(&groups).as_deref(), Some("/docker/abc"));
    }

    #[test]
    fn extracts_container_ids_from_cgroupfs_and_systemd_layouts() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id_from_path(&format!("/docker/{id}")),
            Some(id.clone())
        );
        assert_eq!(
            container_id_from_path(&format!("/system.slice/docker-{id}.scope")),
            Some(id)
        );
        assert_eq!(container_id_from_path("/docker"), None);
        assert_eq!(container_id_from_path("/user.slice/x"), None);
    }
}
