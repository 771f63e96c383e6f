//! The BPF LSM backend: loads and attaches the table's `lsm/*` programs. Where it succeeds,
//! exec (drift, lists, `docker exec`), file and egress controls fail the syscall with `EPERM` in
//! the kernel; where it fails (no `bpf` in the LSM list, or the kernel refuses the programs,
//! e.g. EPERM when ftrace is closed) the caller keeps the fallbacks and reports why.

use aya::{
    programs::{Lsm, ProgramError},
    Btf, Ebpf,
};

use super::programs;

/// Why the BPF LSM backend is not in use.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("BPF LSM: cannot read /sys/kernel/security/lsm; is securityfs mounted?")]
    LsmList(#[source] std::io::Error),
    #[error("BPF LSM is not enabled (active LSMs: {active}); boot with lsm=...,bpf")]
    NotEnabled { active: String },
    #[error("BPF LSM: program {0} missing from the object (agent and kernel programs are from different builds)")]
    Missing(&'static str),
    #[error("BPF LSM: program {0} is not an LSM program")]
    NotLsm(&'static str, #[source] ProgramError),
    #[error("BPF LSM: loading {name} (hook {hook})")]
    Load {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("BPF LSM: attaching {name} (hook {hook})")]
    Attach {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// Loads and attaches every LSM program of the table. The links live as long as `ebpf`.
///
/// On error, programs attached before the failing one stay attached until `ebpf` is dropped, so
/// a caller that falls back must detach them ([`unload_lsm`]) before relying on the fallbacks.
pub fn load_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), LsmError> {
    lsm_list_has_bpf()?;
    for (program, hook) in programs::lsm_hooks() {
        let name = program.name;
        let prog: &mut Lsm = ebpf
            .program_mut(name)
            .ok_or(LsmError::Missing(name))?
            .try_into()
            .map_err(|e| LsmError::NotLsm(name, e))?;
        prog.load(hook, btf)
            .map_err(|source| LsmError::Load { name, hook, source })?;
        prog.attach()
            .map_err(|source| LsmError::Attach { name, hook, source })?;
    }
    Ok(())
}

/// Unloads (and so detaches) the LSM programs, e.g. after a partial [`load_lsm`] failure.
pub fn unload_lsm(ebpf: &mut Ebpf) {
    for (program, _) in programs::lsm_hooks() {
        if let Some(prog) = ebpf.program_mut(program.name) {
            if let Ok(prog) = <&mut Lsm>::try_from(prog) {
                let _ = prog.unload();
            }
        }
    }
}

/// `bpf` must be in the active LSM list, or the programs attach and never run.
fn lsm_list_has_bpf() -> Result<(), LsmError> {
    let list = std::fs::read_to_string("/sys/kernel/security/lsm").map_err(LsmError::LsmList)?;
    if list.split(',').any(|l| l.trim() == "bpf") {
        Ok(())
    } else {
        Err(LsmError::NotEnabled {
            active: list.trim().to_string(),
        })
    }
}
