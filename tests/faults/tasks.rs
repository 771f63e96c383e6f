//! Issue 12, item 10: every part the agent cannot do without ends loudly, and the engine's
//! event stream comes back after a gap with nothing left behind: kernel map entries of
//! containers that ended unseen are removed, and a full `CONTAINER_INIT` never makes a new
//! container's init look like a `docker exec` session (which an enforced `container_exec`
//! profile kills).

use std::{path::Path, process::Command, time::Duration};

use seawall_integration::*;

use super::{bpf, proxy::EngineProxy, support::*};

#[test]
fn the_end_of_any_task_the_agent_needs_stops_it_and_names_the_task() {
    if !privileged() {
        return;
    }
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().display().to_string();
    let collector = [
        "--collector",
        "http://127.0.0.1:9",
        "--collector-insecure",
        "--spool-dir",
        spool_dir.as_str(),
    ];
    for (failpoint, task, extra) in [
        ("ring_reader_exit", "ring reader", &[][..]),
        ("kernel_owner_panic", "kernel owner", &[][..]),
        ("docker_source_exit", "Docker source", &[][..]),
        ("delivery_sender_exit", "delivery sender", &collector[..]),
    ] {
        let mut agent =
            agent_with_failpoints(&[("default.toml", DEFAULT_PROFILE)], extra, failpoint);
        let status = agent.wait_exit(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{failpoint}: the agent goes on without its {task}: {status:?}\n{}",
            agent.log()
        );
        assert!(
            agent.log().contains(task),
            "{failpoint}: the log does not name the {task}\n{}",
            agent.log()
        );
    }
}

/// The container cgroup ids the agent's pinned per-container maps hold.
fn kernel_entries(bpffs: &Path) -> (Vec<u64>, Vec<u64>) {
    let keys = |name: &str| {
        bpf::obj_get(&bpffs.join(name))
            .map(|fd| bpf::map_u64_keys(&fd))
            .unwrap_or_default()
    };
    (keys("CONTAINERS"), keys("CONTAINER_INIT"))
}

#[test]
fn containers_that_ended_unseen_leave_no_kernel_entries_and_the_stream_comes_back() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::start(&dir.path().join("docker.sock"));
    let socket = proxy.path.display().to_string();
    let p = test_profile("busybox", "audit", "[drift]\nprevent = true\n");
    let profiles = [
        ("default.toml", DEFAULT_PROFILE),
        ("busybox.toml", p.as_str()),
    ];
    let mut agent = Agent::start(&profiles, &["--pin", "--docker-socket", &socket]);

    // 1. A container lives and dies while no agent runs (the pinned programs record it).
    agent.kill9();
    // Past the heartbeat's freshness, so the kernel holds nothing for the dead agent.
    std::thread::sleep(Duration::from_secs(3));
    let while_down = start_sh("unseen-down", "none", "sleep 2");
    let down_cg = cgroup_id(init_pid(&while_down)).expect("its cgroup");
    assert!(wait_until(Duration::from_secs(10), || init_pid(
        &while_down
    ) == 0));
    assert!(
        kernel_entries(&agent.bpffs).1.contains(&down_cg),
        "precondition: the kernel recorded the container's init"
    );
    let agent2 = Agent::restart_after(&agent);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (policies, inits) = kernel_entries(&agent2.bpffs);
            !policies.contains(&down_cg) && !inits.contains(&down_cg)
        }),
        "the entries of a container that ended while no agent ran stay in the kernel\n{}",
        agent2.log()
    );

    // 2. The engine's stream goes away; one container starts and ends, one starts and stays.
    proxy.cut();
    let short = start_sh("unseen-gap", "none", "sleep 1");
    let short_cg = cgroup_id(init_pid(&short)).expect("its cgroup");
    let stays = start_sh("gap-stays", "none", "sleep 60");
    // Its first exec is held until the lookup gives up (the engine is cut), then it runs.
    assert!(wait_until(Duration::from_secs(30), || init_pid(&short) == 0));
    proxy.restore();
    // Known again: its execs carry its name (it was first registered nameless, under the
    // default profile, when the lookup gave up during the gap).
    let named = wait_until(Duration::from_secs(45), || {
        let _ = Command::new("docker")
            .args(["exec", &stays.name, "/bin/true", "gap-marker"])
            .status();
        std::thread::sleep(Duration::from_secs(1));
        agent2.events().iter().any(|e| {
            e["kind"] == "exec"
                && e["container"]["name"] == stays.name.as_str()
                && args_contain(e, "gap-marker")
        })
    });
    assert!(
        named,
        "the container started in the gap is not known after the stream came back\n{}",
        agent2.log()
    );
    agent2.expect("the gap container's new identity is reported", |e| {
        e["kind"] == "container" && e["container"]["name"] == stays.name.as_str()
    });
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (policies, inits) = kernel_entries(&agent2.bpffs);
            !policies.contains(&short_cg) && !inits.contains(&short_cg)
        }),
        "the entries of a container that ended during the gap stay in the kernel\n{}",
        agent2.log()
    );
    drop(agent2);
}

#[test]
fn a_full_container_init_map_never_turns_a_new_init_into_a_docker_exec_session() {
    if !privileged() {
        return;
    }
    let p = test_profile(
        "busybox",
        "enforce",
        "[drift]\nprevent = false\n[exec]\nblock_container_exec = true\n",
    );
    // The agent would collect the fake entries below as those of dead containers.
    let agent = agent_with_failpoints(
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
        &[],
        "no_dead_container_collection",
    );
    // Fill CONTAINER_INIT with entries of cgroups that do not exist (what lost `die` events
    // leave behind), up to its capacity.
    let init = bpf::obj_get(&agent.bpffs.join("CONTAINER_INIT")).expect("the pinned map");
    let (_, _, _, capacity) = bpf::map_shape(&init).unwrap();
    let mut filled = 0u32;
    for k in 0..capacity as u64 {
        let key = (u64::MAX - k).to_ne_bytes();
        if bpf::map_update(&init, &key, &1u32.to_ne_bytes()).is_ok() {
            filled += 1;
        }
    }
    assert!(filled > 0, "precondition: the map could be filled");
    let (_c, out) = run_sh("init-full", "none", "echo alive");
    assert!(
        out.status.success() && text(&out.stdout).contains("alive"),
        "a new container's init was killed as a docker exec session: {:?} {}\n{}",
        out.status,
        text(&out.stderr),
        agent.log()
    );
    agent.expect("the full map is reported", |e| {
        agent_says(e, "kernel map CONTAINER_INIT is full")
    });
}
