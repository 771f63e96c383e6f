//! The agent's configuration: one definition for the command-line flags and the TOML file.
//!
//! [`AgentOptions`] derives both clap and serde, so a flag and its config key are the same
//! field (`--docker-socket` / `docker_socket`). A file is read first, flags override it, and
//! [`AgentOptions::resolve`] fills what neither set from [`defaults`], the one home of every
//! default. Unknown config keys are errors with line and column.

use std::path::{Path, PathBuf};

use seawall_intel::AssuranceConfig;
use seawall_profile::Mode;
use serde::Deserialize;

use crate::runtime::sources::SourceSockets;

/// Every default, in one place: `--help` shows these and `resolve` applies them.
pub mod defaults {
    /// Profiles directory.
    pub const PROFILES: &str = "/etc/seawall/profiles";
    /// Event output: stdout.
    pub const OUTPUT: &str = "-";
    /// Docker engine socket, read when it exists (or is configured).
    pub const DOCKER_SOCKET: &str = seawall_engines::detect::DOCKER_SOCKET;
    /// containerd's socket (its own API; the CRI on it is not read twice).
    pub const CONTAINERD_SOCKET: &str = seawall_engines::detect::CONTAINERD_SOCKET;
    /// A CRI runtime's socket (CRI-O's by default).
    pub const CRI_SOCKET: &str = seawall_engines::detect::CRIO_SOCKET;
    /// podman's Docker-compatible API socket.
    pub const PODMAN_SOCKET: &str = seawall_engines::detect::PODMAN_SOCKET;
    /// cgroup directories (below the cgroup v2 root) containers live below, made when missing.
    /// Kubernetes' and podman's (`kubepods`, `kubepods.slice`, `libpod_parent`,
    /// `machine.slice`) are added whenever they exist, without being listed.
    pub const CONTAINER_PARENTS: &[&str] = &["docker"];
    /// The environment variable a DaemonSet sets to the node's name (downward API).
    pub const NODE_NAME_ENV: &str = "NODE_NAME";
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
    /// State kept across restarts: learned behaviour, promotion clocks.
    pub const STATE_DIR: &str = "/var/lib/seawall/state";
    /// Distinct entries learned per category (executables, destinations, …) of each image.
    pub const LEARN_PER_CATEGORY: usize = 256;
    /// Images whose behaviour is kept; the least recently seen goes first.
    pub const LEARN_MAX_IMAGES: usize = 64;
    /// Allowed kernel records one container may send per second before the rest are only
    /// counted (blocked and audited ones are never held back).
    pub const EVENT_BUDGET: u32 = 5000;
    /// What a listed hash or destination gets when `intel_dir` is set.
    pub const INTEL_MODE: super::IntelMode = super::IntelMode::Enforce;
}

/// `intel_mode`: what a hash or destination the feeds list gets in a container whose profile
/// has no `[intel] mode` of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntelMode {
    /// Refused and reported.
    Enforce,
    /// Reported only.
    Audit,
    /// Not applied (a profile may still turn it on).
    Off,
}

impl From<IntelMode> for Mode {
    fn from(m: IntelMode) -> Mode {
        match m {
            IntelMode::Enforce => Mode::Enforce,
            IntelMode::Audit => Mode::Audit,
            IntelMode::Off => Mode::Off,
        }
    }
}

impl std::fmt::Display for IntelMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Mode::from(*self).as_str())
    }
}

/// A config key that takes one string or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    }))
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
    #[arg(long, value_name = "PATH", help = with_default("Docker engine socket; unset: read if it exists", defaults::DOCKER_SOCKET))]
    pub docker_socket: Option<String>,
    #[arg(long, value_name = "PATH", help = with_default("containerd socket (every namespace, k8s.io included); unset: read if it exists", defaults::CONTAINERD_SOCKET))]
    pub containerd_socket: Option<PathBuf>,
    #[arg(long, value_name = "PATH", help = with_default("CRI runtime socket (CRI-O); unset: read if it exists", defaults::CRI_SOCKET))]
    pub cri_socket: Option<PathBuf>,
    #[arg(long, value_name = "PATH", help = with_default("podman API socket; unset: read if it exists", defaults::PODMAN_SOCKET))]
    pub podman_socket: Option<PathBuf>,
    /// Report every file open in monitored containers (costs a round trip per open there).
    #[arg(long)]
    pub audit_files: bool,
    /// Report host processes too (by default the host costs no userspace work).
    #[arg(long)]
    pub host_events: bool,
    #[arg(long = "container-parent", value_name = "DIR", help = with_default("A cgroup directory (below the cgroup v2 root) containers live below, made when missing; repeat for more. Every child of it is a container, except below kubepods, kubepods.slice, libpod_parent, machine.slice and system.slice, where containers are known by their runtime's names at any depth. kubepods, kubepods.slice, libpod_parent and machine.slice are added whenever they exist", defaults::CONTAINER_PARENTS.join(", ")))]
    pub container_parents: Option<Vec<String>>,
    #[arg(long, value_name = "BYTES", help = with_default("Kernel ring buffer size: a power of two of at least 4096", defaults::RINGBUF_BYTES))]
    pub ringbuf_bytes: Option<u32>,
    /// Node name in events [default: $NODE_NAME, else the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    #[arg(long, value_name = "PATH", help = with_default("Local API socket (root-only)", defaults::API_SOCKET))]
    pub api_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (off by default).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Stream events to this collector (https://HOST:PORT); they are spooled on disk first.
    /// Repeat for failover: the first that answers is used, the next when it fails, resuming
    /// from the last acknowledgement. In the config file: a URL or a list of URLs.
    #[arg(long, value_name = "URL")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub collector: Option<Vec<String>>,
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
    /// Threat-intelligence feeds: every file of this directory (plain lists of SHA-256 hashes,
    /// addresses and CIDRs; MalwareBazaar CSV; STIX 2.1 bundles), reloaded when it changes.
    #[arg(long, value_name = "DIR")]
    pub intel_dir: Option<PathBuf>,
    #[arg(long, value_enum, value_name = "MODE", help = with_default("What a listed hash or destination gets where the profile has no [intel] mode", defaults::INTEL_MODE))]
    pub intel_mode: Option<IntelMode>,
    /// `[assurance]`: which images may run (config file only).
    #[arg(skip)]
    pub assurance: Option<AssuranceConfig>,
    #[arg(long, value_name = "DIR", help = with_default("State kept across restarts: what each image did (for `seawall profile learn`) and enforce_after clocks", defaults::STATE_DIR))]
    pub state_dir: Option<PathBuf>,
    /// Do not record what containers do (`seawall profile learn` then has nothing to learn
    /// from); enforce_after clocks still run.
    #[arg(long)]
    pub no_learn: bool,
    #[arg(long, value_name = "N", help = with_default("Distinct entries learned per category (executables, files, destinations, ports) of each image; more are counted as cut", defaults::LEARN_PER_CATEGORY))]
    pub learn_per_category: Option<usize>,
    #[arg(long, value_name = "N", help = with_default("Images whose behaviour is kept; the least recently seen is dropped for a new one", defaults::LEARN_MAX_IMAGES))]
    pub learn_max_images: Option<usize>,
    #[arg(long, value_name = "N", help = with_default("Allowed kernel records one container may send per second; beyond it they are counted and reported per container and command, not sent one by one (blocked and audited records are never held back; 0: no limit)", defaults::EVENT_BUDGET))]
    pub event_budget: Option<u32>,
    /// On a host without BPF LSM, also attach syscall tracepoints so executable mappings of
    /// dropped code, ptrace, process_vm_writev, writes to /proc/<pid>/mem and AF_PACKET sockets
    /// in containers are killed (enforce) or reported (audit) instead of unseen. COST: every
    /// syscall of every task on the host takes the slow path while they are attached (10-19%
    /// slower on an open/close loop). Never loaded where BPF LSM is the backend.
    #[arg(long)]
    pub fallback_syscall_hooks: bool,
}

/// The agent's resolved configuration: every value set.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Profiles directory (one TOML profile per file).
    pub profiles: PathBuf,
    /// Where events go: `-` for stdout, or a file path (appended to).
    pub output: String,
    /// Docker engine socket; `None`: the default, if it exists.
    pub docker_socket: Option<String>,
    /// containerd socket; `None`: the default, if it exists.
    pub containerd_socket: Option<PathBuf>,
    /// CRI runtime socket; `None`: the default, if it exists.
    pub cri_socket: Option<PathBuf>,
    /// podman API socket; `None`: the default, if it exists.
    pub podman_socket: Option<PathBuf>,
    /// Report every file open in monitored containers (fanotify on their root filesystem).
    pub audit_files: bool,
    /// Also report host processes (off: the host costs no userspace work).
    pub host_events: bool,
    /// cgroup directories (relative to the cgroup v2 root) containers live below.
    pub container_parents: Vec<String>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Node name in events (default: `NODE_NAME`, else the host name).
    pub node: Option<String>,
    /// Local API socket (root-only).
    pub api_socket: PathBuf,
    /// Prometheus endpoint address, e.g. `127.0.0.1:9464` (off when unset).
    pub metrics: Option<String>,
    /// Collector URLs (`https://host:port`), comma-separated in failover order; events are
    /// spooled and sent when set.
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
    /// Threat-intelligence feeds directory (intel is off without one).
    pub intel_dir: Option<PathBuf>,
    /// The intel mode of containers whose profile does not set one.
    pub intel_mode: IntelMode,
    /// Image assurance (`mode = "off"` unless configured).
    pub assurance: AssuranceConfig,
    /// State kept across restarts (learned behaviour, promotion clocks).
    pub state_dir: PathBuf,
    /// Record what containers do, for `seawall profile learn`.
    pub learn: bool,
    /// Distinct entries learned per category of each image.
    pub learn_per_category: usize,
    /// Images whose behaviour is kept.
    pub learn_max_images: usize,
    /// Allowed kernel records per container per second (0: no limit).
    pub event_budget: u32,
    /// Attach the fallback's syscall tracepoints where BPF LSM is not the backend (slows every
    /// syscall on the host; off by default).
    pub fallback_syscall_hooks: bool,
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
    #[error("config: intel_mode is set but intel_dir is not: name the directory of feeds")]
    IntelModeWithoutDir,
    #[error(
        "config: {key} = 0 would keep nothing; use at least 1, or no_learn = true to stop learning"
    )]
    LearnLimit { key: &'static str },
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
            containerd_socket: self.containerd_socket.or(file.containerd_socket),
            cri_socket: self.cri_socket.or(file.cri_socket),
            podman_socket: self.podman_socket.or(file.podman_socket),
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
            intel_dir: self.intel_dir.or(file.intel_dir),
            intel_mode: self.intel_mode.or(file.intel_mode),
            assurance: self.assurance.or(file.assurance),
            state_dir: self.state_dir.or(file.state_dir),
            no_learn: self.no_learn || file.no_learn,
            learn_per_category: self.learn_per_category.or(file.learn_per_category),
            learn_max_images: self.learn_max_images.or(file.learn_max_images),
            event_budget: self.event_budget.or(file.event_budget),
            fallback_syscall_hooks: self.fallback_syscall_hooks || file.fallback_syscall_hooks,
        }
    }

    /// Flags over the `--config` file (when given), then the node name from the environment
    /// (`NODE_NAME`, set by a DaemonSet), then the defaults.
    pub fn load(self) -> Result<AgentConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => Self::from_file(path)?,
            None => AgentOptions::default(),
        };
        let mut options = self.over(file);
        options.node =
            node_name_over_env(options.node, std::env::var(defaults::NODE_NAME_ENV).ok());
        options.resolve()
    }

    /// Fills every unset option from [`defaults`] and checks the result.
    pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
        if self.intel_mode.is_some() && self.intel_dir.is_none() {
            return Err(ConfigError::IntelModeWithoutDir);
        }
        let c = AgentConfig {
            profiles: self.profiles.unwrap_or_else(|| defaults::PROFILES.into()),
            output: self.output.unwrap_or_else(|| defaults::OUTPUT.into()),
            docker_socket: self.docker_socket,
            containerd_socket: self.containerd_socket,
            cri_socket: self.cri_socket,
            podman_socket: self.podman_socket,
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
            collector: self
                .collector
                .map(|urls| urls.join(","))
                .filter(|urls| !urls.is_empty()),
            collector_ca: self.collector_ca,
            collector_cert: self.collector_cert,
            collector_key: self.collector_key,
            collector_insecure: self.collector_insecure,
            spool_dir: self.spool_dir.unwrap_or_else(|| defaults::SPOOL_DIR.into()),
            spool_max_bytes: self.spool_max_bytes.unwrap_or(defaults::SPOOL_MAX_BYTES),
            bpffs: self.bpffs.unwrap_or_else(|| defaults::BPFFS.into()),
            pin: self.pin,
            intel_dir: self.intel_dir,
            intel_mode: self.intel_mode.unwrap_or(defaults::INTEL_MODE),
            assurance: self.assurance.unwrap_or_default(),
            state_dir: self.state_dir.unwrap_or_else(|| defaults::STATE_DIR.into()),
            learn: !self.no_learn,
            learn_per_category: self
                .learn_per_category
                .unwrap_or(defaults::LEARN_PER_CATEGORY),
            learn_max_images: self.learn_max_images.unwrap_or(defaults::LEARN_MAX_IMAGES),
            event_budget: self.event_budget.unwrap_or(defaults::EVENT_BUDGET),
            fallback_syscall_hooks: self.fallback_syscall_hooks,
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
        for (key, value) in [
            ("learn_per_category", self.learn_per_category),
            ("learn_max_images", self.learn_max_images),
        ] {
            if value == 0 {
                return Err(ConfigError::LearnLimit { key });
            }
        }
        Ok(())
    }

    /// The container sockets as configured (`None`: that runtime's default, if present).
    pub fn source_sockets(&self) -> SourceSockets {
        SourceSockets {
            docker: self.docker_socket.as_ref().map(PathBuf::from),
            containerd: self.containerd_socket.clone(),
            cri: self.cri_socket.clone(),
            podman: self.podman_socket.clone(),
        }
    }

    /// The node name events carry: configured (or `NODE_NAME`), or the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "unknown".into())
        })
    }
}

/// A configured node name, else a non-empty `NODE_NAME`.
fn node_name_over_env(configured: Option<String>, env: Option<String>) -> Option<String> {
    configured.or_else(|| env.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()))
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
        assert_eq!(c.docker_socket, None, "read if it exists");
        assert_eq!(c.containerd_socket, None);
        assert_eq!(c.container_parents, vec!["docker".to_string()]);
        assert!(!c.host_events);
        assert!(
            !c.fallback_syscall_hooks,
            "syscall tracepoints slow the whole host: opt-in only"
        );
        c.validate().unwrap();
    }

    #[test]
    fn the_syscall_hooks_are_a_key_and_a_flag() {
        let c = AgentConfig::from_toml("fallback_syscall_hooks = true\n").unwrap();
        assert!(c.fallback_syscall_hooks);
        let flags = Cli::parse_from(["x", "--fallback-syscall-hooks"]).options;
        assert!(flags.resolve().unwrap().fallback_syscall_hooks);
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
        assert_eq!(c.docker_socket.as_deref(), Some("/run/d.sock"));
        assert_eq!(
            c.metrics.as_deref(),
            Some("127.0.0.1:9464"),
            "the file fills in"
        );
        assert!(c.pin, "a switch in the file stays on");
        assert_eq!(c.profiles, PathBuf::from(defaults::PROFILES));
        assert_eq!(c.bpffs, PathBuf::from(defaults::BPFFS));
        assert_eq!(c.state_dir, PathBuf::from(defaults::STATE_DIR));
        assert!(c.learn);
    }

    #[test]
    fn several_collectors_as_repeated_flags_or_a_list_in_the_file() {
        let flags = Cli::parse_from([
            "x",
            "--collector",
            "https://a:7443",
            "--collector",
            "https://b:7443",
        ])
        .options;
        let c = flags.resolve().unwrap();
        assert_eq!(
            c.collector.as_deref(),
            Some("https://a:7443,https://b:7443")
        );
        let c = AgentConfig::from_toml("collector = [\"https://a:7443\", \"https://b:7443\"]\n")
            .unwrap();
        assert_eq!(
            c.collector.as_deref(),
            Some("https://a:7443,https://b:7443")
        );
        let c = AgentConfig::from_toml("collector = \"https://a:7443\"\n").unwrap();
        assert_eq!(
            c.collector.as_deref(),
            Some("https://a:7443"),
            "one URL still works"
        );
        let flags = Cli::parse_from(["x", "--collector", "https://c:7443"]).options;
        let file = AgentOptions::from_toml("collector = [\"https://a:7443\"]\n").unwrap();
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(
            c.collector.as_deref(),
            Some("https://c:7443"),
            "flags beat the file"
        );
        assert_eq!(AgentConfig::from_toml("").unwrap().collector, None);
    }

    #[test]
    fn learning_keys_in_the_file_and_as_flags() {
        let c = AgentConfig::from_toml(
            "state_dir = \"/srv/seawall\"\nno_learn = true\nlearn_per_category = 32\n",
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/seawall"));
        assert!(!c.learn);
        assert_eq!(
            (c.learn_per_category, c.learn_max_images),
            (32, defaults::LEARN_MAX_IMAGES)
        );
        let flags = Cli::parse_from(["x", "--learn-max-images", "3"]).options;
        assert_eq!(flags.resolve().unwrap().learn_max_images, 3);
        let err = AgentConfig::from_toml("learn_max_images = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("learn_max_images = 0"), "{err}");
    }

    #[test]
    fn every_runtime_socket_is_a_flag_and_a_key() {
        let file = AgentOptions::from_toml(
            "containerd_socket = \"/run/k3s/containerd/containerd.sock\"\ncri_socket = \"/var/run/crio/crio.sock\"\n",
        )
        .unwrap();
        let flags =
            Cli::parse_from(["x", "--podman-socket", "/run/user/0/podman/podman.sock"]).options;
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(
            c.source_sockets(),
            SourceSockets {
                docker: None,
                containerd: Some("/run/k3s/containerd/containerd.sock".into()),
                cri: Some("/var/run/crio/crio.sock".into()),
                podman: Some("/run/user/0/podman/podman.sock".into()),
            }
        );
    }

    #[test]
    fn the_node_name_comes_from_the_configuration_then_node_name() {
        let env = |v: &str| Some(v.to_string());
        assert_eq!(
            node_name_over_env(Some("set".into()), env("node-1")).as_deref(),
            Some("set")
        );
        assert_eq!(
            node_name_over_env(None, env("node-1")).as_deref(),
            Some("node-1")
        );
        assert_eq!(
            node_name_over_env(None, env(" ")),
            None,
            "empty: the host name"
        );
        assert_eq!(node_name_over_env(None, None), None);
    }

    #[test]
    fn intel_and_assurance_keys() {
        let c = AgentConfig::from_toml(
            "intel_dir = \"/etc/seawall/intel\"\nintel_mode = \"audit\"\n\
             [assurance]\nmode = \"enforce\"\nallow = [\"registry.example:5000/**\"]\n",
        )
        .unwrap();
        assert_eq!(c.intel_dir, Some(PathBuf::from("/etc/seawall/intel")));
        assert_eq!(c.intel_mode, IntelMode::Audit);
        assert_eq!(c.assurance.mode, seawall_intel::AssuranceMode::Enforce);
        assert_eq!(
            c.assurance.allow.as_deref(),
            Some(&["registry.example:5000/**".to_string()][..])
        );
        // With a directory and no mode, listed indicators are refused.
        let c = Cli::parse_from(["x", "--intel-dir", "/d"])
            .options
            .resolve()
            .unwrap();
        assert_eq!(c.intel_mode, IntelMode::Enforce);
        assert_eq!(
            AgentConfig::default().assurance.mode,
            seawall_intel::AssuranceMode::Off
        );
        let err = AgentConfig::from_toml("intel_mode = \"audit\"\n").unwrap_err();
        assert!(err.to_string().contains("intel_dir is not"), "{err}");
        let err = AgentConfig::from_toml("intel_mode = \"block\"\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = AgentConfig::from_toml("[assurance]\nmodes = \"enforce\"\n").unwrap_err();
        assert!(err.to_string().contains("modes"), "{err}");
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
