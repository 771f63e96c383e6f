use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// Builds the kernel programs (agent-ebpf) for the BPF target and leaves the object in OUT_DIR,
/// where `include_bytes_aligned!` embeds it. `AYA_BUILD_SKIP=1` skips this so that `cargo check`
/// and `clippy` work without bpf-linker (the embedded object is then empty and the agent refuses
/// to start).
fn main() -> anyhow::Result<()> {
    let metadata = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cargo metadata")?;
    let text = String::from_utf8(metadata.stdout).context("cargo metadata output")?;
    // Find agent-ebpf's directory without pulling a JSON parser into the build script.
    let marker = "\"manifest_path\":\"";
    let manifest = text
        .split(marker)
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|p| p.ends_with("agent-ebpf/Cargo.toml"))
        .ok_or_else(|| anyhow!("agent-ebpf package not found in the workspace"))?;
    let root_dir = manifest.trim_end_matches("/Cargo.toml").to_string();
    let out_dir = std::env::var("OUT_DIR")?;
    let object = std::path::Path::new(&out_dir).join("seawall");
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        && !object.exists()
    {
        std::fs::write(&object, [])?;
    }
    let toolchain_file = std::path::Path::new(&root_dir).join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    // aya-build watches agent-ebpf only; the kernel programs also compile agent-common's code
    // (the ABI and rules shared with userspace), so a change there must rebuild them too.
    println!("cargo:rerun-if-changed={root_dir}/../agent-common");
    let channel = pinned_channel(&toolchain_file)?;
    aya_build::build_ebpf(
        [Package {
            name: "agent-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&channel),
    )
}

/// The dated nightly pinned in `agent-ebpf/rust-toolchain.toml` (`channel = "nightly-…"`): the
/// undated nightly moves to LLVM majors that bpf-linker cannot read.
fn pinned_channel(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading the kernel programs' toolchain pin {}",
            file.display()
        )
    })?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| !v.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "{} has no `channel = \"nightly-YYYY-MM-DD\"` line",
                file.display()
            )
        })
}
