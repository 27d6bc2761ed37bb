//! `codespace-agentctl`: the host and operator command line.
//!
//! Offline tools (`audit`, `policy`) need no agent; the others talk to an agent over a transport.
//! `anyhow` is used here and nowhere else; errors become documented exit codes.

// A command-line program reports on its standard streams.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod connect;

use clap::Parser;

/// Host and operator command line for codespace-agent.
#[derive(Debug, Parser)]
#[command(name = "codespace-agentctl", version, about)]
struct Cli {
    #[command(flatten)]
    connect: connect::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Commands that talk to a running agent (`--connect ADDR [--key-file FILE]`).
    #[command(flatten)]
    Agent(connect::AgentCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(cmd) => connect::run(&cli.connect, cmd),
    }
}
