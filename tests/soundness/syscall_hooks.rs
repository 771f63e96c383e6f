//! The fallback's opt-in syscall hooks (`--fallback-syscall-hooks`): the doors the fallback
//! cannot see otherwise — executable mappings of dropped code, `ptrace`, `process_vm_writev`,
//! `/proc/<pid>/mem` opened for writing, `AF_PACKET` sockets — killed under an enforcing
//! profile (the process sees 137 and the effect never happens) and reported in audit; host
//! processes doing the same are untouched; and `seawall status` says which of the two the agent
//! runs.
//!
//! These are fallback tests: where BPF LSM is the backend the hooks are never loaded, which
//! is asserted instead.

use std::{process::Command, time::Duration};

use seawall_integration::*;
use serde_json::Value;

use super::{fixture::*, profile, rc};

/// An agent with the opt-in, `busybox` images under `mode` with `body`.
fn agent_with_hooks(mode: &str, body: &str) -> Agent {
    Agent::start(
        &[
            ("default.toml", DEFAULT_PROFILE),
            ("busybox.toml", &profile(mode, body)),
        ],
        &["--fallback-syscall-hooks"],
    )
}

/// Whether this agent runs the fallback with the hooks attached. On BPF LSM: asserts that the
/// hooks were not loaded, and the caller returns (the LSM hooks are the VM test's).
fn hooks_attached(agent: &Agent) -> bool {
    let s = status_json(agent);
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

/// One attack run: the agent, the container, and what the container printed.
struct Run {
    agent: Agent,
    c: Container,
    out: String,
}

impl Run {
    /// `script` in a fresh container of the attack image (no network) under an agent with the
    /// opt-in. With CAP_SYS_PTRACE: Docker's default seccomp profile refuses process_vm_writev
    /// without it (the kernel then never reaches the hook); the hooks must hold without that
    /// help; `None` (the test returns) where privileged tests cannot run or BPF LSM is the
    /// backend.
    fn attack(mode: &str, body: &str, tag: &str, script: &str) -> Option<Run> {
        Self::attack_with(mode, body, tag, script, &[])
    }

    /// [`Run::attack`] with `extra` `docker run` flags.
    fn attack_with(mode: &str, body: &str, tag: &str, script: &str, extra: &[&str]) -> Option<Run> {
        if !privileged() {
            return None;
        }
        let image = attack_image()?;
        let agent = agent_with_hooks(mode, body);
        if !hooks_attached(&agent) {
            return None;
        }
        let mut flags = vec!["--network", "none", "--cap-add", "SYS_PTRACE"];
        flags.extend_from_slice(extra);
        let (c, out) = run_in(&image, tag, &flags, script);
        let out = format!("{}\nstderr: {}", text(&out.stdout), text(&out.stderr));
        Some(Run { agent, c, out })
    }

    fn rc(&self, key: &str) -> Option<i32> {
        rc(&self.out, key)
    }

    /// Asserts that each of `keys` exited with `code`.
    fn exits(&self, keys: &[&str], code: i32) {
        for key in keys {
            assert_eq!(self.rc(key), Some(code), "{key}: {}", self.out);
        }
    }

    /// Waits for at least `n` drift events of this container through `door` with `action`.
    fn drift_events(&self, door: &str, action: &str, n: usize) {
        let id = self.c.id();
        let count = || {
            self.agent
                .events()
                .iter()
                .filter(|e| {
                    e["control"] == "drift"
                        && e["action"] == action
                        && e["container"]["id"] == id.as_str()
                        && e["message"].as_str().unwrap_or("").contains(door)
                })
                .count()
        };
        self.agent
            .wait_for(Duration::from_secs(15), |_| count() >= n);
        assert!(
            count() >= n,
            "{n} {action} events ({door}): {:?}",
            self.agent.events()
        );
    }

    /// Waits for a raw-socket event of this container with `action`.
    fn packet_event(&self, action: &str) {
        let id = self.c.id();
        self.agent.expect(&format!("{action} raw socket"), |e| {
            e["kind"] == "network"
                && e["action"] == action
                && e["network"]["op"] == "raw_socket"
                && e["container"]["id"] == id.as_str()
        });
    }
}

const PTRACE: &str = "ptrace attach to another process";
const PROC_MEM: &str = "write access to process memory";
const MAPPED: &str = "file mapped executable";
const DRIFT: &str = "[drift]\nprevent = true\n";

fn inject_script() -> String {
    format!(
        "{ATTACK} inject vmwrite; echo vmwrite=$?; {ATTACK} inject poke; echo poke=$?; \
         sleep 0.3; kill -CONT -1; {ATTACK} inject traceme; echo traceme=$?; sleep 1"
    )
}

#[test]
fn ptrace_and_process_vm_writev_are_killed_before_they_act() {
    let Some(r) = Run::attack("enforce", DRIFT, "sys-inject", &inject_script()) else {
        return;
    };
    r.exits(&["vmwrite", "poke"], 137);
    // The child that offered itself was killed at PTRACE_TRACEME.
    r.exits(&["traceme"], 1);
    assert!(r.out.contains("traceme child killed by 9"), "{}", r.out);
    // The targets' memory is unchanged: with SIGKILL pending nothing was copied, and the
    // tracer died before it could poke. (PTRACE_ATTACH itself completes before the kill lands:
    // the target is left stopped, hence the SIGCONT in the script.)
    for how in ["vmwrite", "poke"] {
        assert!(
            r.out.contains(&format!("target {how}=ORIGINAL")),
            "{how}: {}",
            r.out
        );
    }
    assert!(
        !r.out.contains("OVERWRITTEN") && !r.out.contains("POKED"),
        "{}",
        r.out
    );
    r.drift_events(PTRACE, "blocked", 3);
}

#[test]
fn ptrace_and_process_vm_writev_are_reported_in_audit() {
    let Some(r) = Run::attack("audit", DRIFT, "sys-inject-audit", &inject_script()) else {
        return;
    };
    r.exits(&["vmwrite", "poke", "traceme"], 0);
    assert!(
        r.out.contains("target vmwrite=OVERWRITTEN") && r.out.contains("target poke=POKED"),
        "{}",
        r.out
    );
    r.drift_events(PTRACE, "audited", 3);
}

fn proc_mem_script() -> String {
    format!(
        "{ATTACK} procmem; echo self=$?; {ATTACK} inject procmem; echo openat=$?; \
         {ATTACK} inject procmem-open; echo open=$?; \
         {ATTACK} inject procmem-openat2; echo openat2=$?; \
         {ATTACK} read /proc/self/maps; echo read=$?; sleep 1"
    )
}

const PROC_MEM_KEYS: &[&str] = &["self", "openat", "open", "openat2"];

#[test]
fn proc_mem_opened_for_writing_is_killed() {
    let Some(r) = Run::attack("enforce", DRIFT, "sys-procmem", &proc_mem_script()) else {
        return;
    };
    r.exits(PROC_MEM_KEYS, 137);
    // Killed before open returned: the targets' memory is unchanged.
    for how in ["procmem", "procmem-open", "procmem-openat2"] {
        assert!(
            r.out.contains(&format!("target {how}=ORIGINAL")),
            "{how}: {}",
            r.out
        );
    }
    assert!(
        !r.out.contains("MEMWRITE") && !r.out.contains("procmem ok"),
        "{}",
        r.out
    );
    r.exits(&["read"], 0);
    r.drift_events(PROC_MEM, "blocked", 4);
}

#[test]
fn proc_mem_opened_for_writing_is_reported_in_audit() {
    let Some(r) = Run::attack("audit", DRIFT, "sys-procmem-audit", &proc_mem_script()) else {
        return;
    };
    r.exits(PROC_MEM_KEYS, 0);
    assert_eq!(r.out.matches("=MEMWRITE").count(), 3, "{}", r.out);
    r.drift_events(PROC_MEM, "audited", 4);
}

/// Each way to map dropped code executable, with its own `rc` key; `--preload` runs the
/// loader (allowed by the profile below) on an image program with the dropped library, whose
/// constructor prints PRELOAD-RAN; `mprotect`/`pkey` map the file readable and then make it
/// executable (the mapping then holds overlayfs's backing file of the upper layer). The image
/// keys do the same to image files: a library, the helper's own program file, the image's libc.
fn mapping_script() -> String {
    format!(
        "cp {EVIL_SO} /tmp/evil.so; \
         {ATTACK} map mmap /tmp/evil.so; echo mmap=$?; \
         {ATTACK} map memfd /tmp/evil.so; echo memfd=$?; \
         {LOADER} --preload /tmp/evil.so {DYN_TRUE}; echo preload=$?; \
         {ATTACK} map mprotect /tmp/evil.so; echo mprotect=$?; \
         {ATTACK} map pkey /tmp/evil.so; echo pkey=$?; \
         {ATTACK} map mmap {EVIL_SO}; echo image=$?; \
         {ATTACK} map mprotect {EVIL_SO}; echo image_mprotect=$?; \
         {ATTACK} map mprotect {ATTACK}; echo own_mprotect=$?; \
         {ATTACK} map pkey /lib/x86_64-linux-gnu/libc.so.6; echo image_pkey=$?; \
         {DYN_TRUE}; echo benign=$?"
    )
}

/// The loader may run as a program (so the mapping, not the exec, is what is judged).
const LOADER_ALLOWED: &str =
    "[drift]\nprevent = true\nallow = [\"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\"]\n";

/// Docker's default seccomp profile refuses pkey_mprotect (EPERM) on this host's Docker: the
/// mapping tests run without it, so the hooks alone are what holds.
const NO_SECCOMP: &[&str] = &["--security-opt", "seccomp=unconfined"];

const MAPPING_KEYS: &[&str] = &["mmap", "memfd", "preload", "mprotect", "pkey"];
/// Image files mapped, or made, executable: never judged drift.
const IMAGE_KEYS: &[&str] = &[
    "image",
    "image_mprotect",
    "own_mprotect",
    "image_pkey",
    "benign",
];

/// The drift events of `r`'s container with `action` that name the dropped file itself.
fn events_naming_the_dropped_file(r: &Run, action: &str) -> usize {
    let id = r.c.id();
    r.agent
        .events()
        .iter()
        .filter(|e| {
            e["action"] == action
                && e["control"] == "drift"
                && e["container"]["id"] == id.as_str()
                && e["process"]["exe"] == "/tmp/evil.so"
        })
        .count()
}

#[test]
fn an_executable_mapping_of_a_dropped_file_is_killed() {
    let Some(r) = Run::attack_with(
        "enforce",
        LOADER_ALLOWED,
        "sys-map",
        &mapping_script(),
        NO_SECCOMP,
    ) else {
        return;
    };
    r.exits(MAPPING_KEYS, 137);
    // Killed before the return to user: nothing after the mapping ran, the constructor least;
    // nothing read the page made executable.
    for ran in [
        "mmap ok\nmmap=",
        "mmap-memfd ok",
        "PRELOAD-RAN",
        "mprotect ok\nmprotect=",
        "pkey_mprotect ok\npkey=",
    ] {
        assert!(!r.out.contains(ran), "{ran}: {}", r.out);
    }
    // Image files map, are made executable, and run: on the image's layer, not drift.
    r.exits(IMAGE_KEYS, 0);
    assert_eq!(
        r.out.matches("mprotect word=464c457f").count(),
        3,
        "{}",
        r.out
    );
    r.drift_events(MAPPED, "blocked", 5);
    // mmap, the loader's preload, mprotect and pkey_mprotect each name /tmp/evil.so (for the
    // last two, found from the upper layer's backing file); the memfd has its own name.
    r.agent.wait_for(Duration::from_secs(5), |_| {
        events_naming_the_dropped_file(&r, "blocked") >= 4
    });
    assert_eq!(
        events_naming_the_dropped_file(&r, "blocked"),
        4,
        "{:?}",
        r.agent.events()
    );
    // No event names an image file.
    let id = r.c.id();
    let image_files = [EVIL_SO, ATTACK, "/lib/x86_64-linux-gnu/libc.so.6", DYN_TRUE];
    let image_events: Vec<Value> = r
        .agent
        .events()
        .into_iter()
        .filter(|e| {
            e["container"]["id"] == id.as_str()
                && e["action"] != "allowed"
                && image_files.iter().any(|f| e["process"]["exe"] == *f)
        })
        .collect();
    assert!(image_events.is_empty(), "{image_events:?}");
}

#[test]
fn an_executable_mapping_is_reported_in_audit() {
    let Some(r) = Run::attack_with(
        "audit",
        LOADER_ALLOWED,
        "sys-map-audit",
        &mapping_script(),
        NO_SECCOMP,
    ) else {
        return;
    };
    r.exits(MAPPING_KEYS, 0);
    r.exits(IMAGE_KEYS, 0);
    assert!(
        r.out.contains("PRELOAD-RAN")
            && r.out.contains("pkey_mprotect word=464c457f")
            && r.out.matches("mprotect word=464c457f").count() == 5,
        "audit lets it run: {}",
        r.out
    );
    r.drift_events(MAPPED, "audited", 5);
    r.agent.wait_for(Duration::from_secs(5), |_| {
        events_naming_the_dropped_file(&r, "audited") >= 4
    });
    assert_eq!(
        events_naming_the_dropped_file(&r, "audited"),
        4,
        "{:?}",
        r.agent.events()
    );
}

fn packet_script() -> String {
    format!("{ATTACK} packet; echo packet=$?")
}

const RAW: &str = "[network]\nblock_raw_sockets = true\n";

#[test]
fn an_af_packet_socket_is_killed() {
    // CAP_NET_RAW is in Docker's default set: without the hook the socket would be made.
    let Some(r) = Run::attack("enforce", RAW, "sys-packet", &packet_script()) else {
        return;
    };
    r.exits(&["packet"], 137);
    assert!(!r.out.contains("packet ok"), "never returned: {}", r.out);
    r.packet_event("blocked");
}

#[test]
fn an_af_packet_socket_is_reported_in_audit() {
    let Some(r) = Run::attack("audit", RAW, "sys-packet-audit", &packet_script()) else {
        return;
    };
    r.exits(&["packet"], 0);
    r.packet_event("audited");
}

#[test]
fn host_processes_doing_the_same_are_untouched() {
    if !privileged() {
        return;
    }
    let (Some(helper), Some(library)) = (attack_helper(), attack_library()) else {
        return;
    };
    let agent = agent_with_hooks("enforce", &format!("{DRIFT}{RAW}"));
    if !hooks_attached(&agent) {
        return;
    }
    let lib = tempfile::Builder::new()
        .prefix("sw-evil-")
        .suffix(".so")
        .tempfile()
        .unwrap();
    std::fs::copy(library, lib.path()).unwrap();
    let lib = lib.path().to_str().unwrap().to_string();
    for args in [
        vec!["inject", "vmwrite"],
        vec!["inject", "poke"],
        vec!["inject", "traceme"],
        vec!["inject", "procmem"],
        vec!["procmem"],
        vec!["map", "mmap", &lib],
        vec!["map", "mprotect", &lib],
        vec!["map", "pkey", &lib],
        vec!["map", "memfd", &lib],
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
    std::thread::sleep(Duration::from_secs(1));
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
        let agent = super::agent_with("enforce", DRIFT);
        let s = status_json(&agent);
        if s["backends"]["lsm_unavailable"].is_null() {
            eprintln!("SKIP: BPF LSM is the backend here");
            return;
        }
        assert_eq!(s["backends"]["syscall_hooks"], "off", "off by default: {s}");
        for class in classes {
            let l = line(&s, class);
            assert_eq!(l["coverage"], "not_visible", "{l}");
            let how = l["how"].as_str().unwrap();
            assert!(how.contains("enable fallback_syscall_hooks"), "{l}");
        }
    }
    let agent = agent_with_hooks("enforce", DRIFT);
    assert!(hooks_attached(&agent));
    let s = status_json(&agent);
    for class in classes {
        let l = line(&s, class);
        assert_eq!(l["coverage"], "enforced", "{l}");
        let how = l["how"].as_str().unwrap();
        assert!(
            how.starts_with("enforced (kill) by the opt-in syscall hooks"),
            "{l}"
        );
    }
    assert_eq!(
        line(&s, "anonymous_executable_memory")["coverage"],
        "not_visible"
    );
}
