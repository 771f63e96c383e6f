//! Test support shared by the delivery and collector tests (feature `testing`): a real small
//! filesystem to fill, so "disk full" is the kernel's ENOSPC and not a mock.

use std::path::Path;

/// A tmpfs of a given size, mounted on a fresh temporary directory and unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None`, after a loud `SKIP`, when this process may not mount (not root); a test failure
    /// when `CI=true`, where the capability must be there.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs to fill a disk (needs root), and CI=true"
            );
            eprintln!("SKIP: cannot mount a tmpfs to fill a disk (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
