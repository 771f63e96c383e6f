//! What the agent says about itself: the startup summary on stderr and the status snapshot
//! behind `seawall status` and the containers gauge.

use super::Daemon;
use crate::{
    kernel::{
        backends::Backends,
        programs::{self, AttachScope, Backend, Control},
    },
    ops::status::{ContainerStatus, SourceStatus},
    runtime::Runtime,
};

/// The startup summary on stderr, read from the program table and the probe.
pub(super) fn print(b: &Backends, d: &Daemon) {
    let mut text = String::from("seawall agent ready\n  kernel programs:\n");
    for program in programs::PROGRAMS {
        let scope = match program.scope {
            AttachScope::Global => "global",
            AttachScope::ContainerParent => "at each container parent cgroup",
        };
        let state = match (program.backend, &b.lsm_unavailable) {
            (Backend::BpfLsm, Some(_)) => "not loaded",
            (Backend::SyscallSignal, _) if !b.syscall_hooks.attached() => "not loaded (opt-in)",
            _ => "attached",
        };
        text.push_str(&format!(
            "    {:<22} {:<32} {scope}, {state}\n",
            program.name,
            program.hook.to_string()
        ));
    }
    for control in Control::ALL {
        text.push_str(&format!(
            "  {:<15} {}\n",
            format!("{control}:"),
            b.describe(control)
        ));
    }
    text.push_str(&format!(
        "  BPF LSM:        {}\n  profiles: {} ({} loaded)\n",
        b.lsm_unavailable.as_deref().unwrap_or("in use"),
        d.cfg.profiles.display(),
        d.profiles.profiles().count(),
    ));
    text.push_str("  container parents:");
    for p in &d.parents.parents {
        text.push_str(&format!(" {} ({:?})", p.dir.display(), p.kind));
    }
    text.push_str("\n  container sources:");
    let sources = d.source_statuses();
    if sources.is_empty() {
        text.push_str(" none found (containers get the default profile, no metadata)");
    }
    for s in sources {
        text.push_str(&format!("\n    {:<11} {} {}", s.runtime, s.socket, s.state));
    }
    text.push_str(&format!("\n  containers monitored: {}", d.containers.len()));
    eprintln!("{text}");
}

impl Daemon {
    /// Each source, its state and how many of the table's containers it reported.
    pub(super) fn source_statuses(&self) -> Vec<SourceStatus> {
        self.sources
            .iter()
            .map(|(source, state)| SourceStatus {
                runtime: source.runtime.to_string(),
                socket: source.socket.display().to_string(),
                state: match state {
                    Some(true) => "listed",
                    Some(false) => "unreachable",
                    None => "connecting",
                }
                .into(),
                containers: self
                    .containers
                    .iter()
                    .filter(|(_, c)| c.source.as_ref() == Some(source))
                    .count(),
            })
            .collect()
    }

    /// Brings the containers in `seawall status` and the containers gauge up to date.
    pub(super) fn refresh_status(&self) {
        self.metrics.set_containers(self.containers.len() as u64);
        if let Ok(mut s) = self.status.lock() {
            s.containers = self
                .containers
                .iter()
                .map(|(cg, c)| ContainerStatus {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    runtime: c.runtime.map(Runtime::as_str).unwrap_or("").into(),
                    pod: c
                        .kubernetes
                        .as_ref()
                        .map(|k| format!("{}/{}", k.namespace, k.pod))
                        .unwrap_or_default(),
                    cgroup_id: *cg,
                    profile: c.profile.clone(),
                    modes: self
                        .profiles
                        .profiles()
                        .find(|p| p.name == c.profile)
                        .map(|p| {
                            format!(
                                "drift={} exec={} container_exec={} file={} network={}",
                                p.drift.mode,
                                p.exec.mode,
                                p.exec.container_exec,
                                p.files.mode,
                                p.network.mode
                            )
                        })
                        .unwrap_or_default(),
                })
                .collect();
            s.containers.sort_by(|a, b| a.name.cmp(&b.name));
            s.profiles = self.profiles.profiles().map(|p| p.name.clone()).collect();
            s.sources = self.source_statuses();
        }
    }
}
