//! Image assurance: which images may run on this node, decided from the image's reference and
//! digests before its container runs anything.
//!
//! Order of the rules: a `deny` entry refuses, whatever else matches; then, when an `allow`
//! list is given, an image must match one of its entries; then, with `scan_reports`, an image
//! whose report lists a vulnerability at or above `max_severity` is refused. No `allow` key
//! means no allow list (only `deny` and reports refuse); `allow = []` allows nothing.

use std::fmt;
use std::path::PathBuf;

use seawall_profile::{ImagePattern, Mode};
use serde::Deserialize;

use crate::trivy::{ReportError, ScanReports, Severity, UnknownSeverity};

/// `[assurance]` of the agent config, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AssuranceConfig {
    /// `off` (default), `audit` or `enforce`.
    pub mode: AssuranceMode,
    /// Image globs (profile syntax) or `sha256:` digests an image must match; absent: no
    /// allow list.
    pub allow: Option<Vec<String>>,
    /// Image globs or digests always refused.
    pub deny: Vec<String>,
    /// Directory of Trivy JSON reports.
    pub scan_reports: Option<PathBuf>,
    /// Refuse images with a vulnerability at or above this severity (default `critical`).
    pub max_severity: Option<String>,
}

/// `[assurance] mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AssuranceMode {
    /// Not applied.
    #[default]
    Off,
    /// Unapproved containers run and are reported once.
    Audit,
    /// Unapproved containers never run an instruction.
    Enforce,
}

impl From<AssuranceMode> for Mode {
    fn from(m: AssuranceMode) -> Mode {
        match m {
            AssuranceMode::Off => Mode::Off,
            AssuranceMode::Audit => Mode::Audit,
            AssuranceMode::Enforce => Mode::Enforce,
        }
    }
}

/// Why an `[assurance]` section cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum AssuranceError {
    /// An `allow` or `deny` entry is not an image pattern.
    #[error("[assurance] {list}[{index}]: {reason}")]
    Pattern {
        /// `allow` or `deny`.
        list: &'static str,
        /// 0-based position in the list.
        index: usize,
        /// The pattern parser's explanation (it names the pattern).
        reason: String,
    },
    /// `max_severity` is not a severity.
    #[error("[assurance] max_severity: {0}")]
    Severity(UnknownSeverity),
    /// `max_severity` without `scan_reports` would never refuse anything.
    #[error("[assurance] max_severity is set but scan_reports is not: name the directory of Trivy reports")]
    SeverityWithoutReports,
    /// The reports could not be loaded.
    #[error("[assurance] scan_reports: {0}")]
    Reports(ReportError),
}

/// Which rule refused an image; its `Display` is the event's rule text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny` entry matched.
    Denied {
        /// The entry as written.
        pattern: String,
    },
    /// There is an allow list and no entry matched.
    NotAllowed,
    /// A scan report lists a vulnerability at or above the threshold.
    Vulnerable {
        /// The report's file name.
        report: String,
        /// The worst vulnerability's id.
        vulnerability: String,
        /// The package it is in.
        package: String,
        /// Its severity.
        severity: Severity,
        /// `max_severity`.
        threshold: Severity,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied { pattern } => write!(f, "deny `{pattern}`"),
            Refusal::NotAllowed => f.write_str("no allow entry matches"),
            Refusal::Vulnerable {
                report,
                vulnerability,
                package,
                severity,
                threshold,
            } => write!(
                f,
                "scan report {report}: {vulnerability} ({severity}) in {package}, at or above \
                 max_severity {threshold}"
            ),
        }
    }
}

/// The assurance decision for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may run.
    Approved,
    /// It may not, and why.
    Refused(Refusal),
}

/// A validated `[assurance]` section, with its reports loaded.
#[derive(Debug, Clone)]
pub struct AssurancePolicy {
    /// Audit or enforce (an `off` section builds no policy).
    pub mode: Mode,
    allow: Option<Vec<ImagePattern>>,
    deny: Vec<ImagePattern>,
    reports: ScanReports,
    threshold: Severity,
}

impl AssurancePolicy {
    /// Validates the section and loads its reports; `None` when the mode is `off`.
    pub fn from_config(
        config: &AssuranceConfig,
    ) -> Result<Option<AssurancePolicy>, AssuranceError> {
        let patterns = |list: &'static str, entries: &[String]| {
            entries
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    ImagePattern::parse(p).map_err(|reason| AssuranceError::Pattern {
                        list,
                        index,
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        // Validated even when off, so a mistake is found before someone turns it on.
        let allow = config
            .allow
            .as_deref()
            .map(|a| patterns("allow", a))
            .transpose()?;
        let deny = patterns("deny", &config.deny)?;
        let threshold = match &config.max_severity {
            Some(s) => s.parse().map_err(AssuranceError::Severity)?,
            None => Severity::Critical,
        };
        if config.max_severity.is_some() && config.scan_reports.is_none() {
            return Err(AssuranceError::SeverityWithoutReports);
        }
        if config.mode == AssuranceMode::Off {
            return Ok(None);
        }
        let reports = match &config.scan_reports {
            Some(dir) => ScanReports::load_dir(dir).map_err(AssuranceError::Reports)?,
            None => ScanReports::default(),
        };
        Ok(Some(AssurancePolicy {
            mode: config.mode.into(),
            allow,
            deny,
            reports,
            threshold,
        }))
    }

    /// Decides for an image by its reference (as the container was created with) and its
    /// digests (image id and repo digests, `sha256:…` or `name@sha256:…`).
    pub fn verdict(&self, reference: &str, digests: &[&str]) -> Verdict {
        let matches = |p: &ImagePattern| {
            p.matches(reference, None) || digests.iter().any(|d| p.matches(reference, Some(d)))
        };
        if let Some(p) = self.deny.iter().find(|p| matches(p)) {
            return Verdict::Refused(Refusal::Denied {
                pattern: p.as_str().to_string(),
            });
        }
        if let Some(allow) = &self.allow {
            if !allow.iter().any(matches) {
                return Verdict::Refused(Refusal::NotAllowed);
            }
        }
        let worst = self
            .reports
            .about(digests)
            .filter_map(|r| r.worst_at_or_above(self.threshold).map(|f| (r, f)))
            .max_by_key(|(_, f)| f.severity);
        if let Some((report, finding)) = worst {
            return Verdict::Refused(Refusal::Vulnerable {
                report: report.file.clone(),
                vulnerability: finding.id.clone(),
                package: finding.package.clone(),
                severity: finding.severity,
                threshold: self.threshold,
            });
        }
        Verdict::Approved
    }

    /// How many scan reports are loaded.
    pub fn report_count(&self) -> usize {
        self.reports.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:3cc203321400a2f86a6e5ba0e3a0ac1ef4fd8e3b3a1a6e1e5c2c0c7c1a2b3c4d";
    const D2: &str = "sha256:bbbb03321400a2f86a6e5ba0e3a0ac1ef4fd8e3b3a1a6e1e5c2c0c7c1a2b3c4d";

    fn config(text: &str) -> AssuranceConfig {
        #[derive(Deserialize)]
        struct Agent {
            assurance: AssuranceConfig,
        }
        toml::from_str::<Agent>(&format!("[assurance]\n{text}"))
            .unwrap()
            .assurance
    }

    fn policy(text: &str) -> AssurancePolicy {
        AssurancePolicy::from_config(&config(text))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn allow_deny_and_digests() {
        let p = policy(&format!(
            "mode = \"enforce\"\nallow = [\"registry.example:5000/**\", \"{D1}\"]\n\
             deny = [\"registry.example:5000/legacy/*\"]"
        ));
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(
            p.verdict("registry.example:5000/team/app:1", &[D2]),
            Verdict::Approved
        );
        assert_eq!(
            p.verdict("registry.example:5000/legacy/app:1", &[D2]),
            Verdict::Refused(Refusal::Denied {
                pattern: "registry.example:5000/legacy/*".into()
            })
        );
        assert_eq!(p.verdict("busybox:latest", &[D1]), Verdict::Approved);
        assert_eq!(
            p.verdict("busybox:latest", &[D2]),
            Verdict::Refused(Refusal::NotAllowed)
        );
        assert_eq!(
            p.verdict(&format!("busybox@{D1}"), &[]),
            Verdict::Approved,
            "a digest in the reference counts"
        );
        assert_eq!(
            p.verdict("busybox:latest", &[]),
            Verdict::Refused(Refusal::NotAllowed)
        );
    }

    #[test]
    fn deny_wins_over_allow_and_empty_allow_allows_nothing() {
        let p = policy(&format!(
            "mode = \"audit\"\nallow = [\"**\"]\ndeny = [\"{D1}\"]"
        ));
        assert_eq!(p.mode, Mode::Audit);
        assert!(matches!(
            p.verdict("nginx:1.27", &[D1]),
            Verdict::Refused(Refusal::Denied { .. })
        ));
        assert_eq!(p.verdict("nginx:1.27", &[D2]), Verdict::Approved);
        let none = policy("mode = \"enforce\"\nallow = []");
        assert_eq!(
            none.verdict("nginx", &[D1]),
            Verdict::Refused(Refusal::NotAllowed)
        );
        let no_list = policy("mode = \"enforce\"\ndeny = [\"evil/*\"]");
        assert_eq!(no_list.verdict("nginx", &[D1]), Verdict::Approved);
        assert!(matches!(
            no_list.verdict("evil/miner:1", &[D1]),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn scan_reports_refuse_at_or_above_max_severity() {
        let dir = tempfile::tempdir().unwrap();
        let report = crate::trivy::tests::report(
            r#"{"VulnerabilityID": "CVE-2024-0727", "PkgName": "libcrypto3", "Severity": "HIGH"}"#,
        );
        std::fs::write(dir.path().join("app.json"), report).unwrap();
        let config = |sev: &str| {
            format!(
                "mode = \"enforce\"\nscan_reports = {:?}\nmax_severity = \"{sev}\"",
                dir.path()
            )
        };
        let p = policy(&config("high"));
        assert_eq!(p.report_count(), 1);
        let v = p.verdict("registry.example:5000/app:1.2", &[D1]);
        let Verdict::Refused(r @ Refusal::Vulnerable { .. }) = v else {
            panic!("{v:?}")
        };
        let text = r.to_string();
        assert!(
            text.contains("app.json") && text.contains("CVE-2024-0727"),
            "{text}"
        );
        assert!(
            text.contains("HIGH") && text.contains("libcrypto3"),
            "{text}"
        );
        // Another image, or a stricter threshold: allowed.
        assert_eq!(
            p.verdict("registry.example:5000/app:1.2", &[D2]),
            Verdict::Approved
        );
        assert_eq!(
            policy(&config("critical")).verdict("x", &[D1]),
            Verdict::Approved
        );
    }

    #[test]
    fn bad_sections_are_refused_with_the_key() {
        let e = AssurancePolicy::from_config(&config(
            "mode = \"enforce\"\nallow = [\"ok\", \"sha256:abc\"]",
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("[assurance] allow[1]: "), "{e}");
        let e = AssurancePolicy::from_config(&config("deny = [\"\"]")).unwrap_err();
        assert!(e.to_string().contains("deny[0]"), "{e}");
        let e =
            AssurancePolicy::from_config(&config("mode = \"enforce\"\nmax_severity = \"high\""))
                .unwrap_err();
        assert!(matches!(e, AssuranceError::SeverityWithoutReports));
        let e = AssurancePolicy::from_config(&config("mode = \"enforce\"\nscan_reports = \"/nonexistent/seawall-reports\"\nmax_severity = \"high\"")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/seawall-reports"),
            "{e}"
        );
        assert!(toml::from_str::<AssuranceConfig>("mode = \"block\"").is_err());
        assert!(toml::from_str::<AssuranceConfig>("allowed = []").is_err());
        assert!(AssurancePolicy::from_config(&AssuranceConfig::default())
            .unwrap()
            .is_none());
    }
}
