//! Issue 16: `seawall-micro` enforces a profile inside a container that has no privileges
//! (`--cap-drop ALL --security-opt no-new-privileges`) and no host agent. Every test looks at
//! both sides: what the process inside saw (exit status, errno, file contents, what a listener
//! on the host received) and the event seawall-micro wrote. The attacks are made by
//! `micro-helper`, a static binary that uses raw syscalls, other ABIs, many threads and racing
//! memory.
//!
//! The binaries are built by `cargo xtask test` (static, musl) and bind-mounted read-only at
//! `/mt`, as the sidecar/volume delivery in deploy/micro does. These tests run containers:
//! hold the host lock (`flock /tmp/seawall-host.lock`).

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use seawall_integration::{got_connection, text, unique_name, Container, IMAGE};
use serde_json::Value;

fn musl_target(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(rel)
}

fn micro_bin() -> PathBuf {
    std::env::var_os("SEAWALL_MICRO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| musl_target("x86_64-unknown-linux-musl/release/seawall-micro"))
}

fn helper_bin() -> PathBuf {
    std::env::var_os("SEAWALL_MICRO_HELPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            musl_target("micro-helper/x86_64-unknown-linux-musl/release/micro-helper")
        })
}

/// Whether these tests can run here; says `SKIP: <why>` loudly, and fails on CI.
fn ready() -> bool {
    let why = if !micro_bin().exists() || !helper_bin().exists() {
        Some(format!(
            "{} or {} not built (cargo xtask test builds them)",
            micro_bin().display(),
            helper_bin().display()
        ))
    } else if !Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some(format!(
            "no Docker daemon or no {IMAGE} (cargo xtask setup)"
        ))
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("micro test cannot run on CI: {why}");
            }
            eprintln!("SKIP: {why}");
            false
        }
    }
}

/// The profile most tests run under: every control in enforce mode.
fn enforce_profile(egress_allow: &str) -> String {
    format!(
        r#"[profile]
name = "micro-test"
mode = "enforce"

[drift]
prevent = true

[exec]
deny = ["/usr/local/bin/wget"]

[files]
read_only = ["/etc/passwd"]
deny = ["/mt/secret"]

[network]
egress_allow = [{egress_allow}]
listen_allow = ["40000-40010"]
block_raw_sockets = true
"#
    )
}

/// One container run of `sh -c SCRIPT` under seawall-micro.
struct Run {
    out: Output,
    events: Vec<Value>,
    _container: Container,
    _dir: tempfile::TempDir,
}

impl Run {
    fn stdout(&self) -> String {
        text(&self.out.stdout)
    }
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    /// The first event matching, or a panic showing what there was.
    fn event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> &Value {
        self.events.iter().find(|e| pred(e)).unwrap_or_else(|| {
            panic!(
                "no event: {what}\nevents:\n{}\nstdout:\n{}\nstderr:\n{}",
                self.events
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.stdout(),
                text(&self.out.stderr)
            )
        })
    }
    fn assert_out(&self, line: &str) {
        assert!(
            self.stdout().lines().any(|l| l.trim() == line),
            "expected `{line}` in the output:\n{}\nstderr:\n{}",
            self.stdout(),
            text(&self.out.stderr)
        );
    }
    fn blocked(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["action"] == "blocked")
            .collect()
    }
}

/// Runs `script` with `sh` under seawall-micro and `profile`, `docker_args` added to the
/// container's (after the no-privilege ones), and `micro_args` to seawall-micro's.
fn run_with(
    profile: &str,
    network: &str,
    docker_args: &[&str],
    micro_args: &[&str],
    script: &str,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mt = dir.path().join("mt");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&mt).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(micro_bin(), mt.join("seawall-micro")).unwrap();
    std::fs::copy(helper_bin(), mt.join("micro-helper")).unwrap();
    std::fs::write(mt.join("p.toml"), profile).unwrap();
    std::fs::write(mt.join("secret"), "the secret\n").unwrap();
    let name = unique_name("micro");
    let container = Container { name: name.clone() };
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--name", &name, "--network", network])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .args(docker_args)
        .arg("-v")
        .arg(format!("{}:/mt:ro", mt.display()))
        .arg("-v")
        .arg(format!("{}:/out", out.display()))
        .arg(IMAGE)
        .args(["/mt/seawall-micro", "--profile", "/mt/p.toml"])
        .args(["--output", "/out/events.jsonl"])
        .args(micro_args)
        .args(["--", "sh", "-c", script]);
    let output = cmd.output().expect("docker run");
    let events = std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Run {
        out: output,
        events,
        _container: container,
        _dir: dir,
    }
}

fn run(profile: &str, network: &str, script: &str) -> Run {
    run_with(profile, network, &[], &[], script)
}

fn is(e: &Value, kind: &str, control: &str, action: &str) -> bool {
    e["kind"] == kind && e["control"] == control && e["action"] == action
}

fn message_has(e: &Value, s: &str) -> bool {
    e["message"].as_str().is_some_and(|m| m.contains(s))
}

#[test]
fn drift_a_copied_binary_a_written_script_and_a_memfd_never_run() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        cp /bin/busybox /tmp/echo; /tmp/echo COPY-RAN; echo "copy=$?"
        printf '#!/bin/sh\necho SCRIPT-RAN\n' > /tmp/s.sh; chmod +x /tmp/s.sh; /tmp/s.sh; echo "script=$?"
        /mt/micro-helper memfd-exec
        echo x >> /bin/busybox; echo "write-exe=$?"
        /bin/busybox true; echo "image=$?"
        "#,
    );
    let out = r.stdout();
    assert!(
        !out.contains("COPY-RAN") && !out.contains("SCRIPT-RAN") && !out.contains("DRIFT-RAN"),
        "{out}"
    );
    r.assert_out("copy=126");
    r.assert_out("script=126");
    r.assert_out("memfd_create(MFD_EXEC): EPERM");
    r.assert_out("fchmod(0755): EPERM");
    r.assert_out("execveat(memfd): EACCES");
    r.assert_out("write-exe=1");
    r.assert_out("image=0");
    for (what, exe) in [
        ("copied binary", "/tmp/echo"),
        ("written script", "/tmp/s.sh"),
    ] {
        let e = r.event(what, |e| {
            is(e, "exec", "drift", "blocked") && e["process"]["exe"] == exe
        });
        assert_eq!(e["severity"], "critical");
        assert_eq!(e["container"]["runtime"], "micro");
    }
    r.event("memfd exec", |e| {
        is(e, "exec", "drift", "blocked")
            && e["process"]["exe"]
                .as_str()
                .is_some_and(|x| x.starts_with("/memfd:payload"))
    });
    r.event("MFD_EXEC request", |e| {
        is(e, "exec", "drift", "blocked") && message_has(e, "MFD_EXEC")
    });
    r.event("write to an image executable", |e| {
        is(e, "file", "drift", "blocked") && e["file"]["path"] == "/bin/busybox"
    });
}

#[test]
fn the_exec_deny_list_holds_under_every_name() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        /usr/local/bin/wget --help >/dev/null 2>&1; echo "direct=$?"
        ln -s /usr/local/bin/wget /tmp/w-sym; /tmp/w-sym --help >/dev/null 2>&1; echo "symlink=$?"
        ln /usr/local/bin/wget /tmp/w-hard 2>/dev/null; echo "hardlink=$?"
        /mt/micro-helper exec /usr/local/bin/wget --help
        "#,
    );
    r.assert_out("direct=126");
    r.assert_out("symlink=126");
    r.assert_out("hardlink=1");
    r.assert_out("execve: EACCES");
    let e = r.event("wget denied", |e| {
        is(e, "exec", "exec", "blocked") && e["process"]["exe"] == "/usr/local/bin/wget"
    });
    assert!(message_has(e, "(denied)"), "{e}");
    assert_eq!(e["severity"], "high");
}

#[test]
fn a_read_only_file_cannot_be_written_truncated_renamed_or_unlinked_and_a_denied_one_not_read() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        before=$(md5sum /etc/passwd)
        /mt/micro-helper file /etc/passwd
        /mt/micro-helper file-names /etc/passwd
        [ "$before" = "$(md5sum /etc/passwd)" ] && echo unchanged
        cat /etc/passwd > /dev/null && echo readable
        /mt/micro-helper read /mt/secret
        echo new > /tmp/other && echo tmp-writable
        "#,
    );
    for line in [
        "open(O_WRONLY): EACCES",
        "open(O_TRUNC): EACCES",
        "truncate: EACCES",
        "openat2(O_WRONLY): EACCES",
        "rename(over it): EACCES",
        "rename(away): EACCES",
        "link(into /tmp): EXDEV",
        "unlink: EACCES",
        "open(/proc/self/root/…): EACCES",
        "open(symlink, O_WRONLY): EACCES",
        "open(/proc/self/fd/N, O_WRONLY): EACCES",
        "unchanged",
        "readable",
        "open(O_RDONLY): EACCES",
        "tmp-writable",
    ] {
        r.assert_out(line);
    }
    for (what, needle) in [
        ("write", "open /etc/passwd O_WRONLY|O_APPEND"),
        ("truncating open", "O_TRUNC"),
        ("truncate", "truncate /etc/passwd"),
        ("rename", "rename /etc/passwd"),
        ("unlink", "unlink /etc/passwd"),
    ] {
        let e = r.event(what, |e| {
            is(e, "file", "file", "blocked") && message_has(e, needle)
        });
        assert_eq!(e["file"]["path"], "/etc/passwd");
        assert!(message_has(e, "(read_only)"), "{e}");
    }
    r.event("denied read", |e| {
        is(e, "file", "file", "blocked")
            && e["file"]["path"] == "/mt/secret"
            && message_has(e, "(deny)")
    });
    assert_other_names_reported(&r);
}

/// `micro-helper file-names /etc/passwd` wrote through three other names: each refusal is
/// reported under the file's own name.
fn assert_other_names_reported(r: &Run) {
    let by_other_name = r
        .events
        .iter()
        .filter(|e| {
            is(e, "file", "file", "blocked")
                && e["file"]["path"] == "/etc/passwd"
                && e["process"]["args"][1] == "file-names"
        })
        .count();
    assert_eq!(by_other_name, 3, "{:?}", r.blocked());
}

/// Docker's default capabilities, added back after `--cap-drop ALL`.
const DOCKER_DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

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
fn egress_to_a_denied_loopback_address_is_refused_while_an_allowed_one_works() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.2:0").unwrap();
    let udp_ok = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (ap, dp) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
    );
    let (uap, udp_) = (
        udp_ok.local_addr().unwrap().port(),
        udp_denied.local_addr().unwrap().port(),
    );
    let accepter = seawall_integration::serve_once(allowed.try_clone().unwrap());
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "host",
        &format!(
            r#"
            echo "== allowed"; /mt/micro-helper connect 127.0.0.1 {ap}
            echo "== denied"; /mt/micro-helper connect 127.0.0.2 {dp}
            echo "== mapped"; /mt/micro-helper connect ::ffff:127.0.0.2 {dp}
            echo "== udp allowed"; /mt/micro-helper udp 127.0.0.1 {uap}
            echo "== udp denied"; /mt/micro-helper udp 127.0.0.2 {udp_}
            "#
        ),
    );
    let out = r.stdout();
    let section = |name: &str| -> String {
        out.split("== ")
            .find(|s| s.starts_with(&format!("{name}\n")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(section("allowed").contains("connect: ok"), "{out}");
    assert!(section("denied").contains("connect: EPERM"), "{out}");
    assert!(section("mapped").contains("connect: EPERM"), "{out}");
    let ua = section("udp allowed");
    let ud = section("udp denied");
    for op in ["sendto", "sendmsg", "sendmmsg"] {
        assert!(ua.contains(&format!("{op}: ok")), "{out}");
        assert!(ud.contains(&format!("{op}: EPERM")), "{out}");
    }
    // The other side: the allowed listener got the line, the denied ones got nothing.
    assert_eq!(
        accepter.join().unwrap().as_deref(),
        Some("hello from the tree\n")
    );
    assert!(!got_connection(&denied, Duration::from_millis(300)));
    udp_ok
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 64];
    while udp_ok.recv(&mut buf).is_ok() {
        got += 1;
        udp_ok
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    assert_eq!(got, 3, "three datagrams to the allowed address");
    udp_denied
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        udp_denied.recv(&mut buf).is_err(),
        "a datagram reached the denied address"
    );

    let e = r.event("denied connect", |e| {
        is(e, "network", "network", "blocked")
            && e["network"]["op"] == "connect"
            && e["network"]["address"] == "127.0.0.2"
    });
    assert_eq!(e["network"]["port"], dp);
    assert_eq!(e["network"]["protocol"], "tcp");
    r.event("denied mapped connect", |e| {
        is(e, "network", "network", "blocked") && e["network"]["address"] == "::ffff:127.0.0.2"
    });
    r.event("denied datagram", |e| {
        is(e, "network", "network", "blocked")
            && e["network"]["op"] == "sendmsg"
            && e["network"]["protocol"] == "udp"
            && e["network"]["address"] == "127.0.0.2"
    });
    assert!(!r
        .events
        .iter()
        .any(|e| e["action"] == "blocked" && e["network"]["address"] == "127.0.0.1"));
}

#[test]
fn listening_is_limited_to_listen_allow() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        "/mt/micro-helper bind 40005; /mt/micro-helper bind 41000; /mt/micro-helper bind 0",
    );
    let out = r.stdout();
    let binds: Vec<&str> = out.lines().filter(|l| l.starts_with("bind:")).collect();
    assert_eq!(binds, ["bind: ok", "bind: EPERM", "bind: ok"], "{out}");
    let e = r.event("denied bind", |e| {
        is(e, "network", "network", "blocked") && e["network"]["op"] == "bind"
    });
    assert_eq!(e["network"]["port"], 41000);
}

#[test]
fn raw_and_packet_sockets_are_refused_even_with_cap_net_raw() {
    if !ready() {
        return;
    }
    // With CAP_NET_RAW the kernel would grant them: what refuses them here is seawall-micro.
    let r = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &["--cap-add", "NET_RAW"],
        &[],
        "/mt/micro-helper raw-socket",
    );
    r.assert_out("socket(AF_PACKET): EPERM");
    r.assert_out("socket(AF_INET, SOCK_RAW): EPERM");
    r.assert_out("socket(SOCK_RAW, high bits): EPERM");
    let raw: Vec<&Value> = r
        .blocked()
        .into_iter()
        .filter(|e| e["network"]["op"] == "raw_socket")
        .collect();
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert!(raw.iter().any(|e| e["network"]["protocol"] == "packet"));
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

/// What `micro-helper supervisor` printed about the supervisor's other threads: there are
/// some, and no signal, trace or memory access reached any of them.
fn assert_threads_unreachable(r: &Run) {
    let out = r.stdout();
    let threads: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("supervisor threads: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no thread count in:\n{out}"));
    assert!(
        threads > 0,
        "the supervisor has worker threads to aim at: {out}"
    );
    for op in [
        "tgkill(0)",
        "ptrace(ATTACH)",
        "pidfd_send_signal(0)",
        "tgkill(SIGKILL)",
        "tkill(SIGKILL)",
    ] {
        r.assert_out(&format!("threads: {op}: EPERM"));
    }
    r.assert_out("threads: open(mem): EACCES");
}

#[test]
fn under_another_init_the_supervisor_cannot_be_signalled_through_its_threads() {
    if !ready() {
        return;
    }
    // `--init` makes Docker's tini PID 1 and seawall-micro its child (as Fargate's
    // `initProcessEnabled` does): the kernel's protection of PID 1 no longer covers it, and a
    // signal aimed at one of its threads is judged against that thread.
    let r = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &["--init"],
        &[],
        r#"
        sup=$(pidof seawall-micro); [ "$sup" != 1 ] && echo "supervisor not pid 1"
        /mt/micro-helper supervisor "$sup"
        sleep 0.2 && echo still-supervised
        exit 4
        "#,
    );
    let out = r.stdout();
    r.assert_out("supervisor not pid 1");
    r.assert_out("kill(SIGKILL): EPERM");
    assert_threads_unreachable(&r);
    // The other side: the supervisor was still there to run `sleep` (a notified exec would
    // fail with ENOSYS without it), pass the code on and say so.
    r.assert_out("still-supervised");
    assert_eq!(r.code(), Some(4), "{out}\n{}", text(&r.out.stderr));
    r.event("micro stopped", |e| {
        e["kind"] == "agent" && message_has(e, "exited with 4")
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

#[test]
fn benign_work_under_the_same_profile_is_unaffected() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = allowed.local_addr().unwrap().port();
    let accepter = seawall_integration::serve_once(allowed);
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "host",
        &format!(
            r#"
            set -e
            ls / > /tmp/ls.txt; grep -q etc /tmp/ls.txt
            cat /etc/passwd | grep -q root
            mkdir -p /tmp/work/a; echo data > /tmp/work/a/f; mv /tmp/work/a/f /tmp/work/g
            mv /tmp/work/g /tmp/moved; rm -r /tmp/work /tmp/moved
            echo 'echo from-sh' > /tmp/script; sh /tmp/script
            seq 1 5 | sort -r | head -1
            (sleep 0.1 & wait)
            echo "hi" | nc 127.0.0.1 {port}
            md5sum /bin/busybox > /dev/null
            echo ALL-OK
            "#
        ),
    );
    let out = r.stdout();
    assert_eq!(r.code(), Some(0), "{out}\n{}", text(&r.out.stderr));
    assert!(out.contains("from-sh") && out.contains("ALL-OK"), "{out}");
    assert_eq!(accepter.join().unwrap().as_deref(), Some("hi\n"));
    let bad: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["action"] != "allowed")
        .collect();
    assert!(bad.is_empty(), "benign work drew violations: {bad:?}");
    let start = r.event("start", |e| {
        e["kind"] == "agent" && message_has(e, "micro started")
    });
    assert_eq!(start["container"]["runtime"], "micro");
}

#[test]
fn pid1_forwards_signals_reaps_orphans_and_passes_exit_codes() {
    if !ready() {
        return;
    }
    let code = |script: &str| run(&enforce_profile("\"127.0.0.1\""), "none", script).code();
    assert_eq!(code("exit 7"), Some(7));
    assert_eq!(code("kill -9 $$"), Some(137));

    // A detached container: SIGTERM from `docker stop` reaches the command through PID 1,
    // and orphans (re-parented to PID 1) do not stay zombies.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(micro_bin(), dir.path().join("seawall-micro")).unwrap();
    std::fs::write(dir.path().join("p.toml"), enforce_profile("\"127.0.0.1\"")).unwrap();
    let name = unique_name("micro-pid1");
    let _c = Container { name: name.clone() };
    let st = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "none"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .arg("-v")
        .arg(format!("{}:/mt:ro", dir.path().display()))
        .args([IMAGE, "/mt/seawall-micro", "--profile", "/mt/p.toml", "--output", "/dev/null", "--"])
        .args([
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; (sleep 0.3 &); (sleep 0.3 &); while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(1500));
    let ps = Command::new("docker")
        .args(["exec", &name, "sh", "-c", "cat /proc/[0-9]*/stat"])
        .output()
        .unwrap();
    let states: Vec<(String, String)> = text(&ps.stdout)
        .lines()
        .filter_map(|l| {
            let (comm, rest) = l.split_once(") ")?;
            Some((
                comm.rsplit('(').next()?.to_string(),
                rest.split(' ').next()?.to_string(),
            ))
        })
        .collect();
    assert!(
        states.iter().any(|(c, _)| c == "seawall-micro"),
        "{states:?}"
    );
    assert!(
        !states.iter().any(|(_, s)| s == "Z"),
        "zombies left: {states:?}"
    );
    let pid1 = Command::new("docker")
        .args(["exec", &name, "cat", "/proc/1/comm"])
        .output()
        .unwrap();
    assert_eq!(text(&pid1.stdout).trim(), "seawall-micro");
    Command::new("docker")
        .args(["stop", "-t", "10", &name])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let exit = Command::new("docker")
        .args(["inspect", "-f", "{{.State.ExitCode}}", &name])
        .output()
        .unwrap();
    assert_eq!(text(&exit.stdout).trim(), "5", "the trap's exit code");
    let logs = Command::new("docker")
        .args(["logs", &name])
        .output()
        .unwrap();
    assert!(text(&logs.stdout).contains("got-term"));
}

#[test]
fn a_killed_supervisor_fails_closed() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = allowed.local_addr().unwrap().port();
    // seawall-micro runs under a plain shell here (not PID 1), so it can be killed from
    // outside its tree; the tree's next notified call must fail, even to an allowed address.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(micro_bin(), dir.path().join("seawall-micro")).unwrap();
    std::fs::copy(helper_bin(), dir.path().join("micro-helper")).unwrap();
    std::fs::write(dir.path().join("p.toml"), enforce_profile("\"127.0.0.1\"")).unwrap();
    let name = unique_name("micro-kill");
    let _c = Container { name: name.clone() };
    let script = format!(
        "/mt/seawall-micro --profile /mt/p.toml --output /dev/null -- /mt/micro-helper wait-connect /tmp/go 127.0.0.1 {port} > /tmp/h.txt 2>&1 &
         sleep 1; kill -9 $(pidof seawall-micro); touch /tmp/go; sleep 1; cat /tmp/h.txt"
    );
    let out = Command::new("docker")
        .args(["run", "--name", &name, "--network", "host"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .arg("-v")
        .arg(format!("{}:/mt:ro", dir.path().display()))
        .args([IMAGE, "sh", "-c", &script])
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("socket: ENOSYS"), "{s}\n{}", text(&out.stderr));
    assert!(!s.contains("connect: ok"), "{s}");
    assert!(!got_connection(&allowed, Duration::from_millis(300)));
}

#[test]
fn without_landlock_an_enforce_profile_is_refused_and_an_audit_one_runs_degraded() {
    if !ready() {
        return;
    }
    // A container runtime whose seccomp profile hides Landlock, as older ones do.
    let dir = tempfile::tempdir().unwrap();
    let seccomp = dir.path().join("no-landlock.json");
    std::fs::write(
        &seccomp,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["landlock_create_ruleset","landlock_add_rule","landlock_restrict_self"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", seccomp.display());
    let enforce = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &["--security-opt", &opt],
        &[],
        "echo RAN",
    );
    assert_eq!(enforce.code(), Some(125));
    assert!(!enforce.stdout().contains("RAN"));
    let err = text(&enforce.out.stderr);
    assert!(
        err.contains("drift: files written after start can be executed: no Landlock"),
        "{err}"
    );

    let audit = enforce_profile("\"127.0.0.1\"").replace("mode = \"enforce\"", "mode = \"audit\"");
    let r = run_with(
        &audit,
        "none",
        &["--security-opt", &opt],
        &[],
        "cp /bin/busybox /tmp/echo; /tmp/echo COPY-RAN",
    );
    assert_eq!(r.code(), Some(0));
    r.assert_out("COPY-RAN");
    r.event("audited drift", |e| {
        is(e, "exec", "drift", "audited") && e["process"]["exe"] == "/tmp/echo"
    });
    let start = r.event("start", |e| {
        e["kind"] == "agent" && message_has(e, "micro started")
    });
    assert_eq!(
        start["action"], "audited",
        "a degraded start is reported as such: {start}"
    );

    let check = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &["--security-opt", &opt],
        &["--check"],
        "true",
    );
    let s = check.stdout();
    assert_eq!(check.code(), Some(1), "{s}");
    assert!(s.contains("kernel: landlock ABI 0"), "{s}");
    assert!(
        s.contains("refused: drift: files written after start can be executed"),
        "{s}"
    );
}

// The crate root's own directory holds the agent's deploy.rs and delivery.rs: name the files.
#[path = "micro/collector.rs"]
mod collector;
#[path = "micro/packaging.rs"]
mod packaging;
