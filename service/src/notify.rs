//! systemd's service notification protocol (`sd_notify(3)`) through the `sd-notify` crate.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd as `Type=notify`) there is no [`Notifier`],
//! so a daemon calls these only when it has one. Failures are logged, never fatal: a service
//! manager that went away must not take the daemon with it.

use std::time::Duration;

use sd_notify::NotifyState;

/// One notification, owned so it can cross to the sender thread.
#[derive(Debug)]
enum Message {
    Ready(String),
    Reloading,
    Stopping,
    Status(String),
    Watchdog,
}

/// Notifications queued for the sender thread; beyond this the manager is wedged and further
/// messages are dropped (and logged) rather than blocking the daemon.
const QUEUE: usize = 16;

/// The service manager's notification socket, as `$NOTIFY_SOCKET` names it (a path socket).
///
/// `sd_notify` blocks while the manager's socket queue is full; so messages go, in order, to
/// a small thread of their own and never block the caller. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: std::sync::mpsc::SyncSender<Message>,
}

impl Notifier {
    /// A notifier when `$NOTIFY_SOCKET` is set and not empty. The variable stays in the
    /// environment: removing it is unsound once threads run, and our daemons spawn no children.
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty())?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                // Ends when every Notifier is dropped.
                for message in rx {
                    send(&message);
                }
            });
        match spawned {
            Ok(_) => Some(Notifier { tx }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the service manager notifier: notifications disabled");
                None
            }
        }
    }

    /// `READY=1` with a status line: start-up (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        self.queue(Message::Ready(one_line(status)));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253+ requires both); send
    /// [`Notifier::ready`] when the reload is done, whether it was accepted or not.
    pub fn reloading(&self) {
        self.queue(Message::Reloading);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.queue(Message::Stopping);
    }

    /// `STATUS=`: one line shown by `systemctl status` (newlines become spaces, so the text
    /// cannot inject another assignment).
    pub fn status(&self, text: &str) {
        self.queue(Message::Status(one_line(text)));
    }

    /// `WATCHDOG=1`: the daemon is alive and healthy. Use [`crate::health::watchdog`], which
    /// pings only while every component is.
    pub fn watchdog(&self) {
        self.queue(Message::Watchdog);
    }

    fn queue(&self, message: Message) {
        if let Err(error) = self.tx.try_send(message) {
            tracing::warn!(
                ?error,
                "service manager is not reading notifications: one dropped"
            );
        }
    }
}

fn send(message: &Message) {
    let result = match message {
        Message::Ready(status) => {
            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
        }
        Message::Reloading => NotifyState::monotonic_usec_now()
            .and_then(|now| sd_notify::notify(&[NotifyState::Reloading, now])),
        Message::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Message::Status(text) => sd_notify::notify(&[NotifyState::Status(text)]),
        Message::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
    };
    if let Err(error) = result {
        tracing::warn!(%error, ?message, "service manager notification failed");
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// How often to feed the watchdog: half of `WatchdogSec` (`$WATCHDOG_USEC`), as
/// `sd_watchdog_enabled(3)` recommends, or `None` when it is off or meant for another process
/// (`$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    ping_interval(sd_notify::watchdog_enabled()?)
}

/// Half the watchdog timeout; `None` for a zero timeout (watchdog off).
pub fn ping_interval(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then(|| timeout / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_twice_per_watchdog_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(30)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(ping_interval(Duration::ZERO), None);
    }

    #[test]
    fn status_text_stays_on_one_line() {
        assert_eq!(
            one_line("enforcing\n3 containers"),
            "enforcing 3 containers"
        );
    }
}
