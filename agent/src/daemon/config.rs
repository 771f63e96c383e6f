//! The agent's configuration: one definition for the command-line flags and the TOML file.
//!
//! [`AgentOptions`] derives both clap and serde, so a flag and its config key are the same
//! field (`--docker-socket` / `docker_socket`). A file is read first, flags override it, and
//! [`AgentOptions::resolve`] fills what neither set from [`defaults`], the one home of every
//! default. Unknown config keys are errors with line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every default, in one place: `--help` shows these and `resolve` applies them.
pub mod defaults {
    /// Profiles directory.
    pub const PROFILES: &str = "/etc/seawall/profiles";
    /// Event output: stdout.
    pub const OUTPUT: &str = "-";
    /// Docker engine socket.
    pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
    /// cgroup directories (below the cgroup v2 root) whose children are containers.
    pub const CONTAINER_PARENTS: &[&str] = &["docker"];
    /// Ring buffer size in bytes.
    pub const RINGBUF_BYTES: u32 = 8 << 20;
    /// Local API socket.
    pub const API_SOCKET: &str = "/run/seawall/agent.sock";
    /// Spool directory for collector delivery.
    pub const SPOOL_DIR: &str = "/var/lib/seawall/spool";
    /// Spool size limit in bytes.
    pub const SPOOL_MAX_BYTES: u64 = 256 << 20;
    /// bpffs directory for pinned maps and programs.
    pub const BPFFS: &str = "/sys/fs/bpf/seawall";
    /// Allowed kernel records one container may send per second before the rest are only
    /// counted (blocked and audited ones are never held back).
    pub const EVENT_BUDGET: u32 = 5000;
}

fn with_default(help: &str, default: impl std::fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

/// What `seawall agent` can be told, as flags or as keys of the `--config` file. Unset options
/// take their value from [`defaults`].
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentOptions {
    /// Agent config file (TOML); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "DIR", help = with_default("Profiles directory, one profile per .toml file", defaults::PROFILES))]
    pub profiles: Option<PathBuf>,
    #[arg(long, value_name = "PATH|-", help = with_default("Where events go: `-` for stdout, or a file appended to", defaults::OUTPUT))]
    pub output: Option<String>,
    #[arg(long, value_name = "PATH", help = with_default("Docker engine socket", defaults::DOCKER_SOCKET))]
    pub docker_socket: Option<String>,
    /// Report every file open in monitored containers (costs a round trip per open there).
    #[arg(long)]
    pub audit_files: bool,
    /// Report host processes too (by default the host costs no userspace work).
    #[arg(long)]
    pub host_events: bool,
    #[arg(long = "container-parent", value_name = "DIR", help = with_default("A cgroup directory (below the cgroup v2 root) whose children are containers; repeat for more", defaults::CONTAINER_PARENTS.join(", ")))]
    pub container_parents: Option<Vec<String>>,
    #[arg(long, value_name = "BYTES", help = with_default("Kernel ring buffer size: a power of two of at least 4096", defaults::RINGBUF_BYTES))]
    pub ringbuf_bytes: Option<u32>,
    /// Node name in events [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    #[arg(long, value_name = "PATH", help = with_default("Local API socket (root-only)", defaults::API_SOCKET))]
    pub api_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (off by default).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Stream events to this collector (https://HOST:PORT); they are spooled on disk first.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// CA certificate that signed the collector's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,
    /// This agent's client certificate (PEM); its subject is the agent's identity.
    #[arg(long, value_name = "FILE")]
    pub collector_cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub collector_key: Option<PathBuf>,
    /// Talk to the collector without TLS (local trials only).
    #[arg(long)]
    pub collector_insecure: bool,
    #[arg(long, value_name = "DIR", help = with_default("Spool directory for collector delivery", defaults::SPOOL_DIR))]
    pub spool_dir: Option<PathBuf>,
    #[arg(long, value_name = "BYTES", help = with_default("Spool size limit in bytes; the oldest events are dropped (and reported) beyond it", defaults::SPOOL_MAX_BYTES))]
    pub spool_max_bytes: Option<u64>,
    /// Keep programs attached and enforcing after the agent exits (restarts and upgrades leave
    /// no window); a restarted agent adopts them. `seawall uninstall` removes them.
    #[arg(long)]
    pub pin: bool,
    #[arg(long, value_name = "DIR", help = with_default("bpffs directory for pinned maps and programs", defaults::BPFFS))]
    pub bpffs: Option<PathBuf>,
    #[arg(long, value_name = "N", help = with_default("Allowed kernel records one container may send per second; beyond it they are counted and reported per container and command, not sent one by one (blocked and audited records are never held back; 0: no limit)", defaults::EVENT_BUDGET))]
    pub event_budget: Option<u32>,
}

/// The agent's resolved configuration: every value set.
#[derive(Debug, Clone, PartialEq)]
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
    /// CA certificate of the collector.
    pub collector_ca: Option<PathBuf>,
    /// This agent's client certificate.
    pub collector_cert: Option<PathBuf>,
    /// This agent's private key.
    pub collector_key: Option<PathBuf>,
    /// Plain-text connection to the collector (local trials only).
    pub collector_insecure: bool,
    /// Spool directory for collector delivery.
    pub spool_dir: PathBuf,
    /// Spool size limit in bytes.
    pub spool_max_bytes: u64,
    /// bpffs directory for the shared maps and, with `pin`, the program links.
    pub bpffs: PathBuf,
    /// Keep the programs attached and enforcing when the agent exits.
    pub pin: bool,
    /// Allowed kernel records per container per second (0: no limit).
    pub event_budget: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentOptions::default()
            .resolve()
            .expect("the defaults are valid")
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config: ringbuf_bytes = {0} must be a power of two of at least 4096")]
    RingBuf(u32),
}

impl AgentOptions {
    /// The options of a TOML config text; the error carries line and column.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The options in `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// `self` (the flags) over `file`: a flag that was given wins, a switch turns on.
    pub fn over(self, file: AgentOptions) -> AgentOptions {
        AgentOptions {
            config: self.config.or(file.config),
            profiles: self.profiles.or(file.profiles),
            output: self.output.or(file.output),
            docker_socket: self.docker_socket.or(file.docker_socket),
            audit_files: self.audit_files || file.audit_files,
            host_events: self.host_events || file.host_events,
            container_parents: self.container_parents.or(file.container_parents),
            ringbuf_bytes: self.ringbuf_bytes.or(file.ringbuf_bytes),
            node: self.node.or(file.node),
            api_socket: self.api_socket.or(file.api_socket),
            metrics: self.metrics.or(file.metrics),
            collector: self.collector.or(file.collector),
            collector_ca: self.collector_ca.or(file.collector_ca),
            collector_cert: self.collector_cert.or(file.collector_cert),
            collector_key: self.collector_key.or(file.collector_key),
            collector_insecure: self.collector_insecure || file.collector_insecure,
            spool_dir: self.spool_dir.or(file.spool_dir),
            spool_max_bytes: self.spool_max_bytes.or(file.spool_max_bytes),
            pin: self.pin || file.pin,
            bpffs: self.bpffs.or(file.bpffs),
            event_budget: self.event_budget.or(file.event_budget),
        }
    }

    /// Flags over the `--config` file (when given), then the defaults.
    pub fn load(self) -> Result<AgentConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => Self::from_file(path)?,
            None => AgentOptions::default(),
        };
        self.over(file).resolve()
    }

    /// Fills every unset option from [`defaults`] and checks the result.
    pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
        let c = AgentConfig {
            profiles: self.profiles.unwrap_or_else(|| defaults::PROFILES.into()),
            output: self.output.unwrap_or_else(|| defaults::OUTPUT.into()),
            docker_socket: self
                .docker_socket
                .unwrap_or_else(|| defaults::DOCKER_SOCKET.into()),
            audit_files: self.audit_files,
            host_events: self.host_events,
            container_parents: self.container_parents.unwrap_or_else(|| {
                defaults::CONTAINER_PARENTS
                    .iter()
                    .map(|p| p.to_string())
                    .collect()
            }),
            ringbuf_bytes: self.ringbuf_bytes.unwrap_or(defaults::RINGBUF_BYTES),
            node: self.node,
            api_socket: self
                .api_socket
                .unwrap_or_else(|| defaults::API_SOCKET.into()),
            metrics: self.metrics,
            collector: self.collector,
            collector_ca: self.collector_ca,
            collector_cert: self.collector_cert,
            collector_key: self.collector_key,
            collector_insecure: self.collector_insecure,
            spool_dir: self.spool_dir.unwrap_or_else(|| defaults::SPOOL_DIR.into()),
            spool_max_bytes: self.spool_max_bytes.unwrap_or(defaults::SPOOL_MAX_BYTES),
            bpffs: self.bpffs.unwrap_or_else(|| defaults::BPFFS.into()),
            pin: self.pin,
            event_budget: self.event_budget.unwrap_or(defaults::EVENT_BUDGET),
        };
        c.validate()?;
        Ok(c)
    }
}

impl AgentConfig {
    /// The configuration of a TOML text alone (no flags): parse errors carry line and column.
    pub fn from_toml(text: &str) -> Result<Self, TomlConfigError> {
        AgentOptions::from_toml(text)?
            .resolve()
            .map_err(TomlConfigError::Invalid)
    }

    /// Checks values no type can express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.ringbuf_bytes.is_power_of_two() || self.ringbuf_bytes < 4096 {
            return Err(ConfigError::RingBuf(self.ringbuf_bytes));
        }
        Ok(())
    }

    /// The node name events carry: configured, or the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "unknown".into())
        })
    }
}

/// Why a TOML text is not a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TomlConfigError {
    #[error(transparent)]
    Parse(#[from] toml::de::Error),
    #[error(transparent)]
    Invalid(ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: AgentOptions,
    }

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
        let err = AgentConfig::from_toml("audit_file = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audit_file") && err.contains("line 1"),
            "{err}"
        );
        let err = AgentConfig::from_toml("ringbuf_bytes = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("power of two"), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_both_fall_back_to_one_set_of_defaults() {
        let file = AgentOptions::from_toml(
            "output = \"/var/log/a.jsonl\"\nmetrics = \"127.0.0.1:9464\"\npin = true\n",
        )
        .unwrap();
        let flags =
            Cli::parse_from(["x", "--output", "-", "--docker-socket", "/run/d.sock"]).options;
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(c.output, "-", "a flag beats the file");
        assert_eq!(c.docker_socket, "/run/d.sock");
        assert_eq!(
            c.metrics.as_deref(),
            Some("127.0.0.1:9464"),
            "the file fills in"
        );
        assert!(c.pin, "a switch in the file stays on");
        assert_eq!(c.profiles, PathBuf::from(defaults::PROFILES));
        assert_eq!(c.bpffs, PathBuf::from(defaults::BPFFS));
    }

    #[test]
    fn every_flag_has_help_and_names_its_default() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.is_empty(), "--{} has no help", arg.get_id());
        }
        let help = cmd.clone().render_help().to_string();
        assert!(help.contains(defaults::PROFILES), "{help}");
        assert!(help.contains(defaults::BPFFS), "{help}");
    }
}
