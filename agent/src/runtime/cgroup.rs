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
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    parse_cgroup2_root(&info).ok_or(CgroupError::NoCgroup2)
}

fn parse_cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or("/")))
    })
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

/// The cgroup v2 path of a process relative to the hierarchy root (`0::/docker/<id>` → `/docker/<id>`).
pub fn pid_cgroup(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_pid_cgroup(&text)
}

fn parse_pid_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
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
        let hybrid =
            "30 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n\
                      31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            parse_cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_root(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            parse_cgroup2_root("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn reads_the_unified_line_of_proc_pid_cgroup() {
        let text = "9:name=systemd:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n";
        assert_eq!(parse_pid_cgroup(text).as_deref(), Some("/docker/abc"));
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
