use which::which;

/// Rebuild the kernel programs when bpf-linker changes (a new linker can emit different BTF).
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
