//! The kernel state the owner thread holds: the loaded object, its maps and the links of the
//! container-parent programs. Only the owner (`owner.rs`) calls these methods, so map writes never
//! race each other and a policy swap is ordered.

use std::{
    collections::HashMap as StdHashMap,
    fs::File,
    path::{Path, PathBuf},
};

use agent_common::{
    ContainerPolicy, NetRule, NetRuleKey, PathRuleKey, COUNTER_COUNT, MAP_CONTAINERS,
    MAP_CONTAINER_INIT, MAP_CONTAINER_PARENTS, MAP_COUNTERS, MAP_NET_RULES, MAP_PATH_RULES,
    MAP_TASK_ORIGIN,
};
use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{
        cgroup_skb::CgroupSkbLinkId,
        cgroup_sock::CgroupSockLinkId,
        cgroup_sock_addr::CgroupSockAddrLinkId,
        links::{FdLink, LinkError},
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
    },
    Ebpf,
};
use nix::time::{clock_gettime, ClockId};

use super::{
    loader::safe_attach_point,
    pins::{LinkPins, PinError},
    programs::{self, Hook},
    recovery::RecoveryMaps,
};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error(
        "program {0} missing from the object: agent and kernel programs are from different builds"
    )]
    MissingProgram(&'static str),
    #[error("program {0} is in the program table as a container-parent program but is not a cgroup program")]
    NotCgroup(&'static str),
    #[error("attaching {program} to {path}")]
    Attach {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("refusing to attach to {0}: not a container cgroup below the cgroup v2 root")]
    UnsafeAttachPoint(PathBuf),
    #[error("opening cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel owner thread has stopped")]
    Gone,
    #[error("reading CLOCK_BOOTTIME")]
    Clock(#[source] nix::errno::Errno),
    #[error("starting the kernel owner thread")]
    Spawn(#[source] std::io::Error),
    #[error("the link of {program} on {path} is not an fd link and cannot be pinned")]
    NotFdLink {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error(transparent)]
    Pin(#[from] PinError),
}

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

/// Sums of the kernel's per-CPU counters, indexed by `COUNTER_*`.
pub type Counters = [u64; COUNTER_COUNT as usize];

/// What maps adopted from an earlier agent hold: the highest profile id (a new compile numbers
/// above it) and the rule keys (removed once the new rules are in).
#[derive(Debug, Default)]
pub struct AdoptedRules {
    pub max_profile_id: u32,
    pub paths: Vec<PathRuleKey>,
    pub nets: Vec<NetRuleKey>,
}

/// Everything the kernel owner holds.
pub struct KernelState {
    ebpf: Ebpf,
    cgroup_root: PathBuf,
    parents: HashMap<MapData, u64, u32>,
    containers: HashMap<MapData, u64, ContainerPolicy>,
    init: HashMap<MapData, u64, u32>,
    roots: HashMap<MapData, u64, agent_common::ContainerRoot>,
    origin: HashMap<MapData, u32, u32>,
    path_rules: HashMap<MapData, PathRuleKey, u32>,
    net_rules: HashMap<MapData, NetRuleKey, NetRule>,
    counters: PerCpuArray<MapData, u64>,
    heartbeat: aya::maps::Array<MapData, u64>,
    pub(super) intel: super::intel::IntelMaps,
    links: StdHashMap<u64, NetLinks>,
    /// Where links are pinned, when enforcement must outlive the agent.
    pins: Option<LinkPins>,
    /// Held execs, record numbering, flood counts.
    pub recovery: RecoveryMaps,
}

/// How full one kernel map is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapUsage {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
}

/// Container cgroups the per-container maps hold entries for (`CONTAINERS` without key 0,
/// `CONTAINER_INIT`, `CONTAINER_ROOTS`).
#[derive(Debug, Default, Clone)]
pub struct ContainerKeys {
    pub policies: Vec<u64>,
    pub inits: Vec<u64>,
    pub roots: Vec<u64>,
}

#[derive(Default)]
struct NetLinks {
    addr: Vec<(&'static str, CgroupSockAddrLinkId)>,
    sock: Vec<(&'static str, CgroupSockLinkId)>,
    skb: Vec<(&'static str, CgroupSkbLinkId)>,
}

pub(super) fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, KernelError> {
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl KernelState {
    pub fn new(
        mut ebpf: Ebpf,
        cgroup_root: PathBuf,
        pins: Option<LinkPins>,
    ) -> Result<Self, KernelError> {
        Ok(Self {
            parents: take(&mut ebpf, MAP_CONTAINER_PARENTS)?,
            containers: take(&mut ebpf, MAP_CONTAINERS)?,
            init: take(&mut ebpf, MAP_CONTAINER_INIT)?,
            roots: take(&mut ebpf, agent_common::MAP_CONTAINER_ROOTS)?,
            origin: take(&mut ebpf, MAP_TASK_ORIGIN)?,
            path_rules: take(&mut ebpf, MAP_PATH_RULES)?,
            net_rules: take(&mut ebpf, MAP_NET_RULES)?,
            counters: take(&mut ebpf, MAP_COUNTERS)?,
            heartbeat: take(&mut ebpf, agent_common::MAP_AGENT_HEARTBEAT)?,
            recovery: RecoveryMaps::take(&mut ebpf)?,
            intel: super::intel::IntelMaps::take(&mut ebpf)?,
            links: StdHashMap::new(),
            pins,
            cgroup_root,
            ebpf,
        })
    }

    /// Containers live below this cgroup: its children (`PARENT_CHILDREN`, e.g. `/docker`), or
    /// cgroups at any depth the kernel recognises by name (`PARENT_NESTED`, e.g. `/kubepods`).
    /// The network programs are attached here, once: the programs' membership gate lets
    /// everything that is not in a container through at once, and attaching above the containers puts network
    /// policy in force before a new container's first `connect`, which a per-container attach
    /// made after the cgroup appears cannot promise. Never the hierarchy root.
    pub fn add_parent(&mut self, cgroup_id: u64, dir: &Path, kind: u32) -> Result<(), KernelError> {
        self.parents
            .insert(cgroup_id, kind, 0)
            .map_err(map_err(MAP_CONTAINER_PARENTS))?;
        if !self.links.contains_key(&cgroup_id) {
            let links = self.attach_net(dir)?;
            self.links.insert(cgroup_id, links);
        }
        Ok(())
    }

    /// The policy of containers the agent has not configured yet (key 0).
    pub fn set_default_policy(&mut self, policy: ContainerPolicy) -> Result<(), KernelError> {
        self.containers
            .insert(0, policy, 0)
            .map_err(map_err(MAP_CONTAINERS))
    }

    /// Writes a container's policy.
    pub fn set_container(
        &mut self,
        cgroup_id: u64,
        policy: ContainerPolicy,
    ) -> Result<(), KernelError> {
        self.containers
            .insert(cgroup_id, policy, 0)
            .map_err(map_err(MAP_CONTAINERS))
    }

    /// Attaches the table's container-parent programs to `dir`.
    fn attach_net(&mut self, dir: &Path) -> Result<NetLinks, KernelError> {
        if !safe_attach_point(&self.cgroup_root, dir) {
            return Err(KernelError::UnsafeAttachPoint(dir.to_owned()));
        }
        let open = || {
            File::open(dir).map_err(|source| KernelError::Cgroup {
                path: dir.to_owned(),
                source,
            })
        };
        let tag = cgroup_tag(dir);
        let mut links = NetLinks::default();
        for program in programs::at_container_parent() {
            let name = program.name;
            let attach_err = |source| KernelError::Attach {
                program: name,
                path: dir.to_owned(),
                source,
            };
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or(KernelError::MissingProgram(name))?;
            let pin_name = format!("{name}-{tag}");
            match program.hook {
                Hook::CgroupSockAddr(_) => {
                    let prog = <&mut CgroupSockAddr>::try_from(prog).map_err(attach_err)?;
                    let id = prog.attach(open()?, LINK_MODE).map_err(attach_err)?;
                    match self.pins.as_mut() {
                        Some(pins) => {
                            let link = prog.take_link(id).map_err(attach_err)?;
                            pin_link(pins, &pin_name, link, name, dir)?;
                        }
                        None => links.addr.push((name, id)),
                    }
                }
                Hook::CgroupSockCreate => {
                    let prog = <&mut CgroupSock>::try_from(prog).map_err(attach_err)?;
                    let id = prog.attach(open()?, LINK_MODE).map_err(attach_err)?;
                    match self.pins.as_mut() {
                        Some(pins) => {
                            let link = prog.take_link(id).map_err(attach_err)?;
                            pin_link(pins, &pin_name, link, name, dir)?;
                        }
                        None => links.sock.push((name, id)),
                    }
                }
                Hook::CgroupSkbIngress | Hook::CgroupSkbEgress => {
                    let direction = if program.hook == Hook::CgroupSkbEgress {
                        CgroupSkbAttachType::Egress
                    } else {
                        CgroupSkbAttachType::Ingress
                    };
                    let prog = <&mut CgroupSkb>::try_from(prog).map_err(attach_err)?;
                    let id = prog
                        .attach(open()?, direction, LINK_MODE)
                        .map_err(attach_err)?;
                    match self.pins.as_mut() {
                        Some(pins) => {
                            let link = prog.take_link(id).map_err(attach_err)?;
                            pin_link(pins, &pin_name, link, name, dir)?;
                        }
                        None => links.skb.push((name, id)),
                    }
                }
                Hook::TpBtf(_) | Hook::Lsm(_) | Hook::Syscall(_) => {
                    return Err(KernelError::NotCgroup(name))
                }
            }
        }
        Ok(links)
    }

    /// Forgets a container: its policy, init, recorded root and budget.
    pub fn remove_container(&mut self, cgroup_id: u64) {
        let _ = self.containers.remove(&cgroup_id);
        let _ = self.init.remove(&cgroup_id);
        self.intel.forget(cgroup_id);
        let _ = self.roots.remove(&cgroup_id);
        self.recovery.forget_budget(cgroup_id);
    }

    /// Which container cgroups the per-container maps hold entries for, so entries of
    /// containers that died unseen (a lost `die`, an agent that was down) can be removed.
    pub fn container_keys(&self) -> ContainerKeys {
        ContainerKeys {
            policies: self
                .containers
                .keys()
                .filter_map(Result::ok)
                .filter(|&k| k != 0)
                .collect(),
            inits: self.init.keys().filter_map(Result::ok).collect(),
            roots: self.roots.keys().filter_map(Result::ok).collect(),
        }
    }

    /// How full the maps are that a flood or a leak could fill.
    pub fn usage(&self) -> Vec<MapUsage> {
        fn usage<K: aya::Pod, V: aya::Pod>(
            name: &'static str,
            map: &HashMap<MapData, K, V>,
        ) -> MapUsage {
            MapUsage {
                name: name.to_string(),
                entries: map.keys().filter(Result::is_ok).count() as u64,
                capacity: map_capacity(map),
            }
        }
        vec![
            usage(MAP_CONTAINERS, &self.containers),
            usage(MAP_CONTAINER_INIT, &self.init),
            usage(MAP_TASK_ORIGIN, &self.origin),
            usage(agent_common::MAP_CONTAINER_ROOTS, &self.roots),
            MapUsage {
                name: agent_common::MAP_HELD_EXECS.to_string(),
                entries: self.recovery.held_count() as u64,
                capacity: agent_common::HELD_EXECS_ENTRIES as u64,
            },
        ]
    }

    /// Records the init of a container that was running before the agent, and the origin of
    /// its processes, so `docker exec` sessions are told apart from the init's descendants.
    pub fn seed_container(
        &mut self,
        cgroup_id: u64,
        init_pid: u32,
        origins: &[(u32, u32)],
    ) -> Result<(), KernelError> {
        if init_pid != 0 {
            self.init
                .insert(cgroup_id, init_pid, 0)
                .map_err(map_err(MAP_CONTAINER_INIT))?;
        }
        for &(pid, origin) in origins {
            self.origin
                .insert(pid, origin, 0)
                .map_err(map_err(MAP_TASK_ORIGIN))?;
        }
        Ok(())
    }

    pub fn insert_rules(
        &mut self,
        paths: &[PathRuleKey],
        nets: &[(NetRuleKey, NetRule)],
    ) -> Result<(), KernelError> {
        for k in paths {
            self.path_rules
                .insert(*k, 1, 0)
                .map_err(map_err(MAP_PATH_RULES))?;
        }
        for (k, v) in nets {
            self.net_rules
                .insert(*k, *v, 0)
                .map_err(map_err(MAP_NET_RULES))?;
        }
        Ok(())
    }

    pub fn remove_rules(&mut self, paths: &[PathRuleKey], nets: &[NetRuleKey]) {
        for k in paths {
            let _ = self.path_rules.remove(k);
        }
        for k in nets {
            let _ = self.net_rules.remove(k);
        }
    }

    /// Detaches the links an earlier agent pinned, once ours are all attached.
    pub fn release_previous(&mut self) -> usize {
        self.pins
            .as_mut()
            .map(|p| p.release_previous())
            .unwrap_or(0)
    }

    /// The highest profile id in the adopted maps, so a new compile never reuses one, and the
    /// rule keys they hold (removed once the new rules are in).
    pub fn adopted_rules(&self) -> AdoptedRules {
        let paths: Vec<PathRuleKey> = self.path_rules.keys().filter_map(Result::ok).collect();
        let nets: Vec<NetRuleKey> = self.net_rules.keys().filter_map(Result::ok).collect();
        let max = paths
            .iter()
            .map(|k| k.profile_id)
            .chain(nets.iter().map(|k| k.profile_id))
            .chain(
                self.containers
                    .iter()
                    .filter_map(Result::ok)
                    .map(|(_, p)| p.profile_id),
            )
            .max()
            .unwrap_or(0);
        AdoptedRules {
            max_profile_id: max,
            paths,
            nets,
        }
    }

    /// Tells the kernel the agent is alive (`bpf_ktime_get_boot_ns` clock), so it may hold a new
    /// container's execs until the container's own policy is written.
    pub fn heartbeat(&mut self) -> Result<(), KernelError> {
        let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).map_err(KernelError::Clock)?;
        let now = ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64;
        self.heartbeat
            .set(0, now, 0)
            .map_err(map_err(agent_common::MAP_AGENT_HEARTBEAT))
    }

    /// Tells the kernel to hold nothing more for this agent (it is stopping): the heartbeat
    /// reads as stale at once.
    pub fn stop_holding(&mut self) -> Result<(), KernelError> {
        self.heartbeat
            .set(0, 0, 0)
            .map_err(map_err(agent_common::MAP_AGENT_HEARTBEAT))
    }

    /// Pins the links staged during start-up: from now on they outlive the agent.
    pub fn commit_pins(&mut self) -> Result<(), KernelError> {
        match self.pins.as_mut() {
            Some(pins) => Ok(pins.commit()?),
            None => Ok(()),
        }
    }

    /// Sums of the per-CPU counters (`COUNTER_*`).
    pub fn counters(&self) -> Result<Counters, KernelError> {
        let mut out = [0u64; COUNTER_COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = self
                .counters
                .get(&(i as u32), 0)
                .map_err(map_err(MAP_COUNTERS))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }
}

/// The `max_entries` the kernel gave a map (0 when it cannot be read).
fn map_capacity<K: aya::Pod, V: aya::Pod>(map: &HashMap<MapData, K, V>) -> u64 {
    use aya::maps::IterableMap;
    map.map()
        .info()
        .map(|i| i.max_entries() as u64)
        .unwrap_or(0)
}

/// Pins a cgroup link (always an fd link on the kernels we attach with bpf_link).
fn pin_link<L>(
    pins: &mut LinkPins,
    pin_name: &str,
    link: L,
    program: &'static str,
    dir: &Path,
) -> Result<(), KernelError>
where
    FdLink: TryFrom<L, Error = LinkError>,
{
    let fd = FdLink::try_from(link).map_err(|source| KernelError::NotFdLink {
        program,
        path: dir.to_owned(),
        source,
    })?;
    Ok(pins.pin(pin_name, fd)?)
}

/// A file-name-safe tag for a cgroup directory (its inode number).
fn cgroup_tag(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .map(|m| m.ino().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Attached as bpf_links (kernel ≥ 5.7), which always coexist with other programs on the
/// cgroup; link creation rejects the legacy BPF_F_ALLOW_MULTI flag, so the mode is the default.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;
