//! Issue 11: containerd pod containers, laid out as the kubelet's CRI plugin lays them out
//! (both cgroup drivers), seen through `seawall-engines` against the test's own containerd:
//! what the runtime reports must be what the kernel says (pid, cgroup, overlay upper dir), the
//! lifecycle must arrive in order, and a containerd restart must be survived with a re-list
//! that includes containers started while the source was away.

use std::{path::Path, time::Duration};

use seawall_engines::{
    cgroup_path, ContainerRecord, ContainerdClient, ContainerdSource, Runtime, SourceEvent,
};
use seawall_integration::{containerd::*, engine::*, text};
use tokio::sync::mpsc;

fn listed_ids(e: &SourceEvent) -> Vec<String> {
    match e {
        SourceEvent::Listed { containers, .. } => containers.iter().map(|c| c.id.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Every property a user would check about a running pod container's record.
fn assert_pod_record(r: &ContainerRecord, c: &PodContainer, pod: &Pod, name: &str) {
    assert_eq!(r.runtime, Runtime::Containerd);
    assert_eq!(r.namespace, K8S_NAMESPACE);
    assert_eq!(r.image, CTR_IMAGE);
    let k = r.kubernetes.as_ref().expect("pod identity from the labels");
    assert_eq!(
        (
            k.namespace.as_str(),
            k.pod.as_str(),
            k.pod_uid.as_str(),
            k.container.as_str()
        ),
        (
            pod.namespace.as_str(),
            pod.name.as_str(),
            pod.uid.as_str(),
            name
        )
    );
    assert_eq!(r.name, name);
    // The pid containerd reports is the container's init, and the kernel puts it in the cgroup
    // the record names.
    let pid = r.init_pid.expect("init pid of a running container");
    assert_eq!(Some(pid), c.pid(), "containerd's own pid for the task");
    let kernel = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    assert_eq!(cgroup_path::unified_path(&kernel), Some(c.cgroup.as_str()));
    assert_eq!(r.cgroup_path.as_deref(), Some(c.cgroup.as_str()));
    assert!(
        c.cgroup_dir().is_dir(),
        "{} exists",
        c.cgroup_dir().display()
    );
    // And the userspace layout parser agrees on which container and pod that cgroup is.
    let shape = cgroup_path::container_of(&c.cgroup).expect("a container cgroup");
    assert_eq!(shape.container_id, c.id);
    assert_eq!(shape.pod_uid.as_deref(), Some(pod.uid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_containers_in_both_cgroup_layouts_are_listed_with_their_pod() {
    if !containerd_available() {
        return;
    }
    let mut ctrd = Containerd::start();
    ctrd.import_test_image();
    let digest = ctrd.image_digest(CTR_IMAGE);
    assert!(digest.starts_with("sha256:"), "image digest: {digest:?}");

    let web = Pod::new("shop", "web-0", CgroupLayout::Cgroupfs);
    let api = Pod::new("shop", "api-0", CgroupLayout::Systemd);
    // Each writes a file into its own root, which must land in its overlay upper dir.
    let script = "echo drift > /written-here; exec sleep 300";
    let c1 = ctrd.start_sh(&web, "nginx", "none", script);
    let c2 = ctrd.start_sh(&api, "api", "none", script);
    // One in Docker's namespace too (in ctr's default cgroup, /moby/<id>): Docker's own source
    // reports those, this one must not.
    ctrd.owns_cgroup_dirs(&["/moby".to_string()]);
    let moby = tokio::task::block_in_place(|| {
        ctrd.import_into("moby", seawall_integration::IMAGE);
        let id = container_id();
        let out = ctrd
            .ctr_in("moby")
            .args(["run", "-d", CTR_IMAGE, &id, "sleep", "300"])
            .output()
            .expect("ctr run in moby");
        assert!(
            out.status.success(),
            "ctr run in moby: {}",
            text(&out.stderr)
        );
        id
    });

    let client = ContainerdClient::connect(&ctrd.socket)
        .await
        .expect("connect");
    let namespaces = client.namespaces().await.expect("namespaces");
    assert!(
        namespaces.iter().any(|n| n == K8S_NAMESPACE),
        "{namespaces:?}"
    );
    let mut list = Vec::new();
    for _ in 0..50 {
        list = client.list().await.expect("list");
        let written = list.iter().filter(|r| {
            r.upper_dir
                .as_ref()
                .is_some_and(|u| u.join("written-here").exists())
        });
        if written.count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (c, pod, name) in [(&c1, &web, "nginx"), (&c2, &api, "api")] {
        let r = list
            .iter()
            .find(|r| r.id == c.id)
            .unwrap_or_else(|| panic!("{} listed: {list:?}", c.id));
        assert_pod_record(r, c, pod, name);
        assert_eq!(r.image_id, digest);
        assert_eq!(
            r.image_digests,
            [format!("docker.io/seawall-test/busybox@{digest}")]
        );
        let upper = r.upper_dir.as_ref().expect("overlay upper dir");
        assert_eq!(
            std::fs::read_to_string(upper.join("written-here"))
                .ok()
                .as_deref(),
            Some("drift\n"),
            "the file the container wrote is in {}",
            upper.display()
        );
    }
    assert!(
        list.iter().all(|r| r.id != moby && r.namespace != "moby"),
        "Docker's namespace is left to Docker's source: {list:?}"
    );
    // The systemd layout really is the systemd driver's path.
    assert!(c2
        .cgroup
        .starts_with("/kubepods.slice/kubepods-burstable.slice/"));
    assert!(c2
        .cgroup
        .ends_with(&format!("/cri-containerd-{}.scope", c2.id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_arrives_in_order_from_create_to_delete() {
    if !containerd_available() {
        return;
    }
    let mut ctrd = Containerd::start();
    ctrd.import_test_image();
    let (tx, mut rx) = mpsc::channel(64);
    let source = tokio::spawn(ContainerdSource::new(&ctrd.socket).run(tx));
    let first = expect_event(&mut rx, "initial listing", |e| {
        matches!(e, SourceEvent::Listed { .. })
    })
    .await;
    assert!(
        listed_ids(&first).is_empty(),
        "a fresh containerd has no containers"
    );

    let pod = Pod::new("jobs", "batch-1", CgroupLayout::Systemd);
    let (c, out) =
        tokio::task::block_in_place(|| ctrd.run_sh(&pod, "worker", "none", "sleep 1; exit 3"));
    assert_eq!(out.status.code(), Some(3), "ctr run: {}", text(&out.stderr));

    let created = expect_event(
        &mut rx,
        "Created",
        |e| matches!(e, SourceEvent::Created { container, .. } if container.id == c.id),
    )
    .await;
    let SourceEvent::Created { container, .. } = created else {
        unreachable!()
    };
    // Before the task exists: no pid, but the cgroup the container will get is known (from
    // the spec), so policy can be prepared before its first exec.
    assert_eq!(container.init_pid, None);
    assert_eq!(container.cgroup_path.as_deref(), Some(c.cgroup.as_str()));
    assert_eq!(
        container.kubernetes.as_ref().map(|k| k.pod.as_str()),
        Some("batch-1")
    );

    let started = expect_event(
        &mut rx,
        "Started",
        |e| matches!(e, SourceEvent::Started { container, .. } if container.id == c.id),
    )
    .await;
    let SourceEvent::Started { container, .. } = started else {
        unreachable!()
    };
    assert!(container.init_pid.is_some_and(|p| p > 1));
    assert_eq!(container.cgroup_path.as_deref(), Some(c.cgroup.as_str()));

    let exited = expect_event(
        &mut rx,
        "Exited",
        |e| matches!(e, SourceEvent::Exited { key, .. } if key.id == c.id),
    )
    .await;
    let SourceEvent::Exited {
        key, exit_status, ..
    } = exited
    else {
        unreachable!()
    };
    assert_eq!(key.namespace, K8S_NAMESPACE);
    assert_eq!(exit_status, Some(3), "the status the process exited with");

    tokio::task::block_in_place(|| c.remove());
    expect_event(
        &mut rx,
        "Deleted",
        |e| matches!(e, SourceEvent::Deleted { key, .. } if key.id == c.id),
    )
    .await;
    drop(rx);
    // The source ends by itself once its consumer is gone.
    tokio::time::timeout(Duration::from_secs(5), source)
        .await
        .expect("source stops when the receiver is dropped")
        .expect("source task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_restart_is_survived_and_the_gap_is_relisted() {
    if !containerd_available() {
        return;
    }
    let mut ctrd = Containerd::start();
    ctrd.import_test_image();
    let before = Pod::new("shop", "web-0", CgroupLayout::Cgroupfs);
    let old = ctrd.start_sh(&before, "nginx", "none", "exec sleep 300");
    let old_pid = old.pid().expect("pid");

    let (tx, mut rx) = mpsc::channel(64);
    let _source = tokio::spawn(ContainerdSource::new(&ctrd.socket).run(tx));
    let first = expect_event(&mut rx, "initial listing", |e| {
        matches!(e, SourceEvent::Listed { .. })
    })
    .await;
    assert_eq!(listed_ids(&first), vec![old.id.clone()]);

    // containerd goes away; the source says so once, and keeps trying.
    tokio::task::block_in_place(|| ctrd.stop());
    expect_event(&mut rx, "Disconnected", |e| {
        matches!(e, SourceEvent::Disconnected { .. })
    })
    .await;
    // Down long enough for several failed attempts: none of them may end the source.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back, and a pod container starts at once, before the source has necessarily
    // reconnected: it must be known either from the re-list or from its own events.
    let during = Pod::new("shop", "web-1", CgroupLayout::Systemd);
    let new = tokio::task::block_in_place(|| {
        ctrd.restart();
        ctrd.start_sh(&during, "nginx", "none", "exec sleep 300")
    });
    let relisted = expect_event(&mut rx, "re-list after the restart", |e| {
        matches!(e, SourceEvent::Listed { .. })
    })
    .await;
    let SourceEvent::Listed { containers, .. } = relisted.clone() else {
        unreachable!()
    };
    // The container from before the restart kept running through it (its shim outlives
    // containerd) and is listed again with the same pid.
    let kept = containers
        .iter()
        .find(|r| r.id == old.id)
        .unwrap_or_else(|| panic!("old container re-listed: {containers:?}"));
    let kept = kept.clone();
    assert_eq!(kept.init_pid, Some(old_pid));
    assert_pod_record(&kept, &old, &before, "nginx");
    let new_record = match containers
        .iter()
        .find(|r| r.id == new.id && r.init_pid.is_some())
    {
        Some(r) => r.clone(),
        None => match expect_event(
            &mut rx,
            "Started of the container from the gap",
            |e| matches!(e, SourceEvent::Started { container, .. } if container.id == new.id),
        )
        .await
        {
            SourceEvent::Started { container, .. } => container,
            _ => unreachable!(),
        },
    };
    assert_pod_record(&new_record, &new, &during, "nginx");
    assert!(Path::new(&format!("/proc/{old_pid}")).exists());

    // What the agent makes of it (its table, the kernel's policy): tests/pods.rs,
    // a_containerd_restart_is_survived_and_pods_started_in_the_gap_are_enforced.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_made_through_the_cri_is_read_through_the_cri() {
    use seawall_engines::{
        cri_pods::{CriPods, PodSpec},
        CriSource,
    };
    if !containerd_available() {
        return;
    }
    let pause = tokio::task::block_in_place(PauseImage::build);
    let mut ctrd = Containerd::start_with_cri(&pause.ctr_name());
    tokio::task::block_in_place(|| {
        ctrd.import_test_image();
        ctrd.import_from_docker(&pause.name);
    });
    let uid = pod_uid();
    let spec = PodSpec {
        namespace: "shop".into(),
        name: "cri-web-0".into(),
        uid: uid.clone(),
        cgroup_parent: format!("/kubepods/burstable/pod{uid}"),
        labels: [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]
        .into(),
    };
    ctrd.owns_cgroup_dirs(&[
        "/kubepods".into(),
        "/kubepods/burstable".into(),
        spec.cgroup_parent.clone(),
    ]);
    let mut pods = CriPods::connect(&ctrd.socket).await.expect("CRI connect");
    // The CRI plugin picks imported images up from containerd's events: retry briefly.
    let mut sandbox = None;
    for _ in 0..50 {
        match pods.run_pod(&spec).await {
            Ok(id) => {
                sandbox = Some(id);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let sandbox = sandbox.unwrap_or_else(|| panic!("RunPodSandbox never worked:\n{}", ctrd.log()));

    let (tx, mut rx) = mpsc::channel(64);
    let _source = tokio::spawn(CriSource::new(&ctrd.socket).run(tx));
    let listed = expect_event(&mut rx, "initial listing", |e| {
        matches!(e, SourceEvent::Listed { .. })
    })
    .await;
    let SourceEvent::Listed { source, containers } = &listed else {
        unreachable!()
    };
    // The CRI says which runtime answers; a pod's sandbox is not one of its containers.
    assert_eq!(source.runtime, Runtime::Containerd);
    assert!(containers.is_empty(), "{containers:?}");

    let script = "echo drift > /written-here; exec sleep 300";
    let id = pods
        .start_container(&sandbox, &spec, "nginx", CTR_IMAGE, &["sh", "-c", script])
        .await
        .expect("CreateContainer + StartContainer");
    // containerd 1.6 has no GetContainerEvents: the source polls, so this takes up to the
    // poll interval.
    let started = expect_event(
        &mut rx,
        "Started of the CRI container",
        |e| matches!(e, SourceEvent::Started { container, .. } if container.id == id),
    )
    .await;
    let SourceEvent::Started { container: r, .. } = started else {
        unreachable!()
    };
    assert_eq!(r.runtime, Runtime::Containerd);
    assert_eq!(r.name, "nginx");
    let k = r.kubernetes.as_ref().expect("pod identity");
    assert_eq!(
        (
            k.namespace.as_str(),
            k.pod.as_str(),
            k.pod_uid.as_str(),
            k.container.as_str()
        ),
        ("shop", "cri-web-0", uid.as_str(), "nginx")
    );
    // The pod's own labels come from its sandbox (the kubelet gives them to no container).
    assert_eq!(
        k.labels,
        [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string())
        ]
        .into()
    );
    let pid = r.init_pid.expect("pid from the verbose status");
    assert_eq!(Some(pid), task_pid(&ctrd.socket, &id));
    // containerd's own API gives the same pod labels for the same container.
    let native = ContainerdClient::connect(&ctrd.socket)
        .await
        .expect("connect")
        .container(K8S_NAMESPACE, &id, Some(pid))
        .await
        .expect("get")
        .expect("the CRI container is a containerd container in k8s.io");
    assert_eq!(
        native.kubernetes.as_ref().map(|k| &k.labels),
        Some(&k.labels)
    );
    assert_eq!(native.cgroup_path, r.cgroup_path);
    let expected = format!("/kubepods/burstable/pod{uid}/{id}");
    let kernel = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert_eq!(cgroup_path::unified_path(&kernel), Some(expected.as_str()));
    assert_eq!(r.cgroup_path.as_deref(), Some(expected.as_str()));
    assert!(r.image.contains("seawall-test/busybox"), "{}", r.image);
    assert!(!r.image_id.is_empty());
    let mut written = None;
    for _ in 0..50 {
        written = r
            .upper_dir
            .as_ref()
            .and_then(|u| std::fs::read_to_string(u.join("written-here")).ok());
        if written.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        written.as_deref(),
        Some("drift\n"),
        "upper dir {:?}",
        r.upper_dir
    );

    pods.remove_container(&id).await.expect("stop and remove");
    expect_event(
        &mut rx,
        "Deleted",
        |e| matches!(e, SourceEvent::Deleted { key, .. } if key.id == id),
    )
    .await;
    pods.remove_pod(&sandbox).await.expect("remove pod");
}
