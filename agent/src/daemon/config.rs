//! Agent configuration: a TOML file (`--config`), overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `seawall agent` can be told. Every field has a default that works on a stock
/// Docker host.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Profiles directory (one TOML profile per file).
    pub profiles: PathBuf,
    /// Where events go: `-` for stdout, or a file path (appended to).
    pub output: String,
    /// Docker engine socket.
    pub docker_socket: String,
    /// Report every file open in monitored containers (fanotify on their root filesystem).
    pub audit_files: bool,
    /// Also report host processes (off: the host costs no userspace work).
    pub host_events: bool,
    /// cgroup directories (relative to the cgroup v2 root) whose children are containers.
    pub container_parents: Vec<String>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Node name in events (default: the host name).
    pub node: Option<String>,
    /// Local API socket (root-only).
    pub api_socket: PathBuf,
    /// Prometheus endpoint address, e.g. `127.0.0.1:9464` (off when unset).
    pub metrics: Option<String>,
    /// Collector URL (`https://host:port`); events are spooled and sent when set.
    pub collector: Option<String>,
    pub collector_ca: Option<PathBuf>,
    pub collector_cert: Option<PathBuf>,
    pub collector_key: Option<PathBuf>,
    /// Plain-text connection to the collector (local trials only).
    pub collector_insecure: bool,
    /// Spool directory for collector delivery.
    pub spool_dir: PathBuf,
    /// Spool size limit in bytes.
    pub spool_max_bytes: u64,
    /// bpffs directory for the shared maps and, with `pin`, the program links.
    pub bpffs: PathBuf,
    /// Keep the programs attached and enforcing when the agent exits (restart and upgrade
    /// without a window); `seawall uninstall` removes them.
    pub pin: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            profiles: PathBuf::from("/etc/seawall/profiles"),
            output: "-".into(),
            docker_socket: "/var/run/docker.sock".into(),
            audit_files: false,
            host_events: false,
            container_parents: vec!["docker".into()],
            ringbuf_bytes: 8 << 20,
            node: None,
            api_socket: PathBuf::from("/run/seawall/agent.sock"),
            metrics: None,
            collector: None,
            collector_ca: None,
            collector_cert: None,
            collector_key: None,
            collector_insecure: false,
            spool_dir: PathBuf::from("/var/lib/seawall/spool"),
            spool_max_bytes: 256 << 20,
            bpffs: PathBuf::from("/sys/fs/bpf/seawall"),
            pin: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: ringbuf_bytes = {0} must be a power of two of at least 4096")]
    RingBuf(u32),
}

impl AgentConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML; the error carries line and column.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.ringbuf_bytes.is_power_of_two() || self.ringbuf_bytes < 4096 {
            return Err(ConfigError::RingBuf(self.ringbuf_bytes));
        }
        Ok(())
    }

    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_a_stock_docker_host() {
        let c = AgentConfig::default();
        assert_eq!(c.docker_socket, "/var/run/docker.sock");
        assert_eq!(c.container_parents, vec!["docker".to_string()]);
        assert!(!c.host_events);
        c.validate().unwrap();
    }

    #[test]
    fn a_file_sets_fields_and_unknown_keys_are_errors_with_a_position() {
        let c = AgentConfig::from_toml("audit_files = true\noutput = \"/var/log/seawall.jsonl\"\n")
            .unwrap();
        assert!(c.audit_files);
        assert_eq!(c.output, "/var/log/seawall.jsonl");
        let err = AgentConfig::from_toml("audit_file = true\n").unwrap_err();
        assert!(
            err.contains("audit_file") && err.contains("line 1"),
            "{err}"
        );
        let err = AgentConfig::from_toml("ringbuf_bytes = 1000\n").unwrap_err();
        assert!(err.contains("power of two"), "{err}");
    }
}
