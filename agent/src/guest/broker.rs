//! The git credential broker: hands the current token to git, only to the right callers and
//! only for the right repositories.
//!
//! ```text
//! git ─► codespace-agent git-credential get ─► <state-dir>/git-credential.sock ─► broker
//!        (stdin: protocol=https, host=…, path=…)      "get\n" + git's lines, EOF
//!                                                                                  │
//!  at accept, before a byte is read and before any slot is taken (never waits):   │
//!  1. peer: SO_PEERCRED uid ∈ allowed_uids, and /proc/<pid>/cgroup without the
//!     restricted-sandbox marker                          ── else close at once
//!  2. slot: one of the uid's max_connections_per_uid (16), then one of the
//!     max_connections (64) shared by all allowed uids    ── else close at once
//!  ─ spawned, holding the slot at most 2 × io_timeout ─────────────────────────────
//!  3. request: action get, protocol https, host = token host, path (if any) in scope
//!     and free of `.`/`..`/empty segments and `%`     ── else answer nothing
//!  4. answer: username=x-access-token / password=<token> / password_expiry_utc=<unix>
//! ```
//!
//! "Nothing" is an empty reply: git then tries its next helper or prompts, which is how a
//! credential helper says "not mine". A connection closed at once means the same: the helper
//! reads the close (or the reset, when its request was still unread) as an empty answer.
//! `store` and `erase` are read and ignored, since the token is managed by the host. The token
//! is read from the vault at every request, so git always gets the current one and never one
//! that expired.
//!
//! Why steps 1 and 2 happen at accept: slots used to be taken before the peer was known and
//! kept while a refused peer's request was drained (up to `io_timeout`), so any local uid holding
//! a few hundred idle connections kept the codespace user's `git credential get` waiting until
//! its helper gave up. Now a refused peer costs no slot and no wait, and an allowed uid that
//! holds connections only uses up its own share ([`admission`]). A connection over its uid's
//! share is closed rather than queued, so the accept loop never waits and the listen backlog
//! drains at the speed of `accept`.
//! Refusals are reported as [`Outcome`]s at a bounded rate; the rest are counted
//! ([`Outcome::Unreported`]).
//!
//! The restricted lifecycle sandbox runs its processes in a cgroup whose path contains
//! [`DEFAULT_RESTRICTED_CGROUP_MARKER`] (configurable); since children inherit the cgroup, a
//! credential helper started by git inside the sandbox is recognised and refused. Reading
//! `/proc/<pid>/cgroup` after `accept` races with pid reuse only if the peer exits first, in
//! which case its socket end is gone and nothing is answered to anyone.
//!
//! The same socket, with the same admission, serves the Docker credential helper's requests
//! (`docker-get`, `docker-list`): see [`crate::guest::registry`].
//!
//! Scope checks need git's `path`, which git sends only with `credential.useHttpPath`; the
//! packaging sets it for the token host. Without a path the broker answers for the host as a
//! whole, unless [`BrokerConfig::require_path`] is set.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codespace_policy::repo::RepoName;
use codespace_policy::token::{RepoPermissions, ScopeDenyReason};
use codespace_policy::Authorized;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::guest::service::EventSink;
use crate::guest::trail::Kind;
use crate::guest::vault::{LiveToken, Vault};

pub mod admission;

use admission::{RefusalReports, Report};

/// File name of the socket in the state directory.
pub(crate) const SOCKET_NAME: &str = "git-credential.sock";

/// Default cgroup path fragment that marks the restricted lifecycle sandbox.
pub(crate) const DEFAULT_RESTRICTED_CGROUP_MARKER: &str = "codespace-lifecycle-restricted";

/// Largest request accepted, in bytes (git's requests are a few hundred bytes).
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The username GitHub expects with an installation or user-to-server token.
pub(crate) const USERNAME: &str = "x-access-token";

/// How the broker is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Where the socket is created (default `<state-dir>/git-credential.sock`).
    pub socket_path: PathBuf,
    /// Uids allowed to ask (the codespace's remote user; add others deliberately).
    pub(crate) allowed_uids: Vec<u32>,
    /// Cgroup path fragment of the restricted lifecycle sandbox.
    pub(crate) restricted_cgroup_marker: String,
    /// Where `/proc` is (tests point it at a fake tree).
    pub proc_root: PathBuf,
    /// Refuse requests without a `path` (enforces scope even if `useHttpPath` is off).
    pub(crate) require_path: bool,
    /// Time allowed to read a request, and again to write an answer: an allowed peer holds its
    /// slot for at most twice this.
    pub io_timeout: Duration,
    /// Connections served at once, all allowed uids together. A connection beyond it is closed
    /// at once ([`Silence::Busy`]), never queued: queueing would let the uids holding slots
    /// delay everyone else. With the defaults, four allowed uids each get their whole share.
    pub(crate) max_connections: usize,
    /// Connections served at once for one uid. A uid's connection beyond it is closed at once
    /// ([`Silence::UidBusy`]), so a uid that holds connections (idle, slow, or many) delays only
    /// itself. Git asks once per operation, so even parallel fetches stay far below 16.
    pub max_connections_per_uid: usize,
}

impl BrokerConfig {
    /// The defaults for `state_dir`, allowing `allowed_uids`.
    pub fn new(state_dir: &Path, allowed_uids: Vec<u32>) -> Self {
        Self {
            socket_path: socket_path(state_dir),
            allowed_uids,
            restricted_cgroup_marker: DEFAULT_RESTRICTED_CGROUP_MARKER.to_owned(),
            proc_root: PathBuf::from("/proc"),
            require_path: false,
            io_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connections_per_uid: 16,
        }
    }
}

/// Errors of the broker itself (per-connection problems are [`Outcome`]s, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Something other than a socket is in the way at the socket path.
    #[error("{path}: exists and is not a socket")]
    PathInUse {
        /// The socket path.
        path: String,
    },
    /// A socket operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The git operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// Fetch a credential.
    Get,
    /// Git reports that a credential worked (ignored).
    Store,
    /// Git reports that a credential was rejected (ignored).
    Erase,
}

/// The parts of git's request the broker looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    /// The operation.
    pub(crate) action: Action,
    /// `protocol=`.
    pub(crate) protocol: Option<String>,
    /// `host=` (with `:port` when git has one).
    pub(crate) host: Option<String>,
    /// `path=` (only with `credential.useHttpPath`).
    pub path: Option<String>,
}

/// Why a request is not answered, or a caller not served. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Silence {
    /// The request does not follow git's format.
    MalformedRequest,
    /// `store` or `erase`: accepted and ignored.
    Ignored,
    /// Not `protocol=https`.
    NotHttps,
    /// Not the token's host.
    WrongHost,
    /// No `path` while [`BrokerConfig::require_path`] is set.
    MissingPath,
    /// `path` does not start with `owner/name`.
    InvalidRepository,
    /// The repository is not in the token's scope.
    OutOfScope,
    /// No token, or it has expired.
    NoToken,
    /// The caller's uid is not allowed.
    UidNotAllowed,
    /// The caller runs in the restricted lifecycle sandbox.
    RestrictedSandbox,
    /// The caller's pid or cgroup could not be determined (refused: fail closed).
    UnknownPeer,
    /// The request did not arrive in time.
    Timeout,
    /// The caller's uid already has [`BrokerConfig::max_connections_per_uid`] connections.
    UidBusy,
    /// All [`BrokerConfig::max_connections`] slots are taken.
    Busy,
}

impl Silence {}

/// What happened on one connection (for logs and tests; never holds the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A credential was handed out.
    Answered {
        /// Caller's uid.
        uid: u32,
        /// The repository it was for, when git sent a path.
        repository: Option<String>,
    },
    /// Nothing was answered.
    Silent {
        /// Caller's uid, if known.
        uid: Option<u32>,
        /// Why.
        reason: Silence,
        /// The repository git asked for, when the request got that far and named one.
        #[serde(skip_serializing_if = "Option::is_none")]
        repository: Option<String>,
    },
    /// A registry credential request (the Docker helper's), as [`crate::guest::registry::record`]
    /// recorded it.
    Registry(crate::guest::registry::RegistryAccess),
    /// Connections refused at accept that were counted instead of reported one by one (more
    /// than [`admission::REFUSALS_REPORTED_PER_WINDOW`] in an [`admission::REFUSAL_WINDOW`]).
    /// Sent just before the next refusal that is reported.
    Unreported {
        /// How many.
        refusals: u64,
    },
}

/// Parses `<action>\n` followed by git's `key=value` lines (until EOF or a blank line). Keys the
/// broker does not use are ignored; a repeated `protocol`, `host` or `path` is malformed.
pub fn parse_request(bytes: &[u8]) -> Result<CredentialRequest, Silence> {
    let text = std::str::from_utf8(bytes).map_err(|_| Silence::MalformedRequest)?;
    if text.contains('\0') {
        return Err(Silence::MalformedRequest);
    }
    let mut lines = text.split('\n');
    let action = match lines.next().map(|l| l.trim_end_matches('\r')) {
        Some("get") => Action::Get,
        Some("store") => Action::Store,
        Some("erase") => Action::Erase,
        _ => return Err(Silence::MalformedRequest),
    };
    let mut request = CredentialRequest {
        action,
        protocol: None,
        host: None,
        path: None,
    };
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once('=').ok_or(Silence::MalformedRequest)?;
        let slot = match key {
            "protocol" => &mut request.protocol,
            "host" => &mut request.host,
            "path" => &mut request.path,
            _ => continue,
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(Silence::MalformedRequest);
        }
    }
    Ok(request)
}

/// Permission to hand the token out, built only by [`decide`].
#[derive(Debug)]
pub enum Grant {
    /// For one repository in scope (git sent a path).
    Repository(Authorized<(RepoName, RepoPermissions)>),
    /// For the token's host, without a path (scope cannot be checked: see the module docs).
    Host,
}

/// Decides a request against the live token (pure).
pub fn decide(
    request: &CredentialRequest,
    token: Option<&LiveToken<'_>>,
    require_path: bool,
) -> Result<Grant, Silence> {
    if request.action != Action::Get {
        return Err(Silence::Ignored);
    }
    if request.protocol.as_deref() != Some("https") {
        return Err(Silence::NotHttps);
    }
    let token = token.ok_or(Silence::NoToken)?;
    let host_matches = request
        .host
        .as_deref()
        .is_some_and(|host| host.eq_ignore_ascii_case(token.host));
    if !host_matches {
        return Err(Silence::WrongHost);
    }
    let Some(path) = request.path.as_deref() else {
        return if require_path {
            Err(Silence::MissingPath)
        } else {
            Ok(Grant::Host)
        };
    };
    let repository = repository_of(path).ok_or(Silence::InvalidRepository)?;
    match token.scope.authorize_repository(&repository) {
        Ok(authorized) => Ok(Grant::Repository(authorized)),
        Err(ScopeDenyReason::OutOfScope) => Err(Silence::OutOfScope),
        Err(_) => Err(Silence::InvalidRepository),
    }
}

/// The `owner/name` a git credential `path` names: `owner/name`, `owner/name.git` and anything
/// below it (`owner/name.git/info/lfs`, Git LFS) name `owner/name`. `None` when the path could
/// name another repository once a URL is normalized: an empty, `.` or `..` segment
/// (`octo/app.git/../../evil/x.git` reaches `evil/x` over HTTP), or a `%` or `\` anywhere (an
/// encoded dot or slash, or a Windows separator, that a client or server may decode or
/// translate).
fn repository_of(path: &str) -> Option<String> {
    let path = path.trim_start_matches('/');
    if path.contains(['%', '\\']) {
        return None;
    }
    let mut segments = path.trim_end_matches('/').split('/');
    let (owner, name) = (segments.next()?, segments.next()?);
    let dot_or_empty = |s: &str| s.is_empty() || s == "." || s == "..";
    if dot_or_empty(owner) || dot_or_empty(name) || segments.any(dot_or_empty) {
        return None;
    }
    Some(format!("{owner}/{name}"))
}

/// Renders git's answer. It takes the [`Grant`] only [`decide`] makes, so no code path can
/// render a credential without a decision.
pub(crate) fn render_answer(token: &LiveToken<'_>, _grant: &Grant) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(128 + token.value.len()));
    out.extend_from_slice(format!("username={USERNAME}\npassword=").as_bytes());
    out.extend_from_slice(token.value.expose().as_bytes());
    out.extend_from_slice(
        format!(
            "\npassword_expiry_utc={}\n",
            token.expires_at.unix_timestamp()
        )
        .as_bytes(),
    );
    out
}

/// Whether a `/proc/<pid>/cgroup` text puts the process in the restricted sandbox.
pub(crate) fn in_restricted_cgroup(cgroup_file: &str, marker: &str) -> bool {
    !marker.is_empty()
        && cgroup_file
            .lines()
            .filter_map(|line| line.splitn(3, ':').nth(2))
            .any(|path| path.contains(marker))
}

/// Checks the caller's credentials: allowed uid, known pid, not in the restricted sandbox.
pub(crate) fn check_peer(uid: u32, pid: Option<i32>, config: &BrokerConfig) -> Result<(), Silence> {
    if !config.allowed_uids.contains(&uid) {
        return Err(Silence::UidNotAllowed);
    }
    let pid = pid
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or(Silence::UnknownPeer)?;
    // The lifecycle sandbox puts every restricted run in a cgroup carrying the marker.
    match crate::guest::sandbox::cgroup::is_restricted_pid_in(
        &config.proc_root,
        pid,
        &config.restricted_cgroup_marker,
    ) {
        Ok(false) => Ok(()),
        Ok(true) => Err(Silence::RestrictedSandbox),
        Err(_) => Err(Silence::UnknownPeer),
    }
}

/// Where the broker listens in `state_dir`.
pub(crate) fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Binds the broker's socket at `path` (replacing a stale socket, never another kind of file)
/// with mode 0666: access is decided per connection by `SO_PEERCRED`, not by file permissions.
pub(crate) fn bind_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, BrokerError> {
    crate::guest::transport::bind_unix(path, 0o666).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            BrokerError::PathInUse {
                path: path.display().to_string(),
            }
        } else {
            BrokerError::Io {
                action: "bind",
                path: path.display().to_string(),
                source,
            }
        }
    })
}

/// A bound broker socket (`listener`, at `path`) made ready for the runtime: non-blocking, and
/// registered with tokio. Must be called inside a tokio runtime.
pub(crate) fn async_listener(
    listener: std::os::unix::net::UnixListener,
    path: &Path,
) -> Result<UnixListener, BrokerError> {
    let io = |source| BrokerError::Io {
        action: "listen on",
        path: path.display().to_string(),
        source,
    };
    listener.set_nonblocking(true).map_err(io)?;
    UnixListener::from_std(listener).map_err(io)
}

/// A clock for the broker (real time in the daemon, a test clock in tests).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The bound broker, ready to serve.
pub struct Broker {
    listener: UnixListener,
    config: Arc<BrokerConfig>,
    vault: Vault,
    clock: Clock,
    outcomes: Option<mpsc::Sender<Outcome>>,
    trail: Option<EventSink>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Binds the socket ([`bind_socket`]) and returns the broker. Must be called inside a tokio
    /// runtime.
    pub fn bind(config: BrokerConfig, vault: Vault) -> Result<Self, BrokerError> {
        let listener = bind_socket(&config.socket_path)?;
        Self::from_listener(config, vault, listener)
    }

    /// The broker on a socket bound elsewhere (by the privileged side of the agent, which owns
    /// the state directory). Must be called inside a tokio runtime.
    pub fn from_listener(
        config: BrokerConfig,
        vault: Vault,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<Self, BrokerError> {
        let listener = async_listener(listener, &config.socket_path)?;
        Ok(Self {
            listener,
            config: Arc::new(config),
            vault,
            clock: Arc::new(OffsetDateTime::now_utc),
            outcomes: None,
            trail: None,
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Reports connections' [`Outcome`]s on `sender`: every served connection's, and refusals at
    /// accept at a bounded rate (the rest as a count, [`Outcome::Unreported`]). Outcomes are
    /// dropped when the channel is full, so a slow reader never stalls git.
    pub fn with_outcomes(mut self, sender: mpsc::Sender<Outcome>) -> Self {
        self.outcomes = Some(sender);
        self
    }

    /// Records every served connection's [`Outcome`] in the audit trail, with the caller's
    /// pid and executable, and refusals at accept at the same bounded rate as
    /// [`Self::with_outcomes`].
    pub fn with_trail(mut self, events: EventSink) -> Self {
        self.trail = Some(events);
        self
    }

    /// Serves until `shutdown` completes; then removes the socket. The loop never waits for a
    /// slot or for a peer: each accepted connection is admitted or closed at once (see the
    /// module docs).
    pub async fn serve<S: Future<Output = ()>>(self, shutdown: S) -> Result<(), BrokerError> {
        let mut refusals = RefusalReports::default();
        admission::accept_loop(
            &self.listener,
            &self.config,
            shutdown,
            |stream, uid, pid, slot| {
                let config = Arc::clone(&self.config);
                let vault = self.vault.clone();
                let clock = Arc::clone(&self.clock);
                let outcomes = self.outcomes.clone();
                // Who called, read now: git's helper may be gone by the time the answer is
                // written.
                let caller = caller(&config.proc_root, pid);
                let trail = self.trail.clone();
                tokio::spawn(async move {
                    let outcome =
                        handle_connection(stream, uid, &caller, &config, &vault, &clock).await;
                    // The slot is free before the report: a full channel never holds it.
                    drop(slot);
                    match &outcome {
                        // Every registry answer and refusal goes through its one function.
                        Outcome::Registry(access) => {
                            crate::guest::registry::record(access, trail.as_ref());
                        }
                        other => {
                            if let Some(events) = &trail {
                                record(events, other, &caller);
                            }
                        }
                    }
                    if let Some(sender) = outcomes {
                        let _ = sender.try_send(outcome);
                    }
                });
            },
            |refusal, pid| self.report_refusal(&mut refusals, refusal, pid),
        )
        .await;
        let _ = std::fs::remove_file(&self.config.socket_path);
        Ok(())
    }

    /// Reports a refusal at accept within [`RefusalReports`]' rate.
    fn report_refusal(&self, refusals: &mut RefusalReports, refusal: Outcome, pid: Option<i32>) {
        if self.outcomes.is_none() && self.trail.is_none() {
            return;
        }
        match refusals.admit(std::time::Instant::now()) {
            Report::Count => {}
            Report::Send { unreported } => {
                let mut report = Vec::with_capacity(2);
                if unreported > 0 {
                    report.push((
                        Outcome::Unreported {
                            refusals: unreported,
                        },
                        None,
                    ));
                }
                report.push((refusal, pid));
                for (outcome, pid) in report {
                    if let Some(events) = &self.trail {
                        record(events, &outcome, &caller(&self.config.proc_root, pid));
                    }
                    if let Some(sender) = &self.outcomes {
                        let _ = sender.try_send(outcome);
                    }
                }
            }
        }
    }
}

/// Who called, for the audit trail: the pid from `SO_PEERCRED` and its executable
/// (`/proc/PID/exe`, or its `comm` name when the agent may not read the link: the network side
/// runs as its own user).
pub(crate) fn caller(
    proc_root: &Path,
    pid: Option<i32>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    if let Some(pid) = pid.filter(|p| *p > 0) {
        let dir = proc_root.join(pid.to_string());
        fields.insert("pid".into(), pid.into());
        match std::fs::read_link(dir.join("exe")) {
            Ok(exe) => {
                fields.insert("exe".into(), exe.display().to_string().into());
            }
            Err(_) => {
                if let Ok(comm) = std::fs::read_to_string(dir.join("comm")) {
                    fields.insert("comm".into(), comm.trim_end().into());
                }
            }
        }
    }
    fields
}

/// Records a connection's outcome and its caller in the audit trail.
fn record(
    events: &EventSink,
    outcome: &Outcome,
    caller: &serde_json::Map<String, serde_json::Value>,
) {
    let mut fields = serde_json::to_value(outcome).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut fields {
        m.extend(caller.clone());
    }
    events.audit(Kind::Credential, fields);
}

/// Serves one request from an already checked peer over any stream (unit tests use a duplex):
/// git's, or the Docker helper's ([`crate::guest::registry`]). `caller` is [`caller`]'s view of
/// the peer, for the registry's records.
pub(crate) async fn handle_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    uid: u32,
    caller: &serde_json::Map<String, serde_json::Value>,
    config: &BrokerConfig,
    vault: &Vault,
    clock: &Clock,
) -> Outcome {
    let silent = |reason| Outcome::Silent {
        uid: Some(uid),
        reason,
        repository: None,
    };
    let request = match tokio::time::timeout(config.io_timeout, read_request(&mut stream)).await {
        Err(_) => return silent(Silence::Timeout),
        Ok(Err(reason)) => return silent(reason),
        Ok(Ok(bytes)) => bytes,
    };
    if let Some(registry) = crate::guest::registry::HelperRequest::parse(&request) {
        return Outcome::Registry(
            crate::guest::registry::serve(
                &mut stream,
                uid,
                caller.clone(),
                registry,
                vault,
                clock(),
                config.io_timeout,
            )
            .await,
        );
    }
    let request = match parse_request(&request) {
        Ok(request) => request,
        Err(reason) => return silent(reason),
    };
    let decided = vault.with_token(clock(), |token| {
        decide(&request, token.as_ref(), config.require_path).map(|grant| {
            let repository = match &grant {
                Grant::Repository(authorized) => Some(authorized.get().0.to_string()),
                Grant::Host => None,
            };
            // `token` is Some whenever decide grants.
            let answer = token.as_ref().map(|t| render_answer(t, &grant));
            (answer, repository)
        })
    });
    match decided {
        Ok((Some(answer), repository)) => {
            let written = tokio::time::timeout(config.io_timeout, async {
                stream.write_all(&answer).await?;
                stream.shutdown().await
            })
            .await;
            match written {
                Ok(Ok(())) => Outcome::Answered { uid, repository },
                _ => silent(Silence::Timeout),
            }
        }
        Ok((None, _)) => silent(Silence::NoToken),
        Err(reason) => {
            let _ = stream.shutdown().await;
            Outcome::Silent {
                uid: Some(uid),
                reason,
                repository: request
                    .path
                    .as_deref()
                    .and_then(repository_of)
                    .map(|r| r.trim_end_matches(".git").to_owned()),
            }
        }
    }
}

/// Reads until EOF or a blank line, at most [`MAX_REQUEST_BYTES`].
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, Silence> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| Silence::MalformedRequest)?;
        if n == 0 {
            return Ok(buffer);
        }
        if buffer.len() + n > MAX_REQUEST_BYTES {
            return Err(Silence::MalformedRequest);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if buffer.windows(2).any(|w| w == b"\n\n") {
            return Ok(buffer);
        }
    }
}

#[cfg(test)]
mod tests;
