//! Issue 12, item 13: upgrades and failed starts. Pinned maps carry their layout; an agent
//! meeting pins of another layout migrates them, one meeting pins that claim its layout but
//! do not have it refuses them with a message naming the map, and a start with `--pin` that
//! fails part-way leaves nothing of its own attached or pinned (an earlier agent's pins keep
//! enforcing).

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use seawall_integration::*;

use super::{bpf, support::*};

/// A program every agent loads once, whatever the containers.
const PROGRAM: &str = "sched_process_exec";

/// Runs one agent on these directories until it exits by itself (60 s at most; killed and
/// reported as `None` after that), with `failpoints` armed when given.
fn run_to_exit(
    profiles: &Path,
    events: &Path,
    bpffs: &Path,
    failpoints: Option<&str>,
) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let mut cmd = Command::new(agent_bin());
    cmd.arg("agent")
        .arg("--profiles")
        .arg(profiles)
        .arg("--output")
        .arg(events)
        .arg("--api-socket")
        .arg(dir.path().join("agent.sock"))
        .arg("--bpffs")
        .arg(bpffs)
        .arg("--pin")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(f) = failpoints {
        cmd.env("SEAWALL_FAILPOINTS", f);
    }
    let mut child = cmd.spawn().expect("start seawall agent");
    let mut status = None;
    let _ = wait_until(Duration::from_secs(60), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    if failpoints.is_some() {
        assert!(
            log.contains("failpoints armed"),
            "the agent binary has no failpoints: build it with `cargo build -p seawall --features failpoints`\n{log}"
        );
    }
    (status, log)
}

/// Entries of a bpffs directory, by name.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the number of loaded `PROGRAM`s to be `n` (programs are freed a little after
/// their last link and fd close).
fn programs_settle_at(n: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        bpf::programs_named(PROGRAM) == n
    })
}

/// A pinned agent whose profile kills drift in the test image.
fn pinned_drift_agent() -> Agent {
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--pin"],
    )
}

struct Uninstall(PathBuf);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = Command::new(agent_bin())
            .arg("uninstall")
            .arg("--bpffs")
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_failed_first_start_with_pin_leaves_nothing_attached_or_pinned() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(profiles.join("default.toml"), DEFAULT_PROFILE).unwrap();
    let bpffs = PathBuf::from(format!(
        "/sys/fs/bpf/seawall-test-{}",
        unique_name("failstart")
    ));
    let _cleanup = Uninstall(bpffs.clone());
    let before = bpf::programs_named(PROGRAM);

    let (status, log) = run_to_exit(
        &profiles,
        &dir.path().join("events.jsonl"),
        &bpffs,
        Some("fail_start_after_attach"),
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "the start should fail: {status:?}\n{log}"
    );
    assert!(log.contains("fail_start_after_attach"), "{log}");
    assert!(
        programs_settle_at(before),
        "the failed start left programs loaded: {} where {before} were before\n{log}",
        bpf::programs_named(PROGRAM)
    );
    assert_eq!(
        entries(&bpffs),
        Vec::<String>::new(),
        "the failed start left pins in {}",
        bpffs.display()
    );
}

#[test]
fn a_failed_restart_with_pin_leaves_the_earlier_agent_enforcing() {
    if !privileged() {
        return;
    }
    let mut agent = pinned_drift_agent();
    let c = start_sh("failrestart", "none", "cp /bin/busybox /tmp/x; sleep 120");
    let id = c.id();
    agent.expect("the container is monitored", |e| {
        e["kind"] == "container" && e["container"]["id"] == id.as_str()
    });
    agent.kill9();
    let pinned = bpf::programs_named(PROGRAM);
    let links_before: Vec<String> = entries(&agent.bpffs)
        .into_iter()
        .filter(|e| e.starts_with("links-"))
        .collect();
    assert_eq!(
        links_before.len(),
        1,
        "precondition: the earlier agent's links are pinned"
    );

    let (status, log) = run_to_exit(
        &agent.profiles,
        &agent.events,
        &agent.bpffs,
        Some("fail_start_after_attach"),
    );
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    assert!(
        programs_settle_at(pinned),
        "the failed restart left programs of its own: {} where {pinned} were pinned\n{log}",
        bpf::programs_named(PROGRAM)
    );
    let links_after: Vec<String> = entries(&agent.bpffs)
        .into_iter()
        .filter(|e| e.starts_with("links-"))
        .collect();
    assert_eq!(
        links_after, links_before,
        "the failed restart changed the link pins"
    );
    // The earlier agent's pinned programs still enforce.
    let out = Command::new("docker")
        .args(["exec", &c.name, "/tmp/x", "true"])
        .output()
        .expect("docker exec");
    assert_eq!(
        out.status.code(),
        Some(137),
        "a drift exec after the failed restart was not killed"
    );
    // And the pins are still good to adopt.
    let agent2 = Agent::restart_after(&agent);
    assert!(
        agent2.log().contains("adopting"),
        "the next start did not adopt the pins\n{}",
        agent2.log()
    );
}

/// Replaces the pinned map `name` in `dir` with a hash map of these sizes.
fn replace_pin(dir: &Path, name: &str, key: u32, value: u32, entries: u32) {
    let path = dir.join(name);
    std::fs::remove_file(&path).unwrap();
    let fd = bpf::map_create(bpf::MAP_TYPE_HASH, key, value, entries).expect("create a map");
    bpf::obj_pin(&fd, &path).expect("pin it");
}

#[test]
fn pins_of_another_layout_are_migrated_and_a_false_claim_is_refused() {
    if !privileged() {
        return;
    }
    let mut agent = pinned_drift_agent();
    agent.kill9();
    let bpffs = agent.bpffs.clone();
    let init = bpffs.join("CONTAINER_INIT");
    let (_, key, value, capacity) = bpf::map_shape(&bpf::obj_get(&init).unwrap()).unwrap();
    assert!(
        capacity > 16,
        "precondition: CONTAINER_INIT is larger than the tampered one"
    );

    // 1. A map that does not have the layout its stamp claims: refused, nothing attached.
    replace_pin(&bpffs, "CONTAINER_INIT", key, value, 16);
    let pinned = bpf::programs_named(PROGRAM);
    let (status, log) = run_to_exit(&agent.profiles, &agent.events, &bpffs, None);
    assert!(
        status.is_some_and(|s| !s.success()),
        "an agent adopted a map of the wrong size: {status:?}\n{log}"
    );
    assert!(
        log.contains("refusing to adopt") && log.contains("CONTAINER_INIT"),
        "the refusal does not say which map and why\n{log}"
    );
    assert!(
        programs_settle_at(pinned),
        "the refused start left programs\n{log}"
    );

    // 2. Pins stamped with another layout version (an older agent): migrated to fresh maps.
    let layout = bpf::obj_get(&bpffs.join("LAYOUT")).expect("the LAYOUT pin");
    let mut old_stamp = [0u8; 16]; // version 0, fingerprint 0
    old_stamp[..4].copy_from_slice(&0u32.to_ne_bytes());
    bpf::map_update(&layout, &0u32.to_ne_bytes(), &old_stamp).expect("stamp an older layout");
    let agent2 = Agent::restart_after(&agent);
    assert!(
        agent2.log().contains("migrating"),
        "the agent did not say it migrates\n{}",
        agent2.log()
    );
    let (_, _, _, now) = bpf::map_shape(&bpf::obj_get(&init).unwrap()).unwrap();
    assert_eq!(
        now, capacity,
        "CONTAINER_INIT was not made afresh in the agent's own layout"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !entries(&bpffs)
            .iter()
            .any(|e| e.starts_with("retired-"))),
        "the retired maps were not removed after the take-over: {:?}",
        entries(&bpffs)
    );
    // The migrated agent enforces and reports.
    let (c, out) = run_sh(
        "migrated",
        "none",
        "cp /bin/busybox /tmp/x; /tmp/x true; echo rc=$?",
    );
    assert!(
        text(&out.stdout).contains("rc=137"),
        "a drift exec was not killed after the migration: {}",
        text(&out.stdout)
    );
    let id = c.id();
    agent2.expect("the blocked drift is reported", |e| {
        e["control"] == "drift" && e["action"] == "blocked" && e["container"]["id"] == id.as_str()
    });
}
