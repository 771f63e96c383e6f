//! Loading the kernel programs: offsets from the running kernel's BTF, globals, attach, and the
//! capability probe that decides (and reports) which backend each control runs on.

use std::path::Path;

use aya::{
    programs::{BtfTracePoint, CgroupSock, CgroupSockAddr},
    Ebpf, EbpfLoader,
};

use seawall_btf::BtfError;

use super::offsets::{kernel_btf, resolve_offsets};

/// The compiled kernel programs, embedded at build time by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seawall"));

/// Names of the tp_btf programs and the tracepoints they attach to.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("cgroup_mkdir", "cgroup_mkdir"),
    ("inet_sock_set_state", "inet_sock_set_state"),
];

/// cgroup sock_addr programs, attached to each container's cgroup.
pub const SOCK_ADDR_PROGRAMS: &[&str] = &[
    "connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6",
];

/// cgroup sock program refusing raw/packet sockets.
pub const SOCK_CREATE_PROGRAM: &str = "sock_create";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this seawall binary was built without its kernel programs (AYA_BUILD_SKIP was set): rebuild with `cargo xtask run` or `cargo build` with bpf-linker installed")]
    NoObject,
    #[error("reading kernel BTF: {0}")]
    Btf(#[from] BtfError),
    #[error("loading the kernel programs: {0} (are you root, with CAP_BPF and CAP_PERFMON?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} is missing from the object: agent and kernel programs are from different builds")]
    Missing(&'static str),
    #[error(transparent)]
    Pin(#[from] crate::kernel::pins::PinError),
}

/// Options that shape the load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host_events: bool,
    pub ringbuf_bytes: u32,
    /// bpffs directory of the shared maps (adopted when an earlier agent pinned them).
    pub bpffs: std::path::PathBuf,
}

/// Loads and attaches the always-on programs (exec/fork/exit/cgroup_mkdir); the network
/// programs are loaded here but attached per container by the kernel task.
/// With `pins`, the tracepoint links are pinned there (they outlive the agent).
pub fn load(
    opts: &LoadOptions,
    mut pins: Option<&mut crate::kernel::pins::LinkPins>,
) -> Result<Ebpf, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let btf = kernel_btf()?;
    let offsets = resolve_offsets(&btf)?;
    let host: u32 = opts.host_events.into();
    crate::kernel::pins::ensure_dir(&opts.bpffs)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&opts.bpffs)
        .override_global("OFFSETS", &offsets, true)
        .override_global("HOST_EVENTS", &host, true)
        .map_max_entries(agent_common::MAP_EVENTS, opts.ringbuf_bytes)
        .load(OBJECT)?;
    let kbtf = aya::Btf::from_sys_fs().map_err(|e| LoadError::Load(e.into()))?;
    for &(name, tp) in TRACEPOINTS {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })?;
        prog.load(tp, &kbtf)
            .map_err(|source| LoadError::Program { name, source })?;
        let id = prog
            .attach()
            .map_err(|source| LoadError::Program { name, source })?;
        if let Some(pins) = pins.as_deref_mut() {
            let link = prog
                .take_link(id)
                .map_err(|source| LoadError::Program { name, source })?;
            pins.pin(name, link.into())?;
        }
    }
    for &name in SOCK_ADDR_PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })?;
        prog.load()
            .map_err(|source| LoadError::Program { name, source })?;
    }
    let prog: &mut CgroupSock = ebpf
        .program_mut(SOCK_CREATE_PROGRAM)
        .ok_or(LoadError::Missing(SOCK_CREATE_PROGRAM))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: SOCK_CREATE_PROGRAM,
            source,
        })?;
    prog.load().map_err(|source| LoadError::Program {
        name: SOCK_CREATE_PROGRAM,
        source,
    })?;
    Ok(ebpf)
}

/// Which backend each control runs on, decided by probing and never pretended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Backends {
    pub exec: String,
    pub drift: String,
    pub container_exec: String,
    pub file: String,
    pub network: String,
    /// Why the preferred backend (BPF LSM) is not used, when it is not.
    pub lsm_unavailable: Option<String>,
}

/// The backends this build runs here: BPF LSM where its programs loaded (`lsm`), the fallbacks
/// otherwise, with the reason.
pub fn backends(fanotify_ok: Result<(), String>, lsm: Result<(), String>) -> Backends {
    let fallback_exec = "tp_btf sched_process_exec + bpf_send_signal(SIGKILL)";
    match lsm {
        Ok(()) => Backends {
            exec: "BPF LSM bprm_check_security (EPERM)".into(),
            drift: "BPF LSM bprm_check_security (EPERM)".into(),
            container_exec: "BPF LSM bprm_check_security (EPERM)".into(),
            file: "BPF LSM file_open (EPERM; opens only, unlink/rename not covered); fanotify for globs the kernel cannot match".into(),
            network: "cgroup sock_addr connect/sendmsg/bind + sock_create at the container parent cgroup, and BPF LSM socket_connect (EPERM)".into(),
            lsm_unavailable: None,
        },
        Err(why) => Backends {
            exec: fallback_exec.into(),
            drift: match &fanotify_ok {
                Ok(()) => format!("{fallback_exec}; scripts written in the container: fanotify exec permission on its overlay (EPERM)"),
                Err(_) => format!("{fallback_exec}; scripts written in the container not covered (no fanotify)"),
            },
            container_exec: fallback_exec.into(),
            file: match fanotify_ok {
                Ok(()) => "fanotify permission events on the container's overlay (EPERM); unlink/rename/truncate(2) not covered".into(),
                Err(e) => format!("unavailable: {e}"),
            },
            network: "cgroup sock_addr connect/sendmsg/bind + sock_create at the container parent cgroup (EPERM)".into(),
            lsm_unavailable: Some(why),
        },
    }
}

/// Whether the embedded object has programs (false in `AYA_BUILD_SKIP` builds).
pub fn has_object() -> bool {
    !OBJECT.is_empty()
}

/// A cgroup directory is safe to attach to: below the hierarchy root, never the root itself.
pub fn safe_attach_point(root: &Path, cgroup_dir: &Path) -> bool {
    cgroup_dir != root
        && cgroup_dir.starts_with(root)
        && cgroup_dir.components().count() > root.components().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_attaches_at_the_hierarchy_root() {
        let root = Path::new("/sys/fs/cgroup/unified");
        assert!(!safe_attach_point(root, root));
        assert!(!safe_attach_point(root, Path::new("/sys/fs/cgroup")));
        assert!(!safe_attach_point(root, Path::new("/tmp/x")));
        assert!(safe_attach_point(
            root,
            Path::new("/sys/fs/cgroup/unified/docker/abc")
        ));
    }
}
