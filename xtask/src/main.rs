//! `cargo xtask setup | run | test | vm-test | bench`: everything a newcomer or CI runs.

mod bench;
mod setup;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

const HELP: &str = "\
cargo xtask <command>

  setup      install what is missing (root, Debian/Ubuntu): the kernel programs' nightly pinned in
             agent-ebpf/rust-toolchain.toml (with rust-src), LLVM 22 and bpf-linker 0.13 (checks
             that their LLVM majors match), docker.io, containerd, busybox-static, qemu; start
             dockerd when none answers; build the test image seawall-test/busybox:latest.
             Safe to run every time.
  run [ARGS] build, then run `seawall agent` as root with the repo's profiles/ (ARGS are passed on)
  test       every test: unit tests, collector tests, fuzz targets (30 s each), privileged
             integration tests against real containers (the agent's, and seawall-micro's with no
             agent; the Redis image is built once by debootstrap), and the BPF LSM tests in a
             qemu VM (vm-test)
  vm-test    only the BPF LSM tests, in a qemu VM with Debian's kernel
  bench-micro [--rounds N] [--profile FILE]
             exec, open and connect loops in a container with and without seawall-micro (needs
             the image seawall-test/bench from `cargo xtask bench`; the profile defaults to the
             bench's, images left out); prints a markdown table
";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// The environment every build needs: bpf-linker must find LLVM 22.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    c.env(
        "PATH",
        format!("/usr/lib/llvm-22/bin:{home}/.cargo/bin:{path}"),
    );
    c.env("LLVM_PREFIX", "/usr/lib/llvm-22");
    c
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        print!("{HELP}");
        return Ok(());
    };
    match cmd.as_str() {
        "setup" => setup::setup(),
        "run" => {
            setup::setup()?;
            run(cargo().args(["build", "-p", "seawall", "--bin", "seawall"]))?;
            let bin = root().join("target/debug/seawall");
            let mut c = Command::new(bin);
            c.arg("agent")
                .arg("--profiles")
                .arg(root().join("profiles"));
            c.args(&args[1..]);
            run(&mut c)
        }
        "test" => test(),
        "bench" => bench::bench(&args[1..]),
        "bench-micro" => bench_micro_command(&args[1..]),
        "vm-test" => {
            setup::setup()?;
            vm::vm_test()
        }
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}\n\n{HELP}"),
    }
}

/// A C compiler for musl (`ring`, in the TLS stack, builds C): musl-gcc when installed,
/// else the host gcc, which works for ring's freestanding code.
fn musl_cc() -> &'static str {
    for cc in ["x86_64-linux-musl-gcc", "musl-gcc"] {
        if Command::new(cc).arg("--version").output().is_ok() {
            return cc;
        }
    }
    "gcc"
}

/// seawall-micro and micro-helper, the attacker of its container tests (tests/micro.rs), both
/// static so they run in any image. The helper keeps its own target dir: it is not a workspace
/// member.
pub fn micro_binaries() -> Result<()> {
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "seawall-micro",
        ])
        .env("CC_x86_64_unknown_linux_musl", musl_cc()))?;
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "--manifest-path",
        ])
        .arg(root().join("tests/micro-helper/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root().join("target/micro-helper")))
}

fn bench_micro_command(args: &[String]) -> Result<()> {
    let usage = "cargo xtask bench-micro [--rounds N] [--profile FILE]";
    let (mut rounds, mut profile) = (5, bench::micro::DEFAULT_PROFILE.to_string());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| usage.to_string())?;
        match flag.as_str() {
            "--rounds" => rounds = value.parse().context("--rounds N")?,
            "--profile" => {
                profile =
                    std::fs::read_to_string(value).with_context(|| format!("reading {value}"))?
            }
            _ => bail!("{usage}"),
        }
    }
    micro_binaries()?;
    let image = "seawall-test/bench:latest";
    let present = Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        bail!("no {image}: `cargo xtask bench` builds it");
    }
    let micro_bin = root().join("target/x86_64-unknown-linux-musl/release/seawall-micro");
    let rows = bench::micro::measure(&bench::micro::Setup {
        micro_bin: &micro_bin,
        image,
        swload: "/bench/swload",
        profile: &profile,
        rounds,
        open_n: 200_000,
        exec_n: 1_000,
        tcp_n: 5_000,
    })?;
    print!("{}", bench::micro::markdown(&rows));
    Ok(())
}

/// cargo-fuzz targets in `fuzz/` (its own workspace). Adding a target: its `[[bin]]` in
/// `fuzz/Cargo.toml` and one line here.
const FUZZ_TARGETS: &[&str] = &[
    "spool_reader",
    "store_reader",
    "collector_request",
    "profile_parser",
    "ring_decoder",
];
/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SECONDS: u32 = 30;

/// Runs each fuzz target for [`FUZZ_SECONDS`] with the pinned nightly (installing cargo-fuzz
/// when it is missing); a crash fails the step and leaves its input in `fuzz/artifacts/`.
///
/// Built `--dev` (unoptimised, with debug assertions and overflow checks, still under ASan and
/// coverage): the release build cargo-fuzz makes by default took 15.6 of CI's 90 minutes on two
/// cores (the targets pull in the whole agent and collector), `--dev` about 3. The targets run
/// slower (the ring decoder about 24,000 inputs a second, the profile parser about 1,200), which
/// a bounded smoke run in CI can afford; a long campaign should use `cargo fuzz run` (release).
fn fuzz() -> Result<()> {
    let toolchain = format!("+{}", setup::ebpf_toolchain()?);
    let have = Command::new("cargo")
        .args([&toolchain, "fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in FUZZ_TARGETS {
        run(Command::new("cargo")
            .current_dir(root())
            .args([&toolchain, "fuzz", "run", "--dev", target, "--"])
            // The agent's build script would build the kernel object with the fuzz flags.
            .env("AYA_BUILD_SKIP", "1")
            .arg(format!("-max_total_time={FUZZ_SECONDS}")))?;
    }
    Ok(())
}

fn test() -> Result<()> {
    setup::setup()?;
    run(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "seawall-integration",
        "--exclude",
        "agent-ebpf",
    ]))?;
    fuzz()?;
    // The static binary the deploy test puts in the FROM-scratch agent image.
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "seawall",
            "--bin",
            "seawall",
        ])
        .env("CC_x86_64_unknown_linux_musl", musl_cc()))?;
    micro_binaries()?;
    // tests/learn.rs learns a real Redis from the bench's image.
    bench::server_images()?;
    // The binaries the integration tests drive: the agent with the failpoints tests/faults.rs
    // arms (inert unless SEAWALL_FAILPOINTS is set), and the collector. Built here, after every
    // other cargo run: `cargo test --workspace` builds target/debug/seawall for agent/tests
    // without the feature and would overwrite it.
    run(cargo().args([
        "build",
        "-p",
        "seawall",
        "--bin",
        "seawall",
        "--features",
        "seawall/failpoints",
        "-p",
        "seawall-collector",
    ]))?;
    // Privileged tests against real containers: one agent at a time. Every suite runs even
    // when an earlier one fails, so one run names every failure. On a shared development
    // host, SEAWALL_HOST_LOCK=/tmp/seawall-host.lock holds that lock for this part only
    // (the builds above do not need it).
    let mut privileged = cargo();
    if let Some(lock) = std::env::var_os("SEAWALL_HOST_LOCK") {
        let mut flock = Command::new("flock");
        flock.arg(lock).arg(privileged.get_program());
        for (k, v) in privileged.get_envs() {
            if let Some(v) = v {
                flock.env(k, v);
            }
        }
        privileged = flock;
    }
    run(privileged
        .args([
            "test",
            "-p",
            "seawall-integration",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ])
        .env("SEAWALL_BIN", root().join("target/debug/seawall")))?;
    vm::vm_test()
}
