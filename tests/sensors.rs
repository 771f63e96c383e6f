//! Issue 2: every exec, file open and network connection inside containers, as JSON lines tied
//! to the container and its image; nothing from host processes by default.

use std::{net::TcpListener, process::Command, time::Duration};

use seawall_integration::*;

#[test]
fn exec_in_a_container_started_after_the_agent_is_reported_with_argv_and_container() {
    if !privileged() {
        return;
    }
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    let (c, out) = run_sh("exec", "none", "cat /etc/passwd > /dev/null; echo done");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = c.id();
    let e = agent.expect("exec of cat with its argv", |e| {
        e["kind"] == "exec"
            && e["container"]["id"] == id.as_str()
            && e["process"]["args"][0] == "cat"
    });
    assert_eq!(
        e["process"]["args"],
        serde_json::json!(["cat", "/etc/passwd"])
    );
    assert_eq!(
        e["process"]["exe"], "/bin/busybox",
        "cat is busybox in the test image"
    );
    assert_eq!(e["container"]["name"], c.name.as_str());
    assert_eq!(e["container"]["image"], IMAGE);
    assert!(e["container"]["image_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(e["action"], "allowed");
    assert_eq!(e["control"], "visibility");
    assert!(e["seq"].as_u64().unwrap() > 0);
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert!(e["process"]["pid"].as_u64().unwrap() > 1);
    assert!(e["process"]["ppid"].as_u64().unwrap() > 0);
}

#[test]
fn a_container_started_before_the_agent_is_attributed_too() {
    if !privileged() {
        return;
    }
    let c = start_sh(
        "before",
        "none",
        "while true; do cat /etc/group > /dev/null; sleep 0.2; done",
    );
    std::thread::sleep(Duration::from_millis(500));
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    let id = c.id();
    let e = agent.expect("exec in the pre-existing container", |e| {
        e["kind"] == "exec" && e["process"]["args"][0] == "cat" && args_contain(e, "/etc/group")
    });
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["container"]["name"], c.name.as_str());
    assert_eq!(e["container"]["image"], IMAGE);
}

#[test]
fn audit_files_reports_the_open_of_a_file_the_container_wrote() {
    if !privileged() {
        return;
    }
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &["--audit-files"]);
    let (c, out) = run_sh(
        "files",
        "none",
        "sleep 1; echo secret > /tmp/probe; cat /tmp/probe",
    );
    assert_eq!(text(&out.stdout).trim(), "secret", "{}", text(&out.stderr));
    let id = c.id();
    let w = agent.expect("open of /tmp/probe for writing", |e| {
        e["kind"] == "file"
            && e["file"]["path"] == "/tmp/probe"
            && e["file"]["flags"]
                .as_str()
                .unwrap_or("")
                .contains("O_WRONLY")
    });
    assert_eq!(w["container"]["id"], id.as_str());
    assert!(w["file"]["flags"].as_str().unwrap().contains("O_CREAT"));
    let r = agent.expect("open of /tmp/probe for reading", |e| {
        e["kind"] == "file"
            && e["file"]["path"] == "/tmp/probe"
            && e["file"]["flags"]
                .as_str()
                .unwrap_or("")
                .starts_with("O_RDONLY")
    });
    assert_eq!(r["container"]["image"], IMAGE);
    assert_eq!(r["action"], "allowed");
}

#[test]
fn connect_to_a_loopback_port_is_reported_with_address_and_port() {
    if !privileged() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    let server = serve_once(listener);
    let (c, out) = run_sh("net", "host", &format!("echo hello | nc 127.0.0.1 {port}"));
    assert!(out.status.success(), "nc failed: {}", text(&out.stderr));
    // The listener really got the connection.
    assert_eq!(
        server.join().unwrap().as_deref().map(str::trim),
        Some("hello")
    );
    let id = c.id();
    let e = agent.expect("connect event", |e| {
        e["kind"] == "network" && e["network"]["op"] == "connect" && e["network"]["port"] == port
    });
    assert_eq!(e["network"]["address"], "127.0.0.1");
    assert_eq!(e["network"]["protocol"], "tcp");
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["process"]["comm"], "nc");
}

#[test]
fn host_processes_produce_no_events_by_default() {
    if !privileged() {
        return;
    }
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    let marker = format!("seawall-host-marker-{}", std::process::id());
    let st = Command::new("/bin/sh")
        .args(["-c", &format!("/bin/echo {marker} > /dev/null")])
        .status()
        .unwrap();
    assert!(st.success());
    // A container exec after the host one proves the pipeline had time to report it.
    let (c, _) = run_sh("fence", "none", "cat /etc/hostname");
    let id = c.id();
    agent.expect("the fence container's exec", |e| {
        e["kind"] == "exec" && e["container"]["id"] == id.as_str()
    });
    let host: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| args_contain(e, &marker))
        .collect();
    assert!(host.is_empty(), "host exec was reported: {host:?}");
    assert!(
        agent
            .events()
            .iter()
            .all(|e| e["kind"] != "exec" || e["container"].is_object()),
        "every exec event belongs to a container"
    );
}

#[test]
fn an_accepted_connection_on_a_container_listener_is_reported() {
    if !privileged() {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Agent::start(&[("default.toml", DEFAULT_PROFILE)], &[]);
    let c = start_sh("accept", "host", &format!("nc -l -p {port} > /dev/null"));
    let id = c.id();
    // Connect from the host once the container listens.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            client = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = client.expect("the container's listener never came up");
    let peer_port = client.local_addr().unwrap().port();
    let e = agent.expect("accept event", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "accept"
            && e["container"]["id"] == id.as_str()
    });
    assert_eq!(e["network"]["address"], "127.0.0.1");
    assert_eq!(e["network"]["port"], peer_port, "the peer's port");
    assert_eq!(e["network"]["protocol"], "tcp");
    agent.expect("bind event of the listener", |e| {
        e["kind"] == "network"
            && e["network"]["op"] == "bind"
            && e["network"]["port"] == port
            && e["container"]["id"] == id.as_str()
    });
    drop(client);
}
