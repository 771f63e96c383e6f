//! The ring-buffer reader: a task that waits for the kernel's ring buffer to become readable
//! and forwards decoded records, in order.

use std::{future::Future, time::Duration};

use aya::maps::{MapData, RingBuf};
use seawall_service::health::Liveness;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::decode::{self, KernelEvent};

/// How often an idle reader still shows it is alive.
const IDLE_BEAT: Duration = Duration::from_secs(1);

/// Reads the ring buffer as it becomes readable and forwards decoded events, in order, until
/// `stop` resolves or the receiver goes. Beats `liveness` on every wake-up, and every second
/// when there is nothing to read.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<KernelEvent>,
    liveness: Liveness,
    stop: impl Future<Output = ()>,
) {
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
    let mut idle = tokio::time::interval(IDLE_BEAT);
    tokio::pin!(stop);
    loop {
        liveness.beat();
        let mut guard = tokio::select! {
            _ = &mut stop => return,
            _ = idle.tick() => continue,
            ready = fd.readable_mut() => match ready {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "polling the kernel ring buffer failed");
                    return;
                }
            },
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
