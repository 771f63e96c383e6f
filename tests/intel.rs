//! Issue 15: threat intelligence and image assurance on the node, asserting both sides: what the
//! process in the container saw (exit status, output, a listener that got nothing) and the event
//! the agent wrote (`control`, `intel.indicator`, `intel.type`, `intel.source`, `intel.name`).
//!
//! Addresses are loopback only: the containers run with `--network host` and connect to
//! 127.0.0.x, where this test listens. Images for assurance are tags of the test image made and
//! removed by the test.

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use seawall_integration::*;
use serde_json::Value;

/// How long a reload may take to be in force (the agent polls the directory every 2 s).
const RELOAD: Duration = Duration::from_secs(10);

/// The agent event a reload of the feeds produced, waiting at most [`RELOAD`].
fn reload_event(agent: &Agent, what: &str, pred: impl Fn(&str) -> bool) -> Value {
    agent
        .wait_for(RELOAD, |e| {
            e["kind"] == "agent" && pred(e["message"].as_str().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("no {what} within {RELOAD:?}; agent log:\n{}", agent.log()))
}

fn intel_dir(agent_dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let dir = agent_dir.join("intel");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        write_atomically(&dir.join(name), text);
    }
    dir
}

/// Writes a feed as an operator should: a temporary file renamed into place.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn stix_address(id: &str, addr: &str, name: &str) -> String {
    format!(
        r#"{{"type": "bundle", "id": "bundle--{id}", "objects": [
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{id}",
    "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
    "name": "{name}", "pattern": "[ipv4-addr:value = '{addr}']", "pattern_type": "stix",
    "valid_from": "2025-01-01T00:00:00Z"}},
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{id}-domain",
    "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
    "pattern": "[domain-name:value = 'c2.example']", "pattern_type": "stix",
    "valid_from": "2025-01-01T00:00:00Z"}}
]}}"#
    )
}

/// A listener on a loopback address other than 127.0.0.1 (the whole /8 is local).
fn listen(addr: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((addr, 0)).expect("listen on loopback");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// `nc` from a host-network container: prints `rc=N` (0 connected, 1 refused).
fn connect_script(addr: &str, port: u16) -> String {
    format!("echo hi | nc -w 2 {addr} {port}; echo rc=$?")
}

fn status_json(agent: &Agent) -> Value {
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .expect("seawall status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn intel_event<'a>(agent: &'a Agent, what: &str, container: &'a str, indicator: &'a str) -> Value {
    agent.expect(what, move |e| {
        e["control"] == "intel"
            && e["container"]["id"] == container
            && e["intel"]["indicator"] == indicator
    })
}

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
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(work.path(), &[("ips.txt", "# nothing yet\n")]);
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
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

/// The test image's busybox with one byte appended: still runs as busybox, but has a hash of
/// its own, which the feed lists. Written in the container (drift is off in this profile, so
/// only intel decides).
#[test]
fn an_exec_of_a_listed_hash_is_refused_while_an_unlisted_image_binary_runs() {
    if !privileged() {
        return;
    }
    let busybox = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "cat",
            "/bin/busybox",
        ])
        .output()
        .expect("docker run cat");
    assert!(busybox.status.success());
    let mut bytes = busybox.stdout;
    bytes.push(b'\n');
    let hash = sha256_hex(&bytes);
    let work = tempfile::tempdir().unwrap();
    let dir = intel_dir(
        work.path(),
        &[(
            "bazaar.csv",
            &format!("# \"sha256_hash\",\"signature\"\n\"{hash}\", \"TestDropper\"\n"),
        )],
    );
    let p = test_profile("busybox", "audit", "");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    let hashed_before = status_json(&agent)["intel"]["files_hashed"]
        .as_u64()
        .expect("files_hashed");
    let (c, out) = run_sh(
        "intel-hash",
        "none",
        // Run through a symlink named `echo`, so busybox (argv[0]) runs its echo applet.
        "cp /bin/busybox /tmp/dropper && echo >> /tmp/dropper && chmod +x /tmp/dropper; \
         ln -s /tmp/dropper /tmp/echo; \
         for i in 1 2 3; do /tmp/echo SHOULD-NOT-PRINT; echo rc=$?; done; \
         /bin/busybox echo IMAGE-RUNS; /bin/busybox true; /bin/busybox true; \
         echo >> /tmp/dropper; /tmp/echo CHANGED-RUNS",
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| *l == "rc=126").count(),
        3,
        "every exec of the listed file refused: {stdout}"
    );
    assert!(
        stdout.contains("CHANGED-RUNS"),
        "a changed file is a new version with another hash: {stdout} {}",
        text(&out.stderr)
    );
    // Each file version read once: the image's busybox, the listed copy (refused three times)
    // and its changed version. (Nothing else runs in a container while the host lock is held.)
    // Status is refreshed with the feeds poll (every 2 s): wait for it, then look again so a
    // count still rising is seen.
    let hashed = || {
        status_json(&agent)["intel"]["files_hashed"]
            .as_u64()
            .expect("files_hashed")
            - hashed_before
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while hashed() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(hashed(), 3, "file versions hashed");
    assert!(
        !stdout.contains("SHOULD-NOT-PRINT"),
        "the listed file ran: {stdout}"
    );
    assert!(
        stdout.contains("rc=126"),
        "expected EPERM (126): {stdout} {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("IMAGE-RUNS"),
        "the image's own busybox must run: {stdout}"
    );
    let e = intel_event(&agent, "intel exec block", &c.id(), &hash);
    assert_eq!(e["kind"], "exec");
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["intel"]["type"], "sha256");
    assert_eq!(e["intel"]["source"], "bazaar.csv");
    assert_eq!(e["intel"]["name"], "TestDropper");
    assert_eq!(e["process"]["exe"], "/tmp/dropper");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A tag of the test image, removed on drop.
struct Tag(String);

impl Tag {
    fn new(repo: &str) -> Tag {
        let tag = format!("{repo}:{}", unique_name("tag"));
        let ok = Command::new("docker")
            .args(["tag", IMAGE, &tag])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "docker tag {tag}");
        Tag(tag)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run_image(tag: &str, script: &str) -> (Container, std::process::Output) {
    let name = unique_name("assure");
    let out = Command::new("docker")
        .args([
            "run",
            "--name",
            &name,
            "--network",
            "none",
            tag,
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("docker run");
    (Container { name }, out)
}

/// An assurance policy approving the test image's family and, so that this test never stops a
/// container it did not start, the image of every container already running on the host.
fn assurance_config(work: &Path, mode: &str, more: &str) -> PathBuf {
    let running = Command::new("docker")
        .args(["ps", "--format", "{{.Image}}"])
        .output()
        .expect("docker ps");
    assert!(
        running.status.success(),
        "docker ps: {}",
        text(&running.stderr)
    );
    let mut allow = vec!["\"seawall-test/busybox*\"".to_string()];
    allow.extend(
        text(&running.stdout)
            .lines()
            .map(|i| format!("{:?}", i.trim())),
    );
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[assurance]\nmode = \"{mode}\"\nallow = [{}]\n{more}",
            allow.join(", ")
        ),
    )
    .unwrap();
    config
}

#[test]
fn an_unapproved_image_never_runs_while_an_approved_one_does() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let config = assurance_config(
        work.path(),
        "enforce",
        "deny = [\"seawall-test/busybox-denied*\"]\n",
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--config", config.to_str().unwrap()],
    );
    let unapproved = Tag::new("seawall-test/unapproved");
    let (c, out) = run_image(&unapproved.0, "echo SHOULD-NOT-PRINT");
    assert!(!out.status.success(), "the unapproved container succeeded");
    assert!(
        !text(&out.stdout).contains("SHOULD-NOT-PRINT"),
        "the unapproved image ran: {}",
        text(&out.stdout)
    );
    let id = c.id();
    let e = agent.expect("assurance refusal", |e| {
        e["control"] == "assurance"
            && e["kind"] == "container"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["container"]["image"], unapproved.0.as_str());
    assert!(
        e["container"]["image_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:"),
        "{e}"
    );
    let msg = e["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&unapproved.0) && msg.contains("no allow entry matches"),
        "{msg}"
    );

    let approved = Tag::new("seawall-test/busybox-approved");
    let (_c, out) = run_image(&approved.0, "echo APPROVED-RUNS");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("APPROVED-RUNS"));

    // Allowed by `seawall-test/busybox*`, but denied: deny wins.
    let denied = Tag::new("seawall-test/busybox-denied");
    let (c, out) = run_image(&denied.0, "echo SHOULD-NOT-PRINT");
    assert!(!out.status.success(), "the denied container succeeded");
    assert!(!text(&out.stdout).contains("SHOULD-NOT-PRINT"));
    let id = c.id();
    let e = agent.expect("assurance deny", |e| {
        e["control"] == "assurance"
            && e["kind"] == "container"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    let msg = e["message"].as_str().unwrap_or("");
    assert!(msg.contains("deny `seawall-test/busybox-denied*`"), "{msg}");
}

#[test]
fn assurance_audit_runs_the_container_and_reports_it_once() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let config = assurance_config(work.path(), "audit", "");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--config", config.to_str().unwrap()],
    );
    let unapproved = Tag::new("seawall-test/unapproved");
    let (c, out) = run_image(
        &unapproved.0,
        "echo RAN; /bin/busybox true; /bin/busybox true",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("RAN"));
    let id = c.id();
    let e = agent.expect("audited assurance", |e| {
        e["control"] == "assurance" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "audited");
    std::thread::sleep(Duration::from_secs(1));
    let n = agent
        .events()
        .iter()
        .filter(|e| e["control"] == "assurance" && e["container"]["id"] == id.as_str())
        .count();
    assert_eq!(n, 1, "reported once per container, not per exec");
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

/// An image of its own (the test image with a unique label, so a new image id), removed on drop.
fn unique_image(repo: &str) -> (Tag, String) {
    let name = unique_name("img");
    let tag = format!("{repo}:{name}");
    let ok = Command::new("docker")
        .args(["create", "--name", &name, IMAGE, "true"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "docker create");
    let committed = Command::new("docker")
        .args([
            "commit",
            "--change",
            &format!("LABEL seawall.test={name}"),
            &name,
            &tag,
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    drop(Container { name });
    assert!(committed, "docker commit {tag}");
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", &tag])
        .output()
        .expect("docker image inspect");
    (Tag(tag), text(&out.stdout).trim().to_string())
}

fn trivy_report(tag: &str, image_id: &str, severity: &str) -> String {
    format!(
        r#"{{"SchemaVersion": 2, "ArtifactName": "{tag}", "ArtifactType": "container_image",
  "Metadata": {{"ImageID": "{image_id}", "RepoDigests": []}},
  "Results": [{{"Target": "{tag} (debian 12)", "Class": "os-pkgs", "Type": "debian",
    "Vulnerabilities": [{{"VulnerabilityID": "CVE-2099-0001", "PkgName": "busybox",
      "InstalledVersion": "1.35.0", "Severity": "{severity}"}}]}}]}}"#
    )
}

#[test]
fn an_image_with_a_finding_at_max_severity_is_refused_and_a_bad_report_stops_the_start() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (vulnerable, id) = unique_image("seawall-test/busybox-scanned");
    assert!(id.starts_with("sha256:"), "{id}");
    let reports = work.path().join("trivy");
    std::fs::create_dir(&reports).unwrap();
    std::fs::write(
        reports.join("scanned.json"),
        trivy_report(&vulnerable.0, &id, "HIGH"),
    )
    .unwrap();
    let config = assurance_config(
        work.path(),
        "enforce",
        &format!(
            "scan_reports = {:?}\nmax_severity = \"high\"\n",
            reports.display().to_string()
        ),
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--config", config.to_str().unwrap()],
    );
    let (c, out) = run_image(&vulnerable.0, "echo SHOULD-NOT-PRINT");
    assert!(!out.status.success(), "the vulnerable container succeeded");
    assert!(!text(&out.stdout).contains("SHOULD-NOT-PRINT"));
    let cid = c.id();
    let e = agent.expect("assurance refusal by scan report", |e| {
        e["control"] == "assurance"
            && e["kind"] == "container"
            && e["container"]["id"] == cid.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["container"]["image_id"], id.as_str());
    let msg = e["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("scan report scanned.json") && msg.contains("CVE-2099-0001"),
        "{msg}"
    );
    // The same family without a report is approved.
    let (_c, out) = run_sh("assure-unscanned", "none", "echo UNSCANNED-RUNS");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("UNSCANNED-RUNS"));
    drop(agent);

    // A report that cannot be read stops the start (nothing loaded yet), naming the file.
    std::fs::write(
        reports.join("broken.json"),
        "{\"SchemaVersion\": 2, \"Results\": [",
    )
    .unwrap();
    let bpffs = format!("/sys/fs/bpf/seawall-test-{}", unique_name("bpf"));
    let profiles = work.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(profiles.join("default.toml"), DEFAULT_PROFILE).unwrap();
    let out = Command::new("timeout")
        .arg("60")
        .arg(agent_bin())
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .arg("--profiles")
        .arg(&profiles)
        .arg("--output")
        .arg(work.path().join("events.jsonl"))
        .arg("--api-socket")
        .arg(work.path().join("agent.sock"))
        .arg("--bpffs")
        .arg(&bpffs)
        .output()
        .expect("seawall agent");
    let _ = Command::new(agent_bin())
        .args(["uninstall", "--bpffs", &bpffs])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        !out.status.success(),
        "the agent started with a broken report"
    );
    assert_ne!(
        out.status.code(),
        Some(124),
        "the agent ran instead of refusing to start"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken.json"), "{stderr}");
}

/// A container whose entrypoint is a listed file: the kernel holds the first exec until the
/// container's policy is written (before fanotify marks exist), and the agent judges the held
/// process's executable — nothing of it runs.
#[test]
fn a_listed_entrypoint_never_runs() {
    if !privileged() {
        return;
    }
    let name = unique_name("dropper");
    let mut bytes = std::fs::read("/bin/busybox").expect("busybox-static on the host");
    bytes.extend_from_slice(format!("\n{name}\n").as_bytes());
    let hash = sha256_hex(&bytes);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("dropper");
    std::fs::write(&file, &bytes).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tag = format!("seawall-test/busybox-dropper:{name}");
    let ok = Command::new("docker")
        .args(["create", "--name", &name, IMAGE, "true"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "docker create");
    let copied = Command::new("docker")
        .arg("cp")
        .arg(&file)
        .arg(format!("{name}:/bin/dropper"))
        .status()
        .is_ok_and(|s| s.success());
    let committed = copied
        && Command::new("docker")
            .args(["commit", &name, &tag])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    drop(Container { name });
    let image = Tag(tag);
    assert!(committed, "docker cp + commit {}", image.0);

    let dir = intel_dir(work.path(), &[("hashes.txt", &format!("{hash}\n"))]);
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &["--intel-dir", dir.to_str().unwrap()],
    );
    let cname = unique_name("intel-entry");
    let out = Command::new("docker")
        .args([
            "run",
            "--name",
            &cname,
            "--network",
            "none",
            &image.0,
            "/bin/dropper",
            "echo",
            "SHOULD-NOT-PRINT",
        ])
        .output()
        .expect("docker run");
    let c = Container { name: cname };
    assert!(!out.status.success(), "the listed entrypoint succeeded");
    assert!(
        !text(&out.stdout).contains("SHOULD-NOT-PRINT"),
        "the listed entrypoint ran: {}",
        text(&out.stdout)
    );
    let e = intel_event(&agent, "intel block of the entrypoint", &c.id(), &hash);
    assert_eq!(e["kind"], "exec");
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["intel"]["type"], "sha256");
    assert_eq!(e["intel"]["source"], "hashes.txt");
    assert_eq!(e["process"]["exe"], "/bin/dropper");
    // Its image's own busybox still runs.
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &image.0,
            "echo",
            "IMAGE-RUNS",
        ])
        .output()
        .expect("docker run");
    assert!(
        text(&out.stdout).contains("IMAGE-RUNS"),
        "{}",
        text(&out.stderr)
    );
}
