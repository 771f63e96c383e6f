//! Behavioural profiles: the TOML language operators write, validated and compiled into the typed
//! policy the kernel task turns into BPF map entries.
//!
//! One profile per file in a profiles directory; `profiles/README.md` is the user-facing reference
//! for the syntax and semantics. Everything here is pure userspace and needs no privileges, so
//! `seawall profile check` runs anywhere (CI, a laptop) with the same answers the daemon would give.
//!
//! - [`parse`] walks the TOML with spans, so every problem is reported as `file:line:col`, and all
//!   problems of a file are collected rather than stopping at the first.
//! - [`ProfileSet::load_dir`] is all-or-nothing: a reload with any error leaves the caller holding
//!   its previous set.

mod behaviour;
mod diag;
mod diff;
mod duration;
mod image;
mod learn;
mod net;
mod parse;
mod path_rule;
mod pod;
mod set;

pub use behaviour::{
    is_protectable, BehaviourLimits, Destination, ImageBehaviour, ListenPort, Observed, Seen,
    Transport, UnixSeconds, MAX_KEY_BYTES, PROTECTABLE_READS,
};
pub use diag::{CheckReport, Diagnostic, Position, Severity};
pub use diff::{diff_profiles, Change, ProfileDiff};
pub use duration::{parse_duration, DurationError, HumanDuration};
pub use image::ImagePattern;
pub use learn::{derive_name, learn_profile, LearnError, LearnRequest, LearnedProfile};
pub use net::{NetRule, PortRange, Protocol};
pub use path_rule::{PathGlobs, PathRule};
pub use pod::{NamespacePattern, PodMatch, PodRef, PodSelector};
pub use set::{
    check_path, load_file, load_file_with_warnings, ProfileSet, DEFAULT_PROFILES_DIR,
    DEFAULT_PROFILE_NAME,
};

use std::fmt;
use std::path::PathBuf;

/// What a control does when it sees a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// The control is not applied at all.
    Off,
    /// Violations are reported (`action = "audited"`) but allowed.
    Audit,
    /// Violations are blocked and reported (`action = "blocked"`).
    Enforce,
}

impl Mode {
    /// The spelling used in profiles and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One compiled, validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `[profile] name`; unique within a profile set, `default` for the fallback profile.
    pub name: String,
    /// The file it came from (`<builtin>` for [`ProfileSet::builtin_default`]).
    pub source: PathBuf,
    /// `[profile] description`, free text for humans.
    pub description: Option<String>,
    /// The profile-wide mode: every control inherits it unless it sets its own.
    pub mode: Mode,
    /// Which images this profile applies to.
    pub images: Vec<ImagePattern>,
    /// `[profile] namespaces` / `pod_labels`: which Kubernetes pods it applies to (empty: it
    /// selects by image only).
    pub pods: PodSelector,
    /// Control `drift`.
    pub drift: DriftPolicy,
    /// Controls `exec` and `container_exec`.
    pub exec: ExecPolicy,
    /// Control `file`.
    pub files: FilePolicy,
    /// Control `network`.
    pub network: NetworkPolicy,
    /// Control `intel` (`[intel] mode`); `None` follows the agent's `intel_mode`.
    pub intel: Option<Mode>,
    /// `[profile] enforce_after`: an audit profile that switches itself to enforce after a
    /// period without violations.
    pub enforce_after: Option<Promotion>,
}

impl Profile {
    /// Whether this is the fallback profile for containers no other profile matches.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_PROFILE_NAME
    }

    /// The profile as it is once `enforce_after` has fired: profile mode `enforce`, every control
    /// that inherits the profile's mode enforcing, controls with their own `mode` unchanged, and
    /// no further promotion. `None` when the profile has no `enforce_after`.
    pub fn promoted(&self) -> Option<Profile> {
        let p = self.enforce_after.as_ref()?;
        Some(Profile {
            mode: Mode::Enforce,
            drift: p.drift.clone(),
            exec: p.exec.clone(),
            files: p.files.clone(),
            network: p.network.clone(),
            enforce_after: None,
            ..self.clone()
        })
    }
}

/// `[profile] enforce_after = "7d"`: stay in audit, and enforce once this long has passed with no
/// violation (any violation restarts the clock). Keeping the clock is the agent's job.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// How long the profile must run without a violation.
    pub after: std::time::Duration,
    // The controls as they are once promoted. Inheritance of the profile's mode is resolved while
    // parsing, so they are parsed a second time with the profile's mode as `enforce`.
    drift: DriftPolicy,
    exec: ExecPolicy,
    files: FilePolicy,
    network: NetworkPolicy,
}

/// Control `drift`: executing a file that was not in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftPolicy {
    /// `Off` when `prevent` is false or the `[drift]` table is absent.
    pub mode: Mode,
    /// Paths that may be executed even when they are drift (e.g. a JIT cache under `/tmp`).
    pub allow: Vec<PathRule>,
    /// `allow_anonymous_exec`: code a process writes into its own memory may be made
    /// executable (what a JIT does). `false` (the default) keeps W^X: anonymous or written
    /// memory never becomes executable. Enforced by seawall-micro; the host agent does not
    /// judge anonymous memory.
    pub allow_anonymous_exec: bool,
}

/// Controls `exec` (allow/deny lists) and `container_exec` (`docker exec` sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPolicy {
    /// Mode of the allow/deny lists.
    pub mode: Mode,
    /// When `Some`, any executable not matching it is a violation.
    pub allow: Option<Vec<PathRule>>,
    /// Always a violation, even when also allowed.
    pub deny: Vec<PathRule>,
    /// Mode for processes entered with `docker exec`: the exec mode when
    /// `block_container_exec = true`, else `Off`.
    pub container_exec: Mode,
}

/// Control `file`: opens of paths as seen inside the container.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Mode of all three lists.
    pub mode: Mode,
    /// No open at all.
    pub deny: PathGlobs,
    /// No write, create, truncate, unlink or rename.
    pub read_only: PathGlobs,
    /// Writes are reported (never blocked).
    pub monitor: PathGlobs,
}

/// Control `network`: outbound connections, listening ports and raw sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Mode of every network rule.
    pub mode: Mode,
    /// When `Some`, egress not matching any of these is a violation.
    pub egress_allow: Option<Vec<NetRule>>,
    /// Always a violation; wins over `egress_allow`.
    pub egress_deny: Vec<NetRule>,
    /// When `Some`, binding a port outside these ranges is a violation.
    pub listen_allow: Option<Vec<PortRange>>,
    /// No `AF_PACKET` or `SOCK_RAW` sockets.
    pub block_raw_sockets: bool,
}

#[cfg(test)]
mod tests;
