//! Start-up of the kernel side: the container parents, the load (adopting an earlier agent's
//! pins), the LSM probe, the owner thread, and the agent's own cgroup exempted.

use std::path::PathBuf;

use aya::maps::{MapData, RingBuf};
use seawall_service::{health::Health, ErrorChain};

use super::{config::AgentConfig, LOOP_BOUND};
use crate::{
    kernel::{
        loader::{self, LoadError, LoadOptions, PinnedMaps},
        lsm,
        maps::{KernelError, KernelState},
        owner::{KernelHandle, KernelOwner},
        pins::LinkPins,
        syscall_hooks::{self, SyscallHooks},
    },
    runtime::cgroup::{self, CgroupError, ContainerParent, ContainerParents, ParentKind},
};

/// Nested parents registered whenever they exist, without being configured: Kubernetes'
/// (both cgroup drivers) and podman's. Not `system.slice`: every host service lives there, so
/// the network programs would run for them; Docker's systemd driver needs it configured.
pub const DETECTED_PARENTS: &[&str] = &[
    "kubepods",
    "kubepods.slice",
    "libpod_parent",
    "machine.slice",
];

/// Why the agent could not start its kernel side.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the cgroup v2 hierarchy")]
    Cgroup(#[from] CgroupError),
    #[error("container_parents entry {0:?} is the cgroup root: containers are its children, never the root itself")]
    ParentIsRoot(String),
    #[error("creating container parent cgroup {path}")]
    CreateParent {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the kernel programs")]
    Load(#[from] LoadError),
    #[error("the ring buffer map {0} is missing from the object")]
    NoRing(&'static str),
    #[error("opening the ring buffer")]
    Ring(#[source] aya::maps::MapError),
    #[error("the kernel owner")]
    Kernel(#[from] KernelError),
    #[error("invalid profiles in {dir}")]
    Profiles {
        dir: PathBuf,
        #[source]
        report: seawall_profile::CheckReport,
    },
}

/// The kernel side, running.
pub struct Started {
    pub owner: KernelOwner,
    pub kernel: KernelHandle,
    pub ring: RingBuf<MapData>,
    pub cgroup_root: PathBuf,
    pub parents: Vec<ContainerParent>,
    pub own_cgroup: Option<u64>,
    /// Why BPF LSM is not in use, when it is not.
    pub lsm_unavailable: Option<String>,
    /// What became of the opt-in syscall hooks.
    pub syscall_hooks: SyscallHooks,
    /// Undoes what the load did to the pins unless the start completes.
    pub pins: StartPins,
}

/// What the load did to the bpffs pins, undone when dropped unless [`StartPins::keep`] was
/// called: a start that fails part-way leaves the pins as it found them (its own fresh ones
/// removed, migrated ones back in place), and its staged links detach with the owner's state.
pub struct StartPins {
    dir: PathBuf,
    maps: Option<PinnedMaps>,
}

impl StartPins {
    /// The start completed: keep the pins as they are now, and remove the maps a migration
    /// retired (the earlier programs were released).
    pub fn keep(mut self) {
        if let Some(PinnedMaps::Migrated { version, .. }) = self.maps.take() {
            let removed = crate::kernel::layout::remove_retired(&self.dir);
            tracing::info!(dir = %self.dir.display(), from = ?version, removed, "migrated the pinned maps to this agent's layout");
        }
    }
}

impl Drop for StartPins {
    fn drop(&mut self) {
        if let Some(maps) = self.maps.take() {
            loader::undo(&self.dir, &maps);
        }
    }
}

/// Loads and attaches everything, and returns the owner that now holds it.
pub async fn kernel(cfg: &AgentConfig, health: &Health) -> Result<Started, StartError> {
    let cgroup_root = cgroup::cgroup2_root()?;
    let mut parents = Vec::new();
    for p in &cfg.container_parents {
        let dir = cgroup_root.join(p.trim_start_matches('/'));
        if dir == cgroup_root {
            return Err(StartError::ParentIsRoot(p.clone()));
        }
        if !dir.exists() {
            // Created ahead of the engine so its id is known before the first container.
            std::fs::create_dir_all(&dir).map_err(|source| StartError::CreateParent {
                path: dir.clone(),
                source,
            })?;
            tracing::info!(dir = %dir.display(), "created container parent cgroup");
        }
        let id = cgroup::cgroup_id(&dir)?;
        if !parents.iter().any(|q: &ContainerParent| q.id == id) {
            parents.push(ContainerParent {
                dir,
                id,
                kind: ParentKind::of(p),
            });
        }
    }
    parents.extend(detected_parents(&cgroup_root, &parents));

    let mut link_pins = LinkPins::new(&cfg.bpffs);
    if link_pins.adopting() {
        tracing::info!(dir = %cfg.bpffs.display(), "an earlier agent's programs are still enforcing: adopting its maps, then taking over");
    }
    let loader::Loaded {
        mut ebpf,
        btf,
        maps,
    } = loader::load(
        &LoadOptions {
            host_events: cfg.host_events,
            ringbuf_bytes: cfg.ringbuf_bytes,
            bpffs: cfg.bpffs.clone(),
            event_budget: cfg.event_budget,
        },
        cfg.pin.then_some(&mut link_pins),
    )?;
    let pins = StartPins {
        dir: cfg.bpffs.clone(),
        maps: Some(maps),
    };
    let lsm_unavailable = match lsm::load_lsm(&mut ebpf, &btf) {
        Ok(()) => None,
        Err(e) => {
            lsm::unload_lsm(&mut ebpf);
            let reason = ErrorChain(&e).to_string();
            tracing::info!(%reason, "BPF LSM backend unavailable: using the fallbacks");
            Some(reason)
        }
    };
    drop(btf);
    let syscall_hooks = match (cfg.fallback_syscall_hooks, &lsm_unavailable) {
        (false, _) => SyscallHooks::Off,
        (true, None) => {
            tracing::info!("fallback_syscall_hooks: BPF LSM is the backend and covers these doors; no syscall hook loaded");
            SyscallHooks::NotWithLsm
        }
        (true, Some(_)) => match syscall_hooks::load(&mut ebpf) {
            Ok(()) => {
                tracing::warn!(
                    cost = syscall_hooks::COST,
                    "fallback syscall hooks attached"
                );
                SyscallHooks::Attached
            }
            Err(e) => {
                syscall_hooks::unload(&mut ebpf);
                let reason = ErrorChain(&e).to_string();
                tracing::error!(%reason, "fallback syscall hooks could not be attached: executable mappings, ptrace and AF_PACKET stay unseen");
                SyscallHooks::Failed(reason)
            }
        },
    };
    let ring = ebpf
        .take_map(agent_common::MAP_EVENTS)
        .ok_or(StartError::NoRing(agent_common::MAP_EVENTS))?;
    let ring = RingBuf::try_from(ring).map_err(StartError::Ring)?;
    release_freed_memory();
    let state = KernelState::new(ebpf, cgroup_root.clone(), cfg.pin.then_some(link_pins))?;
    // The owner shows liveness on every command; the loop's tick sends one every 500 ms.
    let liveness = health.register("kernel owner", LOOP_BOUND);
    let owner = KernelOwner::spawn(state, move || liveness.beat())?;
    let kernel = owner.handle();

    // Running as a container under a container parent: exempt our own cgroup (an explicit,
    // all-off policy) before the parents make the default apply to it.
    let layout = ContainerParents {
        root: cgroup_root.clone(),
        parents: parents.clone(),
    };
    let own_cgroup = cgroup::pid_cgroup(std::process::id())
        .and_then(|p| layout.container_dir_of_init(&p))
        .and_then(|dir| cgroup::cgroup_id(&dir).ok());
    if let Some(own) = own_cgroup {
        tracing::info!(
            cgroup_id = own,
            "running inside a container: its cgroup is exempt from policy"
        );
        kernel
            .set_container(own, agent_common::ContainerPolicy::default())
            .await?;
    }
    for p in &parents {
        kernel.add_parent(p.id, p.dir.clone(), p.kind.abi()).await?;
        tracing::info!(dir = %p.dir.display(), kind = ?p.kind, "container parent");
    }
    Ok(Started {
        owner,
        kernel,
        ring,
        cgroup_root,
        parents,
        own_cgroup,
        lsm_unavailable,
        syscall_hooks,
        pins,
    })
}

/// The [`DETECTED_PARENTS`] that exist below `root` and are not in `known`.
pub fn detected_parents(root: &std::path::Path, known: &[ContainerParent]) -> Vec<ContainerParent> {
    DETECTED_PARENTS
        .iter()
        .filter_map(|p| {
            let dir = root.join(p);
            let id = cgroup::cgroup_id(&dir).ok()?;
            (!known.iter().any(|k| k.id == id)).then_some(ContainerParent {
                dir,
                id,
                kind: ParentKind::Nested,
            })
        })
        .collect()
}

/// Loading parsed the kernel's BTF (~5 MiB per parse) and freed it: give those pages back
/// instead of carrying them as resident memory for the agent's lifetime.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call with no arguments to get wrong; nix has no malloc_trim.
    unsafe {
        libc::malloc_trim(0);
    }
}
