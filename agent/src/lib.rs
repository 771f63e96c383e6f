//! Seawall agent: loader, container runtime client, profile compiler, event pipeline and sinks.
//!
//! The binary (`main.rs`) is a thin CLI over these modules.

pub mod api;
pub mod btf;
pub mod cgroupfs;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod decode;
pub mod delivery;
pub mod docker;
pub mod enrich;
pub mod fileguard;
pub mod kernel;
pub mod loader;
pub mod lsm;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod pins;
pub mod policy;
pub mod proctable;
pub mod profile;
pub mod status;
