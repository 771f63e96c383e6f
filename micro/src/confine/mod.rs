//! What the tree runs under: a Landlock ruleset and a seccomp filter with a listener.

pub mod bpf;
pub mod ruleset;
pub mod syscalls;
