//! What the fault tests share: failpoints, process states, waits.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use seawall_integration::{Agent, Container};
use serde_json::Value;

/// Starts an agent with failpoints armed (`SEAWALL_FAILPOINTS`), and fails loudly when the
/// binary was built without them (`cargo xtask test` builds it `--features failpoints`).
pub fn agent_with_failpoints(profiles: &[(&str, &str)], extra: &[&str], failpoints: &str) -> Agent {
    // Inherited by the agent; the tests run one at a time (--test-threads=1).
    std::env::set_var("SEAWALL_FAILPOINTS", failpoints);
    let agent = Agent::start(profiles, extra);
    std::env::remove_var("SEAWALL_FAILPOINTS");
    require_failpoints(&agent);
    agent
}

/// Panics unless the agent announced armed failpoints.
pub fn require_failpoints(agent: &Agent) {
    let armed = wait_until(Duration::from_secs(5), || {
        agent.log().contains("failpoints armed")
    });
    assert!(
        armed,
        "the agent binary has no failpoints: build it with `cargo build -p seawall --features failpoints` (cargo xtask test does)\n{}",
        agent.log()
    );
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The scheduler state of a process (`R`, `S`, `T` for stopped, …), `None` once it is gone.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S …": the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The host pid of a container's init.
pub fn init_pid(c: &Container) -> u32 {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", &c.name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The container's cgroup id (the inode of its cgroup directory) while it runs.
pub fn cgroup_id(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = line.lines().find_map(|l| l.strip_prefix("0::"))?;
    // Hybrid hosts mount the cgroup v2 hierarchy at /sys/fs/cgroup/unified.
    let unified = Path::new("/sys/fs/cgroup/unified");
    let root = if unified.join("cgroup.procs").exists() {
        unified
    } else {
        Path::new("/sys/fs/cgroup")
    };
    std::fs::metadata(root.join(path.trim_start_matches('/')))
        .ok()
        .map(|m| m.ino())
}

/// `docker logs` of a container, stdout and stderr.
pub fn logs(c: &Container) -> String {
    let out = Command::new("docker")
        .args(["logs", &c.name])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether an event is an `agent` event whose message contains `text`.
pub fn agent_says(e: &Value, text: &str) -> bool {
    e["kind"] == "agent" && e["message"].as_str().is_some_and(|m| m.contains(text))
}

/// The first number in an agent event's message.
pub fn first_number(e: &Value) -> u64 {
    e["message"]
        .as_str()
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}
