//! bpffs pins: the shared maps (pinned by name by the loader) and the program links, so that
//! enforcement outlives the agent process. A restarting agent adopts the pinned maps (when
//! their layout is its own, see `layout`), attaches its own programs, pins their links in a
//! directory of its own (`links-<pid>`), and only then releases the previous agent's links:
//! enforcement never pauses, it briefly runs twice.
//!
//! Links are *staged* while the agent starts and pinned only once the start succeeded
//! ([`LinkPins::commit`]): a start that fails part-way drops them, so nothing it attached stays
//! attached, and the previous agent's links (still pinned) keep enforcing.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::BPF_FS_MAGIC,
};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("bpffs at {path} (Seawall pins its maps and programs there; is /sys/fs/bpf a bpf filesystem?)")]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning link {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|st| st.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes sure `dir` exists on a bpf filesystem, mounting bpffs at /sys/fs/bpf when nothing is
/// mounted there (systemd does this on most hosts; minimal VMs and containers may not).
pub fn ensure_dir(dir: &Path) -> Result<(), PinError> {
    let err = |source| PinError::Bpffs {
        path: dir.to_owned(),
        source,
    };
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        std::fs::create_dir_all(root).map_err(err)?;
        // Mounting bpffs where none is mounted (we checked) has no other effect.
        mount(
            Some("bpf"),
            root,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| err(e.into()))?;
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    if !is_bpffs(dir) {
        return Err(err(io::Error::other("not on a bpf filesystem")));
    }
    Ok(())
}

/// Where this agent pins its links, and what earlier agents left.
#[derive(Debug)]
pub struct LinkPins {
    pub dir: PathBuf,
    mine: PathBuf,
    previous: Vec<PathBuf>,
    held: Vec<PinnedLink>,
    /// Links attached during start-up, pinned by [`LinkPins::commit`].
    staged: Vec<(String, FdLink)>,
    committed: bool,
}

impl LinkPins {
    pub fn new(dir: &Path) -> Self {
        let mine = dir.join(format!("links-{}", std::process::id()));
        let previous = link_dirs(dir).into_iter().filter(|d| *d != mine).collect();
        Self {
            dir: dir.to_owned(),
            mine,
            previous,
            held: Vec::new(),
            staged: Vec::new(),
            committed: false,
        }
    }

    /// Whether an earlier agent left programs attached (they are still enforcing).
    pub fn adopting(&self) -> bool {
        !self.previous.is_empty()
    }

    /// Keeps `link` to be pinned as `name` once the start succeeded (at once after that).
    pub fn pin(&mut self, name: &str, link: FdLink) -> Result<(), PinError> {
        if self.committed {
            return self.pin_now(name, link);
        }
        self.staged.push((name.to_string(), link));
        Ok(())
    }

    /// Pins every staged link: from now on they outlive the agent.
    pub fn commit(&mut self) -> Result<(), PinError> {
        for (name, link) in std::mem::take(&mut self.staged) {
            self.pin_now(&name, link)?;
        }
        self.committed = true;
        Ok(())
    }

    fn pin_now(&mut self, name: &str, link: FdLink) -> Result<(), PinError> {
        std::fs::create_dir_all(&self.mine).map_err(|source| PinError::Bpffs {
            path: self.mine.clone(),
            source,
        })?;
        let path = self.mine.join(name);
        let pinned = link
            .pin(&path)
            .map_err(|source| PinError::Pin { path, source })?;
        self.held.push(pinned);
        Ok(())
    }

    /// Detaches the links earlier agents pinned (call once ours are attached).
    pub fn release_previous(&mut self) -> usize {
        let mut n = 0;
        for d in std::mem::take(&mut self.previous) {
            n += release_dir(&d);
        }
        n
    }
}

fn link_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("links-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn release_dir(d: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            match PinnedLink::from_pin(e.path()) {
                // Unpinned and dropped: the last reference goes and the program detaches.
                Ok(l) => {
                    let _ = l.unpin();
                    n += 1;
                }
                Err(_) => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_dir(d);
    n
}

/// Removes every pin under `dir` (links first, so enforcement stops, then maps) and the
/// directory itself. Returns how many links were detached.
pub fn remove_all(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for d in link_dirs(dir) {
        n += release_dir(&d);
    }
    super::layout::remove_retired(dir);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_file() || e.file_type().map(|t| !t.is_dir()).unwrap_or(false) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(n),
        Err(e) => Err(e),
    }
}
