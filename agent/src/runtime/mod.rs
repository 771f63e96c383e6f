//! Container engines feeding one runtime-agnostic container table, keyed by cgroup v2 id.

pub mod cgroup;
pub mod docker;
pub mod procs;
pub mod table;
