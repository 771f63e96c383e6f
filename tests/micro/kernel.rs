//! A kernel without what a control needs: enforce refuses to start, audit runs degraded.

use super::*;

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
