//! Issue 12, item 12: a container that floods the kernel with allowed events (a fork and exec
//! storm) cannot push another container's blocked events out, and what it made the kernel
//! hold back is counted and reported. The agent is stopped (SIGSTOP) during the flood so the
//! small ring buffer really fills.

use std::time::Duration;

use seawall_integration::*;

use super::support::*;

#[test]
fn a_flood_cannot_push_another_containers_blocked_events_out() {
    if !privileged() {
        return;
    }
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &["--ringbuf-bytes", "262144", "--event-budget", "200"],
    );
    let flood = start_sh(
        "flood",
        "none",
        "for j in 1 2 3 4; do (while true; do /bin/true; done) & done; wait",
    );
    let victim = start_sh(
        "victim",
        "none",
        "cp /bin/busybox /tmp/x; sleep 4; for i in $(seq 1 10); do /tmp/x true; echo rc=$?; sleep 0.2; done; sleep 60",
    );
    let vid = victim.id();
    agent.expect("the victim is monitored", |e| {
        e["kind"] == "container" && e["container"]["id"] == vid.as_str()
    });
    // The agent stops reading for 8 s: the flood fills the ring while the victim's ten drift
    // execs are killed.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(8));
    unsafe { libc::kill(agent.pid() as i32, libc::SIGCONT) };
    assert!(
        wait_until(Duration::from_secs(20), || logs(&victim)
            .matches("rc=")
            .count()
            == 10),
        "{}",
        logs(&victim)
    );
    assert_eq!(
        logs(&victim).matches("rc=137").count(),
        10,
        "every drift exec was killed: {}",
        logs(&victim)
    );
    let blocked = || {
        agent
            .events()
            .iter()
            .filter(|e| {
                e["control"] == "drift"
                    && e["action"] == "blocked"
                    && e["container"]["id"] == vid.as_str()
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(15), || blocked() == 10),
        "{} of 10 blocked drift execs reported under the flood\n{}",
        blocked(),
        agent.log()
    );
    let fid = flood.id();
    let held_back = agent
        .wait_for(Duration::from_secs(15), |e| {
            agent_says(e, "allowed kernel events counted") && e["container"]["id"] == fid.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "the flood's held-back records are not reported\n{}",
                agent.log()
            )
        });
    assert!(
        first_number(&held_back) > 0 || held_back["message"].as_str().unwrap().contains("fork")
    );
}
