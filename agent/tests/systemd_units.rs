//! The shipped systemd units must pass `systemd-analyze verify` without a single complaint.
//!
//! `verify` insists that `ExecStart=` binaries exist, so each unit is checked as a copy whose binary
//! paths point at stand-in executables in a temporary directory; nothing else is changed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Installed paths in the units, longest first so `seawall` does not match inside `seawall-collector`.
const BINARIES: [&str; 2] = ["/usr/local/bin/seawall-collector", "/usr/local/bin/seawall"];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn systemd_analyze_available() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A copy of `unit` in `dir` whose binaries are executables inside `dir`.
fn rewrite_unit(unit: &str, dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(units_dir().join(unit))
        .unwrap_or_else(|e| panic!("read systemd/{unit}: {e}"));
    for installed in BINARIES {
        let name = Path::new(installed).file_name().unwrap();
        let stand_in = dir.join(name);
        if !stand_in.exists() {
            std::fs::write(&stand_in, "#!/bin/sh\nexit 0\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        text = text.replace(installed, stand_in.to_str().unwrap());
    }
    assert!(
        !text.contains("/usr/local/bin/"),
        "systemd/{unit} runs a binary this test does not know about"
    );
    let path = dir.join(unit);
    std::fs::write(&path, text).unwrap();
    path
}

fn verify(unit: &str) {
    if !systemd_analyze_available() {
        println!("SKIP: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = rewrite_unit(unit, dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings (exit status 0), so the output must be empty too.
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "systemd-analyze verify systemd/{unit} complained ({}):\n{stdout}{stderr}",
        out.status
    );
}

#[test]
fn agent_unit_verifies() {
    verify("seawall-agent.service");
}

#[test]
fn collector_unit_verifies() {
    verify("seawall-collector.service");
}

/// Properties the rest of the system relies on, which `verify` cannot know about.
#[test]
fn units_keep_the_contract_with_the_daemons() {
    for unit in ["seawall-agent.service", "seawall-collector.service"] {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        let has = |line: &str| text.lines().any(|l| l.trim() == line);
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=30s",
            "Restart=on-failure",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
        ] {
            assert!(has(line), "systemd/{unit} lacks `{line}`");
        }
    }
    let agent = std::fs::read_to_string(units_dir().join("seawall-agent.service")).unwrap();
    assert!(agent
        .lines()
        .any(|l| l.trim() == "ReadWritePaths=/sys/fs/bpf"));
    let collector = std::fs::read_to_string(units_dir().join("seawall-collector.service")).unwrap();
    assert!(collector.lines().any(|l| l.trim() == "DynamicUser=yes"));
}

/// The stand-in rewrite must not hide a broken unit: a unit with a typo is reported.
#[test]
fn verify_reports_a_bad_key() {
    if !systemd_analyze_available() {
        println!("SKIP: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = rewrite_unit("seawall-agent.service", dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("WatchdogSec=", "WatchdgSec=")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("WatchdgSec"));
}
