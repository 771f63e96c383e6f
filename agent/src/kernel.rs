//! The kernel task: the one task that owns the loaded programs and every map write. Other tasks
//! send it closures over a channel and await the reply (the lockc pattern), so map updates never
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
        cgroup_sock::CgroupSockLinkId, cgroup_sock_addr::CgroupSockAddrLinkId, CgroupAttachMode,
        CgroupSock, CgroupSockAddr, ProgramError,
    },
    Ebpf,
};
use tokio::sync::{mpsc, oneshot};

use crate::loader::{
    safe_attach_point, LISTEN_GATE_PROGRAM, SOCK_ADDR_PROGRAMS, SOCK_CREATE_PROGRAM,
};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("attaching network programs to {path}: {source:?}")]
    Attach {
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("refusing to attach to {0}: not a container cgroup below the cgroup v2 root")]
    UnsafeAttachPoint(PathBuf),
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel task has stopped")]
    Gone,
    #[error(transparent)]
    Pin(#[from] crate::pins::PinError),
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

/// Everything the kernel task owns.
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
    links: StdHashMap<u64, NetLinks>,
    /// Where links are pinned, when enforcement must outlive the agent.
    pins: Option<crate::pins::LinkPins>,
}

#[derive(Default)]
struct NetLinks {
    addr: Vec<(&'static str, CgroupSockAddrLinkId)>,
    sock: Option<CgroupSockLinkId>,
    skb: Option<aya::programs::cgroup_skb::CgroupSkbLinkId>,
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
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
        pins: Option<crate::pins::LinkPins>,
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
            links: StdHashMap::new(),
            pins,
            cgroup_root,
            ebpf,
        })
    }

    /// Children of this cgroup are containers. The network programs are attached here, once:
    /// a container parent (e.g. `/docker`) holds only containers, the programs' membership gate
    /// lets everything else through at once, and attaching above the containers puts network
    /// policy in force before a new container's first `connect`, which a per-container attach
    /// made after the cgroup appears cannot promise. Never the hierarchy root.
    pub fn add_parent(&mut self, cgroup_id: u64, dir: &Path) -> Result<(), KernelError> {
        self.parents
            .insert(cgroup_id, 1, 0)
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

    fn attach_net(&mut self, dir: &Path) -> Result<NetLinks, KernelError> {
        if !safe_attach_point(&self.cgroup_root, dir) {
            return Err(KernelError::UnsafeAttachPoint(dir.to_owned()));
        }
        let attach_err = |source| KernelError::Attach {
            path: dir.to_owned(),
            source,
        };
        let open = || {
            File::open(dir).map_err(|source| KernelError::Cgroup {
                path: dir.to_owned(),
                source,
            })
        };
        let tag = cgroup_tag(dir);
        let mut links = NetLinks::default();
        for &name in SOCK_ADDR_PROGRAMS {
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .expect("loaded at start")
                .try_into()
                .expect("type checked at load");
            let id = prog.attach(open()?, LINK_MODE).map_err(attach_err)?;
            if let Some(pins) = self.pins.as_mut() {
                let link = prog.take_link(id).map_err(attach_err)?;
                pin_link(pins, &format!("{name}-{tag}"), link, dir)?;
            } else {
                links.addr.push((name, id));
            }
        }
        let prog: &mut CgroupSock = self
            .ebpf
            .program_mut(SOCK_CREATE_PROGRAM)
            .expect("loaded at start")
            .try_into()
            .expect("type checked at load");
        let id = prog.attach(open()?, LINK_MODE).map_err(attach_err)?;
        if let Some(pins) = self.pins.as_mut() {
            let link = prog.take_link(id).map_err(attach_err)?;
            pin_link(pins, &format!("{SOCK_CREATE_PROGRAM}-{tag}"), link, dir)?;
        } else {
            links.sock = Some(id);
        }
        let prog: &mut aya::programs::CgroupSkb = self
            .ebpf
            .program_mut(LISTEN_GATE_PROGRAM)
            .expect("loaded at start")
            .try_into()
            .expect("type checked at load");
        let id = prog
            .attach(
                open()?,
                aya::programs::CgroupSkbAttachType::Ingress,
                LINK_MODE,
            )
            .map_err(attach_err)?;
        if let Some(pins) = self.pins.as_mut() {
            let link = prog.take_link(id).map_err(attach_err)?;
            pin_link(pins, &format!("{LISTEN_GATE_PROGRAM}-{tag}"), link, dir)?;
        } else {
            links.skb = Some(id);
        }
        Ok(links)
    }

    /// Forgets a container: its policy, init and recorded root.
    pub fn remove_container(&mut self, cgroup_id: u64) {
        let _ = self.containers.remove(&cgroup_id);
        let _ = self.init.remove(&cgroup_id);
        let _ = self.roots.remove(&cgroup_id);
    }

    /// Detaches the network programs from a container parent.
    pub fn remove_parent(&mut self, cgroup_id: u64) {
        let _ = self.parents.remove(&cgroup_id);
        if let Some(links) = self.links.remove(&cgroup_id) {
            for (name, id) in links.addr {
                if let Some(Ok(p)) = self
                    .ebpf
                    .program_mut(name)
                    .map(<&mut CgroupSockAddr>::try_from)
                {
                    let _ = p.detach(id);
                }
            }
            if let Some(id) = links.sock {
                if let Some(Ok(p)) = self
                    .ebpf
                    .program_mut(SOCK_CREATE_PROGRAM)
                    .map(<&mut CgroupSock>::try_from)
                {
                    let _ = p.detach(id);
                }
            }
            if let Some(id) = links.skb {
                if let Some(Ok(p)) = self
                    .ebpf
                    .program_mut(LISTEN_GATE_PROGRAM)
                    .map(<&mut aya::programs::CgroupSkb>::try_from)
                {
                    let _ = p.detach(id);
                }
            }
        }
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
    pub fn adopted_rules(&self) -> (u32, Vec<PathRuleKey>, Vec<NetRuleKey>) {
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
        (max, paths, nets)
    }

    /// Tells the kernel the agent is alive (`bpf_ktime_get_boot_ns` clock), so it may hold a new
    /// container's execs until the container's own policy is written.
    pub fn heartbeat(&mut self) -> Result<(), KernelError> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        self.heartbeat
            .set(0, now, 0)
            .map_err(map_err(agent_common::MAP_AGENT_HEARTBEAT))
    }

    /// Sums of the per-CPU counters (`COUNTER_*`).
    pub fn counters(&self) -> Result<[u64; COUNTER_COUNT as usize], KernelError> {
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

/// Pins a cgroup link (always an fd link on the kernels we attach with bpf_link).
fn pin_link<L>(
    pins: &mut crate::pins::LinkPins,
    name: &str,
    link: L,
    dir: &Path,
) -> Result<(), KernelError>
where
    aya::programs::links::FdLink: TryFrom<L>,
    <aya::programs::links::FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let fd = aya::programs::links::FdLink::try_from(link).map_err(|e| KernelError::Attach {
        path: dir.to_owned(),
        source: ProgramError::IOError(std::io::Error::other(e.to_string())),
    })?;
    Ok(pins.pin(name, fd)?)
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

type Job = Box<dyn FnOnce(&mut KernelState) + Send>;

/// A cheap, cloneable handle to the kernel task.
#[derive(Clone)]
pub struct KernelHandle {
    tx: mpsc::Sender<Job>,
}

impl KernelHandle {
    /// Starts the task that owns `state`; it ends when every handle is dropped.
    pub fn spawn(state: KernelState) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(256);
        // A dedicated thread: map syscalls block, and they must not stall the runtime.
        std::thread::Builder::new()
            .name("seawall-kernel".into())
            .spawn(move || {
                let mut state = state;
                while let Some(job) = rx.blocking_recv() {
                    job(&mut state);
                }
            })
            .expect("spawn the kernel thread");
        Self { tx }
    }

    /// Runs `f` on the kernel task and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut KernelState) -> R + Send + 'static,
    ) -> Result<R, KernelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |s| {
                let _ = reply.send(f(s));
            }))
            .await
            .map_err(|_| KernelError::Gone)?;
        rx.await.map_err(|_| KernelError::Gone)
    }
}
