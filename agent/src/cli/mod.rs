//! The `seawall` command line: clap definitions and one function per subcommand.

mod agent;
mod learn;
mod local;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    daemon::config::{defaults, AgentOptions},
    kernel::pins,
};

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
    // Boxed: its many options would make every other subcommand as large.
    Agent(Box<AgentOptions>),
    /// Show what the running agent is doing: backends, containers and their profiles, drops.
    Status {
        /// Local API socket of the agent.
        #[arg(long, default_value = defaults::API_SOCKET)]
        api_socket: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show events: from the collector (--collector), or live from the local agent.
    Events {
        #[command(flatten)]
        args: seawall_delivery::events_cli::EventsArgs,
        /// Local API socket of the agent (used when no --collector is given).
        #[arg(long, default_value = defaults::API_SOCKET)]
        api_socket: PathBuf,
    },
    /// Remove everything the agent pinned in bpffs: its programs stop enforcing.
    Uninstall {
        /// bpffs directory of the agent.
        #[arg(long, default_value = defaults::BPFFS)]
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
    /// Write a profile from what the running agent saw the images' containers do: exact
    /// paths and destinations, generalised only where many siblings were seen, each entry
    /// commented with how often and when it was seen. Review it, then put it in the profiles
    /// directory.
    Learn {
        /// Image reference glob or digest to learn from (they become the profile's `images`);
        /// repeat for more.
        #[arg(long = "image", value_name = "GLOB", required = true)]
        images: Vec<String>,
        /// Only what was last seen within this long, e.g. `2h` or `7d`.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// The profile's mode: `audit` or `enforce`.
        #[arg(long, value_name = "MODE", default_value = "audit")]
        mode: String,
        /// The profile's name [default: from the first image].
        #[arg(long)]
        name: Option<String>,
        /// Write the profile to this file (atomically) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Local API socket of the agent.
        #[arg(long, default_value = defaults::API_SOCKET)]
        api_socket: PathBuf,
    },
    /// What changes in what a profile allows and enforces, entry by entry (comments, order
    /// and spelling do not count). Exit status 0 when the same, 1 when they differ.
    Diff {
        /// The profile as it was.
        old: PathBuf,
        /// The profile as it is (e.g. a new `profile learn`).
        new: PathBuf,
    },
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

/// Parses the command line and runs the subcommand; the exit status says whether it worked.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Uninstall { bpffs } => uninstall(&bpffs),
        Command::Profile {
            command: ProfileCommand::Check { path },
        } => profile_check(&path),
        Command::Profile {
            command: ProfileCommand::Diff { old, new },
        } => learn::diff(&old, &new),
        Command::Profile {
            command:
                ProfileCommand::Learn {
                    images,
                    since,
                    mode,
                    name,
                    output,
                    api_socket,
                },
        } => async_command(learn::learn(learn::LearnArgs {
            images,
            since,
            mode,
            name,
            output,
            api_socket,
        })),
        Command::Agent(options) => async_command(async move { agent::run(options.load()?).await }),
        Command::Status { api_socket, json } => async_command(local::status(api_socket, json)),
        Command::Events { args, api_socket } => async_command(async move {
            if args.collector.is_some() {
                seawall_delivery::events_cli::run(args).await
            } else {
                local::events(args, api_socket).await
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("seawall: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand that needs the async runtime, with logging to stderr.
fn async_command(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!(e).context("starting the async runtime"))?;
    rt.block_on(command)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `seawall uninstall`: every pin under `bpffs` goes, so the programs stop enforcing. Processes
/// the kernel still holds for an agent that never came back are resumed first.
fn uninstall(bpffs: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let resumed = crate::kernel::recovery::resume_all_held(bpffs);
    if resumed > 0 {
        println!("resumed {resumed} processes the kernel held for the agent");
    }
    let n = pins::remove_all(bpffs)
        .map_err(|e| anyhow::anyhow!(e).context(format!("removing {}", bpffs.display())))?;
    println!("removed {} ({n} program links detached)", bpffs.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `seawall profile check`: every problem as file:line:col; exit status 1 on an error.
fn profile_check(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let report = seawall_profile::check_path(path);
    print!("{report}");
    Ok(if report.is_ok() {
        print_coverage_gaps(path);
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `profile check`'s warnings: what the profiles ask for that this kernel's backend cannot
/// enforce, with the kernel feature that would close each gap. The backend is what this kernel
/// offers (`bpf` in its LSM list), which the running agent confirms by loading.
fn print_coverage_gaps(path: &std::path::Path) {
    use crate::kernel::{
        coverage::{profile_gaps, BackendKind, KernelFacts},
        syscall_hooks::SyscallHooks,
    };
    let profiles: Vec<seawall_profile::Profile> = if path.is_dir() {
        seawall_profile::ProfileSet::load_dir(path)
            .map(|set| set.profiles().cloned().collect())
            .unwrap_or_default()
    } else {
        seawall_profile::load_file(path).into_iter().collect()
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
        // The agent's config is not read here: what its opt-in hooks would close is named in
        // each warning instead.
        for gap in profile_gaps(p, backend, &facts, &SyscallHooks::Off) {
            println!(
                "{}: warning: profile {} on {name}: {gap}",
                p.source.display(),
                p.name
            );
        }
    }
}
