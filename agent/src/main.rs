//! `seawall`: the agent daemon and its command-line tools.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use seawall::{
    api,
    config::AgentConfig,
    daemon,
    metrics::Metrics,
    notify::{watchdog_interval, Notifier, NotifyState},
    profile,
    status::Status,
};
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "seawall",
    version,
    about = "Runtime enforcement for container hosts: drift prevention, per-image profiles, events to your SIEM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (as root): load the kernel programs, watch containers, enforce profiles,
    /// and write one JSON event per line.
    Agent(AgentArgs),
    /// Show what the running agent is doing: backends, containers and their profiles, drops.
    Status {
        /// Local API socket of the agent.
        #[arg(long, default_value = "/run/seawall/agent.sock")]
        api_socket: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show events: from the collector (--collector), or live from the local agent.
    Events {
        #[command(flatten)]
        args: seawall::delivery::events_cli::EventsArgs,
        /// Local API socket of the agent (used when no --collector is given).
        #[arg(long, default_value = "/run/seawall/agent.sock")]
        api_socket: PathBuf,
    },
    /// Remove everything the agent pinned in bpffs: its programs stop enforcing.
    Uninstall {
        /// bpffs directory of the agent.
        #[arg(long, default_value = "/sys/fs/bpf/seawall")]
        bpffs: PathBuf,
    },
    /// Work with profiles.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate a profile file or a directory of profiles; every problem as file:line:col.
    /// Exit status 1 when any error is found.
    Check {
        /// A .toml file or a profiles directory.
        path: PathBuf,
    },
}

#[derive(Args)]
struct AgentArgs {
    /// Agent config file (TOML); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Profiles directory, one profile per .toml file [default: /etc/seawall/profiles].
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// Where events go: `-` for stdout, or a file appended to [default: -].
    #[arg(long, value_name = "PATH|-")]
    output: Option<String>,
    /// Docker engine socket [default: /var/run/docker.sock].
    #[arg(long, value_name = "PATH")]
    docker_socket: Option<String>,
    /// Report every file open in monitored containers (costs a round trip per open there).
    #[arg(long)]
    audit_files: bool,
    /// Report host processes too (by default the host costs no userspace work).
    #[arg(long)]
    host_events: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (off by default).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Local API socket [default: /run/seawall/agent.sock].
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// Stream events to this collector (https://HOST:PORT); they are spooled on disk first.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// CA certificate that signed the collector's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    collector_ca: Option<PathBuf>,
    /// This agent's client certificate (PEM); its subject is the agent's identity.
    #[arg(long, value_name = "FILE")]
    collector_cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long, value_name = "FILE")]
    collector_key: Option<PathBuf>,
    /// Talk to the collector without TLS (local trials only).
    #[arg(long)]
    collector_insecure: bool,
    /// Spool directory for collector delivery [default: /var/lib/seawall/spool].
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// Spool size limit in bytes; the oldest events are dropped (and reported) beyond it.
    #[arg(long, value_name = "BYTES")]
    spool_max_bytes: Option<u64>,
    /// Keep programs attached and enforcing after the agent exits (restarts and upgrades leave
    /// no window); a restarted agent adopts them. `seawall uninstall` removes them.
    #[arg(long)]
    pin: bool,
    /// bpffs directory for pinned maps and programs [default: /sys/fs/bpf/seawall].
    #[arg(long, value_name = "DIR")]
    bpffs: Option<PathBuf>,
}

impl AgentArgs {
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        let mut c = match &self.config {
            Some(p) => AgentConfig::from_file(p)?,
            None => AgentConfig::default(),
        };
        if let Some(v) = self.profiles {
            c.profiles = v;
        }
        if let Some(v) = self.output {
            c.output = v;
        }
        if let Some(v) = self.docker_socket {
            c.docker_socket = v;
        }
        if let Some(v) = self.metrics {
            c.metrics = Some(v);
        }
        if let Some(v) = self.api_socket {
            c.api_socket = v;
        }
        if let Some(v) = self.collector {
            c.collector = Some(v);
        }
        if let Some(v) = self.collector_ca {
            c.collector_ca = Some(v);
        }
        if let Some(v) = self.collector_cert {
            c.collector_cert = Some(v);
        }
        if let Some(v) = self.collector_key {
            c.collector_key = Some(v);
        }
        if let Some(v) = self.spool_dir {
            c.spool_dir = v;
        }
        if let Some(v) = self.spool_max_bytes {
            c.spool_max_bytes = v;
        }
        c.collector_insecure |= self.collector_insecure;
        if let Some(v) = self.bpffs {
            c.bpffs = v;
        }
        c.pin |= self.pin;
        c.audit_files |= self.audit_files;
        c.host_events |= self.host_events;
        c.validate()?;
        Ok(c)
    }
}

/// `profile check`'s warnings: what the profiles ask for that this kernel's backend cannot
/// enforce, with the kernel feature that would close each gap. The backend is what this kernel
/// offers (`bpf` in its LSM list), which the running agent confirms by loading.
fn print_coverage_gaps(path: &std::path::Path) {
    use seawall::coverage::{profile_gaps, BackendKind, KernelFacts};
    let profiles: Vec<profile::Profile> = if path.is_dir() {
        profile::ProfileSet::load_dir(path)
            .map(|set| set.profiles().cloned().collect())
            .unwrap_or_default()
    } else {
        profile::load_file(path).into_iter().collect()
    };
    let facts = KernelFacts::probe();
    let backend = if facts.bpf_lsm_listed == Some(true) {
        BackendKind::BpfLsm
    } else {
        BackendKind::Fallback
    };
    let name = match backend {
        BackendKind::BpfLsm => "BPF LSM",
        BackendKind::Fallback => "the fallback (no bpf in this kernel's LSM list)",
    };
    for p in &profiles {
        for gap in profile_gaps(p, backend, &facts) {
            println!(
                "{}: warning: profile {} on {name}: {gap}",
                p.source.display(),
                p.name
            );
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let cfg = args.into_config()?;
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(Mutex::new(Status::default()));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopper = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            let _ = stop_tx.send(());
        }
    };
    tokio::spawn(stopper);
    let wait_stop = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };

    if let Some(addr) = &cfg.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        tokio::spawn(seawall::metrics::serve(
            listener,
            metrics.clone(),
            wait_stop(&stop_tx),
        ));
    }
    let notifier = Notifier::from_env();
    let ready = {
        let notifier = notifier.clone();
        move || {
            if let Some(n) = &notifier {
                let _ = n.notify(&[NotifyState::Ready, NotifyState::Status("enforcing".into())]);
                if let Some(every) = watchdog_interval() {
                    n.spawn_watchdog(every, || true);
                }
            }
        }
    };
    // The local API shares the event bus; the daemon hands it over once its sinks exist.
    let api_listener = api::bind(&cfg.api_socket)
        .with_context(|| format!("binding the local API socket {}", cfg.api_socket.display()))?;
    let (bus_tx, bus_rx) = tokio::sync::oneshot::channel();
    {
        let status = status.clone();
        let stop = wait_stop(&stop_tx);
        tokio::spawn(async move {
            if let Ok(bus) = bus_rx.await {
                api::serve(api_listener, status, bus, stop).await;
            }
        });
    }
    let result = daemon::run(
        cfg.clone(),
        metrics,
        status,
        wait_stop(&stop_tx),
        ready,
        bus_tx,
    )
    .await;
    if let Some(n) = &notifier {
        let _ = n.notify(&[NotifyState::Stopping]);
    }
    let _ = std::fs::remove_file(&cfg.api_socket);
    result
}

async fn run_status(api_socket: PathBuf, json: bool) -> anyhow::Result<()> {
    let mut r = api::request(&api_socket, "status").await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if json {
        print!("{line}");
    } else {
        let s: Status = serde_json::from_str(&line).context("the agent's status answer")?;
        print!("{s}");
    }
    Ok(())
}

/// Events live from the local agent (they stream as they happen, so this always follows).
async fn run_local_events(
    args: seawall::delivery::events_cli::EventsArgs,
    api_socket: PathBuf,
) -> anyhow::Result<()> {
    let mut r = api::request(&api_socket, "events").await?;
    let mut header = false;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let Ok(ev) = serde_json::from_str::<seawall_proto::event::Event>(&line) else {
            continue;
        };
        if let Some(want) = &args.container {
            let hit = ev
                .container
                .as_ref()
                .is_some_and(|c| c.id.starts_with(want.as_str()) || &c.name == want);
            if !hit {
                continue;
            }
        }
        if let Some(want) = &args.image {
            if !ev
                .container
                .as_ref()
                .is_some_and(|c| c.image.contains(want.as_str()))
            {
                continue;
            }
        }
        if args.severity.is_some_and(|s| ev.severity < s) {
            continue;
        }
        if args.json {
            print!("{line}");
        } else {
            if !header {
                println!("{}", seawall::delivery::events_cli::table_header());
                header = true;
            }
            println!("{}", seawall::delivery::events_cli::table_row(&ev));
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Uninstall { bpffs } => match seawall::pins::remove_all(&bpffs) {
            Ok(n) => {
                println!("removed {} ({n} program links detached)", bpffs.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("seawall: removing {}: {e}", bpffs.display());
                std::process::ExitCode::FAILURE
            }
        },
        Command::Profile {
            command: ProfileCommand::Check { path },
        } => {
            let report = profile::check_path(&path);
            print!("{report}");
            if report.is_ok() {
                print_coverage_gaps(&path);
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        command => {
            init_logging();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let result = rt.block_on(async move {
                match command {
                    Command::Agent(args) => run_agent(args).await,
                    Command::Status { api_socket, json } => run_status(api_socket, json).await,
                    Command::Events { args, api_socket } => {
                        if args.collector.is_some() {
                            seawall::delivery::events_cli::run(args).await
                        } else {
                            run_local_events(args, api_socket).await
                        }
                    }
                    Command::Profile { .. } | Command::Uninstall { .. } => unreachable!(),
                }
            });
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seawall: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
