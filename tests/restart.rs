//! Issue 5: enforcement that survives an agent crash. Programs and maps are pinned; a container
//! runs a drift exec in a loop while the agent is SIGKILLed and restarted: not one drift exec
//! succeeds, and events resume after the restart.

use std::{process::Command, time::Duration};

use seawall_integration::*;

#[test]
fn drift_stays_blocked_through_an_agent_crash_and_restart() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let mut agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--pin"],
    );
    let c = start_sh(
        "restart",
        "none",
        "while true; do cp /bin/busybox /tmp/x; /tmp/x true; echo rc=$?; sleep 0.05; done",
    );
    let id = c.id();
    agent.expect("a blocked drift before the crash", |e| {
        e["control"] == "drift" && e["container"]["id"] == id.as_str()
    });
    let before = agent.events().len();

    agent.kill9();
    // The agent is gone for a while; the pinned programs keep enforcing.
    std::thread::sleep(Duration::from_secs(3));
    let during = Command::new("docker")
        .args(["logs", &c.name])
        .output()
        .unwrap();
    let agent2 = Agent::restart_after(&agent);
    let after = agent2.expect("a blocked drift reported by the restarted agent", |e| {
        e["control"] == "drift" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(after["action"], "blocked");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        agent2.events().len() > before,
        "events resume after the restart"
    );

    let logs = Command::new("docker")
        .args(["logs", &c.name])
        .output()
        .unwrap();
    let lines = text(&logs.stdout);
    let rcs: Vec<&str> = lines.lines().filter(|l| l.starts_with("rc=")).collect();
    let during_count = text(&during.stdout)
        .lines()
        .filter(|l| l.starts_with("rc="))
        .count();
    assert!(
        during_count >= 10,
        "the loop ran while the agent was down: {during_count} iterations"
    );
    assert!(
        rcs.len() > during_count,
        "the loop kept running after the restart"
    );
    let escaped: Vec<_> = rcs.iter().filter(|l| **l != "rc=137").collect();
    assert!(
        escaped.is_empty(),
        "{} of {} drift execs were not killed: {escaped:?}",
        escaped.len(),
        rcs.len()
    );
    drop(c);
    drop(agent2);
    // Uninstall (done by the harness on drop) detaches everything: the bpffs directory is gone.
    drop(agent);
    let left = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(&format!("seawall-test-sw-bpf-{}-", std::process::id()))
        })
        .count();
    assert_eq!(left, 0, "pins left behind");
}
