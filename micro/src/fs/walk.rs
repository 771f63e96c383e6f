//! A snapshot of the filesystem as the wrapped process tree starts: every directory and file
//! reachable from `/` without following symlinks, with the identity (device, inode) Landlock
//! rules attach to. Drift is defined against it: a file that is not in the snapshot, or whose
//! inode changed since, was not there at start.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity: what a Landlock rule attaches to and what survives renames.
pub type FileId = (u64, u64);

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory; `walked` is false when its entries were not read: `pseudo` when it is a
    /// kernel filesystem such as `/proc` (nothing of the image in it), else it was unreadable
    /// or the entry limit was reached.
    Dir { walked: bool, pseudo: bool },
    /// A regular file; `exec` when any execute bit was set at start.
    File { exec: bool },
    /// Devices, sockets, FIFOs: never executed, opened like files.
    Special,
}

/// One directory entry of the snapshot.
#[derive(Debug, Clone)]
pub struct Node {
    /// Absolute path as seen inside the container (no symlink in it).
    pub path: PathBuf,
    pub kind: NodeKind,
    pub id: FileId,
    /// `st_ctime` in nanoseconds: a file rewritten in place keeps its inode but not this.
    pub ctime_ns: i128,
    /// Indexes of the entries of a directory, in name order.
    pub children: Vec<usize>,
}

/// The snapshot: node 0 is the root.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    /// Every path of each file id that has more than one (hard links, a directory mounted twice).
    pub aliases: HashMap<FileId, Vec<usize>>,
    /// Directories whose entries were skipped because the entry limit was reached.
    pub truncated: Vec<PathBuf>,
    /// Nodes where a procfs is mounted (`/proc`): `/proc/PID/mem` below them writes code.
    pub procfs: Vec<usize>,
}

/// Filesystems whose contents are the kernel's, not the image's: never walked, never executed
/// from (`/proc/self/exe` and friends resolve to the real file before Landlock looks).
const PSEUDO_FS: &[i64] = &[
    PROC_SUPER_MAGIC,
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x1cd1,      // devpts
    0x1980_0202, // mqueue
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0xcafe_4a11, // bpf
    0x6165_676c, // pstore
    0x6265_6570, // configfs
    0x6573_5543, // fusectl
    0xf97c_ff8c, // selinuxfs
    0xde5e_81e4, // efivarfs
    0x4249_4e4d, // binfmt_misc
    0x6e73_6673, // nsfs
];

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The filesystem type of a kernel filesystem mounted at `path`, if it is one.
fn pseudo_fs(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid C string and an out-buffer of the right type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let ty = st.f_type as i64;
    PSEUDO_FS.contains(&ty).then_some(ty)
}

impl Snapshot {
    /// Walks `root` (normally `/`) depth-first, reading at most `limit` entries.
    pub fn take(root: &Path, limit: usize) -> std::io::Result<Snapshot> {
        let meta = fs::metadata(root)?;
        let mut snap = Snapshot::default();
        snap.nodes.push(Node {
            path: root.to_path_buf(),
            kind: NodeKind::Dir {
                walked: false,
                pseudo: false,
            },
            id: (meta.dev(), meta.ino()),
            ctime_ns: ctime_ns(&meta),
            children: Vec::new(),
        });
        let mut seen_dirs: HashMap<FileId, usize> = HashMap::new();
        seen_dirs.insert(snap.nodes[0].id, 0);
        let mut stack = vec![0usize];
        while let Some(dir) = stack.pop() {
            let path = snap.nodes[dir].path.clone();
            if let Some(ty) = (dir != 0).then(|| pseudo_fs(&path)).flatten() {
                snap.nodes[dir].kind = NodeKind::Dir {
                    walked: false,
                    pseudo: true,
                };
                if ty == PROC_SUPER_MAGIC {
                    snap.procfs.push(dir);
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
            names.sort_by_key(|e| e.file_name());
            let mut children = Vec::with_capacity(names.len());
            for entry in names {
                if snap.nodes.len() >= limit {
                    snap.truncated.push(path.clone());
                    break;
                }
                let Ok(m) = entry.metadata() else { continue };
                let ft = m.file_type();
                let kind = if ft.is_symlink() {
                    // The target is walked where it really lives; a rule on a symlink inode
                    // would mean nothing to Landlock.
                    continue;
                } else if ft.is_dir() {
                    NodeKind::Dir {
                        walked: false,
                        pseudo: false,
                    }
                } else if ft.is_file() {
                    NodeKind::File {
                        exec: m.mode() & 0o111 != 0,
                    }
                } else {
                    NodeKind::Special
                };
                let id = (m.dev(), m.ino());
                let idx = snap.nodes.len();
                snap.nodes.push(Node {
                    path: entry.path(),
                    kind,
                    id,
                    ctime_ns: ctime_ns(&m),
                    children: Vec::new(),
                });
                children.push(idx);
                match kind {
                    NodeKind::Dir { .. } => {
                        // A directory mounted at two places is walked once; the second path is
                        // an alias whose rules follow the first.
                        if let Some(&first) = seen_dirs.get(&id) {
                            snap.aliases
                                .entry(id)
                                .or_insert_with(|| vec![first])
                                .push(idx);
                        } else {
                            seen_dirs.insert(id, idx);
                            stack.push(idx);
                        }
                    }
                    _ if m.nlink() > 1 => snap.aliases.entry(id).or_default().push(idx),
                    _ => {}
                }
            }
            snap.nodes[dir].kind = NodeKind::Dir {
                walked: snap.truncated.last().is_none_or(|t| *t != path),
                pseudo: false,
            };
            snap.nodes[dir].children = children;
        }
        // A hard-linked file seen once is not an alias of anything.
        snap.aliases.retain(|_, v| v.len() > 1);
        Ok(snap)
    }

    /// Every regular file at start, by identity, with its ctime (executable or not: libraries
    /// are mapped, not executed, and need no execute bit).
    pub fn regular_files(&self) -> HashMap<FileId, i128> {
        self.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::File { .. }))
            .map(|n| (n.id, n.ctime_ns))
            .collect()
    }

    /// The node at exactly this path, if the snapshot has it.
    pub fn find(&self, path: &Path) -> Option<usize> {
        let mut cur = 0usize;
        let rel = path.strip_prefix(&self.nodes[0].path).ok()?;
        for comp in rel.components() {
            let name = comp.as_os_str();
            cur = *self.nodes[cur]
                .children
                .iter()
                .find(|&&c| self.nodes[c].path.file_name() == Some(name))?;
        }
        Some(cur)
    }
}

/// `st_ctime` of a file in nanoseconds.
pub fn ctime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn snapshot_sees_files_dirs_links_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("etc/sub")).unwrap();
        fs::write(root.join("bin/tool"), "x").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("etc/conf"), "y").unwrap();
        fs::hard_link(root.join("bin/tool"), root.join("etc/tool-link")).unwrap();
        std::os::unix::fs::symlink("../bin/tool", root.join("etc/sym")).unwrap();

        let s = Snapshot::take(root, 1000).unwrap();
        let paths: Vec<String> = s
            .nodes
            .iter()
            .map(|n| n.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert!(paths.contains(&"bin/tool".into()));
        assert!(paths.contains(&"etc/sub".into()));
        assert!(!paths.iter().any(|p| p.ends_with("sym")), "{paths:?}");
        let tool = s.find(&root.join("bin/tool")).unwrap();
        assert_eq!(s.nodes[tool].kind, NodeKind::File { exec: true });
        assert_eq!(s.aliases[&s.nodes[tool].id].len(), 2);
        // tool (twice linked) and conf.
        assert_eq!(s.regular_files().len(), 2);
        assert!(matches!(
            s.nodes[s.find(&root.join("etc")).unwrap()].kind,
            NodeKind::Dir { walked: true, .. }
        ));
        assert!(s.find(&root.join("nope")).is_none());

        let small = Snapshot::take(root, 3).unwrap();
        assert!(!small.truncated.is_empty());
    }
}
