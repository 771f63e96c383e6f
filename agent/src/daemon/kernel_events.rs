//! Records from the kernel and from fanotify: table bookkeeping, held execs decided under the
//! container's own profile, the kernel's counters, and the events the builder makes of them.

use std::time::Instant;

use nix::{sys::signal::Signal, unistd::Pid};
use seawall_proto::event::{Action, Severity};
use seawall_service::ErrorChain;

use super::{containers::LOOKUP_WAIT, Daemon};
use crate::{
    fanotify::FileEvent,
    kernel::decode::{Header, KernelEvent},
    output::{clock::Clock, file_event},
    policy::verdict,
    runtime::procs::ProcessInfo,
};

impl Daemon {
    /// One kernel record.
    pub(super) async fn on_kernel(&mut self, ev: KernelEvent) {
        match &ev {
            KernelEvent::CgroupMkdir { id, path, .. } => {
                // A new container: its policy before its first exec. A cgroup a container
                // makes inside its own is not another container (it is in the outer one).
                let full = self.parents.root.join(path.trim_start_matches('/'));
                if let Some(dir) = self.container_dir(path).filter(|d| *d == full) {
                    self.add_by_dir(*id, dir).await;
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
                self.procs.insert(
                    header.pid,
                    ProcessInfo {
                        ppid: header.ppid,
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
        if let KernelEvent::Exec { flags, .. } = &ev {
            if flags & agent_common::EXEC_HELD != 0 {
                if self.containers.get(cg).is_none() && self.awaiting_cgroup(cg) {
                    // Its source has not answered yet: decide once its profile is known.
                    self.held.entry(cg).or_default().push((ev, Instant::now()));
                    return;
                }
                self.release_and_emit(ev);
                return;
            }
        }
        self.emit_kernel(&ev);
    }

    fn emit_kernel(&mut self, ev: &KernelEvent) {
        if let Some(mut out) = self.events.kernel_event(ev, &self.containers, &self.procs) {
            self.annotate_intel(ev, &mut out);
            self.emit(out);
        }
    }

    /// Releases the execs held for a container that is now registered.
    pub(super) fn release_held_for(&mut self, cgroup_id: u64) {
        for (ev, _) in self.held.remove(&cgroup_id).unwrap_or_default() {
            self.release_and_emit(ev);
        }
    }

    /// Held execs whose container never got its own profile in time: decided under the
    /// default profile.
    pub(super) async fn release_expired_holds(&mut self) {
        let late: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, evs)| evs.iter().any(|(_, t)| t.elapsed() > LOOKUP_WAIT))
            .map(|(cg, _)| *cg)
            .collect();
        for cg in late {
            tracing::warn!(
                container_cgroup_id = cg,
                "held exec waited too long for its container's profile: deciding under the default profile"
            );
            self.release_held_for(cg);
        }
    }

    fn release_and_emit(&mut self, mut ev: KernelEvent) {
        if let KernelEvent::Exec {
            header,
            flags,
            path_bytes,
            ..
        } = &mut ev
        {
            // Its file controls first (mounts, marks), then its verdict: nothing of the
            // container runs before both.
            self.prepare_at_first_exec(header.container_cgroup_id, header.pid);
            let (flags, path) = (*flags, path_bytes.clone());
            self.release_held(header, flags, &path);
        }
        self.emit_kernel(&ev);
    }

    /// A process the kernel stopped at its first instruction because its container's own
    /// policy was not written yet: decide under the container's profile, then kill or resume.
    fn release_held(&mut self, header: &mut Header, flags: u32, path: &[u8]) {
        let cg = header.container_cgroup_id;
        let profile = match self.containers.get(cg) {
            Some(c) => self
                .profiles
                .profiles()
                .find(|p| p.name == c.profile)
                .unwrap_or_else(|| self.profiles.default_profile()),
            None => self.profiles.default_profile(),
        };
        let (control, action) = verdict::exec_verdict(profile, flags, path);
        let (control, action) = self.held_exec_intel(header, control, action);
        header.control = control;
        header.action = action;
        // Signal only the process the kernel held, and only while it is still in that
        // container's cgroup (it cannot have been replaced while stopped, but check anyway).
        if !self.pid_in_container(header.pid, cg) {
            return;
        }
        let signal = if action == agent_common::ACTION_BLOCKED {
            Signal::SIGKILL
        } else {
            Signal::SIGCONT
        };
        if let Err(e) = nix::sys::signal::kill(Pid::from_raw(header.pid as i32), signal) {
            tracing::warn!(pid = header.pid, %signal, error = %e, "releasing a held process failed");
        }
        tracing::debug!(
            pid = header.pid,
            container_cgroup_id = cg,
            %signal,
            "released held process"
        );
    }

    /// One fanotify record.
    pub(super) fn on_file(&mut self, fev: FileEvent) {
        if let Some(ev) =
            file_event::to_event(&fev, &mut self.events, &self.containers, &self.procs)
        {
            self.emit(ev);
        }
    }

    /// The kernel's counters and the spool's state, into metrics, status and, when events
    /// were lost, an event.
    pub(super) async fn poll_counters(&mut self) {
        let c = match self.kernel.counters().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "reading the kernel's counters failed");
                return;
            }
        };
        let drops = c[agent_common::COUNTER_RINGBUF_DROPS as usize];
        self.metrics.set_ringbuf_drops(drops);
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
            self.metrics.set_spool(
                st.spool_depth_events,
                st.dropped_total,
                st.lag_seconds as f64,
            );
            let dropped = d.take_dropped();
            if dropped > 0 {
                let seq = self.events.next_seq();
                let ev = seawall_delivery::dropped_event(
                    seq,
                    Clock::now(),
                    self.events.node.clone(),
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
}
