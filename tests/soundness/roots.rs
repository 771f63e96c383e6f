//! A changed root (class 1): drift and exec rules decided against the container's own root.

use super::*;

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
