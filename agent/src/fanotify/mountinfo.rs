//! A container's mounts, from `/proc/<pid>/mountinfo` of one of its processes: what fanotify
//! marks (every filesystem the container can open or exec from), and the overlay's layers
//! (the upper and lower directories the script-drift check looks a file up in).

use std::path::PathBuf;

/// One line of `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount id (what `statx(STATX_MNT_ID)` reports for a file on it).
    pub id: u64,
    /// Where it is mounted, as the container sees it (bytes, unescaped).
    pub mount_point: Vec<u8>,
    pub fstype: String,
    /// The filesystem's own options (`lowerdir=…,upperdir=…` for overlayfs).
    pub super_options: String,
}

/// Pseudo filesystems a container cannot exec a file from and fanotify cannot (or need not)
/// mark: procfs and sysfs refuse marks; the rest hold no files a rule names.
const UNMARKED: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "devpts",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "fusectl",
    "configfs",
    "pstore",
    "binfmt_misc",
    "autofs",
    "nsfs",
];

impl Mount {
    /// Whether fanotify should watch it.
    pub fn markable(&self) -> bool {
        !UNMARKED.contains(&self.fstype.as_str())
    }

    /// Whether it is the container's root.
    pub fn is_root(&self) -> bool {
        self.mount_point == b"/"
    }

    /// The overlay's upper directory and lower directories (top first), for an overlay mount.
    pub fn overlay_layers(&self) -> Option<(PathBuf, Vec<PathBuf>)> {
        if self.fstype != "overlay" {
            return None;
        }
        let mut upper = None;
        let mut lowers = Vec::new();
        for opt in split_options(&self.super_options) {
            if let Some(u) = opt.strip_prefix("upperdir=") {
                upper = Some(PathBuf::from(unescape_option(u)));
            } else if let Some(l) = opt.strip_prefix("lowerdir=") {
                lowers.extend(l.split(':').map(|p| PathBuf::from(unescape_option(p))));
            }
        }
        Some((upper?, lowers))
    }
}

/// Overlay options are separated by commas; a comma inside a path is escaped with `\`.
fn split_options(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, ',') => out.push(String::new()),
            (_, c) => {
                if escaped && c != ',' && c != ':' && c != '\\' {
                    out.last_mut().expect("one").push('\\');
                }
                escaped = false;
                out.last_mut().expect("one").push(c);
            }
        }
    }
    out
}

fn unescape_option(s: &str) -> String {
    String::from_utf8_lossy(&unescape(s.as_bytes())).into_owned()
}

/// `mountinfo` escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Parses `mountinfo` text (bytes: mount points need not be UTF-8).
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let sep = line.windows(3).position(|w| w == b" - ")?;
            let (left, right) = (&line[..sep], &line[sep + 3..]);
            let fields: Vec<&[u8]> = left.split(|&b| b == b' ').collect();
            let id = std::str::from_utf8(fields.first()?).ok()?.parse().ok()?;
            let mount_point = unescape(fields.get(4)?);
            let mut r = right.split(|&b| b == b' ');
            let fstype = String::from_utf8_lossy(r.next()?).into_owned();
            let _source = r.next();
            let super_options = String::from_utf8_lossy(r.next().unwrap_or_default()).into_owned();
            Some(Mount {
                id,
                mount_point,
                fstype,
                super_options,
            })
        })
        .collect()
}

/// The mounts of `pid`'s mount namespace.
pub fn of_pid(pid: u32) -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read(format!("/proc/{pid}/mountinfo"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &[u8] = b"1234 1200 0:55 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/AB:/var/lib/docker/overlay2/l/CD,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work\n\
1235 1234 0:58 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
1236 1234 0:59 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\n\
1240 1234 254:0 /var/lib/docker/containers/x/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw\n\
1241 1234 254:0 /srv/a\\040b /data\\040dir rw - ext4 /dev/vda rw\n";

    #[test]
    fn reads_a_containers_mounts_and_its_overlay_layers() {
        let m = parse(DOCKER);
        assert_eq!(m.len(), 5);
        assert!(m[0].is_root());
        let (upper, lowers) = m[0].overlay_layers().unwrap();
        assert_eq!(upper, PathBuf::from("/var/lib/docker/overlay2/x/diff"));
        assert_eq!(
            lowers,
            vec![
                PathBuf::from("/var/lib/docker/overlay2/l/AB"),
                PathBuf::from("/var/lib/docker/overlay2/l/CD")
            ]
        );
        let marked: Vec<&[u8]> = m
            .iter()
            .filter(|m| m.markable())
            .map(|m| m.mount_point.as_slice())
            .collect();
        assert_eq!(
            marked,
            vec![&b"/"[..], b"/dev", b"/etc/hosts", b"/data dir"]
        );
        assert_eq!(m[3].id, 1240);
    }

    #[test]
    fn escaped_commas_stay_inside_an_overlay_path() {
        let m = Mount {
            id: 1,
            mount_point: b"/".to_vec(),
            fstype: "overlay".into(),
            super_options: "rw,lowerdir=/a\\,b:/c,upperdir=/u,workdir=/w".into(),
        };
        let (upper, lowers) = m.overlay_layers().unwrap();
        assert_eq!(upper, PathBuf::from("/u"));
        assert_eq!(lowers, vec![PathBuf::from("/a,b"), PathBuf::from("/c")]);
    }
}
