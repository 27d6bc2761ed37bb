//! The vault: the one place in the agent that holds secret values and the repository token, and
//! the only writer of the codespace's environment file.
//!
//! ```text
//!  host ── secrets put ──► put_secrets ──► pending set ──┐ session create/resume
//!                            (open, replay, policy name) ▼
//!                                                   current set ──┐
//!  host ── token put ────► put_token ──► token ──────────────────┴─► <state>/env/environment
//!                                          │                         (rewritten atomically)
//!                                          ├─► broker (git credential answers)
//!          expiry driver ─► poll_expiry ───┘  token_expiring, then wipe + token_expired
//! ```
//!
//! Invariants:
//! - **Snapshot semantics**: secrets delivered while the codespace runs stay pending and reach
//!   the environment file only at the next `create` or `resume` ([`SessionEvent`]); `status`
//!   shows what is pending. A delivery is a complete set: it replaces any earlier pending one.
//! - **One token, everywhere at once**: memory, the environment file and the broker's answers
//!   change under one lock, so no reader sees the old token after [`Vault::put_token`] returns.
//!   At suspend the token is wiped (the host delivers a fresh one at resume, as Codespaces issues
//!   a new token per start), and at expiry it is wiped from memory and the file.
//! - **Values never leave** except through the environment file and the broker; reports,
//!   status, events and errors carry names, codes and times only.
//! - **Prebuilds** ([`Vault::set_prebuild`]): while the codespace is a prebuild, secrets and
//!   registry credentials are refused on delivery and the token is not exported to the
//!   environment file (only the broker serves it, so no process's environment ever holds it);
//!   when the prebuild ends, its token, registry credentials and any secrets are wiped, so
//!   nothing of the prebuild's reaches the code that runs in the codespace made from it.
//! - **Time is injected**: every method that depends on the clock takes `now`; only
//!   [`run_expiry`] reads a clock, and it takes that clock as an argument.
//!
//! Files: the state directory is made 0711 (the remote user may traverse it to reach
//! `env/environment` and the credential socket, but not list it); `env/` is 0711 and owned by
//! the agent, so the user can read the file it owns yet cannot plant or swap entries beside it;
//! the file is 0600 and owned by the configured [`Owner`].

pub mod envfile;
pub mod registry;
pub(crate) mod secrets;
pub(crate) mod token;

mod driver;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::seal::{AgentKeyPair, ReplayGuard, SealedSecret, TokenValue};

pub(crate) use driver::run_expiry;
pub use envfile::{EnvFileError, Owner};
pub use registry::{RegistryError, RegistryPut, RegistryStatus};
pub(crate) use secrets::{SecretSet, SecretsReport};
pub use token::{TokenError, TokenPut, TokenStatus, DEFAULT_TOKEN_HOST};

/// Name of the exported token variable.
pub(crate) const TOKEN_VARIABLE: &str = "GITHUB_TOKEN";

/// How long after a failed environment-file write the vault tries again.
const RETRY_AFTER: time::Duration = time::Duration::seconds(5);

/// The path of the environment file under `state_dir`.
pub fn environment_path(state_dir: &Path) -> PathBuf {
    state_dir.join("env").join("environment")
}

/// How the vault is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultConfig {
    /// The agent's state directory (default [`crate::guest::config::DEFAULT_STATE_DIR`]).
    pub(crate) state_dir: PathBuf,
    /// Owner of the environment file: the codespace's remote user.
    pub(crate) owner: Owner,
    /// Export the token as `GITHUB_TOKEN` in the environment file (default true).
    pub export_token: bool,
    /// Git host the token is for unless a delivery says otherwise (default `github.com`).
    pub token_host: String,
    /// How long before expiry `token_expiring` is emitted (default 10 minutes).
    pub expiry_lead: time::Duration,
    /// Extra secret names refused (the organization policy's `secrets.deny_names`).
    pub(crate) extra_deny_names: Vec<String>,
}

impl VaultConfig {
    /// The defaults, for `state_dir` and `owner`.
    pub fn new(state_dir: impl Into<PathBuf>, owner: Owner) -> Self {
        Self {
            state_dir: state_dir.into(),
            owner,
            export_token: true,
            token_host: DEFAULT_TOKEN_HOST.to_owned(),
            expiry_lead: time::Duration::minutes(10),
            extra_deny_names: Vec::new(),
        }
    }
}

/// Lifecycle events the host sends that matter to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionEvent {
    /// The codespace was created: pending secrets land.
    Create,
    /// The codespace was resumed: pending secrets land.
    Resume,
    /// The codespace is being suspended: the token is wiped.
    Suspend,
}

/// Events the vault pushes to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VaultEvent {
    /// The token expires within the lead time.
    TokenExpiring {
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The token expired and was wiped from memory and the environment file.
    TokenExpired {
        /// When it expired.
        #[serde(with = "time::serde::rfc3339")]
        expired_at: OffsetDateTime,
    },
    /// A registry credential expired and was wiped from memory.
    RegistryExpired {
        /// Its registry.
        registry: String,
    },
    /// The environment file could not be rewritten (it was removed instead if possible; the
    /// vault retries). The message names the path and the cause, never a value.
    EnvironmentWriteFailed {
        /// What went wrong.
        message: String,
    },
}

/// Errors of vault operations (no values inside).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Writing or preparing the environment file failed.
    #[error(transparent)]
    EnvFile(#[from] EnvFileError),
    /// A token delivery was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A registry delivery or removal was refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The agent is not root, so it cannot give the file to another user.
    #[error("environment owner uid {owner} differs from the agent's uid {agent}, and the agent is not root")]
    OwnerMismatch {
        /// Configured owner.
        owner: u32,
        /// The agent's effective uid.
        agent: u32,
    },
}

/// What a session event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionReport {
    /// Whether a pending delivery became the current set.
    pub(crate) applied_pending: bool,
    /// Secret names now in the environment.
    pub(crate) secrets: Vec<String>,
    /// Whether a token was wiped (suspend).
    pub(crate) token_wiped: bool,
}

/// The vault's part of `status`: never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VaultStatus {
    /// The token, if one is held.
    pub(crate) token: Option<TokenStatus>,
    /// Secret names in the environment now.
    pub(crate) secrets: Vec<String>,
    /// Secret names waiting for the next `create`/`resume` (`None`: nothing pending; an empty
    /// list: a delivery with no secrets is pending, which will clear them).
    pub(crate) pending_secrets: Option<Vec<String>>,
    /// The last session event received.
    pub(crate) session: Option<SessionEvent>,
    /// Registry credentials held (never the secret).
    pub(crate) registries: Vec<RegistryStatus>,
    /// Whether the codespace is a prebuild now.
    pub(crate) prebuild: bool,
}

/// What starting or ending a prebuild did ([`Vault::set_prebuild`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PrebuildReport {
    /// Whether the codespace is a prebuild from now on.
    pub(crate) prebuild: bool,
    /// Whether a token was wiped.
    pub(crate) token_wiped: bool,
    /// How many registry credentials were wiped.
    pub(crate) registries_wiped: usize,
    /// How many secrets (current and pending) were wiped.
    pub(crate) secrets_wiped: usize,
}

/// A live token as the broker sees it, borrowed under the vault's lock.
#[derive(Debug, Clone, Copy)]
pub struct LiveToken<'a> {
    /// The token.
    pub value: &'a TokenValue,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// Its scope.
    pub scope: &'a codespace_policy::token::TokenScope,
    /// Its (normalized) git host.
    pub host: &'a str,
}

struct State {
    replay: ReplayGuard,
    current: SecretSet,
    pending: Option<SecretSet>,
    token: Option<token::Token>,
    session: Option<SessionEvent>,
    /// Set when the last environment write failed: when to try again.
    retry_at: Option<OffsetDateTime>,
    registries: registry::Registries,
    prebuild: bool,
}

struct Inner {
    config: VaultConfig,
    keys: AgentKeyPair,
    state: Mutex<State>,
    changed: Notify,
}

/// A cheaply clonable handle to the vault (all clones share one state).
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("state_dir", &self.inner.config.state_dir)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Prepares the directories, writes an empty environment file and returns the vault. The key
    /// pair moves in: its private half is used only to open secrets.
    pub fn new(config: VaultConfig, keys: AgentKeyPair) -> Result<Self, VaultError> {
        // Separated, the privileged side owns the directories and writes the file.
        if crate::guest::privsep::client().is_none() {
            let euid = rustix::process::geteuid();
            if !euid.is_root() && config.owner.uid != euid.as_raw() {
                return Err(VaultError::OwnerMismatch {
                    owner: config.owner.uid,
                    agent: euid.as_raw(),
                });
            }
            envfile::ensure_private_dir(&config.state_dir, 0o711)?;
            envfile::ensure_private_dir(&config.state_dir.join("env"), 0o711)?;
        }
        let vault = Self {
            inner: Arc::new(Inner {
                config,
                keys,
                state: Mutex::new(State {
                    replay: ReplayGuard::new(),
                    current: SecretSet::new(),
                    pending: None,
                    token: None,
                    session: None,
                    retry_at: None,
                    registries: registry::Registries::default(),
                    prebuild: false,
                }),
                changed: Notify::new(),
            }),
        };
        let path = vault.environment_path();
        store(&path, Some(&envfile::render([])), vault.inner.config.owner)?;
        Ok(vault)
    }

    /// The agent's public key (for `welcome`).
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.keys.public_key()
    }

    /// The environment file's path.
    pub(crate) fn environment_path(&self) -> PathBuf {
        environment_path(&self.inner.config.state_dir)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied state that matters more
        // than losing the agent's secrets, so a poisoned lock is used as is.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a delivery of sealed secrets into the pending set (see [`secrets`] for the checks).
    pub fn put_secrets(&self, delivery: Vec<SealedSecret>) -> SecretsReport {
        let mut state = self.lock();
        if state.prebuild {
            // DESIGN.md §1 "Secrets": not injected in prebuilds. Nothing is opened or kept.
            return secrets::refuse_all(
                &delivery,
                "prebuild",
                "secrets are not delivered to a prebuild",
            );
        }
        let (set, report) = secrets::open_delivery(
            &self.inner.keys,
            &mut state.replay,
            &self.inner.config.extra_deny_names,
            delivery,
        );
        state.pending = Some(set);
        report
    }

    /// Applies a lifecycle event: `create`/`resume` make pending secrets current and rewrite the
    /// environment file; `suspend` wipes the token.
    pub fn session(
        &self,
        event: SessionEvent,
        now: OffsetDateTime,
    ) -> Result<SessionReport, VaultError> {
        let mut state = self.lock();
        state.session = Some(event);
        let mut report = SessionReport {
            applied_pending: false,
            secrets: Vec::new(),
            token_wiped: false,
        };
        match event {
            SessionEvent::Create | SessionEvent::Resume => {
                if let Some(pending) = state.pending.take() {
                    state.current = pending;
                    report.applied_pending = true;
                }
            }
            SessionEvent::Suspend => {
                report.token_wiped = state.token.take().is_some();
                // Like the token, registry credentials are delivered afresh at the next start.
                state.registries.clear();
                self.inner.changed.notify_one();
            }
        }
        report.secrets = names(&state.current);
        self.write_env(&mut state, now)?;
        Ok(report)
    }

    /// Replaces the token everywhere at once (memory, environment file, broker).
    pub fn put_token(&self, put: TokenPut, now: OffsetDateTime) -> Result<TokenStatus, VaultError> {
        let token = put.validate(&self.inner.config.token_host, now)?;
        let status = self.status_of(&token);
        let mut state = self.lock();
        state.token = Some(token);
        self.inner.changed.notify_one();
        self.write_env(&mut state, now)?;
        Ok(status)
    }

    /// Names, token expiry and scope, registries; never values.
    pub(crate) fn status(&self) -> VaultStatus {
        let state = self.lock();
        VaultStatus {
            token: self.token_status(&state),
            secrets: names(&state.current),
            pending_secrets: state.pending.as_ref().map(names),
            session: state.session,
            registries: state.registries.status(),
            prebuild: state.prebuild,
        }
    }

    /// Starts (`true`) or ends (`false`) a prebuild. Starting one wipes any secrets and
    /// registry credentials (a prebuild gets none); ending one wipes the prebuild's token,
    /// registry credentials and secrets, so the codespace made from it starts with nothing of
    /// the prebuild's. The environment file is rewritten either way.
    pub(crate) fn set_prebuild(
        &self,
        prebuild: bool,
        now: OffsetDateTime,
    ) -> Result<PrebuildReport, VaultError> {
        let mut state = self.lock();
        let mut report = PrebuildReport {
            prebuild,
            token_wiped: false,
            registries_wiped: 0,
            secrets_wiped: 0,
        };
        if state.prebuild == prebuild {
            return Ok(report);
        }
        state.prebuild = prebuild;
        if !prebuild {
            report.token_wiped = state.token.take().is_some();
        }
        report.registries_wiped = state.registries.clear();
        report.secrets_wiped =
            std::mem::take(&mut state.current).len() + state.pending.take().map_or(0, |p| p.len());
        self.inner.changed.notify_one();
        self.write_env(&mut state, now)?;
        Ok(report)
    }

    /// Holds a registry credential ([`registry`] has the checks); its status.
    pub fn put_registry(
        &self,
        put: RegistryPut,
        now: OffsetDateTime,
    ) -> Result<RegistryStatus, VaultError> {
        let mut state = self.lock();
        let state = &mut *state;
        let status = state.registries.put(
            put,
            &self.inner.keys,
            &mut state.replay,
            state.prebuild,
            now,
        )?;
        self.inner.changed.notify_one();
        Ok(status)
    }

    /// Forgets the credential of `registry`; the registry removed.
    pub(crate) fn remove_registry(
        &self,
        registry: &str,
    ) -> Result<codespace_policy::container_registry::RegistryHost, VaultError> {
        Ok(self.lock().registries.remove(registry)?)
    }

    /// The registries Docker should ask the helper about at `now` (none in a prebuild).
    pub(crate) fn registry_hosts(
        &self,
        now: OffsetDateTime,
    ) -> Vec<codespace_policy::container_registry::RegistryHost> {
        let state = self.lock();
        if state.prebuild {
            return Vec::new();
        }
        state.registries.live_hosts(now)
    }

    /// The helper's `get` for `server_url` at `now` (see [`registry::Registries::answer`]).
    pub(crate) fn registry_answer(
        &self,
        server_url: &str,
        now: OffsetDateTime,
    ) -> Result<
        (
            codespace_policy::container_registry::RegistryHost,
            zeroize::Zeroizing<Vec<u8>>,
        ),
        codespace_policy::container_registry::RegistryRefusal,
    > {
        let state = self.lock();
        state.registries.answer(server_url, state.prebuild, now)
    }

    /// Every registry credential's secret, for redaction from lifecycle output only (copied
    /// into zeroizing buffers, never logged, never put in an environment).
    pub(crate) fn registry_secrets(&self) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
        self.lock().registries.secrets()
    }

    /// The helper's `list` at `now`: registry → username, no secret.
    pub(crate) fn registry_list(&self, now: OffsetDateTime) -> Vec<u8> {
        let state = self.lock();
        state.registries.list(state.prebuild, now)
    }

    /// When [`Vault::poll_expiry`] next has work to do, if ever.
    pub(crate) fn next_deadline(&self) -> Option<OffsetDateTime> {
        let state = self.lock();
        let token = state
            .token
            .as_ref()
            .map(|t| t.next_deadline(self.inner.config.expiry_lead));
        [token, state.retry_at, state.registries.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances the expiry schedule to `now`: emits `token_expiring` once within the lead time,
    /// and at expiry wipes the token from memory and the environment file.
    pub fn poll_expiry(&self, now: OffsetDateTime) -> Vec<VaultEvent> {
        let mut state = self.lock();
        let mut events = Vec::new();
        let lead = self.inner.config.expiry_lead;
        let mut rewrite = state.retry_at.is_some_and(|at| now >= at);
        if let Some(token) = state.token.as_mut() {
            match token.step(lead, now) {
                token::ExpiryStep::Wait => {}
                token::ExpiryStep::Warn => events.push(VaultEvent::TokenExpiring {
                    expires_at: token.expires_at(),
                }),
                token::ExpiryStep::Wipe => {
                    events.push(VaultEvent::TokenExpired {
                        expired_at: token.expires_at(),
                    });
                    state.token = None;
                    rewrite = true;
                }
            }
        }
        events.extend(state.registries.expire(now).into_iter().map(|host| {
            VaultEvent::RegistryExpired {
                registry: host.to_string(),
            }
        }));
        if rewrite {
            if let Err(err) = self.write_env(&mut state, now) {
                events.push(VaultEvent::EnvironmentWriteFailed {
                    message: err.to_string(),
                });
            }
        }
        events
    }

    /// Runs `f` with the live token (or `None` when there is none or it has expired at `now`,
    /// even if the expiry driver has not wiped it yet).
    pub(crate) fn with_token<R>(
        &self,
        now: OffsetDateTime,
        f: impl FnOnce(Option<LiveToken<'_>>) -> R,
    ) -> R {
        let state = self.lock();
        let live = state.token.as_ref().and_then(|token| {
            token.live(now).map(|value| LiveToken {
                value,
                expires_at: token.expires_at(),
                scope: token.scope(),
                host: token.host(),
            })
        });
        f(live)
    }

    /// The current secrets and the live token, for the lifecycle runner: the environment of
    /// commands whose profile allows them, and redaction of every command's output. Values are
    /// copied into zeroizing buffers and never logged.
    #[allow(clippy::type_complexity)]
    pub(crate) fn values_for_commands(
        &self,
        now: OffsetDateTime,
    ) -> (
        Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
        Option<zeroize::Zeroizing<String>>,
    ) {
        let state = self.lock();
        let secrets = state
            .current
            .values()
            .map(|e| {
                (
                    e.name.clone(),
                    zeroize::Zeroizing::new(e.value.expose().to_vec()),
                )
            })
            .collect();
        let token = state
            .token
            .as_ref()
            .and_then(|t| t.live(now))
            .map(|v| zeroize::Zeroizing::new(v.expose().to_owned()));
        (secrets, token)
    }

    pub(crate) fn changed(&self) -> &Notify {
        &self.inner.changed
    }

    fn token_status(&self, state: &State) -> Option<TokenStatus> {
        state.token.as_ref().map(|token| self.status_of(token))
    }

    fn status_of(&self, token: &token::Token) -> TokenStatus {
        TokenStatus {
            expires_at: token.expires_at(),
            scope: token.scope().clone(),
            host: token.host().to_owned(),
            exported: self.inner.config.export_token,
        }
    }

    /// Rewrites the environment file from the current set and the live token. On failure the
    /// old file is removed (so a wiped token cannot linger on disk) and a retry is scheduled.
    fn write_env(&self, state: &mut State, now: OffsetDateTime) -> Result<(), EnvFileError> {
        let config = &self.inner.config;
        // A prebuild's token is served by the broker only: exported, it would sit in the
        // environment of every process started from the file, where /proc shows it to the
        // codespace's code after the prebuild ends.
        let token = state
            .token
            .as_ref()
            .filter(|_| config.export_token && !state.prebuild)
            .and_then(|t| t.live(now));
        let entries = state
            .current
            .values()
            .map(|e| (e.name.as_str(), e.value.expose()))
            .chain(token.map(|t| (TOKEN_VARIABLE, t.expose().as_bytes())));
        let contents = envfile::render(entries);
        let path = self.environment_path();
        match store(&path, Some(&contents), config.owner) {
            Ok(()) => {
                state.retry_at = None;
                Ok(())
            }
            Err(err) => {
                let _ = store(&path, None, config.owner);
                state.retry_at = Some(now + RETRY_AFTER);
                self.inner.changed.notify_one();
                Err(err)
            }
        }
    }
}

/// Writes (`Some`) or removes (`None`) the environment file: through the privileged side when
/// the agent is separated (it owns the directory and hands the file to `owner`), here otherwise.
fn store(path: &Path, contents: Option<&[u8]>, owner: Owner) -> Result<(), EnvFileError> {
    match (crate::guest::privsep::client(), contents) {
        (Some(c), _) => c.env_file(contents).map_err(|e| EnvFileError::Io {
            action: if contents.is_some() {
                "write"
            } else {
                "remove"
            },
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        }),
        (None, Some(contents)) => envfile::write_atomic(path, contents, owner),
        (None, None) => envfile::remove(path),
    }
}

fn names(set: &SecretSet) -> Vec<String> {
    set.values().map(|e| e.name.clone()).collect()
}

#[cfg(test)]
mod tests;
