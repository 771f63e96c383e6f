//! The orderly end of the agent: the kernel holds nothing more, what was read is written out,
//! every hold is decided, and how far the records written out reach is recorded for the next
//! agent.

use std::time::Duration;

use seawall_proto::event::{Action, Severity};
use seawall_service::ErrorChain;
use tokio::sync::{mpsc, watch};

use super::Daemon;
use crate::kernel::ring::RingItem;

/// How long the records still coming are written out before the reader is stopped.
const DRAIN_FOR: Duration = Duration::from_secs(2);
/// A pause this long in the records means the drain is done.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

impl Daemon {
    /// Everything the agent owes before it stops; `ring_stop` stops the ring reader.
    pub(super) async fn finish(
        &mut self,
        kernel_rx: &mut mpsc::Receiver<RingItem>,
        ring_stop: watch::Sender<bool>,
    ) {
        // No new holds from here on: nobody would decide them.
        if let Err(e) = self.kernel.stop_holding().await {
            tracing::error!(error = %ErrorChain(&e), "telling the kernel to hold nothing more failed");
        }
        // What the reader forwarded, and what is still coming for a little while.
        let deadline = tokio::time::Instant::now() + DRAIN_FOR;
        while let Ok(Some(item)) = tokio::time::timeout(DRAIN_QUIET, kernel_rx.recv()).await {
            self.on_ring(item).await;
            if tokio::time::Instant::now() > deadline {
                break;
            }
        }
        let _ = ring_stop.send(true);
        // The reader ends at its next turn and drops its sender; take what it sent meanwhile.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, kernel_rx.recv()).await {
            self.on_ring(item).await;
        }
        // Every exec still held is decided now, under its container's policy.
        self.sweep_holds(true).await;
        self.agent_event(Action::Allowed, Severity::Info, "agent stopping".into());
        self.sinks.flush();
        self.record_handled().await;
    }
}
