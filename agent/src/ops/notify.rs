//! The systemd service notification protocol (`sd_notify(3)`), spoken directly over the socket.
//!
//! We do not link libsystemd: the protocol is one `AF_UNIX` datagram of `KEY=VALUE` lines sent to the
//! address in `$NOTIFY_SOCKET`, which is either a filesystem path or, with a leading `@`, a name in the
//! abstract namespace. Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call is a
//! no-op, so the daemon can call this unconditionally.
//!
//! The watchdog (`WatchdogSec=`) is fed by [`Notifier::spawn_watchdog`], which pings only while the
//! daemon's own health check passes: a wedged daemon stops pinging and systemd restarts it.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How long a send may block when systemd is slow to drain the socket. `sd_notify` itself blocks;
/// we bound it so a stuck manager cannot stall a runtime worker for ever.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// One assignment of the notification protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyState {
    /// `READY=1`: start-up (or a reload) is complete; policy is enforced.
    Ready,
    /// `RELOADING=1` plus `MONOTONIC_USEC`: a reload has begun; send `Ready` when it is done.
    Reloading,
    /// `STOPPING=1`: shutdown has begun.
    Stopping,
    /// `WATCHDOG=1`: the daemon is alive and healthy.
    Watchdog,
    /// `STATUS=...`: one line of free text shown by `systemctl status`.
    Status(String),
}

impl NotifyState {
    fn write_to(&self, out: &mut String) {
        match self {
            NotifyState::Ready => out.push_str("READY=1\n"),
            NotifyState::Reloading => {
                // systemd uses the timestamp to tell this reload from an earlier one (notify-reload).
                out.push_str("RELOADING=1\n");
                out.push_str(&format!("MONOTONIC_USEC={}\n", monotonic_usec()));
            }
            NotifyState::Stopping => out.push_str("STOPPING=1\n"),
            NotifyState::Watchdog => out.push_str("WATCHDOG=1\n"),
            NotifyState::Status(text) => {
                // A newline would end the assignment and let the text inject another one.
                out.push_str("STATUS=");
                out.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
                out.push('\n');
            }
        }
    }
}

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "NOTIFY_SOCKET {address:?} is not supported: expected an absolute path or @abstract-name"
    )]
    UnsupportedAddress { address: String },
    #[error("cannot create a datagram socket for NOTIFY_SOCKET {address:?}")]
    Socket {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot send {message:?} to NOTIFY_SOCKET {address:?}; is the service manager alive?")]
    Send {
        address: String,
        message: String,
        #[source]
        source: io::Error,
    },
}

/// A handle on the service manager's notification socket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// As given in `$NOTIFY_SOCKET`, for messages.
    address: String,
    target: SocketAddr,
    socket: UnixDatagram,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `None` when the variable is unset or empty (not started by
    /// systemd with `Type=notify`) or unusable (logged). The variable is left in the environment:
    /// removing it is unsound once other threads run, and our children do not inherit it in practice
    /// because the agent spawns none.
    pub fn from_env() -> Option<Notifier> {
        Self::from_var(std::env::var_os("NOTIFY_SOCKET"))
    }

    fn from_var(value: Option<OsString>) -> Option<Notifier> {
        let value = value?;
        if value.is_empty() {
            return None;
        }
        let address = value.to_string_lossy().into_owned();
        match Notifier::new(&address) {
            Ok(notifier) => Some(notifier),
            Err(error) => {
                tracing::warn!(%error, "service manager notifications disabled");
                None
            }
        }
    }

    /// A notifier for an explicit address in `$NOTIFY_SOCKET` syntax: `/path` or `@abstract`.
    pub fn new(address: &str) -> Result<Notifier, NotifyError> {
        let unsupported = || NotifyError::UnsupportedAddress {
            address: address.to_owned(),
        };
        let target = if let Some(name) = address.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| unsupported())?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(|_| unsupported())?
        } else {
            // Includes systemd's `vsock:` addresses, which only matter inside VMs.
            return Err(unsupported());
        };
        let socket_error = |source| NotifyError::Socket {
            address: address.to_owned(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(socket_error)?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                address: address.to_owned(),
                target,
                socket,
            }),
        })
    }

    /// Sends all `states` in one datagram, so systemd applies them together.
    pub fn notify(&self, states: &[NotifyState]) -> Result<(), NotifyError> {
        if states.is_empty() {
            return Ok(());
        }
        let mut message = String::new();
        for state in states {
            state.write_to(&mut message);
        }
        self.inner
            .socket
            .send_to_addr(message.as_bytes(), &self.inner.target)
            .map(drop)
            .map_err(|source| NotifyError::Send {
                address: self.inner.address.clone(),
                message: message.trim_end().to_owned(),
                source,
            })
    }

    /// Feeds the watchdog every `interval` (use [`watchdog_interval`]) for as long as `health`
    /// returns true. When it returns false the ping is skipped, so systemd restarts a daemon that
    /// stays unhealthy for `WatchdogSec`. Abort the returned handle on shutdown.
    pub fn spawn_watchdog<F>(&self, interval: Duration, health: F) -> JoinHandle<()>
    where
        F: Fn() -> bool + Send + 'static,
    {
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            // After a stall, ping once and resume the cadence rather than bursting missed pings.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut healthy = true;
            loop {
                ticks.tick().await;
                let now_healthy = health();
                if now_healthy != healthy {
                    // Log transitions only: a failing check would otherwise log every tick.
                    if now_healthy {
                        tracing::info!("health check passes again; feeding the watchdog");
                    } else {
                        tracing::warn!(
                            "health check fails; not feeding the watchdog, systemd will restart us"
                        );
                    }
                    healthy = now_healthy;
                }
                if healthy {
                    if let Err(error) = notifier.notify(&[NotifyState::Watchdog]) {
                        tracing::warn!(%error, "watchdog ping failed");
                    }
                }
            }
        })
    }
}

/// How often to feed the watchdog: half of `WatchdogSec` (from `$WATCHDOG_USEC`), as
/// `sd_watchdog_enabled(3)` recommends, or `None` when the watchdog is off or meant for another
/// process (`$WATCHDOG_PID` names a different pid).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    if let Some(pid) = pid {
        // An unparsable pid is treated as "not us", as sd_watchdog_enabled does.
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// `CLOCK_MONOTONIC` in microseconds: the clock systemd compares `MONOTONIC_USEC` against.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    debug_assert_eq!(rc, 0);
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A stand-in for systemd: a datagram socket in a tempdir.
    struct Manager {
        _dir: tempfile::TempDir,
        path: String,
        socket: UnixDatagram,
    }

    impl Manager {
        fn new() -> Manager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            Manager {
                path: path.to_str().unwrap().to_owned(),
                _dir: dir,
                socket,
            }
        }

        /// Every datagram queued so far.
        fn drain(&self) -> Vec<String> {
            let mut messages = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match self.socket.recv(&mut buf) {
                    Ok(n) => messages.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return messages,
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
    }

    #[test]
    fn sends_exactly_the_requested_assignments() {
        let manager = Manager::new();
        let notifier = Notifier::from_var(Some(manager.path.clone().into())).unwrap();

        notifier
            .notify(&[
                NotifyState::Ready,
                NotifyState::Status("enforcing\n3 containers".into()),
            ])
            .unwrap();
        notifier.notify(&[NotifyState::Stopping]).unwrap();
        notifier.notify(&[]).unwrap();

        assert_eq!(
            manager.drain(),
            vec![
                "READY=1\nSTATUS=enforcing 3 containers\n".to_owned(),
                "STOPPING=1\n".to_owned(),
            ]
        );
    }

    #[test]
    fn reloading_carries_a_current_monotonic_timestamp() {
        let manager = Manager::new();
        let notifier = Notifier::new(&manager.path).unwrap();
        let before = monotonic_usec();
        notifier.notify(&[NotifyState::Reloading]).unwrap();
        let after = monotonic_usec();

        let messages = manager.drain();
        assert_eq!(messages.len(), 1);
        let lines: Vec<&str> = messages[0].lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .expect("MONOTONIC_USEC line")
            .parse()
            .unwrap();
        assert!(
            (before..=after).contains(&usec),
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn abstract_namespace_address() {
        let name = format!("seawall-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(&format!("@{name}")).unwrap();
        notifier.notify(&[NotifyState::Watchdog]).unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
    }

    #[test]
    fn no_socket_means_no_notifier() {
        assert!(Notifier::from_var(None).is_none());
        assert!(Notifier::from_var(Some(OsString::new())).is_none());
        assert!(Notifier::from_var(Some("vsock:2:1234".into())).is_none());
        assert!(Notifier::from_var(Some("relative/path".into())).is_none());
    }

    #[test]
    fn send_to_a_vanished_manager_is_an_error_not_a_panic() {
        let manager = Manager::new();
        let notifier = Notifier::new(&manager.path).unwrap();
        drop(manager);
        let error = notifier.notify(&[NotifyState::Ready]).unwrap_err();
        assert!(matches!(error, NotifyError::Send { .. }), "{error}");
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_sec_and_only_for_us() {
        let me = 4242;
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, me),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("4242"), me),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("1"), me),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), me),
            None
        );
        assert_eq!(watchdog_interval_from(Some("0"), None, me), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, me), None);
        assert_eq!(watchdog_interval_from(None, Some("4242"), me), None);
    }

    #[tokio::test]
    async fn watchdog_pings_at_its_cadence_only_while_healthy() {
        let manager = Manager::new();
        let notifier = Notifier::new(&manager.path).unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let check = Arc::clone(&healthy);
        let interval = Duration::from_millis(20);
        let watchdog = notifier.spawn_watchdog(interval, move || check.load(Ordering::SeqCst));

        // 20 intervals while healthy: expect about 21 pings. Bounds are wide because a shared CI
        // machine can stall the runtime; the point is "a cadence", not a timing.
        tokio::time::sleep(interval * 20).await;
        let pings = manager.drain();
        assert!(pings.iter().all(|m| m == "WATCHDOG=1\n"), "{pings:?}");
        assert!((3..=30).contains(&pings.len()), "{} pings", pings.len());

        healthy.store(false, Ordering::SeqCst);
        // Let a tick that already read "healthy" finish sending before we start counting.
        tokio::time::sleep(interval * 2).await;
        manager.drain();
        tokio::time::sleep(interval * 10).await;
        assert_eq!(manager.drain(), Vec::<String>::new());

        healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(interval * 10).await;
        let resumed = manager.drain().len();
        assert!(
            (1..=15).contains(&resumed),
            "{resumed} pings after recovery"
        );

        watchdog.abort();
    }
}
