//! The threat model's attacker: root with Docker's default capabilities, a static helper
//! making raw syscalls through other ABIs, io_uring and seccomp, and threads racing memory and
//! fds against the supervisor's checks.

use super::*;

#[test]
fn root_with_dockers_default_capabilities_gets_around_nothing_either() {
    if !ready() {
        return;
    }
    // The threat model's attacker: root with what Docker grants by default (DAC override,
    // chroot, kill, raw sockets…); only no_new_privs is kept.
    let caps: Vec<String> = DOCKER_DEFAULT_CAPS
        .iter()
        .flat_map(|c| ["--cap-add".to_string(), c.to_string()])
        .collect();
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let r = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &caps,
        &[],
        r#"
        grep -q '^CapEff:.*a80425fb' /proc/self/status && echo "default caps"
        before=$(md5sum /etc/passwd)
        cp /mt/micro-helper /tmp/drift; chmod +x /tmp/drift
        /mt/micro-helper file-names /etc/passwd
        /mt/micro-helper chroot /tmp /etc/passwd /drift
        [ "$before" = "$(md5sum /etc/passwd)" ] && echo unchanged
        /tmp/drift marker; echo "drift=$?"
        /mt/micro-helper read /mt/secret
        /mt/micro-helper raw-socket
        /mt/micro-helper supervisor 1
        exit 6
        "#,
    );
    let out = r.stdout();
    for line in [
        "default caps",
        "open(/proc/self/root/…): EACCES",
        "open(symlink, O_WRONLY): EACCES",
        "open(/proc/self/fd/N, O_WRONLY): EACCES",
        "chroot: ok",
        "chroot: openat(old root, O_WRONLY): EACCES",
        "chroot: execve: EACCES",
        "unchanged",
        "drift=126",
        "open(O_RDONLY): EACCES",
        "socket(AF_PACKET): EPERM",
        "socket(AF_INET, SOCK_RAW): EPERM",
        "kill(SIGKILL): EPERM",
    ] {
        r.assert_out(line);
    }
    assert!(!out.contains("DRIFT-RAN"), "{out}");
    assert_threads_unreachable(&r);
    assert_eq!(r.code(), Some(6), "{out}\n{}", text(&r.out.stderr));

    assert_other_names_reported(&r);
    r.event("write through the old root after chroot", |e| {
        is(e, "file", "file", "blocked")
            && e["file"]["path"] == "/etc/passwd"
            && e["process"]["args"][1] == "chroot"
    });
    let drift: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| is(e, "exec", "drift", "blocked") && e["process"]["exe"] == "/tmp/drift")
        .collect();
    assert_eq!(
        drift.len(),
        2,
        "the chrooted and the direct exec: {drift:?}"
    );
    r.event("denied read", |e| {
        is(e, "file", "file", "blocked") && e["file"]["path"] == "/mt/secret"
    });
    r.event("raw socket", |e| {
        is(e, "network", "network", "blocked") && e["network"]["op"] == "raw_socket"
    });
}

#[test]
fn the_raw_syscall_helper_gets_around_nothing() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        /mt/micro-helper abi int80; echo "int80=$?"
        /mt/micro-helper abi x32; echo "x32=$?"
        /mt/micro-helper io-uring
        /mt/micro-helper seccomp 127.0.0.2 9
        /mt/micro-helper supervisor 1
        exit 9
        "#,
    );
    let out = r.stdout();
    assert!(!out.contains("survived"), "{out}");
    r.assert_out("int80=137");
    r.assert_out("x32=137");
    r.assert_out("io_uring_setup: ENOSYS");
    r.assert_out("seccomp(NEW_LISTENER): EBUSY");
    // An allow-all filter on top changes nothing: the strictest answer wins.
    r.assert_out("seccomp(allow all): ok");
    r.assert_out("connect: EPERM");
    r.assert_out("ptrace(ATTACH): EPERM");
    r.assert_out("open(/proc/PID/mem): EACCES");
    r.assert_out("process_vm_writev: EPERM");
    for fd in 3..8 {
        r.assert_out(&format!("pidfd_getfd({fd}): EPERM"));
    }
    r.assert_out("kill(SIGKILL): EPERM");
    assert_threads_unreachable(&r);
    // The supervisor survived all of it and passed the exit code on.
    assert_eq!(r.code(), Some(9), "{out}");
    let abi: Vec<&Value> = r.events.iter().filter(|e| e["control"] == "abi").collect();
    assert_eq!(abi.len(), 2, "{abi:?}");
    assert!(abi
        .iter()
        .all(|e| e["action"] == "blocked" && message_has(e, "killed")));
    r.event("connect after the loosening attempt", |e| {
        is(e, "network", "network", "blocked") && e["network"]["address"] == "127.0.0.2"
    });
    r.event("micro stopped", |e| {
        e["kind"] == "agent" && message_has(e, "exited with 9")
    });
}

#[test]
fn races_on_memory_and_fds_change_nothing() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.2:0").unwrap();
    let udp_denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (ap, dp) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
    );
    let up = udp_denied.local_addr().unwrap().port();
    denied.set_nonblocking(true).unwrap();
    allowed.set_nonblocking(true).unwrap();
    // Drain the allowed listener while the race runs, so its backlog never fills.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            match allowed.accept() {
                Ok(_) => n += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        n
    });
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "host",
        &format!(
            r#"
            cp /mt/micro-helper /tmp/drift; chmod +x /tmp/drift
            /mt/micro-helper race-connect 127.0.0.1 {ap} 127.0.0.2 {dp} 3
            /mt/micro-helper race-exec /bin/true /tmp/drift 3 2>/dev/null
            /mt/micro-helper race-sendmsg 127.0.0.2 {up} 2
            "#
        ),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted = drain.join().unwrap();
    let out = r.stdout();
    let counts = |prefix: &str| -> Vec<(String, u64)> {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    };
    let c = counts("race-connect: ");
    // Both addresses were tried many times; only the allowed one was ever reached.
    assert!(c[0].1 > 0 && c[1].1 > 0, "{out}");
    assert!(accepted > 0);
    let mut none = 0;
    while denied.accept().is_ok() {
        none += 1;
    }
    assert_eq!(none, 0, "the denied listener was reached {none} times");
    let e = counts("race-exec: ");
    assert_eq!(e[1], ("drift".to_string(), 0), "{out}");
    assert!(e[0].1 > 0 && e[2].1 > 0, "{out}");
    let s = counts("race-sendmsg: ");
    assert_eq!(s[0], ("ok".to_string(), 0), "{out}");
    let mut buf = [0u8; 64];
    udp_denied
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        udp_denied.recv(&mut buf).is_err(),
        "a raced datagram got out"
    );

    r.event("raced connect refused", |e| {
        is(e, "network", "network", "blocked") && e["network"]["address"] == "127.0.0.2"
    });
    r.event("raced exec refused", |e| {
        is(e, "exec", "drift", "blocked") && e["process"]["exe"] == "/tmp/drift"
    });
    r.event("raced sendmsg refused", |e| {
        is(e, "network", "network", "blocked") && e["network"]["op"] == "sendmsg"
    });
}
