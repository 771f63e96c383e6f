//! Compiles the minimal containerd and CRI protos in `proto/` with protox (pure Rust, no
//! `protoc`) and generates tonic clients into OUT_DIR, as `proto/build.rs` does for seawall.v1.

const PROTOS: &[&str] = &[
    "containerd/containers.proto",
    "containerd/tasks.proto",
    "containerd/events.proto",
    "containerd/namespaces.proto",
    "containerd/images.proto",
    "cri/runtime.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
