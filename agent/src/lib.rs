//! Seawall agent. The wings below follow the two data flows, in order:
//! kernel events → `kernel` → `output` → sinks (and `learn`), and container engines → `runtime` → `policy` →
//! `kernel` (map writes); `fanotify` is the userspace file sensor beside the kernel's; `ops`
//! answers operators; `daemon` wires it all into one loop; `cli` is the command line.

/// The `seawall` command line: clap definitions and the subcommands.
pub mod cli;
/// Wiring and the one event loop (`daemon::run`), with its configuration.
pub mod daemon;
/// Named places a test build fails on purpose (`--features failpoints`).
pub mod failpoint;
/// The fanotify file sensor: answers permission events and reports plain file records.
pub mod fanotify;
/// Threat intelligence (feeds of listed hashes and addresses) and image assurance, on this node.
pub mod intel;
/// The only code that touches aya: the program table, loading, BTF offsets, the kernel owner
/// (every map write), the ring-buffer reader, record decoding, bpffs pins and the LSM backend.
pub mod kernel;
/// Learning per image for `seawall profile learn`, the state directory, and the
/// `enforce_after` promotion clock.
pub mod learn;
/// What operators ask the running agent: local API, status, metrics, systemd notify, health.
pub mod ops;
/// The one event builder (records + tables → `Event`) and the sinks events go to.
pub mod output;
/// Profiles → kernel map entries (the compiler), and the verdicts userspace takes itself.
pub mod policy;
/// Container engines → the runtime-agnostic container table, cgroupfs and the process table.
pub mod runtime;
