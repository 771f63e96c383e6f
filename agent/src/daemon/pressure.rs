//! What the agent lost or held back, said as it happens, never silently: records an earlier
//! agent read and never wrote (counted at start from the kernel's numbering), allowed records
//! a flood had counted instead of sent (per container and command), insertions full kernel
//! maps refused, fanotify events answered but not reported, and the kernel map entries of
//! containers that died unseen (removed, so they cannot fill the maps new containers need).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    time::{Duration, Instant},
};

use agent_common::{
    COUNTER_HELD_FULL, COUNTER_INIT_FULL, COUNTER_ORIGIN_FULL, COUNTER_SUPPRESSED,
    EVENT_CGROUP_MKDIR, EVENT_EXEC, EVENT_EXIT, EVENT_FILE, EVENT_FORK, EVENT_NET,
    MAP_CONTAINER_INIT, MAP_HELD_EXECS, MAP_TASK_ORIGIN,
};
use seawall_proto::event::{Action, Kind, Severity};
use seawall_service::ErrorChain;

use super::Daemon;
use crate::kernel::{maps::Counters, recovery::Suppressed};

/// How often held-back records and full maps are reported (they accumulate in between).
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How often the per-container maps are checked for containers that died unseen.
const COLLECT_EVERY: Duration = Duration::from_secs(10);

/// What was already reported.
pub(super) struct Seen {
    counters: Counters,
    file_unreported: u64,
    file_errors: u64,
    sequence_skipped: u64,
    suppressed: HashMap<u64, Vec<Suppressed>>,
    last_report: Instant,
    last_collect: Instant,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            counters: Counters::default(),
            file_unreported: 0,
            file_errors: 0,
            sequence_skipped: 0,
            suppressed: HashMap::new(),
            last_report: Instant::now(),
            // The first tick looks for dead containers at once.
            last_collect: Instant::now() - COLLECT_EVERY,
        }
    }
}

/// Deepest level below a container parent that is walked for live cgroups (containers sit at
/// any depth below their parent, e.g. Kubernetes pods' containers).
const LIVE_WALK_DEPTH: usize = 16;
/// Cgroup directories looked at, at most, per collection.
const LIVE_WALK_MAX: usize = 100_000;

/// The ids (inodes) of every cgroup below the parents, or `None` when a parent cannot be read
/// or there are too many to be sure (then no entry is judged dead).
fn live_cgroups<'a>(parents: impl Iterator<Item = &'a std::path::Path>) -> Option<HashSet<u64>> {
    let mut live = HashSet::new();
    let mut todo: Vec<(std::path::PathBuf, usize)> = Vec::new();
    for parent in parents {
        std::fs::metadata(parent).ok()?;
        todo.push((parent.to_path_buf(), 0));
    }
    while let Some((dir, depth)) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            if depth == 0 {
                return None;
            }
            continue; // removed while walked: gone
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !m.is_dir() {
                continue;
            }
            live.insert(m.ino());
            if live.len() > LIVE_WALK_MAX {
                return None;
            }
            if depth + 1 < LIVE_WALK_DEPTH {
                todo.push((e.path(), depth + 1));
            }
        }
    }
    Some(live)
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        EVENT_EXEC => "exec",
        EVENT_FORK => "fork",
        EVENT_EXIT => "exit",
        EVENT_NET => "network",
        EVENT_FILE => "file",
        EVENT_CGROUP_MKDIR => "cgroup",
        _ => "other",
    }
}

impl Daemon {
    /// The earlier agent's backlog is read: report what it read and never wrote.
    pub(super) fn on_backlog_read(&mut self) {
        let Some(gap) = self.handled.backlog_read() else {
            return;
        };
        let ranges: Vec<String> = gap
            .ranges
            .iter()
            .map(|(cpu, a, b)| format!("cpu {cpu}: {a}..={b}"))
            .collect();
        tracing::error!(lost = gap.lost, ranges = %ranges.join(", "), "kernel records read by the previous agent run were never written out: lost");
        self.metrics.add_records_lost(gap.lost);
        if let Ok(mut s) = self.status.lock() {
            s.losses.kernel_records_lost += gap.lost;
        }
        self.agent_event(
            Action::Allowed,
            Severity::High,
            format!(
                "{} kernel events were lost: the previous agent run read them from the kernel and stopped before writing them out (kernel sequence {})",
                gap.lost,
                ranges.join(", ")
            ),
        );
    }

    /// Records in the kernel how far the records written out reach (after each batch).
    pub(super) async fn record_handled(&mut self) {
        if let Some(marks) = self.handled.take_dirty() {
            if let Err(e) = self.kernel.set_handled(marks).await {
                tracing::warn!(error = %ErrorChain(&e), "recording the records written out failed");
            }
        }
    }

    /// Held-back records, full maps and unreported file events: into metrics and status at
    /// once, and as events every [`REPORT_EVERY`].
    pub(super) async fn report_pressure(&mut self, c: &Counters) {
        self.metrics
            .set_records_suppressed(c[COUNTER_SUPPRESSED as usize]);
        match self.kernel.take_suppressed().await {
            Ok(taken) => {
                for s in taken {
                    self.pressure
                        .suppressed
                        .entry(s.cgroup_id)
                        .or_default()
                        .push(s);
                }
            }
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "reading held-back record counts failed")
            }
        }
        let (unreported, file_errors) = match &self.files {
            Some(f) => (
                f.counters()
                    .unreported
                    .load(std::sync::atomic::Ordering::Relaxed),
                f.counters()
                    .read_errors
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            None => (0, 0),
        };
        if let Ok(mut s) = self.status.lock() {
            s.losses.kernel_records_suppressed = c[COUNTER_SUPPRESSED as usize];
            s.losses.held_map_full = c[COUNTER_HELD_FULL as usize];
            s.losses.origin_map_full = c[COUNTER_ORIGIN_FULL as usize];
            s.losses.init_map_full = c[COUNTER_INIT_FULL as usize];
            s.losses.file_events_unreported = unreported;
            s.losses.file_read_errors = file_errors;
        }
        if self.pressure.last_report.elapsed() < REPORT_EVERY {
            return;
        }
        self.pressure.last_report = Instant::now();
        for (index, map, what) in [
            (COUNTER_HELD_FULL, MAP_HELD_EXECS, "execs of new containers ran without being held for their own profile (the default profile decided)"),
            (COUNTER_ORIGIN_FULL, MAP_TASK_ORIGIN, "process origins were not recorded (their children inherit them from their parent at exec)"),
            (COUNTER_INIT_FULL, MAP_CONTAINER_INIT, "container inits were not recorded: their processes are not judged as docker exec sessions"),
        ] {
            let (now, before) = (c[index as usize], self.pressure.counters[index as usize]);
            if now > before {
                self.metrics.add_map_full(map, now - before);
                self.agent_event(
                    Action::Allowed,
                    Severity::High,
                    format!("kernel map {map} is full: {} {what}", now - before),
                );
            }
        }
        self.pressure.counters = *c;
        if unreported > self.pressure.file_unreported {
            let n = unreported - self.pressure.file_unreported;
            self.metrics.add_file_unreported(n);
            self.agent_event(
                Action::Allowed,
                Severity::High,
                format!("{n} file opens were answered under their profile but not reported one by one: the event pipeline was full"),
            );
            self.pressure.file_unreported = unreported;
        }
        if file_errors > self.pressure.file_errors {
            let n = file_errors - self.pressure.file_errors;
            self.agent_event(
                Action::Allowed,
                Severity::High,
                format!("{n} fanotify reads failed and were retried; the kernel denied the opens it could not hand over"),
            );
            self.pressure.file_errors = file_errors;
        }
        let skipped = self.handled.skipped();
        if skipped > self.pressure.sequence_skipped {
            let n = skipped - self.pressure.sequence_skipped;
            tracing::error!(
                missing = n,
                "kernel record numbers never arrived although later ones did"
            );
            self.agent_event(
                Action::Allowed,
                Severity::High,
                format!("{n} kernel events numbered by the kernel never reached the agent although later ones did: lost"),
            );
            self.pressure.sequence_skipped = skipped;
        }
        self.report_suppressed();
    }

    /// One event per container whose allowed records were held back since the last report.
    fn report_suppressed(&mut self) {
        let taken = std::mem::take(&mut self.pressure.suppressed);
        for (cg, entries) in taken {
            let total: u64 = entries.iter().map(|s| s.count).sum();
            let mut by_kind: BTreeMap<&'static str, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
            for s in &entries {
                let k = by_kind.entry(kind_name(s.kind)).or_default();
                k.0 += s.count;
                let comm = if s.comm.is_empty() {
                    "(kernel)".to_string()
                } else {
                    s.comm.clone()
                };
                *k.1.entry(comm).or_default() += s.count;
            }
            let detail: Vec<String> = by_kind
                .iter()
                .map(|(kind, (n, comms))| {
                    let mut top: Vec<(&String, &u64)> = comms.iter().collect();
                    top.sort_by(|a, b| b.1.cmp(a.1));
                    let top: Vec<String> = top
                        .iter()
                        .take(5)
                        .map(|(c, n)| format!("{c} {n}"))
                        .collect();
                    format!("{kind} {n} ({})", top.join(", "))
                })
                .collect();
            let who = self
                .containers
                .get(cg)
                .map(|c| format!("container {} ({})", c.name, c.image))
                .unwrap_or_else(|| format!("container cgroup {cg}"));
            tracing::warn!(
                container_cgroup_id = cg,
                suppressed = total,
                "allowed kernel records held back"
            );
            let mut ev = self.events.event(
                Kind::Agent,
                Action::Allowed,
                "agent",
                Severity::Medium,
                format!(
                    "{who}: {total} allowed kernel events counted, not sent one by one (over its budget of {} per second, or the ring buffer over half full): {}",
                    self.cfg.event_budget,
                    detail.join("; ")
                ),
            );
            ev.container = self.containers.get(cg).map(|c| c.to_event());
            self.emit(ev);
        }
    }

    /// Removes the kernel map entries of containers whose cgroup is gone (a `die` the engine
    /// stream lost, a container that lived while no agent ran), every [`COLLECT_EVERY`] or
    /// at once when `now`.
    pub(super) async fn collect_dead_containers(&mut self, now: bool) {
        if !now && self.pressure.last_collect.elapsed() < COLLECT_EVERY {
            return;
        }
        if crate::failpoint::armed("no_dead_container_collection").is_some() {
            // A test fills the maps with entries of cgroups that never existed.
            return;
        }
        self.pressure.last_collect = Instant::now();
        // Keys first, then the live cgroups: a key of a cgroup made after this listing is
        // seen alive (cgroup ids are never reused), so no live container loses its entries.
        let keys = match self.kernel.container_keys().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "listing the per-container maps failed");
                return;
            }
        };
        let Some(live) = live_cgroups(self.parents.parents.iter().map(|p| p.dir.as_path())) else {
            // A parent that cannot be read: nothing below it can be judged dead.
            return;
        };
        let dead: HashSet<u64> = keys
            .policies
            .iter()
            .chain(keys.inits.iter())
            .chain(keys.roots.iter())
            .copied()
            .filter(|cg| !live.contains(cg) && Some(*cg) != self.own_cgroup)
            .collect();
        for cg in &dead {
            if let Err(e) = self.kernel.remove_container(*cg).await {
                tracing::warn!(error = %ErrorChain(&e), "removing a dead container's entries failed");
            }
            if let Some(id) = self.containers.get(*cg).map(|c| c.id.clone()) {
                self.stopped(&id).await;
            }
            self.held.remove(cg);
        }
        if !dead.is_empty() {
            tracing::info!(
                removed = dead.len(),
                "removed kernel entries of containers that ended unseen"
            );
            if let Ok(mut s) = self.status.lock() {
                s.losses.stale_container_entries_removed += dead.len() as u64;
            }
        }
        self.refresh_map_usage().await;
    }

    async fn refresh_map_usage(&mut self) {
        let Ok(usage) = self.kernel.usage().await else {
            return;
        };
        for m in &usage {
            self.metrics.set_map_usage(&m.name, m.entries, m.capacity);
        }
        let held = usage
            .iter()
            .find(|m| m.name == MAP_HELD_EXECS)
            .map_or(0, |m| m.entries);
        if let Ok(mut s) = self.status.lock() {
            s.losses.held_execs = held;
            s.losses.maps = usage;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_cgroups_are_found_at_any_depth_and_an_unreadable_parent_judges_nothing() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("kubepods/burstable/pod1/ctr");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), "").unwrap();
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        let live = live_cgroups(std::iter::once(root.path())).unwrap();
        assert!(live.contains(&ino(&deep)));
        assert!(live.contains(&ino(&root.path().join("kubepods"))));
        assert_eq!(live.len(), 4, "directories only");
        let gone = root.path().join("gone");
        assert!(live_cgroups([root.path(), gone.as_path()].into_iter()).is_none());
    }
}
