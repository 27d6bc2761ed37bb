//! The repository token's scope: which repositories, which permissions, at which level.
//!
//! [`TokenScope`] is the output of the token-scope decision (computed in [`crate::grant`]) and
//! the type the agent's credential broker holds: it answers git only for repositories in the
//! scope ([`TokenScope::covers`], [`TokenScope::authorize_repository`]), comparing names
//! case-insensitively (issue 3).
//!
//! Serialized form (issue 3, `policy token-scope` output):
//!
//! ```json
//! {"repositories": {"octo/app": {"contents": "write", "metadata": "read"}},
//!  "fork_on_push": false,
//!  "denied": [{"repository": "octo/*", "permission": "issues", "requested": "write",
//!              "reason": "not-authorized"}]}
//! ```
//!
//! Invariants: a repository in `repositories` has at least one permission; permission levels
//! are `read` or `write` and only the levels the permission supports
//! ([`Permission::supports`]); deserializing enforces both.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::decision::{Authorized, Decision, ReasonCode};
use crate::repo::RepoName;

/// The token's permission table is the one `codespace-devcontainer` parses repository requests
/// with (names, the levels each permission exists at, serde names), re-exported so that the two
/// crates cannot disagree; it includes `metadata`, which every token carries.
pub use codespace_devcontainer::repositories::{Level, Permission};

/// The permissions granted on one repository.
pub type RepoPermissions = BTreeMap<Permission, Level>;

/// Why a requested or implied permission was not granted (stable kebab-case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TokenDenyReason {
    /// The requested repository has another owner than the codespace's repository.
    DifferentOwner,
    /// `owner/*` requested in a prebuild.
    WildcardInPrebuild,
    /// Unknown permission name or a level the permission does not have.
    InvalidPermission,
    /// The organization's trusted-repository list does not cover the codespace's repository.
    NotTrustedByOrganization,
    /// The creator did not authorize the requested permissions.
    NotAuthorized,
    /// Above the creator's own access (lowered to read, or dropped).
    ExceedsCreatorAccess,
}

impl ReasonCode for TokenDenyReason {
    fn code(&self) -> &'static str {
        match self {
            Self::DifferentOwner => "different-owner",
            Self::WildcardInPrebuild => "wildcard-in-prebuild",
            Self::InvalidPermission => "invalid-permission",
            Self::NotTrustedByOrganization => "not-trusted-by-organization",
            Self::NotAuthorized => "not-authorized",
            Self::ExceedsCreatorAccess => "exceeds-creator-access",
        }
    }
}

/// One permission that was not granted (or was lowered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// The repository as written in the request (`owner/*` for a denial made before the
    /// wildcard expanded), or the concrete repository for a creator-cap denial.
    pub repository: String,
    /// The permission name as written; `null` when the whole `permissions` value of a request
    /// entry was invalid (e.g. `"admin-all"`).
    pub permission: Option<String>,
    /// The requested level as written (a non-string value is given as its JSON text).
    pub requested: String,
    /// Why.
    pub reason: TokenDenyReason,
}

/// Why the credential broker refuses a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ScopeDenyReason {
    /// Not an `owner/name` (optionally `.git`-suffixed) repository reference.
    InvalidRepository,
    /// The repository is not in the token's scope.
    OutOfScope,
}

impl ReasonCode for ScopeDenyReason {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRepository => "invalid-repository",
            Self::OutOfScope => "out-of-scope",
        }
    }
}

/// The scope of a codespace's repository token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TokenScope {
    repositories: BTreeMap<RepoName, RepoPermissions>,
    fork_on_push: bool,
    denied: Vec<Denial>,
}

impl TokenScope {
    /// Builds a scope, dropping repositories left without any permission and any level a
    /// permission does not support (the invariants above).
    pub(crate) fn new(
        repositories: BTreeMap<RepoName, RepoPermissions>,
        fork_on_push: bool,
        denied: Vec<Denial>,
    ) -> Self {
        let repositories = repositories
            .into_iter()
            .map(|(repo, perms)| {
                let perms: RepoPermissions =
                    perms.into_iter().filter(|(p, l)| p.supports(*l)).collect();
                (repo, perms)
            })
            .filter(|(_, perms)| !perms.is_empty())
            .collect();
        Self {
            repositories,
            fork_on_push,
            denied,
        }
    }

    /// Granted permissions per repository (never empty per repository).
    pub fn repositories(&self) -> &BTreeMap<RepoName, RepoPermissions> {
        &self.repositories
    }

    /// True when a push to the codespace's repository should offer a personal fork (the
    /// creator can only read it).
    pub fn fork_on_push(&self) -> bool {
        self.fork_on_push
    }

    /// What was requested or implied but not granted, in decision order.
    pub fn denied(&self) -> &[Denial] {
        &self.denied
    }

    /// The permissions on `repository` (`owner/name`, case-insensitive, optional `.git`).
    pub fn permissions_for(&self, repository: &str) -> Option<&RepoPermissions> {
        let repo = parse_git_repository(repository)?;
        self.repositories.get(&repo)
    }

    /// The level of one permission on `repository`, if granted.
    pub fn level(&self, repository: &str, permission: Permission) -> Option<Level> {
        self.permissions_for(repository)?.get(&permission).copied()
    }

    /// May this token be used for `repository` at all? (`owner/name`, case-insensitive, an
    /// optional trailing `.git` as git's credential `path` carries it.)
    pub fn covers(&self, repository: &str) -> bool {
        self.permissions_for(repository).is_some()
    }

    /// The broker's decision for `repository`.
    pub fn check_repository(&self, repository: &str) -> Decision<ScopeDenyReason> {
        match self.authorize_repository(repository) {
            Ok(_) => Decision::Allow,
            Err(reason) => Decision::Deny(reason),
        }
    }

    /// The broker's proof that it may hand the token out for `repository`: the repository's
    /// canonical name and its permissions.
    pub fn authorize_repository(
        &self,
        repository: &str,
    ) -> Result<Authorized<(RepoName, RepoPermissions)>, ScopeDenyReason> {
        let repo = parse_git_repository(repository).ok_or(ScopeDenyReason::InvalidRepository)?;
        match self.repositories.get_key_value(&repo) {
            Some((name, perms)) => Ok(Authorized::new((name.clone(), perms.clone()))),
            None => Err(ScopeDenyReason::OutOfScope),
        }
    }
}

fn parse_git_repository(text: &str) -> Option<RepoName> {
    let text = text.strip_suffix(".git").unwrap_or(text);
    RepoName::parse(text).ok()
}

impl<'de> Deserialize<'de> for TokenScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            repositories: BTreeMap<RepoName, RepoPermissions>,
            fork_on_push: bool,
            denied: Vec<Denial>,
        }
        let raw = Raw::deserialize(deserializer)?;
        for (repo, perms) in &raw.repositories {
            if perms.is_empty() {
                return Err(serde::de::Error::custom(format!(
                    "repository {repo} has no permission"
                )));
            }
            for (perm, level) in perms {
                if !perm.supports(*level) {
                    return Err(serde::de::Error::custom(format!(
                        "permission {} has no {} level",
                        perm.name(),
                        level.name()
                    )));
                }
            }
        }
        Ok(Self {
            repositories: raw.repositories,
            fork_on_push: raw.fork_on_push,
            denied: raw.denied,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scope() -> TokenScope {
        let mut repos = BTreeMap::new();
        repos.insert(
            RepoName::parse("Octo/App").unwrap(),
            BTreeMap::from([
                (Permission::Contents, Level::Write),
                (Permission::Metadata, Level::Read),
            ]),
        );
        repos.insert(RepoName::parse("octo/empty").unwrap(), BTreeMap::new());
        TokenScope::new(repos, false, vec![])
    }

    #[test]
    fn covers_is_case_insensitive_and_accepts_dot_git() {
        let s = scope();
        assert!(s.covers("octo/app"));
        assert!(s.covers("OCTO/APP.git"));
        assert!(!s.covers("octo/empty"));
        assert!(!s.covers("octo/other"));
        assert!(!s.covers("not a repo"));
        assert_eq!(
            s.level("octo/app", Permission::Contents),
            Some(Level::Write)
        );
        assert_eq!(s.check_repository("octo/app"), Decision::Allow);
        assert_eq!(
            s.check_repository("x/y"),
            Decision::Deny(ScopeDenyReason::OutOfScope)
        );
        assert_eq!(
            s.check_repository("x"),
            Decision::Deny(ScopeDenyReason::InvalidRepository)
        );
        let proof = s.authorize_repository("octo/APP").unwrap();
        assert_eq!(proof.get().0.as_str(), "Octo/App");
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let s = scope();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"repositories":{"Octo/App":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#
        );
        let back: TokenScope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        for bad in [
            r#"{"repositories":{"o/r":{"workflows":"read"}},"fork_on_push":false,"denied":[]}"#,
            r#"{"repositories":{"o/r":{}},"fork_on_push":false,"denied":[]}"#,
            r#"{"repositories":{"o":{"contents":"read"}},"fork_on_push":false,"denied":[]}"#,
            r#"{"repositories":{},"fork_on_push":false,"denied":[],"x":1}"#,
            r#"{"repositories":{},"fork_on_push":false}"#,
        ] {
            assert!(serde_json::from_str::<TokenScope>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permission_levels() {
        assert!(Permission::Packages.supports(Level::Read));
        assert!(!Permission::Packages.supports(Level::Write));
        assert!(!Permission::Workflows.supports(Level::Read));
        assert_eq!(Permission::Workflows.max_level(), Level::Write);
        assert!(Permission::Metadata.supports(Level::Read));
        assert!(!Permission::Metadata.supports(Level::Write));
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.name()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
    }

    #[test]
    fn reason_codes_match_serde() {
        for r in [
            TokenDenyReason::DifferentOwner,
            TokenDenyReason::WildcardInPrebuild,
            TokenDenyReason::InvalidPermission,
            TokenDenyReason::NotTrustedByOrganization,
            TokenDenyReason::NotAuthorized,
            TokenDenyReason::ExceedsCreatorAccess,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }
}
