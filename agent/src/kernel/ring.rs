//! The ring-buffer reader: a task that waits for the kernel's ring buffer to become readable
//! and forwards decoded records, in order.

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::decode::{self, KernelEvent};

/// Reads the ring buffer as it becomes readable and forwards decoded events, in order.
pub async fn read_ring(ring: RingBuf<MapData>, tx: mpsc::Sender<KernelEvent>) {
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
