//! What `seawall status` shows: a snapshot the daemon keeps current.

use serde::{Deserialize, Serialize};

use crate::kernel::{backends::Backends, maps::MapUsage, programs::Control};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub node: String,
    pub kernel: String,
    pub started: String,
    pub backends: Option<Backends>,
    pub profiles: Vec<String>,
    pub containers: Vec<ContainerStatus>,
    pub ringbuf_drops: u64,
    pub kills: u64,
    pub denies: u64,
    pub collector: Option<String>,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub image: String,
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
        writeln!(f, "profiles: {}", self.profiles.join(", "))?;
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
        writeln!(f, "containers ({}):", self.containers.len())?;
        for c in &self.containers {
            writeln!(
                f,
                "  {:<20} {:<12} {:<30} profile={} {}",
                c.name,
                &c.id[..c.id.len().min(12)],
                c.image,
                c.profile,
                c.modes
            )?;
        }
        Ok(())
    }
}
