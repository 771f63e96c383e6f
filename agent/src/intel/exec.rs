//! Listed hashes at exec: what is in force (the indicators and each container's intel mode),
//! shared by the daemon, which sets it, and the two places that judge an executed file — the
//! fanotify thread at the exec permission event, and the daemon for an exec the kernel held
//! before the container's own policy was written.
//!
//! A std `Mutex`, not a tokio one: the fanotify thread is not async, and every critical section
//! is a map lookup or an `Arc` swap (the hashing happens under its own lock, which only the
//! judging callers take).

use std::{
    collections::HashMap,
    os::fd::BorrowedFd,
    sync::{Arc, Mutex},
};

use seawall_intel::{IntelSet, Listing, Sha256};
use seawall_profile::Mode;
use seawall_proto::event::{Action, Intel};
use tokio::sync::mpsc;

use super::exec_hash::ExecHashes;

/// An exec of a file a feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedExec {
    /// The container's cgroup id.
    pub cgroup_id: u64,
    /// The process that asked to execute it.
    pub pid: u32,
    /// The file, as the container sees it.
    pub path: String,
    /// What it got: `blocked` (enforce) or `audited`.
    pub action: Action,
    /// The indicator and where it was listed.
    pub intel: Intel,
}

/// The event's `intel` object for a listing.
pub fn intel_object(listing: &Listing<'_>) -> Intel {
    Intel {
        indicator: listing.indicator.to_string(),
        kind: listing.indicator.kind().as_str().into(),
        source: listing.source().into(),
        name: listing.name().unwrap_or_default().into(),
    }
}

/// What a container's intel mode makes of a listed indicator.
pub fn action_for(mode: Mode) -> Option<Action> {
    match mode {
        Mode::Enforce => Some(Action::Blocked),
        Mode::Audit => Some(Action::Audited),
        Mode::Off => None,
    }
}

#[derive(Default)]
struct InForce {
    set: Arc<IntelSet>,
    /// Containers whose intel mode is not off.
    modes: HashMap<u64, Mode>,
}

/// What is in force for executed files, and the cache of their hashes. Cheap to clone.
#[derive(Clone)]
pub struct ExecIntel {
    in_force: Arc<Mutex<InForce>>,
    hashes: Arc<Mutex<ExecHashes>>,
    records: mpsc::Sender<ListedExec>,
}

impl ExecIntel {
    /// Nothing in force yet, and the receiver of the listed execs the fanotify thread reports.
    pub fn new() -> (ExecIntel, mpsc::Receiver<ListedExec>) {
        let (records, rx) = mpsc::channel(4096);
        let exec = ExecIntel {
            in_force: Arc::default(),
            hashes: Arc::default(),
            records,
        };
        (exec, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InForce> {
        // A panic elsewhere while holding it cannot leave a half-written map or Arc.
        self.in_force.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The indicators in force from now on.
    pub fn set_indicators(&self, set: Arc<IntelSet>) {
        self.lock().set = set;
    }

    /// A container's intel mode (`Off` forgets it).
    pub fn set_mode(&self, cgroup_id: u64, mode: Mode) {
        let mut f = self.lock();
        if mode == Mode::Off {
            f.modes.remove(&cgroup_id);
        } else {
            f.modes.insert(cgroup_id, mode);
        }
    }

    /// The container's intel mode.
    pub fn mode(&self, cgroup_id: u64) -> Mode {
        self.lock()
            .modes
            .get(&cgroup_id)
            .copied()
            .unwrap_or(Mode::Off)
    }

    /// How many file versions had to be read so far.
    pub fn files_hashed(&self) -> u64 {
        self.hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files_hashed()
    }

    /// The verdict on executing `file` in the container: `None` when intel is off there, no
    /// hash is listed, or the file's content is not. A file that cannot be read is let through
    /// (the kernel will fail to execute what it cannot read) and logged.
    pub fn judge(&self, cgroup_id: u64, file: BorrowedFd<'_>) -> Option<(Action, Intel)> {
        let (set, mode) = {
            let f = self.lock();
            (f.set.clone(), f.modes.get(&cgroup_id).copied()?)
        };
        let action = action_for(mode)?;
        set.hashes().next()?;
        let hash: Sha256 = match self
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sha256(file)
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(container_cgroup_id = cgroup_id, error = %e, "reading an executed file to hash it failed: let through");
                return None;
            }
        };
        let listing = set.match_hash(&hash)?;
        Some((action, intel_object(&listing)))
    }

    /// Hands a listed exec to the daemon, which reports it. Dropped (and logged) when the
    /// daemon is that far behind: the verdict was already given.
    pub fn report(&self, record: ListedExec) {
        if let Err(e) = self.records.try_send(record) {
            tracing::warn!(error = %e, "a listed exec could not be reported: the daemon is behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{fs::File, os::fd::AsFd};

    use seawall_intel::{Feed, FeedFormat};

    use super::*;

    /// SHA-256 of "abc".
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn set(text: &str) -> Arc<IntelSet> {
        let feed = Feed::parse(
            FeedFormat::PlainList,
            text.as_bytes(),
            std::time::SystemTime::now(),
        )
        .unwrap();
        Arc::new(IntelSet::from_feeds([("bad.txt".to_string(), feed)]))
    }

    #[test]
    fn a_listed_file_is_judged_by_its_container_mode_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropper");
        std::fs::write(&path, b"abc").unwrap();
        let other = dir.path().join("tool");
        std::fs::write(&other, b"abd").unwrap();
        let (exec, _rx) = ExecIntel::new();
        let f = File::open(&path).unwrap();
        assert_eq!(exec.judge(7, f.as_fd()), None, "nothing in force yet");
        exec.set_indicators(set(&format!("{ABC}\n")));
        assert_eq!(
            exec.judge(7, f.as_fd()),
            None,
            "intel is off in container 7"
        );
        exec.set_mode(7, Mode::Enforce);
        let (action, intel) = exec.judge(7, f.as_fd()).unwrap();
        assert_eq!(action, Action::Blocked);
        assert_eq!(
            (
                intel.indicator.as_str(),
                intel.kind.as_str(),
                intel.source.as_str()
            ),
            (ABC, "sha256", "bad.txt")
        );
        let o = File::open(&other).unwrap();
        assert_eq!(exec.judge(7, o.as_fd()), None, "an unlisted file");
        assert!(exec.judge(7, f.as_fd()).is_some());
        assert_eq!(exec.files_hashed(), 2, "each version read once");
        exec.set_mode(7, Mode::Audit);
        assert_eq!(exec.judge(7, f.as_fd()).unwrap().0, Action::Audited);
        exec.set_mode(7, Mode::Off);
        assert_eq!(exec.mode(7), Mode::Off);
        assert_eq!(exec.judge(7, f.as_fd()), None);
    }
}
