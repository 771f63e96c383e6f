//! The collector's TOML configuration file. Command-line flags override its top-level settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use seawall_proto::event::Severity;
use serde::Deserialize;

use crate::store::StoreOptions;

/// Smallest `max_message_bytes` accepted: two of the largest events an agent sends.
pub const MIN_MESSAGE_BYTES: usize = 2 * seawall_proto::event::MAX_EVENT_BYTES;

/// The whole file. Unknown keys are errors, so a typo never silently disables a sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`GET /metrics`); absent: not served.
    pub metrics: Option<SocketAddr>,
    /// Plain-text gRPC, agents identified by the id they claim. Local trials only.
    #[serde(default)]
    pub insecure: bool,
    /// Largest accepted gRPC message (a batch of events), in bytes.
    pub max_message_bytes: Option<usize>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// How client certificates get their role.
    #[serde(default)]
    pub roles: crate::identity::RolesConfig,
    /// NATS JetStream as the store (issue 17); absent: the embedded store under `data`.
    pub nats: Option<crate::store::nats::NatsConfig>,
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub segment_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_hours: Option<u64>,
}

impl StoreConfig {
    pub fn options(&self) -> StoreOptions {
        let d = StoreOptions::default();
        StoreOptions {
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
            max_age: self
                .max_age_hours
                .map(|h| Duration::from_secs(h * 3600))
                .unwrap_or(d.max_age),
        }
    }
}

/// One `[[sink]]` table. (Unknown keys are rejected by [`SinkKind`]: serde's
/// `deny_unknown_fields` cannot sit on a struct with a flattened field.) Equal tables are the
/// same sink: a reload leaves it running.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SinkConfig {
    /// Unique; names the sink's cursor file, so renaming a sink re-sends everything retained.
    pub name: String,
    /// Only events at or above this severity are sent.
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn info() -> Severity {
    Severity::Info
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkKind {
    /// JSON lines, rotated by size.
    File {
        path: PathBuf,
        #[serde(default)]
        format: ExportFormat,
        #[serde(default = "default_rotate_bytes")]
        max_bytes: u64,
        #[serde(default = "default_keep")]
        keep: u32,
    },
    /// RFC 5424 syslog over TCP (octet-counting framing) or UDP.
    Syslog {
        address: String,
        #[serde(default)]
        protocol: SyslogProtocol,
        #[serde(default)]
        format: SyslogFormat,
        /// Syslog facility number (default 13, log audit).
        #[serde(default = "default_facility")]
        facility: u8,
    },
    /// Splunk HTTP Event Collector.
    SplunkHec {
        url: String,
        token: String,
        #[serde(default)]
        ca: Option<PathBuf>,
        #[serde(default)]
        index: Option<String>,
        #[serde(default = "default_sourcetype")]
        sourcetype: String,
        #[serde(default)]
        format: ExportFormat,
    },
    /// POST `{"events": [...]}` to a URL.
    Webhook {
        url: String,
        #[serde(default)]
        ca: Option<PathBuf>,
        /// Sent as the `Authorization` header when set.
        #[serde(default)]
        authorization: Option<String>,
        #[serde(default)]
        format: ExportFormat,
    },
    /// Slack incoming-webhook format: one `{"text": ...}` message per event.
    Slack {
        url: String,
        #[serde(default)]
        ca: Option<PathBuf>,
    },
}

/// The event objects a file, webhook or HEC sink sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The Seawall event schema plus the `collector` object.
    #[default]
    Seawall,
    /// Open Cybersecurity Schema Framework 1.2.0 events (collector/API.md has the mapping).
    Ocsf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// The event as JSON in the message part.
    #[default]
    Json,
    /// ArcSight Common Event Format (ArcSight, QRadar).
    Cef,
}

fn default_rotate_bytes() -> u64 {
    100 << 20
}
fn default_keep() -> u32 {
    5
}
fn default_facility() -> u8 {
    13
}
fn default_sourcetype() -> String {
    "seawall:event".into()
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading collector config {}: {e}", path.display()))?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("collector config {}: {e}", path.display()))?;
        if let Some(n) = cfg.max_message_bytes.filter(|&n| n < MIN_MESSAGE_BYTES) {
            anyhow::bail!(
                "collector config {}: max_message_bytes = {n} is below {MIN_MESSAGE_BYTES}: agents cut single events to {} bytes and need room for one in a batch",
                path.display(),
                seawall_proto::event::MAX_EVENT_BYTES
            );
        }
        let mut names = std::collections::HashSet::new();
        for s in &cfg.sinks {
            if !names.insert(&s.name) {
                anyhow::bail!(
                    "collector config {}: two sinks are named {:?}; sink names must be unique",
                    path.display(),
                    s.name
                );
            }
            if s.name.is_empty() || s.name.contains(['/', '\\', '.']) {
                anyhow::bail!(
                    "collector config {}: sink name {:?} must be non-empty and have no '/', '\\' or '.'",
                    path.display(),
                    s.name
                );
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn sinks_parse_and_typos_are_rejected() {
        let cfg = parse(
            "[[sink]]\nname = \"a\"\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\nformat = \"cef\"\nmin_severity = \"high\"\n",
        )
        .unwrap();
        assert_eq!(cfg.sinks[0].min_severity, Severity::High);
        assert!(matches!(
            cfg.sinks[0].kind,
            SinkKind::Syslog {
                format: SyslogFormat::Cef,
                protocol: SyslogProtocol::Tcp,
                ..
            }
        ));
        let err = parse("[[sink]]\nname = \"a\"\ntype = \"syslog\"\nadress = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
        assert!(parse("listen_addr = \"x\"").is_err());
        assert!(parse("[[sink]]\nname = \"a\"\ntype = \"kafka\"\n").is_err());
    }
}
