//! Kernel and fanotify records, plus what the tables know, become the stable JSON `Event`
//! (one builder), which the sinks write, publish and forward.

pub mod clock;
pub mod event;
pub mod file_event;
pub mod flags;
pub mod intel_event;
pub mod sinks;
