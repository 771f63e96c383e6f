//! Issue 11: the agent on a Kubernetes node. Pod containers run by the test's own containerd
//! (namespace `k8s.io`, cgroups laid out as the kubelet's CRI plugin lays them out under both
//! cgroup drivers) are enforced exactly as Docker containers are, from their first exec, and
//! every event says which runtime and which pod in which namespace did it. Each test asserts
//! what the process in the container saw and the event the agent wrote.

use std::{net::TcpListener, time::Duration};

use seawall_integration::{containerd::*, *};
use serde_json::Value;

const DRIFT: &str = "cp /bin/busybox /tmp/echo && /tmp/echo SHOULD-NOT-PRINT; echo rc=$?";

/// The agent reading the test's containerd (and nothing else of its kind), with the pod
/// parents of both cgroup drivers registered (made when missing) before any pod exists.
fn agent_on(ctrd: &Containerd, profiles: &[(&str, &str)]) -> Agent {
    let socket = ctrd.socket.display().to_string();
    Agent::start(
        profiles,
        &[
            "--containerd-socket",
            &socket,
            "--container-parent",
            "docker",
            "--container-parent",
            "kubepods",
            "--container-parent",
            "kubepods.slice",
        ],
    )
}

fn started() -> Option<Containerd> {
    if !privileged() || !containerd_available() {
        return None;
    }
    let ctrd = Containerd::start();
    ctrd.import_test_image();
    Some(ctrd)
}

/// The event's container is this pod's container `name`, run by containerd.
fn assert_pod(e: &Value, c: &PodContainer, pod: &Pod, name: &str) {
    let ctr = &e["container"];
    assert_eq!(ctr["id"], c.id.as_str(), "{e}");
    assert_eq!(ctr["runtime"], "containerd", "{e}");
    assert_eq!(ctr["image"], CTR_IMAGE, "{e}");
    let k = &ctr["kubernetes"];
    assert_eq!(k["namespace"], pod.namespace.as_str(), "{e}");
    assert_eq!(k["pod"], pod.name.as_str(), "{e}");
    assert_eq!(k["pod_uid"], pod.uid.as_str(), "{e}");
    assert_eq!(k["container"], name, "{e}");
}

fn is_drift_of(e: &Value, id: &str) -> bool {
    e["kind"] == "exec" && e["control"] == "drift" && e["container"]["id"] == id
}

#[test]
fn drift_is_blocked_from_the_first_exec_in_pod_containers_of_both_cgroup_layouts() {
    let Some(mut ctrd) = started() else { return };
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = agent_on(
        &ctrd,
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
    );
    for (layout, pod) in [
        (CgroupLayout::Cgroupfs, "web-0"),
        (CgroupLayout::Systemd, "api-0"),
    ] {
        let pod = Pod::new("shop", pod, layout);
        // Started right after the agent, and the drift is its very first thing to do.
        let (c, out) = ctrd.run_sh(&pod, "app", "none", DRIFT);
        let s = text(&out.stdout);
        assert!(
            !s.contains("SHOULD-NOT-PRINT"),
            "{layout:?}: drift ran: {s}"
        );
        assert!(
            s.contains("rc=137"),
            "{layout:?}: expected SIGKILL: {s} {}",
            text(&out.stderr)
        );
        let e = agent.expect("blocked drift in a pod", |e| is_drift_of(e, &c.id));
        assert_eq!(e["action"], "blocked");
        assert_eq!(e["process"]["exe"], "/tmp/echo");
        assert_pod(&e, &c, &pod, "app");
    }
}

#[test]
fn a_namespace_profile_beats_an_image_match_and_audits_while_other_namespaces_are_enforced() {
    let Some(mut ctrd) = started() else { return };
    let image = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let shop = "[profile]\nname = \"shop\"\nnamespaces = [\"shop\"]\nmode = \"audit\"\n\n[drift]\nprevent = true\n";
    let agent = agent_on(
        &ctrd,
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &image),
            ("shop.toml", shop),
        ],
    );
    let in_shop = Pod::new("shop", "web-0", CgroupLayout::Systemd);
    let (c, out) = ctrd.run_sh(
        &in_shop,
        "app",
        "none",
        "cp /bin/busybox /tmp/echo && /tmp/echo RAN",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("RAN"));
    let e = agent.expect("audited drift in shop", |e| is_drift_of(e, &c.id));
    assert_eq!(e["action"], "audited");
    assert_pod(&e, &c, &in_shop, "app");

    let elsewhere = Pod::new("payments", "pay-0", CgroupLayout::Cgroupfs);
    let (c, out) = ctrd.run_sh(&elsewhere, "app", "none", DRIFT);
    assert!(
        text(&out.stdout).contains("rc=137"),
        "{}",
        text(&out.stdout)
    );
    let e = agent.expect("blocked drift in payments", |e| is_drift_of(e, &c.id));
    assert_eq!(e["action"], "blocked");
    assert_pod(&e, &c, &elsewhere, "app");
}

#[test]
fn exec_file_and_network_controls_hold_in_pod_containers() {
    let Some(mut ctrd) = started() else { return };
    let denied = TcpListener::bind("127.0.0.1:0").unwrap();
    let dport = denied.local_addr().unwrap().port();
    let p = test_profile(
        "busybox",
        "enforce",
        &format!(
            "[exec]\ndeny = [\"/usr/local/bin/*\"]\n\n[files]\nread_only = [\"/etc/passwd\"]\n\n[network]\negress_deny = [\"127.0.0.1:{dport}/tcp\"]\n"
        ),
    );
    let agent = agent_on(
        &ctrd,
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
    );
    for layout in [CgroupLayout::Cgroupfs, CgroupLayout::Systemd] {
        let pod = Pod::new("shop", "web-0", layout);
        let (c, out) = ctrd.run_sh(
            &pod,
            "app",
            "host",
            &format!(
                "sleep 1; /usr/local/bin/wget --help >/dev/null 2>&1; echo wget=$?; \
                 md5sum /etc/passwd; echo evil >> /etc/passwd; echo append=$?; md5sum /etc/passwd; \
                 echo x | nc 127.0.0.1 {dport}; echo nc=$?"
            ),
        );
        let s = text(&out.stdout);
        let err = text(&out.stderr);
        assert!(s.contains("wget=137"), "{layout:?}: exec deny: {s} {err}");
        let sums: Vec<&str> = s.lines().filter(|l| l.contains("/etc/passwd")).collect();
        assert_eq!(sums.len(), 2, "{layout:?}: {s} {err}");
        assert_eq!(sums[0], sums[1], "{layout:?}: the read-only file changed");
        assert!(
            s.contains("append=1") || s.contains("append=2"),
            "{layout:?}: {s}"
        );
        assert!(s.contains("nc=1"), "{layout:?}: egress deny: {s} {err}");
        assert!(
            !got_connection(&denied, Duration::from_millis(300)),
            "{layout:?}: the denied listener got a connection"
        );
        let of = |e: &Value, control: &str| {
            e["control"] == control && e["container"]["id"] == c.id.as_str()
        };
        let exec = agent.expect("blocked exec", |e| of(e, "exec"));
        assert_eq!(exec["action"], "blocked");
        assert_eq!(exec["process"]["exe"], "/usr/local/bin/wget");
        assert_pod(&exec, &c, &pod, "app");
        let file = agent.expect("blocked write", |e| {
            of(e, "file") && e["file"]["path"] == "/etc/passwd"
        });
        assert_eq!(file["action"], "blocked");
        assert_pod(&file, &c, &pod, "app");
        let net = agent.expect("blocked connect", |e| {
            of(e, "network") && e["network"]["port"] == dport
        });
        assert_eq!(net["action"], "blocked");
        assert_pod(&net, &c, &pod, "app");
    }
}

#[test]
fn a_pod_container_started_before_the_agent_is_monitored() {
    let Some(mut ctrd) = started() else { return };
    let pod = Pod::new("shop", "web-0", CgroupLayout::Cgroupfs);
    let c = ctrd.start_sh(&pod, "app", "none", "exec sleep 300");
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = agent_on(
        &ctrd,
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
    );
    agent.expect("the running pod container is monitored", |e| {
        e["container"]["id"] == c.id.as_str() && e["container"]["runtime"] == "containerd"
    });
    let out = ctrd
        .ctr()
        .args([
            "tasks",
            "exec",
            "--exec-id",
            "drift",
            &c.id,
            "sh",
            "-c",
            DRIFT,
        ])
        .output()
        .expect("ctr tasks exec");
    let s = text(&out.stdout);
    assert!(
        s.contains("rc=137") && !s.contains("SHOULD-NOT-PRINT"),
        "{s} {}",
        text(&out.stderr)
    );
    let e = agent.expect("blocked drift", |e| is_drift_of(e, &c.id));
    assert_eq!(e["action"], "blocked");
    assert_pod(&e, &c, &pod, "app");

    // `seawall status` names the source, says it listed, and shows the pod's container.
    let out = std::process::Command::new(agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .expect("seawall status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
    let socket = ctrd.socket.display().to_string();
    let source = status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["socket"] == socket.as_str()))
        .unwrap_or_else(|| panic!("containerd source in status: {status}"));
    assert_eq!(source["runtime"], "containerd");
    assert_eq!(source["state"], "listed");
    assert!(source["containers"].as_u64() >= Some(1), "{source}");
    let row = status["containers"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == c.id.as_str()))
        .unwrap_or_else(|| panic!("the pod container in status: {status}"));
    assert_eq!(row["runtime"], "containerd");
    assert_eq!(row["pod"], "shop/web-0");
    assert_eq!(row["profile"], "busybox");
}

#[test]
fn a_containerd_restart_is_survived_and_pods_started_in_the_gap_are_enforced() {
    let Some(mut ctrd) = started() else { return };
    let p = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let agent = agent_on(
        &ctrd,
        &[("default.toml", DEFAULT_PROFILE), ("busybox.toml", &p)],
    );
    ctrd.stop();
    std::thread::sleep(Duration::from_secs(2));
    ctrd.restart();
    // At once, while the agent's source is still backing off: only a re-list can tell the
    // agent which image this container runs (the default profile here only audits drift).
    let pod = Pod::new("shop", "web-0", CgroupLayout::Systemd);
    let (c, out) = ctrd.run_sh(&pod, "app", "none", &format!("sleep 8; {DRIFT}"));
    let s = text(&out.stdout);
    assert!(
        s.contains("rc=137") && !s.contains("SHOULD-NOT-PRINT"),
        "{s} {}",
        text(&out.stderr)
    );
    let e = agent.expect("blocked drift after the restart", |e| is_drift_of(e, &c.id));
    assert_eq!(e["action"], "blocked");
    assert_pod(&e, &c, &pod, "app");
    assert_eq!(
        unsafe { libc::kill(agent.pid() as i32, 0) },
        0,
        "the agent is still running"
    );
}
