//! Is the file being executed the image's? On the fallback the exec tracepoint only sees a
//! script's interpreter, so a `#!` script is judged here, at the exec permission event, on the
//! event's own descriptor — never on a name looked up again (a name is text, can be renamed, and
//! need not be UTF-8):
//! - no link left (deleted, then run through `/proc/self/fd/N`): drift;
//! - on a mount that is not the container's root (a tmpfs, a volume): drift;
//! - on the root overlay: the image's only when the path is absent from the upper layer (no
//!   file, no whiteout) and present in a lower layer as the same inode; in the upper layer it is
//!   drift; anything else (renamed under our feet, unreadable) is drift too (fail closed).
//!
//! ELF files are the kernel's to judge (it kills them before their first instruction); only a
//! proven image file is worth caching (ignore mark), whatever it is.

use std::{
    os::{fd::BorrowedFd, unix::ffi::OsStrExt, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

/// What the overlay of a container's root is made of, on the host.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub upper: PathBuf,
    pub lowers: Vec<PathBuf>,
}

/// The verdict on one executed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file of the image: allowed, and worth caching.
    Image,
    /// Not the image's, for this reason.
    Drift(&'static str),
}

/// The facts of the event's descriptor the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts {
    pub nlink: u64,
    pub ino: u64,
    /// Whether it lies on the container's root mount.
    pub on_root: bool,
    /// The mount it was reached through.
    pub mount: u64,
}

/// Whether the file starts with `#!`, read from the event's descriptor.
pub fn is_script(fd: BorrowedFd<'_>) -> bool {
    let mut magic = [0u8; 2];
    nix::sys::uio::pread(fd, &mut magic, 0) == Ok(2) && magic == *b"#!"
}

fn host_path(layer: &Path, path: &[u8]) -> PathBuf {
    let mut p = layer.as_os_str().as_bytes().to_vec();
    p.extend_from_slice(path);
    PathBuf::from(std::ffi::OsStr::from_bytes(&p))
}

/// Where the file at `path` (from the container's root) comes from.
pub fn origin(facts: FileFacts, path: &[u8], layers: Option<&Layers>) -> Origin {
    if facts.nlink == 0 {
        return Origin::Drift("deleted or memory-only file");
    }
    if !facts.on_root {
        return Origin::Drift("not on the image's filesystem");
    }
    let Some(layers) = layers else {
        return Origin::Drift("the container's layers are not known");
    };
    if std::fs::symlink_metadata(host_path(&layers.upper, path)).is_ok() {
        // A file (written or copied up in the container) or a whiteout (the image's file was
        // removed, so this one is not it).
        return Origin::Drift("written inside the container");
    }
    for lower in &layers.lowers {
        if let Ok(m) = std::fs::symlink_metadata(host_path(lower, path)) {
            return if m.file_type().is_file() && m.ino() == facts.ino {
                Origin::Image
            } else {
                Origin::Drift("not the image's file at that path")
            };
        }
    }
    Origin::Drift("not found in the image's layers")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> (tempfile::TempDir, Layers) {
        let d = tempfile::tempdir().unwrap();
        for l in ["upper/tmp", "l1/bin", "l2/bin"] {
            std::fs::create_dir_all(d.path().join(l)).unwrap();
        }
        std::fs::write(d.path().join("l2/bin/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("upper/tmp/x.sh"), "#!/bin/sh\n").unwrap();
        let l = Layers {
            upper: d.path().join("upper"),
            lowers: vec![d.path().join("l1"), d.path().join("l2")],
        };
        (d, l)
    }

    fn facts(ino: u64) -> FileFacts {
        FileFacts {
            nlink: 1,
            ino,
            on_root: true,
            mount: 1,
        }
    }

    #[test]
    fn only_a_lower_layer_file_with_the_same_inode_is_the_images() {
        let (d, l) = layers();
        let ino = std::fs::metadata(d.path().join("l2/bin/run.sh"))
            .unwrap()
            .ino();
        assert_eq!(origin(facts(ino), b"/bin/run.sh", Some(&l)), Origin::Image);
        assert!(
            matches!(
                origin(facts(ino + 1), b"/bin/run.sh", Some(&l)),
                Origin::Drift(_)
            ),
            "another inode at that name"
        );
        assert!(matches!(
            origin(facts(1), b"/tmp/x.sh", Some(&l)),
            Origin::Drift("written inside the container")
        ));
        assert!(
            matches!(
                origin(facts(1), b"/tmp/\xff.sh", Some(&l)),
                Origin::Drift(_)
            ),
            "a name no layer has"
        );
        let deleted = FileFacts {
            nlink: 0,
            ..facts(ino)
        };
        assert!(matches!(
            origin(deleted, b"/bin/run.sh", Some(&l)),
            Origin::Drift(_)
        ));
        let tmpfs = FileFacts {
            on_root: false,
            ..facts(ino)
        };
        assert!(matches!(
            origin(tmpfs, b"/bin/run.sh", Some(&l)),
            Origin::Drift(_)
        ));
        assert!(matches!(
            origin(facts(ino), b"/bin/run.sh", None),
            Origin::Drift(_)
        ));
    }

    #[test]
    fn a_whiteout_hides_the_images_file() {
        let (d, l) = layers();
        std::fs::create_dir_all(d.path().join("upper/bin")).unwrap();
        std::fs::write(d.path().join("upper/bin/run.sh"), "").unwrap();
        let ino = std::fs::metadata(d.path().join("l2/bin/run.sh"))
            .unwrap()
            .ino();
        assert!(matches!(
            origin(facts(ino), b"/bin/run.sh", Some(&l)),
            Origin::Drift(_)
        ));
    }
}
