//! The supervisor itself: unreachable from the tree under another init, PID 1 duties, and
//! failing closed when it is killed.

use super::*;

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
