//! `cargo xtask setup`: idempotent; installs only what is missing and says what it does.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::run;

pub const TEST_IMAGE: &str = "seawall-test/busybox:latest";

const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "docker.io",
    "busybox-static",
    "qemu-system-x86",
    "cpio",
    "xz-utils",
    "systemd",
];

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn output(cmd: &mut Command) -> String {
    cmd.stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).trim() == "0"
}

fn debian_like() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .map(|s| {
            s.lines().any(|l| {
                l.starts_with("ID=debian")
                    || l.starts_with("ID=ubuntu")
                    || l.starts_with("ID_LIKE=debian")
            })
        })
        .unwrap_or(false)
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .contains("install ok installed")
        })
        .collect()
}

pub fn setup() -> Result<()> {
    if !is_root() || !debian_like() {
        let missing = if debian_like() {
            missing_packages()
        } else {
            APT_PACKAGES.to_vec()
        };
        eprintln!(
            "xtask setup: not root on Debian/Ubuntu, so nothing is installed. Seawall needs:\n\
             - packages: {}\n\
             - rustup nightly with rust-src: rustup component add rust-src --toolchain nightly\n\
             - bpf-linker 0.13 built against LLVM 22:\n  \
               PATH=/usr/lib/llvm-22/bin:$PATH LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22\n\
             - a running Docker daemon and the test image {TEST_IMAGE} (cargo xtask setup as root builds it)",
            missing.join(" ")
        );
        bail!("setup needs root on Debian or Ubuntu");
    }
    let missing = missing_packages();
    if !missing.is_empty() {
        eprintln!("xtask setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .contains("rust-src")
    {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !output(Command::new("rustup").args(["target", "list", "--installed"]))
        .contains("x86_64-unknown-linux-musl")
    {
        run(Command::new("rustup").args(["target", "add", "x86_64-unknown-linux-musl"]))?;
    }
    if !output(Command::new("bpf-linker").arg("--version")).contains("0.13") {
        eprintln!("xtask setup: building bpf-linker 0.13 against LLVM 22 (a few minutes)");
        run(crate::cargo().args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]))?;
    }
    ensure_docker()?;
    ensure_test_image()?;
    Ok(())
}

fn docker_answers() -> bool {
    ok(Command::new("docker").arg("info"))
}

fn ensure_docker() -> Result<()> {
    if docker_answers() {
        return Ok(());
    }
    // No daemon answers (a fresh CI or dev machine): start one for the tests. Containers in
    // tests use --network host or none, so no bridge or iptables rules are set up on the host.
    eprintln!("xtask setup: starting dockerd (log: /var/log/seawall-dockerd.log)");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/var/log/seawall-dockerd.log")
        .context("opening /var/log/seawall-dockerd.log")?;
    Command::new("setsid")
        .args([
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting dockerd")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if docker_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("dockerd did not answer within 60 s; see /var/log/seawall-dockerd.log")
}

/// busybox-static with its applets, a minimal /etc/passwd and /etc/group, and one real copy of
/// busybox at /usr/local/bin/wget so exec rules have a distinct file to name.
fn ensure_test_image() -> Result<()> {
    if ok(Command::new("docker").args(["image", "inspect", TEST_IMAGE])) {
        return Ok(());
    }
    eprintln!("xtask setup: building {TEST_IMAGE} with docker import");
    let dir = std::env::temp_dir().join(format!("seawall-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["bin", "etc", "tmp", "root", "usr/local/bin", "var/log"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .context("copying /bin/busybox (busybox-static)")?;
    std::fs::copy("/bin/busybox", dir.join("usr/local/bin/wget"))?;
    let list = output(Command::new("/bin/busybox").arg("--list"));
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("tar")?;
    let mut import = Command::new("docker")
        .args(["import", "-c", "CMD [\"/bin/sh\"]", "-", TEST_IMAGE])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("docker import")?;
    {
        let mut out = tar.stdout.take().expect("piped");
        let mut inp = import.stdin.take().expect("piped");
        std::io::copy(&mut out, &mut inp)?;
        inp.flush()?;
    }
    let t = tar.wait()?;
    let i = import.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !t.success() || !i.success() {
        bail!("building {TEST_IMAGE} failed (tar: {t}, docker import: {i})");
    }
    Ok(())
}
