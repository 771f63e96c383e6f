//! Loading the kernel programs of the program table: offsets from the running kernel's BTF,
//! globals, map pins, and the global attaches.

use std::path::Path;

use aya::{
    programs::{BtfTracePoint, CgroupSkb, CgroupSock, CgroupSockAddr},
    Ebpf, EbpfLoader,
};

use seawall_btf::BtfError;

use super::{
    offsets::{kernel_btf, resolve_offsets},
    pins::{self, LinkPins, PinError},
    programs::{self, Hook},
};

/// The compiled kernel programs, embedded at build time by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seawall"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this seawall binary was built without its kernel programs (AYA_BUILD_SKIP was set): rebuild with `cargo xtask run` or `cargo build` with bpf-linker installed")]
    NoObject,
    #[error("reading kernel BTF for the programs' offsets")]
    Btf(#[from] BtfError),
    #[error("reading kernel BTF /sys/kernel/btf/vmlinux for the loader")]
    AyaBtf(#[source] aya::BtfError),
    #[error("loading the kernel programs (are you root, with CAP_BPF and CAP_PERFMON?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} is missing from the object: agent and kernel programs are from different builds")]
    Missing(&'static str),
    #[error(
        "program {0} is in the program table with a hook that cannot attach at a container parent"
    )]
    Scope(&'static str),
    #[error(transparent)]
    Pin(#[from] PinError),
}

/// Options that shape the load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host_events: bool,
    pub ringbuf_bytes: u32,
    /// bpffs directory of the shared maps (adopted when an earlier agent pinned them).
    pub bpffs: std::path::PathBuf,
}

/// The loaded object and the kernel BTF aya parsed for it, kept for the LSM backend's load.
pub struct Loaded {
    /// The programs and maps.
    pub ebpf: Ebpf,
    /// aya's parse of `/sys/kernel/btf/vmlinux`, shared by relocation, tp_btf and LSM loads.
    pub btf: aya::Btf,
}

/// Loads the object and attaches the table's global tp_btf programs; the container-parent
/// programs are loaded here and attached once per container parent by the kernel owner.
/// With `pins`, the tracepoint links are pinned there (they outlive the agent).
pub fn load(opts: &LoadOptions, mut pins: Option<&mut LinkPins>) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let offsets = resolve_offsets(&kernel_btf()?)?;
    let host: u32 = opts.host_events.into();
    pins::ensure_dir(&opts.bpffs)?;
    let kbtf = aya::Btf::from_sys_fs().map_err(LoadError::AyaBtf)?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&kbtf))
        .default_map_pin_directory(&opts.bpffs)
        .override_global("OFFSETS", &offsets, true)
        .override_global("HOST_EVENTS", &host, true)
        .map_max_entries(agent_common::MAP_EVENTS, opts.ringbuf_bytes)
        .load(OBJECT)?;
    for (program, tracepoint) in programs::tracepoints() {
        let name = program.name;
        let err = |source| LoadError::Program { name, source };
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(err)?;
        prog.load(tracepoint, &kbtf).map_err(err)?;
        let id = prog.attach().map_err(err)?;
        if let Some(pins) = pins.as_deref_mut() {
            pins.pin(name, prog.take_link(id).map_err(err)?.into())?;
        }
    }
    for program in programs::at_container_parent() {
        let name = program.name;
        let err = |source| LoadError::Program { name, source };
        let prog = ebpf.program_mut(name).ok_or(LoadError::Missing(name))?;
        match program.hook {
            Hook::CgroupSockAddr(_) => <&mut CgroupSockAddr>::try_from(prog)
                .map_err(err)?
                .load()
                .map_err(err)?,
            Hook::CgroupSockCreate => <&mut CgroupSock>::try_from(prog)
                .map_err(err)?
                .load()
                .map_err(err)?,
            Hook::CgroupSkbIngress => <&mut CgroupSkb>::try_from(prog)
                .map_err(err)?
                .load()
                .map_err(err)?,
            Hook::TpBtf(_) | Hook::Lsm(_) => return Err(LoadError::Scope(name)),
        }
    }
    Ok(Loaded { ebpf, btf: kbtf })
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
