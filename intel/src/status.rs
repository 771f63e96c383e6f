//! The account of a loaded intel directory that `seawall status` shows: indicators per kind and
//! per file, and every STIX pattern not (fully) enforced, with its reason.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::indicator::IndicatorKind;
use crate::set::{kind_index, IntelSet};

/// Indicators of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// File hashes.
    pub sha256: usize,
    /// Single addresses.
    pub ip: usize,
    /// Networks.
    pub cidr: usize,
}

impl KindCounts {
    fn from_array(c: [usize; 3]) -> KindCounts {
        KindCounts {
            sha256: c[kind_index(IndicatorKind::Sha256)],
            ip: c[kind_index(IndicatorKind::Ip)],
            cidr: c[kind_index(IndicatorKind::Cidr)],
        }
    }
}

impl fmt::Display for KindCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sha256, {} ip, {} cidr",
            self.sha256, self.ip, self.cidr
        )
    }
}

/// One feed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// Its name in the intel directory.
    pub file: String,
    /// `list`, `csv` or `stix`.
    pub format: String,
    /// Distinct indicators it lists.
    pub counts: KindCounts,
    /// STIX indicators skipped as revoked.
    pub revoked: usize,
    /// STIX indicators skipped as expired.
    pub expired: usize,
}

/// One STIX indicator not (fully) enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsupportedStatus {
    /// The feed file.
    pub file: String,
    /// Line where its object starts.
    pub line: usize,
    /// Its STIX id.
    pub object: String,
    /// Its pattern (cut).
    pub pattern: String,
    /// Why it is not enforced.
    pub reason: String,
    /// True when part of it is enforced.
    pub partial: bool,
}

/// A directory entry not read as a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStatus {
    /// Its name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// What is loaded from an intel directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelStatus {
    /// Distinct indicators across all files.
    pub total: KindCounts,
    /// Each feed file, in name order.
    pub feeds: Vec<FeedStatus>,
    /// Every STIX indicator not (fully) enforced.
    pub unsupported: Vec<UnsupportedStatus>,
    /// Entries not read.
    pub skipped: Vec<SkippedStatus>,
}

impl IntelSet {
    /// The account `seawall status` shows.
    pub fn status(&self) -> IntelStatus {
        IntelStatus {
            total: KindCounts {
                sha256: self.count(IndicatorKind::Sha256),
                ip: self.count(IndicatorKind::Ip),
                cidr: self.count(IndicatorKind::Cidr),
            },
            feeds: self
                .feeds()
                .iter()
                .map(|f| FeedStatus {
                    file: f.file.to_string(),
                    format: f.format.as_str().into(),
                    counts: KindCounts::from_array(f.counts),
                    revoked: f.revoked,
                    expired: f.expired,
                })
                .collect(),
            unsupported: self
                .feeds()
                .iter()
                .flat_map(|f| {
                    f.unsupported.iter().map(|u| UnsupportedStatus {
                        file: f.file.to_string(),
                        line: u.line,
                        object: u.object.clone(),
                        pattern: u.pattern.clone(),
                        reason: u.reason.to_string(),
                        partial: u.partial,
                    })
                })
                .collect(),
            skipped: self
                .skipped()
                .iter()
                .map(|s| SkippedStatus {
                    file: s.file.clone(),
                    reason: s.reason.into(),
                })
                .collect(),
        }
    }
}

/// Unsupported patterns listed one per line before the rest is summed up.
const UNSUPPORTED_SHOWN: usize = 20;

impl fmt::Display for IntelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "indicators: {}", self.total)?;
        for feed in &self.feeds {
            write!(f, "  {} ({}): {}", feed.file, feed.format, feed.counts)?;
            if feed.revoked + feed.expired > 0 {
                write!(
                    f,
                    "; skipped {} revoked, {} expired",
                    feed.revoked, feed.expired
                )?;
            }
            writeln!(f)?;
        }
        if !self.unsupported.is_empty() {
            let partial = self.unsupported.iter().filter(|u| u.partial).count();
            writeln!(
                f,
                "unsupported STIX patterns: {} ({} partly enforced)",
                self.unsupported.len(),
                partial
            )?;
            for u in self.unsupported.iter().take(UNSUPPORTED_SHOWN) {
                writeln!(
                    f,
                    "  {}:{} {}{}: {}",
                    u.file,
                    u.line,
                    u.object,
                    if u.partial { " (partly enforced)" } else { "" },
                    u.reason
                )?;
            }
            if self.unsupported.len() > UNSUPPORTED_SHOWN {
                writeln!(
                    f,
                    "  … and {} more (`seawall status --json` lists all)",
                    self.unsupported.len() - UNSUPPORTED_SHOWN
                )?;
            }
        }
        for s in &self.skipped {
            writeln!(f, "  not read: {} ({})", s.file, s.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::feed::{Feed, FeedFormat};
    use crate::set::IntelSet;

    #[test]
    fn counts_per_kind_and_file_and_lists_unsupported() {
        let now = SystemTime::now();
        let list =
            Feed::parse(FeedFormat::PlainList, b"192.0.2.1\n198.51.100.0/24\n", now).unwrap();
        let stix = Feed::parse(
            FeedFormat::Stix,
            br#"{"type": "bundle", "objects": [
                {"type": "indicator", "id": "indicator--a", "pattern": "[domain-name:value = 'x.example']", "pattern_type": "stix"},
                {"type": "indicator", "id": "indicator--b", "pattern": "[ipv4-addr:value = '192.0.2.1']", "pattern_type": "stix", "revoked": true}
            ]}"#,
            now,
        )
        .unwrap();
        let set = IntelSet::from_feeds([
            ("ips.txt".to_string(), list),
            ("vendor.json".to_string(), stix),
        ]);
        let status = set.status();
        assert_eq!(
            (status.total.ip, status.total.cidr, status.total.sha256),
            (1, 1, 0)
        );
        assert_eq!(status.feeds.len(), 2);
        assert_eq!(status.feeds[1].revoked, 1);
        assert_eq!(status.unsupported.len(), 1);
        assert_eq!(status.unsupported[0].object, "indicator--a");
        assert_eq!(status.unsupported[0].line, 2);
        let text = status.to_string();
        assert!(
            text.contains("indicators: 0 sha256, 1 ip, 1 cidr"),
            "{text}"
        );
        assert!(
            text.contains("ips.txt (list): 0 sha256, 1 ip, 1 cidr"),
            "{text}"
        );
        assert!(
            text.contains("vendor.json:2 indicator--a: `domain-name:value =`"),
            "{text}"
        );
        assert!(text.contains("1 revoked"), "{text}");
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(
            serde_json::from_str::<super::IntelStatus>(&json).unwrap(),
            status
        );
    }
}
