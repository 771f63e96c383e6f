//! Threat intelligence and image assurance inputs for Seawall, from files the operator drops on
//! the node (no network access is assumed).
//!
//! - Feeds ([`IntelSet::load_dir`]): every file of an intel directory, by name — `*.json` is a
//!   STIX 2.1 bundle, `*.csv` a MalwareBazaar-style export, anything else a plain list of
//!   SHA-256 hashes, IP addresses and CIDRs. A bad file fails the whole load with `file:line`,
//!   so the caller keeps the indicators it had. STIX patterns Seawall cannot enforce are kept,
//!   with the reason, in [`FeedSummary::unsupported`].
//! - The loaded [`IntelSet`] answers "is this file content / destination listed, and by whom?"
//!   ([`IntelSet::match_hash`], [`IntelSet::match_addr`]) and lists its networks for the
//!   kernel's LPM tries.
//!
//! - Image assurance ([`AssurancePolicy`]): the `[assurance]` section of the agent config (allow
//!   and deny image patterns, Trivy reports and a severity threshold) and the verdict for one
//!   image, naming the rule that refused it.
//!
//! Everything here is pure: no privileges, no panics on any input (the parsers are written to
//! be fuzzed), so `seawall status` and tests give the answers the daemon would.

mod assurance;
mod csv;
mod error;
mod feed;
mod indicator;
mod plain;
mod set;
mod status;
mod stix;
mod trivy;

pub use assurance::{
    AssuranceConfig, AssuranceError, AssuranceMode, AssurancePolicy, Refusal, Verdict,
};
pub use error::{LineProblem, LoadError, Problem, StixProblem};
pub use feed::{Entry, Feed, FeedFormat, Unsupported};
pub use indicator::{canonical, Indicator, IndicatorError, IndicatorKind, IpNet, Sha256};
pub use set::{FeedSummary, IntelSet, Listing, Origin, Skipped};
pub use status::{FeedStatus, IntelStatus, KindCounts, SkippedStatus, UnsupportedStatus};
pub use stix::{Gap, SyntaxError, UnsupportedReason};
pub use trivy::{
    Finding, ReportError, ReportProblem, ScanReport, ScanReports, Severity, UnknownSeverity,
};
