//! `seawall-micro --profile FILE [--output PATH] [--collector URL …] -- CMD ARGS…`
//!
//! Seawall where there is no host to run the agent on (Fargate, Cloud Run, ACI): a static
//! binary that runs as the container's entrypoint (PID 1, or under one), needs no capability,
//! and applies a Seawall profile to `CMD` and everything it starts, enforced by the kernel —
//! Landlock and a seccomp filter with user notification, under no_new_privs — so a static
//! binary making raw syscalls from many threads meets the same walls as a libc program.

mod confine;
mod events;
mod fs;
mod notify;
mod plan;
mod probe;
mod supervise;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;
use seawall_delivery::{CollectorConfig, DEFAULT_SPOOL_MAX_BYTES};
use seawall_profile::{Mode, Profile};
use seawall_proto::event::{Action, Container};

use confine::syscalls::SupervisorIds;
use events::{Events, Identity, Output};
use fs::compile::{compile, Compiled, FsIntent};
use fs::walk::Snapshot;
use plan::Plan;
use supervise::{launch, pid1};

/// Exit code when seawall-micro itself cannot start the command (as `env`, `timeout` do).
const EXIT_WRAPPER: i32 = 125;
/// Entries the start snapshot reads at most.
const WALK_LIMIT: usize = 1_000_000;

#[derive(Parser)]
#[command(
    name = "seawall-micro",
    version,
    about = "Seawall inside a container: a profile enforced on CMD and its children by Landlock and seccomp, with no privileges",
    after_help = "Exit status: CMD's own, or 128+N when a signal N killed it; 125 when seawall-micro could not start it \
                  (bad profile, a control this kernel cannot enforce), 126/127 when CMD cannot be executed / is not found."
)]
struct Args {
    /// The profile (agent profile language; `images` may be left out).
    #[arg(long, value_name = "FILE")]
    profile: PathBuf,
    /// Print how each control is enforced on this kernel, and what is degraded, then exit
    /// (1 when the profile could not be enforced here).
    #[arg(long)]
    check: bool,
    /// Where events go: a file appended to, or `-` for stdout [default: stderr].
    #[arg(long, value_name = "PATH|-")]
    output: Option<String>,
    /// Stream events to this collector (https://HOST:PORT); they are spooled on disk first.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// CA certificate that signed the collector's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    collector_ca: Option<PathBuf>,
    /// This client's certificate (PEM); its subject is the sender's identity.
    #[arg(long, value_name = "FILE")]
    collector_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, value_name = "FILE")]
    collector_key: Option<PathBuf>,
    /// Talk to the collector without TLS (local trials only).
    #[arg(long)]
    collector_insecure: bool,
    /// Spool directory for collector delivery; put it on a volume to survive restarts.
    #[arg(long, value_name = "DIR", default_value = "/tmp/seawall-micro/spool")]
    spool_dir: PathBuf,
    /// Spool size limit in bytes; the oldest events are dropped (and reported) beyond it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SPOOL_MAX_BYTES)]
    spool_max_bytes: u64,
    /// Node name in events and the collector identity [default: the host name].
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// `container.id` in events [default: the host name, which Docker sets to the id].
    #[arg(long, value_name = "ID", env = "SEAWALL_CONTAINER_ID")]
    container_id: Option<String>,
    /// `container.name` in events.
    #[arg(long, value_name = "NAME", env = "SEAWALL_CONTAINER_NAME")]
    container_name: Option<String>,
    /// `container.image` in events (the image reference).
    #[arg(long, value_name = "REF", env = "SEAWALL_IMAGE")]
    image: Option<String>,
    /// `container.image_id` in events (the image digest).
    #[arg(long, value_name = "DIGEST", env = "SEAWALL_IMAGE_ID")]
    image_id: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required_unless_present = "check", value_name = "CMD")]
    cmd: Vec<OsString>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn load_profile(path: &Path) -> anyhow::Result<Profile> {
    match seawall_profile::load_file_with_warnings(path) {
        Ok((p, warnings)) => {
            for w in warnings {
                // Being image-less is what a micro profile is; the rest is worth saying.
                if !w.message.starts_with("no `images`") {
                    eprintln!("{w}");
                }
            }
            Ok(p)
        }
        Err(report) => {
            for d in &report.diagnostics {
                eprintln!("{d}");
            }
            bail!("{}: {}", path.display(), report.summary());
        }
    }
}

/// The filesystem part of the plan on the snapshot.
fn compile_fs(profile: &Profile, plan: &Plan, snap: &Snapshot) -> Compiled {
    let enforce = |m: Mode| m == Mode::Enforce;
    let files = &profile.files;
    compile(
        snap,
        &FsIntent {
            abi: plan.features.landlock_abi,
            drift: plan.landlock_drift,
            drift_allow: &profile.drift.allow,
            exec_allow: plan
                .landlock_exec
                .then_some(profile.exec.allow.as_deref())
                .flatten(),
            exec_deny: if plan.landlock_exec {
                &profile.exec.deny
            } else {
                &[]
            },
            deny: (plan.landlock_files && enforce(files.mode) && !files.deny.is_empty())
                .then_some(&files.deny),
            read_only: (plan.landlock_files && enforce(files.mode) && !files.read_only.is_empty())
                .then_some(&files.read_only),
            shut_proc_writes: plan.landlock_drift && !plan.anonymous_exec,
        },
    )
}

fn startup_message(plan: &Plan, fs: &Compiled) -> String {
    let mut parts: Vec<String> = plan
        .reports
        .iter()
        .filter(|r| r.mode != Mode::Off)
        .map(|r| format!("{} {} via {}", r.control, r.mode, r.backend))
        .collect();
    parts.push(format!("{} Landlock rules", fs.rules.len()));
    let degraded: Vec<String> = plan
        .reports
        .iter()
        .flat_map(|r| {
            r.degraded
                .iter()
                .map(move |d| format!("{}: {d}", r.control))
        })
        .collect();
    let mut m = format!("micro started: {}", parts.join("; "));
    if !degraded.is_empty() {
        m.push_str(&format!("; degraded: {}", degraded.join("; ")));
    }
    m
}

/// A persona with READ_IMPLIES_EXEC (inherited across exec) makes every readable mapping
/// executable without PROT_EXEC in the call: the tree must not start with it (the filter keeps
/// it from setting it again).
fn clear_read_implies_exec() {
    let flag = confine::syscalls::READ_IMPLIES_EXEC;
    // SAFETY: 0xffffffff only reads the persona; setting it back changes nothing else.
    unsafe {
        let persona = libc::personality(0xffff_ffff);
        if persona >= 0 && persona as u32 & flag != 0 {
            libc::personality(libc::c_ulong::from(persona as u32 & !flag));
        }
    }
}

fn main() {
    // Before any thread exists, so every thread (and the tree, until it execs) has them blocked
    // and only the main thread takes them.
    pid1::block_signals();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEAWALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("seawall-micro: {e:#}");
            std::process::exit(EXIT_WRAPPER);
        }
    }
}

fn run(args: Args) -> anyhow::Result<i32> {
    let profile = load_profile(&args.profile)?;
    let plan = Plan::new(&profile, probe::Features::probe());
    let needs_snapshot = plan.drift != Mode::Off || plan.landlock_exec || plan.landlock_files;
    let started = std::time::Instant::now();
    let snap = if needs_snapshot {
        Snapshot::take(Path::new("/"), WALK_LIMIT).context("reading the filesystem at start")?
    } else {
        Snapshot::default()
    };
    let compiled = if needs_snapshot {
        compile_fs(&profile, &plan, &snap)
    } else {
        Compiled::default()
    };
    let at_start = snap.regular_files();
    let snapshot_entries = snap.nodes.len();
    drop(snap);
    if args.check {
        print!(
            "profile {} ({}): {}",
            profile.name,
            args.profile.display(),
            plan.describe()
        );
        println!(
            "snapshot: {snapshot_entries} entries, {} Landlock rules, {} ms",
            compiled.rules.len(),
            started.elapsed().as_millis()
        );
        for u in &compiled.uncovered {
            println!("  not covered: {u}");
        }
        let refusals = plan.refusals();
        for r in &refusals {
            println!("refused: {r} (set that control's mode to \"audit\" to run without it)");
        }
        return Ok(i32::from(!refusals.is_empty()));
    }
    let refusals = plan.refusals();
    if !refusals.is_empty() {
        bail!(
            "this kernel cannot enforce the profile as written: {}; set those controls' mode to \
             \"audit\" to run without them (seawall-micro --check shows every control)",
            refusals.join("; ")
        );
    }

    if plan.watch_code_maps {
        clear_read_implies_exec();
    }
    let me = std::process::id();
    if me != 1 {
        // Orphans of the tree come here to be reaped, as they would to PID 1.
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let sup = SupervisorIds {
        pid: me,
        // SAFETY: getpgrp cannot fail.
        pgid: unsafe { libc::getpgrp() } as u32,
    };
    let filter = confine::syscalls::filter_spec(&plan, sup)
        .assemble()
        .context("assembling the seccomp filter")?;
    let ruleset = confine::ruleset::build(&compiled, &plan.tcp, plan.scopes)?;
    let tree_layer = if plan.scopes.signal {
        Some(confine::ruleset::tree_layer()?)
    } else {
        None
    };

    let node = args.node.clone().unwrap_or_else(hostname);
    let id = args.container_id.clone().unwrap_or_else(hostname);
    let who = Identity {
        node: node.clone(),
        container: Container {
            name: args.container_name.clone().unwrap_or_else(|| id.clone()),
            id,
            image: args.image.clone().unwrap_or_default(),
            image_id: args.image_id.clone().unwrap_or_default(),
            runtime: "micro".into(),
            ..Container::default()
        },
    };
    let collector = args.collector.clone().map(|url| CollectorConfig {
        url,
        ca: args.collector_ca.clone(),
        cert: args.collector_cert.clone(),
        key: args.collector_key.clone(),
        insecure: args.collector_insecure,
        spool_dir: args.spool_dir.clone(),
        spool_max_bytes: args.spool_max_bytes,
        agent_id: Some(node),
    });
    let (events, writer) = Events::start(Output::parse(args.output.as_deref()), collector, who)?;
    events.agent(
        if plan.reports.iter().any(|r| !r.degraded.is_empty()) {
            Action::Audited
        } else {
            Action::Allowed
        },
        startup_message(&plan, &compiled),
    );

    let cmd = launch::Command::resolve(&args.cmd)?;
    let listener_wanted = plan.features.user_notif;
    let launched = launch::launch(
        &cmd,
        ruleset,
        tree_layer,
        filter,
        listener_wanted,
        plan.features.wait_killable,
    )?;
    // The tree cannot read or trace a non-dumpable process (and Landlock already keeps it
    // from this one); the tree itself execs and so becomes dumpable again.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let sockets = Arc::new(notify::SocketTable::default());
    if let Some(l) = launched.listener {
        let ctx = Arc::new(notify::Context {
            listener: Arc::new(notify::Listener::new(l)),
            plan: plan.clone(),
            profile: profile.clone(),
            fs: compiled,
            at_start,
            events: events.clone(),
            sockets: sockets.clone(),
            domain: launched.domain.clone(),
        });
        std::thread::Builder::new()
            .name("seawall-notify".into())
            .spawn(move || notify::serve(ctx))
            .context("starting the notification thread")?;
    }
    if let Err(errno) = launch::exec_result(&launched.exec_status) {
        let err = std::io::Error::from_raw_os_error(errno);
        events.agent(
            Action::Blocked,
            format!(
                "micro: cannot execute {}: {err}",
                cmd.path.to_string_lossy()
            ),
        );
        eprintln!(
            "seawall-micro: cannot execute {}: {err}",
            cmd.path.to_string_lossy()
        );
        let _ = pid1::supervise(launched.child, || {});
        writer.finish(events);
        return Ok(if errno == libc::ENOENT { 127 } else { 126 });
    }
    let exit = pid1::supervise(launched.child, || sockets.collect());
    if me != 1 {
        pid1::kill_descendants(pid1::DESCENDANTS_GRACE);
    }
    events.agent(
        Action::Allowed,
        format!(
            "micro stopped: {} exited with {}",
            cmd.path.to_string_lossy(),
            exit.code()
        ),
    );
    writer.finish(events);
    Ok(exit.code())
}
