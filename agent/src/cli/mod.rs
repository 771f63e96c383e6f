//! The `seawall` command line: clap definitions and one function per subcommand.

mod agent;
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
    Agent(AgentOptions),
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
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
