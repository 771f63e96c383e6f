//! Image assurance: listed hashes and entrypoints, approved images, scan reports.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use seawall_integration::*;

use super::*;

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

/// Runs `image`, asserts its command never ran, and returns the blocked assurance event
/// about that container.
fn refused(agent: &Agent, image: &str, what: &str) -> serde_json::Value {
    let (c, out) = run_image(image, "echo SHOULD-NOT-PRINT");
    assert!(
        !out.status.success(),
        "{what}: the container of {image} succeeded"
    );
    assert!(
        !text(&out.stdout).contains("SHOULD-NOT-PRINT"),
        "{what}: {image} ran: {}",
        text(&out.stdout)
    );
    let id = c.id();
    let e = agent.expect(what, |e| {
        e["control"] == "assurance"
            && e["kind"] == "container"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["action"], "blocked", "{what}: {e}");
    e
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
    let e = refused(&agent, &unapproved.0, "assurance refusal");
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
    let e = refused(&agent, &denied.0, "assurance deny");
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
    let e = refused(&agent, &vulnerable.0, "assurance refusal by scan report");
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
