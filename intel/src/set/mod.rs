//! The loaded indicators of an intel directory: every hash and network with where it came
//! from, longest-prefix lookup of an address, and the per-file account `seawall status` shows.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::LoadError;
use crate::feed::{Feed, FeedFormat, Unsupported};
use crate::indicator::{Indicator, IndicatorKind, IpNet, Sha256};

/// Where an indicator was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The feed file, as named in the intel directory.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// The feed's name for it, when it gives one.
    pub name: Option<String>,
}

/// One listed indicator and every place that listed it (in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing<'a> {
    /// The hash or network that matched.
    pub indicator: Indicator,
    /// Never empty.
    pub origins: &'a [Origin],
}

impl Listing<'_> {
    /// The file to name as the event's `intel.source`: the first that listed it.
    pub fn source(&self) -> &str {
        self.origins.first().map_or("", |o| &o.file)
    }

    /// The first name any feed gave it.
    pub fn name(&self) -> Option<&str> {
        self.origins.iter().find_map(|o| o.name.as_deref())
    }
}

/// What one feed file contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSummary {
    /// The file's name in the intel directory.
    pub file: Arc<str>,
    /// How it was read.
    pub format: FeedFormat,
    /// Distinct indicators of each kind it listed ([`IndicatorKind::ALL`] order).
    pub counts: [usize; 3],
    /// STIX indicators it holds that are not (fully) enforced.
    pub unsupported: Vec<Unsupported>,
    /// STIX indicators skipped as revoked.
    pub revoked: usize,
    /// STIX indicators skipped as expired.
    pub expired: usize,
}

/// A directory entry that was not read as a feed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its name in the intel directory.
    pub file: String,
    /// Why it was not read.
    pub reason: &'static str,
}

/// Every indicator of an intel directory. Built whole or not at all: a caller that fails to
/// load a new set keeps the one it has.
#[derive(Debug, Clone, Default)]
pub struct IntelSet {
    hashes: HashMap<Sha256, Vec<Origin>>,
    nets: HashMap<IpNet, Vec<Origin>>,
    /// Prefix lengths present, so a lookup tries only those (longest first).
    v4_prefixes: BTreeSet<u8>,
    v6_prefixes: BTreeSet<u8>,
    feeds: Vec<FeedSummary>,
    skipped: Vec<Skipped>,
}

impl IntelSet {
    /// Loads every feed file of `dir` (not its subdirectories), in name order. Hidden files and
    /// editors' temporary files are skipped and listed, so a half-written save is not read.
    /// `now` decides which STIX indicators have expired.
    pub fn load_dir(dir: &Path, now: SystemTime) -> Result<IntelSet, LoadError> {
        let read_dir = |source| LoadError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(read_dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_dir)?;
        names.sort();
        let mut feeds = Vec::new();
        let mut skipped = Vec::new();
        for path in names {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let read_file = |source| LoadError::ReadFile {
                file: path.clone(),
                source,
            };
            if let Some(reason) = skip_reason(&file) {
                skipped.push(Skipped { file, reason });
                continue;
            }
            // Follows symlinks: a link to a feed is a feed; a dangling one is an error.
            let meta = fs::metadata(&path).map_err(read_file)?;
            if !meta.is_file() {
                let reason = if meta.is_dir() {
                    "a directory (feeds are not read from subdirectories)"
                } else {
                    "not a regular file"
                };
                skipped.push(Skipped { file, reason });
                continue;
            }
            let bytes = fs::read(&path).map_err(read_file)?;
            let feed = Feed::parse(FeedFormat::for_path(&path), &bytes, now)
                .map_err(|p| p.in_file(path.clone()))?;
            feeds.push((file, feed));
        }
        let mut set = IntelSet::from_feeds(feeds);
        set.skipped = skipped;
        Ok(set)
    }

    /// Merges parsed feeds, each named by its file.
    pub fn from_feeds(feeds: impl IntoIterator<Item = (String, Feed)>) -> IntelSet {
        let mut set = IntelSet::default();
        for (file, feed) in feeds {
            let file: Arc<str> = file.into();
            let mut distinct: BTreeSet<Indicator> = BTreeSet::new();
            for entry in feed.entries {
                distinct.insert(entry.indicator);
                let origin = Origin {
                    file: file.clone(),
                    line: entry.line,
                    name: entry.name,
                };
                let origins = match entry.indicator {
                    Indicator::Sha256(h) => set.hashes.entry(h).or_default(),
                    Indicator::Net(n) => {
                        match n.addr() {
                            IpAddr::V4(_) => set.v4_prefixes.insert(n.prefix_len()),
                            IpAddr::V6(_) => set.v6_prefixes.insert(n.prefix_len()),
                        };
                        set.nets.entry(n).or_default()
                    }
                };
                // One origin per file is enough to name it; the first line is the one to show.
                if origins.last().is_none_or(|o| o.file != file) {
                    origins.push(origin);
                }
            }
            let mut counts = [0; 3];
            for i in &distinct {
                counts[kind_index(i.kind())] += 1;
            }
            set.feeds.push(FeedSummary {
                file,
                format: feed.format,
                counts,
                unsupported: feed.unsupported,
                revoked: feed.revoked,
                expired: feed.expired,
            });
        }
        set
    }

    /// The listing of a file with this content, if any feed lists it.
    pub fn match_hash(&self, hash: &Sha256) -> Option<Listing<'_>> {
        self.hashes.get(hash).map(|origins| Listing {
            indicator: Indicator::Sha256(*hash),
            origins,
        })
    }

    /// The most specific listed network containing `addr`. An IPv4-mapped IPv6 address is
    /// looked up as its IPv4 address, as the kernel looks it up (IPv4-mapped networks are
    /// stored as IPv4, so only an IPv6 network wider than a /96 around the mapped range would
    /// be missed: not a shape any feed has).
    pub fn match_addr(&self, addr: IpAddr) -> Option<Listing<'_>> {
        let lookup = |addr: IpAddr, prefixes: &BTreeSet<u8>| {
            prefixes.iter().rev().find_map(|&p| {
                let net = IpNet::new_masked(addr, p);
                // `new_masked` turns a mapped /96+ into IPv4: that case is looked up above.
                (net.addr().is_ipv4() == addr.is_ipv4())
                    .then(|| self.nets.get_key_value(&net))
                    .flatten()
            })
        };
        let found = match addr {
            IpAddr::V4(_) => lookup(addr, &self.v4_prefixes),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => lookup(IpAddr::V4(v4), &self.v4_prefixes),
                None => lookup(addr, &self.v6_prefixes),
            },
        };
        found.map(|(net, origins)| Listing {
            indicator: Indicator::Net(*net),
            origins,
        })
    }

    /// Every listed network (for the kernel's LPM tries).
    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.nets.keys().copied()
    }

    /// Every listed hash.
    pub fn hashes(&self) -> impl Iterator<Item = Sha256> + '_ {
        self.hashes.keys().copied()
    }

    /// Distinct indicators of a kind across all feeds.
    pub fn count(&self, kind: IndicatorKind) -> usize {
        match kind {
            IndicatorKind::Sha256 => self.hashes.len(),
            IndicatorKind::Ip => self.nets.keys().filter(|n| n.is_single_address()).count(),
            IndicatorKind::Cidr => self.nets.keys().filter(|n| !n.is_single_address()).count(),
        }
    }

    /// Whether no indicator is loaded.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty() && self.nets.is_empty()
    }

    /// What each feed file contributed, in name order.
    pub fn feeds(&self) -> &[FeedSummary] {
        &self.feeds
    }

    /// Directory entries not read as feeds.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

pub(crate) fn kind_index(kind: IndicatorKind) -> usize {
    match kind {
        IndicatorKind::Sha256 => 0,
        IndicatorKind::Ip => 1,
        IndicatorKind::Cidr => 2,
    }
}

/// Hidden files and the temporary files editors and downloaders write next to a file.
fn skip_reason(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        Some("hidden file")
    } else if name.ends_with('~')
        || [".swp", ".tmp", ".part", ".bak"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        Some("temporary or backup file")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
