//! Fault-injection tests of the agent (issue 12, items 8–13): each injects the fault for real
//! (kill -9 at a chosen point, a failpoint of a `--features failpoints` build, SIGSTOP of the
//! agent, a flood from a test container, a test-only engine socket that is cut and restored,
//! tampered pins) and checks what a user would: no process stays stopped, no open hangs, every
//! loss is reported with a count, a failed start leaves nothing behind.
//!
//! Privileged and host-wide: run under the host lock, one test at a time:
//! `flock /tmp/seawall-host.lock cargo test -p seawall-integration --test faults -- --test-threads=1`

#[path = "faults/bpf.rs"]
mod bpf;
#[path = "faults/files.rs"]
mod files;
#[path = "faults/flood.rs"]
mod flood;
#[path = "faults/held.rs"]
mod held;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/records.rs"]
mod records;
#[path = "faults/support.rs"]
mod support;
#[path = "faults/tasks.rs"]
mod tasks;
#[path = "faults/upgrade.rs"]
mod upgrade;
