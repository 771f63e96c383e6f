//! What `seawall status` shows: a snapshot the daemon keeps current.

use serde::{Deserialize, Serialize};

use crate::{
    kernel::{backends::Backends, maps::MapUsage, programs::Control},
    learn::promotion::PromotionStatus,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub node: String,
    pub kernel: String,
    pub started: String,
    pub backends: Option<Backends>,
    pub profiles: Vec<String>,
    /// The container engines the agent reads, and whether each answers.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    pub containers: Vec<ContainerStatus>,
    pub ringbuf_drops: u64,
    pub kills: u64,
    pub denies: u64,
    pub collector: Option<String>,
    #[serde(default)]
    pub intel: Option<super::intel::IntelView>,
    #[serde(default)]
    pub assurance: Option<super::intel::AssuranceView>,
    /// `enforce_after` clocks of the profiles in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<PromotionStatus>,
    /// Per control and way around it: enforced, reported only or not visible on this host's
    /// backend (`coverage.rs`).
    #[serde(default)]
    pub coverage: Vec<crate::kernel::coverage::CoverageLine>,
    /// What the agent lost or held back, and how full the kernel maps are.
    #[serde(default)]
    pub losses: Losses,
}

/// Everything that did not go out one by one, counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Losses {
    /// Kernel records an earlier agent read and never wrote out (counted at start).
    pub kernel_records_lost: u64,
    /// Allowed kernel records held back by a container's budget or a filling ring.
    pub kernel_records_suppressed: u64,
    /// Execs held right now (stopped for the agent's decision).
    pub held_execs: u64,
    /// Failed insertions into full kernel maps: held execs, process origins, container inits.
    pub held_map_full: u64,
    pub origin_map_full: u64,
    pub init_map_full: u64,
    /// fanotify events answered but not reported (the pipeline was full).
    pub file_events_unreported: u64,
    /// fanotify read or poll errors recovered from.
    pub file_read_errors: u64,
    /// Kernel map entries of containers that died unseen, removed.
    pub stale_container_entries_removed: u64,
    /// How full the kernel maps are (refreshed every few seconds).
    pub maps: Vec<MapUsage>,
}

/// One container engine the agent reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `docker`, `containerd`, `cri-o`, `podman`.
    pub runtime: String,
    pub socket: String,
    /// `listed` (it answered and listed its containers), `unreachable`, or `connecting`.
    pub state: String,
    /// Containers in the table that it reported.
    pub containers: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub image: String,
    /// The engine that runs it, when known.
    #[serde(default)]
    pub runtime: String,
    /// `namespace/pod` for a pod's container.
    #[serde(default)]
    pub pod: String,
    pub cgroup_id: u64,
    pub profile: String,
    pub modes: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seawall {} on {} (kernel {}), up since {}",
            self.version, self.node, self.kernel, self.started
        )?;
        if let Some(b) = &self.backends {
            writeln!(f, "backends:")?;
            for control in Control::ALL {
                writeln!(f, "  {:<15} {}", format!("{control}:"), b.describe(control))?;
            }
            writeln!(
                f,
                "  BPF LSM:        {}",
                b.lsm_unavailable.as_deref().unwrap_or("in use")
            )?;
        }
        if !self.coverage.is_empty() {
            writeln!(
                f,
                "coverage on this backend (control, way around it: what holds):"
            )?;
            for c in &self.coverage {
                writeln!(
                    f,
                    "  {:<18} {:<30} {:<14} {}{}",
                    c.control,
                    c.class,
                    c.coverage.as_str(),
                    c.how,
                    c.closes
                        .as_deref()
                        .map(|x| format!(" [closed by {x}]"))
                        .unwrap_or_default()
                )?;
            }
        }
        writeln!(f, "profiles: {}", self.profiles.join(", "))?;
        if let Some(intel) = &self.intel {
            write!(f, "{intel}")?;
        }
        if let Some(assurance) = &self.assurance {
            write!(f, "{assurance}")?;
        }
        writeln!(
            f,
            "ring buffer drops: {}  kills: {}  denies: {}",
            self.ringbuf_drops, self.kills, self.denies
        )?;
        let l = &self.losses;
        writeln!(
            f,
            "losses: kernel records lost {}  suppressed {}  held execs {}  full maps (held/origin/init) {}/{}/{}  file events unreported {}",
            l.kernel_records_lost,
            l.kernel_records_suppressed,
            l.held_execs,
            l.held_map_full,
            l.origin_map_full,
            l.init_map_full,
            l.file_events_unreported
        )?;
        for m in &l.maps {
            writeln!(f, "  map {:<16} {}/{}", m.name, m.entries, m.capacity)?;
        }
        writeln!(
            f,
            "collector: {}",
            self.collector.as_deref().unwrap_or("not configured")
        )?;
        for p in &self.promotions {
            match (&p.promoted_at, &p.promotes_at) {
                (Some(at), _) => writeln!(
                    f,
                    "promotion: {} enforcing since {at} (enforce_after = {}, no violation since {})",
                    p.profile, p.enforce_after, p.since
                )?,
                (None, at) => writeln!(
                    f,
                    "promotion: {} audits until {} unless a violation restarts the clock (enforce_after = {}, clock since {}, {} restarts)",
                    p.profile,
                    at.as_deref().unwrap_or("?"),
                    p.enforce_after,
                    p.since,
                    p.violations
                )?,
            }
        }
        writeln!(f, "container sources ({}):", self.sources.len())?;
        for s in &self.sources {
            writeln!(
                f,
                "  {:<11} {:<40} {} ({} containers)",
                s.runtime, s.socket, s.state, s.containers
            )?;
        }
        writeln!(f, "containers ({}):", self.containers.len())?;
        for c in &self.containers {
            let pod = if c.pod.is_empty() {
                String::new()
            } else {
                format!(" pod={}", c.pod)
            };
            writeln!(
                f,
                "  {:<20} {:<12} {:<30} runtime={}{pod} profile={} {}",
                c.name,
                &c.id[..c.id.len().min(12)],
                c.image,
                if c.runtime.is_empty() {
                    "?"
                } else {
                    &c.runtime
                },
                c.profile,
                c.modes
            )?;
        }
        Ok(())
    }
}
