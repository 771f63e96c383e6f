//! `cargo xtask setup`: idempotent; installs only what is missing and says what it does.

use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::run;

pub const TEST_IMAGE: &str = "seawall-test/busybox:latest";

/// Debian packages the build and the tests need.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "docker.io",
    "containerd",
    "podman",
    "busybox-static",
    "qemu-system-x86",
    "cpio",
    "xz-utils",
    "systemd",
    "nats-server",
    // tests/micro/code.rs builds a small glibc program and library to load in a container.
    "gcc",
    "libc6-dev",
];

/// The LLVM major bpf-linker is built against (Debian's `llvm-22-dev`).
const LLVM_MAJOR: u32 = 22;
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

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

fn missing_from(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .contains("install ok installed")
        })
        .collect()
}

/// Installs whichever of `packages` are missing (root on Debian/Ubuntu); elsewhere says what
/// is missing and fails.
pub fn ensure_packages(packages: &[&'static str]) -> Result<()> {
    let missing = missing_from(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !debian_like() {
        bail!(
            "missing packages: {} (install them, or run this as root on Debian/Ubuntu)",
            missing.join(" ")
        );
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The dated nightly the kernel programs are built with, from `agent-ebpf/rust-toolchain.toml`
/// (the one place it is pinned; `agent/build.rs` reads the same file).
pub fn ebpf_toolchain() -> Result<String> {
    let file = crate::root().join("agent-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| !v.is_empty())
        .with_context(|| format!("{} has no channel line", file.display()))
}

/// The LLVM major a rustc reports in `rustc -vV` (`LLVM version: 22.1.8`).
fn llvm_major_of_rustc(verbose_version: &str) -> Option<u32> {
    verbose_version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next()?.parse().ok())
}

/// The LLVM major the installed bpf-linker links (`libLLVM.so.22.1` in its ldd output).
fn llvm_major_of_bpf_linker() -> Option<u32> {
    let path = output(Command::new("sh").args(["-c", "command -v bpf-linker"]));
    let libs = output(Command::new("ldd").arg(path.trim()));
    libs.split_whitespace()
        .find_map(|w| {
            w.strip_prefix("libLLVM.so.")
                .or_else(|| w.strip_prefix("libLLVM-"))
        })
        .and_then(|v| v.split(['.', '-']).next()?.parse().ok())
}

pub fn setup() -> Result<()> {
    let toolchain = ebpf_toolchain()?;
    if !is_root() || !debian_like() {
        let missing = if debian_like() {
            missing_from(APT_PACKAGES)
        } else {
            APT_PACKAGES.to_vec()
        };
        eprintln!(
            "xtask setup: not root on Debian/Ubuntu, so nothing is installed. Seawall needs:\n\
             - packages: {}\n\
             - the pinned nightly with rust-src: rustup toolchain install {toolchain} --profile minimal --component rust-src,clippy,rustfmt\n\
             - bpf-linker 0.13 built against LLVM {LLVM_MAJOR}:\n  \
               PATH={LLVM_PREFIX}/bin:$PATH LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-{LLVM_MAJOR}\n\
             - a running Docker daemon and the test image {TEST_IMAGE} (cargo xtask setup as root builds it)",
            missing.join(" ")
        );
        bail!("setup needs root on Debian or Ubuntu");
    }
    ensure_packages(APT_PACKAGES)?;
    // kubectl (for `kubectl kustomize` of the DaemonSet): Debian's kubernetes-client, unless a
    // kubectl from elsewhere is already there (the two packages conflict on /usr/bin/kubectl).
    if !ok(Command::new("kubectl").args(["version", "--client"])) {
        ensure_packages(&["kubernetes-client"])?;
    }
    ensure_toolchain(&toolchain)?;
    // The fallback syscall hooks are tracepoints, which aya finds in tracefs; a fresh VM may
    // not have it mounted (systemd mounts it on most hosts).
    if !std::path::Path::new("/sys/kernel/tracing/events").exists() {
        eprintln!("xtask setup: mounting tracefs on /sys/kernel/tracing");
        run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    }
    if !output(Command::new("rustup").args(["target", "list", "--installed"]))
        .contains("x86_64-unknown-linux-musl")
    {
        run(Command::new("rustup").args(["target", "add", "x86_64-unknown-linux-musl"]))?;
    }
    if !output(Command::new("bpf-linker").arg("--version")).contains("0.13") {
        eprintln!(
            "xtask setup: building bpf-linker 0.13 against LLVM {LLVM_MAJOR} (a few minutes)"
        );
        run(crate::cargo().args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--no-default-features",
            "--features",
            &format!("llvm-{LLVM_MAJOR}"),
        ]))?;
    }
    check_llvm_majors(&toolchain)?;
    ensure_docker()?;
    ensure_test_image()?;
    Ok(())
}

/// Installs the pinned nightly with the components the eBPF build and lints need.
fn ensure_toolchain(toolchain: &str) -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]));
    if ["rust-src", "clippy", "rustfmt"]
        .iter()
        .all(|c| installed.lines().any(|l| l.starts_with(c)))
    {
        return Ok(());
    }
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy,rustfmt",
    ]))
}

/// bpf-linker reads the bitcode rustc emits: the nightly's LLVM major must be bpf-linker's.
fn check_llvm_majors(toolchain: &str) -> Result<()> {
    let rustc = output(Command::new("rustup").args(["run", toolchain, "rustc", "-vV"]));
    let nightly = llvm_major_of_rustc(&rustc)
        .with_context(|| format!("`rustup run {toolchain} rustc -vV` printed no LLVM version"))?;
    let Some(linker) = llvm_major_of_bpf_linker() else {
        eprintln!("xtask setup: warning: could not tell which LLVM bpf-linker links (no libLLVM in its ldd output); assuming {LLVM_MAJOR}");
        return check_pair(toolchain, nightly, LLVM_MAJOR);
    };
    check_pair(toolchain, nightly, linker)
}

fn check_pair(toolchain: &str, nightly: u32, linker: u32) -> Result<()> {
    if nightly == linker {
        return Ok(());
    }
    bail!(
        "the kernel programs' toolchain {toolchain} has LLVM {nightly}, but bpf-linker is built against LLVM {linker}: \
         bpf-linker would fail with \"Invalid record\". Either pin a nightly whose LLVM major is {linker} in \
         agent-ebpf/rust-toolchain.toml (`rustup run nightly-YYYY-MM-DD rustc -vV` shows its LLVM), or rebuild \
         bpf-linker against LLVM {nightly} (cargo install bpf-linker --force --no-default-features --features llvm-{nightly})"
    )
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
    let mut dockerd = Command::new("setsid");
    dockerd
        .args([
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // dockerd outlives this run: it must not inherit our descriptors. Under
    // `flock /tmp/seawall-host.lock cargo xtask test` it would otherwise hold the host lock for
    // as long as it runs, and every later test would wait on it.
    // SAFETY: close_range is async-signal-safe and touches only descriptors above stderr.
    unsafe {
        dockerd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    dockerd.spawn().context("starting dockerd")?;
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
    let result = docker_import(&dir, &[], &["CMD [\"/bin/sh\"]".to_string()], TEST_IMAGE);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `tar -c` of `dir` (with `tar_args`, e.g. excludes) piped into `docker import` of
/// `reference`, with Dockerfile `changes` (`CMD […]`, `USER x`, `ENV K=V`).
pub fn docker_import(
    dir: &std::path::Path,
    tar_args: &[&str],
    changes: &[String],
    reference: &str,
) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(tar_args)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("tar")?;
    let mut import = Command::new("docker");
    import.arg("import");
    for c in changes {
        import.arg("-c").arg(c);
    }
    let mut import = import
        .args(["-", reference])
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
    if !t.success() || !i.success() {
        bail!("importing {reference} failed (tar: {t}, docker import: {i})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major_of_a_rustc() {
        let v = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major_of_rustc(v), Some(22));
        assert_eq!(llvm_major_of_rustc("rustc 1.95.0\n"), None);
    }

    #[test]
    fn a_mismatch_says_what_to_do() {
        assert!(check_pair("nightly-2026-07-01", 22, 22).is_ok());
        let e = check_pair("nightly", 23, 22).unwrap_err().to_string();
        assert!(e.contains("LLVM 23") && e.contains("LLVM 22"), "{e}");
        assert!(e.contains("agent-ebpf/rust-toolchain.toml"), "{e}");
    }

    #[test]
    fn the_pin_is_a_dated_nightly() {
        let t = ebpf_toolchain().unwrap();
        assert!(
            t.starts_with("nightly-20") && t.len() == "nightly-YYYY-MM-DD".len(),
            "{t}"
        );
    }
}
