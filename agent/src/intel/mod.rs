//! Threat intelligence and image assurance: the operator's feeds and approved images, put in
//! force on this node.
//!
//! - [`feeds`]: the intel directory, reloaded on change; the previous indicators stay when a
//!   reload fails.
//! - [`kernel`]: the LPM tries of listed networks, the per-container intel mode and the
//!   assurance refusals, as the kernel owner writes them.
//! - [`exec_hash`]: the SHA-256 of executed files, once per file version, for the exec
//!   permission check of listed hashes.
//! - [`assurance`]: the verdict on a new container's image, reported once.

pub mod assurance;
pub mod exec_hash;
pub mod feeds;
pub mod kernel;
