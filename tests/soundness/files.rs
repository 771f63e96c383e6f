//! File rules on the file, not on one of its names (class 5).

use super::*;

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
