//! Seawall agent: loader, container runtime client, profile compiler, event pipeline and sinks.
//!
//! The binary (`main.rs`) is a thin CLI over these modules.

pub mod btf;
pub mod metrics;
pub mod notify;
pub mod profile;
pub mod delivery;
