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

/// Issue 11: a profile selecting pods by label beats an image match (`ProfileSet::for_container`,
/// README "Kubernetes"). The pods are made through the CRI, as the kubelet makes them, so their
/// own labels are on their sandboxes only and reach the agent through containerd.
#[test]
fn a_pod_label_profile_beats_an_image_match_for_pods_made_through_the_cri() {
    use seawall_engines::cri_pods::{CriPods, PodSpec};
    if !privileged() || !containerd_available() {
        return;
    }
    let pause = PauseImage::build();
    let mut ctrd = Containerd::start_with_cri(&pause.ctr_name());
    ctrd.import_test_image();
    ctrd.import_from_docker(&pause.name);
    let image = test_profile("busybox", "enforce", "[drift]\nprevent = true\n");
    let web = "[profile]\nname = \"web\"\npod_labels = { app = \"web\" }\nmode = \"audit\"\n\n[drift]\nprevent = true\n";
    let agent = agent_on(
        &ctrd,
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &image),
            ("web.toml", web),
        ],
    );
    let spec = |name: &str, app: &str| {
        let uid = pod_uid();
        PodSpec {
            namespace: "shop".into(),
            name: name.into(),
            uid: uid.clone(),
            cgroup_parent: format!("/kubepods/burstable/pod{uid}"),
            labels: [("app".to_string(), app.to_string())].into(),
        }
    };
    let (web_pod, api_pod) = (spec("web-0", "web"), spec("api-0", "api"));
    let mut dirs = vec!["/kubepods".to_string(), "/kubepods/burstable".to_string()];
    dirs.extend([web_pod.cgroup_parent.clone(), api_pod.cgroup_parent.clone()]);
    ctrd.owns_cgroup_dirs(&dirs);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut pods = rt
        .block_on(CriPods::connect(&ctrd.socket))
        .expect("CRI connect");
    // What the drift's exit status was, written where the test can read it.
    let script = "cp /bin/busybox /tmp/echo; /tmp/echo RAN > /ran; echo $? > /rc; exec sleep 300";
    // app=web: the label profile (audit) wins over the image's enforcing one; app=api: no
    // selector matches, the image's profile enforces.
    for (spec, seen, action) in [
        (&web_pod, "rc=0 ran=RAN", "audited"),
        (&api_pod, "rc=137 ran=", "blocked"),
    ] {
        // The CRI plugin picks imported images up from containerd's events: retry briefly.
        let sandbox = (0..50)
            .find_map(|_| {
                rt.block_on(pods.run_pod(spec)).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(200));
                    None
                })
            })
            .unwrap_or_else(|| panic!("RunPodSandbox never worked:\n{}", ctrd.log()));
        let id = rt
            .block_on(pods.start_container(&sandbox, spec, "app", CTR_IMAGE, &["sh", "-c", script]))
            .expect("CreateContainer + StartContainer");
        let read = |file: &str| {
            task_pid(&ctrd.socket, &id)
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/root/{file}")).ok())
        };
        let mut rc = None;
        for _ in 0..100 {
            rc = read("rc");
            if rc.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rc =
            rc.unwrap_or_else(|| panic!("the pod container never ran its script\n{}", agent.log()));
        let got = format!(
            "rc={} ran={}",
            rc.trim(),
            read("ran").unwrap_or_default().trim()
        );
        assert_eq!(got, seen, "pod {} (app={:?})", spec.name, spec.labels);
        let e = agent.expect("the drift in the pod", |e| is_drift_of(e, &id));
        assert_eq!(e["action"], action, "{e}");
        assert_eq!(
            e["container"]["kubernetes"]["pod"],
            spec.name.as_str(),
            "{e}"
        );
        assert_eq!(e["container"]["kubernetes"]["namespace"], "shop", "{e}");
        assert_eq!(e["container"]["runtime"], "containerd", "{e}");
        let _ = rt.block_on(pods.remove_container(&id));
        let _ = rt.block_on(pods.remove_pod(&sandbox));
    }
}
