//! `seawall`: the agent daemon and its command-line tools (see `seawall::cli`).

fn main() -> std::process::ExitCode {
    seawall::cli::main()
}
