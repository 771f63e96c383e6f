//! `seawall agent`: wires the kernel programs, the container sources, the profiles and the
//! sinks together and runs the one event loop until shutdown.
//!
//! Shaped like mini-redis's `server::run`: [`run`] takes its dependencies ([`Agent`]) and its
//! shutdown future. Inside, every task it starts (ring reader, container sources, local API,
//! metrics endpoint, watchdog) is named (`supervise`): the end of any of them, of the kernel
//! owner, of the fanotify thread or of the delivery sender before shutdown stops the agent
//! with an error that names it. Every task is joined before `run` returns, and the kernel
//! owner thread is stopped and joined last.

pub mod config;
mod containers;
mod event_loop;
mod held;
mod intel;
mod kernel_events;
mod learning;
mod prepare;
mod pressure;
mod profiles;
mod sequence;
mod start;
mod stop;
mod summary;
mod supervise;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use seawall_delivery::Delivery;
use seawall_profile::ProfileSet;
use seawall_proto::event::{Action, Event, Kind, Severity};
use seawall_service::{
    health::{self, Health},
    notify::{watchdog_interval, Notifier},
    ErrorChain,
};
use tokio::{
    net::{TcpListener, UnixListener},
    sync::{mpsc, watch},
};

use crate::{
    fanotify::{enforced::PlannedMount, FileGuard, ThreadEnd},
    kernel::{
        backends::Backends,
        coverage,
        decode::KernelEvent,
        maps::KernelError,
        owner::{KernelHandle, OwnerExit},
        programs::Control,
        ring::{self, RingItem},
    },
    learn::{promotion::PromotionClock, Learner},
    ops::{api, metrics::Metrics, status::Status},
    output::{clock::Clock, event::Enricher, sinks::Sinks},
    policy::compile::{CompileError, CompiledSet},
    runtime::{
        cgroup::ContainerParents,
        docker, engines,
        procs::ProcessTable,
        table::{ContainerInfo, ContainerTable},
        Lookup, Runtime, SourceEvent, SourceId,
    },
};
use config::AgentConfig;
use event_loop::{event_loop, Supervised};

/// Kernel records handled per loop turn before lifecycle events, SIGHUP and the tick get a
/// look in: a flood of kernel events cannot starve them.
const KERNEL_BATCH: usize = 256;
/// fanotify records handled per loop turn, for the same reason.
const FILE_BATCH: usize = 256;
/// How long the loop may go without a turn before the watchdog stops (it turns at least on
/// every 500 ms tick).
const LOOP_BOUND: Duration = Duration::from_secs(10);
/// How long each task of a shutting-down agent gets to finish before it is cut.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Where events go: the sinks and, with a collector, the delivery whose spool numbering the
/// events continue.
pub struct Output {
    /// stdout/file JSON lines, the local API bus, forwarders (the spool).
    pub sinks: Sinks,
    /// Delivery to the collector, when configured.
    pub delivery: Option<Delivery>,
    /// The `seq` of the first event this agent emits.
    pub first_seq: u64,
}

pub use crate::runtime::sources::ContainerSource;

/// Everything [`run`] needs, built by its caller.
pub struct Agent {
    /// The resolved configuration.
    pub config: AgentConfig,
    /// The local API socket, already bound.
    pub api: UnixListener,
    /// The Prometheus endpoint, when configured, already bound.
    pub metrics_listener: Option<TcpListener>,
    /// The metrics registry the daemon updates.
    pub metrics: Arc<Metrics>,
    /// What `seawall status` shows, kept current by the daemon.
    pub status: Arc<Mutex<Status>>,
    /// Liveness of the daemon's parts; the watchdog follows it.
    pub health: Health,
    /// systemd's notification socket, when run as `Type=notify`.
    pub notifier: Option<Notifier>,
    /// Where events go.
    pub output: Output,
    /// Where containers come from.
    pub sources: Vec<ContainerSource>,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("starting the agent")]
    Start(#[from] start::StartError),
    #[error("the kernel owner")]
    Kernel(#[from] KernelError),
    #[error("compiling the profiles")]
    Compile(#[from] CompileError),
    #[error("threat intelligence and image assurance")]
    Intel(#[from] intel::IntelStartError),
    #[error("installing a SIGHUP handler")]
    Signal(#[source] std::io::Error),
    #[error("the kernel owner thread ended ({0:?}): policy can no longer be written")]
    OwnerEnded(OwnerExit),
    #[error("the {task} task {how}: the agent cannot go on without it")]
    TaskEnded {
        task: &'static str,
        how: supervise::TaskEnd,
    },
    #[error("the fanotify thread ended ({0:?}): file controls are gone (the kernel now lets watched opens through)")]
    FileThreadEnded(ThreadEnd),
    #[error("the delivery sender ended: events are no longer sent to the collector")]
    DeliveryEnded,
    /// A failpoint of the fault tests failed the start on purpose.
    #[error("failpoint {0}")]
    Failpoint(&'static str),
}

/// A shutdown signal every task can wait on.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// The loop's state: the tables, the compiled policy and where events go.
struct Daemon {
    cfg: AgentConfig,
    /// The cgroup2 mount and the container parents registered in the kernel.
    parents: ContainerParents,
    kernel: KernelHandle,
    /// Lookups by id, answered by the Docker source (the others report every container
    /// themselves, before it runs).
    /// The engines that answer lookups by container id (Docker, Docker-API engines).
    lookups: Vec<(Runtime, Lookup)>,
    /// Every source, and whether it has listed (true) or is unreachable (false) last.
    sources: Vec<(SourceId, Option<bool>)>,
    /// Detected parents the kernel owner could not register (not tried again).
    failed_parents: Vec<crate::runtime::cgroup::ContainerParent>,
    /// The profiles in force: `loaded` with the promotions the clock made.
    profiles: ProfileSet,
    /// The profiles as their files say.
    loaded: ProfileSet,
    compiled: CompiledSet,
    next_profile_id: u32,
    containers: ContainerTable,
    procs: ProcessTable,
    events: Enricher,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Status>>,
    files: Option<FileGuard>,
    /// Whether the BPF LSM programs are attached (then the kernel decides file rules on the
    /// inode, and no mounts are made).
    lsm_active: bool,
    /// Containers whose file controls are prepared (`prepare.rs`): the pid whose mount
    /// namespace was used, and the kernel-enforced mounts made there.
    prepared: HashMap<u64, (u32, Vec<PlannedMount>)>,
    delivery: Option<Delivery>,
    /// The agent's own container cgroup when it runs as a container: never policed.
    own_cgroup: Option<u64>,
    /// Container cgroups not found under any parent, and when they were last looked for.
    unresolved: HashMap<u64, Instant>,
    /// Containers the engine reported created whose cgroup does not exist yet: known ahead,
    /// so the policy is written the moment the cgroup appears.
    created: HashMap<String, ContainerInfo>,
    /// Lookups sent to a source, by container id: the cgroup waiting for the answer.
    awaiting: HashMap<String, containers::Awaiting>,
    /// Execs the kernel held (stopped) in containers whose lookup is still out, by cgroup.
    held: HashMap<u64, Vec<(KernelEvent, Instant)>>,
    /// Holds the sweep decided (their ring record, if it comes late, is not reported again).
    swept: held::Swept,
    /// Which kernel records were written out, and the gap an earlier agent left.
    handled: sequence::Handled,
    /// What was lost or held back, as already reported.
    pressure: pressure::Seen,
    drops_seen: u64,
    /// Threat intelligence and image assurance.
    intel: intel::NodeIntel,
    /// Hands every event to learning; none with `--no-learn`.
    learner: Option<Learner>,
    /// The `enforce_after` clocks.
    promotion: PromotionClock,
}

/// How long start-up waits for the sources' first listing of running containers.
const FIRST_LISTING_WAIT: Duration = Duration::from_secs(10);

impl Daemon {
    /// Handles what the sources send until each has listed its running containers (or said
    /// its engine does not answer), for at most [`FIRST_LISTING_WAIT`].
    async fn first_listing(&mut self, source_rx: &mut mpsc::Receiver<SourceEvent>) {
        let deadline = tokio::time::Instant::now() + FIRST_LISTING_WAIT;
        while self.sources.iter().any(|(_, state)| state.is_none()) {
            match tokio::time::timeout_at(deadline, source_rx.recv()).await {
                Ok(Some(news)) => self.on_source(news).await,
                Ok(None) => return,
                Err(_) => {
                    for (source, _) in self.sources.iter().filter(|(_, s)| s.is_none()) {
                        tracing::warn!(runtime = %source.runtime, socket = %source.socket.display(), "the container engine has not listed its containers yet: going on without");
                    }
                    return;
                }
            }
        }
    }

    /// Notes a source's state (listed, unreachable) for `seawall status`.
    fn source_state(&mut self, source: &SourceId, up: bool) {
        // A CRI socket says which runtime it is only once it answers: match on the socket.
        match self
            .sources
            .iter_mut()
            .find(|(s, _)| s.socket == source.socket)
        {
            Some(entry) => *entry = (source.clone(), Some(up)),
            None => self.sources.push((source.clone(), Some(up))),
        }
    }

    fn emit(&mut self, ev: Event) {
        self.learn_from(&ev);
        self.sinks.emit(&ev);
    }

    fn agent_event(&mut self, action: Action, severity: Severity, message: String) {
        let ev = self
            .events
            .event(Kind::Agent, action, "agent", severity, message);
        self.emit(ev);
    }
}

/// Runs the agent until `shutdown` resolves: loads and attaches the programs, installs the
/// profiles, tells systemd it is ready, then handles kernel records, file records, container
/// news, SIGHUP and a 500 ms tick in one loop.
pub async fn run(agent: Agent, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let Agent {
        config: cfg,
        api,
        metrics_listener,
        metrics,
        status,
        health,
        notifier,
        output,
        sources,
    } = agent;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    let mut tasks = supervise::Tasks::default();
    crate::failpoint::announce();

    // Invalid profiles stop the start before anything is loaded: there is no policy to keep.
    let initial_profiles = profiles::initial(&cfg.profiles)?;
    let mut node_intel = intel::NodeIntel::load(&cfg)?;
    let started = start::kernel(&cfg, &health).await?;
    let start::Started {
        mut owner,
        kernel,
        ring,
        cgroup_root,
        parents,
        own_cgroup,
        lsm_unavailable,
        syscall_hooks,
        pins,
    } = started;
    let lsm_active = lsm_unavailable.is_none();
    let files = match FileGuard::start(
        cfg.audit_files,
        !lsm_active,
        health.register("fanotify thread", LOOP_BOUND),
        node_intel.exec.clone(),
    ) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %ErrorChain(&e), "file controls unavailable");
            None
        }
    };
    let backends = Backends::decide(&crate::kernel::backends::Probe {
        lsm_unavailable,
        fanotify_unavailable: files
            .is_none()
            .then(|| "fanotify could not be initialised".to_string()),
        syscall_hooks,
    });
    for (control, backend) in &backends.backend {
        metrics.set_backend(*control, *backend);
    }
    node_intel.set_backends(
        backends.lsm_unavailable.is_none(),
        files
            .is_none()
            .then_some("fanotify could not be initialised"),
    );

    let learning = learning::start(&cfg, &stop, &mut tasks);
    // Local API and metrics: served from now on, joined at shutdown.
    tasks.spawn(
        "local API",
        api::serve(
            api,
            status.clone(),
            output.sinks.bus.clone(),
            learning.query.clone(),
            stop.wait(),
        ),
    );
    if let Some(listener) = metrics_listener {
        tasks.spawn(
            "metrics endpoint",
            seawall_service::metrics::serve(listener, metrics.registry(), stop.wait()),
        );
    }

    // Where the previous agent stopped writing records out, read before the reader starts.
    let at_start = kernel.sequence().await?;
    let (kernel_tx, mut kernel_rx) = mpsc::channel(ring::CHANNEL_DEPTH);
    let (ring_stop_tx, ring_stop_rx) = watch::channel(false);
    tasks.spawn_fallible(
        "ring reader",
        ring::read_ring(
            ring,
            kernel_tx,
            health.register("ring reader", LOOP_BOUND),
            Stop(ring_stop_rx).wait(),
        ),
    );

    let (source_tx, mut source_rx) = mpsc::channel::<SourceEvent>(1024);
    let mut lookups = Vec::new();
    if sources.is_empty() {
        tracing::warn!("no container engine socket found or configured: containers are monitored with the default profile and no metadata (set --docker-socket, --containerd-socket, --cri-socket or --podman-socket)");
    }
    let source_ids = sources.iter().map(|s| (s.id(), None)).collect();
    for source in sources {
        tracing::info!(runtime = %source.id().runtime, socket = %source.id().socket.display(), "reading containers from this engine");
        match source {
            ContainerSource::Docker { socket } => {
                let (l, requests) = Lookup::channel(1024);
                lookups.push((Runtime::Docker, l));
                tasks.spawn(
                    "Docker source",
                    docker::watch(
                        socket,
                        source_tx.clone(),
                        requests,
                        health.register("Docker source", docker::LIVENESS_BOUND),
                        stop.wait(),
                    ),
                );
            }
            ContainerSource::Engine(endpoint) => {
                let name = match endpoint.runtime {
                    seawall_engines::Runtime::Containerd => "containerd source",
                    seawall_engines::Runtime::CriO => "CRI source",
                    seawall_engines::Runtime::Podman => "podman source",
                    seawall_engines::Runtime::Docker => "Docker engine source",
                };
                if engines::answers_lookups(&endpoint) {
                    let (l, requests) = Lookup::channel(1024);
                    lookups.push((endpoint.runtime, l));
                    tasks.spawn(
                        "engine lookups",
                        engines::answer_lookups(
                            endpoint.clone(),
                            source_tx.clone(),
                            requests,
                            stop.wait(),
                        ),
                    );
                }
                tasks.spawn(
                    name,
                    engines::watch(endpoint, source_tx.clone(), stop.wait()),
                );
            }
        }
    }
    drop(source_tx);

    let node = cfg.node_name();
    let Output {
        mut sinks,
        delivery,
        first_seq,
    } = output;
    if delivery.is_some() {
        status.lock().unwrap_or_else(|e| e.into_inner()).collector = cfg.collector.clone();
    }
    sinks.flush();
    let mut d = Daemon {
        parents: ContainerParents {
            root: cgroup_root,
            parents,
        },
        kernel,
        lookups,
        sources: source_ids,
        failed_parents: Vec::new(),
        profiles: ProfileSet::builtin_default(),
        loaded: ProfileSet::builtin_default(),
        compiled: CompiledSet::default(),
        next_profile_id: 0,
        containers: ContainerTable::default(),
        procs: ProcessTable::new(65_536),
        events: Enricher::new(node.clone(), first_seq),
        sinks,
        metrics,
        status: status.clone(),
        files,
        lsm_active,
        prepared: HashMap::new(),
        delivery,
        own_cgroup,
        unresolved: HashMap::new(),
        created: HashMap::new(),
        awaiting: HashMap::new(),
        held: HashMap::new(),
        swept: held::Swept::default(),
        handled: sequence::Handled::new(&at_start),
        pressure: pressure::Seen::default(),
        drops_seen: 0,
        intel: node_intel,
        learner: learning.learner,
        promotion: learning.promotion,
        cfg: cfg.clone(),
    };
    // Maps adopted from an earlier agent keep its rules: number on above them, and remove them
    // once the new rules are in and every container points at them.
    let adopted = d.kernel.adopted_rules().await?;
    d.next_profile_id = adopted.max_profile_id;
    d.start_intel().await?;
    d.install(initial_profiles).await?;
    // The containers already running get their policy before the agent calls itself ready.
    d.first_listing(&mut source_rx).await;
    d.kernel.remove_rules(adopted.paths, adopted.nets).await?;
    // Holds an earlier agent left past their deadline are decided now, under the policy just
    // written; younger ones wait for their ring records.
    d.sweep_holds(false).await;
    d.kernel.heartbeat().await?;
    if crate::failpoint::armed("fail_start_after_attach").is_some() {
        // Everything is loaded and attached: what a start failing this late must undo.
        return Err(DaemonError::Failpoint("fail_start_after_attach"));
    }

    {
        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
        s.node = node;
        s.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .into();
        s.backends = Some(backends.clone());
        s.coverage = coverage::lines(
            if lsm_active {
                coverage::BackendKind::BpfLsm
            } else {
                coverage::BackendKind::Fallback
            },
            &coverage::KernelFacts::probe(),
            &backends.syscall_hooks,
        );
        s.started = Clock::now();
        s.version = env!("CARGO_PKG_VERSION").into();
    }
    d.refresh_status();
    summary::print(&backends, &d);
    d.agent_event(
        Action::Allowed,
        Severity::Info,
        format!(
            "agent started: exec via {}, file via {}, network via {}",
            backends.describe(Control::Exec),
            backends.describe(Control::File),
            backends.describe(Control::Network)
        ),
    );
    // The start succeeded: from here on this agent's links may outlive it.
    d.kernel.commit_pins().await?;
    let released = d.kernel.release_previous().await?;
    if released > 0 {
        tracing::info!(
            links = released,
            "took over from the earlier agent's programs"
        );
    }
    if !cfg.pin {
        // Links an earlier pinned agent left, when this one does not pin its own.
        crate::kernel::pins::LinkPins::new(&cfg.bpffs).release_previous();
    }
    pins.keep();
    d.sinks.flush();
    if let Some(n) = &notifier {
        n.ready("enforcing");
        if let Some(every) = watchdog_interval() {
            tasks.spawn(
                "watchdog",
                health::watchdog(n.clone(), every, health.clone(), stop.wait()),
            );
        }
    }

    let result = event_loop(
        &mut d,
        &mut Supervised {
            owner: &mut owner,
            tasks: &mut tasks,
        },
        &mut kernel_rx,
        &mut source_rx,
        notifier.as_ref(),
        &health,
        shutdown,
    )
    .await;
    if let Err(e) = &result {
        tracing::error!(error = %ErrorChain(e), "the agent stops on an error");
    }

    if let Some(n) = &notifier {
        n.stopping();
    }
    d.finish(&mut kernel_rx, ring_stop_tx).await;
    let _ = stop_tx.send(true);
    if let Some(files) = d.files.take() {
        files.stop();
    }
    tasks.join(JOIN_GRACE).await;
    if let Some(delivery) = d.delivery.take() {
        delivery.shutdown().await;
    }
    // The owner drops the object last: unpinned links detach here, pinned ones stay.
    drop(d);
    let owner_exit = owner.stop().await;
    result?;
    if owner_exit == OwnerExit::Panicked {
        return Err(DaemonError::OwnerEnded(OwnerExit::Panicked));
    }
    if !cfg.pin {
        // Not asked to outlive us: leave nothing behind in bpffs.
        if let Err(e) = crate::kernel::pins::remove_all(&cfg.bpffs) {
            tracing::warn!(dir = %cfg.bpffs.display(), error = %e, "removing bpffs pins failed");
        }
    } else {
        tracing::info!(dir = %cfg.bpffs.display(), "programs stay pinned and enforcing; `seawall uninstall` removes them");
    }
    Ok(())
}
