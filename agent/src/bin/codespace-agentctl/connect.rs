//! The connection commands of `codespace-agentctl`: they talk to a running agent.
//!
//! Exit codes: 0 success, 1 the agent answered with an error, 2 invalid arguments or input
//! files, 3 the agent could not be reached or the handshake failed, 4 the agent violated the
//! protocol (the guest may be compromised).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use codespace_agent::host::{Client, ClientError, ConnectAddr, ConnectOptions};
use codespace_agent::seal::seal;
use codespace_agent::wire::SharedKey;
use serde_json::{json, Map, Value};

/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options shared by the connection commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Agent address: vsock:CID:PORT, hybrid:UDS_PATH:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR", global = true)]
    pub connect: Option<String>,
    /// Shared key file (its bytes are the key, at least 32 of them).
    #[arg(long, value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Give up connecting after this many seconds (the agent may not listen yet).
    #[arg(long, value_name = "SECONDS", global = true, default_value_t = 30)]
    pub connect_timeout: u64,
}

/// Commands that talk to an agent.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Print the agent's status as JSON.
    Status,
    /// Round trip a ping and print the latency.
    Ping,
    /// Tell the agent someone is using the codespace (the web editor): the idle clock
    /// restarts. Prints the activity state.
    Activity,
    /// Deliver the repository token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Deliver secrets (sealed to the agent's key on this side).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Send a lifecycle event.
    Session(SessionArgs),
    /// Print the agent's events as JSON lines until interrupted.
    Events,
    /// Print the audit trail as JSON lines: what the agent kept after `--since`, then with
    /// `--follow` new records as they happen.
    Trail(crate::trail::TrailArgs),
    /// Lifecycle commands, extension installs and the configuration watch.
    #[command(subcommand)]
    Lifecycle(crate::lifecycle::LifecycleCommand),
}

/// `token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Replace the token.
    Put {
        /// File holding the token (a trailing newline is ignored).
        #[arg(long, value_name = "F")]
        token_file: PathBuf,
        /// Expiry, RFC 3339 (e.g. 2026-11-26T08:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires_at: String,
        /// The token's scope as printed by `codespace-agentctl policy token-scope`.
        #[arg(long, value_name = "F")]
        scope_file: PathBuf,
        /// Git host the token is for (default: the agent's configured host).
        #[arg(long, value_name = "H")]
        host: Option<String>,
    },
}

/// `secrets` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Deliver the complete set of secrets: a JSON object name → value.
    Put {
        /// The JSON file.
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
}

/// `session` arguments.
#[derive(Debug, clap::Args)]
pub struct SessionArgs {
    /// The lifecycle event.
    #[arg(value_enum)]
    pub event: SessionEventArg,
    /// The creator's login (create only).
    #[arg(long)]
    pub owner: Option<String>,
    /// The organization (create only).
    #[arg(long)]
    pub organization: Option<String>,
    /// The repository, OWNER/NAME (create only).
    #[arg(long)]
    pub repository: Option<String>,
    /// Lifecycle trust facts (create only).
    #[command(flatten, next_help_heading = "Lifecycle trust facts (create only)")]
    pub facts: TrustFactArgs,
    /// Commit signing (create only; absent: off).
    #[command(flatten, next_help_heading = "Commit signing (create only)")]
    pub signing: crate::signing::SessionSigningArgs,
}

/// The lifecycle trust facts, as `session create` records them and `lifecycle run` /
/// `lifecycle extensions` override them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustFactArgs {
    /// The creator's access to the repository: none, read, triage, write, maintain or admin.
    #[arg(long, value_name = "LEVEL")]
    pub creator_access: Option<String>,
    /// The codespace is for a pull request from a fork.
    #[arg(long)]
    pub fork_pull_request: bool,
    /// The codespace is a prebuild (runs stop after updateContentCommand; never trusted; no
    /// secrets or registry credentials). `--prebuild=false` on `session create` ends the
    /// prebuild: its token, registry credentials and secrets are wiped.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub prebuild: Option<bool>,
}

impl TrustFactArgs {
    /// Adds the facts given to `m` under their wire names (the same in `session` and
    /// `lifecycle_*` requests); facts not given are left out, so the agent's defaults apply.
    pub fn insert_into(&self, m: &mut Map<String, Value>) {
        if let Some(a) = &self.creator_access {
            m.insert("creator_access".into(), a.clone().into());
        }
        if self.fork_pull_request {
            m.insert("pull_request_from_fork".into(), true.into());
        }
        if let Some(prebuild) = self.prebuild {
            m.insert("prebuild".into(), prebuild.into());
        }
    }
}

/// Lifecycle events.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SessionEventArg {
    /// Created: pending secrets land.
    Create,
    /// Resumed: pending secrets land.
    Resume,
    /// About to be suspended: the token is wiped.
    Suspend,
}

/// Why an agent command failed, which decides its exit code (README, "Exit codes").
pub(crate) enum Failure {
    /// Bad arguments or input files (nothing was sent): exit 2.
    Usage(anyhow::Error),
    /// The agent answered with an error or with an answer that makes no sense (exit 1), could
    /// not be reached or the handshake failed (exit 3), or violated the protocol (exit 4): see
    /// [`client_failure`].
    Agent(ClientError),
    /// A failure on this side after the agent was reached: exit 1.
    Local(anyhow::Error),
}

/// Reports a command's failure, if any, and gives its exit code.
pub(crate) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("codespace-agentctl: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Agent(e)) => client_failure(&e),
        Err(Failure::Local(e)) => {
            eprintln!("codespace-agentctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one connection command.
pub fn run(args: &ConnectArgs, command: AgentCommand) -> ExitCode {
    if let AgentCommand::Lifecycle(cmd) = command {
        return crate::lifecycle::run(args, cmd);
    }
    let runtime = match runtime(false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    finish(runtime.block_on(execute(args, command)))
}

/// The runtime every agent command runs on: one thread, unless the command relays many
/// connections at once (`ports forward`). Failing to build it is exit 1, already reported.
pub(crate) fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("codespace-agentctl: cannot start the runtime: {e}");
        ExitCode::from(1)
    })
}

/// Reports a client error and maps it to the documented exit code: 1 when the agent answered
/// with an error, 3 when the connection itself failed, 4 when the agent broke the protocol.
pub(crate) fn client_failure(e: &ClientError) -> ExitCode {
    // An agent error's message is the agent's text (it may quote a devcontainer.json).
    eprintln!(
        "codespace-agentctl: {}",
        crate::sanitize::field(&e.to_string())
    );
    ExitCode::from(match e {
        ClientError::Remote(_) | ClientError::UnexpectedAnswer { .. } => 1,
        ClientError::ProtocolViolation(_) => 4,
        _ => 3,
    })
}

/// Connection options from the global arguments.
pub fn options(args: &ConnectArgs) -> anyhow::Result<ConnectOptions> {
    let addr: ConnectAddr = args
        .connect
        .as_deref()
        .ok_or_else(|| anyhow!("--connect ADDR is required"))?
        .parse()?;
    let key = match &args.key_file {
        Some(p) => {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read key file {}", p.display()))?;
            Some(SharedKey::new(&bytes).with_context(|| format!("key file {}", p.display()))?)
        }
        None => None,
    };
    let mut opts = ConnectOptions::new(addr, key);
    opts.backoff.deadline = Some(Duration::from_secs(args.connect_timeout));
    Ok(opts)
}

/// Prints one JSON value, pretty, on stdout.
pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

async fn execute(args: &ConnectArgs, command: AgentCommand) -> Result<(), Failure> {
    let opts = options(args).map_err(Failure::Usage)?;
    // Read and check every input before connecting, so bad input never half-applies.
    let request = match &command {
        AgentCommand::Status => Some(("status", Map::new())),
        AgentCommand::Ping => Some(("ping", Map::new())),
        AgentCommand::Activity => Some(("activity", Map::new())),
        AgentCommand::Token(TokenCommand::Put {
            token_file,
            expires_at,
            scope_file,
            host,
        }) => Some((
            "token_put",
            token_fields(token_file, expires_at, scope_file, host.as_deref())
                .map_err(Failure::Usage)?,
        )),
        AgentCommand::Session(s) => Some(("session", session_fields(s).map_err(Failure::Usage)?)),
        AgentCommand::Secrets(_)
        | AgentCommand::Events
        | AgentCommand::Trail(_)
        | AgentCommand::Lifecycle(_) => None,
    };
    let secrets = match &command {
        AgentCommand::Secrets(SecretsCommand::Put { file }) => {
            Some(read_secrets(file).map_err(Failure::Usage)?)
        }
        _ => None,
    };
    let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
    if let AgentCommand::Trail(args) = &command {
        return crate::trail::run(&client, args).await;
    }
    if let Some((kind, fields)) = request {
        let start = Instant::now();
        let result = client
            .request(kind, fields, REQUEST_TIMEOUT)
            .await
            .map_err(Failure::Agent)?;
        if kind == "ping" {
            print_json(&json!({"pong": true, "rtt_us": start.elapsed().as_micros() as u64}));
        } else {
            print_json(&result);
        }
        return Ok(());
    }
    if let Some(secrets) = secrets {
        let fields = seal_all(&client.info().public_key, &secrets).map_err(Failure::Usage)?;
        let result = client
            .request("secrets_put", fields, REQUEST_TIMEOUT)
            .await
            .map_err(Failure::Agent)?;
        print_json(&result);
        return Ok(());
    }
    // events
    use std::io::Write as _;
    while let Some(ev) = client.next_event().await {
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(&Value::Object(ev.to_object())).unwrap_or_default();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
    }
    Err(Failure::Agent(ClientError::Disconnected))
}

fn token_fields(
    token_file: &Path,
    expires_at: &str,
    scope_file: &Path,
    host: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    let raw = std::fs::read(token_file)
        .with_context(|| format!("cannot read token file {}", token_file.display()))?;
    let token = String::from_utf8(raw)
        .map_err(|_| anyhow!("token file {} is not UTF-8", token_file.display()))?;
    let token = token.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        bail!("token file {} is empty", token_file.display());
    }
    time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow!("--expires-at {expires_at:?} is not RFC 3339: {e}"))?;
    let scope_text = std::fs::read_to_string(scope_file)
        .with_context(|| format!("cannot read scope file {}", scope_file.display()))?;
    let scope: Value = serde_json::from_str(&scope_text)
        .with_context(|| format!("scope file {} is not JSON", scope_file.display()))?;
    let mut m = Map::new();
    m.insert("value".into(), token.into());
    m.insert("expires_at".into(), expires_at.into());
    m.insert("scope".into(), scope);
    if let Some(h) = host {
        m.insert("host".into(), h.into());
    }
    Ok(m)
}

fn session_fields(s: &SessionArgs) -> anyhow::Result<Map<String, Value>> {
    let event = match s.event {
        SessionEventArg::Create => "create",
        SessionEventArg::Resume => "resume",
        SessionEventArg::Suspend => "suspend",
    };
    let mut m = Map::new();
    m.insert("event".into(), event.into());
    if s.owner.is_some() || s.organization.is_some() || s.repository.is_some() {
        m.insert(
            "codespace".into(),
            json!({"owner": s.owner, "organization": s.organization, "repository": s.repository}),
        );
    }
    // Lifecycle trust facts travel in the same `codespace` object.
    let mut facts = Map::new();
    s.facts.insert_into(&mut facts);
    if !facts.is_empty() {
        if let Value::Object(c) = m
            .entry("codespace")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            c.extend(facts);
        }
    }
    s.signing.insert_into(&mut m)?;
    Ok(m)
}

fn read_secrets(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read secrets file {}", file.display()))?;
    let map: Map<String, Value> = serde_json::from_str(&text).with_context(|| {
        format!(
            "secrets file {} must be a JSON object of name → string",
            file.display()
        )
    })?;
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(anyhow!(
                "secrets file {}: the value of {k:?} is not a string",
                file.display()
            )),
        })
        .collect()
}

fn seal_all(
    public_key: &[u8; 32],
    secrets: &[(String, String)],
) -> anyhow::Result<Map<String, Value>> {
    let generation = codespace_agent::seal::generation_now();
    let sealed = secrets
        .iter()
        .map(|(name, value)| {
            seal(public_key, name, generation, value.as_bytes())
                .map_err(|e| anyhow!("cannot seal {name:?}: {e}"))
                .and_then(|s| {
                    serde_json::to_value(s).map_err(|e| anyhow!("cannot encode {name:?}: {e}"))
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut m = Map::new();
    m.insert("secrets".into(), Value::Array(sealed));
    Ok(m)
}
