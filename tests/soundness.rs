//! Issue 9: no way around a control from inside a container. Each test is one class of bypass,
//! tried as root in a default Docker container would (busybox, plus the static helper
//! `tests/attack/attack.c` for the raw syscalls), under a strict enforcing profile on this host's
//! fallback backends; each asserts both sides: what the process saw (exit status, errno, file
//! unchanged, listener got nothing) and the event the agent wrote. The same scenario in audit
//! mode runs and is reported. Benign behaviour under the same profile keeps working.
//!
//! What the fallback cannot see is asserted too, as what `seawall status` says about it.

#[path = "soundness/fixture.rs"]
mod fixture;
#[path = "soundness/syscall_hooks.rs"]
mod syscall_hooks;

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use fixture::*;
use seawall_integration::*;
use serde_json::Value;

fn profile(mode: &str, body: &str) -> String {
    test_profile("busybox", mode, body)
}

fn agent_with(mode: &str, body: &str) -> Agent {
    Agent::start(
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &profile(mode, body)),
        ],
        &[],
    )
}

/// `rc=N` printed by the script for `key`.
fn rc(stdout: &str, key: &str) -> Option<i32> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `n` events matching `pred` arrive within 15 s.
fn at_least(agent: &Agent, n: usize, pred: impl Fn(&Value) -> bool) -> bool {
    agent
        .wait_for(Duration::from_secs(15), |_| {
            agent.events().iter().filter(|e| pred(e)).count() >= n
        })
        .is_some()
}

/// The first drift event of container `c` whose exe is `exe`.
fn drift_event(agent: &Agent, c: &Container, exe: &str) -> Value {
    let id = c.id();
    agent.expect(&format!("drift event for {exe}"), |e| {
        e["control"] == "drift" && e["container"]["id"] == id.as_str() && e["process"]["exe"] == exe
    })
}

// ---------------------------------------------------------------------------------------------
// Class 1: a changed root.
// ---------------------------------------------------------------------------------------------

const CHROOT_TMPFS: &str = "cp /bin/busybox /dev/true && chroot /dev /true; echo dev=$?; \
     cp /bin/busybox /scratch/true && chroot /scratch /true; echo scratch=$?; \
     chroot / /bin/true; echo image=$?";

#[test]
fn chroot_into_a_tmpfs_is_still_drift() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let (c, out) = run_in(
        &image,
        "chroot-tmpfs",
        &["--network", "none", "--tmpfs", "/scratch:exec"],
        CHROOT_TMPFS,
    );
    let s = text(&out.stdout);
    assert_eq!(
        rc(&s, "dev"),
        Some(137),
        "chroot /dev: {s} {}",
        text(&out.stderr)
    );
    assert_eq!(rc(&s, "scratch"), Some(137), "chroot into --tmpfs: {s}");
    assert_eq!(
        rc(&s, "image"),
        Some(0),
        "an image binary under chroot / still runs: {s}"
    );
    // The path is the file's path from the container's root, not from the chroot.
    for exe in ["/dev/true", "/scratch/true"] {
        let e = drift_event(&agent, &c, exe);
        assert_eq!(e["action"], "blocked");
        assert_eq!(e["kind"], "exec");
    }
}

#[test]
fn chroot_into_a_tmpfs_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("audit", "[drift]\nprevent = true\n");
    let (c, out) = run_in(
        &image,
        "chroot-tmpfs-audit",
        &["--network", "none", "--tmpfs", "/scratch:exec"],
        CHROOT_TMPFS,
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "dev"), Some(0), "audit lets it run: {s}");
    assert_eq!(rc(&s, "scratch"), Some(0), "{s}");
    for exe in ["/dev/true", "/scratch/true"] {
        assert_eq!(drift_event(&agent, &c, exe)["action"], "audited");
    }
}

#[test]
fn chroot_into_an_image_directory_keeps_exec_paths() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with(
        "enforce",
        "[drift]\nprevent = true\n[exec]\ndeny = [\"/usr/local/bin/wget\"]\n",
    );
    // `chroot /usr/local/bin /wget` runs /usr/local/bin/wget: the deny list must see that name.
    let (c, out) = run_in(
        &image,
        "chroot-subdir",
        &["--network", "none"],
        "chroot /usr/local/bin /wget --help >/dev/null 2>&1; echo sub=$?; \
         /usr/local/bin/wget --help >/dev/null 2>&1; echo direct=$?; cat /etc/hostname >/dev/null; echo cat=$?",
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "sub"), Some(137), "{s} {}", text(&out.stderr));
    assert_eq!(rc(&s, "direct"), Some(137), "{s}");
    assert_eq!(
        rc(&s, "cat"),
        Some(0),
        "other image tools keep running: {s}"
    );
    let id = c.id();
    let n = at_least(&agent, 2, |e| {
        e["control"] == "exec"
            && e["action"] == "blocked"
            && e["container"]["id"] == id.as_str()
            && e["process"]["exe"] == "/usr/local/bin/wget"
    });
    assert!(
        n,
        "both execs are reported as /usr/local/bin/wget blocked: {:?}",
        agent.events()
    );
}

#[test]
fn a_volume_is_not_the_image() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let vol = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", vol.path().join("true")).unwrap();
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let mount = format!("{}:/data", vol.path().display());
    let (c, out) = run_in(
        &image,
        "volume",
        &["--network", "none", "-v", &mount],
        "/data/true; echo direct=$?; chroot /data /true; echo chroot=$?",
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "direct"), Some(137), "{s} {}", text(&out.stderr));
    assert_eq!(rc(&s, "chroot"), Some(137), "{s}");
    assert_eq!(drift_event(&agent, &c, "/data/true")["action"], "blocked");
}

// ---------------------------------------------------------------------------------------------
// Class 2: code that is not from the image, run without exec'ing it (the fallback's part).
// ---------------------------------------------------------------------------------------------

#[test]
fn the_dynamic_loader_run_as_a_program_is_drift_on_the_fallback() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let script = format!(
        "cp {DYN_TRUE} /tmp/t; {LOADER} /tmp/t; echo dropped=$?; {LOADER} {DYN_TRUE}; echo image=$?; \
         {DYN_TRUE}; echo benign=$?"
    );
    let (c, out) = run_in(&image, "loader", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "dropped"), Some(137), "{s} {}", text(&out.stderr));
    // The fallback cannot see what the loader maps, so even an image file run through it is
    // refused (BPF LSM judges the mapped file instead).
    assert_eq!(rc(&s, "image"), Some(137), "{s}");
    assert_eq!(
        rc(&s, "benign"),
        Some(0),
        "a dynamic image program still runs: {s}"
    );
    let id = c.id();
    let e = agent.expect("loader drift", |e| {
        e["control"] == "drift"
            && e["container"]["id"] == id.as_str()
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("dynamic loader")
    });
    assert_eq!(e["action"], "blocked");
    assert!(
        e["process"]["exe"].as_str().unwrap().contains("ld-linux"),
        "{e}"
    );
}

/// The environment doors, each with its own `rc` key.
fn preload_script() -> String {
    let padding: Vec<String> = (0..3000).map(|i| format!("PAD{i}=x")).collect();
    format!(
        "cp {EVIL_SO} /tmp/evil.so; \
         LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo preload=$?; \
         LD_AUDIT=/tmp/evil.so {DYN_TRUE}; echo audit=$?; \
         LD_LIBRARY_PATH=/tmp {DYN_TRUE}; echo libpath=$?; \
         LD_LIBRARY_PATH=/opt/lib: {DYN_TRUE}; echo emptyelem=$?; \
         env {} LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo padded=$?; \
         LD_PRELOAD= {DYN_TRUE}; echo empty=$?; \
         LD_LIBRARY_PATH=/opt/lib {DYN_TRUE}; echo allowed=$?; \
         echo /tmp/evil.so > /etc/ld.so.preload; echo preloadfile=$?; {DYN_TRUE}; echo after=$?",
        padding.join(" ")
    )
}

const PRELOAD_KEYS: &[&str] = &["preload", "audit", "libpath", "emptyelem", "padded"];

#[test]
fn ld_preload_ld_audit_and_ld_library_path_of_a_dropped_library_are_drift() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with(
        "enforce",
        "[drift]\nprevent = true\nallow = [\"/opt/lib/**\"]\n",
    );
    let (c, out) = run_in(&image, "preload", &["--network", "none"], &preload_script());
    let s = text(&out.stdout);
    assert!(!s.contains("PRELOAD-RAN"), "the dropped library ran: {s}");
    for key in PRELOAD_KEYS {
        assert_eq!(rc(&s, key), Some(137), "{key}: {s} {}", text(&out.stderr));
    }
    assert_eq!(
        rc(&s, "empty"),
        Some(0),
        "an empty LD_PRELOAD loads nothing: {s}"
    );
    assert_ne!(
        rc(&s, "preloadfile"),
        Some(0),
        "/etc/ld.so.preload was written: {s}"
    );
    assert_eq!(rc(&s, "after"), Some(0), "{s}");
    assert_eq!(
        rc(&s, "allowed"),
        Some(0),
        "a directory on the drift allow list: {s}"
    );
    let id = c.id();
    let blocked = at_least(&agent, PRELOAD_KEYS.len(), |e| {
        e["control"] == "drift"
            && e["action"] == "blocked"
            && e["container"]["id"] == id.as_str()
            && e["process"]["exe"] == DYN_TRUE
    });
    assert!(
        blocked,
        "one blocked drift event per door: {:?}",
        agent.events()
    );
}

#[test]
fn ld_preload_of_a_dropped_library_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("audit", "[drift]\nprevent = true\n");
    let script =
        format!("cp {EVIL_SO} /tmp/evil.so; LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo preload=$?");
    let (c, out) = run_in(&image, "preload-audit", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert!(s.contains("PRELOAD-RAN"), "audit lets it run: {s}");
    assert_eq!(rc(&s, "preload"), Some(0), "{s}");
    let e = drift_event(&agent, &c, DYN_TRUE);
    assert_eq!(e["action"], "audited");
    assert!(e["message"].as_str().unwrap().contains("LD_PRELOAD"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Class 3: scripts with no file the fallback can see.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_script_run_from_memory_or_deleted_is_refused() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let script = format!(
        "printf '#!/bin/sh\\necho SCRIPT-RAN\\n' > /tmp/s.sh; chmod +x /tmp/s.sh; cp /tmp/s.sh /tmp/d.sh; \
         {ATTACK} exec memfd /tmp/s.sh; echo memfd=$?; {ATTACK} exec deleted /tmp/d.sh; echo deleted=$?; \
         cp /bin/busybox /tmp/elf; {ATTACK} exec memfd /tmp/elf true; echo elf=$?"
    );
    let (c, out) = run_in(&image, "fd-script", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert!(!s.contains("SCRIPT-RAN"), "a script ran: {s}");
    for key in ["memfd", "deleted", "elf"] {
        assert_eq!(
            rc(&s, key),
            Some(1),
            "{key} must be refused: {s} {}",
            text(&out.stderr)
        );
    }
    // Refused means killed before the first instruction (kernel) or EPERM (fanotify).
    assert!(
        s.lines()
            .filter(|l| l.starts_with("exec "))
            .all(|l| l.contains("signal=9") || l.contains("errno=1")),
        "{s}"
    );
    let id = c.id();
    let n = at_least(&agent, 3, |e| {
        e["control"] == "drift" && e["action"] == "blocked" && e["container"]["id"] == id.as_str()
    });
    assert!(n, "three blocked drift events: {:?}", agent.events());
}

// ---------------------------------------------------------------------------------------------
// Class 4: fail closed on uncertainty.
// ---------------------------------------------------------------------------------------------

/// Deeper than the kernel walks (160 components): only the deepest 160 are kept, which here
/// read `/usr/local/a/…/true`, a path under an allowed tree. It must not be allowed.
#[test]
fn a_truncated_path_never_matches_an_allow_list() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with(
        "enforce",
        "[exec]\nallow = [\"/bin/*\", \"/usr/local/**\"]\n",
    );
    let deep = format!("/tmp/usr/local/{}", nested(157));
    let script = format!(
        "mkdir -p {deep} && cp /bin/busybox {deep}/true && {deep}/true; echo deep=$?; \
         /usr/local/bin/wget --help >/dev/null 2>&1; echo allowed=$?"
    );
    let (c, out) = run_in(&image, "deep", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "deep"), Some(137), "{s} {}", text(&out.stderr));
    assert_eq!(
        rc(&s, "allowed"),
        Some(0),
        "an allowed tool still runs: {s}"
    );
    let id = c.id();
    let e = agent.expect("blocked truncated exec", |e| {
        e["control"] == "exec" && e["action"] == "blocked" && e["container"]["id"] == id.as_str()
    });
    assert!(e["message"].as_str().unwrap().contains("too deep"), "{e}");
    assert!(
        e["process"]["exe"]
            .as_str()
            .unwrap()
            .starts_with("…/usr/local/a/"),
        "a truncated path is marked, not passed off as a real one: {e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Class 6: network rules for every way out.
// ---------------------------------------------------------------------------------------------

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

/// Scripts the exec tracepoint cannot see (it only sees their interpreter): on a tmpfs, a
/// `--tmpfs` mount, a volume, and with a name that is not UTF-8 — each refused with EPERM by
/// fanotify on that mount, and reported with its bytes intact; an image script still runs.
#[test]
fn scripts_on_other_filesystems_and_with_odd_names_are_refused() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let vol = tempfile::tempdir().unwrap();
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let mount = format!("{}:/data", vol.path().display());
    let script = format!(
        "w() {{ printf '#!/bin/sh\\necho DROPPED-RAN\\n' > \"$1\"; chmod +x \"$1\"; \"$1\"; }}; \
         w /dev/s.sh; echo dev=$?; w /scratch/s.sh; echo scratch=$?; w /data/s.sh; echo data=$?; \
         w \"$(printf '/tmp/\\377\\376.sh')\"; echo odd=$?; {IMAGE_SCRIPT}; echo image=$?"
    );
    let (c, out) = run_in(
        &image,
        "scripts",
        &[
            "--network",
            "none",
            "--tmpfs",
            "/scratch:exec",
            "-v",
            &mount,
        ],
        &script,
    );
    let s = text(&out.stdout);
    assert!(!s.contains("DROPPED-RAN"), "a dropped script ran: {s}");
    for key in ["dev", "scratch", "data", "odd"] {
        assert_eq!(rc(&s, key), Some(126), "{key}: {s} {}", text(&out.stderr));
    }
    assert!(
        s.contains("IMAGE-SCRIPT-RAN") && rc(&s, "image") == Some(0),
        "an image script runs: {s}"
    );
    for exe in [
        "/dev/s.sh",
        "/scratch/s.sh",
        "/data/s.sh",
        "/tmp/\\xff\\xfe.sh",
    ] {
        let e = drift_event(&agent, &c, exe);
        assert_eq!(e["action"], "blocked", "{e}");
        assert_eq!(e["kind"], "exec");
    }
}

#[test]
fn a_script_on_a_tmpfs_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("audit", "[drift]\nprevent = true\n");
    let (c, out) = run_in(
        &image,
        "scripts-audit",
        &["--network", "none"],
        "printf '#!/bin/sh\\necho SCRIPT-RAN\\n' > /dev/s.sh; chmod +x /dev/s.sh; /dev/s.sh; echo dev=$?",
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("SCRIPT-RAN") && rc(&s, "dev") == Some(0),
        "audit lets it run: {s}"
    );
    assert_eq!(drift_event(&agent, &c, "/dev/s.sh")["action"], "audited");
}

// ---------------------------------------------------------------------------------------------
// Class 5: file rules on the file, not on one of its names.
// ---------------------------------------------------------------------------------------------

const FILE_RULES: &str = "[files]\nread_only = [\"/etc/passwd\", \"/etc/app/**\"]\n\
                          deny = [\"/etc/group\", \"/etc/secrets/**\", \"/etc/hostname\"]\n";

/// Each attempt prints `k<N>=<exit>` after the helper's own line (`… errno=E` or `… ok`).
fn file_attacks() -> Vec<(&'static str, String, &'static str)> {
    let a = ATTACK;
    vec![
        // (what, command, expected helper line)
        (
            "write from a second thread",
            format!("{a} write thread /etc/passwd"),
            "thread errno=1",
        ),
        (
            "write through openat2",
            format!("{a} write openat2 /etc/passwd"),
            "openat2 errno=1",
        ),
        (
            "write through int 0x80",
            format!("{a} write int80 /etc/passwd"),
            "int80 errno=1",
        ),
        (
            "append from the shell",
            "echo EVIL >> /etc/passwd".to_string(),
            "",
        ),
        (
            "hard link of a read-only file",
            format!("{a} fsop link /etc/passwd /tmp/p"),
            "link errno=18",
        ),
        (
            "rename away of a read-only file",
            format!("{a} fsop rename /etc/passwd /tmp/p"),
            "rename errno=16",
        ),
        (
            "unlink of a read-only file",
            format!("{a} fsop unlink /etc/passwd"),
            "unlink errno=16",
        ),
        (
            "write below a read-only tree",
            format!("{a} write open /etc/app/app.conf"),
            "open errno=30",
        ),
        (
            "create below a read-only tree",
            format!("{a} write creat /etc/app/new"),
            "creat errno=30",
        ),
        (
            "truncate(2) below a read-only tree",
            format!("{a} fsop truncate /etc/app/app.conf"),
            "truncate errno=30",
        ),
        (
            "chmod below a read-only tree",
            format!("{a} fsop chmod /etc/app/app.conf"),
            "chmod errno=30",
        ),
        (
            "rename below a read-only tree",
            format!("{a} fsop rename /etc/app/app.conf /etc/app/x"),
            "rename errno=30",
        ),
        (
            "hard link out of a read-only tree",
            format!("{a} fsop link /etc/app/app.conf /tmp/l"),
            "link errno=18",
        ),
        (
            "read of a denied file",
            format!("{a} read /etc/group"),
            "read errno=1",
        ),
        (
            "read of a denied Docker bind mount",
            format!("{a} read /etc/hostname"),
            "read errno=1",
        ),
        (
            "rename away of a denied file",
            format!("{a} fsop rename /etc/group /tmp/g"),
            "rename errno=16",
        ),
        (
            "hard link of a denied file",
            format!("{a} fsop link /etc/group /tmp/g"),
            "link errno=18",
        ),
        (
            "read below a denied tree",
            format!("{a} read /etc/secrets/key"),
            "read errno=2",
        ),
        (
            "rename of a denied tree",
            format!("{a} fsop rename /etc/secrets /tmp/s"),
            "rename errno=16",
        ),
        (
            "unmount a protection",
            format!("{a} fsop umount /etc/passwd"),
            "umount errno=1",
        ),
        (
            "remount a protection writable",
            format!("{a} fsop mount-rw /etc/app"),
            "mount-rw errno=1",
        ),
    ]
}

#[test]
fn file_rules_hold_through_other_names_threads_and_syscalls() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", FILE_RULES);
    let attacks = file_attacks();
    let mut script = String::from("md5sum /etc/passwd /etc/app/app.conf > /tmp/before; ");
    for (i, (_, cmd, _)) in attacks.iter().enumerate() {
        script.push_str(&format!("{cmd}; echo k{i}=$?; "));
    }
    script.push_str(
        "md5sum /etc/passwd /etc/app/app.conf > /tmp/after; cmp /tmp/before /tmp/after; echo same=$?; \
         test -e /etc/app/new; echo created=$?; cat /etc/passwd > /dev/null; echo read_ro=$?; \
         cat /etc/app/app.conf > /dev/null; echo read_tree=$?; echo ok > /tmp/ok; echo tmp=$?",
    );
    let (c, out) = run_in(&image, "file-rules", &["--network", "none"], &script);
    let s = text(&out.stdout);
    for (i, (what, _, line)) in attacks.iter().enumerate() {
        assert_ne!(
            rc(&s, &format!("k{i}")),
            Some(0),
            "{what} went through: {s}"
        );
        assert!(
            line.is_empty() || s.contains(line),
            "{what}: expected `{line}`: {s}"
        );
    }
    assert_eq!(rc(&s, "same"), Some(0), "a read-only file changed: {s}");
    assert_eq!(
        rc(&s, "created"),
        Some(1),
        "a refused create left a file: {s}"
    );
    for key in ["read_ro", "read_tree", "tmp"] {
        assert_eq!(
            rc(&s, key),
            Some(0),
            "benign {key} failed: {s} {}",
            text(&out.stderr)
        );
    }
    let id = c.id();
    // The write opens are refused by fanotify and reported, whatever thread or ABI made them.
    let writes = at_least(&agent, 4, |e| {
        e["kind"] == "file"
            && e["action"] == "blocked"
            && e["file"]["path"] == "/etc/passwd"
            && e["container"]["id"] == id.as_str()
    });
    assert!(
        writes,
        "four blocked writes of /etc/passwd: {:?}",
        agent.events()
    );
    agent.expect("blocked read of /etc/group", |e| {
        e["kind"] == "file" && e["action"] == "blocked" && e["file"]["path"] == "/etc/group"
    });
}

#[test]
fn file_rules_in_audit_report_and_let_it_happen() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("audit", FILE_RULES);
    let (c, out) = run_in(
        &image,
        "file-audit",
        &["--network", "none"],
        &format!(
            "{ATTACK} write thread /etc/passwd; echo w=$?; cat /etc/group > /dev/null; echo r=$?"
        ),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "w"), Some(0), "{s}");
    assert_eq!(rc(&s, "r"), Some(0), "{s}");
    let id = c.id();
    for path in ["/etc/passwd", "/etc/group"] {
        let e = agent.expect(&format!("audited {path}"), |e| {
            e["kind"] == "file" && e["file"]["path"] == path && e["container"]["id"] == id.as_str()
        });
        assert_eq!(e["action"], "audited");
    }
}

// ---------------------------------------------------------------------------------------------
// Class 7: saying what is not covered.
// ---------------------------------------------------------------------------------------------

#[test]
fn status_and_profile_check_say_what_this_backend_cannot_enforce() {
    if !privileged() {
        return;
    }
    let body = "[drift]\nprevent = true\n[network]\nblock_raw_sockets = true\n";
    let agent = agent_with("enforce", body);
    let s = status_json(&agent);
    let line = |class: &str| {
        s["coverage"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["class"] == class).cloned())
            .unwrap_or_else(|| panic!("no coverage line {class}: {s}"))
    };
    let lsm = s["backends"]["lsm_unavailable"].is_null();
    if lsm {
        assert_eq!(line("packet_socket")["coverage"], "enforced");
    } else {
        assert_eq!(line("packet_socket")["coverage"], "not_visible");
        assert!(line("packet_socket")["closes"]
            .as_str()
            .unwrap()
            .contains("BPF LSM"));
        assert_eq!(line("executable_mapping")["coverage"], "not_visible");
    }
    assert_eq!(line("loopback_alias")["coverage"], "enforced");
    assert_eq!(line("changed_root")["coverage"], "enforced");
    let txt = Command::new(agent_bin())
        .args(["status", "--api-socket"])
        .arg(&agent.api)
        .output()
        .unwrap();
    assert!(
        text(&txt.stdout).contains("coverage on this backend"),
        "{}",
        text(&txt.stdout)
    );

    let check = Command::new(agent_bin())
        .args(["profile", "check"])
        .arg(&agent.profiles)
        .output()
        .unwrap();
    let c = text(&check.stdout);
    assert!(
        check.status.success(),
        "warnings do not fail the check: {c}"
    );
    if !lsm {
        assert!(
            c.contains("warning") && c.contains("AF_PACKET") && c.contains("closed by BPF LSM"),
            "{c}"
        );
        assert!(c.contains("dlopen"), "{c}");
    }
}
