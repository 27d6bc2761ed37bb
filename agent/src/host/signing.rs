//! Signing on the host: answering the agent's `signing_request` events with a key that never
//! enters the VM (issue 17). `codespace-agentctl signing serve` is built on exactly these calls.
//!
//! ```text
//! agent ── event signing_request {id, repository, format, object, payload} ──► SigningRequest
//!   HostSigner::answer: HostSigner::check (format = the key's, codespace_policy::signing:
//!                       a commit or tag, verified email, trusted repository, 60 a minute)
//!                       HostSigner::sign: ssh-keygen -Y sign -n git -f KEY   (payload on stdin)
//!                                      or gpg --detach-sign --armor -u KEY   (payload on stdin)
//!   ◄── signature_put {id, signature} | signature_refuse {id, reason}
//! ```
//!
//! The guest is not trusted (a compromised VM holds the shared key and can send any event), so
//! the host decides again before it signs, with the same policy function the agent used: a
//! payload that is not a git commit or tag is never signed, whatever the agent says; with the
//! user's verified emails ([`HostPolicy::verified_emails`]) only their commits are; with the
//! trusted repositories and the codespace's repository (which the host knows, the event only
//! claims) only in scope. Each request has its own deadline ([`HostSigner::timeout`]); the
//! agent gives up after its `signing.wait_s` (10 s) anyway.
//!
//! ```no_run
//! # async fn demo(client: &codespace_agent::host::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use codespace_agent::host::signing::{serve, HostKey, HostPolicy, HostSigner};
//! let signer = HostSigner::new(HostKey::Ssh { key_file: "/srv/keys/mona".into() }, HostPolicy::default());
//! serve(client, &signer, |answered| println!("{answered:?}")).await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use codespace_policy::repo::{RepoName, RepoPattern};
use codespace_policy::signing::{check_payload, RateLimiter, SigningFormat, VerifiedEmail};
use codespace_policy::ReasonCode as _;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client::{Client, ClientError};
use crate::guest::signing::{armor, protocol, REQUEST_EVENT};
use crate::wire::Event;

/// How long one request to the agent may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The key the host signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    /// An SSH key: `ssh-keygen -Y sign -n git -f key_file` (a private key file, or a public
    /// key whose private half is in `ssh-agent`).
    Ssh {
        /// The key file.
        key_file: PathBuf,
    },
    /// An OpenPGP key in the host's keyring: `gpg --detach-sign --armor --local-user key_id`.
    OpenPgp {
        /// The key's id, fingerprint or user id.
        key_id: String,
    },
}

impl HostKey {
    /// The signature format this key makes.
    pub fn format(&self) -> SigningFormat {
        match self {
            Self::Ssh { .. } => SigningFormat::Ssh,
            Self::OpenPgp { .. } => SigningFormat::OpenPgp,
        }
    }
}

/// What the host checks itself before it signs (the payload is always checked).
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// The user's verified emails: only their commits and tags are signed (`None`: any
    /// committer, for an operator who did not give them).
    pub verified_emails: Option<Vec<VerifiedEmail>>,
    /// The user's trusted repositories (empty: not checked here).
    pub trusted: Vec<RepoPattern>,
    /// The codespace's repository as the host knows it; the event's claim must match it.
    pub repository: Option<RepoName>,
}

/// One `signing_request` from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRequest {
    /// The agent's id for it (answers name it).
    pub id: String,
    /// The repository the agent says the codespace is for.
    pub repository: String,
    /// The format git asked for.
    pub format: SigningFormat,
    /// The object to sign.
    pub payload: Vec<u8>,
}

impl SigningRequest {
    /// The request an event carries: `None` when the event is not a `signing_request`, an
    /// error naming the field when it is malformed.
    pub fn from_event(event: &Event) -> Option<Result<Self, String>> {
        (event.name == REQUEST_EVENT).then(|| Self::from_fields(&event.fields))
    }

    fn from_fields(f: &Map<String, Value>) -> Result<Self, String> {
        let text = |key: &str| {
            f.get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("signing_request: `{key}` missing or not a string"))
        };
        let id = text("id")?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("signing_request: `id` is not an id".into());
        }
        let format = SigningFormat::parse(text("format")?)
            .ok_or("signing_request: `format` is not ssh or openpgp")?;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(text("payload")?)
            .map_err(|_| "signing_request: `payload` is not base64")?;
        if payload.len() > protocol::MAX_PAYLOAD {
            return Err("signing_request: `payload` is too large".into());
        }
        Ok(Self {
            id: id.to_owned(),
            repository: text("repository")?.to_owned(),
            format,
            payload,
        })
    }
}

/// What the host did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Signed; the signature was delivered.
    Signed {
        /// The request id.
        id: String,
    },
    /// Refused; the reason was delivered.
    Refused {
        /// The request id.
        id: String,
        /// Why (as the user sees it in git).
        reason: String,
    },
}

/// Why the key could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It failed.
    #[error("{program} failed: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its error output (one line, bounded).
        stderr: String,
    },
    /// It did not finish in time.
    #[error("{program} did not finish within {seconds} s")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        seconds: u64,
    },
    /// Its output is not a signature of the format.
    #[error("{program} did not produce a valid signature: {reason}")]
    Invalid {
        /// The program.
        program: String,
        /// What is wrong.
        reason: String,
    },
}

/// Signs requests with a host key, after the host's own checks.
#[derive(Debug)]
pub struct HostSigner {
    key: HostKey,
    policy: HostPolicy,
    limiter: Mutex<RateLimiter>,
    /// `ssh-keygen` (or another path to it).
    pub ssh_keygen: PathBuf,
    /// `gpg` (or another path to it).
    pub gpg: PathBuf,
    /// Longest time one signature may take.
    pub timeout: Duration,
}

impl HostSigner {
    /// A signer for `key` with `policy`; the programs are found on `PATH`.
    pub fn new(key: HostKey, policy: HostPolicy) -> Self {
        Self {
            key,
            policy,
            limiter: Mutex::new(RateLimiter::default()),
            ssh_keygen: "ssh-keygen".into(),
            gpg: "gpg".into(),
            timeout: Duration::from_secs(8),
        }
    }

    /// The host's decision on `request` (the same policy as the agent's, from the host's
    /// facts); `Err` is the reason to give the agent.
    pub fn check(&self, request: &SigningRequest) -> Result<(), String> {
        if request.format != self.key.format() {
            return Err(format!(
                "the host signs {} signatures, not {}",
                self.key.format(),
                request.format
            ));
        }
        let repository = RepoName::parse(&request.repository)
            .map_err(|_| format!("{:?} is not a repository", request.repository))?;
        if self
            .policy
            .repository
            .as_ref()
            .is_some_and(|r| *r != repository)
        {
            return Err(format!("this codespace is not for {repository}"));
        }
        if !self.policy.trusted.is_empty()
            && !self.policy.trusted.iter().any(|p| p.matches(&repository))
        {
            return Err(format!(
                "repository {repository} is not in your trusted repositories for commit signing"
            ));
        }
        check_payload(&request.payload, self.policy.verified_emails.as_deref())
            .map_err(|refusal| format!("{refusal} ({})", refusal.code()))?;
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(Instant::now())
            .map_err(|_| "too many signing requests in the last minute".to_owned())
    }

    /// Signs `payload` with the key: an armored signature of the key's format.
    pub async fn sign(&self, payload: &[u8]) -> Result<String, SignError> {
        let (program, args): (&PathBuf, Vec<std::ffi::OsString>) = match &self.key {
            HostKey::Ssh { key_file } => (
                &self.ssh_keygen,
                vec![
                    "-Y".into(),
                    "sign".into(),
                    "-n".into(),
                    "git".into(),
                    "-f".into(),
                    key_file.into(),
                ],
            ),
            HostKey::OpenPgp { key_id } => (
                &self.gpg,
                vec![
                    "--batch".into(),
                    "--no-tty".into(),
                    "--detach-sign".into(),
                    "--armor".into(),
                    "--local-user".into(),
                    key_id.into(),
                ],
            ),
        };
        let name = program.display().to_string();
        let mut child = tokio::process::Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SignError::Spawn {
                program: name.clone(),
                source,
            })?;
        let run = async {
            let mut stdin = child.stdin.take();
            let mut stdout = child.stdout.take();
            let mut stderr = child.stderr.take();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let write = async {
                if let Some(mut s) = stdin.take() {
                    let _ = s.write_all(payload).await;
                }
            };
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s
                        .take(protocol::MAX_SIGNATURE as u64 + 1)
                        .read_to_end(&mut out)
                        .await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.take(4096).read_to_end(&mut err).await;
                }
            };
            tokio::join!(write, read_out, read_err);
            (child.wait().await, out, err)
        };
        let (status, out, err) =
            tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| SignError::Timeout {
                    program: name.clone(),
                    seconds: self.timeout.as_secs(),
                })?;
        let status = status.map_err(|source| SignError::Spawn {
            program: name.clone(),
            source,
        })?;
        if !status.success() {
            return Err(SignError::Failed {
                program: name,
                stderr: protocol::printable(String::from_utf8_lossy(&err).trim()),
            });
        }
        let signature = String::from_utf8(out).map_err(|_| SignError::Invalid {
            program: name.clone(),
            reason: "not text".into(),
        })?;
        armor::check(self.key.format(), &signature).map_err(|e| SignError::Invalid {
            program: name,
            reason: e.to_string(),
        })?;
        Ok(signature)
    }

    /// Decides, signs and tells the agent: what happened to `request`.
    pub async fn answer(
        &self,
        client: &Client,
        request: &SigningRequest,
    ) -> Result<Answered, ClientError> {
        let signed = match self.check(request) {
            Ok(()) => self.sign(&request.payload).await.map_err(|e| {
                tracing::warn!(id = %request.id, error = %e, "signing failed");
                format!("the host could not sign: {e}")
            }),
            Err(reason) => Err(reason),
        };
        let id = request.id.clone();
        match signed {
            Ok(signature) => {
                put_signature(client, &id, &signature).await?;
                Ok(Answered::Signed { id })
            }
            Err(reason) => {
                refuse(client, &id, &reason).await?;
                Ok(Answered::Refused { id, reason })
            }
        }
    }
}

/// `signature_put`: delivers `signature` for the waiting request `id`.
pub async fn put_signature(
    client: &Client,
    id: &str,
    signature: &str,
) -> Result<Value, ClientError> {
    let fields = json!({"signing_id": id, "signature": signature});
    client
        .request("signature_put", object(fields), REQUEST_TIMEOUT)
        .await
}

/// `signature_refuse`: tells the waiting request `id` that the host will not sign, and why.
pub async fn refuse(client: &Client, id: &str, reason: &str) -> Result<Value, ClientError> {
    let fields = json!({"signing_id": id, "reason": reason});
    client
        .request("signature_refuse", object(fields), REQUEST_TIMEOUT)
        .await
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Answers every `signing_request` on `client` until the connection ends (other events are
/// skipped); `on_answer` hears each outcome. A malformed request is logged and skipped (it
/// has no id to answer; the agent times it out).
pub async fn serve(
    client: &Client,
    signer: &HostSigner,
    mut on_answer: impl FnMut(&Answered),
) -> Result<(), ClientError> {
    while let Some(event) = client.next_event().await {
        match SigningRequest::from_event(&event) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "malformed signing request from the agent"),
            Some(Ok(request)) => on_answer(&signer.answer(client, &request).await?),
        }
    }
    Err(ClientError::Disconnected)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const COMMIT: &str = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nm\n";

    fn request(payload: &[u8], repository: &str, format: SigningFormat) -> SigningRequest {
        SigningRequest {
            id: "ab12".into(),
            repository: repository.into(),
            format,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn the_host_decides_again_and_never_signs_anything_but_commits_and_tags() {
        let open = HostSigner::new(
            HostKey::Ssh {
                key_file: "/k".into(),
            },
            HostPolicy::default(),
        );
        open.check(&request(COMMIT.as_bytes(), "octo/app", SigningFormat::Ssh))
            .unwrap();
        for (payload, repo, format, needle) in [
            (
                &b"SSHSIG challenge"[..],
                "octo/app",
                SigningFormat::Ssh,
                "not-a-commit-or-tag",
            ),
            (
                COMMIT.as_bytes(),
                "octo/app",
                SigningFormat::OpenPgp,
                "signs ssh",
            ),
            (
                COMMIT.as_bytes(),
                "not a repo",
                SigningFormat::Ssh,
                "not a repository",
            ),
        ] {
            let err = open.check(&request(payload, repo, format)).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let strict = HostSigner::new(
            HostKey::Ssh {
                key_file: "/k".into(),
            },
            HostPolicy {
                verified_emails: Some(vec![VerifiedEmail::parse("mona@x").unwrap()]),
                trusted: vec![RepoPattern::parse("octo/*").unwrap()],
                repository: Some(RepoName::parse("octo/app").unwrap()),
            },
        );
        for (repo, needle) in [("octo/app", "unverified-email"), ("octo/other", "not for")] {
            let err = strict
                .check(&request(COMMIT.as_bytes(), repo, SigningFormat::Ssh))
                .unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let mona = COMMIT.replace("committer A <a@x>", "committer M <Mona@X>");
        strict
            .check(&request(mona.as_bytes(), "octo/app", SigningFormat::Ssh))
            .unwrap();
    }

    #[test]
    fn events_become_requests_or_say_what_is_wrong() {
        let ev = |fields: Value| Event::new(REQUEST_EVENT, fields);
        let good = ev(
            json!({"id": "ab12", "repository": "o/r", "format": "ssh", "object": "commit",
                            "payload": base64::engine::general_purpose::STANDARD.encode(b"tree")}),
        );
        assert_eq!(
            SigningRequest::from_event(&good).unwrap().unwrap().payload,
            b"tree"
        );
        assert!(SigningRequest::from_event(&Event::new("heartbeat", json!({}))).is_none());
        for bad in [
            json!({"id": "x y", "repository": "o/r", "format": "ssh", "payload": ""}),
            json!({"id": "ab", "repository": "o/r", "format": "x509", "payload": ""}),
            json!({"id": "ab", "repository": "o/r", "format": "ssh", "payload": "!!"}),
            json!({"id": "ab", "format": "ssh", "payload": ""}),
        ] {
            assert!(SigningRequest::from_event(&ev(bad)).unwrap().is_err());
        }
    }
}
