//! The fallback's opt-in syscall hooks (`fallback_syscall_hooks` / `--fallback-syscall-hooks`):
//! loads and attaches the table's `tracepoint/syscalls/*` programs on a host without BPF LSM,
//! so executable mappings of dropped code, `ptrace`, `process_vm_writev`, write opens of
//! `/proc/<pid>/mem` and `AF_PACKET` sockets in containers are killed (enforce) or reported
//! (audit) instead of unseen.
//!
//! Off by default, and never loaded where BPF LSM is the backend: while any syscall tracepoint
//! is attached, every syscall of every task on the host takes the kernel's slow path (10–19%
//! slower on an open/close loop, DESIGN.md "What each hook costs").

use aya::{
    programs::{ProgramError, TracePoint},
    Ebpf,
};
use serde::{Deserialize, Serialize};

use super::programs;

/// The cost of the opt-in, as `--help`, status and the README say it.
pub const COST: &str = "every syscall of every task on the host takes the slow path while they are attached: 10-19% slower on an open/close loop";

/// The opt-in's config key and flag, as status and profile check name them.
pub const OPT_IN: &str = "fallback_syscall_hooks = true (--fallback-syscall-hooks)";

/// What became of the opt-in on this agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallHooks {
    /// Not asked for (the default).
    #[default]
    Off,
    /// Asked for and attached.
    Attached,
    /// Asked for, but BPF LSM is the backend: its hooks cover these doors, so none is loaded.
    NotWithLsm,
    /// Asked for, and the kernel refused them (why).
    Failed(String),
}

impl SyscallHooks {
    pub fn attached(&self) -> bool {
        *self == SyscallHooks::Attached
    }
}

/// Why the opt-in syscall hooks could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum SyscallHookError {
    #[error("syscall hook {0} is missing from the object: agent and kernel programs are from different builds")]
    Missing(&'static str),
    #[error("syscall hook {name} is not a tracepoint program")]
    NotTracePoint {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("loading syscall hook {name}")]
    Load {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching syscall hook {name} (tracepoint syscalls/{name})")]
    Attach {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// Loads and attaches every syscall hook of the table; the links live as long as `ebpf`. On
/// error the caller detaches those attached before the failing one ([`unload`]).
pub fn load(ebpf: &mut Ebpf) -> Result<(), SyscallHookError> {
    for (program, tracepoint) in programs::syscall_hooks() {
        let name = program.name;
        let prog: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or(SyscallHookError::Missing(name))?
            .try_into()
            .map_err(|source| SyscallHookError::NotTracePoint { name, source })?;
        prog.load()
            .map_err(|source| SyscallHookError::Load { name, source })?;
        prog.attach("syscalls", tracepoint)
            .map_err(|source| SyscallHookError::Attach { name, source })?;
    }
    Ok(())
}

/// Unloads (and so detaches) the syscall hooks, e.g. after a partial [`load`].
pub fn unload(ebpf: &mut Ebpf) {
    for (program, _) in programs::syscall_hooks() {
        if let Some(prog) = ebpf.program_mut(program.name) {
            if let Ok(prog) = <&mut TracePoint>::try_from(prog) {
                let _ = prog.unload();
            }
        }
    }
}
