//! The BPF LSM backend: loads and attaches the `lsm/*` programs of the kernel object. Where it
//! succeeds, exec (drift, lists, `docker exec`), file and egress controls fail the syscall with
//! `EPERM` in the kernel; where it fails (no `bpf` in the LSM list, or the kernel refuses the
//! programs, e.g. EPERM when ftrace is closed) the caller keeps the fallbacks and reports why.

use aya::{programs::Lsm, Btf, Ebpf};

/// Program name (the function in `agent-ebpf/src/lsm.rs`) and the LSM hook it attaches to.
pub const LSM_PROGRAMS: &[(&str, &str)] = &[
    ("bprm_check_security", "bprm_check_security"),
    ("mmap_file", "mmap_file"),
    ("file_mprotect", "file_mprotect"),
    ("ptrace_access_check", "ptrace_access_check"),
    ("ptrace_traceme", "ptrace_traceme"),
    ("file_open", "file_open"),
    ("path_unlink", "path_unlink"),
    ("path_rmdir", "path_rmdir"),
    ("path_mkdir", "path_mkdir"),
    ("path_mknod", "path_mknod"),
    ("path_symlink", "path_symlink"),
    ("path_truncate", "path_truncate"),
    ("path_chmod", "path_chmod"),
    ("path_chown", "path_chown"),
    ("path_link", "path_link"),
    ("path_rename", "path_rename"),
    ("socket_create", "socket_create"),
    ("socket_connect", "socket_connect"),
    ("socket_sendmsg", "socket_sendmsg"),
    ("socket_listen", "socket_listen"),
];

/// Loads and attaches every LSM program of `ebpf`. The links live as long as `ebpf`.
///
/// On error nothing is left attached that the error does not name: programs attached before the
/// failing one stay attached until `ebpf` is dropped, so a caller that falls back must drop or
/// detach (`unload_lsm`) before relying on the fallbacks alone.
pub fn load_lsm(ebpf: &mut Ebpf) -> Result<(), String> {
    lsm_list_has_bpf()?;
    let btf = Btf::from_sys_fs()
        .map_err(|e| format!("BPF LSM: cannot read kernel BTF /sys/kernel/btf/vmlinux: {e}"))?;
    for &(name, hook) in LSM_PROGRAMS {
        let prog: &mut Lsm = ebpf
            .program_mut(name)
            .ok_or_else(|| {
                format!("BPF LSM: program {name} missing from the object (agent and kernel programs are from different builds)")
            })?
            .try_into()
            .map_err(|e| format!("BPF LSM: program {name} is not an LSM program: {e}"))?;
        prog.load(hook, &btf)
            .map_err(|e| format!("BPF LSM: loading {name} (hook {hook}): {}", chain(&e)))?;
        prog.attach()
            .map_err(|e| format!("BPF LSM: attaching {name} (hook {hook}): {}", chain(&e)))?;
    }
    set_backend(ebpf, agent_common::BACKEND_LSM)
}

/// Tells the kernel programs which backend is live (`MAP_BACKEND`): with BPF LSM attached,
/// the fallback-only exec heuristics stand down.
pub fn set_backend(ebpf: &mut Ebpf, bits: u32) -> Result<(), String> {
    let map = ebpf
        .map_mut(agent_common::MAP_BACKEND)
        .ok_or_else(|| format!("map {} missing from the object", agent_common::MAP_BACKEND))?;
    let mut backend: aya::maps::Array<&mut aya::maps::MapData, u32> =
        aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    backend.set(0, bits, 0).map_err(|e| e.to_string())
}

/// Unloads (and so detaches) the LSM programs, e.g. after a partial [`load_lsm`] failure.
pub fn unload_lsm(ebpf: &mut Ebpf) {
    let _ = set_backend(ebpf, 0);
    for &(name, _) in LSM_PROGRAMS {
        if let Some(prog) = ebpf.program_mut(name) {
            if let Ok(prog) = <&mut Lsm>::try_from(prog) {
                let _ = prog.unload();
            }
        }
    }
}

/// `bpf` must be in the active LSM list, or the programs attach and never run.
fn lsm_list_has_bpf() -> Result<(), String> {
    let list = std::fs::read_to_string("/sys/kernel/security/lsm").map_err(|e| {
        format!("BPF LSM: cannot read /sys/kernel/security/lsm ({e}); is securityfs mounted?")
    })?;
    if list.split(',').any(|l| l.trim() == "bpf") {
        Ok(())
    } else {
        Err(format!(
            "BPF LSM is not enabled (active LSMs: {}); boot with lsm=...,bpf",
            list.trim()
        ))
    }
}

/// An error with its sources, so "EPERM" from the kernel reaches the message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
