//! Indicator feeds: listed addresses refused, audit, per-profile opt-out, reload, every address form.

use std::{net::UdpSocket, time::Duration};

use seawall_integration::*;

use super::*;

#[test]
fn listed_addresses_from_a_list_and_a_stix_bundle_are_refused_and_an_unlisted_one_is_not() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(
        work.path(),
        &[
            (
                "abuse-ips.txt",
                "# Feodo-style list\n127.0.0.2\n127.0.5.0/24\n",
            ),
            (
                "vendor.json",
                &stix_address("a1", "127.0.0.3", "Kinsing C2"),
            ),
        ],
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    let (listed, listed_port) = listen("127.0.0.2");
    let (stix, stix_port) = listen("127.0.0.3");
    let (cidr, cidr_port) = listen("127.0.5.9");
    let (free, free_port) = listen("127.0.0.1");
    // Served, so that nc (which waits for its peer to hang up) ends.
    let served = serve_once(free);

    let script = format!(
        "{}; {}; {}; {}",
        connect_script("127.0.0.2", listed_port),
        connect_script("127.0.0.3", stix_port),
        connect_script("127.0.5.9", cidr_port),
        connect_script("127.0.0.1", free_port),
    );
    let (c, out) = run_sh("intel-net", "host", &script);
    let stdout = text(&out.stdout);
    let rcs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(
        rcs,
        ["rc=1", "rc=1", "rc=1", "rc=0"],
        "{stdout} {}",
        text(&out.stderr)
    );
    assert!(
        !got_connection(&listed, Duration::from_millis(300)),
        "127.0.0.2 got a connection"
    );
    assert!(
        !got_connection(&stix, Duration::from_millis(300)),
        "127.0.0.3 got a connection"
    );
    assert!(
        !got_connection(&cidr, Duration::from_millis(300)),
        "127.0.5.9 got a connection"
    );
    assert_eq!(
        served.join().unwrap().as_deref(),
        Some("hi\n"),
        "the unlisted 127.0.0.1 got nothing"
    );

    let id = c.id();
    let e = intel_event(&agent, "intel block of 127.0.0.2", &id, "127.0.0.2");
    assert_eq!(e["kind"], "network");
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["intel"]["type"], "ip");
    assert_eq!(e["intel"]["source"], "abuse-ips.txt");
    assert_eq!(e["network"]["address"], "127.0.0.2");
    let e = intel_event(&agent, "intel block of 127.0.0.3", &id, "127.0.0.3");
    assert_eq!(e["intel"]["source"], "vendor.json");
    assert_eq!(e["intel"]["name"], "Kinsing C2");
    let e = intel_event(&agent, "intel block of 127.0.5.0/24", &id, "127.0.5.0/24");
    assert_eq!(e["intel"]["type"], "cidr");
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["control"] == "intel" && e["network"]["address"] == "127.0.0.1"),
        "the unlisted address was reported as intel"
    );

    // seawall status: counts per kind and file, and the unsupported STIX pattern.
    let s = status_json(&agent);
    let intel = &s["intel"];
    assert_eq!(intel["total"]["ip"], 2, "{s}");
    assert_eq!(intel["total"]["cidr"], 1, "{s}");
    let feeds = intel["feeds"].as_array().expect("feeds");
    let files: Vec<_> = feeds
        .iter()
        .map(|f| f["file"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(files, ["abuse-ips.txt", "vendor.json"], "{s}");
    assert_eq!(feeds[0]["counts"]["ip"], 1, "{s}");
    assert_eq!(feeds[0]["counts"]["cidr"], 1, "{s}");
    assert_eq!(feeds[1]["counts"]["ip"], 1, "{s}");
    let unsupported = intel["unsupported"].as_array().expect("unsupported");
    assert_eq!(unsupported.len(), 1, "{s}");
    assert_eq!(unsupported[0]["object"], "indicator--a1-domain");
    assert_eq!(unsupported[0]["file"], "vendor.json");
    assert_eq!(intel["mode"], "enforce");
    // The text form says the same.
    let out = Command::new(agent_bin())
        .args(["status", "--api-socket"])
        .arg(&agent.api)
        .output()
        .expect("seawall status");
    let shown = text(&out.stdout);
    assert!(shown.contains("intel: 0 sha256, 2 ip, 1 cidr"), "{shown}");
    assert!(shown.contains("indicator--a1-domain"), "{shown}");
}

#[test]
fn intel_audit_mode_reports_without_refusing() {
    if !privileged() {
        return;
    }
    let (_work, agent) = audit_agent_listing_127_0_0_2();
    let (listed, port) = listen("127.0.0.2");
    let served = serve_once(listed);
    let (c, out) = run_sh("intel-audit", "host", &connect_script("127.0.0.2", port));
    assert!(text(&out.stdout).contains("rc=0"), "{}", text(&out.stdout));
    assert_eq!(served.join().unwrap().as_deref(), Some("hi\n"));
    let e = intel_event(&agent, "audited intel connect", &c.id(), "127.0.0.2");
    assert_eq!(e["action"], "audited");
}

#[test]
fn a_profile_can_turn_intel_off_for_its_images() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(work.path(), &[("ips.txt", "127.0.0.2\n")]);
    let p = test_profile("busybox", "audit", "[intel]\nmode = \"off\"\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    let (listed, port) = listen("127.0.0.2");
    let served = serve_once(listed);
    let (c, out) = run_sh("intel-off", "host", &connect_script("127.0.0.2", port));
    assert!(text(&out.stdout).contains("rc=0"), "{}", text(&out.stdout));
    assert_eq!(served.join().unwrap().as_deref(), Some("hi\n"));
    let id = c.id();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["control"] == "intel" && e["container"]["id"] == id.as_str()),
        "intel reported for a profile that turned it off"
    );
}

#[test]
fn reload_takes_effect_without_restart_and_an_invalid_feed_keeps_the_previous_indicators() {
    if !privileged() {
        return;
    }
    let (_work, dir, agent) = agent_with_feeds(&[("ips.txt", "# nothing yet\n")]);
    let (l, port) = listen("127.0.0.4");
    let served = serve_once(l);
    let (_c, out) = run_sh("intel-before", "host", &connect_script("127.0.0.4", port));
    assert!(
        text(&out.stdout).contains("rc=0"),
        "not listed yet: {}",
        text(&out.stdout)
    );
    assert_eq!(served.join().unwrap().as_deref(), Some("hi\n"));

    write_atomically(&dir.join("ips.txt"), "127.0.0.4\n");
    reload_event(&agent, "applied reload", |m| {
        m.starts_with("intel feeds reloaded")
    });
    let (l, port) = listen("127.0.0.4");
    let (c, out) = run_sh("intel-after", "host", &connect_script("127.0.0.4", port));
    assert!(
        text(&out.stdout).contains("rc=1"),
        "listed now: {}",
        text(&out.stdout)
    );
    assert!(!got_connection(&l, Duration::from_millis(300)));
    intel_event(&agent, "intel block after reload", &c.id(), "127.0.0.4");

    // An invalid feed: reported with file:line, and 127.0.0.4 stays refused.
    write_atomically(&dir.join("broken.txt"), "127.0.0.9\nnot-an-address\n");
    let e = reload_event(&agent, "rejected reload", |m| m.contains("broken.txt:2:"));
    assert_eq!(e["severity"], "high", "{e}");
    let s = status_json(&agent);
    assert!(
        s["intel"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("broken.txt:2:"),
        "{s}"
    );
    assert_eq!(s["intel"]["total"]["ip"], 1, "the previous indicators: {s}");
    let (l, port) = listen("127.0.0.4");
    let (_c, out) = run_sh("intel-kept", "host", &connect_script("127.0.0.4", port));
    assert!(
        text(&out.stdout).contains("rc=1"),
        "previous indicators kept: {}",
        text(&out.stdout)
    );
    assert!(!got_connection(&l, Duration::from_millis(300)));
}

/// A STIX bundle of one indicator.
fn stix_one(id: &str, pattern: &str, name: &str) -> String {
    format!(
        r#"{{"type": "bundle", "id": "bundle--{id}", "objects": [
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{id}",
    "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
    "name": "{name}", "pattern": "{pattern}", "pattern_type": "stix",
    "valid_from": "2025-01-01T00:00:00Z"}}
]}}"#
    )
}

/// Whether a datagram arrives on `socket` within `wait`.
fn got_datagram(socket: &UdpSocket, wait: Duration) -> bool {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    socket.recv_from(&mut buf).is_ok()
}

/// Another address family and another syscall to the same destinations: IPv6 (`::1`, listed
/// as a CIDR in a STIX bundle), an IPv4-mapped IPv6 destination (judged as the IPv4 address it
/// is), and unconnected UDP datagrams (`sendto`, which the connect hooks never see: busybox
/// `tftp` sends its request that way).
#[test]
fn ipv6_ipv4_mapped_and_unconnected_datagram_destinations_are_refused() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(
        work.path(),
        &[
            ("ips.txt", "127.0.0.2\n"),
            (
                "v6.json",
                &stix_one("b6", "[ipv6-addr:value = '::/127']", "IPv6 loopback range"),
            ),
        ],
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    let (v6, v6_port) = listen("::1");
    let (mapped, mapped_port) = listen("127.0.0.2");
    let (free, free_port) = listen("127.0.0.1");
    let served = serve_once(free);
    let udp_listed = UdpSocket::bind(("127.0.0.2", 0)).unwrap();
    let udp_free = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let script = format!(
        "{}; {}; {}; \
         timeout 2 tftp -g -r x -l /tmp/x 127.0.0.2 {}; echo udp=$?; \
         timeout 2 tftp -g -r x -l /tmp/x 127.0.0.1 {}; echo udp=$?",
        connect_script("::1", v6_port),
        connect_script("::ffff:127.0.0.2", mapped_port),
        connect_script("::ffff:127.0.0.1", free_port),
        udp_listed.local_addr().unwrap().port(),
        udp_free.local_addr().unwrap().port(),
    );
    let (c, out) = run_sh("intel-v6", "host", &script);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let rcs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(rcs, ["rc=1", "rc=1", "rc=0"], "{stdout} {stderr}");
    assert!(
        stdout.lines().any(|l| l == "udp=1"),
        "tftp to a listed address must fail at once: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("sendto: Operation not permitted"),
        "{stderr}"
    );
    assert!(
        !got_connection(&v6, Duration::from_millis(300)),
        "::1 got a connection"
    );
    assert!(
        !got_connection(&mapped, Duration::from_millis(300)),
        "127.0.0.2 got a connection through ::ffff:127.0.0.2"
    );
    assert_eq!(served.join().unwrap().as_deref(), Some("hi\n"));
    assert!(
        !got_datagram(&udp_listed, Duration::from_millis(300)),
        "127.0.0.2 got a datagram"
    );
    assert!(
        got_datagram(&udp_free, Duration::from_millis(500)),
        "the unlisted 127.0.0.1 got no datagram: the test proves nothing"
    );

    let id = c.id();
    let e = intel_event(&agent, "intel block of ::1", &id, "::/127");
    assert_eq!(e["kind"], "network");
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["intel"]["type"], "cidr");
    assert_eq!(e["intel"]["source"], "v6.json");
    assert_eq!(e["intel"]["name"], "IPv6 loopback range");
    assert_eq!(e["network"]["address"], "::1");
    let e = agent.expect("intel block of ::ffff:127.0.0.2", |e| {
        e["control"] == "intel"
            && e["container"]["id"] == id.as_str()
            && e["intel"]["indicator"] == "127.0.0.2"
            && e["network"]["op"] == "connect"
    });
    assert_eq!(e["intel"]["source"], "ips.txt");
    let e = agent.expect("intel block of a datagram to 127.0.0.2", |e| {
        e["control"] == "intel"
            && e["container"]["id"] == id.as_str()
            && e["network"]["op"] == "sendmsg"
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["network"]["protocol"], "udp");
    assert_eq!(e["intel"]["indicator"], "127.0.0.2");
}

/// The `NAME=N` exit status a script printed.
fn status_of(stdout: &str, name: &str) -> Option<i32> {
    let prefix = format!("{name}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// One ICMP echo request from this (host) process through a raw socket: the errno of
/// `sendto`, if it failed.
fn host_raw_echo(to: [u8; 4]) -> Result<(), i32> {
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        if s < 0 {
            return Err(*libc::__errno_location());
        }
        // Echo request, id 0x5ea, seq 1; checksum over the 8 bytes.
        let mut pkt = [8u8, 0, 0, 0, 0x05, 0xea, 0, 1];
        let sum: u32 = pkt
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes(to);
        let r = libc::sendto(
            s,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let errno = *libc::__errno_location();
        libc::close(s);
        if r < 0 {
            Err(errno)
        } else {
            Ok(())
        }
    }
}

/// The intel event of the egress program (`op: "packet"`) for `container` and `indicator`.
fn packet_event(agent: &Agent, what: &str, container: &str, indicator: &str) -> Value {
    agent.expect(what, |e| {
        e["control"] == "intel"
            && e["container"]["id"] == container
            && e["intel"]["indicator"] == indicator
            && e["network"]["op"] == "packet"
    })
}

/// Every way out, not only `connect` and `sendmsg`: a raw ICMP echo (busybox `ping` as root,
/// which has CAP_NET_RAW in a default container) from a host-network container, and an ICMP
/// datagram socket's unconnected `sendto` (which no sock_addr program sees), to a listed 127.x
/// address fail with EPERM and are reported; the unlisted 127.0.0.1 still answers. The ping
/// socket runs in the container's own network namespace (`--network none`), where Docker
/// opens ping sockets to root; the host's `ping_group_range` ("1 0" here) opens them to no
/// one. A host process's raw echo to the listed address still goes out.
#[test]
fn raw_and_icmp_datagram_packets_to_listed_addresses_are_dropped_and_reported() {
    if !privileged() {
        return;
    }
    let Some(image) = fixture::attack_image() else {
        return;
    };
    let (_work, _dir, agent) = agent_with_feeds(&[("ips.txt", "127.0.0.2\n127.0.6.0/24\n")]);
    let (raw, out) = fixture::run_in(
        &image,
        "intel-raw",
        &["--network", "host"],
        "busybox ping -c 1 -W 2 127.0.0.2; echo listed=$?; \
         busybox ping -c 1 -W 2 127.0.0.1; echo free=$?",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(status_of(&stdout, "listed"), Some(1), "{stdout} {stderr}");
    assert!(
        stderr.contains("sendto: Operation not permitted"),
        "EPERM at the raw sendto: {stdout} {stderr}"
    );
    assert_eq!(
        status_of(&stdout, "free"),
        Some(0),
        "the unlisted 127.0.0.1 must answer: {stdout} {stderr}"
    );

    let (dgram, out) = fixture::run_in(
        &image,
        "intel-dgram",
        &["--network", "none"],
        &format!(
            "{a} ping 127.0.6.9; echo listed=$?; {a} ping 127.0.0.1; echo free=$?",
            a = fixture::ATTACK
        ),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("ping-send errno=1"),
        "EPERM at the ping socket's sendto: {stdout} {stderr}"
    );
    assert_eq!(status_of(&stdout, "listed"), Some(1), "{stdout} {stderr}");
    assert!(stdout.contains("ping-send ok"), "{stdout} {stderr}");
    assert_eq!(status_of(&stdout, "free"), Some(0), "{stdout} {stderr}");

    let e = packet_event(&agent, "intel drop of a raw echo", &raw.id(), "127.0.0.2");
    assert_eq!(e["kind"], "network");
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["network"]["protocol"], "raw");
    assert_eq!(e["network"]["address"], "127.0.0.2");
    assert_eq!(e["intel"]["type"], "ip");
    assert_eq!(e["intel"]["source"], "ips.txt");
    let e = packet_event(
        &agent,
        "intel drop of a ping socket's echo",
        &dgram.id(),
        "127.0.6.0/24",
    );
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["network"]["protocol"], "icmp");
    assert_eq!(e["network"]["address"], "127.0.6.9");
    assert_eq!(e["intel"]["type"], "cidr");
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["control"] == "intel" && e["network"]["address"] == "127.0.0.1"),
        "the unlisted address was reported as intel"
    );

    // The host is in no container: its raw echo to the listed address goes out.
    assert_eq!(
        host_raw_echo([127, 0, 0, 2]),
        Ok(()),
        "a host process was refused"
    );
}

/// Audit: the raw echo to a listed address is answered, and reported as audited.
#[test]
fn raw_packets_to_a_listed_address_in_audit_mode_pass_and_are_reported() {
    if !privileged() {
        return;
    }
    let (_work, agent) = audit_agent_listing_127_0_0_2();
    let (c, out) = run_sh(
        "intel-raw-audit",
        "host",
        "busybox ping -c 1 -W 2 127.0.0.2; echo listed=$?",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        status_of(&stdout, "listed"),
        Some(0),
        "audit must let the echo through: {stdout} {stderr}"
    );
    let e = packet_event(&agent, "audited raw echo", &c.id(), "127.0.0.2");
    assert_eq!(e["action"], "audited");
    assert_eq!(e["network"]["protocol"], "raw");
}

/// An agent with `intel_mode = "audit"` and a feed listing 127.0.0.2 (and the directory that
/// holds both, kept as long as the agent runs).
fn audit_agent_listing_127_0_0_2() -> (tempfile::TempDir, Agent) {
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(work.path(), &[("ips.txt", "127.0.0.2\n")]);
    let config = work.path().join("agent.toml");
    std::fs::write(&config, "intel_mode = \"audit\"\n").unwrap();
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &[
            "--intel-dir",
            dir.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    (work, agent)
}

/// An agent (default profile, intel enforcing) reading an intel directory with these feed
/// files, in a temporary directory kept as long as the agent runs.
fn agent_with_feeds(feeds: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf, Agent) {
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(work.path(), feeds);
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    (work, dir, agent)
}
