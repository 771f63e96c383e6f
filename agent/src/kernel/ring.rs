//! The ring-buffer reader: a task that waits for the kernel's ring buffer to become readable
//! and forwards decoded records, in order.
//!
//! The channel to the event loop is bounded and the reader waits when it is full, so a flood
//! backs up into the kernel's ring, where the programs' priorities apply (`agent-ebpf`'s
//! `emit`: blocked and audited records keep their room) instead of growing the agent's memory.

use std::{future::Future, time::Duration};

use aya::maps::{MapData, RingBuf};
use seawall_service::health::Liveness;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::decode::{self, KernelEvent};
use crate::failpoint;

/// How often an idle reader still shows it is alive.
const IDLE_BEAT: Duration = Duration::from_secs(1);

/// Records waiting between the reader and the event loop.
pub const CHANNEL_DEPTH: usize = 8192;
/// Records read per wake-up at most.
const BATCH: usize = 4096;

/// What the reader forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingItem {
    /// One decoded record.
    Record(KernelEvent),
    /// Everything that was in the ring when the reader started has been forwarded: what an
    /// earlier agent left behind is read, so the gap it left can be counted.
    BacklogRead,
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("cannot poll the kernel ring buffer")]
    Register(#[source] std::io::Error),
    #[error("polling the kernel ring buffer failed")]
    Poll(#[source] std::io::Error),
    #[error("the event loop stopped taking records")]
    Closed,
    #[error("failpoint ring_reader_exit")]
    Failpoint,
}

/// Reads the ring buffer as it becomes readable and forwards decoded records, in order, until
/// `stop` resolves (`Ok`) or it cannot go on (`Err`: the daemon treats that as fatal). Beats
/// `liveness` on every wake-up, and every second when there is nothing to read.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<RingItem>,
    liveness: Liveness,
    stop: impl Future<Output = ()>,
) -> Result<(), RingError> {
    // SAFETY: the ring buffer owns its map fd and keeps it open for as long as it lives, which
    // is as long as the AsyncFd that owns it.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| RingError::Register(e.into_parts().1))?;
    let mut idle = tokio::time::interval(IDLE_BEAT);
    let abort_after = failpoint::armed_number("abort_after_ring_records");
    let mut read_total: u64 = 0;
    let mut backlog_pending = true;
    tokio::pin!(stop);
    loop {
        liveness.beat();
        // Once the backlog is read, i.e. with the agent up and running.
        if failpoint::armed("ring_reader_exit").is_some() && !backlog_pending {
            return Err(RingError::Failpoint);
        }
        // The backlog: whatever the ring held at start is readable at once.
        let first = backlog_pending;
        let mut guard = tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = idle.tick(), if !first => continue,
            ready = fd.readable_mut() => ready.map_err(RingError::Poll)?,
            // Nothing left behind: the backlog is empty.
            _ = tokio::time::sleep(Duration::from_millis(50)), if first => {
                backlog_pending = false;
                tx.send(RingItem::BacklogRead).await.map_err(|_| RingError::Closed)?;
                continue;
            }
        };
        let ring = guard.get_inner_mut();
        let mut batch = Vec::new();
        let mut more = false;
        loop {
            if batch.len() >= BATCH {
                // Producers can refill the ring as fast as it is read: take a bounded batch
                // and come back (the fd stays ready), so memory stays bounded.
                more = true;
                break;
            }
            let Some(item) = ring.next() else { break };
            read_total += 1;
            let decoded = decode::decode(&item);
            // The record leaves the ring when its item is dropped.
            drop(item);
            if abort_after.is_some_and(|n| read_total >= n) {
                // Read (consumed from the ring) and never handled: what a crash does.
                tracing::error!(read_total, "failpoint abort_after_ring_records: aborting");
                std::process::abort();
            }
            match decoded {
                Ok(ev) if drop_on_purpose(&ev) => {}
                Ok(ev) => batch.push(RingItem::Record(ev)),
                Err(e) => tracing::error!(error = %e, "undecodable kernel record skipped"),
            }
        }
        if !more {
            guard.clear_ready();
        }
        if backlog_pending && !more {
            backlog_pending = false;
            batch.push(RingItem::BacklogRead);
        }
        for item in batch {
            tx.send(item).await.map_err(|_| RingError::Closed)?;
        }
    }
}

/// Failpoint `drop_held_exec`: a held exec's record vanishes as if the ring had dropped it.
fn drop_on_purpose(ev: &KernelEvent) -> bool {
    matches!(ev, KernelEvent::Exec { flags, .. } if flags & agent_common::EXEC_HELD != 0)
        && failpoint::armed("drop_held_exec").is_some()
}
