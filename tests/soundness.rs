//! Issue 9: no way around a control from inside a container. Each test is one class of bypass,
//! tried as root in a default Docker container would (busybox, plus the static helper
//! `tests/attack/attack.c` for the raw syscalls), under a strict enforcing profile on this host's
//! fallback backends; each asserts both sides: what the process saw (exit status, errno, file
//! unchanged, listener got nothing) and the event the agent wrote. The same scenario in audit
//! mode runs and is reported. Benign behaviour under the same profile keeps working.
//!
//! What the fallback cannot see is asserted too, as what `seawall status` says about it.

#[path = "soundness/code.rs"]
mod code;
#[path = "soundness/coverage.rs"]
mod coverage;
#[path = "soundness/files.rs"]
mod files;
#[path = "soundness/fixture.rs"]
mod fixture;
#[path = "soundness/network.rs"]
mod network;
#[path = "soundness/roots.rs"]
mod roots;
#[path = "soundness/scripts.rs"]
mod scripts;
#[path = "soundness/syscall_hooks.rs"]
mod syscall_hooks;
#[path = "soundness/uncertain.rs"]
mod uncertain;

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use fixture::*;
use seawall_integration::*;
use serde_json::Value;

fn profile(mode: &str, body: &str) -> String {
    test_profile("busybox", mode, body)
}

fn agent_with(mode: &str, body: &str) -> Agent {
    Agent::start(
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &profile(mode, body)),
        ],
        &[],
    )
}

/// `rc=N` printed by the script for `key`.
fn rc(stdout: &str, key: &str) -> Option<i32> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `n` events matching `pred` arrive within 15 s.
fn at_least(agent: &Agent, n: usize, pred: impl Fn(&Value) -> bool) -> bool {
    agent
        .wait_for(Duration::from_secs(15), |_| {
            agent.events().iter().filter(|e| pred(e)).count() >= n
        })
        .is_some()
}

/// The first drift event of container `c` whose exe is `exe`.
fn drift_event(agent: &Agent, c: &Container, exe: &str) -> Value {
    let id = c.id();
    agent.expect(&format!("drift event for {exe}"), |e| {
        e["control"] == "drift" && e["container"]["id"] == id.as_str() && e["process"]["exe"] == exe
    })
}
