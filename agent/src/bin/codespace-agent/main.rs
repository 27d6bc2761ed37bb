//! `codespace-agent`: the guest daemon (`run`) and the in-guest helpers.
//!
//! Exit codes: 0 success (also after SIGTERM/SIGINT drained the agent), 1 runtime failure,
//! 2 invalid command line or configuration.

// A command-line program reports on its standard streams.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use codespace_agent::guest::config::{self, Overrides};
use codespace_agent::guest::service::SecretsService;
use codespace_agent::guest::vault::{Owner, Vault, VaultConfig};
use codespace_agent::guest::vault_service::{forward_expiry, VaultService};
use codespace_agent::guest::{user, Agent};
use codespace_agent::seal::AgentKeyPair;

/// Guest agent for codespace VMs.
#[derive(Debug, Parser)]
#[command(name = "codespace-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the daemon: listen for the host, serve requests, push events.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file (JSON with comments).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address: vsock:any:PORT, vsock:CID:PORT or unix:PATH (default vsock:any:1023).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// State directory (default /run/codespace-agent).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Shared key file (its bytes are the key, at least 32 of them).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The codespace's remote user, owner of the environment file (name, UID or UID:GID).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODESPACE_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let overrides = Overrides {
        listen: args.listen,
        state_dir: args.state_dir,
        key_file: args.key_file,
        user: args.user,
    };
    let config = match config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("codespace-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let owner = match config.user.as_deref() {
        Some(name) => match user::resolve(name, std::path::Path::new("/etc/passwd")) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("codespace-agent: --user: {e}");
                return ExitCode::from(2);
            }
        },
        None => Owner::current(),
    };
    // One thread is plenty for a control channel and keeps the idle footprint small; blocking
    // work (file writes, /proc reads) goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("codespace-agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config, owner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("codespace-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: config::AgentConfig, owner: Owner) -> anyhow::Result<()> {
    let agent = Agent::new(config)?;
    let c = agent.config();
    let keys = AgentKeyPair::generate()?;
    let mut vc = VaultConfig::new(c.state_dir.clone(), owner);
    vc.export_token = c.token.export_github_token;
    vc.token_host.clone_from(&c.token.host);
    vc.expiry_lead = time::Duration::try_from(c.token.expiry_lead)?;
    let vault = Vault::new(vc, keys)?;
    let service: Arc<dyn SecretsService> = Arc::new(VaultService::new(vault.clone()));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let expiry = tokio::spawn(forward_expiry(
        vault,
        agent.events(),
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received");
        let _ = stop_tx.send(true);
    });
    agent.run(Some(service), stopped(stop_rx)).await?;
    let _ = expiry.await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the agent still stops on SIGTERM's default action.
            std::future::pending::<()>().await;
        }
    }
}
