//! Threat intelligence and image assurance, wired into the daemon: the feeds loaded at start and
//! polled for changes (a rejected reload keeps the indicators in force), each profile's intel
//! mode compiled into its policy, the listed networks written to the kernel's tries, a new
//! container's image judged before its policy is written, held execs judged by assurance and
//! by the hash of their file, and the events and status of both controls.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::AsFd,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use agent_common::{
    ACTION_AUDITED, ACTION_BLOCKED, CONTROL_ASSURANCE, CONTROL_INTEL, MODE_AUDIT, MODE_ENFORCE,
};
use seawall_intel::{AssuranceError, AssurancePolicy, IndicatorKind, IntelSet};
use seawall_profile::{Mode, Profile, ProfileSet};
use seawall_proto::event::{Action, Event, Intel, Severity};
use seawall_service::ErrorChain;
use tokio::sync::mpsc;

use super::{config::AgentConfig, Daemon};
use crate::{
    intel::{
        assurance::AssuranceGate,
        exec::{ExecIntel, ListedExec},
        feeds::{FeedsError, IntelFeeds, Reload},
        profile_mode,
    },
    kernel::{
        decode::{Header, KernelEvent},
        programs::{self, Hook, SockAddrHook},
    },
    ops::intel::{AssuranceView, IntelView, RefusedContainer},
    output::intel_event,
    policy::compile::CompiledSet,
    runtime::table::ContainerInfo,
};

/// How often the intel directory is looked at for changes.
const FEEDS_POLL: Duration = Duration::from_secs(2);

/// Why intel or assurance cannot start (the agent does not start without them: there is no
/// previous policy to keep).
#[derive(Debug, thiserror::Error)]
pub enum IntelStartError {
    #[error("intel feeds in {dir}")]
    Feeds {
        dir: PathBuf,
        #[source]
        source: Box<FeedsError>,
    },
    #[error("image assurance")]
    Assurance(#[source] AssuranceError),
}

/// A container image assurance refused.
struct Refused {
    mode: Mode,
    rule: String,
    row: RefusedContainer,
}

/// The daemon's intel and assurance state.
pub(super) struct NodeIntel {
    feeds: Option<IntelFeeds>,
    /// The agent's `intel_mode`; `None` without an intel directory.
    agent_mode: Option<Mode>,
    /// What executed files are judged against, shared with the fanotify thread.
    pub(super) exec: ExecIntel,
    records: Option<mpsc::Receiver<ListedExec>>,
    gate: Option<AssuranceGate>,
    scan_reports: usize,
    refused: HashMap<u64, Refused>,
    /// Hash verdicts on held execs, by pid, until their event is built.
    held_hits: HashMap<u32, Intel>,
    next_poll: Instant,
    /// How each verdict is taken here, for status.
    addresses_backend: String,
    hashes_backend: String,
    assurance_backend: String,
}

impl NodeIntel {
    /// Loads the feeds and the assurance policy (with its scan reports).
    pub(super) fn load(cfg: &AgentConfig) -> Result<NodeIntel, IntelStartError> {
        let feeds = cfg
            .intel_dir
            .as_ref()
            .map(|dir| {
                IntelFeeds::load(dir).map_err(|source| IntelStartError::Feeds {
                    dir: dir.clone(),
                    source: Box::new(source),
                })
            })
            .transpose()?;
        let policy =
            AssurancePolicy::from_config(&cfg.assurance).map_err(IntelStartError::Assurance)?;
        let (exec, records) = ExecIntel::new();
        if let Some(f) = &feeds {
            exec.set_indicators(f.current());
        }
        Ok(NodeIntel {
            agent_mode: feeds.as_ref().map(|_| cfg.intel_mode.into()),
            feeds,
            exec,
            records: Some(records),
            scan_reports: policy.as_ref().map_or(0, |p| p.report_count()),
            gate: policy.map(AssuranceGate::new),
            refused: HashMap::new(),
            held_hits: HashMap::new(),
            next_poll: Instant::now() + FEEDS_POLL,
            addresses_backend: String::new(),
            hashes_backend: String::new(),
            assurance_backend: String::new(),
        })
    }

    /// The listed execs the fanotify thread reports (taken once).
    pub(super) fn take_records(&mut self) -> mpsc::Receiver<ListedExec> {
        self.records.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Says how each verdict is taken, from what loaded.
    pub(super) fn set_backends(&mut self, lsm: bool, fanotify: Option<&str>) {
        let sock_addr: Vec<&str> = programs::PROGRAMS
            .iter()
            .filter(|p| {
                matches!(
                    p.hook,
                    Hook::CgroupSockAddr(
                        SockAddrHook::Connect4
                            | SockAddrHook::Connect6
                            | SockAddrHook::Sendmsg4
                            | SockAddrHook::Sendmsg6
                    )
                )
            })
            .map(|p| p.name)
            .collect();
        let packets: Vec<&str> = programs::PROGRAMS
            .iter()
            .filter(|p| p.hook == Hook::CgroupSkbEgress)
            .map(|p| p.name)
            .collect();
        self.addresses_backend = format!(
            "LPM tries checked by cgroup {} at the container parent cgroup (EPERM; an IPv4-mapped \
             IPv6 destination is judged as IPv4), and on every other packet (raw and ICMP \
             sockets, other protocols) by {} (cgroup_skb egress: dropped, EPERM)",
            sock_addr.join(", "),
            packets.join(", ")
        );
        let held = "a container's first exec held before its marks: /proc/<pid>/exe, SIGKILL";
        self.hashes_backend = match fanotify {
            None => format!(
                "fanotify exec permission on every mount of the container it marks (EPERM before \
                 the new image exists); {held}"
            ),
            Some(why) => format!("only {held} (fanotify unavailable: {why})"),
        };
        self.assurance_backend = if lsm {
            "BPF LSM bprm_check_security: every exec EPERM".into()
        } else {
            "sched_process_exec + SIGKILL before the first instruction of every exec".into()
        };
    }

    /// Puts each profile's intel mode into its compiled policy.
    pub(super) fn set_policy_modes(&self, compiled: &mut CompiledSet, set: &ProfileSet) {
        for p in set.profiles() {
            if let Some(c) = compiled.by_name.get_mut(&p.name) {
                c.policy.intel_mode = match profile_mode(p, self.agent_mode) {
                    Mode::Off => 0,
                    Mode::Audit => MODE_AUDIT,
                    Mode::Enforce => MODE_ENFORCE,
                };
            }
        }
    }

    fn current(&self) -> Arc<IntelSet> {
        self.feeds.as_ref().map(|f| f.current()).unwrap_or_default()
    }

    fn view(&self) -> Option<IntelView> {
        let f = self.feeds.as_ref()?;
        Some(IntelView {
            dir: f.dir().display().to_string(),
            mode: self.agent_mode.unwrap_or(Mode::Off).to_string(),
            addresses: self.addresses_backend.clone(),
            hashes: self.hashes_backend.clone(),
            error: f.last_error().map(str::to_string),
            files_hashed: self.exec.files_hashed(),
            loaded: f.current().status(),
        })
    }

    fn assurance_view(&self) -> Option<AssuranceView> {
        let gate = self.gate.as_ref()?;
        let mut refused: Vec<RefusedContainer> =
            self.refused.values().map(|r| r.row.clone()).collect();
        refused.sort_by(|a, b| a.name.cmp(&b.name));
        Some(AssuranceView {
            mode: gate.mode().to_string(),
            backend: self.assurance_backend.clone(),
            scan_reports: self.scan_reports,
            refused,
        })
    }
}

fn summary(set: &IntelSet) -> String {
    format!(
        "{} sha256, {} ip, {} cidr",
        set.count(IndicatorKind::Sha256),
        set.count(IndicatorKind::Ip),
        set.count(IndicatorKind::Cidr)
    )
}

impl Daemon {
    /// At start, before any container is registered: the tries hold exactly the listed
    /// networks (maps adopted from an earlier agent may hold its own).
    pub(super) async fn start_intel(&mut self) -> Result<(), super::DaemonError> {
        if self.intel.feeds.is_some() {
            let set = self.intel.current();
            self.kernel.sync_intel_nets(set.nets().collect()).await?;
            tracing::info!(indicators = %summary(&set), "intel feeds in force");
        }
        self.refresh_intel_status();
        Ok(())
    }

    /// Intel and assurance for a container about to get its policy: its intel mode for
    /// executed files, and its image judged — a refusal in enforce mode is in the kernel
    /// before the policy is, so not one exec of it runs.
    pub(super) async fn intel_register(&mut self, cgroup_id: u64, info: &ContainerInfo) {
        let profile: &Profile = self
            .profiles
            .profiles()
            .find(|p| p.name == info.profile)
            .unwrap_or_else(|| self.profiles.default_profile());
        let mode = profile_mode(profile, self.intel.agent_mode);
        self.intel.exec.set_mode(cgroup_id, mode);
        let Some(gate) = self.intel.gate.as_mut() else {
            return;
        };
        let mut digests: Vec<&str> = info.image_digests.iter().map(String::as_str).collect();
        if !info.image_id.is_empty() {
            digests.push(&info.image_id);
        }
        let Some(j) = gate.judge(&info.id, &info.image, &digests) else {
            if self.intel.refused.remove(&cgroup_id).is_some() {
                // A fuller answer from the engine approved what was refused on less.
                if let Err(e) = self.kernel.set_assurance_refused(cgroup_id, false).await {
                    tracing::error!(container_id = %info.id, error = %ErrorChain(&e), "lifting an assurance refusal failed");
                }
                self.refresh_intel_status();
            }
            return;
        };
        let rule = j.refusal.to_string();
        let action = match j.mode {
            Mode::Enforce => Action::Blocked,
            _ => Action::Audited,
        };
        if j.mode == Mode::Enforce {
            if let Err(e) = self.kernel.set_assurance_refused(cgroup_id, true).await {
                tracing::error!(container_id = %info.id, error = %ErrorChain(&e), "writing an assurance refusal failed: the container is not stopped");
            }
        }
        tracing::warn!(container_id = %info.id, image = %info.image, %rule, mode = %j.mode, "image not approved");
        self.intel.refused.insert(
            cgroup_id,
            Refused {
                mode: j.mode,
                rule: rule.clone(),
                row: RefusedContainer {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    image: info.image.clone(),
                    image_id: info.image_id.clone(),
                    rule: rule.clone(),
                    action: action.to_string(),
                },
            },
        );
        if j.first {
            let ev = intel_event::refused_container(&mut self.events, info, action, &rule);
            self.emit(ev);
        }
        self.refresh_intel_status();
    }

    /// A container that is gone.
    pub(super) fn intel_forget(&mut self, cgroup_id: u64, container_id: &str) {
        self.intel.exec.set_mode(cgroup_id, Mode::Off);
        if let Some(gate) = self.intel.gate.as_mut() {
            gate.forget(container_id);
        }
        if self.intel.refused.remove(&cgroup_id).is_some() {
            self.refresh_intel_status();
        }
    }

    /// The verdict on an exec the kernel held, after the profile's (`control`, `action`):
    /// nothing of a refused container runs; a listed file is refused (enforce) even where the
    /// profile allows it, or reported (audit) where the profile does not already block it.
    pub(super) fn held_exec_intel(
        &mut self,
        header: &Header,
        control: u32,
        action: u32,
    ) -> (u32, u32) {
        let cg = header.container_cgroup_id;
        if self
            .intel
            .refused
            .get(&cg)
            .is_some_and(|r| r.mode == Mode::Enforce)
        {
            return (CONTROL_ASSURANCE, ACTION_BLOCKED);
        }
        if action == ACTION_BLOCKED || self.intel.exec.mode(cg) == Mode::Off {
            return (control, action);
        }
        // Stopped before its first instruction: its executable is the file to judge.
        let exe = match File::open(format!("/proc/{}/exe", header.pid)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(pid = header.pid, error = %e, "opening a held process's executable failed: not judged by hash");
                return (control, action);
            }
        };
        match self.intel.exec.judge(cg, exe.as_fd()) {
            Some((verdict, intel)) => {
                self.intel.held_hits.insert(header.pid, intel);
                let verdict = if verdict == Action::Blocked {
                    ACTION_BLOCKED
                } else {
                    ACTION_AUDITED
                };
                (CONTROL_INTEL, verdict)
            }
            None => (control, action),
        }
    }

    /// What only intel and assurance know about a kernel event: the listing that matched,
    /// the assurance rule.
    pub(super) fn annotate_intel(&mut self, ev: &KernelEvent, out: &mut Event) {
        match (ev, ev.header().control) {
            (KernelEvent::Net { addr, .. }, CONTROL_INTEL) => {
                intel_event::network(out, *addr, &self.intel.current());
            }
            (KernelEvent::Exec { header, .. }, CONTROL_INTEL) => {
                if let Some(intel) = self.intel.held_hits.remove(&header.pid) {
                    intel_event::held_exec(out, intel);
                }
            }
            (KernelEvent::Exec { header, .. }, CONTROL_ASSURANCE) => {
                let cg = header.container_cgroup_id;
                let rule = self
                    .intel
                    .refused
                    .get(&cg)
                    .map_or("refused by image assurance", |r| r.rule.as_str());
                intel_event::assurance_exec(out, self.containers.get(cg), rule);
            }
            _ => {}
        }
    }

    /// An exec of a listed file the fanotify sensor answered.
    pub(super) fn on_listed_exec(&mut self, r: ListedExec) {
        let ev = intel_event::listed_exec(&r, &mut self.events, &self.containers, &self.procs);
        self.emit(ev);
    }

    /// Reloads the feeds when the directory changed (at most every [`FEEDS_POLL`]).
    pub(super) async fn poll_intel(&mut self) {
        if Instant::now() < self.intel.next_poll {
            return;
        }
        self.intel.next_poll = Instant::now() + FEEDS_POLL;
        let Some(feeds) = self.intel.feeds.as_mut() else {
            return;
        };
        let dir = feeds.dir().display().to_string();
        let old_hashes = feeds.current().hashes().count();
        match feeds.poll() {
            None => {}
            Some(Reload::Applied(changes)) => {
                let set = feeds.current();
                let (added, removed) = (changes.add.len(), changes.remove.len());
                if let Err(e) = self
                    .kernel
                    .apply_intel_nets(changes.add, changes.remove)
                    .await
                {
                    let reason = ErrorChain(&e).to_string();
                    tracing::error!(error = %reason, "writing the reloaded intel networks failed");
                    self.agent_event(
                        Action::Allowed,
                        Severity::High,
                        format!("intel feeds reload: writing the networks to the kernel failed: {reason}"),
                    );
                }
                self.intel.exec.set_indicators(set.clone());
                if old_hashes > 0 || set.hashes().next().is_some() {
                    // Cached "allowed" answers of the fanotify sensor were given under the
                    // previous hashes: registering the containers again flushes them.
                    self.reregister_all().await;
                }
                tracing::info!(%dir, indicators = %summary(&set), added, removed, "intel feeds reloaded");
                self.agent_event(
                    Action::Allowed,
                    Severity::Info,
                    format!(
                        "intel feeds reloaded from {dir}: {} ({added} networks added, {removed} removed)",
                        summary(&set)
                    ),
                );
            }
            Some(Reload::Rejected(e)) => {
                let reason = ErrorChain(&e).to_string();
                tracing::error!(%dir, error = %reason, "invalid intel feeds; the previous indicators stay");
                self.agent_event(
                    Action::Allowed,
                    Severity::High,
                    format!("intel feeds reload rejected, previous indicators stay: {reason}"),
                );
            }
        }
        self.refresh_intel_status();
    }

    /// The intel and assurance sections of `seawall status`.
    pub(super) fn refresh_intel_status(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.intel = self.intel.view();
            s.assurance = self.intel.assurance_view();
        }
    }
}
