//! Records from the kernel and from fanotify: table bookkeeping, held execs (`held.rs`), the
//! kernel's counters, and the events the builder makes of them.

use seawall_proto::event::{Action, Severity};
use seawall_service::ErrorChain;

use super::Daemon;
use crate::{
    fanotify::FileEvent,
    kernel::{decode::KernelEvent, ring::RingItem},
    output::{clock::Clock, file_event},
    runtime::procs::ProcessInfo,
};

impl Daemon {
    /// One item from the ring reader.
    pub(super) async fn on_ring(&mut self, item: RingItem) {
        match item {
            RingItem::Record(ev) => {
                self.handled.record(ev.header().seq);
                self.on_kernel(ev).await;
            }
            RingItem::BacklogRead => self.on_backlog_read(),
        }
    }

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
                self.on_held(ev).await;
                return;
            }
        }
        self.emit_kernel(&ev);
    }

    pub(super) fn emit_kernel(&mut self, ev: &KernelEvent) {
        if let Some(mut out) = self.events.kernel_event(ev, &self.containers, &self.procs) {
            self.annotate_intel(ev, &mut out);
            self.emit(out);
        }
    }

    /// One fanotify record.
    pub(super) fn on_file(&mut self, fev: FileEvent) {
        if let Some(secs) = crate::failpoint::armed_number("stall_event_loop_on_file") {
            static STALLED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !STALLED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    secs,
                    "failpoint stall_event_loop_on_file: the event loop stalls"
                );
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
        }
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
        self.report_pressure(&c).await;
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
