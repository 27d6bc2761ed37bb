//! Container registry credentials, brokered: Docker's credential helper asks the agent's broker
//! socket, and the agent points Docker at that helper for the registries the host delivered.
//!
//! ```text
//!  docker pull ghcr.io/octo/app
//!   └─ ~/.docker/config.json credHelpers {"ghcr.io": "codespace"}      (docker_config.rs)
//!       └─ docker-credential-codespace get  (stdin: ghcr.io)           (crate::docker_credential)
//!           └─ <state-dir>/git-credential.sock: "docker-get\nghcr.io\n\n"
//!               broker admission at accept: SO_PEERCRED uid allowed, not a restricted run,
//!               per-uid slot                          ── else closed: "not found" for Docker
//!               serve(): vault.registry_answer ─ policy: prebuild? exact host? expired?
//!               record(): every answer and refusal, one function (the audit hook)
//!           ◄── {"ServerURL","Username","Secret"} or nothing
//! ```
//!
//! The registry requests share the git credential broker's socket and its admission
//! ([`super::broker::admission`]), so the rules are the same ones, enforced in the same place:
//! only the codespace user's uid (or the configured `credential_uids`), never a process of a
//! restricted lifecycle run, a bounded share of connections per uid. A refused caller is closed
//! before its request is read, so it never reaches [`record`]: the broker records it in the
//! audit trail like any refusal at accept (a `credential` record with the caller's uid, pid,
//! executable and reason, and no registry: none was read). Everything past admission, answered
//! or not, goes through [`record`] (a `registry` record).
//!
//! The helper's requests on the socket (the first line tells them from git's `get`/`store`/
//! `erase`):
//!
//! | request | answer |
//! |---|---|
//! | `docker-get\n<server URL>\n\n` | Docker's JSON `{"ServerURL","Username","Secret"}\n`, or nothing |
//! | `docker-list\n\n` | `{"<registry>": "<username>", ...}\n` (no secret) |

pub mod docker_config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codespace_policy::container_registry::{RegistryHost, RegistryRefusal};
use codespace_policy::ReasonCode as _;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::privsep::client::CallError;
use super::privsep::MonitorClient;
use super::service::EventSink;
use super::trail::Kind;
use super::vault::{Owner, Vault};
use docker_config::{DockerConfigError, DockerConfigReport};

/// First line of the helper's `get` on the broker socket.
pub(crate) const GET: &str = "docker-get";

/// First line of the helper's `list` on the broker socket.
pub(crate) const LIST: &str = "docker-list";

/// Longest server URL carried (Docker's are a host and maybe a path).
pub const MAX_SERVER_URL_BYTES: usize = 2048;

/// What the helper asks the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperRequest {
    /// The credential for the registry a server URL names.
    Get(String),
    /// Every registry and its username.
    List,
}

/// A registry request that is malformed (the broker answers nothing), by its action (`get`,
/// `list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl HelperRequest {
    /// Parses a request read from the broker socket. `None`: not a registry request (git's);
    /// `Some(Err)`: a registry request that is malformed (not UTF-8, a NUL, a server URL that
    /// is empty, too long or spans lines, or anything after it).
    pub fn parse(bytes: &[u8]) -> Option<Result<Self, Malformed>> {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let (kind, action) = match first {
            b"docker-get" => (GET, "get"),
            b"docker-list" => (LIST, "list"),
            _ => return None,
        };
        Some(Self::parse_body(kind, &bytes[first.len()..]).ok_or(Malformed(action)))
    }

    fn parse_body(kind: &str, rest: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(rest).ok()?;
        if text.contains('\0') {
            return None;
        }
        let mut lines = text.strip_prefix('\n').unwrap_or(text).split('\n');
        let request = if kind == LIST {
            Self::List
        } else {
            let url = lines.next().unwrap_or_default();
            if url.trim().is_empty() || url.len() > MAX_SERVER_URL_BYTES || url.contains('\r') {
                return None;
            }
            Self::Get(url.to_owned())
        };
        // Nothing but the blank line that ends the request (and the end of the stream).
        if lines.any(|l| !l.is_empty()) {
            return None;
        }
        Some(request)
    }

    /// The bytes the helper sends.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Get(url) => format!("{GET}\n{url}\n\n").into_bytes(),
            Self::List => format!("{LIST}\n\n").into_bytes(),
        }
    }
}

/// How a registry request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reason")]
pub enum AccessResult {
    /// Answered.
    Answered,
    /// Not answered, for this policy reason (the helper tells Docker "not found").
    Refused(RegistryRefusal),
    /// The request was malformed.
    Malformed,
    /// The answer could not be written in time.
    Timeout,
}

/// One registry request: the audit record, made by [`record`] only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryAccess {
    /// `get` or `list`.
    pub action: &'static str,
    /// The registry asked for: its host when the server URL names one, else `None`.
    pub registry: Option<String>,
    /// Who asked: its uid (`SO_PEERCRED`).
    pub uid: u32,
    /// Who asked: `pid`, and `exe` (or `comm` when the link cannot be read), as the broker
    /// reads them for every caller.
    #[serde(flatten)]
    pub caller: Map<String, Value>,
    /// How it ended.
    #[serde(flatten)]
    pub result: AccessResult,
}

/// Every registry credential answer and refusal passes here, once (the broker calls it for
/// each registry request it served): a log line, and a `registry` record in the audit trail
/// when the broker has one. Never sees a secret.
pub(crate) fn record(access: &RegistryAccess, trail: Option<&EventSink>) {
    let reason = match access.result {
        AccessResult::Refused(r) => r.code(),
        AccessResult::Answered => "answered",
        AccessResult::Malformed => "malformed",
        AccessResult::Timeout => "timeout",
    };
    tracing::info!(
        action = access.action,
        registry = access.registry.as_deref().unwrap_or("-"),
        uid = access.uid,
        pid = access.caller.get("pid").and_then(serde_json::Value::as_u64),
        exe = access
            .caller
            .get("exe")
            .or_else(|| access.caller.get("comm"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-"),
        result = reason,
        "registry credential request"
    );
    if let Some(events) = trail {
        events.audit(
            Kind::Registry,
            serde_json::to_value(access).unwrap_or_default(),
        );
    }
}

/// Serves one registry request from an admitted caller: decides with the vault at `now` and
/// writes the answer (or nothing) within `io_timeout`; the outcome, for [`record`].
pub(crate) async fn serve<S: AsyncWrite + Unpin>(
    stream: &mut S,
    uid: u32,
    caller: Map<String, Value>,
    request: Result<HelperRequest, Malformed>,
    vault: &Vault,
    now: OffsetDateTime,
    io_timeout: Duration,
) -> RegistryAccess {
    let (action, registry, answer, mut result) = match request {
        Err(Malformed(action)) => (action, None, None, AccessResult::Malformed),
        Ok(HelperRequest::List) => (
            "list",
            None,
            Some(zeroize::Zeroizing::new(vault.registry_list(now))),
            AccessResult::Answered,
        ),
        Ok(HelperRequest::Get(url)) => match vault.registry_answer(&url, now) {
            Ok((host, answer)) => (
                "get",
                Some(host.to_string()),
                Some(answer),
                AccessResult::Answered,
            ),
            Err(refusal) => (
                "get",
                RegistryHost::parse(&url).ok().map(|h| h.to_string()),
                None,
                AccessResult::Refused(refusal),
            ),
        },
    };
    let written = tokio::time::timeout(io_timeout, async {
        if let Some(answer) = &answer {
            stream.write_all(answer).await?;
        }
        stream.shutdown().await
    })
    .await;
    if answer.is_some() && !matches!(written, Ok(Ok(()))) {
        result = AccessResult::Timeout;
    }
    RegistryAccess {
        action,
        registry,
        uid,
        caller,
        result,
    }
}

/// Why `credHelpers` could not be brought in line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The file was refused or could not be written here.
    #[error(transparent)]
    Config(#[from] DockerConfigError),
    /// The privileged side refused or failed.
    #[error(transparent)]
    Privileged(#[from] CallError),
    /// There is no directory to write to (the user has no home, say).
    #[error("{0}")]
    NoDirectory(String),
}

/// Who writes the codespace user's `~/.docker/config.json`.
#[derive(Debug, Clone)]
pub enum DockerConfigSync {
    /// The privileged side (separated: the network side may not write the user's home).
    Privileged(Arc<MonitorClient>),
    /// This process (not separated), into `dir` for `owner`.
    Local {
        /// The Docker configuration directory, or why there is none.
        dir: Result<PathBuf, String>,
        /// The codespace user.
        owner: Owner,
    },
    /// Nobody (an agent without the vault's registry requests, tests of other parts).
    Off,
}

impl DockerConfigSync {
    /// The sync of this process: through the privileged side when separated, else here into
    /// `configured` or the owner's `~/.docker` (home from `/etc/passwd`).
    pub fn for_agent(configured: Option<&Path>, owner: Owner) -> Self {
        if let Some(client) = super::privsep::client() {
            return Self::Privileged(client.clone());
        }
        let passwd = std::fs::read_to_string(super::user::PASSWD).unwrap_or_default();
        Self::Local {
            dir: docker_config::config_dir(configured, &passwd, owner).map_err(|e| e.to_string()),
            owner,
        }
    }

    /// Makes the `credHelpers` entries name exactly `hosts` (`None`: nobody writes them).
    pub fn sync(&self, hosts: &[RegistryHost]) -> Result<Option<DockerConfigReport>, SyncError> {
        match self {
            Self::Off => Ok(None),
            Self::Privileged(client) => Ok(Some(client.docker_config(hosts)?)),
            Self::Local { dir, owner } => {
                let dir = dir
                    .as_ref()
                    .map_err(|e| SyncError::NoDirectory(e.clone()))?;
                Ok(Some(docker_config::sync(dir, *owner, hosts)?))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn helper_requests_round_trip_and_git_requests_are_not_ours() {
        for r in [
            HelperRequest::Get("https://ghcr.io".into()),
            HelperRequest::List,
        ] {
            assert_eq!(HelperRequest::parse(&r.encode()), Some(Ok(r.clone())));
        }
        // Without the final blank line too (the helper half-closes instead).
        assert_eq!(
            HelperRequest::parse(b"docker-get\nghcr.io\n"),
            Some(Ok(HelperRequest::Get("ghcr.io".into())))
        );
        for git in [
            &b"get\nprotocol=https\n\n"[..],
            b"store\n",
            b"",
            b"docker-getx\n",
        ] {
            assert_eq!(HelperRequest::parse(git), None, "{git:?}");
        }
        for bad in [
            &b"docker-get\n\n"[..],
            b"docker-get\n  \n\n",
            b"docker-get\nghcr.io\nextra\n\n",
            b"docker-get\nghcr.io\r\n\n",
            b"docker-get\nghcr\0.io\n\n",
            b"docker-get\n\xff\n\n",
        ] {
            assert_eq!(
                HelperRequest::parse(bad),
                Some(Err(Malformed("get"))),
                "{bad:?}"
            );
        }
        assert_eq!(
            HelperRequest::parse(b"docker-list\nghcr.io\n\n"),
            Some(Err(Malformed("list")))
        );
        let long = format!("docker-get\n{}\n\n", "a".repeat(MAX_SERVER_URL_BYTES + 1));
        assert_eq!(
            HelperRequest::parse(long.as_bytes()),
            Some(Err(Malformed("get")))
        );
    }
}
