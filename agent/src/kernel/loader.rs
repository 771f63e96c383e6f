//! Loading the kernel programs of the program table: offsets from the running kernel's BTF,
//! globals, map pins, and the global attaches.

use std::path::Path;

use aya::{
    programs::{BtfTracePoint, CgroupSkb, CgroupSock, CgroupSockAddr},
    Ebpf, EbpfLoader,
};

use seawall_btf::BtfError;

use super::{
    layout::{self, Found, Layout, LayoutError},
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
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(
        "map {0} is missing from the object: agent and kernel programs are from different builds"
    )]
    MissingMap(&'static str),
    #[error("stamping the pinned maps' layout")]
    Stamp(#[source] aya::maps::MapError),
}

/// Options that shape the load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host_events: bool,
    pub ringbuf_bytes: u32,
    /// bpffs directory of the shared maps (adopted when an earlier agent pinned them).
    pub bpffs: std::path::PathBuf,
    /// Allowed records a container may write per second (0: no budget).
    pub event_budget: u32,
}

/// What the load did with the pins it found, so a failed start can undo it.
#[derive(Debug)]
pub enum PinnedMaps {
    /// There were none: the load pinned fresh maps.
    Fresh,
    /// The earlier agent's maps, of this layout, were adopted.
    Adopted,
    /// Maps of another layout were moved to this directory; fresh maps were pinned.
    Migrated {
        retired: std::path::PathBuf,
        version: Option<u32>,
    },
}

/// The loaded object and the kernel BTF aya parsed for it, kept for the LSM backend's load.
pub struct Loaded {
    /// The programs and maps.
    pub ebpf: Ebpf,
    /// aya's parse of `/sys/kernel/btf/vmlinux`, shared by relocation, tp_btf and LSM loads.
    pub btf: aya::Btf,
    /// What became of the pins found.
    pub maps: PinnedMaps,
}

/// Loads the object and attaches the table's global tp_btf programs; the container-parent
/// programs are loaded here and attached once per container parent by the kernel owner.
/// With `pins`, the tracepoint links are staged there (pinned once the start succeeded).
/// Pinned maps are adopted only when they have this agent's layout (`layout`); a load that
/// fails leaves the pins as it found them.
pub fn load(opts: &LoadOptions, pins: Option<&mut LinkPins>) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let offsets = resolve_offsets(&kernel_btf()?)?;
    pins::ensure_dir(&opts.bpffs)?;
    // Never let aya reuse pinned maps of another layout (it would, whatever their sizes).
    let expected = Layout::of_object(OBJECT, opts.ringbuf_bytes)?;
    let maps = match layout::inspect(&opts.bpffs, &expected)? {
        Found::Nothing => PinnedMaps::Fresh,
        Found::Same => PinnedMaps::Adopted,
        Found::Other { version } => {
            let retired = layout::retire(&opts.bpffs)?;
            tracing::warn!(dir = %opts.bpffs.display(), found = ?version, ours = agent_common::PIN_LAYOUT_VERSION, "pinned maps of another layout: migrating (fresh maps; the earlier programs enforce on theirs until ours are attached; policy is written again, running containers re-seeded; records the earlier programs wrote and nobody read are not decoded)");
            PinnedMaps::Migrated { retired, version }
        }
    };
    match load_and_attach(opts, &offsets, &expected, pins) {
        Ok((ebpf, btf)) => Ok(Loaded { ebpf, btf, maps }),
        Err(e) => {
            undo(&opts.bpffs, &maps);
            Err(e)
        }
    }
}

fn load_and_attach(
    opts: &LoadOptions,
    offsets: &agent_common::KernelOffsets,
    expected: &Layout,
    mut pins: Option<&mut LinkPins>,
) -> Result<(Ebpf, aya::Btf), LoadError> {
    let host: u32 = opts.host_events.into();
    let kbtf = aya::Btf::from_sys_fs().map_err(LoadError::AyaBtf)?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&kbtf))
        .default_map_pin_directory(&opts.bpffs)
        .override_global("OFFSETS", offsets, true)
        .override_global("HOST_EVENTS", &host, true)
        .override_global("EVENT_BUDGET", &opts.event_budget, true)
        .map_max_entries(agent_common::MAP_EVENTS, opts.ringbuf_bytes)
        .load(OBJECT)?;
    stamp(&mut ebpf, expected)?;
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
            Hook::CgroupSkbIngress | Hook::CgroupSkbEgress => <&mut CgroupSkb>::try_from(prog)
                .map_err(err)?
                .load()
                .map_err(err)?,
            Hook::TpBtf(_) | Hook::Lsm(_) | Hook::Syscall(_) => return Err(LoadError::Scope(name)),
        }
    }
    Ok((ebpf, kbtf))
}

/// Writes this agent's layout beside the pinned maps.
fn stamp(ebpf: &mut Ebpf, layout: &Layout) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(agent_common::MAP_LAYOUT)
        .ok_or(LoadError::MissingMap(agent_common::MAP_LAYOUT))?;
    let mut array: aya::maps::Array<_, agent_common::LayoutStamp> =
        aya::maps::Array::try_from(map).map_err(LoadError::Stamp)?;
    array.set(0, layout.stamp(), 0).map_err(LoadError::Stamp)
}

/// Leaves the pins as they were before a start that failed: fresh pins removed, migrated
/// ones moved back. Adopted pins are left alone.
pub fn undo(dir: &Path, maps: &PinnedMaps) {
    match maps {
        PinnedMaps::Fresh => layout::remove_fresh(dir),
        PinnedMaps::Adopted => {}
        PinnedMaps::Migrated { retired, .. } => layout::restore(dir, retired),
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
