//! Commit signing from the host side: the session's signing settings (`session create
//! --signing ...`), `signing serve` (answer the agent's requests with a local key) and
//! `signature put|refuse` (answer one request by hand). Built on
//! `codespace_agent::host::signing`.
//!
//! `signing serve` prints one JSON line per request (`{"id", "decision": "signed"|"refused",
//! "reason"?}`) until the connection ends (exit 3) or it is interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use codespace_agent::host::signing::{self, Answered, HostKey, HostPolicy, HostSigner};
use codespace_agent::host::Client;
use codespace_policy::repo::{RepoName, RepoPattern};
use codespace_policy::signing::{RawSigningSettings, VerifiedEmail};
use serde_json::{json, Map, Value};

use crate::connect::{finish, options, print_json, runtime, ConnectArgs, Failure};

/// The user's trusted repositories and verified emails (session settings; the host's own
/// checks in `signing serve`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SigningLists {
    /// Repositories the user trusts for signing: OWNER/NAME or OWNER/*, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub signing_trusted: Vec<String>,
    /// The user's verified emails, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub verified_emails: Vec<String>,
}

/// `session create` signing settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SessionSigningArgs {
    /// Commit signing for this session: ssh, openpgp or off (the default; also in prebuilds).
    #[arg(long, value_name = "MODE", value_parser = ["ssh", "openpgp", "off"])]
    pub signing: Option<String>,
    /// Trusted repositories and verified emails.
    #[command(flatten)]
    pub lists: SigningLists,
}

impl SessionSigningArgs {
    /// Adds `signing` to a `session` request when any setting is given; checked here first so
    /// bad input is refused before anything is sent.
    pub fn insert_into(&self, m: &mut Map<String, Value>) -> anyhow::Result<()> {
        if self.signing.is_none()
            && self.lists.signing_trusted.is_empty()
            && self.lists.verified_emails.is_empty()
        {
            return Ok(());
        }
        let raw = RawSigningSettings {
            mode: self.signing.clone(),
            trusted: self.lists.signing_trusted.clone(),
            verified_emails: self.lists.verified_emails.clone(),
        };
        raw.build()
            .map_err(|e| anyhow!("--signing settings: {e}"))?;
        m.insert("signing".into(), serde_json::to_value(raw)?);
        Ok(())
    }
}

/// `signing` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SigningCommand {
    /// Answer the agent's signing requests with a local key until interrupted.
    Serve(ServeArgs),
}

/// `signing serve` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["ssh_key", "gpg_key_id"])))]
pub struct ServeArgs {
    /// Sign with this SSH key (`ssh-keygen -Y sign -n git -f FILE`).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Sign with this OpenPGP key (`gpg --detach-sign --armor --local-user ID`).
    #[arg(long, value_name = "ID")]
    pub gpg_key_id: Option<String>,
    /// The codespace's repository: requests claiming another are refused.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// Checked here too when given: trusted repositories, verified emails.
    #[command(flatten)]
    pub lists: SigningLists,
}

/// `signature` subcommands: answer one request by hand.
#[derive(Debug, clap::Subcommand)]
pub enum SignatureCommand {
    /// Deliver the signature for a waiting request.
    Put {
        /// The request's id (from its `signing_request` event).
        id: String,
        /// File holding the armored signature.
        #[arg(long, value_name = "F")]
        signature_file: PathBuf,
    },
    /// Refuse a waiting request; git shows the reason.
    Refuse {
        /// The request's id.
        id: String,
        /// Why.
        #[arg(long, value_name = "R")]
        reason: String,
    },
}

/// Runs `signing serve`.
pub fn run_signing(args: &ConnectArgs, command: SigningCommand) -> ExitCode {
    let SigningCommand::Serve(serve) = command;
    let runtime = match runtime(false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    finish(runtime.block_on(run_serve(args, &serve)))
}

fn signer(args: &ServeArgs) -> anyhow::Result<HostSigner> {
    let key = match (&args.ssh_key, &args.gpg_key_id) {
        (Some(file), None) => {
            std::fs::metadata(file).with_context(|| format!("--ssh-key {}", file.display()))?;
            HostKey::Ssh {
                key_file: file.clone(),
            }
        }
        (None, Some(id)) => HostKey::OpenPgp { key_id: id.clone() },
        _ => return Err(anyhow!("give one of --ssh-key and --gpg-key-id")),
    };
    let verified_emails = if args.lists.verified_emails.is_empty() {
        None
    } else {
        Some(
            args.lists
                .verified_emails
                .iter()
                .map(|e| {
                    VerifiedEmail::parse(e)
                        .ok_or_else(|| anyhow!("--verified-emails: {e:?} is not an email"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let trusted = args
        .lists
        .signing_trusted
        .iter()
        .map(|p| RepoPattern::parse(p).map_err(|e| anyhow!("--signing-trusted: {e}")))
        .collect::<anyhow::Result<_>>()?;
    let repository = args
        .repository
        .as_deref()
        .map(|r| RepoName::parse(r).map_err(|e| anyhow!("--repository: {e}")))
        .transpose()?;
    Ok(HostSigner::new(
        key,
        HostPolicy {
            verified_emails,
            trusted,
            repository,
        },
    ))
}

async fn run_serve(args: &ConnectArgs, serve: &ServeArgs) -> Result<(), Failure> {
    let opts = options(args).map_err(Failure::Usage)?;
    let signer = signer(serve).map_err(Failure::Usage)?;
    let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
    signing::serve(&client, &signer, |answered| {
        let line = match answered {
            Answered::Signed { id } => json!({"id": id, "decision": "signed"}),
            Answered::Refused { id, reason } => {
                json!({"id": id, "decision": "refused", "reason": reason})
            }
        };
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    })
    .await
    .map_err(Failure::Agent)
}

/// Runs `signature put|refuse`.
pub fn run_signature(args: &ConnectArgs, command: SignatureCommand) -> ExitCode {
    let runtime = match runtime(false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    finish(runtime.block_on(async {
        let opts = options(args).map_err(Failure::Usage)?;
        // Read the input before connecting, so bad input never half-applies.
        let signature = match &command {
            SignatureCommand::Put { signature_file, .. } => Some(
                std::fs::read_to_string(signature_file)
                    .with_context(|| {
                        format!("cannot read signature file {}", signature_file.display())
                    })
                    .map_err(Failure::Usage)?,
            ),
            SignatureCommand::Refuse { .. } => None,
        };
        let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
        let answer = match (&command, signature) {
            (SignatureCommand::Put { id, .. }, Some(sig)) => {
                signing::put_signature(&client, id, &sig).await
            }
            (SignatureCommand::Refuse { id, reason }, _) => {
                signing::refuse(&client, id, reason).await
            }
            (SignatureCommand::Put { .. }, None) => {
                return Err(Failure::Local(anyhow!("no signature")))
            }
        };
        print_json(&answer.map_err(Failure::Agent)?);
        Ok(())
    }))
}
