//! `codespace-agent`: the guest daemon (`run`) and the in-guest helpers.
//!
//! Exit codes of `run`: 0 success (also after SIGTERM/SIGINT drained the agent), 1 runtime
//! failure, 2 invalid command line or configuration. `git-credential`: 0, or 1 when the broker
//! cannot be asked. `docker-credential`: 0, or 1 with Docker's message on stdout (the
//! credential helper protocol). `git-sign`: 0 signed (`--enabled`: on), 1 not signed (off), 2
//! arguments that are not git's. `exec`: the command's own status, or 127 when it cannot be
//! started.

// A command-line program reports on its standard streams.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use codespace_agent::guest::broker::{Broker, BrokerConfig};
use codespace_agent::guest::config::{self, Overrides};
use codespace_agent::guest::privsep::{self, Monitor, Role};
use codespace_agent::guest::registry::DockerConfigSync;
use codespace_agent::guest::service::SecretsService;
use codespace_agent::guest::signing::{self, broker::SigningBroker, SigningService};
use codespace_agent::guest::vault::{Owner, Vault, VaultConfig};
use codespace_agent::guest::vault_service::{forward_expiry, VaultService};
use codespace_agent::guest::{lifecycle, user, Agent};
use codespace_agent::seal::AgentKeyPair;

/// Threads of the blocking pool (tokio's default is 512): see `main`.
const MAX_BLOCKING_THREADS: usize = 8;
/// How long an idle blocking thread stays (tokio's default is 10 s).
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// Guest agent for codespace VMs.
#[derive(Debug, Parser)]
#[command(name = "codespace-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the daemon: listen for the host, serve requests, push events. Started as root, it
    /// forks its privileged side; with --privileged-socket it is the network side of a split
    /// install and connects to the privileged unit.
    Run(RunArgs),
    /// The privileged side as a service of its own (the codespace-agent-privileged unit):
    /// serves the network side that connects to --privileged-socket.
    Privileged(RunArgs),
    /// git credential helper: asks the agent's broker for the current token.
    GitCredential {
        /// State directory of the running agent.
        #[arg(long, value_name = "DIR", default_value = config::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// git's action: get, store or erase.
        action: String,
    },
    /// Docker credential helper (installed as docker-credential-codespace): asks the agent's
    /// broker for the registry credentials the host delivered.
    DockerCredential {
        /// State directory of the running agent.
        #[arg(long, value_name = "DIR", default_value = config::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Docker's action: get, list, store, erase or version.
        action: String,
    },
    /// git's signing program (gpg.ssh.program, gpg.program; installed as codespace-git-sign):
    /// asks the agent's signing broker, and the host signs. `--enabled` exits 0 when signing
    /// is on for this codespace, 1 when not.
    #[command(disable_help_flag = true)]
    GitSign {
        /// `[--state-dir DIR]` then git's arguments (`-Y sign -n git -f KEY FILE` or
        /// `--status-fd=2 -bsau KEY`), or `--enabled`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a command with the codespace's environment (secrets, token) applied.
    Exec {
        /// State directory of the running agent.
        #[arg(long, value_name = "DIR", default_value = config::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<std::ffi::OsString>,
    },
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
    /// The privileged side's socket: `run` connects to it (and must not be root), `privileged`
    /// listens on it (default STATE_DIR/privileged.sock).
    #[arg(long, value_name = "PATH")]
    privileged_socket: Option<PathBuf>,
}

/// How long `run --privileged-socket` waits for the privileged side's socket.
const PRIVILEGED_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs go to stderr (the journal under systemd). `CODESPACE_AGENT_LOG` sets the level:
/// error, warn, info (default), debug or trace. A plain level filter, not a directive parser:
/// it keeps the daemon small.
fn init_logging() {
    use std::io::IsTerminal as _;
    let level = std::env::var("CODESPACE_AGENT_LOG")
        .ok()
        .and_then(|v| {
            v.trim()
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        })
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Privileged(args) => privileged_service(args),
        Command::GitCredential { state_dir, action } => {
            match codespace_agent::credential_helper::run(
                &state_dir,
                &action,
                std::io::stdin().lock(),
                std::io::stdout().lock(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("codespace-agent git-credential: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::DockerCredential { state_dir, action } => {
            match codespace_agent::docker_credential::run(
                &state_dir,
                &action,
                std::io::stdin().lock(),
                std::io::stdout().lock(),
                std::io::stderr().lock(),
            ) {
                codespace_agent::docker_credential::Status::Success => ExitCode::SUCCESS,
                codespace_agent::docker_credential::Status::Failure => ExitCode::from(1),
            }
        }
        Command::GitSign { args } => git_sign(&args),
        Command::Exec { state_dir, argv } => {
            // Returns only if the command could not be started.
            let e = codespace_agent::exec::run(&state_dir, &argv);
            eprintln!("codespace-agent exec: {e}");
            ExitCode::from(127)
        }
    }
}

/// `git-sign`: git's signing program; exit 0 signed (or on, for `--enabled`), 1 not signed
/// (or off), 2 arguments that are not git's.
fn git_sign(args: &[std::ffi::OsString]) -> ExitCode {
    use codespace_agent::git_sign;
    let default_state = std::path::Path::new(config::DEFAULT_STATE_DIR);
    let result = git_sign::parse(args, default_state).and_then(|(state, invocation)| {
        git_sign::run(
            &state,
            invocation,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
            std::io::stderr().lock(),
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codespace-agent git-sign: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logging, memory protection, the configuration and the env file's owner: what both sides
/// do first. `Err` is the exit code (2: invalid configuration).
fn start(args: &RunArgs) -> Result<(config::AgentConfig, Owner), ExitCode> {
    init_logging();
    // Before any secret is read or received.
    for (what, e) in codespace_agent::guest::system::protect_memory() {
        tracing::warn!(error = %e, "cannot set {what}: a crash could leave a core dump");
    }
    let overrides = Overrides {
        listen: args.listen.clone(),
        state_dir: args.state_dir.clone(),
        key_file: args.key_file.clone(),
        user: args.user.clone(),
    };
    let config = config::load(args.config.as_deref(), &overrides).map_err(|e| {
        eprintln!("codespace-agent: {e}");
        ExitCode::from(2)
    })?;
    let owner = match config.user.as_deref() {
        Some(name) => user::Account::lookup(name)
            .map(|a| a.owner())
            .map_err(|e| {
                eprintln!("codespace-agent: --user: {e}");
                ExitCode::from(2)
            })?,
        None => Owner::current(),
    };
    Ok((config, owner))
}

fn run(args: RunArgs) -> ExitCode {
    let (config, owner) = match start(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Before any thread exists: started as root, the privileged side forks the network side;
    // started by a unit of its own, the network side connects to the privileged one.
    let role = match &args.privileged_socket {
        Some(path) => privsep::connect(path, PRIVILEGED_WAIT),
        None => privsep::split(config.network_user.as_deref()),
    };
    match role {
        Ok(Role::Privileged {
            network,
            network_user,
            sock,
        }) => return privileged(config, owner, network, network_user, sock),
        Ok(Role::Network(_) | Role::Single) => {}
        Err(e) => {
            eprintln!("codespace-agent: {e}");
            return ExitCode::from(2);
        }
    }
    // One thread is plenty for a control channel and keeps the idle footprint small; blocking
    // work (file writes, /proc reads, `status`) goes to tokio's blocking pool. That pool is
    // bounded well below tokio's default of 512 threads: a flood of pipelined requests queues
    // for a few threads instead of starting hundreds (each with its stack and malloc arena),
    // and idle threads leave soon, giving their memory back.
    let runtime = match build_runtime() {
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

/// The runtime of either side: one thread, and a small blocking pool (see `run`).
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
}

/// What both forms of the privileged side set up: the runtime (for waiting on commands and
/// relaying their output), the state directory, the organization policy, the sandbox, and the
/// monitor that serves the network side.
fn privileged_setup(
    config: config::AgentConfig,
    owner: Owner,
    network_user: Owner,
) -> Result<(tokio::runtime::Runtime, Monitor), (&'static str, String)> {
    let runtime = build_runtime().map_err(|e| ("cannot start the runtime", e.to_string()))?;
    privsep::prepare_state(&config.state_dir, network_user)
        .map_err(|e| ("state directory", e.to_string()))?;
    let org_policy = lifecycle::read_org_policy(&config).map_err(|e| ("lifecycle", e))?;
    let launcher = lifecycle::launcher(&config);
    let monitor = Monitor::new(
        config,
        owner,
        launcher,
        org_policy,
        runtime.handle().clone(),
    );
    Ok((runtime, monitor))
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{what}: {e}");
    eprintln!("codespace-agent: {what}: {e}");
    ExitCode::from(1)
}

/// The privileged side of a forked agent: serves the network side's requests on a thread of
/// its own, forwards termination signals, and exits with the network side's status once it is
/// gone and the firewall is removed.
fn privileged(
    config: config::AgentConfig,
    owner: Owner,
    network: rustix::process::Pid,
    network_user: Owner,
    sock: std::os::unix::net::UnixStream,
) -> ExitCode {
    let (runtime, mut monitor) = match privileged_setup(config, owner, network_user) {
        Ok(r) => r,
        Err((what, e)) => {
            let _ = rustix::process::kill_process(network, rustix::process::Signal::KILL);
            return failed(what, &e);
        }
    };
    let server = std::thread::spawn(move || {
        if let Err(e) = monitor.serve(&sock) {
            tracing::warn!(error = %e, "privsep channel failed");
        }
        // Dropped here, on this thread: the firewall table goes with it.
        drop(monitor);
    });
    let status = runtime.block_on(privsep::monitor::supervise(network));
    // The network side is gone, so its end of the channel is closed and the server returns.
    let _ = server.join();
    let _ = codespace_agent::guest::system::sd_notify("STOPPING=1");
    tracing::info!(status, "stopped");
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// `codespace-agent privileged`: the privileged side as a unit of its own. Listens on the
/// privileged socket (owned by the network user, mode 0600; peers checked by `SO_PEERCRED`),
/// serves one network side at a time (a restarted network unit reconnects and gets the same
/// listener), and on `SIGTERM` removes the firewall and exits 0.
fn privileged_service(args: RunArgs) -> ExitCode {
    let (config, owner) = match start(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("codespace-agent privileged: must run as root");
        return ExitCode::from(2);
    }
    let network_user = match config.network_user.as_deref().map(privsep::network_owner) {
        Some(Ok(u)) => u,
        Some(Err(e)) => {
            eprintln!("codespace-agent: {e}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("codespace-agent privileged: network_user is \"none\": nothing to separate");
            return ExitCode::from(2);
        }
    };
    let path = args
        .privileged_socket
        .clone()
        .unwrap_or_else(|| privsep::default_socket(&config.state_dir));
    let (runtime, monitor) = match privileged_setup(config, owner, network_user) {
        Ok(r) => r,
        Err((what, e)) => return failed(what, &e),
    };
    let listener = match privsep::bind_privileged_socket(&path, network_user) {
        Ok(l) => l,
        Err(e) => return failed("privileged socket", &e),
    };
    let shared = Arc::new(std::sync::Mutex::new(Some(monitor)));
    let served = shared.clone();
    std::thread::spawn(move || {
        privsep::monitor::accept_network_sides(&served, &listener, network_user.uid);
    });
    tracing::info!(socket = %path.display(), "privileged side ready");
    let _ =
        codespace_agent::guest::system::sd_notify("READY=1\nSTATUS=waiting for the network side");
    runtime.block_on(wait_for_signal());
    tracing::info!("termination signal received");
    // Taken under the lock, between two requests; dropping it removes the firewall.
    let monitor = shared.lock().ok().and_then(|mut m| m.take());
    drop(monitor);
    let _ = std::fs::remove_file(&path);
    let _ = codespace_agent::guest::system::sd_notify("STOPPING=1");
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn serve(config: config::AgentConfig, owner: Owner) -> anyhow::Result<()> {
    let mut agent = Agent::new(config)?;
    let config = agent.config().clone();
    let c = &config;
    let keys = AgentKeyPair::generate()?;
    let mut vc = VaultConfig::new(c.state_dir.clone(), owner);
    vc.export_token = c.token.export_github_token;
    vc.token_host.clone_from(&c.token.host);
    vc.expiry_lead = time::Duration::try_from(c.token.expiry_lead)?;
    let vault = Vault::new(vc, keys)?;
    agent.set_secret_source(Arc::new(vault.clone()));
    let docker = DockerConfigSync::for_agent(c.docker_config_dir.as_deref(), owner);
    let service: Arc<dyn SecretsService> =
        Arc::new(VaultService::new(vault.clone()).with_docker_config(docker));
    // The remote user may ask the broker unless the config names the allowed uids.
    let uids = if c.credential_uids.is_empty() {
        vec![owner.uid]
    } else {
        c.credential_uids.clone()
    };
    let broker_config = BrokerConfig::new(&c.state_dir, uids);
    // The signing broker admits callers by the credential broker's rules, on its own socket.
    let signing = SigningService::new(
        c.signing.clone(),
        agent.events(),
        signing::writer_for(&c.signing),
    );
    agent.set_signing(signing.clone());
    let signing_broker = SigningBroker::start(&broker_config, &c.state_dir, signing)?;
    let broker = match privsep::client() {
        Some(m) => Broker::from_listener(broker_config, vault.clone(), m.broker_socket()?)?,
        None => Broker::bind(broker_config, vault.clone())?,
    }
    .with_trail(agent.events());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let expiry = tokio::spawn(forward_expiry(
        vault,
        agent.events(),
        stopped(stop_rx.clone()),
    ));
    let broker = tokio::spawn(broker.serve(stopped(stop_rx.clone())));
    let signing_broker = tokio::spawn(signing_broker.serve(stopped(stop_rx.clone())));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received");
        let _ = stop_tx.send(true);
    });
    agent.run(Some(service), stopped(stop_rx)).await?;
    let _ = expiry.await;
    if let Ok(Err(e)) = broker.await {
        tracing::warn!(error = %e, "credential broker stopped with an error");
    }
    let _ = signing_broker.await;
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
