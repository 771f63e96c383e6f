//! Liveness of a daemon's moving parts, and the systemd watchdog tied to it.
//!
//! Each component (an event loop, a reader thread, a worker) registers under a name with a
//! bound and calls [`Liveness::beat`] whenever it makes progress, and on a timer when it has
//! nothing to do, so an idle component still shows it is alive. [`Health::check`] passes only
//! while every registered component has beaten within its bound; a component whose
//! [`Liveness`] was dropped (its task or thread ended) fails it at once. [`watchdog`] pings
//! `WATCHDOG=1` only while the check passes, so systemd restarts a daemon with a wedged part.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::time::MissedTickBehavior;

use crate::notify::Notifier;

/// `last` value of a component whose [`Liveness`] was dropped.
const ENDED: u64 = u64::MAX;

/// One registered component.
#[derive(Debug)]
struct Component {
    name: &'static str,
    bound: Duration,
    /// Nanoseconds since `Health::epoch` of the last beat, or [`ENDED`].
    last: Arc<AtomicU64>,
}

/// The registry of components. Cheap to clone; clones share the components.
#[derive(Debug, Clone)]
pub struct Health {
    epoch: Instant,
    // A std Mutex: held only to push or scan a short list, never across an await.
    components: Arc<Mutex<Vec<Component>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// The handle a component beats with. Dropping it says the component ended.
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Liveness {
    /// Records progress now.
    pub fn beat(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        // `ENDED` is only ever stored by drop, which cannot race with a beat on the same handle.
        self.last.store(now, Ordering::Relaxed);
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.last.store(ENDED, Ordering::Relaxed);
    }
}

/// Why the daemon is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    /// `component` has not made progress for `silent_for`, longer than its bound.
    Stalled {
        component: &'static str,
        silent_for: Duration,
    },
    /// `component` ended (its task or thread is gone).
    Ended { component: &'static str },
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Stalled {
                component,
                silent_for,
            } => write!(f, "{component} made no progress for {silent_for:.1?}"),
            Unhealthy::Ended { component } => write!(f, "{component} ended"),
        }
    }
}

impl Health {
    /// An empty registry: healthy until a component registers.
    pub fn new() -> Health {
        Health {
            epoch: Instant::now(),
            components: Arc::default(),
        }
    }

    /// Registers `name`, which must beat at least every `bound`. It counts as having just
    /// beaten.
    pub fn register(&self, name: &'static str, bound: Duration) -> Liveness {
        let last = Arc::new(AtomicU64::new(self.epoch.elapsed().as_nanos() as u64));
        self.components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Component {
                name,
                bound,
                last: last.clone(),
            });
        Liveness {
            epoch: self.epoch,
            last,
        }
    }

    /// Passes while every component has beaten within its bound; otherwise the first that has
    /// not, in registration order.
    pub fn check(&self) -> Result<(), Unhealthy> {
        let now = self.epoch.elapsed();
        let components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        for c in components.iter() {
            let last = c.last.load(Ordering::Relaxed);
            if last == ENDED {
                return Err(Unhealthy::Ended { component: c.name });
            }
            let silent_for = now.saturating_sub(Duration::from_nanos(last));
            if silent_for > c.bound {
                return Err(Unhealthy::Stalled {
                    component: c.name,
                    silent_for,
                });
            }
        }
        Ok(())
    }
}

/// Pings `WATCHDOG=1` every `interval` (use [`crate::notify::watchdog_interval`]) while
/// `health` passes, until `shutdown` resolves. A failing check skips the ping, so systemd
/// restarts a daemon that stays unhealthy for `WatchdogSec`; transitions are logged once.
pub async fn watchdog(
    notifier: Notifier,
    interval: Duration,
    health: Health,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    // After a stall, ping once and resume the cadence rather than bursting missed pings.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut healthy = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match health.check() {
            Ok(()) => {
                if !healthy {
                    tracing::info!("every component makes progress again: feeding the watchdog");
                    healthy = true;
                }
                notifier.watchdog();
            }
            Err(why) => {
                if healthy {
                    tracing::error!(reason = %why, "unhealthy: not feeding the watchdog, systemd will restart us");
                    healthy = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_while_every_component_beats_within_its_bound() {
        let health = Health::new();
        assert_eq!(health.check(), Ok(()));
        let fast = health.register("event loop", Duration::from_millis(50));
        let slow = health.register("ring reader", Duration::from_secs(60));
        assert_eq!(health.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        match health.check() {
            Err(Unhealthy::Stalled { component, .. }) => assert_eq!(component, "event loop"),
            other => panic!("{other:?}"),
        }
        fast.beat();
        slow.beat();
        assert_eq!(health.check(), Ok(()));
    }

    #[test]
    fn a_component_that_ended_fails_the_check_at_once() {
        let health = Health::new();
        let owner = health.register("kernel owner", Duration::from_secs(60));
        drop(owner);
        assert_eq!(
            health.check(),
            Err(Unhealthy::Ended {
                component: "kernel owner"
            })
        );
        assert_eq!(
            health.check().unwrap_err().to_string(),
            "kernel owner ended"
        );
    }
}
