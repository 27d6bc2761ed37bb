//! The commit signing broker: git signs with a key that never enters the VM (issue 17).
//!
//! ```text
//!  git commit -S ─► codespace-git-sign (= codespace-agent git-sign, git's gpg.ssh.program or
//!                   gpg.program) ─► <state-dir>/git-sign.sock ─► SigningBroker (broker.rs)
//!     at accept: the credential broker's admission (SO_PEERCRED uid allowed, not a restricted
//!     run, a slot of the uid's share)                         ── else closed: "refused" in git
//!  SigningService::sign
//!     codespace_policy::signing::decide (session mode, prebuild, format, trusted repository,
//!     commit/tag payload, verified committer email, 60 a minute)  ── else "refused CODE msg"
//!     event signing_request {id, repository, format, object, payload (base64)} ─► the host
//!     wait (signing.wait_s, 10 s) for the host's request:
//!        signature_put {id, signature}  ─► checked (armor.rs) ─► "signature" to the helper
//!        signature_refuse {id, reason}  ─► "refused host-refused reason"
//!        nothing                        ─► "refused timeout"
//!  every decision ─► SigningService::record ─► log + audit trail (kind `signing`), which the
//!                   host hears as an `audit` event
//! ```
//!
//! The agent never holds a private key: it checks, forwards and waits; the host signs (with
//! `codespace-agentctl signing serve` or the library's [`crate::host::signing`]) and checks
//! the payload again before it does. [`SigningService::record`] is the one place every
//! decision goes through (allowed, refused with its reason, signed, refused by the host, timed
//! out): it logs it and records it in the audit trail (`guest::trail`, kind `signing`) with
//! the caller's uid, pid and executable, as the credential broker does. Records hold names,
//! emails, codes and reasons; never the payload or a signature.
//!
//! While signing is on for the codespace (mode on, not a prebuild, repository trusted), the
//! git configuration that turns it on is written ([`gitconfig`]); when it goes off, removed.
//! The session's settings come with `session create` (absent: off); a `resume` keeps them.

pub mod armor;
pub mod broker;
pub(crate) mod config;
pub(crate) mod gitconfig;
pub mod protocol;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use codespace_policy::repo::RepoName;
use codespace_policy::signing::{
    self as policy, RateLimiter, RawSigningSettings, SigningFacts, SigningFormat, SigningRefusal,
    SigningSettings,
};
use codespace_policy::ReasonCode as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

pub use config::SigningConfig;
use protocol::{BrokerAnswer, Reason};

use super::config::CodespaceIdentity;
use super::service::{EventSink, ServiceError};
use super::trail::Kind;
use crate::wire::Event;

/// Name of the event that asks the host to sign.
pub(crate) const REQUEST_EVENT: &str = "signing_request";

/// Writes (`Some`) or removes (`None`) the git configuration that turns signing on: through
/// the privileged side when the agent is separated, here otherwise ([`writer_for`]).
pub type GitConfigWriter =
    Arc<dyn Fn(Option<SigningFormat>) -> Result<(), String> + Send + Sync + 'static>;

/// The writer this process uses: the privileged side's when separated, a direct write
/// otherwise.
pub fn writer_for(config: &SigningConfig) -> GitConfigWriter {
    if let Some(monitor) = super::privsep::client() {
        let monitor = Arc::clone(monitor);
        return Arc::new(move |format| {
            monitor
                .signing_git_config(format)
                .map_err(|e| e.to_string())
        });
    }
    let (path, program) = (config.git_config.clone(), config.program.clone());
    Arc::new(move |format| {
        gitconfig::apply(&path, format, &program).map_err(|e| format!("{}: {e}", path.display()))
    })
}

/// Who asked: the uid from `SO_PEERCRED` (unknown when even that failed) and the process's pid
/// and executable, read when the connection was accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Caller {
    /// The caller's uid.
    pub(crate) uid: Option<u32>,
    /// `pid` and `exe` (or `comm`), as the credential broker records them.
    pub(crate) process: Map<String, Value>,
}

#[cfg(test)]
impl Caller {
    /// A caller known by its uid only.
    pub(crate) fn uid(uid: u32) -> Self {
        Self {
            uid: Some(uid),
            process: Map::new(),
        }
    }
}

/// One decision about one request, as it is logged and recorded in the audit trail (with the
/// [`Caller`]). Never holds the payload or a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub(crate) enum SigningOutcome {
    /// The policy allowed it; it went to the host as `signing_request` `id`.
    Allowed {
        /// Request id.
        id: String,
        /// The codespace's repository.
        repository: String,
        /// The format.
        format: SigningFormat,
        /// Commit or tag.
        object: policy::ObjectKind,
        /// The committer's (tagger's) email.
        signer: String,
    },
    /// Nothing was signed: the policy, the caller or the request said no.
    Refused {
        /// Stable code.
        code: String,
        /// What the user is told.
        message: String,
    },
    /// The host's signature went to git.
    Signed {
        /// Request id.
        id: String,
    },
    /// The host refused to sign.
    HostRefused {
        /// Request id.
        id: String,
        /// The host's reason.
        reason: String,
    },
    /// The host did not answer in time.
    TimedOut {
        /// Request id.
        id: String,
        /// How long the agent waited.
        waited_ms: u64,
    },
    /// Callers refused at accept that were counted, not reported one by one.
    Unreported {
        /// How many.
        refusals: u64,
    },
}

/// What the host answered to one request.
#[derive(Debug)]
enum HostAnswer {
    Signature(String),
    Refused(String),
}

/// A request that waits for the host.
#[derive(Debug)]
struct Pending {
    format: SigningFormat,
    answer: oneshot::Sender<HostAnswer>,
}

/// The session's signing state.
#[derive(Debug, Default)]
struct Session {
    settings: SigningSettings,
    facts: SigningFacts,
    limiter: RateLimiter,
}

/// Most requests waiting for the host at once (the broker's slots bound them already; this
/// bounds the map even if they change).
const MAX_PENDING: usize = 64;

/// The signing broker's state and decisions, shared by the socket server ([`broker`]) and
/// the dispatcher (`session`, `signature_put`, `signature_refuse`, `status`).
pub struct SigningService {
    config: SigningConfig,
    events: EventSink,
    session: Mutex<Session>,
    /// The format the git configuration was last written for (`Some(None)`: removed; `None`:
    /// never written). Held while writing, so writes are serialized and the last one wins.
    written: Mutex<Option<Option<SigningFormat>>>,
    pending: Mutex<HashMap<String, Pending>>,
    writer: GitConfigWriter,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The policy's facts from what the session recorded about the codespace.
pub(crate) fn facts_of(identity: &CodespaceIdentity) -> SigningFacts {
    SigningFacts {
        repository: identity
            .repository
            .as_deref()
            .and_then(|r| RepoName::parse(r).ok()),
        prebuild: identity.prebuild == Some(true),
    }
}

/// The `signing` field of a `session` request: `None` when absent (or `null`), else the
/// settings, or why they are invalid (a message naming the field).
pub(crate) fn settings_field(field: Option<Value>) -> Result<Option<SigningSettings>, String> {
    match field {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value::<RawSigningSettings>(v)
            .map_err(|e| format!("`signing`: {e}"))?
            .build()
            .map(Some)
            .map_err(|e| format!("`signing.{e}")),
    }
}

impl SigningService {
    /// The service: signing is off until a session says otherwise. `writer` applies the git
    /// configuration ([`writer_for`]); a stale one left by an earlier agent is removed now.
    pub fn new(config: SigningConfig, events: EventSink, writer: GitConfigWriter) -> Arc<Self> {
        let service = Arc::new(Self {
            config,
            events,
            session: Mutex::new(Session::default()),
            written: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            writer,
            rng: SystemRandom::new(),
        });
        service.sync_git_config();
        service
    }

    /// A session event: `settings` replace the session's (`session create`; `None` keeps
    /// them), `identity` is what the session knows about the codespace now. Rewrites the git
    /// configuration when signing goes on or off.
    pub(crate) fn update(&self, settings: Option<SigningSettings>, identity: &CodespaceIdentity) {
        {
            let mut session = lock(&self.session);
            if let Some(settings) = settings {
                session.settings = settings;
            }
            session.facts = facts_of(identity);
        }
        self.sync_git_config();
    }

    /// Writes or removes the git configuration when the session's answer changed. The
    /// session's lock is not held while the file is written (a write may be a call to the
    /// privileged side), so signing requests never wait for it.
    fn sync_git_config(&self) {
        let mut written = lock(&self.written);
        let want = {
            let session = lock(&self.session);
            session
                .settings
                .enabled(&session.facts)
                .ok()
                .map(|(f, _)| f)
        };
        if *written == Some(want) {
            return;
        }
        match (self.writer)(want) {
            Ok(()) => {
                tracing::info!(format = ?want, "signing git configuration applied");
                *written = Some(want);
            }
            // Signing stays as the file says; the next session event tries again.
            Err(e) => tracing::warn!(error = %e, "cannot apply the signing git configuration"),
        }
    }

    /// Whether signing is on for the codespace: the helper's `--enabled`.
    pub(crate) fn enabled(&self) -> BrokerAnswer {
        let session = lock(&self.session);
        match session.settings.enabled(&session.facts) {
            Ok((format, _)) => BrokerAnswer::Enabled(format),
            Err(refusal) => {
                BrokerAnswer::Disabled(Reason::new(refusal.code(), &refusal.to_string()))
            }
        }
    }

    /// Decides, asks the host and waits: what the helper of `caller` is answered.
    pub(crate) async fn sign(
        &self,
        caller: &Caller,
        format: SigningFormat,
        payload: Vec<u8>,
    ) -> BrokerAnswer {
        let approved = {
            let mut session = lock(&self.session);
            let Session {
                settings,
                facts,
                limiter,
                ..
            } = &mut *session;
            policy::decide(settings, facts, format, &payload, limiter, Instant::now())
        };
        let approved = match approved {
            Ok(a) => a.into_inner(),
            Err(refusal) => return self.refuse(caller, &refusal),
        };
        if self.events.receiver_count() == 0 {
            return self.refuse_with(caller, "no-host", "no host is connected to sign");
        }
        let Some(id) = self.new_id() else {
            return self.refuse_with(caller, "internal", "the agent could not make a request id");
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING {
                drop(pending);
                return self.refuse_with(
                    caller,
                    "busy",
                    "too many signing requests wait for the host",
                );
            }
            pending.insert(id.clone(), Pending { format, answer: tx });
        }
        self.record(
            &SigningOutcome::Allowed {
                id: id.clone(),
                repository: approved.repository.to_string(),
                format,
                object: approved.object.kind,
                signer: approved.object.signer_email.clone(),
            },
            caller,
        );
        let _ = self.events.send(Event::new(
            REQUEST_EVENT,
            json!({
                "id": id,
                "repository": approved.repository.to_string(),
                "format": format,
                "object": approved.object.kind,
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
            }),
        ));
        let answer = tokio::time::timeout(self.config.wait, rx).await;
        lock(&self.pending).remove(&id);
        match answer {
            Ok(Ok(HostAnswer::Signature(armor))) => {
                self.record(&SigningOutcome::Signed { id }, caller);
                BrokerAnswer::Signature(armor)
            }
            Ok(Ok(HostAnswer::Refused(reason))) => {
                self.record(
                    &SigningOutcome::HostRefused {
                        id,
                        reason: reason.clone(),
                    },
                    caller,
                );
                BrokerAnswer::Refused(Reason::new(
                    "host-refused",
                    &format!("the host refused to sign: {reason}"),
                ))
            }
            Ok(Err(_)) | Err(_) => {
                let waited_ms = u64::try_from(self.config.wait.as_millis()).unwrap_or(u64::MAX);
                self.record(&SigningOutcome::TimedOut { id, waited_ms }, caller);
                BrokerAnswer::Refused(Reason::new(
                    "timeout",
                    &format!(
                        "the host did not answer within {} s",
                        self.config.wait.as_secs()
                    ),
                ))
            }
        }
    }

    /// A refusal by the policy: recorded, and the helper's answer.
    fn refuse(&self, caller: &Caller, refusal: &SigningRefusal) -> BrokerAnswer {
        self.refuse_with(caller, refusal.code(), &refusal.to_string())
    }

    /// A refusal with `code` and `message`: recorded, and the helper's answer.
    pub(crate) fn refuse_with(&self, caller: &Caller, code: &str, message: &str) -> BrokerAnswer {
        let reason = Reason::new(code, message);
        self.record(
            &SigningOutcome::Refused {
                code: reason.code.clone(),
                message: reason.message.clone(),
            },
            caller,
        );
        BrokerAnswer::Refused(reason)
    }

    /// The one place every signing decision goes through: logged, and recorded in the audit
    /// trail (kind `signing`, with the caller's uid, pid and executable), which sends it to
    /// every control connection as an `audit` event.
    pub(crate) fn record(&self, outcome: &SigningOutcome, caller: &Caller) {
        let mut fields = serde_json::to_value(outcome).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut fields {
            if let Some(uid) = caller.uid {
                m.insert("uid".into(), uid.into());
            }
            for (k, v) in &caller.process {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        match outcome {
            SigningOutcome::Refused { .. }
            | SigningOutcome::HostRefused { .. }
            | SigningOutcome::TimedOut { .. } => {
                tracing::warn!(decision = %fields, "signing");
            }
            _ => tracing::info!(decision = %fields, "signing"),
        }
        self.events.audit(Kind::Signing, fields);
    }

    fn new_id(&self) -> Option<String> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).ok()?;
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `signature_put {id, signature}`: the host's signature for a waiting request, checked
    /// against the request's format before the request sees it.
    pub(crate) fn put_signature(
        &self,
        mut fields: Map<String, Value>,
    ) -> Result<Value, ServiceError> {
        let id = take_string(&mut fields, "signing_id", "signature_put")?;
        let signature = take_string(&mut fields, "signature", "signature_put")?;
        no_more_fields(&fields, "signature_put")?;
        if !protocol::is_armor(&signature) {
            return Err(ServiceError::InvalidArgument(format!(
                "signature_put: `signature` must be ASCII armor of at most {} bytes",
                protocol::MAX_SIGNATURE
            )));
        }
        let mut pending = lock(&self.pending);
        let format = pending
            .get(&id)
            .map(|p| p.format)
            .ok_or_else(|| not_waiting(&id))?;
        armor::check(format, &signature).map_err(|e| {
            ServiceError::InvalidArgument(format!(
                "signature_put: not a valid {format} signature: {e}"
            ))
        })?;
        let waiting = pending.remove(&id).ok_or_else(|| not_waiting(&id))?;
        drop(pending);
        waiting
            .answer
            .send(HostAnswer::Signature(signature))
            .map_err(|_| not_waiting(&id))?;
        Ok(json!({"signing_id": id, "delivered": true}))
    }

    /// `signature_refuse {id, reason}`: the host will not sign a waiting request.
    pub(crate) fn refuse_signature(
        &self,
        mut fields: Map<String, Value>,
    ) -> Result<Value, ServiceError> {
        let id = take_string(&mut fields, "signing_id", "signature_refuse")?;
        let reason = take_string(&mut fields, "reason", "signature_refuse")?;
        no_more_fields(&fields, "signature_refuse")?;
        let waiting = lock(&self.pending)
            .remove(&id)
            .ok_or_else(|| not_waiting(&id))?;
        waiting
            .answer
            .send(HostAnswer::Refused(protocol::printable(&reason)))
            .map_err(|_| not_waiting(&id))?;
        Ok(json!({"signing_id": id, "delivered": true}))
    }

    /// The `signing` section of `status` (and of the `session` report).
    pub(crate) fn status(&self) -> Value {
        let mut session = lock(&self.session);
        let enabled = session.settings.enabled(&session.facts);
        let recent = session.limiter.recent(Instant::now());
        let mut m = Map::new();
        m.insert("mode".into(), json!(session.settings.mode));
        m.insert("enabled".into(), enabled.is_ok().into());
        if let Err(refusal) = &enabled {
            m.insert("reason".into(), refusal.code().into());
        }
        let trusted: Vec<String> = session
            .settings
            .trusted
            .iter()
            .map(ToString::to_string)
            .collect();
        m.insert("trusted".into(), json!(trusted));
        m.insert(
            "verified_emails".into(),
            session.settings.verified_emails.len().into(),
        );
        m.insert("signed_last_minute".into(), recent.into());
        m.insert("waiting".into(), lock(&self.pending).len().into());
        // Control connections that hear signing requests (the one asking included).
        m.insert("listeners".into(), self.events.receiver_count().into());
        m.insert("wait_s".into(), self.config.wait.as_secs().into());
        m.insert(
            "git_config".into(),
            self.config.git_config.display().to_string().into(),
        );
        Value::Object(m)
    }
}

fn not_waiting(id: &str) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "no signing request {:?} is waiting (unknown, answered or timed out)",
        protocol::printable(&id.chars().take(64).collect::<String>())
    ))
}

fn take_string(
    fields: &mut Map<String, Value>,
    key: &str,
    request: &str,
) -> Result<String, ServiceError> {
    match fields.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ServiceError::InvalidArgument(format!(
            "{request}: `{key}` must be a string"
        ))),
        None => Err(ServiceError::InvalidArgument(format!(
            "{request}: missing `{key}`"
        ))),
    }
}

fn no_more_fields(fields: &Map<String, Value>, request: &str) -> Result<(), ServiceError> {
    match fields.keys().next() {
        Some(k) => Err(ServiceError::InvalidArgument(format!(
            "{request}: unknown field `{k}`"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
