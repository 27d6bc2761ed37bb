//! `codespace-agentctl registry put|remove`: container registry credentials for Docker in the
//! codespace, delivered sealed to the agent's key (`codespace_agent::host::registry`).
//!
//! The agent answers them only to the codespace user's `docker-credential-codespace`, only for
//! exactly the registry delivered and only until `--expires-at`, never in a prebuild; it points
//! Docker at the helper in the user's `~/.docker/config.json` (`credHelpers`), never writing the
//! secret there. The answer is printed as JSON (the registry without its secret, and what the
//! Docker configuration sync did); when the agent held the credential but could not update
//! `config.json` (say, the user's file is not valid JSON), a warning says so on stderr.
//!
//! Exit codes as for the other agent commands: 0 success, 1 the agent answered with an error,
//! 2 invalid arguments or input files, 3 the agent could not be reached, 4 the agent violated
//! the protocol.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use codespace_agent::host::registry::{put, remove, RegistryDelivery, RegistryDeliveryError};
use codespace_agent::host::Client;
use codespace_policy::container_registry::RegistryHost;
use zeroize::Zeroizing;

use crate::connect::{finish, options, print_json, runtime, ConnectArgs, Failure};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `registry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Deliver (or replace) the credential of one registry.
    Put {
        /// The registry: ghcr.io (https://ghcr.io and ghcr.io/v2/ name the same one).
        #[arg(long, value_name = "HOST")]
        registry: String,
        /// The username Docker gets.
        #[arg(long, value_name = "U")]
        username: String,
        /// File holding the secret (a trailing newline is ignored).
        #[arg(long, value_name = "F")]
        secret_file: PathBuf,
        /// When the agent stops answering it, RFC 3339 (e.g. 2026-11-26T08:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires_at: String,
        /// The owner (user or organization) whose packages it reaches, shown in status.
        #[arg(long, value_name = "OWNER")]
        scope: Option<String>,
    },
    /// Make the agent forget the credential of one registry.
    Remove {
        /// The registry.
        #[arg(long, value_name = "HOST")]
        registry: String,
    },
}

/// Runs one `registry` command.
pub fn run(args: &ConnectArgs, cmd: RegistryCommand) -> ExitCode {
    match runtime(false) {
        Ok(rt) => finish(rt.block_on(execute(args, cmd))),
        Err(code) => code,
    }
}

async fn execute(args: &ConnectArgs, cmd: RegistryCommand) -> Result<(), Failure> {
    let opts = options(args).map_err(Failure::Usage)?;
    // Every input is read and checked before connecting, so bad input never half-applies.
    let answer = match cmd {
        RegistryCommand::Put {
            registry,
            username,
            secret_file,
            expires_at,
            scope,
        } => {
            check_registry(&registry).map_err(Failure::Usage)?;
            let secret = read_secret(&secret_file).map_err(Failure::Usage)?;
            let expires_at = time::OffsetDateTime::parse(
                &expires_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|e| {
                Failure::Usage(anyhow!("--expires-at {expires_at:?} is not RFC 3339: {e}"))
            })?;
            let delivery = RegistryDelivery {
                registry: &registry,
                username: &username,
                secret: &secret,
                expires_at,
                scope: scope.as_deref(),
            };
            let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
            put(&client, &delivery, REQUEST_TIMEOUT)
                .await
                .map_err(|e| match e {
                    RegistryDeliveryError::Client(e) => Failure::Agent(e),
                    other => Failure::Local(other.into()),
                })?
        }
        RegistryCommand::Remove { registry } => {
            check_registry(&registry).map_err(Failure::Usage)?;
            let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
            remove(&client, &registry, REQUEST_TIMEOUT)
                .await
                .map_err(Failure::Agent)?
        }
    };
    print_json(&answer);
    if let Some(error) = answer["docker_config"]["error"].as_str() {
        eprintln!(
            "codespace-agentctl: warning: the agent holds the credential, but did not update the Docker configuration: {}",
            crate::sanitize::field(error)
        );
    }
    Ok(())
}

fn check_registry(registry: &str) -> anyhow::Result<()> {
    RegistryHost::parse(registry)
        .map(drop)
        .map_err(|e| anyhow!("--registry {registry:?}: {e}"))
}

/// The secret file's bytes without a trailing newline; never empty.
fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read secret file {}", path.display()))?,
    );
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        bail!("secret file {} is empty", path.display());
    }
    Ok(bytes)
}
