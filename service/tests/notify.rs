//! The notification protocol against a stand-in service manager (a datagram socket in a temp
//! dir). One test function: `$NOTIFY_SOCKET` and `$WATCHDOG_*` are process-wide, so the checks
//! run in order in a test binary of their own.

use std::{io, os::unix::net::UnixDatagram, time::Duration};

use seawall_service::{
    health::{self, Health},
    notify::{watchdog_interval, Notifier},
};

struct Manager {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        Manager {
            path,
            _dir: dir,
            socket,
        }
    }

    /// The next `n` datagrams, waiting up to 5 s for them (the notifier sends from a thread).
    fn expect(&self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < n && std::time::Instant::now() < deadline {
            got.extend(self.drain());
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// Waits until nothing has arrived for `quiet` (pings already queued by the notifier's
    /// thread have landed), discarding what came.
    fn settle(&self, quiet: Duration) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut last = std::time::Instant::now();
        while std::time::Instant::now() < deadline && last.elapsed() < quiet {
            if !self.drain().is_empty() {
                last = std::time::Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
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

/// CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC against.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

#[tokio::test]
async fn ready_reloading_stopping_and_a_watchdog_tied_to_health() {
    // No socket, no notifier.
    std::env::remove_var("NOTIFY_SOCKET");
    assert!(Notifier::from_env().is_none());
    std::env::set_var("NOTIFY_SOCKET", "");
    assert!(Notifier::from_env().is_none());

    let manager = Manager::new();
    std::env::set_var("NOTIFY_SOCKET", &manager.path);
    let notifier = Notifier::from_env().expect("a notifier for a set NOTIFY_SOCKET");

    // Exactly the requested assignments, one datagram each, status kept on one line.
    notifier.ready("enforcing\n3 containers");
    notifier.stopping();
    assert_eq!(
        manager.expect(2),
        vec![
            "READY=1\nSTATUS=enforcing 3 containers\n".to_owned(),
            "STOPPING=1\n".to_owned(),
        ]
    );

    // RELOADING=1 carries a current monotonic timestamp.
    let before = monotonic_usec();
    notifier.reloading();
    let messages = manager.expect(1);
    let after = monotonic_usec();
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

    // The watchdog interval is half of WatchdogSec, and only for us.
    std::env::set_var("WATCHDOG_USEC", "30000000");
    std::env::remove_var("WATCHDOG_PID");
    assert_eq!(watchdog_interval(), Some(Duration::from_secs(15)));
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    assert_eq!(watchdog_interval(), Some(Duration::from_secs(15)));
    std::env::set_var("WATCHDOG_PID", "1");
    assert_eq!(watchdog_interval(), None);
    std::env::set_var("WATCHDOG_USEC", "0");
    std::env::remove_var("WATCHDOG_PID");
    assert_eq!(watchdog_interval(), None);
    std::env::remove_var("WATCHDOG_USEC");
    assert_eq!(watchdog_interval(), None);

    // Pings at its cadence only while every component makes progress.
    let health = Health::new();
    let interval = Duration::from_millis(50);
    let component = health.register("event loop", interval * 3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watchdog = tokio::spawn(health::watchdog(
        notifier.clone(),
        interval,
        health.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    for _ in 0..20 {
        component.beat();
        tokio::time::sleep(interval).await;
    }
    let pings = manager.drain();
    assert!(pings.iter().all(|m| m == "WATCHDOG=1\n"), "{pings:?}");
    // Wide bounds: a shared CI machine can stall the runtime; the point is "a cadence".
    assert!((3..=30).contains(&pings.len()), "{} pings", pings.len());

    // Silent for longer than its bound: no pings (after the ones already on their way).
    tokio::time::sleep(interval * 4).await;
    assert!(health.check().is_err());
    manager.settle(interval * 4);
    tokio::time::sleep(interval * 10).await;
    assert_eq!(manager.drain(), Vec::<String>::new());

    // Progress again: pings resume.
    for _ in 0..10 {
        component.beat();
        tokio::time::sleep(interval).await;
    }
    let resumed = manager.drain().len();
    assert!(
        (1..=15).contains(&resumed),
        "{resumed} pings after recovery"
    );

    // A component that ended stops the pings for good.
    drop(component);
    manager.settle(interval * 4);
    tokio::time::sleep(interval * 5).await;
    assert_eq!(manager.drain(), Vec::<String>::new());

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), watchdog)
        .await
        .expect("the watchdog stops on shutdown")
        .unwrap();

    // A manager that went away is logged, not a panic.
    drop(manager);
    notifier.ready("still here");
    std::env::remove_var("NOTIFY_SOCKET");
}
