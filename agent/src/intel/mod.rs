//! Threat intelligence and image assurance: the operator's feeds and approved images, put in
//! force on this node. Pure state and decisions; the daemon wires them to the kernel owner
//! (`kernel/intel.rs`), the fanotify sensor (`fanotify/intel.rs`) and the event builder.
//!
//! - [`feeds`]: the intel directory, reloaded on change; the previous indicators stay when a
//!   reload fails.
//! - [`exec`]: listed hashes at exec — what is in force per container, shared with the
//!   fanotify thread.
//! - [`exec_hash`]: the SHA-256 of executed files, once per file version.
//! - [`assurance`]: the verdict on a new container's image, reported once.

pub mod assurance;
pub mod exec;
pub mod exec_hash;
pub mod feeds;

use seawall_profile::{Mode, Profile};

/// A profile's intel mode: its own `[intel] mode`, else the agent's (`None` without an intel
/// directory: nothing to match against, so off).
pub fn profile_mode(profile: &Profile, agent: Option<Mode>) -> Mode {
    match (profile.intel, agent) {
        // Feeds are the operator's: without a directory a profile has nothing to turn on.
        (_, None) => Mode::Off,
        (Some(own), Some(_)) => own,
        (None, Some(agent)) => agent,
    }
}
