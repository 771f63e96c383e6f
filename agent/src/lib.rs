//! Seawall agent: loader, container runtime client, profile compiler, event pipeline and sinks.
//!
//! The binary (`main.rs`) is a thin CLI over these modules.

pub mod api;
pub mod cgroupfs;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod decode;
pub mod docker;
pub mod enrich;
pub mod fileguard;
pub mod intel;
pub mod kernel;
pub mod loader;
pub mod lsm;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod pins;
pub mod policy;
pub mod proctable;
pub mod status;

// The profile language, the BTF reader and the collector client are crates of their own (shared
// with the collector's tests and seawall-micro); re-exported under their old paths.
pub use seawall_btf as btf;
pub use seawall_delivery as delivery;
pub use seawall_profile as profile;
