//! Issue 11: podman, through its Docker-compatible API (`podman system service`), as a source
//! of the container table, against the test's own podman (see harness_podman.rs for what this
//! host needs podman to be told before it can run a container at all).

use seawall_engines::{cgroup_path, DockerApiSource, Runtime, SourceEvent};
use seawall_integration::{engine::expect_event, podman::*};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_containers_are_listed_and_followed_with_pid_cgroup_and_pod() {
    if !podman_available() {
        return;
    }
    let podman = tokio::task::block_in_place(|| {
        let p = Podman::start();
        p.load_test_image();
        p
    });
    // One container before the source connects: it must be in the first listing.
    let labels = [
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.name", "web-0"),
        (
            "io.kubernetes.pod.uid",
            "5a1e0c2d-0000-4000-8000-000000000001",
        ),
        ("io.kubernetes.container.name", "nginx"),
    ];
    let before = tokio::task::block_in_place(|| {
        podman.start_sh(
            "podman-before",
            &labels,
            "echo drift > /written-here; exec sleep 300",
        )
    });
    let (tx, mut rx) = mpsc::channel(64);
    let _source = tokio::spawn(DockerApiSource::podman(&podman.socket).run(tx));
    let listed = expect_event(&mut rx, "initial listing", |e| {
        matches!(e, SourceEvent::Listed { .. })
    })
    .await;
    let SourceEvent::Listed { containers, source } = listed else {
        unreachable!()
    };
    assert_eq!(source.runtime, Runtime::Podman);
    let r = containers
        .iter()
        .find(|r| r.id == before.id)
        .unwrap_or_else(|| panic!("{} listed: {containers:?}\n{}", before.id, podman.log()));
    assert_eq!(r.runtime, Runtime::Podman);
    assert_eq!(r.name, before.name);
    assert_eq!(r.image, PODMAN_IMAGE);
    assert!(r.image_id.len() >= 12, "image id {:?}", r.image_id);
    let k = r.kubernetes.as_ref().expect("pod identity from the labels");
    assert_eq!((k.namespace.as_str(), k.pod.as_str()), ("shop", "web-0"));
    let pid = r.init_pid.expect("pid");
    assert_eq!(Some(pid), before.pid());
    let kernel = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let path = cgroup_path::unified_path(&kernel)
        .expect("unified path")
        .to_string();
    assert_eq!(r.cgroup_path.as_deref(), Some(path.as_str()));
    assert_eq!(path, format!("/libpod_parent/libpod-{}", before.id));
    let shape = cgroup_path::container_of(&path).expect("a container cgroup");
    assert_eq!(
        (shape.container_id.as_str(), shape.runtime),
        (before.id.as_str(), Some(Runtime::Podman))
    );
    let upper = r.upper_dir.as_ref().expect("upper dir");
    assert_eq!(
        std::fs::read_to_string(upper.join("written-here"))
            .ok()
            .as_deref(),
        Some("drift\n")
    );

    // One started while the source runs: created, started, killed, removed.
    let after =
        tokio::task::block_in_place(|| podman.start_sh("podman-after", &[], "exec sleep 300"));
    let started = expect_event(
        &mut rx,
        "Started",
        |e| matches!(e, SourceEvent::Started { container, .. } if container.id == after.id),
    )
    .await;
    let SourceEvent::Started { container, .. } = started else {
        unreachable!()
    };
    assert_eq!(container.init_pid, after.pid());
    assert_eq!(container.kubernetes, None);
    tokio::task::block_in_place(|| after.kill());
    expect_event(
        &mut rx,
        "Exited",
        |e| matches!(e, SourceEvent::Exited { key, .. } if key.id == after.id),
    )
    .await;
    tokio::task::block_in_place(|| after.remove());
    expect_event(
        &mut rx,
        "Deleted",
        |e| matches!(e, SourceEvent::Deleted { key, .. } if key.id == after.id),
    )
    .await;
}

/// The agent on podman's API socket, with podman's cgroupfs parent registered (made when
/// missing) before any container exists; `failpoints` armed when given.
fn agent_on(
    podman: &Podman,
    profiles: &[(&str, &str)],
    failpoints: Option<&str>,
) -> seawall_integration::Agent {
    let socket = podman.socket.display().to_string();
    if let Some(f) = failpoints {
        // Inherited by the agent; the tests run one at a time (--test-threads=1).
        std::env::set_var("SEAWALL_FAILPOINTS", f);
    }
    let agent = seawall_integration::Agent::start(
        profiles,
        &[
            "--podman-socket",
            &socket,
            "--container-parent",
            "docker",
            "--container-parent",
            "libpod_parent",
        ],
    );
    std::env::remove_var("SEAWALL_FAILPOINTS");
    if failpoints.is_some() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !agent.log().contains("failpoints armed") {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent binary has no failpoints: build it with `cargo build -p seawall --features failpoints` (cargo xtask test does)\n{}",
                agent.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    agent
}

#[test]
fn drift_is_blocked_in_a_podman_container_from_its_first_exec_and_the_event_names_podman() {
    drift_blocked_from_the_first_exec(None);
}

/// podman's event stream may say nothing of a new container for a long time (seen here: the
/// session's inspect on `create` hung while the kernel held `runc init`, the container's held
/// first exec waited 30 s and then ran under the default profile). The agent asks podman
/// itself, by the id in the cgroup's name, so the container's own profile holds from its first
/// exec even when no event ever comes.
#[test]
fn a_podman_container_gets_its_own_profile_when_the_engine_reports_nothing() {
    drift_blocked_from_the_first_exec(Some("engine_events_dropped"));
}

fn drift_blocked_from_the_first_exec(failpoints: Option<&str>) {
    use seawall_integration::{privileged, text, DEFAULT_PROFILE};
    if !privileged() || !podman_available() {
        return;
    }
    let podman = Podman::start();
    podman.load_test_image();
    let p = "[profile]\nname = \"busybox\"\nimages = [\"localhost/seawall-test/busybox*\"]\nmode = \"enforce\"\n\n[drift]\nprevent = true\n";
    let agent = agent_on(
        &podman,
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", p)],
        failpoints,
    );
    let labels = [
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.name", "web-0"),
        (
            "io.kubernetes.pod.uid",
            "5a1e0c2d-0000-4000-8000-000000000002",
        ),
        ("io.kubernetes.container.name", "app"),
    ];
    let (c, out) = podman.run_sh(
        "podman-drift",
        &labels,
        "cp /bin/busybox /tmp/echo && /tmp/echo SHOULD-NOT-PRINT; echo rc=$?",
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("rc=137") && !s.contains("SHOULD-NOT-PRINT"),
        "{s} {}\nagent log:\n{}",
        text(&out.stderr),
        agent.log()
    );
    let e = agent.expect("blocked drift in podman", |e| {
        e["control"] == "drift" && e["container"]["id"] == c.id.as_str()
    });
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["process"]["exe"], "/tmp/echo");
    assert_eq!(e["container"]["runtime"], "podman");
    assert_eq!(e["container"]["image"], PODMAN_IMAGE);
    assert_eq!(e["container"]["name"], c.name.as_str());
    assert_eq!(e["container"]["kubernetes"]["namespace"], "shop");
    assert_eq!(e["container"]["kubernetes"]["pod"], "web-0");
}
