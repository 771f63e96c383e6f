//! Issue 12, item 8: an exec the kernel held (stopped before its first instruction, for the
//! agent to decide under the container's own profile) is never stranded — not when the agent
//! is killed while it holds one, not when it stops with one queued, not when the record of the
//! hold is lost. The engine is cut (a test proxy) so that the container's profile cannot be
//! looked up and the kernel really holds its first exec.

use std::time::Duration;

use seawall_integration::*;

use super::{proxy::EngineProxy, support::*};

/// The agent behind a proxy of the engine, and a container whose first exec the kernel holds
/// because the engine was cut before it started.
struct Held {
    proxy: EngineProxy,
    agent: Agent,
    c: Container,
    pid: u32,
    _dir: tempfile::TempDir,
}

fn held_container(tag: &str, failpoints: Option<&str>) -> Held {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::start(&dir.path().join("docker.sock"));
    let socket = proxy.path.display().to_string();
    let profiles = [("default.toml", DEFAULT_PROFILE)];
    let extra = ["--docker-socket", socket.as_str()];
    let agent = match failpoints {
        Some(f) => agent_with_failpoints(&profiles, &extra, f),
        None => Agent::start(&profiles, &extra),
    };
    proxy.cut();
    let c = start_sh(tag, "none", "echo started; sleep 30");
    let pid = init_pid(&c);
    assert!(
        wait_until(Duration::from_secs(5), || state(pid) == Some('T')),
        "precondition: the kernel holds the new container's first exec (state {:?})\n{}",
        state(pid),
        agent.log()
    );
    Held {
        proxy,
        agent,
        c,
        pid,
        _dir: dir,
    }
}

fn reported(agent: &Agent, id: &str, pid: u32) -> bool {
    agent
        .wait_for(Duration::from_secs(10), |e| {
            e["kind"] == "exec" && e["container"]["id"] == id && e["process"]["pid"] == pid
        })
        .is_some()
}

#[test]
fn a_held_exec_is_decided_after_the_agent_was_killed_while_holding_it() {
    if !privileged() {
        return;
    }
    let Held {
        mut proxy,
        mut agent,
        c,
        pid,
        _dir,
    } = held_container("held-kill9", None);
    agent.kill9();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        state(pid),
        Some('T'),
        "nobody decided it while no agent ran"
    );
    proxy.restore();
    let agent2 = Agent::restart_after(&agent);
    assert!(
        wait_until(Duration::from_secs(20), || state(pid) != Some('T')),
        "the held process stays stopped after the restart\n{}",
        agent2.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || logs(&c).contains("started")),
        "the container ran on: {}",
        logs(&c)
    );
    assert!(
        reported(&agent2, &c.id(), pid),
        "the held exec is reported by the agent that decided it\n{}",
        agent2.log()
    );
}

#[test]
fn an_agent_that_stops_decides_the_execs_it_holds() {
    if !privileged() {
        return;
    }
    let Held {
        proxy: _proxy,
        mut agent,
        c,
        pid,
        _dir,
    } = held_container("held-term", None);
    unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
    let status = agent.wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "the agent stops on SIGTERM");
    assert_ne!(
        state(pid),
        Some('T'),
        "a hold queued at shutdown is left stopped\n{}",
        agent.log()
    );
    assert!(wait_until(Duration::from_secs(5), || logs(&c).contains("started")));
    // The engine never answered: the exec is reported by its process, without container
    // metadata.
    assert!(
        agent
            .events()
            .iter()
            .any(|e| e["kind"] == "exec" && e["process"]["pid"] == pid),
        "the exec is reported before the agent stops\n{}",
        agent.log()
    );
}

#[test]
fn a_held_exec_whose_record_is_lost_is_decided_at_its_deadline() {
    if !privileged() {
        return;
    }
    // The ring record of every hold vanishes (failpoint), as when the ring is full.
    let Held {
        mut proxy,
        agent,
        c,
        pid,
        _dir,
    } = held_container("held-lost", Some("drop_held_exec"));
    proxy.restore();
    // The container is registered as soon as the engine answers; the lost record must not
    // leave its process stopped.
    assert!(
        wait_until(Duration::from_secs(20), || state(pid) != Some('T')),
        "a hold whose record was lost stays stopped\n{}",
        agent.log()
    );
    assert!(wait_until(Duration::from_secs(5), || logs(&c).contains("started")));
    assert!(
        reported(&agent, &c.id(), pid),
        "the exec is reported from the kernel's copy of the hold\n{}",
        agent.log()
    );
}

/// Runs a drift in a new container whose engine answers the way `failpoints` make it, under an
/// enforcing profile for the test image and the audit default: the drift must be blocked, by
/// the container's own profile, because its first exec waited for the engine's answer.
fn drift_under_a_late_engine(tag: &str, failpoints: &str) {
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = agent_with_failpoints(
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", p.as_str()),
        ],
        &[],
        failpoints,
    );
    let (c, out) = run_sh(
        tag,
        "none",
        "cp /bin/busybox /tmp/echo && /tmp/echo SHOULD-NOT-PRINT; echo rc=$?",
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("rc=137") && !s.contains("SHOULD-NOT-PRINT"),
        "the drift ran: its container was decided under the default (audit) profile while its engine was late: {s}\n{}",
        agent.log()
    );
    let e = agent.expect("the blocked drift", |e| {
        e["control"] == "drift" && e["container"]["id"] == c.id().as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["process"]["exe"], "/tmp/echo");
    assert!(
        !agent.events().iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("was not described by its engine"))),
        "the container was given up on: {}",
        agent.log()
    );
}

#[test]
fn a_slow_engine_keeps_the_first_exec_held_until_the_containers_own_profile_is_in_force() {
    if !privileged() {
        return;
    }
    // Every inspect of a new container takes 9 s, past the 6 s an unreachable engine is
    // waited for: the podman race of a loaded host, made certain.
    drift_under_a_late_engine("slow-engine", "docker_inspect_delay_secs=9");
}

#[test]
fn a_failed_lookup_is_asked_again_rather_than_falling_back_to_the_default_profile() {
    if !privileged() {
        return;
    }
    // The first three inspects fail as a timed-out engine does (the create event's, the
    // agent's lookup, ...): a failure is not an answer.
    drift_under_a_late_engine("failed-lookup", "docker_inspect_failures=3");
}
