//! Compiles `seawall/v1/seawall.proto` with protox (a pure-Rust protobuf compiler, so no `protoc`
//! is needed) and generates the tonic client and server into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "seawall/v1/seawall.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
