//! Execs the kernel held: a new container's exec stopped (SIGSTOP) before its first
//! instruction because the container's own policy was not written yet. The kernel records each
//! hold in `HELD_EXECS` before it stops the process, so no hold is ever stranded:
//!
//! - its ring record arrives: it is decided under the container's profile once the container
//!   is registered, or under the default profile when the engine has not answered in time
//!   ([`ENGINE_WAIT`] while the engine is up, [`LOOKUP_WAIT`] while it is unreachable);
//! - its record never arrives (the ring was full, the agent read it and crashed): the sweep on
//!   every tick decides each hold older than [`HOLD_DEADLINE`] (and whose container is not
//!   waiting for its engine any more) under the container's policy as it is then, and reports
//!   the exec from the kernel's copy of the record;
//! - the agent dies: the next agent's sweep does the same (the map is pinned);
//! - the agent stops: it tells the kernel to hold nothing more, then decides every hold;
//! - no agent comes back: the kernel holds nothing once the heartbeat is 2 s old, but what it
//!   held before stays stopped until an agent starts (systemd's `Restart=` brings one back),
//!   `seawall uninstall` resumes them, or the container is stopped (SIGKILL works on a stopped
//!   process).
//!
//! A hold is decided once: the loop checks the kernel still holds it before it signals, and
//! removes it after; holds the sweep decided are remembered so their late ring record is not
//! reported twice.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use seawall_service::ErrorChain;

use super::{
    containers::{ENGINE_WAIT, LOOKUP_WAIT},
    Daemon,
};
use crate::{kernel::decode::KernelEvent, policy::verdict};

/// How long a hold may wait for its ring record's decision before the sweep takes it. Longer
/// than [`LOOKUP_WAIT`], after which a record's own decision falls back to the default profile;
/// a hold whose container still waits for its engine is left to that wait (up to
/// [`ENGINE_WAIT`]).
pub(super) const HOLD_DEADLINE: Duration = Duration::from_secs(8);
/// Holds decided by the sweep remembered at most (their ring record may still come).
const SWEPT_MEMORY: usize = 4096;

/// Which path decides a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decider {
    /// Its ring record.
    Record,
    /// The sweep of `HELD_EXECS` (the record was lost, or the agent is stopping).
    Sweep,
}

/// Holds the sweep decided, oldest first.
#[derive(Debug, Default)]
pub(super) struct Swept {
    set: HashSet<(u32, u64)>,
    order: VecDeque<(u32, u64)>,
}

impl Swept {
    fn insert(&mut self, key: (u32, u64)) {
        if self.set.insert(key) {
            self.order.push_back(key);
        }
        while self.order.len() > SWEPT_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, key: &(u32, u64)) -> bool {
        self.set.contains(key)
    }
}

/// `CLOCK_BOOTTIME` in ns, the clock of `ktime_ns`.
fn boot_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl Daemon {
    /// A held exec's ring record: decided now, or once its container's lookup answers.
    pub(super) async fn on_held(&mut self, ev: KernelEvent) {
        let cg = ev.header().container_cgroup_id;
        if self.containers.get(cg).is_none() && self.awaiting_cgroup(cg) {
            self.held.entry(cg).or_default().push((ev, Instant::now()));
            return;
        }
        self.decide_hold(ev, Decider::Record).await;
    }

    /// Decides the holds waiting for a container that is now registered.
    pub(super) async fn release_held_for(&mut self, cgroup_id: u64) {
        for (ev, _) in self.held.remove(&cgroup_id).unwrap_or_default() {
            self.decide_hold(ev, Decider::Record).await;
        }
    }

    /// Holds whose container never got its own profile in time (its wait ended without a
    /// registration, or outlived [`ENGINE_WAIT`]): the default profile decides.
    pub(super) async fn release_expired_holds(&mut self) {
        let late: Vec<u64> = self
            .held
            .iter()
            .filter(|(cg, evs)| {
                evs.iter().any(|(_, t)| {
                    let waited = t.elapsed();
                    waited > ENGINE_WAIT || (waited > LOOKUP_WAIT && !self.awaiting_cgroup(**cg))
                })
            })
            .map(|(cg, _)| *cg)
            .collect();
        for cg in late {
            tracing::warn!(
                container_cgroup_id = cg,
                "held exec waited too long for its container's profile: deciding under the default profile"
            );
            self.release_held_for(cg).await;
        }
    }

    /// Decides the holds in `HELD_EXECS` older than [`HOLD_DEADLINE`] (every one, when
    /// `all`), whatever became of their ring records.
    pub(super) async fn sweep_holds(&mut self, all: bool) {
        let holds = match self.kernel.held_execs().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "reading the held execs failed");
                return;
            }
        };
        let now = boot_ns();
        for hold in holds {
            let age = Duration::from_nanos(now.saturating_sub(hold.ktime_ns));
            if !all && age < HOLD_DEADLINE {
                continue;
            }
            // Its record is here, waiting with its container for the engine's answer.
            let waiting = self.awaiting_cgroup(hold.record.header().container_cgroup_id);
            if !all && waiting && age < ENGINE_WAIT + HOLD_DEADLINE - LOOKUP_WAIT {
                continue;
            }
            tracing::warn!(pid = hold.pid, held_for = ?age, "a held exec's record was not handled in time: deciding it from the kernel's copy");
            self.decide_hold(hold.record, Decider::Sweep).await;
        }
    }

    /// Decides one hold under its container's profile, resumes or kills the process, and
    /// reports the exec, once.
    async fn decide_hold(&mut self, mut ev: KernelEvent, by: Decider) {
        let KernelEvent::Exec {
            header,
            flags,
            path_bytes,
            ..
        } = &mut ev
        else {
            return;
        };
        let (pid, ktime_ns) = (header.pid, header.ktime_ns);
        let still_held = match self.kernel.is_held(pid, ktime_ns).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "reading a held exec failed");
                true
            }
        };
        if !still_held {
            if by == Decider::Record && self.swept.contains(&(pid, ktime_ns)) {
                return; // decided and reported by the sweep already
            }
            // Gone while held (it was killed): nothing to signal, the exec is still reported.
            self.emit_kernel(&ev);
            return;
        }
        let cg = header.container_cgroup_id;
        // Its file controls first (mounts, marks), then its verdict: nothing of the container
        // runs before both.
        self.prepare_at_first_exec(cg, pid);
        let profile = match self.containers.get(cg) {
            Some(c) => self
                .profiles
                .profiles()
                .find(|p| p.name == c.profile)
                .unwrap_or_else(|| self.profiles.default_profile()),
            None => self.profiles.default_profile(),
        };
        let (control, action) = verdict::exec_verdict(profile, *flags, &path_bytes[..]);
        let (control, action) = self.held_exec_intel(header, control, action);
        header.control = control;
        header.action = action;
        // Signal only the process the kernel held, and only while it is still in that
        // container's cgroup.
        if self.pid_in_container(pid, cg) {
            let signal = if action == agent_common::ACTION_BLOCKED {
                Signal::SIGKILL
            } else {
                Signal::SIGCONT
            };
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal) {
                tracing::warn!(pid, %signal, error = %e, "releasing a held process failed");
            }
            tracing::debug!(pid, container_cgroup_id = cg, %signal, ?by, "released held process");
        }
        if let Err(e) = self.kernel.forget_held(pid, ktime_ns).await {
            tracing::error!(pid, error = %ErrorChain(&e), "forgetting a decided hold failed");
        }
        if by == Decider::Sweep {
            self.swept.insert((pid, ktime_ns));
        }
        self.emit_kernel(&ev);
    }
}
