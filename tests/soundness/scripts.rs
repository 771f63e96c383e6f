//! Scripts with no file the fallback can see (class 3).

use super::*;

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
