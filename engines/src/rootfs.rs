//! A container's overlay directories on the host, from its init process's mount table
//! (`/proc/<pid>/mountinfo`). This works the same for every runtime, including those whose API
//! does not say (containerd, the CRI).

use std::path::PathBuf;

/// The `upperdir=` of the overlay mounted at `/` in `mountinfo` (the text of
/// `/proc/<pid>/mountinfo`). `None` when the root is not an overlay (a VM-isolated runtime, a
/// bind-mounted rootfs) or the option is missing.
pub fn overlay_upper_dir(mountinfo: &str) -> Option<PathBuf> {
    // The last mount at `/` is the one the process sees.
    let line = mountinfo
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some("/"))?;
    let (_, after) = line.split_once(" - ")?;
    let mut fields = after.split(' ');
    if fields.next()? != "overlay" {
        return None;
    }
    let _source = fields.next()?;
    let options = fields.next()?;
    options
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.is_absolute())
}

/// The overlay upper directory of a running process's root.
pub fn overlay_upper_dir_of_pid(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    overlay_upper_dir(&text)
}

/// The mount point, in the mount table `mountinfo` (the reader's own, `/proc/self/mountinfo`),
/// of the overlay whose upper directory is `upper`: the container's merged root as the reader
/// sees it, where file controls mark its filesystem. containerd's shims mount it under their
/// state directory (`…/io.containerd.runtime.v2.task/<namespace>/<id>/rootfs`), and its API
/// does not say where; the upper directory is unique to the container, so it finds the mount.
pub fn merged_dir(mountinfo: &str, upper: &std::path::Path) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = after.split(' ');
        if fields.next()? != "overlay" {
            return None;
        }
        let _source = fields.next()?;
        let options = fields.next()?;
        let same = options
            .split(',')
            .filter_map(|o| o.strip_prefix("upperdir="))
            .any(|u| std::path::Path::new(&unescape(u)) == upper);
        let point = before.split(' ').nth(4)?;
        same.then(|| PathBuf::from(unescape(point)))
    })
}

/// [`merged_dir`] in this process's own mount table.
pub fn merged_dir_of_upper(upper: &std::path::Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    merged_dir(&text, upper)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONTAINERD: &str = "\
1201 1100 0:84 / / rw,relatime master:590 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/7/work
1202 1201 0:86 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";

    #[test]
    fn upper_dir_of_a_containerd_root() {
        assert_eq!(
            overlay_upper_dir(CONTAINERD),
            Some(PathBuf::from(
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs"
            ))
        );
    }

    #[test]
    fn the_merged_dir_is_found_by_the_upper_dir_in_the_readers_mounts() {
        let host = "\
40 22 0:50 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/var/lib/containerd/snapshots/7/fs,workdir=/w
41 22 0:51 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/l2,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/w2
";
        assert_eq!(
            merged_dir(host, Path::new("/var/lib/containerd/snapshots/7/fs")),
            Some(PathBuf::from(
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"
            ))
        );
        assert_eq!(
            merged_dir(host, Path::new("/var/lib/containerd/snapshots/8/fs")),
            None
        );
        assert_eq!(
            merged_dir(host, Path::new("/var/lib/containerd/snapshots/7")),
            None
        );
    }

    #[test]
    fn a_root_that_is_not_an_overlay_has_no_upper_dir() {
        let host = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n";
        assert_eq!(overlay_upper_dir(host), None);
        assert_eq!(overlay_upper_dir(""), None);
    }

    #[test]
    fn the_last_root_mount_wins_and_escapes_are_decoded() {
        let text = "\
1 0 0:1 / / rw - ext4 /dev/vda rw
2 1 0:2 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/var/lib/my\\040dir/up,workdir=/w
";
        assert_eq!(
            overlay_upper_dir(text),
            Some(PathBuf::from("/var/lib/my dir/up"))
        );
    }
}
