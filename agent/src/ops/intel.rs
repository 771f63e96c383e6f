//! The intel and assurance sections of `seawall status`: what is loaded and from which file,
//! what is not enforced and why, how each verdict is taken here, and which containers image
//! assurance refused.

use std::fmt;

use seawall_intel::IntelStatus;
use serde::{Deserialize, Serialize};

/// Threat intelligence on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelView {
    /// The feeds directory.
    pub dir: String,
    /// The agent's `intel_mode` (a profile's `[intel] mode` overrides it).
    pub mode: String,
    /// How listed destinations are refused here.
    pub addresses: String,
    /// How listed hashes are refused here.
    pub hashes: String,
    /// Why the last reload was rejected, while the previous indicators stay in force.
    pub error: Option<String>,
    /// Executed files hashed so far (one per file version).
    pub files_hashed: u64,
    /// Counts per kind and per file, unsupported STIX patterns, files not read.
    #[serde(flatten)]
    pub loaded: IntelStatus,
}

/// Image assurance on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssuranceView {
    /// `audit` or `enforce`.
    pub mode: String,
    /// How a refused container is stopped here.
    pub backend: String,
    /// Trivy reports loaded from `scan_reports`.
    pub scan_reports: usize,
    /// Containers whose image is not approved.
    pub refused: Vec<RefusedContainer>,
}

/// One container image assurance refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedContainer {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Image id (`sha256:…`).
    pub image_id: String,
    /// The rule that refused it.
    pub rule: String,
    /// `blocked` (enforce) or `audited`.
    pub action: String,
}

impl fmt::Display for IntelView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.loaded;
        writeln!(
            f,
            "intel: {} from {} (mode {})",
            l.total, self.dir, self.mode
        )?;
        writeln!(f, "  addresses: {}", self.addresses)?;
        writeln!(
            f,
            "  hashes:    {} ({} files hashed)",
            self.hashes, self.files_hashed
        )?;
        if let Some(e) = &self.error {
            writeln!(
                f,
                "  last reload rejected, previous indicators in force: {e}"
            )?;
        }
        for feed in &l.feeds {
            writeln!(f, "  {:<30} {:<5} {}", feed.file, feed.format, feed.counts)?;
        }
        if !l.unsupported.is_empty() {
            writeln!(f, "  not enforced ({}):", l.unsupported.len())?;
            for u in &l.unsupported {
                let partly = if u.partial { " (partly enforced)" } else { "" };
                writeln!(
                    f,
                    "    {}:{} {} {}: {}{partly}",
                    u.file, u.line, u.object, u.pattern, u.reason
                )?;
            }
        }
        for s in &l.skipped {
            writeln!(f, "  skipped {}: {}", s.file, s.reason)?;
        }
        Ok(())
    }
}

impl fmt::Display for AssuranceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "assurance: {} ({}), {} scan reports",
            self.mode, self.backend, self.scan_reports
        )?;
        for c in &self.refused {
            writeln!(
                f,
                "  {} {:<20} {:<12} {} ({}): {}",
                c.action,
                c.name,
                &c.id[..c.id.len().min(12)],
                c.image,
                c.image_id,
                c.rule
            )?;
        }
        Ok(())
    }
}
