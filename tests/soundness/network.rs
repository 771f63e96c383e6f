//! Network rules for every way out (class 6).

use super::*;

/// Whether `c` got at least `n` network events with `action` for `port` (15 s at most).
fn network_events(agent: &Agent, c: &Container, action: &str, port: u16, n: usize) -> bool {
    let id = c.id();
    at_least(agent, n, |e| {
        e["kind"] == "network"
            && e["action"] == action
            && e["network"]["port"] == port
            && e["container"]["id"] == id.as_str()
    })
}

#[test]
fn a_denied_loopback_address_cannot_be_reached_by_another_name() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    // A dual-stack listener on every local address, so each alias really reaches it.
    let denied = TcpListener::bind("[::]:0").unwrap();
    let dport = denied.local_addr().unwrap().port();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let aport = allowed.local_addr().unwrap().port();
    let agent = agent_with(
        "enforce",
        &format!("[network]\negress_deny = [\"127.0.0.1:{dport}/tcp\"]\n"),
    );
    let server = serve_once(allowed);
    let aliases = [
        "127.0.0.1",
        "127.0.0.2",
        "127.1.2.3",
        "0.0.0.0",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:127.0.0.9",
    ];
    let mut script = String::new();
    for (i, a) in aliases.iter().enumerate() {
        script.push_str(&format!("{ATTACK} connect {a} {dport}; echo a{i}=$?; "));
    }
    script.push_str(&format!(
        "{ATTACK} connect 127.0.0.1 {aport}; echo allowed=$?"
    ));
    let (c, out) = run_in(&image, "aliases", &["--network", "host"], &script);
    let s = text(&out.stdout);
    for (i, a) in aliases.iter().enumerate() {
        assert_eq!(
            rc(&s, &format!("a{i}")),
            Some(1),
            "{a} must be refused: {s}"
        );
    }
    assert_eq!(
        s.matches("connect errno=1").count(),
        aliases.len(),
        "EPERM each time: {s}"
    );
    assert_eq!(rc(&s, "allowed"), Some(0), "{s}");
    assert!(
        !got_connection(&denied, Duration::from_millis(500)),
        "the denied listener got a connection"
    );
    assert_eq!(
        server.join().unwrap().as_deref().map(str::trim),
        Some("ATTACK")
    );
    assert!(
        network_events(&agent, &c, "blocked", dport, aliases.len()),
        "one blocked connect per alias: {:?}",
        agent.events()
    );
}

#[test]
fn icmp_datagram_sockets_are_refused_when_egress_is_ruled() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", "[network]\negress_deny = [\"10.0.0.0/8\"]\n");
    let (c, out) = run_in(
        &image,
        "icmp",
        &["--network", "none"],
        &format!("{ATTACK} ping 127.0.0.1; echo ping=$?"),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "ping"), Some(1), "{s} {}", text(&out.stderr));
    assert!(s.contains("ping-socket errno=1"), "EPERM at socket(): {s}");
    let id = c.id();
    let e = agent.expect("blocked icmp socket", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "icmp"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["network"]["protocol"], "icmp");
    drop(agent);
    // Without egress rules, ping sockets work (nothing to enforce).
    let _agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let (_c, out) = run_in(
        &image,
        "icmp-free",
        &["--network", "none"],
        &format!("{ATTACK} ping 127.0.0.1; echo ping=$?"),
    );
    assert_eq!(
        rc(&text(&out.stdout), "ping"),
        Some(0),
        "{}",
        text(&out.stdout)
    );
}

/// A listener on a port the kernel picks (bind to port 0, or listen unbound) gets nothing when
/// `listen_allow` does not name it, and is reported; an allowed port still accepts.
#[test]
fn listen_allow_holds_for_kernel_chosen_ports() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = free.local_addr().unwrap().port();
    drop(free);
    let agent = agent_with(
        "enforce",
        &format!("[network]\nlisten_allow = [{allowed_port}]\n"),
    );
    for how in ["bind0", "autobind"] {
        let c = start_in(
            &image,
            "listen0",
            &["--network", "host"],
            &format!("{ATTACK} listen {how} 6"),
        );
        let port = wait_for_port(&c);
        let reached = TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(2),
        )
        .is_ok();
        assert!(!reached, "{how}: the listener on port {port} was reached");
        let logs = wait_logs(&c, "listen ");
        assert!(
            logs.contains("listen nothing"),
            "{how}: the listener got something: {logs}"
        );
        let id = c.id();
        let e = agent.expect("blocked listener", |e| {
            e["kind"] == "network"
                && e["network"]["op"] == "listen"
                && e["network"]["port"] == port
                && e["container"]["id"] == id.as_str()
        });
        assert_eq!(e["action"], "blocked");
    }
    // The allowed port accepts.
    let c = start_in(
        &image,
        "listen-ok",
        &["--network", "host"],
        &format!("timeout 8 nc -l -p {allowed_port} > /dev/null; echo done"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let ok = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        TcpStream::connect(("127.0.0.1", allowed_port)).is_ok()
    });
    assert!(ok, "the allowed port accepts: {}", wait_logs(&c, ""));
}

/// The network bypasses in audit mode: each goes through (the alias reaches the listener, the
/// ping is sent, the kernel-chosen port accepts) and each is reported as audited.
#[test]
fn network_bypasses_in_audit_are_reported_and_let_through() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let denied = TcpListener::bind("[::]:0").unwrap();
    let dport = denied.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = free.local_addr().unwrap().port();
    drop(free);
    let agent = agent_with(
        "audit",
        &format!(
            "[network]\negress_deny = [\"127.0.0.1:{dport}/tcp\"]\nlisten_allow = [{allowed_port}]\n"
        ),
    );
    let aliases = ["127.0.0.2", "0.0.0.0", "::1", "::ffff:127.0.0.1"];
    let mut script = String::new();
    for (i, a) in aliases.iter().enumerate() {
        script.push_str(&format!("{ATTACK} connect {a} {dport}; echo a{i}=$?; "));
    }
    let (c, out) = run_in(&image, "net-audit", &["--network", "host"], &script);
    let s = text(&out.stdout);
    for (i, a) in aliases.iter().enumerate() {
        assert_eq!(
            rc(&s, &format!("a{i}")),
            Some(0),
            "audit lets {a} through: {s}"
        );
    }
    denied.set_nonblocking(true).unwrap();
    let accepted = (0..50)
        .scan(0, |n, _| {
            while denied.accept().is_ok() {
                *n += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
            Some(*n)
        })
        .find(|&n| n >= aliases.len())
        .unwrap_or(0);
    assert_eq!(accepted, aliases.len(), "each alias reached the listener");
    assert!(
        network_events(&agent, &c, "audited", dport, aliases.len()),
        "one audited connect per alias: {:?}",
        agent.events()
    );
    // Ping sockets need the container's own network namespace (Docker opens its ping range).
    let (c, out) = run_in(
        &image,
        "icmp-audit",
        &["--network", "none"],
        &format!("{ATTACK} ping 127.0.0.1; echo ping=$?"),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "ping"), Some(0), "audit lets the ping out: {s}");
    assert!(s.contains("ping-send ok"), "{s}");
    let id = c.id();
    let e = agent.expect("audited icmp socket", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "icmp"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "audited");

    let c = start_in(
        &image,
        "listen0-audit",
        &["--network", "host"],
        &format!("{ATTACK} listen bind0 6"),
    );
    let port = wait_for_port(&c);
    let reached = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok();
    assert!(reached, "audit: the listener on port {port} is reachable");
    let logs = wait_logs(&c, "listen ");
    assert!(logs.contains("listen accepted"), "{logs}");
    let id = c.id();
    let e = agent.expect("audited listener", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "listen"
            && e["network"]["port"] == port
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "audited");
}

/// The port the helper printed.
fn wait_for_port(c: &Container) -> u16 {
    let logs = wait_logs(c, "port=");
    logs.lines()
        .find_map(|l| l.strip_prefix("port="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {logs}"))
}

/// `docker logs` once they contain `needle` (10 s at most).
fn wait_logs(c: &Container, needle: &str) -> String {
    let mut logs = String::new();
    for _ in 0..100 {
        let out = Command::new("docker")
            .args(["logs", &c.name])
            .output()
            .unwrap();
        logs = format!("{}{}", text(&out.stdout), text(&out.stderr));
        if logs.contains(needle) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    logs
}
