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
    #[error("BPF LSM: map {} missing from the object", agent_common::MAP_BACKEND)]
    MissingBackendMap,
    #[error(
        "BPF LSM: telling the kernel programs the backend (map {})",
        agent_common::MAP_BACKEND
    )]
    Backend(#[source] aya::maps::MapError),
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
    set_backend(ebpf, agent_common::BACKEND_LSM)
}

/// Tells the kernel programs which backend is live (`MAP_BACKEND`): with BPF LSM attached, the
/// fallback-only exec heuristics (the loader run as a program, `LD_*` doors) stand down, since
/// `mmap_file` and `bprm_check_security` decide those on the file itself.
pub fn set_backend(ebpf: &mut Ebpf, bits: u32) -> Result<(), LsmError> {
    let map = ebpf
        .map_mut(agent_common::MAP_BACKEND)
        .ok_or(LsmError::MissingBackendMap)?;
    let mut backend: aya::maps::Array<&mut aya::maps::MapData, u32> =
        aya::maps::Array::try_from(map).map_err(LsmError::Backend)?;
    backend.set(0, bits, 0).map_err(LsmError::Backend)
}

/// Unloads (and so detaches) the LSM programs, e.g. after a partial [`load_lsm`] failure.
pub fn unload_lsm(ebpf: &mut Ebpf) {
    // The fallback heuristics must be back on before the LSM programs go.
    let _ = set_backend(ebpf, 0);
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
