//! Issue 3: per-image profiles enforced in the kernel, each control in enforce and audit mode,
//! asserting both sides: what the process in the container saw and the event the agent wrote.

use std::{net::TcpListener, process::Command, time::Duration};

use seawall_integration::*;

/// The entrypoint: exits 137 when the copy is killed, 127 when it ran (busybox as `x`
/// says "applet not found").
const DRIFT_SCRIPT: &str = "cp /bin/busybox /tmp/x && /tmp/x true";
/// The same drift, exiting 0 when it is allowed to run.
const DRIFT_RUNS: &str = "cp /bin/busybox /tmp/true && /tmp/true";

fn exit_code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn drift_enforce_kills_a_copied_binary_before_it_runs_and_reports_it() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh(
        "drift",
        "none",
        "cp /bin/busybox /tmp/echo && /tmp/echo SHOULD-NOT-PRINT; echo rc=$?",
    );
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("SHOULD-NOT-PRINT"),
        "the dropped binary ran: {stdout}"
    );
    assert!(
        stdout.contains("rc=137"),
        "expected SIGKILL (137), got: {stdout} {}",
        text(&out.stderr)
    );
    let id = c.id();
    let e = agent.expect("blocked drift", |e| {
        e["kind"] == "exec" && e["control"] == "drift" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["process"]["exe"], "/tmp/echo");
    assert_eq!(e["container"]["image"], IMAGE);
    assert_eq!(e["severity"], "critical");
}

#[test]
fn drift_audit_reports_and_lets_it_run() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "audit", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh(
        "drift-audit",
        "none",
        "cp /bin/busybox /tmp/echo && /tmp/echo RAN",
    );
    assert_eq!(exit_code(&out), 0);
    assert!(text(&out.stdout).contains("RAN"));
    let id = c.id();
    let e = agent.expect("audited drift", |e| {
        e["control"] == "drift" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "audited");
}

#[test]
fn drift_is_blocked_in_fifty_containers_started_back_to_back() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let _agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let mut escaped = Vec::new();
    for i in 0..50 {
        let (c, out) = run_sh("burst", "none", DRIFT_SCRIPT);
        if exit_code(&out) != 137 {
            escaped.push((i, c.name.clone(), exit_code(&out), text(&out.stderr)));
        }
    }
    assert!(escaped.is_empty(), "drift exec not blocked in: {escaped:?}");
}

#[test]
fn the_host_and_other_images_are_untouched_while_drift_is_enforced() {
    if !privileged() {
        return;
    }
    // Enforce only for an image that is not the test image: the test image falls to the
    // default profile (audit), and the host is never in scope.
    let p = "[profile]\nname = \"other\"\nimages = [\"some-other-image*\"]\nmode = \"enforce\"\n[drift]\nprevent = true\n";
    let strict_default =
        "[profile]\nname = \"default\"\nmode = \"enforce\"\n[drift]\nprevent = true\n";
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE), ("other.toml", p)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    let st = Command::new("/bin/sh")
        .args(["-c", &format!("cp /bin/true {0} && {0}", x.display())])
        .status()
        .unwrap();
    assert!(st.success(), "host drift-like exec must run");
    let (_c, out) = run_sh("other", "none", DRIFT_RUNS);
    assert_eq!(
        exit_code(&out),
        0,
        "a container under an audit profile must not be killed: {}",
        text(&out.stderr)
    );
    drop(agent);
    // Even with an enforcing default, the host still runs its copied binaries.
    let _agent = Agent::start(&[("default.toml", strict_default)], &[]);
    let st = Command::new("/bin/sh")
        .args(["-c", &format!("cp /bin/true {0}2 && {0}2", x.display())])
        .status()
        .unwrap();
    assert!(st.success(), "host exec must never be killed");
}

#[test]
fn exec_deny_list_kills_the_listed_binary_only() {
    if !privileged() {
        return;
    }
    let p = test_profile(
        "busybox",
        "enforce",
        "[exec]\ndeny = [\"/usr/local/bin/*\"]\n",
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh("exec-deny", "none", "/usr/local/bin/wget --help >/dev/null 2>&1; echo rc=$?; cat /etc/hostname >/dev/null; echo cat=$?");
    let s = text(&out.stdout);
    assert!(s.contains("rc=137"), "{s}");
    assert!(s.contains("cat=0"), "other binaries still run: {s}");
    let id = c.id();
    let e = agent.expect("blocked exec", |e| {
        e["control"] == "exec" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["process"]["exe"], "/usr/local/bin/wget");
}

#[test]
fn exec_allow_list_in_audit_mode_reports_what_is_not_on_it() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "audit", "[exec]\nallow = [\"/bin/*\"]\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh(
        "exec-allow",
        "none",
        "/usr/local/bin/wget --help >/dev/null 2>&1; echo rc=$?",
    );
    assert!(
        text(&out.stdout).contains("rc=0") || text(&out.stdout).contains("rc=1"),
        "audit lets it run: {}",
        text(&out.stdout)
    );
    let id = c.id();
    let e = agent.expect("audited exec", |e| {
        e["control"] == "exec" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "audited");
    assert_eq!(e["process"]["exe"], "/usr/local/bin/wget");
    // /bin/busybox is on the list: no exec-control event for it.
    assert!(agent
        .events()
        .iter()
        .all(|e| !(e["control"] == "exec" && e["process"]["exe"] == "/bin/busybox")));
}

#[test]
fn docker_exec_sessions_are_blocked_when_the_profile_says_so() {
    if !privileged() {
        return;
    }
    let p = test_profile(
        "busybox",
        "enforce",
        "[exec]\nblock_container_exec = true\n",
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let c = start_sh(
        "cexec",
        "none",
        "while true; do cat /etc/hostname >/dev/null; sleep 0.2; done",
    );
    std::thread::sleep(Duration::from_millis(800));
    let out = Command::new("docker")
        .args(["exec", &c.name, "cat", "/etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "docker exec must be killed: {}",
        text(&out.stdout)
    );
    let id = c.id();
    let e = agent.expect("blocked container exec", |e| {
        e["control"] == "container_exec" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    // The container's own processes keep running.
    let running = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &c.name])
        .output()
        .unwrap();
    assert_eq!(text(&running.stdout).trim(), "true");
    assert!(
        agent
            .events()
            .iter()
            .all(|e| !(e["control"] == "container_exec" && args_contain(e, "/etc/hostname"))),
        "init's own loop is not a docker exec"
    );
}

#[test]
fn file_deny_and_read_only_give_eperm_and_leave_the_file_unchanged() {
    if !privileged() {
        return;
    }
    let p = test_profile(
        "busybox",
        "enforce",
        "[files]\ndeny = [\"/etc/group\"]\nread_only = [\"/etc/passwd\"]\n",
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh(
        "files",
        "none",
        "sleep 1; md5sum /etc/passwd; echo evil >> /etc/passwd; echo append=$?; md5sum /etc/passwd; cat /etc/group; echo group=$?",
    );
    let s = text(&out.stdout);
    let err = text(&out.stderr);
    let sums: Vec<&str> = s.lines().filter(|l| l.contains("/etc/passwd")).collect();
    assert_eq!(sums.len(), 2, "{s} {err}");
    assert_eq!(sums[0], sums[1], "read-only file changed");
    assert!(s.contains("append=1") || s.contains("append=2"), "{s}");
    assert!(
        err.contains("Operation not permitted"),
        "EPERM expected: {err}"
    );
    assert!(s.contains("group=1"), "denied file was read: {s}");
    let id = c.id();
    let ro = agent.expect("blocked read-only write", |e| {
        e["kind"] == "file" && e["file"]["path"] == "/etc/passwd" && e["action"] == "blocked"
    });
    assert_eq!(ro["container"]["id"], id.as_str());
    assert_eq!(ro["control"], "file");
    assert!(ro["file"]["flags"].as_str().unwrap().contains("O_WRONLY"));
    agent.expect("blocked denied open", |e| {
        e["kind"] == "file" && e["file"]["path"] == "/etc/group" && e["action"] == "blocked"
    });
}

#[test]
fn egress_deny_gives_eperm_and_the_listener_gets_nothing() {
    if !privileged() {
        return;
    }
    let denied = TcpListener::bind("127.0.0.1:0").unwrap();
    let dport = denied.local_addr().unwrap().port();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let aport = allowed.local_addr().unwrap().port();
    let p = test_profile(
        "busybox",
        "enforce",
        &format!("[network]\negress_deny = [\"127.0.0.1:{dport}/tcp\"]\n"),
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let server = serve_once(allowed);
    let (c, out) = run_sh(
        "egress",
        "host",
        &format!("echo x | nc 127.0.0.1 {dport}; echo denied=$?; echo ok | nc 127.0.0.1 {aport}; echo allowed=$?"),
    );
    let s = text(&out.stdout);
    assert!(s.contains("denied=1"), "{s}");
    assert!(s.contains("allowed=0"), "{s}");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !got_connection(&denied, Duration::from_millis(500)),
        "the denied listener got a connection"
    );
    assert_eq!(server.join().unwrap().as_deref().map(str::trim), Some("ok"));
    let id = c.id();
    let e = agent.expect("blocked connect", |e| {
        e["kind"] == "network" && e["action"] == "blocked" && e["network"]["port"] == dport
    });
    assert_eq!(e["control"], "network");
    assert_eq!(e["network"]["address"], "127.0.0.1");
    assert_eq!(e["container"]["id"], id.as_str());
}

#[test]
fn egress_audit_reports_but_connects_and_listen_allow_blocks_other_ports() {
    if !privileged() {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let p = test_profile(
        "busybox",
        "enforce",
        &format!("[network]\nmode = \"audit\"\negress_allow = [\"10.0.0.0/8\"]\nlisten_allow = [{port}]\n"),
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let _server = serve_once(l);
    let (c, out) = run_sh(
        "egress-audit",
        "host",
        &format!("echo x | nc 127.0.0.1 {port}; echo rc=$?"),
    );
    assert!(text(&out.stdout).contains("rc=0"), "{}", text(&out.stdout));
    let id = c.id();
    let e = agent.expect("audited connect", |e| {
        e["kind"] == "network" && e["action"] == "audited" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["network"]["port"], port);
    drop(agent);
    // listen_allow in enforce mode: binding another port fails.
    let p = test_profile("busybox", "enforce", "[network]\nlisten_allow = [8080]\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh("listen", "none", "timeout 1 nc -l -p 9099; echo rc=$?");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let id = c.id();
    let e = agent.expect("blocked bind", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "bind"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["network"]["port"], 9099);
}

#[test]
fn an_invalid_profile_on_reload_keeps_the_previous_policy() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    std::fs::write(agent.profiles.join("busybox.toml"), "[profile]\nname = \"busybox\"\nimages = [\"seawall-test/busybox*\"]\nmode = \"enforce\"\n[drift]\nprevnt = true\n").unwrap();
    agent.sighup();
    let e = agent.expect("rejected reload", |e| {
        e["kind"] == "agent" && e["message"].as_str().unwrap_or("").contains("rejected")
    });
    assert!(
        e["message"].as_str().unwrap().contains("prevnt"),
        "the event names the problem: {e}"
    );
    let (_c, out) = run_sh("reload", "none", DRIFT_SCRIPT);
    assert_eq!(
        exit_code(&out),
        137,
        "the previous (enforcing) policy must still hold"
    );
}

#[test]
fn profile_check_reports_file_line_col_and_fails() {
    // Needs no privileges.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[profile]\nname = \"bad\"\nimages = [\"x\"]\nmode = \"enforced\"\n",
    )
    .unwrap();
    let out = Command::new(agent_bin())
        .args(["profile", "check"])
        .arg(&f)
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP: {} not built", agent_bin().display());
        return;
    };
    let s = text(&out.stdout);
    assert!(!out.status.success());
    assert!(s.contains(&format!("{}:4:", f.display())), "{s}");
    assert!(
        s.contains("enforce"),
        "the message says what to write instead: {s}"
    );
    let good = Command::new(agent_bin())
        .args(["profile", "check"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles"))
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "shipped profiles are valid: {}",
        text(&good.stdout)
    );
}

#[test]
fn a_script_written_in_the_container_is_refused_as_drift() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let (c, out) = run_sh(
        "script",
        "none",
        "printf '#!/bin/sh\\necho SCRIPT-RAN\\n' > /tmp/s.sh; chmod +x /tmp/s.sh; /tmp/s.sh; echo rc=$?; sh /tmp/s.sh >/dev/null; echo sh=$?",
    );
    let s = text(&out.stdout);
    assert!(!s.contains("SCRIPT-RAN"), "the dropped script ran: {s}");
    assert!(
        s.contains("rc=126"),
        "exec of the script must fail with EPERM (126): {s} {}",
        text(&out.stderr)
    );
    assert!(
        s.contains("sh=0"),
        "feeding a file to an image interpreter is not an exec of it: {s}"
    );
    let id = c.id();
    let e = agent.expect("blocked script drift", |e| {
        e["control"] == "drift"
            && e["process"]["exe"] == "/tmp/s.sh"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["kind"], "exec");
}
