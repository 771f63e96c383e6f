//! What an interrupted bench left behind (Ctrl-C skips the drops that clean up): containers and
//! bpffs directories named by [`super::unique_name`], and work directories
//! (`$TMPDIR/seawall-bench-<pid>`), after a bench process that no longer runs. Removed before a run takes its measurements; anything of a bench still running —
//! another engineer's, or a pid reused since — is left alone.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// The pid in a name `sw-bench-<tag>-<pid>-<n>` (the tag may itself hold dashes).
fn bench_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("sw-bench-")?;
    let mut parts = rest.rsplit('-');
    parts.next()?.parse::<u64>().ok()?;
    let pid = parts.next()?.parse().ok()?;
    // A tag must remain: `sw-bench-12-3` is not ours.
    parts.next()?;
    Some(pid)
}

/// Whether `name` is a bench's and its process is gone.
fn stale(name: &str) -> bool {
    bench_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Whether `name` is a work directory `seawall-bench-<pid>` of a bench that is gone.
fn stale_work_dir(name: &str) -> bool {
    name.strip_prefix("seawall-bench-")
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// Removes stale bench containers, work directories and agent bpffs directories (the latter
/// with the agent's own `seawall uninstall`, which detaches and unpins what is there).
pub fn remove(agent_bin: &Path) {
    if let Ok(dirs) = std::fs::read_dir(std::env::temp_dir()) {
        for dir in dirs.filter_map(Result::ok) {
            if stale_work_dir(&dir.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    let names = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=sw-bench-",
            "--format",
            "{{.Names}}",
        ])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let containers: Vec<&str> = names.lines().filter(|n| stale(n)).collect();
    if !containers.is_empty() {
        eprintln!(
            "xtask bench: removing {} container(s) an interrupted bench left: {}",
            containers.len(),
            containers.join(" ")
        );
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&containers)
            .stdout(Stdio::null())
            .status();
    }
    let Ok(dirs) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for dir in dirs.filter_map(Result::ok) {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !name.starts_with("sw-bench-agent-") || !stale(&name) {
            continue;
        }
        eprintln!(
            "xtask bench: removing {} (an interrupted bench's pins)",
            dir.path().display()
        );
        let ok = Command::new(agent_bin)
            .arg("uninstall")
            .arg("--bpffs")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "xtask bench: `seawall uninstall --bpffs {}` failed; remove it by hand",
                dir.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pid_out_of_bench_names_only() {
        assert_eq!(bench_pid("sw-bench-load-4242-7"), Some(4242));
        assert_eq!(bench_pid("sw-bench-agent-17-1"), Some(17));
        assert_eq!(bench_pid("sw-bench-some-tag-9-2"), Some(9));
        assert_eq!(bench_pid("sw-bench-12-3"), None, "no tag");
        assert_eq!(bench_pid("sw-test-load-4242-7"), None, "not the bench's");
        assert_eq!(bench_pid("sw-bench-load-x-7"), None);
        assert_eq!(bench_pid("seawall"), None);
    }

    #[test]
    fn a_running_bench_is_not_stale() {
        let mine = format!("sw-bench-load-{}-1", std::process::id());
        assert!(!stale(&mine));
        // pid 1 always runs.
        assert!(!stale("sw-bench-load-1-1"));
        assert!(!stale("nginx"));
        assert!(!stale_work_dir(&format!(
            "seawall-bench-{}",
            std::process::id()
        )));
        assert!(!stale_work_dir("seawall-bench-1"));
        assert!(!stale_work_dir("seawall-bench-warm.log"));
    }
}
