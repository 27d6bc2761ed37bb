//! `codespace-agentctl`: the host and operator command line.
//!
//! Offline tools (`audit`, `policy`) need no agent; the others talk to an agent over a transport.
//! `anyhow` is used here and nowhere else; errors become documented exit codes.

// A command-line tool's job is to print its report and errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit;
mod connect;
mod lifecycle;
mod policy;
mod ports;
mod registry;
mod sanitize;
mod signing;
mod trail;

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
    /// Audit devcontainer.json files for what a hostile repository can do with them.
    Audit(audit::AuditArgs),
    /// Ask the policy library for a decision: one JSON object on stdin (or --input), one out.
    Policy(policy::PolicyArgs),
    /// Ports of the codespace: list, visibility, forward (talks to an agent).
    #[command(subcommand)]
    Ports(ports::PortsCommand),
    /// Container registry credentials for Docker in the codespace (talks to an agent).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Commit signing: answer the agent's signing requests with a local key (talks to an agent).
    #[command(subcommand)]
    Signing(signing::SigningCommand),
    /// Answer one signing request by hand: put a signature, or refuse (talks to an agent).
    #[command(subcommand)]
    Signature(signing::SignatureCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(cmd) => connect::run(&cli.connect, cmd),
        Command::Audit(args) => audit::run(&args),
        Command::Policy(args) => policy::run(&args),
        Command::Ports(cmd) => ports::run(&cli.connect, cmd),
        Command::Registry(cmd) => registry::run(&cli.connect, cmd),
        Command::Signing(cmd) => signing::run_signing(&cli.connect, cmd),
        Command::Signature(cmd) => signing::run_signature(&cli.connect, cmd),
    }
}
