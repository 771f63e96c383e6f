//! What `seawall status` shows: a snapshot the daemon keeps current.

use serde::{Deserialize, Serialize};

use crate::kernel::{backends::Backends, programs::Control};

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
    #[serde(default)]
    pub intel: Option<super::intel::IntelView>,
    #[serde(default)]
    pub assurance: Option<super::intel::AssuranceView>,
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
