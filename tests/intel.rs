//! Issue 15: threat intelligence and image assurance on the node, asserting both sides: what the
//! process in the container saw (exit status, output, a listener that got nothing) and the event
//! the agent wrote (`control`, `intel.indicator`, `intel.type`, `intel.source`, `intel.name`).
//!
//! Addresses are loopback only: the containers run with `--network host` and connect to
//! 127.0.0.x, where this test listens. Images for assurance are tags of the test image made and
//! removed by the test.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use seawall_integration::*;
use serde_json::Value;

#[path = "intel/assurance.rs"]
mod assurance;
#[path = "intel/feeds.rs"]
mod feeds;
/// The attack helper's image (`tests/attack/attack.c`): an ICMP datagram socket's `sendto`.
#[allow(dead_code)]
#[path = "soundness/fixture.rs"]
mod fixture;

/// How long a reload may take to be in force (the agent polls the directory every 2 s).
const RELOAD: Duration = Duration::from_secs(10);

/// The agent event a reload of the feeds produced, waiting at most [`RELOAD`].
fn reload_event(agent: &Agent, what: &str, pred: impl Fn(&str) -> bool) -> Value {
    agent
        .wait_for(RELOAD, |e| {
            e["kind"] == "agent" && pred(e["message"].as_str().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("no {what} within {RELOAD:?}; agent log:\n{}", agent.log()))
}

fn intel_dir(agent_dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let dir = agent_dir.join("intel");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        write_atomically(&dir.join(name), text);
    }
    dir
}

/// Writes a feed as an operator should: a temporary file renamed into place.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn stix_address(id: &str, addr: &str, name: &str) -> String {
    format!(
        r#"{{"type": "bundle", "id": "bundle--{id}", "objects": [
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{id}",
    "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
    "name": "{name}", "pattern": "[ipv4-addr:value = '{addr}']", "pattern_type": "stix",
    "valid_from": "2025-01-01T00:00:00Z"}},
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--{id}-domain",
    "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z",
    "pattern": "[domain-name:value = 'c2.example']", "pattern_type": "stix",
    "valid_from": "2025-01-01T00:00:00Z"}}
]}}"#
    )
}

/// A listener on a loopback address other than 127.0.0.1 (the whole /8 is local).
fn listen(addr: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((addr, 0)).expect("listen on loopback");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// `nc` from a host-network container: prints `rc=N` (0 connected, 1 refused).
fn connect_script(addr: &str, port: u16) -> String {
    format!("echo hi | nc -w 2 {addr} {port}; echo rc=$?")
}

fn status_json(agent: &Agent) -> Value {
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .expect("seawall status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn intel_event<'a>(agent: &'a Agent, what: &str, container: &'a str, indicator: &'a str) -> Value {
    agent.expect(what, move |e| {
        e["control"] == "intel"
            && e["container"]["id"] == container
            && e["intel"]["indicator"] == indicator
    })
}
