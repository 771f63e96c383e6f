//! Issue 12, item 11: records the agent read from the kernel and never wrote out (it crashed
//! in between) are counted by the next agent and reported; and the delivery spool reaches the
//! disk whether or not a collector is connected.

use std::{collections::HashSet, process::Command, time::Duration};

use seawall_integration::*;

use super::support::*;

#[test]
fn records_read_and_never_written_before_a_crash_are_counted_at_the_next_start() {
    if !privileged() {
        return;
    }
    // The agent aborts (like a crash) right after it has read its 1500th record from the ring.
    let mut agent = agent_with_failpoints(
        &[("default.toml", DEFAULT_PROFILE)],
        // No budget: every exec is written to the ring, so what is missing was lost.
        &["--pin", "--event-budget", "0"],
        "abort_after_ring_records=1500",
    );
    // The container stays up, so the next agent can still tell whose records it reads.
    let c = start_sh(
        "records-crash",
        "none",
        "for i in $(seq 1 1000); do /bin/true marker-$i; done; echo done; sleep 120",
    );
    assert!(
        wait_until(Duration::from_secs(60), || logs(&c).contains("done")),
        "the exec loop did not finish: {}",
        logs(&c)
    );
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "precondition: the failpoint aborted the agent\n{}",
        agent.log()
    );
    // The pinned programs went on writing records into the pinned ring; the next agent
    // reads those and counts the ones its predecessor consumed and lost.
    let agent2 = Agent::restart_after(&agent);
    let report = agent2.expect("the loss is reported", |e| {
        agent_says(e, "kernel events were lost")
    });
    let lost = first_number(&report);
    std::thread::sleep(Duration::from_secs(2));
    let id = c.id();
    let seen: HashSet<String> = agent2
        .events()
        .iter()
        .filter(|e| e["kind"] == "exec" && e["container"]["id"] == id.as_str())
        .filter_map(|e| e["process"]["args"].as_array().cloned())
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .filter(|a| a.starts_with("marker-"))
        .collect();
    let missing = 1000 - seen.len() as u64;
    assert!(lost > 0, "precondition: the crash lost records");
    assert!(
        lost >= missing,
        "{missing} execs never reached the output but only {lost} records are reported lost"
    );
    assert!(
        lost <= 1500,
        "more reported lost ({lost}) than the agent ever read"
    );
}

#[test]
fn the_spool_reaches_the_disk_while_no_collector_answers() {
    if !privileged() {
        return;
    }
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().display().to_string();
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE)],
        &[
            "--collector",
            "http://127.0.0.1:9",
            "--collector-insecure",
            "--spool-dir",
            &spool_dir,
        ],
    );
    let (_c, _) = run_sh("spool-sync", "none", "true");
    // Watch the agent's syscalls for three seconds: the spool is fdatasync'ed although the
    // collector never answers.
    let trace = spool.path().join("strace.txt");
    let out = Command::new("timeout")
        .args([
            "-s",
            "INT",
            "3",
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=fdatasync",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &agent.pid().to_string()])
        .output()
        .expect("strace");
    let traced = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        traced.contains("fdatasync("),
        "no fdatasync while the collector is down\nstrace: {}{}\n{traced}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
