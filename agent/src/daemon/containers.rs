//! Containers coming and going: what the sources report, cgroups the kernel saw appear, and
//! registration (profile → policy in the kernel, file controls prepared, process seeding, the
//! table).

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use agent_common::{ORIGIN_EXEC_SESSION, ORIGIN_INIT};
use seawall_profile::PodRef;
use seawall_proto::event::{Action, Kind, Severity};
use seawall_service::ErrorChain;

use super::Daemon;
use crate::runtime::{
    cgroup, procs,
    table::{Change, ContainerInfo},
    Runtime, SourceEvent,
};

/// How long an unknown container cgroup is not looked up again.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(5);
/// How long a cgroup waits for a source that is unreachable (it may come back and list it)
/// before it is registered with what is known, under the default profile.
pub(super) const LOOKUP_WAIT: Duration = Duration::from_secs(6);
/// How long a cgroup waits for a source that is up: a loaded engine answers late, and its
/// container's first exec stays held meanwhile rather than run under the default profile.
pub(super) const ENGINE_WAIT: Duration = Duration::from_secs(30);
/// How soon a failed lookup is asked again.
const LOOKUP_RETRY: Duration = Duration::from_secs(1);
/// Containers created but not yet seen running, kept at most.
const CREATED_MAX: usize = 1024;
/// Unresolvable container cgroups remembered at most (a flood of new cgroups cannot grow it).
const UNRESOLVED_MAX: usize = 4096;

/// A cgroup waiting for its source's answer.
#[derive(Debug)]
pub(super) struct Awaiting {
    cgroup_id: u64,
    dir: PathBuf,
    since: Instant,
    /// The runtime its cgroup's name says, if it says one.
    hint: Option<Runtime>,
    /// The engine that was asked (else it waits for a source's report).
    asked: Option<Runtime>,
    /// When to ask again after a failed lookup.
    retry_at: Option<Instant>,
}

impl Daemon {
    /// The container's cgroup directory from a cgroup path (`/docker/<id>/sub` →
    /// `<root>/docker/<id>`), when it is in a container below a container parent.
    pub(super) fn container_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        self.parents.container_dir(cgroup_path)
    }

    /// Registers the runtimes' nested parents that appeared since the start (a kubelet that
    /// started after the agent makes `kubepods` then), before their first container.
    pub(super) async fn watch_parents(&mut self) {
        let mut known = self.parents.parents.clone();
        known.extend(self.failed_parents.iter().cloned());
        for p in super::start::detected_parents(&self.parents.root, &known) {
            match self
                .kernel
                .add_parent(p.id, p.dir.clone(), p.kind.abi())
                .await
            {
                Ok(()) => {
                    tracing::info!(dir = %p.dir.display(), kind = ?p.kind, "container parent appeared");
                    self.parents.parents.push(p);
                }
                Err(e) => {
                    tracing::error!(dir = %p.dir.display(), error = %ErrorChain(&e), "registering a container parent failed: containers below it are not monitored");
                    self.failed_parents.push(p);
                }
            }
        }
    }

    /// What a container source reported.
    pub(super) async fn on_source(&mut self, news: SourceEvent) {
        match news {
            SourceEvent::Created(info) => {
                if let Some(w) = self.awaiting.remove(&info.id) {
                    self.register(w.cgroup_id, info).await;
                } else if let Some(cg) = self.containers.cgroup_of(&info.id) {
                    // A fuller answer for a container registered with what was known.
                    self.register(cg, info).await;
                } else {
                    if self.created.len() >= CREATED_MAX {
                        self.created.clear();
                    }
                    self.created.insert(info.id.clone(), info);
                }
            }
            SourceEvent::Unknown { id } => {
                // The engine asked does not know it. A name that does not say whose it is may
                // still be another source's, which reports it without being asked: it waits
                // for that.
                let others = self
                    .sources
                    .iter()
                    .any(|(s, _)| s.runtime != Runtime::Docker);
                let theirs = self
                    .awaiting
                    .get(&id)
                    .is_some_and(|w| w.hint.is_none() && others);
                if !theirs {
                    if let Some(w) = self.awaiting.remove(&id) {
                        self.register_unknown(w.cgroup_id, id, w.hint).await;
                    }
                }
            }
            SourceEvent::LookupFailed { id } => {
                if let Some(w) = self.awaiting.get_mut(&id) {
                    w.retry_at = Some(Instant::now() + LOOKUP_RETRY);
                }
            }
            SourceEvent::Started(info) => self.started(info).await,
            SourceEvent::Stopped { id } => self.stopped(&id).await,
            SourceEvent::Resync { source, running } => {
                self.source_state(&source, true);
                let live: std::collections::HashSet<String> =
                    running.iter().map(|i| i.id.clone()).collect();
                // Only this source's rows: the others' containers are theirs to list.
                let gone: Vec<String> = self
                    .containers
                    .iter()
                    .filter(|(_, c)| c.listed_by(&source) && !live.contains(&c.id))
                    .map(|(_, c)| c.id.clone())
                    .collect();
                for id in gone {
                    self.stopped(&id).await;
                }
                for info in running {
                    self.started(info).await;
                }
                // Containers that started and died during the gap never reached the table,
                // but the kernel recorded them: their entries go by their cgroup.
                self.collect_dead_containers(true).await;
                self.refresh_status();
            }
            SourceEvent::Unreachable { source } => {
                self.source_state(&source, false);
                self.refresh_status();
            }
        }
    }

    /// A running container: found by its init's cgroup.
    async fn started(&mut self, info: ContainerInfo) {
        let Some(cg_path) = cgroup::pid_cgroup(info.init_pid) else {
            return;
        };
        let Some(dir) = self.parents.container_dir_of_init(&cg_path) else {
            tracing::warn!(container_id = %info.id, cgroup = %cg_path, "container cgroup is not under a configured container parent: not monitored (add its parent to container_parents)");
            return;
        };
        let Ok(cg) = cgroup::cgroup_id(&dir) else {
            return;
        };
        self.awaiting.remove(&info.id);
        self.register(cg, info).await;
    }

    pub(super) async fn stopped(&mut self, id: &str) {
        self.created.remove(id);
        self.awaiting.remove(id);
        if let Some((cg, info)) = self.containers.remove_container(id) {
            if let Err(e) = self.kernel.remove_container(cg).await {
                tracing::error!(container_id = %id, error = %ErrorChain(&e), "removing the container's policy failed");
            }
            if let Some(files) = &mut self.files {
                files.unwatch_container(cg);
            }
            self.intel_forget(cg, id);
            self.prepared.remove(&cg);
            self.held.remove(&cg);
            let mut ev = self.events.event(
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

    /// A container cgroup the table does not know: find its directory by inode and ask.
    pub(super) async fn resolve(&mut self, cgroup_id: u64) {
        if cgroup_id == 0 || self.containers.get(cgroup_id).is_some() {
            return;
        }
        if let Some(t) = self.unresolved.get(&cgroup_id) {
            if t.elapsed() < UNRESOLVED_RETRY {
                return;
            }
        }
        match self.parents.dir_of(cgroup_id) {
            Some(dir) => self.add_by_dir(cgroup_id, dir).await,
            None => {
                if self.unresolved.len() >= UNRESOLVED_MAX {
                    self.unresolved.clear();
                }
                self.unresolved.insert(cgroup_id, Instant::now());
            }
        }
    }

    /// A container cgroup appeared (or was found): its policy now if its metadata is known,
    /// otherwise as soon as its source answers.
    pub(super) async fn add_by_dir(&mut self, cgroup_id: u64, dir: PathBuf) {
        if Some(cgroup_id) == self.own_cgroup {
            return;
        }
        self.unresolved.remove(&cgroup_id);
        let named = dir
            .file_name()
            .and_then(|n| cgroup::container_id_from_path(&n.to_string_lossy()));
        // The runtime the cgroup's name says; a name without a prefix below Docker's own
        // parent is Docker's (elsewhere it may be containerd's or cri-dockerd's).
        let hint = named
            .as_ref()
            .and_then(|(_, runtime)| *runtime)
            .or_else(|| {
                let parent = self.parents.parent_of(&dir)?;
                (parent.kind == cgroup::ParentKind::Children).then_some(Runtime::Docker)
            });
        let id = named.map(|(id, _)| id);
        if let Some(info) = id.as_ref().and_then(|id| self.created.remove(id)) {
            self.register(cgroup_id, info).await;
            return;
        }
        let Some(id) = id else {
            let info = ContainerInfo {
                id: dir.display().to_string(),
                runtime: hint,
                ..Default::default()
            };
            self.register(cgroup_id, info).await;
            return;
        };
        if self.awaiting.contains_key(&id) {
            return;
        }
        // Docker and podman answer lookups; containerd and CRI runtimes report every
        // container as it is made and started, so their containers wait for that report.
        let ask = match hint {
            Some(Runtime::Docker) | None => Some(Runtime::Docker),
            Some(Runtime::Podman) => Some(Runtime::Podman),
            Some(_) => None,
        };
        let asked = ask.filter(|r| self.ask(*r, &id));
        let reports =
            |wanted: &dyn Fn(Runtime) -> bool| self.sources.iter().any(|(s, _)| wanted(s.runtime));
        let waits = asked.is_some()
            || match hint {
                Some(Runtime::Docker) => false,
                Some(r) => reports(&|s| s == r),
                None => reports(&|s| s != Runtime::Docker),
            };
        if !waits {
            self.register_unknown(cgroup_id, id, hint).await;
            return;
        }
        self.awaiting.insert(
            id,
            Awaiting {
                cgroup_id,
                dir,
                since: Instant::now(),
                hint,
                asked,
                retry_at: None,
            },
        );
    }

    /// Asks `runtime`'s engine to describe container `id`; false when it does not answer
    /// lookups, or its queue is full.
    fn ask(&self, runtime: Runtime, id: &str) -> bool {
        self.lookups
            .iter()
            .any(|(r, lookup)| *r == runtime && lookup.request(id))
    }

    /// Whether a lookup for this container cgroup is still out.
    pub(super) fn awaiting_cgroup(&self, cgroup_id: u64) -> bool {
        self.awaiting.values().any(|w| w.cgroup_id == cgroup_id)
    }

    /// Whether the source a wait is for is up (listed, or still connecting): its answer is
    /// coming. An unreachable one may never answer.
    fn awaited_source_up(&self, w: &Awaiting) -> bool {
        let up = |wanted: &dyn Fn(Runtime) -> bool| {
            self.sources
                .iter()
                .any(|(s, state)| wanted(s.runtime) && *state != Some(false))
        };
        if let Some(asked) = w.asked {
            return up(&|r| r == asked);
        }
        match w.hint {
            Some(r) => up(&|s| s == r),
            None => up(&|s| s != Runtime::Docker),
        }
    }

    /// How long this wait may last: [`ENGINE_WAIT`] while its source is up, else
    /// [`LOOKUP_WAIT`].
    fn wait_limit(&self, w: &Awaiting) -> Duration {
        if self.awaited_source_up(w) {
            ENGINE_WAIT
        } else {
            LOOKUP_WAIT
        }
    }

    /// Failed lookups asked again; waits past their limit registered with what is known
    /// (the default profile), with an event saying so.
    pub(super) async fn expire_waits(&mut self) {
        let now = Instant::now();
        let mut late = Vec::new();
        let mut again = Vec::new();
        for (id, w) in &self.awaiting {
            if w.since.elapsed() > self.wait_limit(w) {
                late.push(id.clone());
            } else if w.retry_at.is_some_and(|t| now >= t) {
                again.push((id.clone(), w.asked));
            }
        }
        for (id, engine) in again {
            let asked = engine.is_some_and(|r| self.ask(r, &id));
            if let Some(w) = self.awaiting.get_mut(&id) {
                // Saturated: the next tick tries again.
                w.retry_at = (!asked).then_some(now + LOOKUP_RETRY);
            }
        }
        for id in late {
            let Some(w) = self.awaiting.remove(&id) else {
                continue;
            };
            let waited = w.since.elapsed().as_secs();
            tracing::warn!(container_id = %id, dir = %w.dir.display(), waited_s = waited, "the container engine did not describe the container in time: monitoring with the default profile");
            let mut ev = self.events.event(
                Kind::Container,
                Action::Allowed,
                "lifecycle",
                Severity::High,
                format!(
                    "container {id} was not described by its engine within {waited} s: monitored with the default profile until it is"
                ),
            );
            ev.container = Some(
                ContainerInfo {
                    id: id.clone(),
                    runtime: w.hint,
                    ..Default::default()
                }
                .to_event(),
            );
            self.emit(ev);
            self.register_unknown(w.cgroup_id, id, w.hint).await;
        }
        self.release_expired_holds().await;
    }

    /// Registers a container its source could not describe: the id (and the runtime its
    /// cgroup's name says) only, the default profile.
    async fn register_unknown(&mut self, cgroup_id: u64, id: String, runtime: Option<Runtime>) {
        let info = ContainerInfo {
            id,
            runtime,
            ..Default::default()
        };
        self.register(cgroup_id, info).await;
    }

    /// Applies the matching profile to a container and records it in the table; then
    /// releases execs the kernel held for it.
    pub(super) async fn register(&mut self, cgroup_id: u64, mut info: ContainerInfo) {
        if Some(cgroup_id) == self.own_cgroup {
            tracing::info!(container_id = %info.id, "the agent's own container is exempt from policy");
            return;
        }
        let digest = info
            .image_digests
            .iter()
            .find_map(|d| d.split('@').nth(1))
            .map(str::to_string);
        let pod = info.kubernetes.as_ref().map(|k| PodRef {
            namespace: &k.namespace,
            labels: &k.labels,
        });
        let profile = self
            .profiles
            .for_container(
                &info.image,
                digest.as_deref().or(Some(info.image_id.as_str())),
                pod,
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
        // Its intel mode and assurance verdict first: both are in force before its policy is,
        // and a container whose executed files are hashed is prepared (marked) like one with
        // file rules.
        self.intel_register(cgroup_id, &info).await;
        let chosen = self.profile_named(&profile).clone();
        if self.needs_preparing(cgroup_id, &chosen) {
            // Its mounts are made and marked at its first exec, which the kernel holds until
            // then (a running container is prepared below, at once).
            policy.rules |= agent_common::RULES_HOLD_FIRST_EXEC;
        }
        if !matches!(info.storage_driver.as_str(), "overlay2" | "overlay" | "") {
            tracing::warn!(container_id = %info.id, driver = %info.storage_driver, "storage driver is not overlay2: drift and exec path rules cannot be evaluated for this container");
        }
        if let Err(e) = self.kernel.set_container(cgroup_id, policy).await {
            tracing::error!(container_id = %info.id, error = %ErrorChain(&e), "applying the container's policy failed");
        }
        if info.init_pid != 0 {
            self.seed_processes(cgroup_id, &info).await;
        }
        // Only `--audit-files` reports every open; a file rule reports what it matches.
        let files_watched = self.files.is_some() && self.cfg.audit_files;
        if let Some(files) = &mut self.files {
            files.prepare(cgroup_id, &chosen);
        }
        if let Some(pid) = self.running_pid(cgroup_id, info.init_pid) {
            self.prepare_container(cgroup_id, pid, &chosen);
        }
        tracing::info!(
            container_id = %info.id,
            name = %info.name,
            image = %info.image,
            runtime = info.runtime.map(Runtime::as_str).unwrap_or(""),
            pod = info.kubernetes.as_ref().map(|k| format!("{}/{}", k.namespace, k.pod)).unwrap_or_default(),
            cgroup_id,
            profile = %profile,
            "monitoring container"
        );
        let before = self
            .containers
            .get(cgroup_id)
            .map(|c| (c.name.clone(), c.profile.clone(), c.image.is_empty()));
        let image_was_unknown = before.as_ref().is_some_and(|b| b.2);
        let change = self.containers.upsert(cgroup_id, info.clone());
        if change == Change::Added || (change == Change::Updated && image_was_unknown) {
            self.learn_container(&info, files_watched);
        }
        let news = match change {
            Change::Added => Some(format!(
                "monitoring container {} ({}) with profile {profile}",
                info.name, info.image
            )),
            // Registered nameless or under the default profile while its engine did not
            // answer (a gap in the stream): say what it is now.
            Change::Updated => before
                .is_some_and(|(name, was, _)| name != info.name || was != profile)
                .then(|| {
                    format!(
                        "container {} ({}) now monitored with profile {profile}",
                        info.name, info.image
                    )
                }),
            Change::TableFull => {
                tracing::error!(container_id = %info.id, "container table full: events of this container lack its metadata");
                None
            }
        };
        if let Some(message) = news {
            let mut ev = self.events.event(
                Kind::Container,
                Action::Allowed,
                "lifecycle",
                Severity::Info,
                message,
            );
            ev.container = Some(info.to_event());
            self.emit(ev);
        }
        self.release_held_for(cgroup_id).await;
        self.refresh_status();
    }

    /// Seeds the process table and the processes' origins of a container that was already
    /// running: descendants of its init vs. anything else (`docker exec` sessions).
    async fn seed_processes(&mut self, cgroup_id: u64, info: &ContainerInfo) {
        let Some(cg_path) = cgroup::pid_cgroup(info.init_pid) else {
            return;
        };
        let mut members = Vec::new();
        for pid in procs::list_pids() {
            if cgroup::pid_cgroup(pid)
                .is_some_and(|p| p == cg_path || p.starts_with(&format!("{cg_path}/")))
            {
                if let Some(p) = procs::read_proc(pid) {
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
                let origin = if cur == info.init_pid {
                    ORIGIN_INIT
                } else {
                    ORIGIN_EXEC_SESSION
                };
                (*pid, origin)
            })
            .collect();
        for (pid, p) in members {
            self.procs.insert(pid, p);
        }
        if let Err(e) = self
            .kernel
            .seed_container(cgroup_id, info.init_pid, origins)
            .await
        {
            tracing::warn!(container_id = %info.id, error = %ErrorChain(&e), "recording the container's processes failed");
        }
    }
}
