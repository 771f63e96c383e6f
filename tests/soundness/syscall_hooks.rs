//! The fallback's opt-in syscall hooks (`--fallback-syscall-hooks`): the doors the fallback
//! cannot see otherwise — executable mappings of dropped code, `ptrace`, `process_vm_writev`,
//! `/proc/<pid>/mem` opened for writing, `AF_PACKET` sockets — killed under an enforcing profile (the process sees 137 and the effect
//! never happens) and reported in audit; host processes doing the same are untouched; and
//! `seawall status` says which of the two the agent runs.
//!
//! These are fallback tests: where BPF LSM is the backend the hooks are never loaded, which
//! is asserted instead.

use std::process::Command;

use seawall_integration::*;
use serde_json::Value;

use super::{at_least, fixture::*, profile, rc};

const OPT_IN: &str = "--fallback-syscall-hooks";

/// An agent with the opt-in, `busybox` images under `mode` with `body`.
fn agent_with_hooks(mode: &str, body: &str) -> Agent {
    Agent::start(
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &profile(mode, body)),
        ],
        &[OPT_IN],
    )
}

fn status(agent: &Agent) -> Value {
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether this agent runs the fallback with the hooks attached. On BPF LSM: asserts that the
/// hooks were not loaded, and the caller returns (the LSM hooks are the VM test's).
fn hooks_attached(agent: &Agent) -> bool {
    let s = status(agent);
    if s["backends"]["lsm_unavailable"].is_null() {
        assert_eq!(s["backends"]["syscall_hooks"], "not_with_lsm", "{s}");
        eprintln!("SKIP: BPF LSM is the backend here: the syscall hooks are never loaded");
        return false;
    }
    assert_eq!(
        s["backends"]["syscall_hooks"],
        "attached",
        "{s}\n{}",
        agent.log()
    );
    true
}

fn drift_events(agent: &Agent, c: &Container, door: &str, action: &str) -> usize {
    let id = c.id();
    agent
        .events()
        .iter()
        .filter(|e| {
            e["control"] == "drift"
                && e["action"] == action
                && e["container"]["id"] == id.as_str()
                && e["message"].as_str().unwrap_or("").contains(door)
        })
        .count()
}

const PTRACE: &str = "ptrace attach to another process";
const PROC_MEM: &str = "write access to process memory";
const MAPPED: &str = "file mapped executable";

fn inject_script() -> String {
    format!(
        "{ATTACK} inject vmwrite; echo vmwrite=$?; {ATTACK} inject poke; echo poke=$?; \
         {ATTACK} inject traceme; echo traceme=$?; sleep 1"
    )
}

#[test]
fn ptrace_and_process_vm_writev_are_killed_before_they_act() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("enforce", "[drift]\nprevent = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-inject",
        &["--network", "none"],
        &inject_script(),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "vmwrite"), Some(137), "{s} {}", text(&out.stderr));
    assert_eq!(rc(&s, "poke"), Some(137), "{s}");
    // The child that offered itself was killed at PTRACE_TRACEME.
    assert_eq!(rc(&s, "traceme"), Some(1), "{s}");
    assert!(s.contains("traceme child killed by 9"), "{s}");
    // The targets' memory is unchanged: with SIGKILL pending nothing was copied or poked.
    assert_eq!(s.matches("target=ORIGINAL").count(), 2, "{s}");
    assert!(!s.contains("OVERWRITTEN") && !s.contains("POKED"), "{s}");
    assert!(
        at_least(&agent, 3, |e| {
            e["control"] == "drift"
                && e["action"] == "blocked"
                && e["container"]["id"] == c.id().as_str()
                && e["message"].as_str().unwrap_or("").contains(PTRACE)
        }),
        "three blocked ptrace events: {:?}",
        agent.events()
    );
}

#[test]
fn ptrace_and_process_vm_writev_are_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("audit", "[drift]\nprevent = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-inject-audit",
        &["--network", "none"],
        &inject_script(),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "vmwrite"), Some(0), "audit lets it run: {s}");
    assert_eq!(rc(&s, "poke"), Some(0), "{s}");
    assert_eq!(rc(&s, "traceme"), Some(0), "{s}");
    assert!(
        s.contains("target=OVERWRITTEN") && s.contains("target=POKED"),
        "{s}"
    );
    agent.wait_for(std::time::Duration::from_secs(15), |_| {
        drift_events(&agent, &c, PTRACE, "audited") >= 3
    });
    assert!(
        drift_events(&agent, &c, PTRACE, "audited") >= 3,
        "audited ptrace events: {:?}",
        agent.events()
    );
}

fn proc_mem_script() -> String {
    format!(
        "{ATTACK} procmem; echo self=$?; {ATTACK} inject procmem; echo openat=$?; \
         {ATTACK} inject procmem-open; echo open=$?; \
         {ATTACK} inject procmem-openat2; echo openat2=$?; \
         {ATTACK} read /proc/self/maps; echo read=$?; sleep 1"
    )
}

#[test]
fn proc_mem_opened_for_writing_is_killed() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("enforce", "[drift]\nprevent = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-procmem",
        &["--network", "none"],
        &proc_mem_script(),
    );
    let s = text(&out.stdout);
    for key in ["self", "openat", "open", "openat2"] {
        assert_eq!(rc(&s, key), Some(137), "{key}: {s} {}", text(&out.stderr));
    }
    // Killed before open returned: the targets' memory is unchanged.
    assert_eq!(s.matches("target=ORIGINAL").count(), 3, "{s}");
    assert!(!s.contains("MEMWRITE") && !s.contains("procmem ok"), "{s}");
    assert_eq!(rc(&s, "read"), Some(0), "reading procfs is untouched: {s}");
    assert!(
        at_least(&agent, 4, |e| {
            e["control"] == "drift"
                && e["action"] == "blocked"
                && e["container"]["id"] == c.id().as_str()
                && e["message"].as_str().unwrap_or("").contains(PROC_MEM)
        }),
        "four blocked /proc/<pid>/mem events: {:?}",
        agent.events()
    );
}

#[test]
fn proc_mem_opened_for_writing_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("audit", "[drift]\nprevent = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-procmem-audit",
        &["--network", "none"],
        &proc_mem_script(),
    );
    let s = text(&out.stdout);
    for key in ["self", "openat", "open", "openat2"] {
        assert_eq!(rc(&s, key), Some(0), "{key}: audit lets it run: {s}");
    }
    assert_eq!(s.matches("target=MEMWRITE").count(), 3, "{s}");
    agent.wait_for(std::time::Duration::from_secs(15), |_| {
        drift_events(&agent, &c, PROC_MEM, "audited") >= 4
    });
    assert!(
        drift_events(&agent, &c, PROC_MEM, "audited") >= 4,
        "audited /proc/<pid>/mem events: {:?}",
        agent.events()
    );
}

/// Each way to map dropped code executable, with its own `rc` key; `--preload` runs the
/// loader (allowed by the profile below) on an image program with the dropped library, whose
/// constructor prints PRELOAD-RAN.
fn mapping_script() -> String {
    format!(
        "cp {EVIL_SO} /tmp/evil.so; \
         {ATTACK} map mmap /tmp/evil.so; echo mmap=$?; \
         {ATTACK} map mprotect /tmp/evil.so; echo mprotect=$?; \
         {ATTACK} map memfd /tmp/evil.so; echo memfd=$?; \
         {LOADER} --preload /tmp/evil.so {DYN_TRUE}; echo preload=$?; \
         {ATTACK} map mmap {EVIL_SO}; echo image=$?; \
         {DYN_TRUE}; echo benign=$?"
    )
}

/// The loader may run as a program (so the mapping, not the exec, is what is judged).
const LOADER_ALLOWED: &str =
    "[drift]\nprevent = true\nallow = [\"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\"]\n";

#[test]
fn an_executable_mapping_of_a_dropped_file_is_killed() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("enforce", LOADER_ALLOWED);
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(&image, "sys-map", &["--network", "none"], &mapping_script());
    let s = text(&out.stdout);
    for key in ["mmap", "mprotect", "memfd", "preload"] {
        assert_eq!(rc(&s, key), Some(137), "{key}: {s} {}", text(&out.stderr));
    }
    // Killed before the return to user: nothing after the mapping ran, the constructor least.
    assert!(!s.contains("mmap ok") && !s.contains("mprotect ok"), "{s}");
    assert!(!s.contains("PRELOAD-RAN"), "{s}");
    // Image files map and run.
    assert_eq!(rc(&s, "image"), Some(0), "an image library maps: {s}");
    assert_eq!(
        rc(&s, "benign"),
        Some(0),
        "a dynamic image program runs: {s}"
    );
    assert!(
        at_least(&agent, 4, |e| {
            e["control"] == "drift"
                && e["action"] == "blocked"
                && e["container"]["id"] == c.id().as_str()
                && e["message"].as_str().unwrap_or("").contains(MAPPED)
        }),
        "four blocked mapping events: {:?}",
        agent.events()
    );
    let id = c.id();
    let e = agent.expect("the mapped file's path", |e| {
        e["action"] == "blocked"
            && e["container"]["id"] == id.as_str()
            && e["process"]["exe"] == "/tmp/evil.so"
    });
    assert_eq!(e["control"], "drift");
}

#[test]
fn an_executable_mapping_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("audit", LOADER_ALLOWED);
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-map-audit",
        &["--network", "none"],
        &mapping_script(),
    );
    let s = text(&out.stdout);
    for key in ["mmap", "mprotect", "memfd", "preload", "image", "benign"] {
        assert_eq!(rc(&s, key), Some(0), "{key}: {s}");
    }
    assert!(s.contains("PRELOAD-RAN"), "audit lets it run: {s}");
    agent.wait_for(std::time::Duration::from_secs(15), |_| {
        drift_events(&agent, &c, MAPPED, "audited") >= 4
    });
    assert!(
        drift_events(&agent, &c, MAPPED, "audited") >= 4,
        "audited mapping events: {:?}",
        agent.events()
    );
}

fn packet_script() -> String {
    format!("{ATTACK} packet; echo packet=$?")
}

fn packet_events(agent: &Agent, c: &Container, action: &str) -> bool {
    let id = c.id();
    agent
        .wait_for(std::time::Duration::from_secs(15), |e| {
            e["kind"] == "network"
                && e["action"] == action
                && e["network"]["op"] == "raw_socket"
                && e["container"]["id"] == id.as_str()
        })
        .is_some()
}

#[test]
fn an_af_packet_socket_is_killed() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("enforce", "[network]\nblock_raw_sockets = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    // CAP_NET_RAW is in Docker's default set: without the hook the socket would be made.
    let (c, out) = run_in(
        &image,
        "sys-packet",
        &["--network", "none"],
        &packet_script(),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "packet"), Some(137), "{s} {}", text(&out.stderr));
    assert!(
        !s.contains("packet ok"),
        "the socket never reached the program: {s}"
    );
    assert!(packet_events(&agent, &c, "blocked"), "{:?}", agent.events());
}

#[test]
fn an_af_packet_socket_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with_hooks("audit", "[network]\nblock_raw_sockets = true\n");
    if !hooks_attached(&agent) {
        return;
    }
    let (c, out) = run_in(
        &image,
        "sys-packet-audit",
        &["--network", "none"],
        &packet_script(),
    );
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "packet"), Some(0), "audit lets it run: {s}");
    assert!(packet_events(&agent, &c, "audited"), "{:?}", agent.events());
}

#[test]
fn host_processes_doing_the_same_are_untouched() {
    if !privileged() {
        return;
    }
    let Some(_image) = attack_image() else { return };
    let Some(helper) = attack_helper() else {
        return;
    };
    let agent = agent_with_hooks(
        "enforce",
        "[drift]\nprevent = true\n[network]\nblock_raw_sockets = true\n",
    );
    if !hooks_attached(&agent) {
        return;
    }
    let lib = tempfile::Builder::new()
        .prefix("sw-evil-")
        .suffix(".so")
        .tempfile()
        .unwrap();
    std::fs::copy(attack_library().unwrap(), lib.path()).unwrap();
    let lib = lib.path().to_str().unwrap().to_string();
    for args in [
        vec!["inject", "vmwrite"],
        vec!["inject", "poke"],
        vec!["inject", "traceme"],
        vec!["inject", "procmem"],
        vec!["procmem"],
        vec!["map", "mmap", &lib],
        vec!["map", "mprotect", &lib],
        vec!["packet"],
    ] {
        let out = Command::new(&helper).args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "host `attack {}`: {} {}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // Host processes are outside every container: no event names them.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = agent.events();
    let theirs: Vec<&Value> = events
        .iter()
        .filter(|e| e["process"]["comm"] == "attack")
        .collect();
    assert!(theirs.is_empty(), "events of host processes: {theirs:?}");
}

#[test]
fn status_says_which_doors_the_hooks_cover() {
    if !privileged() {
        return;
    }
    let line = |s: &Value, class: &str| {
        s["coverage"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["class"] == class).cloned())
            .unwrap_or_else(|| panic!("no coverage line {class}: {s}"))
    };
    let classes = ["executable_mapping", "ptrace", "proc_mem", "packet_socket"];
    {
        let agent = super::agent_with("enforce", "[drift]\nprevent = true\n");
        let s = status(&agent);
        if s["backends"]["lsm_unavailable"].is_null() {
            eprintln!("SKIP: BPF LSM is the backend here");
            return;
        }
        assert_eq!(s["backends"]["syscall_hooks"], "off", "off by default: {s}");
        for class in classes {
            let l = line(&s, class);
            assert_eq!(l["coverage"], "not_visible", "{l}");
            assert!(
                l["how"]
                    .as_str()
                    .unwrap()
                    .contains("enable fallback_syscall_hooks"),
                "{l}"
            );
        }
    }
    let agent = agent_with_hooks("enforce", "[drift]\nprevent = true\n");
    assert!(hooks_attached(&agent));
    let s = status(&agent);
    for class in classes {
        let l = line(&s, class);
        assert_eq!(l["coverage"], "enforced", "{l}");
        assert!(
            l["how"]
                .as_str()
                .unwrap()
                .starts_with("enforced (kill) by the opt-in syscall hooks"),
            "{l}"
        );
    }
    assert_eq!(
        line(&s, "anonymous_executable_memory")["coverage"],
        "not_visible"
    );
}
