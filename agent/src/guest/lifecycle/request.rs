//! Typed lifecycle requests, parsed from the wire fields (parse, don't validate), and the
//! module's error type with its one mapping onto wire codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codespace_policy::repo::{AccessLevel, RepoName};
use serde_json::{Map, Value};

use super::plan::RunPhase;
use crate::guest::config::CodespaceIdentity;
use crate::wire::{ErrorCode, WireError};

/// Why a lifecycle request failed. Messages name what and where, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LifecycleError {
    /// A field is missing or has the wrong shape.
    #[error("{0}")]
    BadRequest(String),
    /// A value is refused, or the devcontainer.json cannot be used.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something failed inside the agent.
    #[error("{0}")]
    Internal(String),
}

impl LifecycleError {
    /// The wire form.
    pub(crate) fn wire(&self) -> WireError {
        let code = match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::Internal(_) => ErrorCode::Internal,
        };
        WireError::new(code, self.to_string())
    }
}

fn bad(msg: impl Into<String>) -> LifecycleError {
    LifecycleError::BadRequest(msg.into())
}

/// Reads fields one by one and refuses unknown ones at the end.
pub(crate) struct Fields {
    kind: &'static str,
    map: Map<String, Value>,
}

impl Fields {
    pub(crate) fn new(kind: &'static str, map: Map<String, Value>) -> Self {
        Self { kind, map }
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<String>, LifecycleError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("{}: `{key}` must be a string", self.kind))),
        }
    }

    pub(crate) fn required(&mut self, key: &str) -> Result<String, LifecycleError> {
        self.string(key)?
            .ok_or_else(|| bad(format!("{}: missing `{key}`", self.kind)))
    }

    pub(crate) fn boolean(&mut self, key: &str) -> Result<Option<bool>, LifecycleError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(bad(format!("{}: `{key}` must be true or false", self.kind))),
        }
    }

    pub(crate) fn positive(&mut self, key: &str) -> Result<Option<u64>, LifecycleError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(format!(
                    "{}: `{key}` must be a positive integer",
                    self.kind
                ))),
            },
        }
    }

    pub(crate) fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, LifecycleError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad(format!(
                        "{}: `{key}` must be an array of strings",
                        self.kind
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(bad(format!(
                "{}: `{key}` must be an array of strings",
                self.kind
            ))),
        }
    }

    pub(crate) fn finish(self) -> Result<(), LifecycleError> {
        match self.map.keys().next() {
            Some(k) => Err(bad(format!("{}: unknown field `{k}`", self.kind))),
            None => Ok(()),
        }
    }
}

/// The trust facts of a request: given ones override what the session was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustFacts {
    /// The creator's access (missing everywhere: `none`, the restrictive default).
    pub(crate) creator_access: AccessLevel,
    /// A pull request from a fork.
    pub(crate) pull_request_from_fork: bool,
    /// A prebuild.
    pub(crate) prebuild: bool,
    /// The repository.
    pub(crate) repository: RepoName,
}

impl TrustFacts {
    /// Reads `creator_access`, `pull_request_from_fork`, `prebuild`, `repository`, falling back to
    /// the session's identity.
    pub(crate) fn read(
        f: &mut Fields,
        identity: &CodespaceIdentity,
    ) -> Result<Self, LifecycleError> {
        let access = f
            .string("creator_access")?
            .or_else(|| identity.creator_access.clone());
        let creator_access = match access {
            None => AccessLevel::None,
            Some(a) => AccessLevel::parse(&a).ok_or_else(|| {
                bad(format!(
                    "{}: `creator_access` {a:?} is not one of none, read, triage, write, maintain, admin",
                    f.kind
                ))
            })?,
        };
        let repo = f
            .string("repository")?
            .or_else(|| identity.repository.clone())
            .ok_or_else(|| {
                LifecycleError::InvalidArgument(format!(
                    "{}: the codespace's repository is unknown: give `repository`, or send \
                     `session create` with it first",
                    f.kind
                ))
            })?;
        let repository = RepoName::parse(&repo).map_err(|e| {
            LifecycleError::InvalidArgument(format!("{}: `repository`: {e}", f.kind))
        })?;
        Ok(Self {
            creator_access,
            pull_request_from_fork: f
                .boolean("pull_request_from_fork")?
                .or(identity.pull_request_from_fork)
                .unwrap_or(false),
            prebuild: f
                .boolean("prebuild")?
                .or(identity.prebuild)
                .unwrap_or(false),
            repository,
        })
    }

    /// The policy's facts.
    pub(crate) fn policy_facts(&self) -> codespace_policy::lifecycle::LifecycleFacts {
        codespace_policy::lifecycle::LifecycleFacts {
            creator_access: self.creator_access,
            pull_request_from_fork: self.pull_request_from_fork,
            prebuild: self.prebuild,
            repository: self.repository.clone(),
        }
    }
}

/// An absolute workspace directory.
pub(crate) fn workspace(f: &mut Fields) -> Result<PathBuf, LifecycleError> {
    let w = PathBuf::from(f.required("workspace")?);
    if !w.is_absolute() {
        return Err(LifecycleError::InvalidArgument(format!(
            "{}: `workspace` must be an absolute path, not {}",
            f.kind,
            w.display()
        )));
    }
    if !w.is_dir() {
        return Err(LifecycleError::InvalidArgument(format!(
            "{}: workspace {} is not a directory",
            f.kind,
            w.display()
        )));
    }
    Ok(w)
}

/// The devcontainer.json path (relative ones are inside the workspace).
pub(crate) fn devcontainer_path(workspace: &Path, given: &str) -> PathBuf {
    let p = Path::new(given);
    if p.is_absolute() {
        p.to_owned()
    } else {
        workspace.join(p)
    }
}

/// `run_id`: the host's correlation id for events, or a fresh one.
pub(crate) fn run_id(
    f: &mut Fields,
    fresh: impl FnOnce() -> String,
) -> Result<String, LifecycleError> {
    match f.string("run_id")? {
        None => Ok(fresh()),
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id)
        }
        Some(_) => Err(bad(format!(
            "{}: `run_id` must be 1-64 ASCII letters, digits, '-' or '_'",
            f.kind
        ))),
    }
}

/// A `lifecycle_run` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunRequest {
    /// The phase.
    pub(crate) phase: RunPhase,
    /// The workspace folder.
    pub(crate) workspace: PathBuf,
    /// The devcontainer.json file.
    pub(crate) devcontainer: PathBuf,
    /// Trust facts.
    pub(crate) facts: TrustFacts,
    /// Per-command timeout.
    pub(crate) timeout: Option<Duration>,
    /// The creator approved running a blocked profile.
    pub(crate) approve: bool,
    /// Event correlation id.
    pub(crate) run_id: String,
}

impl RunRequest {
    /// Parses the fields of `lifecycle_run`.
    pub(crate) fn parse(
        fields: Map<String, Value>,
        identity: &CodespaceIdentity,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<Self, LifecycleError> {
        let mut f = Fields::new("lifecycle_run", fields);
        let phase = f.required("phase")?;
        let phase = RunPhase::parse(&phase).ok_or_else(|| {
            bad(format!(
                "lifecycle_run: `phase` {phase:?} is not one of create, start, attach"
            ))
        })?;
        let workspace = workspace(&mut f)?;
        let devcontainer = devcontainer_path(&workspace, &f.required("devcontainer")?);
        let facts = TrustFacts::read(&mut f, identity)?;
        let timeout = f.positive("timeout_s")?.map(Duration::from_secs);
        let approve = f.boolean("approve")?.unwrap_or(false);
        let run_id = run_id(&mut f, fresh_id)?;
        f.finish()?;
        Ok(Self {
            phase,
            workspace,
            devcontainer,
            facts,
            timeout,
            approve,
            run_id,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, id: &CodespaceIdentity) -> Result<RunRequest, LifecycleError> {
        RunRequest::parse(v.as_object().unwrap().clone(), id, || "fresh".into())
    }

    #[test]
    fn facts_default_to_the_session_and_requests_override_them() {
        let id = CodespaceIdentity {
            repository: Some("octo/app".into()),
            creator_access: Some("write".into()),
            ..Default::default()
        };
        let r = parse(
            json!({"phase": "create", "workspace": "/tmp", "devcontainer": ".devcontainer.json"}),
            &id,
        )
        .unwrap();
        assert_eq!(r.facts.creator_access, AccessLevel::Write);
        assert_eq!(r.devcontainer, PathBuf::from("/tmp/.devcontainer.json"));
        assert_eq!(r.run_id, "fresh");
        let r = parse(
            json!({"phase": "attach", "workspace": "/tmp", "devcontainer": "/x.json",
                   "creator_access": "read", "prebuild": true, "timeout_s": 5, "run_id": "a-1"}),
            &id,
        )
        .unwrap();
        assert_eq!(r.facts.creator_access, AccessLevel::Read);
        assert!(r.facts.prebuild);
        assert!(!r.facts.pull_request_from_fork);
        assert_eq!(r.timeout, Some(Duration::from_secs(5)));
        assert_eq!(r.run_id, "a-1");
        // The fork fact has the name it has in `session create` and the policy.
        let r = parse(
            json!({"phase": "start", "workspace": "/tmp", "devcontainer": "/x.json",
                   "pull_request_from_fork": true}),
            &id,
        )
        .unwrap();
        assert!(r.facts.pull_request_from_fork);
        assert!(r.facts.policy_facts().pull_request_from_fork);
    }

    #[test]
    fn bad_fields_are_named() {
        let id = CodespaceIdentity::default();
        let cases = [
            (
                json!({"phase": "init", "workspace": "/tmp", "devcontainer": "x"}),
                "phase",
            ),
            (
                json!({"phase": "start", "workspace": "rel", "devcontainer": "x"}),
                "absolute",
            ),
            (
                json!({"phase": "start", "workspace": "/tmp", "devcontainer": "x"}),
                "repository",
            ),
            (
                json!({"phase": "start", "workspace": "/tmp", "devcontainer": "x",
                       "repository": "o/r", "timeout_s": 0}),
                "timeout_s",
            ),
            (
                json!({"phase": "start", "workspace": "/tmp", "devcontainer": "x",
                       "repository": "o/r", "colour": 1}),
                "colour",
            ),
            (
                json!({"phase": "start", "workspace": "/tmp", "devcontainer": "x",
                       "repository": "o/r", "creator_access": "god"}),
                "creator_access",
            ),
            (
                json!({"phase": "start", "workspace": "/tmp", "devcontainer": "x",
                       "repository": "o/r", "fork_pull_request": true}),
                "unknown field `fork_pull_request`",
            ),
        ];
        for (v, word) in cases {
            let e = parse(v, &id).unwrap_err().to_string();
            assert!(e.contains(word), "{e} lacks {word}");
        }
    }
}
