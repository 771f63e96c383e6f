//! The intel directory as the agent holds it: the indicators in force, reloaded when the
//! directory changes, the previous indicators kept when a reload fails.
//!
//! Changes are found by polling a fingerprint of the directory (name, size, mtime, inode of
//! every entry) rather than with inotify: a poll every few seconds costs nothing, needs no
//! watch descriptors, and also sees a directory replaced wholesale (a ConfigMap update swaps a
//! symlink). Writers should write a temporary file (`*.tmp`, or a dotfile) and rename it into
//! place: those are skipped, so a half-written feed is never read.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use agent_common::{INTEL_V4_MAX_ENTRIES, INTEL_V6_MAX_ENTRIES};
use seawall_intel::{IntelSet, IpNet, LoadError};

/// Why feeds cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum FeedsError {
    /// A feed file is invalid or unreadable.
    #[error(transparent)]
    Load(LoadError),
    /// More networks of a family than the kernel's trie holds: refusing the set is better
    /// than enforcing an arbitrary part of it.
    #[error(
        "the intel feeds list {count} {family} networks; the kernel holds at most {max}: \
         split or trim the feeds"
    )]
    TooMany {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// Distinct networks listed.
        count: usize,
        /// The trie's capacity.
        max: u32,
    },
}

/// Loads and checks a set against the kernel's capacity.
fn load_checked(dir: &Path) -> Result<IntelSet, FeedsError> {
    let set = IntelSet::load_dir(dir, SystemTime::now()).map_err(FeedsError::Load)?;
    let v4 = set.nets().filter(|n| n.addr().is_ipv4()).count();
    let v6 = set.nets().count() - v4;
    for (family, count, max) in [
        ("IPv4", v4, INTEL_V4_MAX_ENTRIES),
        ("IPv6", v6, INTEL_V6_MAX_ENTRIES),
    ] {
        if count > max as usize {
            return Err(FeedsError::TooMany { family, count, max });
        }
    }
    Ok(set)
}

/// What the directory looked like when it was last loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fingerprint(Vec<(String, u64, i64, i64, u64)>);

impl Fingerprint {
    /// `None` when the directory cannot be listed (the load will say why).
    fn of(dir: &Path) -> Option<Fingerprint> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            // Follow symlinks: a feed replaced behind a link is a change.
            let Ok(meta) = fs::metadata(entry.path()) else {
                entries.push((entry.file_name().to_string_lossy().into_owned(), 0, 0, 0, 0));
                continue;
            };
            entries.push((
                entry.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino(),
            ));
        }
        entries.sort();
        Some(Fingerprint(entries))
    }
}

/// What changed in the kernel's view of the feeds: networks to add, then to remove (in that
/// order, so a network listed before and after is never missing in between).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetChanges {
    /// Networks newly listed.
    pub add: Vec<IpNet>,
    /// Networks no longer listed.
    pub remove: Vec<IpNet>,
}

/// The outcome of a poll that found the directory changed.
#[derive(Debug)]
pub enum Reload {
    /// The new indicators are in force; the kernel must be told these changes.
    Applied(NetChanges),
    /// The new content is invalid; the previous indicators stay in force.
    Rejected(FeedsError),
}

/// The loaded feeds of one intel directory.
pub struct IntelFeeds {
    dir: PathBuf,
    current: Arc<IntelSet>,
    seen: Option<Fingerprint>,
    /// The last reload's error, until a reload succeeds.
    last_error: Option<String>,
}

impl IntelFeeds {
    /// Loads the directory. At start there is no previous set to fall back on, so an invalid
    /// feed is an error the agent refuses to start with (as an invalid profile is).
    pub fn load(dir: &Path) -> Result<IntelFeeds, FeedsError> {
        let seen = Fingerprint::of(dir);
        let set = load_checked(dir)?;
        Ok(IntelFeeds {
            dir: dir.to_path_buf(),
            current: Arc::new(set),
            seen,
            last_error: None,
        })
    }

    /// The indicators in force.
    pub fn current(&self) -> Arc<IntelSet> {
        self.current.clone()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the last reload was rejected, while the previous indicators are in force.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Reloads when the directory changed since the last look; `None` when it did not.
    pub fn poll(&mut self) -> Option<Reload> {
        let now = Fingerprint::of(&self.dir);
        if now == self.seen {
            return None;
        }
        self.seen = now;
        match load_checked(&self.dir) {
            Ok(set) => {
                let changes = net_changes(&self.current, &set);
                self.current = Arc::new(set);
                self.last_error = None;
                Some(Reload::Applied(changes))
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                Some(Reload::Rejected(e))
            }
        }
    }
}

/// The networks to add and remove to go from `old` to `new`.
pub fn net_changes(old: &IntelSet, new: &IntelSet) -> NetChanges {
    let old_nets: std::collections::HashSet<IpNet> = old.nets().collect();
    let new_nets: std::collections::HashSet<IpNet> = new.nets().collect();
    let mut add: Vec<IpNet> = new_nets.difference(&old_nets).copied().collect();
    let mut remove: Vec<IpNet> = old_nets.difference(&new_nets).copied().collect();
    add.sort();
    remove.sort();
    NetChanges { add, remove }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[IpNet]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn reload_applies_changes_and_keeps_the_previous_set_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let feed = dir.path().join("ips.txt");
        fs::write(&feed, "192.0.2.1\n198.51.100.0/24\n").unwrap();
        let mut feeds = IntelFeeds::load(dir.path()).unwrap();
        assert!(feeds.poll().is_none(), "nothing changed");
        assert!(feeds
            .current()
            .match_addr("192.0.2.1".parse().unwrap())
            .is_some());

        fs::write(&feed, "192.0.2.1\n203.0.113.7\n").unwrap();
        let Some(Reload::Applied(c)) = feeds.poll() else {
            panic!("expected a reload")
        };
        assert_eq!(nets(&c.add), ["203.0.113.7"]);
        assert_eq!(nets(&c.remove), ["198.51.100.0/24"]);
        assert!(feeds
            .current()
            .match_addr("203.0.113.7".parse().unwrap())
            .is_some());

        // An invalid file: rejected, named, and the indicators in force do not change.
        fs::write(dir.path().join("bad.txt"), "ok.example\n").unwrap();
        let Some(Reload::Rejected(e)) = feeds.poll() else {
            panic!("expected a rejected reload")
        };
        assert!(e.to_string().contains("bad.txt:1:"), "{e}");
        assert!(feeds.last_error().is_some());
        assert!(feeds
            .current()
            .match_addr("203.0.113.7".parse().unwrap())
            .is_some());
        assert!(
            feeds.poll().is_none(),
            "the same bad content is not reloaded again"
        );

        fs::remove_file(dir.path().join("bad.txt")).unwrap();
        assert!(matches!(feeds.poll(), Some(Reload::Applied(c)) if c == NetChanges::default()));
        assert!(feeds.last_error().is_none());
    }

    #[test]
    fn a_bad_feed_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.csv"), "no,hash,column\n1,2,3\n").unwrap();
        assert!(IntelFeeds::load(dir.path()).is_err());
    }
}
