//! Everything that touches aya: programs, maps, the ring buffer, pins. No other wing imports aya.

pub mod backends;
pub mod coverage;
pub mod decode;
pub mod intel;
pub mod layout;
pub mod loader;
pub mod lsm;
pub mod maps;
pub mod offsets;
pub mod owner;
pub mod pins;
pub mod programs;
pub mod recovery;
pub mod ring;
pub mod syscall_hooks;
