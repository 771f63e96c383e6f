//! Trivy JSON reports (`trivy image -f json`, schema version 2), the optional scanner input of
//! image assurance: which vulnerabilities, of which severity, an image was found to have.
//!
//! A report is tied to an image by digest only — its `Metadata.ImageID` (the image's config
//! digest, what Docker calls the image id) or one of its `Metadata.RepoDigests` — never by
//! name: a tag moves, and a report about yesterday's `app:latest` says nothing about today's.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// Trivy's severities, in Trivy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The database had no severity for it.
    Unknown,
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    Medium,
    /// `HIGH`.
    High,
    /// `CRITICAL`.
    Critical,
}

impl Severity {
    /// Trivy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of Trivy's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a severity; write one of unknown, low, medium, high, critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Either case (`HIGH` in reports, `high` in the agent config).
    fn from_str(s: &str) -> Result<Severity, UnknownSeverity> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Severity::Unknown,
            "LOW" => Severity::Low,
            "MEDIUM" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return Err(UnknownSeverity(crate::indicator::excerpt(s))),
        })
    }
}

/// One vulnerability of one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `CVE-…`, `GHSA-…`.
    pub id: String,
    /// The package it is in.
    pub package: String,
    /// Its severity.
    pub severity: Severity,
}

/// What one report says about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The report's file name in the reports directory.
    pub file: String,
    /// `ArtifactName`, as scanned (for messages only).
    pub artifact: String,
    /// `Metadata.ImageID`, lower case.
    pub image_id: Option<String>,
    /// The digests of `Metadata.RepoDigests` (`sha256:…`, lower case).
    pub repo_digests: Vec<String>,
    /// Every vulnerability found, worst first.
    pub findings: Vec<Finding>,
}

impl ScanReport {
    /// Parses one report's JSON.
    pub fn parse(file: &str, text: &[u8]) -> Result<ScanReport, ReportProblem> {
        let raw: RawReport = serde_json::from_slice(text).map_err(ReportProblem::Json)?;
        if raw.schema_version != Some(2) {
            return Err(ReportProblem::Schema(raw.schema_version));
        }
        if raw
            .artifact_type
            .as_deref()
            .is_some_and(|t| t != "container_image")
        {
            return Err(ReportProblem::NotAnImage(crate::indicator::excerpt(
                raw.artifact_type.as_deref().unwrap_or_default(),
            )));
        }
        let meta = raw.metadata.unwrap_or_default();
        let image_id = meta.image_id.map(|d| d.to_ascii_lowercase());
        let repo_digests: Vec<String> = meta
            .repo_digests
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .collect();
        if image_id.is_none() && repo_digests.is_empty() {
            return Err(ReportProblem::NoDigest);
        }
        let mut findings = Vec::new();
        for result in raw.results.unwrap_or_default() {
            for v in result.vulnerabilities.unwrap_or_default() {
                let severity = v.severity.parse().map_err(ReportProblem::Severity)?;
                findings.push(Finding {
                    id: v.vulnerability_id,
                    package: v.pkg_name.unwrap_or_default(),
                    severity,
                });
            }
        }
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        Ok(ScanReport {
            file: file.to_string(),
            artifact: raw.artifact_name.unwrap_or_default(),
            image_id,
            repo_digests,
            findings,
        })
    }

    /// Whether this report is about the image with this id or one of these repo digests
    /// (`sha256:…` or `name@sha256:…`).
    pub fn describes<'a>(&self, digests: impl IntoIterator<Item = &'a str>) -> bool {
        digests.into_iter().any(|d| {
            let d = d.rsplit_once('@').map_or(d, |(_, d)| d);
            self.image_id
                .as_deref()
                .is_some_and(|i| i.eq_ignore_ascii_case(d))
                || self.repo_digests.iter().any(|r| r.eq_ignore_ascii_case(d))
        })
    }

    /// The worst vulnerability at or above `threshold`.
    pub fn worst_at_or_above(&self, threshold: Severity) -> Option<&Finding> {
        self.findings.first().filter(|f| f.severity >= threshold)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawReport {
    schema_version: Option<u32>,
    artifact_name: Option<String>,
    artifact_type: Option<String>,
    metadata: Option<RawMetadata>,
    results: Option<Vec<RawResult>>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    #[serde(rename = "ImageID")]
    image_id: Option<String>,
    #[serde(rename = "RepoDigests")]
    repo_digests: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(rename = "Vulnerabilities")]
    vulnerabilities: Option<Vec<RawVulnerability>>,
}

#[derive(Deserialize)]
struct RawVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(rename = "PkgName")]
    pkg_name: Option<String>,
    #[serde(rename = "Severity")]
    severity: String,
}

/// What is wrong with a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportProblem {
    /// Not JSON, or not the shape of a Trivy report.
    #[error("not a Trivy JSON report: {0}")]
    Json(serde_json::Error),
    /// Another schema than the one read here.
    #[error(
        "`SchemaVersion` is {}, not 2: write the report with a current `trivy image -f json`",
        .0.map_or("missing".to_string(), |v| v.to_string())
    )]
    Schema(Option<u32>),
    /// A report about a file system or a repository, not an image.
    #[error("`ArtifactType` is `{0}`: only `trivy image` reports say which image they are about")]
    NotAnImage(String),
    /// Nothing ties the report to an image.
    #[error("the report has neither `Metadata.ImageID` nor `Metadata.RepoDigests`: it cannot be tied to an image")]
    NoDigest,
    /// A severity Trivy does not write.
    #[error("{0}")]
    Severity(UnknownSeverity),
}

/// Why a reports directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The directory could not be listed.
    #[error("cannot list scan reports directory {}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be read.
    #[error("cannot read scan report {}", file.display())]
    ReadFile {
        /// The report.
        file: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be parsed.
    #[error("scan report {}: {problem}", file.display())]
    Invalid {
        /// The report.
        file: PathBuf,
        /// What is wrong with it.
        problem: ReportProblem,
    },
}

/// Every report of a directory (its `*.json` files).
#[derive(Debug, Clone, Default)]
pub struct ScanReports {
    reports: Vec<ScanReport>,
}

impl ScanReports {
    /// Loads every `*.json` file of `dir`; one that cannot be parsed fails the load.
    pub fn load_dir(dir: &Path) -> Result<ScanReports, ReportError> {
        let read_dir = |source| ReportError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(read_dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_dir)?;
        paths.retain(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        paths.sort();
        let mut reports = Vec::new();
        for path in paths {
            let text = fs::read(&path).map_err(|source| ReportError::ReadFile {
                file: path.clone(),
                source,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let report =
                ScanReport::parse(&name, &text).map_err(|problem| ReportError::Invalid {
                    file: path.clone(),
                    problem,
                })?;
            reports.push(report);
        }
        Ok(ScanReports { reports })
    }

    /// Builds the set from parsed reports.
    pub fn from_reports(reports: Vec<ScanReport>) -> ScanReports {
        ScanReports { reports }
    }

    /// The reports about an image, given its id and repo digests.
    pub fn about<'s, 'a: 's>(
        &'s self,
        digests: &'s [&'a str],
    ) -> impl Iterator<Item = &'s ScanReport> + 's {
        self.reports
            .iter()
            .filter(move |r| r.describes(digests.iter().copied()))
    }

    /// How many reports are loaded.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ID: &str = "sha256:3cc203321400a2f86a6e5ba0e3a0ac1ef4fd8e3b3a1a6e1e5c2c0c7c1a2b3c4d";
    const REPO: &str = "sha256:aaaa03321400a2f86a6e5ba0e3a0ac1ef4fd8e3b3a1a6e1e5c2c0c7c1a2b3c4d";

    pub(crate) fn report(vulns: &str) -> String {
        format!(
            r#"{{
  "SchemaVersion": 2,
  "CreatedAt": "2025-05-01T10:00:00.123456789Z",
  "ArtifactName": "registry.example:5000/app:1.2",
  "ArtifactType": "container_image",
  "Metadata": {{
    "OS": {{"Family": "alpine", "Name": "3.19.1"}},
    "ImageID": "{ID}",
    "DiffIDs": ["sha256:d4fc045c9e3a848011de66f34b81f052d4f2c15a17bb196d637e526349601820"],
    "RepoTags": ["registry.example:5000/app:1.2"],
    "RepoDigests": ["registry.example:5000/app@{REPO}"]
  }},
  "Results": [
    {{"Target": "app (alpine 3.19.1)", "Class": "os-pkgs", "Type": "alpine", "Vulnerabilities": [{vulns}]}},
    {{"Target": "usr/lib/app.jar", "Class": "lang-pkgs", "Type": "jar"}}
  ]
}}"#
        )
    }

    fn vuln(id: &str, pkg: &str, sev: &str) -> String {
        format!(
            r#"{{"VulnerabilityID": "{id}", "PkgName": "{pkg}", "InstalledVersion": "3.1.4-r5", "FixedVersion": "3.1.4-r6", "Severity": "{sev}"}}"#
        )
    }

    #[test]
    fn reads_a_trivy_image_report() {
        let text = report(
            &[
                vuln("CVE-2024-0001", "busybox", "MEDIUM"),
                vuln("CVE-2024-0727", "libcrypto3", "HIGH"),
                vuln("CVE-2024-0002", "musl", "LOW"),
            ]
            .join(","),
        );
        let r = ScanReport::parse("app.json", text.as_bytes()).unwrap();
        assert_eq!(r.image_id.as_deref(), Some(ID));
        assert_eq!(r.repo_digests, [REPO]);
        assert_eq!(r.findings.len(), 3);
        let worst = r.worst_at_or_above(Severity::High).unwrap();
        assert_eq!(
            (worst.id.as_str(), worst.package.as_str()),
            ("CVE-2024-0727", "libcrypto3")
        );
        assert!(r.worst_at_or_above(Severity::Critical).is_none());
        assert!(r.describes([ID]));
        assert!(r.describes([&*format!("registry.example:5000/app@{REPO}")]));
        assert!(r.describes([&*ID.to_uppercase().replace("SHA256", "sha256")]));
        assert!(!r.describes(["sha256:0000"]));
    }

    #[test]
    fn a_clean_image_has_no_findings() {
        let text = report("").replace(r#", "Vulnerabilities": []"#, "");
        let r = ScanReport::parse("clean.json", text.as_bytes()).unwrap();
        assert!(r.findings.is_empty());
        assert!(r.worst_at_or_above(Severity::Unknown).is_none());
        let null = report("").replace(r#""Vulnerabilities": []"#, r#""Vulnerabilities": null"#);
        assert!(ScanReport::parse("n.json", null.as_bytes())
            .unwrap()
            .findings
            .is_empty());
    }

    #[test]
    fn bad_reports_say_why() {
        let e = ScanReport::parse("x.json", b"{").unwrap_err();
        assert!(matches!(e, ReportProblem::Json(_)));
        let e = ScanReport::parse(
            "x.json",
            report("")
                .replace("\"SchemaVersion\": 2", "\"SchemaVersion\": 1")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not 2"), "{e}");
        let e = ScanReport::parse(
            "x.json",
            report("")
                .replace("container_image", "filesystem")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(e, ReportProblem::NotAnImage(_)));
        let no_digest = report("")
            .replace(&format!("\"ImageID\": \"{ID}\","), "")
            .replace(&format!("\"registry.example:5000/app@{REPO}\""), "");
        assert!(matches!(
            ScanReport::parse("x.json", no_digest.as_bytes()),
            Err(ReportProblem::NoDigest)
        ));
        let e = ScanReport::parse("x.json", report(&vuln("CVE-1", "p", "SEVERE")).as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("SEVERE"), "{e}");
    }

    #[test]
    fn a_directory_of_reports() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("app.json"),
            report(&vuln("CVE-1", "p", "CRITICAL")),
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "not a report").unwrap();
        let reports = ScanReports::load_dir(dir.path()).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports.about(&[ID]).count(), 1);
        assert_eq!(reports.about(&["sha256:1"]).count(), 0);
        fs::write(dir.path().join("broken.json"), "{}").unwrap();
        let e = ScanReports::load_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("broken.json"), "{e}");
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
        assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
        assert!("severe".parse::<Severity>().is_err());
    }
}
