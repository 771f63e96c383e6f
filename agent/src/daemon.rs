//! `seawall agent`: wires the kernel programs, the container source, the profiles and the sinks
//! together and runs the event pipeline until shutdown.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use agent_common::{ORIGIN_EXEC_SESSION, ORIGIN_INIT};
use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use futures_util::StreamExt;
use seawall_proto::event::{Action, Event, Kind, Severity};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::{
    cgroupfs,
    config::AgentConfig,
    containers::{ContainerInfo, ContainerTable},
    decode::{self, KernelEvent},
    docker::{DockerSource, Lifecycle},
    enrich::Enricher,
    kernel::{KernelHandle, KernelState},
    loader::{self, Backends, LoadOptions},
    metrics::Metrics,
    output::Sinks,
    policy::{self, CompiledSet},
    proctable::{self, ProcessTable},
    profile::ProfileSet,
    status::{ContainerStatus, Status},
};

/// How long an unknown container cgroup is not looked up again.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(5);

/// Loads profiles at start: a missing directory falls back to the built-in default (drift in
/// audit), an invalid one is fatal (there is no previous policy to keep).
fn initial_profiles(dir: &Path) -> anyhow::Result<ProfileSet> {
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "profiles directory not found: using the built-in default profile (drift: audit)");
        return Ok(ProfileSet::builtin_default());
    }
    ProfileSet::load_dir(dir)
        .map_err(|report| anyhow::anyhow!("invalid profiles in {}:\n{report}", dir.display()))
}

/// Newest modification time in the profiles directory (reload trigger).
fn profiles_stamp(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    Some(newest)
}

struct Pipeline {
    cfg: AgentConfig,
    cgroup_root: PathBuf,
    parents: Vec<(PathBuf, u64)>,
    kernel: KernelHandle,
    docker: Option<DockerSource>,
    profiles: ProfileSet,
    compiled: CompiledSet,
    next_profile_id: u32,
    containers: ContainerTable,
    procs: ProcessTable,
    enricher: Enricher,
    sinks: Sinks,
    unresolved: HashMap<u64, Instant>,
    /// Containers the engine reported created but whose cgroup does not exist yet: inspected
    /// ahead, so the policy is written the moment the cgroup appears.
    created: HashMap<String, ContainerInfo>,
    drops_seen: u64,
    status: Arc<Mutex<Status>>,
    files: Option<crate::fanotify::FileGuard>,
    /// Whether the BPF LSM programs are attached (then the kernel enforces file rules on the
    /// inode and no mounts are needed).
    lsm_active: bool,
    /// Containers prepared at their first exec (or at once, when already running): the pid
    /// whose mount namespace was used, and the kernel-enforced mounts made there.
    prepared: HashMap<u64, (u32, Vec<crate::fanotify::enforced::PlannedMount>)>,
    delivery: Option<crate::delivery::Delivery>,
    /// The agent's own container cgroup when it runs as a container: never policed.
    own_cgroup: Option<u64>,
}

impl Pipeline {
    fn emit(&mut self, ev: Event) {
        self.sinks.emit(&ev);
    }

    fn agent_event(&mut self, action: Action, severity: Severity, message: String) {
        let ev = self
            .enricher
            .event(Kind::Agent, action, "agent", severity, message);
        self.emit(ev);
    }

    /// The container's cgroup directory from a cgroup path (`/docker/<id>/sub` → `<root>/docker/<id>`).
    fn container_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        let full = self.cgroup_root.join(cgroup_path.trim_start_matches('/'));
        for (parent, _) in &self.parents {
            if let Ok(rest) = full.strip_prefix(parent) {
                let first = rest.components().next()?;
                return Some(parent.join(first));
            }
        }
        None
    }

    /// Applies the matching profile to a container and records it in the table.
    async fn register(&mut self, cgroup_id: u64, dir: &Path, mut info: ContainerInfo) {
        if Some(cgroup_id) == self.own_cgroup {
            tracing::info!(container_id = %info.id, "the agent's own container is exempt from policy");
            return;
        }
        let digest = info
            .image_digests
            .iter()
            .find_map(|d| d.split('@').nth(1))
            .map(str::to_string);
        let profile = self
            .profiles
            .for_image(
                &info.image,
                digest.as_deref().or(Some(info.image_id.as_str())),
            )
            .name
            .clone();
        let mut policy = self
            .compiled
            .by_name
            .get(&profile)
            .map(|c| c.policy)
            .unwrap_or_else(|| self.compiled.default_policy());
        info.profile = profile.clone();
        let chosen = self.profile_named(&profile).clone();
        if self.needs_preparing(&chosen) {
            // Its mounts are marked and its file rules mounted at its first exec, which the
            // kernel holds until then.
            policy.rules |= agent_common::RULES_HOLD_FIRST_EXEC;
        }
        if info.storage_driver != "overlay2" && !info.storage_driver.is_empty() {
            tracing::warn!(container_id = %info.id, driver = %info.storage_driver, "storage driver is not overlay2: drift and exec path rules cannot be evaluated for this container");
        }
        let _ = dir;
        match self
            .kernel
            .call(move |k| k.set_container(cgroup_id, policy))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::error!(container_id = %info.id, error = %e, "applying the container's policy failed");
            }
        }
        if info.init_pid != 0 {
            self.seed_processes(cgroup_id, &info).await;
        }
        if let Some(files) = &mut self.files {
            files.prepare(cgroup_id, &chosen);
        }
        // Running already (or prepared before, and this is a reload): prepare it now.
        let pid = self
            .prepared
            .get(&cgroup_id)
            .map(|(pid, _)| *pid)
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .or((info.init_pid != 0).then_some(info.init_pid));
        if let Some(pid) = pid {
            self.prepare_container(cgroup_id, pid, &chosen);
        }
        tracing::info!(container_id = %info.id, name = %info.name, image = %info.image, cgroup_id, profile = %profile, "monitoring container");
        let first_time = self.containers.get(cgroup_id).is_none();
        if !self.containers.upsert(cgroup_id, info.clone()) {
            tracing::error!(container_id = %info.id, "container table full: events of this container lack its metadata");
        }
        if first_time {
            let mut ev = self.enricher.event(
                Kind::Container,
                Action::Allowed,
                "lifecycle",
                Severity::Info,
                format!(
                    "monitoring container {} ({}) with profile {profile}",
                    info.name, info.image
                ),
            );
            ev.container = Some(info.to_event());
            self.emit(ev);
        }
        self.refresh_status();
    }

    /// The profile called `name` (the default one when there is none).
    fn profile_named(&self, name: &str) -> &crate::profile::Profile {
        self.profiles
            .profiles()
            .find(|p| p.name == name)
            .unwrap_or_else(|| self.profiles.default_profile())
    }

    /// Whether a container under `profile` must be prepared at its first exec: when fanotify
    /// watches it, or (on the fallback) its file rules become kernel-enforced mounts.
    fn needs_preparing(&self, profile: &crate::profile::Profile) -> bool {
        use crate::{fanotify::enforced, profile::Mode};
        self.files.as_ref().is_some_and(|f| f.needs(profile))
            || (!self.lsm_active
                && !enforced::plan(&profile.files, profile.drift.mode == Mode::Enforce).is_empty())
    }

    /// Inside the mount namespace of `pid` (a process of the container): makes the
    /// kernel-enforced mounts of its file rules (removing those a reload dropped), then marks
    /// every mount for fanotify, the new ones included.
    fn prepare_container(&mut self, cgroup_id: u64, pid: u32, profile: &crate::profile::Profile) {
        use crate::{fanotify::enforced, profile::Mode};
        let mut made = Vec::new();
        if !self.lsm_active {
            let plan = enforced::plan(&profile.files, profile.drift.mode == Mode::Enforce);
            let old = self
                .prepared
                .remove(&cgroup_id)
                .map(|(_, m)| m)
                .unwrap_or_default();
            let stale: Vec<_> = old.iter().filter(|m| !plan.contains(m)).cloned().collect();
            if let Err(e) = enforced::remove(pid, &stale) {
                tracing::warn!(container_cgroup_id = cgroup_id, error = %e, "removing mounts of dropped file rules failed");
            }
            made.extend(old.into_iter().filter(|m| plan.contains(m)));
            let new: Vec<_> = plan.iter().filter(|m| !made.contains(m)).cloned().collect();
            match enforced::apply(pid, &new) {
                Ok(applied) => {
                    if !applied.made.is_empty() {
                        tracing::info!(
                            container_cgroup_id = cgroup_id,
                            mounts = applied.made.len(),
                            missing = applied.missing.len(),
                            "file rules kernel-enforced by mounts in the container"
                        );
                    }
                    made.extend(applied.made);
                }
                Err(e) => {
                    tracing::error!(container_cgroup_id = cgroup_id, error = %e, "making the container's file rules kernel-enforced failed: fanotify still decides its opens");
                    self.agent_event(
                        Action::Allowed,
                        Severity::High,
                        format!("file rules of container cgroup {cgroup_id} are not kernel-enforced: {e}"),
                    );
                }
            }
        }
        let read_only: Vec<Vec<u8>> = made
            .iter()
            .filter(|m| m.kind == enforced::MountKind::ReadOnly)
            .map(|m| m.path.as_bytes().to_vec())
            .collect();
        self.prepared.insert(cgroup_id, (pid, made));
        if let Some(files) = &mut self.files {
            if let Err(e) = files.watch_mounts(cgroup_id, pid, &read_only) {
                tracing::warn!(container_cgroup_id = cgroup_id, error = %e, "file controls unavailable for this container");
            }
        }
    }

    /// Seeds the process table and the processes' origins of a container that was already
    /// running: descendants of its init vs. anything else (`docker exec` sessions).
    async fn seed_processes(&mut self, cgroup_id: u64, info: &ContainerInfo) {
        let Some(cg_path) = cgroupfs::pid_cgroup(info.init_pid) else {
            return;
        };
        let mut members = Vec::new();
        for pid in list_pids() {
            if cgroupfs::pid_cgroup(pid)
                .is_some_and(|p| p == cg_path || p.starts_with(&format!("{cg_path}/")))
            {
                if let Some(p) = proctable::read_proc(pid) {
                    members.push((pid, p));
                }
            }
        }
        let parent_of: HashMap<u32, u32> = members.iter().map(|(pid, p)| (*pid, p.ppid)).collect();
        let origins: Vec<(u32, u32)> = members
            .iter()
            .map(|(pid, _)| {
                let mut cur = *pid;
                let mut hops = 0;
                while cur != info.init_pid && hops < 64 {
                    match parent_of.get(&cur) {
                        Some(&pp) => cur = pp,
                        None => break,
                    }
                    hops += 1;
                }
                (
                    *pid,
                    if cur == info.init_pid {
                        ORIGIN_INIT
                    } else {
                        ORIGIN_EXEC_SESSION
                    },
                )
            })
            .collect();
        for (pid, p) in members {
            self.procs.insert(pid, p);
        }
        let init = info.init_pid;
        let _ = self
            .kernel
            .call(move |k| k.seed_container(cgroup_id, init, &origins))
            .await;
    }

    /// A container cgroup the table does not know: find its directory by inode and ask the engine.
    async fn resolve(&mut self, cgroup_id: u64) {
        if cgroup_id == 0 || self.containers.get(cgroup_id).is_some() {
            return;
        }
        if let Some(t) = self.unresolved.get(&cgroup_id) {
            if t.elapsed() < UNRESOLVED_RETRY {
                return;
            }
        }
        let found = self.parents.iter().find_map(|(parent, _)| {
            std::fs::read_dir(parent).ok()?.flatten().find_map(|e| {
                let m = e.metadata().ok()?;
                (m.is_dir() && m.ino() == cgroup_id).then(|| e.path())
            })
        });
        let Some(dir) = found else {
            self.unresolved.insert(cgroup_id, Instant::now());
            return;
        };
        self.add_by_dir(cgroup_id, &dir).await;
    }

    async fn add_by_dir(&mut self, cgroup_id: u64, dir: &Path) {
        if Some(cgroup_id) == self.own_cgroup {
            return;
        }
        let id = dir
            .file_name()
            .and_then(|n| cgroupfs::container_id_from_path(&n.to_string_lossy()));
        if let Some(info) = id.as_ref().and_then(|id| self.created.remove(id)) {
            self.unresolved.remove(&cgroup_id);
            self.register(cgroup_id, dir, info).await;
            return;
        }
        let info = match (&self.docker, id) {
            (Some(d), Some(id)) => match d.inspect(&id).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "inspecting a new container failed");
                    ContainerInfo {
                        id,
                        ..Default::default()
                    }
                }
            },
            (_, id) => ContainerInfo {
                id: id.unwrap_or_else(|| dir.display().to_string()),
                ..Default::default()
            },
        };
        self.unresolved.remove(&cgroup_id);
        self.register(cgroup_id, dir, info).await;
    }

    async fn on_kernel(&mut self, ev: KernelEvent) {
        match &ev {
            KernelEvent::CgroupMkdir { id, path, .. } => {
                // A new container: policy and network programs before its first exec.
                if let Some(dir) = self.container_dir(path) {
                    self.add_by_dir(*id, &dir).await;
                }
                return;
            }
            KernelEvent::Fork { header, child_pid } => {
                self.procs.fork(header.pid, *child_pid);
            }
            KernelEvent::Exit { header, .. } => {
                self.procs.exit(header.pid);
            }
            KernelEvent::Exec {
                header, path, args, ..
            } => {
                let ppid = header.ppid;
                self.procs.insert(
                    header.pid,
                    proctable::ProcessInfo {
                        ppid,
                        uid: header.uid,
                        comm: header.comm.clone(),
                        exe: path.clone(),
                        args: args.clone(),
                    },
                );
            }
            KernelEvent::Net { .. } | KernelEvent::File { .. } => {}
        }
        let cg = ev.header().container_cgroup_id;
        if cg != 0 && self.containers.get(cg).is_none() {
            self.resolve(cg).await;
        }
        let mut ev = ev;
        if let KernelEvent::Exec {
            header,
            flags,
            path_bytes,
            ..
        } = &mut ev
        {
            if *flags & agent_common::EXEC_HELD != 0 {
                let cg = header.container_cgroup_id;
                if !self.prepared.contains_key(&cg) {
                    if let Some(c) = self.containers.get(cg) {
                        let chosen = self.profile_named(&c.profile.clone()).clone();
                        if self.needs_preparing(&chosen) {
                            self.prepare_container(cg, header.pid, &chosen);
                        }
                    }
                }
                let bytes = path_bytes.clone();
                self.release_held(header, *flags, &bytes);
            }
        }
        if let Some(out) = self
            .enricher
            .kernel_event(&ev, &self.containers, &self.procs)
        {
            self.emit(out);
        }
    }

    /// A process the kernel stopped at its first instruction because its container's own
    /// policy was not written yet: decide under the container's profile, then kill or resume.
    fn release_held(&mut self, header: &mut decode::Header, flags: u32, path: &[u8]) {
        let cg = header.container_cgroup_id;
        let profile = match self.containers.get(cg) {
            Some(c) => self
                .profiles
                .profiles()
                .find(|p| p.name == c.profile)
                .unwrap_or_else(|| self.profiles.default_profile()),
            None => self.profiles.default_profile(),
        };
        let (control, action) = policy::exec_verdict(profile, flags, path);
        header.control = control;
        header.action = action;
        // Signal only the process the kernel held, and only while it is still in that
        // container's cgroup (it cannot have been replaced while stopped, but check anyway).
        let still_there = cgroupfs::pid_cgroup(header.pid)
            .and_then(|p| self.container_dir(&p))
            .and_then(|d| cgroupfs::cgroup_id(&d).ok())
            == Some(cg);
        if !still_there {
            return;
        }
        let sig = if action == agent_common::ACTION_BLOCKED {
            libc::SIGKILL
        } else {
            libc::SIGCONT
        };
        // SAFETY: plain syscall on a pid the kernel reported as held in a monitored container.
        unsafe { libc::kill(header.pid as i32, sig) };
        tracing::debug!(
            pid = header.pid,
            container_cgroup_id = cg,
            signal = sig,
            "released held process"
        );
    }

    async fn on_lifecycle(&mut self, l: Lifecycle) {
        match l.action.as_str() {
            "create" => {
                let Some(d) = self.docker.clone() else { return };
                if let Ok(info) = d.inspect(&l.container_id).await {
                    if self.created.len() > 1024 {
                        self.created.clear();
                    }
                    self.created.insert(l.container_id, info);
                }
            }
            "start" => {
                let Some(d) = self.docker.clone() else { return };
                let info = match d.inspect(&l.container_id).await {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(container_id = %l.container_id, error = %e, "inspecting a started container failed");
                        return;
                    }
                };
                let Some(cg_path) = cgroupfs::pid_cgroup(info.init_pid) else {
                    return;
                };
                let Some(dir) = self.container_dir(&cg_path) else {
                    tracing::warn!(container_id = %info.id, cgroup = %cg_path, "container cgroup is not under a configured container parent: not monitored (add its parent to container_parents)");
                    return;
                };
                let Ok(cg) = cgroupfs::cgroup_id(&dir) else {
                    return;
                };
                self.register(cg, &dir, info).await;
            }
            "die" | "destroy" => {
                self.created.remove(&l.container_id);
                if let Some((cg, info)) = self.containers.remove_container(&l.container_id) {
                    let _ = self.kernel.call(move |k| k.remove_container(cg)).await;
                    self.prepared.remove(&cg);
                    if let Some(files) = &mut self.files {
                        files.unwatch_container(cg);
                    }
                    let mut ev = self.enricher.event(
                        Kind::Container,
                        Action::Allowed,
                        "lifecycle",
                        Severity::Info,
                        format!("container {} ({}) stopped", info.name, info.image),
                    );
                    ev.container = Some(info.to_event());
                    self.emit(ev);
                    self.refresh_status();
                }
            }
            _ => {}
        }
    }

    async fn install(&mut self, set: ProfileSet) -> anyhow::Result<()> {
        let compiled = policy::compile_set(&set, &mut self.next_profile_id)?;
        let old_paths = self.compiled.all_path_rules();
        let old_nets: Vec<_> = self
            .compiled
            .all_net_rules()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let new_paths = compiled.all_path_rules();
        let new_nets = compiled.all_net_rules();
        let default = compiled.default_policy();
        self.kernel
            .call(move |k| {
                k.insert_rules(&new_paths, &new_nets)?;
                k.set_default_policy(default)
            })
            .await??;
        self.profiles = set;
        self.compiled = compiled;
        // Point each container at its new policy, then drop the old rules.
        let rows: Vec<(u64, ContainerInfo)> = self
            .containers
            .iter()
            .map(|(c, i)| (*c, i.clone()))
            .collect();
        for (cg, info) in rows {
            if let Some(dir) = self.dir_of(cg) {
                self.register(cg, &dir, info).await;
            }
        }
        self.kernel
            .call(move |k| k.remove_rules(&old_paths, &old_nets))
            .await?;
        Ok(())
    }

    fn dir_of(&self, cgroup_id: u64) -> Option<PathBuf> {
        self.parents.iter().find_map(|(parent, _)| {
            std::fs::read_dir(parent).ok()?.flatten().find_map(|e| {
                let m = e.metadata().ok()?;
                (m.is_dir() && m.ino() == cgroup_id).then(|| e.path())
            })
        })
    }

    async fn reload(&mut self) {
        let dir = self.cfg.profiles.clone();
        match ProfileSet::load_dir(&dir) {
            Ok(set) => match self.install(set).await {
                Ok(()) => {
                    self.sinks.metrics.profile_reload(true);
                    tracing::info!(dir = %dir.display(), "profiles reloaded");
                    self.agent_event(
                        Action::Allowed,
                        Severity::Info,
                        format!("profiles reloaded from {}", dir.display()),
                    );
                }
                Err(e) => {
                    self.sinks.metrics.profile_reload(false);
                    tracing::error!(error = %e, "installing reloaded profiles failed; the previous policy stays");
                    self.agent_event(
                        Action::Allowed,
                        Severity::High,
                        format!("profile reload failed, previous policy stays: {e}"),
                    );
                }
            },
            Err(report) => {
                self.sinks.metrics.profile_reload(false);
                tracing::error!(dir = %dir.display(), "invalid profiles; the previous policy stays:\n{report}");
                self.agent_event(
                    Action::Allowed,
                    Severity::High,
                    format!(
                        "profile reload rejected, previous policy stays: {}",
                        report.to_string().trim()
                    ),
                );
            }
        }
        self.refresh_status();
    }

    async fn poll_counters(&mut self) {
        let Ok(Ok(c)) = self.kernel.call(|k| k.counters()).await else {
            return;
        };
        let drops = c[agent_common::COUNTER_RINGBUF_DROPS as usize];
        self.sinks.metrics.set_ringbuf_drops(drops);
        if drops > self.drops_seen {
            let new = drops - self.drops_seen;
            self.drops_seen = drops;
            tracing::warn!(
                lost = new,
                total = drops,
                "kernel ring buffer was full: events lost"
            );
            self.agent_event(
                Action::Allowed,
                Severity::High,
                format!("{new} kernel events lost because the ring buffer was full ({drops} in total); raise ringbuf_bytes"),
            );
        }
        if let Some(d) = &self.delivery {
            let st = d.stats();
            self.sinks.metrics.set_spool(
                st.spool_depth_events,
                st.dropped_total,
                st.lag_seconds as f64,
            );
            let dropped = d.take_dropped();
            if dropped > 0 {
                let seq = self.enricher.next_seq();
                let ev = crate::delivery::dropped_event(
                    seq,
                    crate::enrich::Clock::now(),
                    self.enricher.node.clone(),
                    dropped,
                );
                self.emit(ev);
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.ringbuf_drops = drops;
            s.kills = c[agent_common::COUNTER_KILLS as usize];
            s.denies = c[agent_common::COUNTER_DENIES as usize];
        }
    }

    fn refresh_status(&self) {
        self.sinks
            .metrics
            .set_containers(self.containers.len() as u64);
        if let Ok(mut s) = self.status.lock() {
            s.containers = self
                .containers
                .iter()
                .map(|(cg, c)| ContainerStatus {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
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
        }
    }
}

fn list_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the ring buffer as it becomes readable and forwards decoded events, in order.
async fn read_ring(ring: RingBuf<MapData>, tx: mpsc::Sender<KernelEvent>) {
    // SAFETY: the ring buffer owns its map fd and keeps it open for as long as it lives, which
    // is as long as the AsyncFd that owns it.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                let e = e.into_parts().1;
                tracing::error!(error = %e, "cannot poll the kernel ring buffer");
                return;
            }
        };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "polling the kernel ring buffer failed");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match decode::decode(&item) {
                Ok(ev) => batch.push(ev),
                Err(e) => tracing::error!(error = %e, "undecodable kernel record skipped"),
            }
        }
        guard.clear_ready();
        for ev in batch {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

/// Runs the agent until `shutdown` resolves. `ready` is called once programs are attached and
/// the profiles loaded (systemd READY=1).
pub async fn run(
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Status>>,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(),
    bus_out: tokio::sync::oneshot::Sender<tokio::sync::broadcast::Sender<std::sync::Arc<str>>>,
) -> anyhow::Result<()> {
    let profiles = initial_profiles(&cfg.profiles)?;
    let cgroup_root = cgroupfs::cgroup2_root()?;
    let mut parents = Vec::new();
    for p in &cfg.container_parents {
        let dir = cgroup_root.join(p.trim_start_matches('/'));
        if dir == cgroup_root {
            anyhow::bail!("container_parents entry {p:?} is the cgroup root: containers are its children, never the root itself");
        }
        if !dir.exists() {
            // Created ahead of the engine so its id is known before the first container.
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating container parent cgroup {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "created container parent cgroup");
        }
        let id = cgroupfs::cgroup_id(&dir)?;
        parents.push((dir, id));
    }

    let mut link_pins = crate::pins::LinkPins::new(&cfg.bpffs);
    if link_pins.adopting() {
        tracing::info!(dir = %cfg.bpffs.display(), "an earlier agent's programs are still enforcing: adopting its maps, then taking over");
    }
    let mut ebpf = loader::load(
        &LoadOptions {
            host_events: cfg.host_events,
            ringbuf_bytes: cfg.ringbuf_bytes,
            bpffs: cfg.bpffs.clone(),
        },
        cfg.pin.then_some(&mut link_pins),
    )?;
    let lsm = crate::lsm::load_lsm(&mut ebpf);
    let lsm_active = lsm.is_ok();
    if let Err(e) = &lsm {
        crate::lsm::unload_lsm(&mut ebpf);
        tracing::info!(reason = %e, "BPF LSM backend unavailable: using the fallbacks");
    }
    let ring = RingBuf::try_from(
        ebpf.take_map(agent_common::MAP_EVENTS)
            .context("ring buffer map missing from the object")?,
    )?;
    // Loading parsed the kernel's BTF twice (~5 MiB each) and freed it: give those pages back
    // instead of carrying them as resident memory for the agent's lifetime.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call.
    unsafe {
        libc::malloc_trim(0);
    }
    let pin = cfg.pin;
    let kernel = KernelHandle::spawn(KernelState::new(
        ebpf,
        cgroup_root.clone(),
        if pin { Some(link_pins) } else { None },
    )?);
    // Running as a container under a container parent: exempt our own cgroup (an explicit,
    // all-off policy) before the parents make the default apply to it.
    let own_cgroup = cgroupfs::pid_cgroup(std::process::id()).and_then(|p| {
        let full = cgroup_root.join(p.trim_start_matches('/'));
        parents.iter().find_map(|(parent, _)| {
            let rest = full.strip_prefix(parent).ok()?;
            let first = rest.components().next()?;
            cgroupfs::cgroup_id(&parent.join(first)).ok()
        })
    });
    if let Some(own) = own_cgroup {
        tracing::info!(
            cgroup_id = own,
            "running inside a container: its cgroup is exempt from policy"
        );
        kernel
            .call(move |k| k.set_container(own, agent_common::ContainerPolicy::default()))
            .await??;
    }
    let parent_list = parents.clone();
    kernel
        .call(move |k| {
            parent_list
                .iter()
                .try_for_each(|(dir, id)| k.add_parent(*id, dir))
        })
        .await??;

    let files = match crate::fanotify::FileGuard::start(cfg.audit_files, !lsm_active) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %e, "file controls unavailable");
            None
        }
    };
    let backends: Backends = loader::backends(
        match &files {
            Some(_) => Ok(()),
            None => Err("fanotify could not be initialised".into()),
        },
        lsm,
    );
    for (control, backend) in [
        ("exec", &backends.exec),
        ("drift", &backends.drift),
        ("container_exec", &backends.container_exec),
        ("file", &backends.file),
        ("network", &backends.network),
    ] {
        metrics.set_backend(control, backend);
    }

    let mut sinks = Sinks::open(&cfg.output, metrics.clone())?;
    let _ = bus_out.send(sinks.bus.clone());
    let mut first_seq = 1;
    let delivery = match &cfg.collector {
        None => None,
        Some(url) => {
            let (d, last_seq) =
                crate::delivery::Delivery::start(crate::delivery::CollectorConfig {
                    url: url.clone(),
                    ca: cfg.collector_ca.clone(),
                    cert: cfg.collector_cert.clone(),
                    key: cfg.collector_key.clone(),
                    insecure: cfg.collector_insecure,
                    spool_dir: cfg.spool_dir.clone(),
                    spool_max_bytes: cfg.spool_max_bytes,
                    agent_id: cfg.node.clone(),
                })
                .await
                .with_context(|| format!("starting delivery to the collector {url}"))?;
            // Numbering continues after everything this agent ever spooled.
            first_seq = last_seq + 1;
            let fwd = d.clone();
            sinks.forward.push(Box::new(move |ev| {
                if let Err(e) = fwd.publish(ev) {
                    tracing::error!(error = %e, seq = ev.seq, "spooling an event for the collector failed");
                }
            }));
            status.lock().expect("status lock").collector = Some(url.clone());
            Some(d)
        }
    };
    let node = cfg.node_name();
    let docker = match DockerSource::connect(&cfg.docker_socket).await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(error = %e, "container engine unavailable: containers are monitored with the default profile and no metadata until it answers");
            None
        }
    };
    let (kernel_tx, mut kernel_rx) = mpsc::channel(65_536);
    let reader = tokio::spawn(read_ring(ring, kernel_tx));
    sinks.flush();

    let mut p = Pipeline {
        cgroup_root,
        parents,
        kernel,
        docker: docker.clone(),
        profiles: ProfileSet::builtin_default(),
        compiled: CompiledSet::default(),
        next_profile_id: 0,
        containers: ContainerTable::default(),
        procs: ProcessTable::new(65_536),
        enricher: Enricher::new(node.clone(), first_seq),
        sinks,
        unresolved: HashMap::new(),
        created: HashMap::new(),
        drops_seen: 0,
        status: status.clone(),
        lsm_active,
        prepared: HashMap::new(),
        files,
        delivery,
        own_cgroup,
        cfg: cfg.clone(),
    };
    // Maps adopted from an earlier agent keep its rules: number on above them, and remove them
    // once the new rules are in and every container points at them.
    let (max_id, stale_paths, stale_nets) = p.kernel.call(|k| k.adopted_rules()).await?;
    p.next_profile_id = max_id;
    p.install(profiles).await?;
    let stale_nets: Vec<_> = stale_nets;
    p.kernel
        .call(move |k| k.remove_rules(&stale_paths, &stale_nets))
        .await?;
    p.kernel.call(|k| k.heartbeat()).await??;

    // Containers already running.
    let (life_tx, mut life_rx) = mpsc::channel::<Lifecycle>(1024);
    if let Some(d) = &docker {
        let mut stream = Box::pin(d.lifecycle());
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(l) => {
                        if life_tx.send(l).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Docker event stream failed");
                        break;
                    }
                }
            }
        });
        match d.running().await {
            Ok(ids) => {
                for id in ids {
                    p.on_lifecycle(Lifecycle {
                        container_id: id,
                        action: "start".into(),
                    })
                    .await;
                }
            }
            Err(e) => tracing::error!(error = %e, "listing running containers failed"),
        }
    }

    {
        let mut s = status.lock().expect("status lock");
        s.node = node;
        s.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .into();
        s.backends = Some(backends.clone());
        s.coverage = crate::coverage::lines(
            if lsm_active {
                crate::coverage::BackendKind::BpfLsm
            } else {
                crate::coverage::BackendKind::Fallback
            },
            &crate::coverage::KernelFacts::probe(),
        );
        s.started = crate::enrich::Clock::now();
        s.version = env!("CARGO_PKG_VERSION").into();
    }
    p.refresh_status();
    print_summary(&backends, &p);
    p.agent_event(
        Action::Allowed,
        Severity::Info,
        format!(
            "agent started: exec via {}, file via {}, network via {}",
            backends.exec, backends.file, backends.network
        ),
    );
    let released = p.kernel.call(|k| k.release_previous()).await?;
    if released > 0 {
        tracing::info!(
            links = released,
            "took over from the earlier agent's programs"
        );
    }
    if !pin {
        // Links an earlier pinned agent left, when this one does not pin its own.
        let mut old = crate::pins::LinkPins::new(&cfg.bpffs);
        old.release_previous();
    }
    p.sinks.flush();
    ready();

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut stamp = profiles_stamp(&cfg.profiles);
    let mut file_rx = p.files.as_mut().map(|f| f.events());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(ev) = kernel_rx.recv() => {
                p.on_kernel(ev).await;
                while let Ok(ev) = kernel_rx.try_recv() {
                    p.on_kernel(ev).await;
                }
                p.sinks.flush();
            }
            Some(fev) = async { match &mut file_rx { Some(rx) => rx.recv().await, None => None } } => {
                let containers = &p.containers;
                if let Some(ev) = crate::fanotify::to_event(&fev, &mut p.enricher, containers, &p.procs) {
                    p.emit(ev);
                }
                p.sinks.flush();
            }
            Some(l) = life_rx.recv() => {
                p.on_lifecycle(l).await;
                p.sinks.flush();
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading profiles");
                p.reload().await;
                stamp = profiles_stamp(&cfg.profiles);
                p.sinks.flush();
            }
            _ = tick.tick() => {
                let now = profiles_stamp(&cfg.profiles);
                if now != stamp {
                    stamp = now;
                    tracing::info!("profiles directory changed: reloading");
                    p.reload().await;
                }
                p.poll_counters().await;
                let _ = p.kernel.call(|k| k.heartbeat()).await;
                p.sinks.flush();
            }
        }
    }
    reader.abort();
    p.agent_event(Action::Allowed, Severity::Info, "agent stopping".into());
    p.sinks.flush();
    if let Some(d) = p.delivery.take() {
        d.shutdown().await;
    }
    if !cfg.pin {
        // Not asked to outlive us: leave nothing behind in bpffs.
        if let Err(e) = crate::pins::remove_all(&cfg.bpffs) {
            tracing::warn!(dir = %cfg.bpffs.display(), error = %e, "removing bpffs pins failed");
        }
    } else {
        tracing::info!(dir = %cfg.bpffs.display(), "programs stay pinned and enforcing; `seawall uninstall` removes them");
    }
    Ok(())
}

fn print_summary(b: &Backends, p: &Pipeline) {
    let lsm = b.lsm_unavailable.as_deref().unwrap_or("in use");
    eprintln!(
        "seawall agent ready\n  kernel programs: exec/fork/exit/cgroup_mkdir (tp_btf), network (cgroup sock_addr, per container)\n  exec, drift, container_exec: {}\n  file:    {}\n  network: {}\n  BPF LSM: {}\n  profiles: {} ({} loaded)\n  containers monitored: {}",
        b.exec,
        b.file,
        b.network,
        lsm,
        p.cfg.profiles.display(),
        p.profiles.profiles().count(),
        p.containers.len()
    );
}
