//! Running the tree: starting it confined, PID 1 duties, and work done inside its domain.

pub mod domain;
pub mod launch;
pub mod pid1;
