//! Issue 12, item 9: the fanotify reader never leaves an open waiting. Every process of a
//! watched container that opens a watched file waits until the agent answers, and the kernel
//! has no timeout: a slow pipeline, a failed read or a dead reader must not turn into a hang.
//! Every open here runs under `timeout -s KILL`, so a hang shows as exit status 137.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use seawall_integration::*;

use super::support::*;

fn file_profile() -> String {
    // Drift off: only open permission events, no exec permission events.
    test_profile(
        "busybox",
        "enforce",
        "[drift]\nprevent = false\n[files]\ndeny = [\"/etc/group\"]\nread_only = [\"/etc/**\"]\n",
    )
}

fn exec(c: &Container, script: &str) -> (i32, String) {
    let out = Command::new("docker")
        .args(["exec", &c.name, "sh", "-c", script])
        .output()
        .expect("docker exec");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn opens_are_answered_under_the_profile_while_the_event_pipeline_is_stalled() {
    if !privileged() {
        return;
    }
    let p = file_profile();
    // A four-record channel to an event loop that stalls for 20 s at its first file record.
    let agent = agent_with_failpoints(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
        "file_channel_capacity=4,stall_event_loop_on_file=20",
    );
    let started = Instant::now();
    let (c, out) = run_sh(
        "files-stall",
        "none",
        "sleep 1; for i in $(seq 1 30); do timeout -s KILL 5 cat /etc/group >/dev/null 2>&1; echo rc=$?; done",
    );
    let took = started.elapsed();
    let rcs: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("rc="))
        .map(str::to_string)
        .collect();
    assert_eq!(rcs.len(), 30, "{}", text(&out.stdout));
    assert!(
        rcs.iter().all(|r| r == "rc=1"),
        "every open is denied at once (137 means it hung): {rcs:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the opens waited for the stalled pipeline: {took:?}"
    );
    // Once the loop runs again: what it could not report is counted, nothing is silent.
    let id = c.id();
    let unreported = agent
        .wait_for(Duration::from_secs(40), |e| {
            agent_says(e, "file opens were answered")
        })
        .unwrap_or_else(|| panic!("no report of unreported file events\n{}", agent.log()));
    std::thread::sleep(Duration::from_secs(1));
    let blocked = agent
        .events()
        .iter()
        .filter(|e| {
            e["kind"] == "file"
                && e["container"]["id"] == id.as_str()
                && e["file"]["path"] == "/etc/group"
                && e["action"] == "blocked"
        })
        .count() as u64;
    assert!(
        blocked + first_number(&unreported) >= 30,
        "30 denied opens, {blocked} reported and {} counted as unreported",
        first_number(&unreported)
    );
}

#[test]
fn a_failed_fanotify_read_is_retried_and_later_opens_are_answered() {
    if !privileged() {
        return;
    }
    // `/etc/passwd` is monitored, so every open of it is the agent's to answer: a read below a
    // read-only mount that no deny or monitor rule names is answered once and then cached.
    let p = test_profile(
        "busybox",
        "enforce",
        "[drift]\nprevent = false\n[files]\ndeny = [\"/etc/group\"]\nread_only = [\"/etc/**\"]\nmonitor = [\"/etc/passwd\"]\n",
    );
    let agent = Agent::start(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
    );
    let c = start_sh("files-emfile", "none", "sleep 60");
    let id = c.id();
    agent.expect("the container is watched", |e| {
        e["kind"] == "container" && e["container"]["id"] == id.as_str()
    });
    assert_eq!(
        exec(
            &c,
            "timeout -s KILL 5 cat /etc/passwd >/dev/null; echo rc=$?"
        )
        .1
        .trim(),
        "rc=0"
    );
    // The container's opens go through the agent: a denied file is denied and reported.
    assert_eq!(
        exec(
            &c,
            "timeout -s KILL 5 cat /etc/group >/dev/null 2>&1; echo rc=$?"
        )
        .1
        .trim(),
        "rc=1",
        "precondition: the container's opens are answered by the agent"
    );
    agent.expect("the denied open is reported", |e| {
        e["kind"] == "file" && e["container"]["id"] == id.as_str() && e["action"] == "blocked"
    });
    // The agent runs out of file descriptors (what an fd leak does): its limit is set to its
    // lowest free descriptor, so it can still poll but the kernel cannot hand it the next
    // event's fd; the read fails with EMFILE and the kernel denies that event itself.
    let pid = agent.pid() as i32;
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0,
        "reading the agent's fd limit"
    );
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
    let exhausted = libc::rlimit64 {
        rlim_cur: lowest_free,
        rlim_max: old.rlim_max,
    };
    assert_eq!(
        unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, &exhausted, std::ptr::null_mut()) },
        0,
        "taking the agent's free fds away"
    );
    let started = Instant::now();
    let (_, during) = exec(
        &c,
        "timeout -s KILL 5 cat /etc/passwd >/dev/null 2>&1; echo rc=$?",
    );
    let took = started.elapsed();
    assert_eq!(
        unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, &old, std::ptr::null_mut()) },
        0
    );
    // Denied at once, fail closed: the open fails (rc=1), or the engine's own opens in the
    // container were denied first and the exec did not start; never allowed, never hung.
    assert!(
        !during.contains("rc=0") && !during.contains("rc=137") && took < Duration::from_secs(10),
        "an open the agent could not be handed was allowed or hung ({took:?}): {during}\n{}",
        agent.log()
    );
    // The reader goes on: a later open is answered (allowed and reported: a monitored read).
    let (_, after) = exec(
        &c,
        "timeout -s KILL 5 cat /etc/passwd >/dev/null; echo rc=$?",
    );
    assert_eq!(
        after.trim(),
        "rc=0",
        "opens after a failed read are not answered\n{}",
        agent.log()
    );
    agent.expect("the failed read is reported", |e| {
        agent_says(e, "fanotify reads failed and were retried")
    });
}

#[test]
fn a_dead_fanotify_thread_stops_the_agent_and_no_open_waits_on_it() {
    if !privileged() {
        return;
    }
    let p = file_profile();
    let mut agent = agent_with_failpoints(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
        "fanotify_thread_panic",
    );
    let (_c, out) = run_sh(
        "files-dead",
        "none",
        "sleep 1; timeout -s KILL 10 cat /etc/group >/dev/null 2>&1; echo rc=$?",
    );
    let rc = text(&out.stdout);
    assert!(
        !rc.contains("rc=137"),
        "the open waited on a dead fanotify thread: {rc}"
    );
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the agent goes on without its fanotify thread: {status:?}\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("fanotify thread ended"),
        "{}",
        agent.log()
    );
}
