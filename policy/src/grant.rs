//! The token-scope decision: which repositories and permissions a codespace's token gets.
//!
//! ```text
//!  base grant (codespace repo) ─┐
//!  fork (write base grant) ─────┤
//!  pull request from a fork ────┼─► creator cap ─► merge (max per permission) ─► TokenScope
//!  requested + authorized ──────┤   (exempt: opening PRs on a public base)
//!  organization trust ──────────┘
//! ```
//!
//! Rules (DESIGN.md §1 "Token"; workspace-agents.md §2.3; exact levels from issue 3):
//! - Base grant by the creator's access: write/maintain/admin → `contents`, `issues`,
//!   `pull_requests` write and `metadata` read; read/triage → `contents`, `metadata` read and
//!   `fork_on_push`; none (or no fact at all) → nothing.
//! - A personal fork (created after a push attempt) gets the write base grant, capped by the
//!   creator's access to it.
//! - Pull request from a fork (the codespace is for the head): a private base gets its own base
//!   grant; a public base gets only `pull_requests` write and `metadata` read, which anyone who
//!   can read a public repository may use to open pull requests, so the creator cap does not
//!   lower it.
//! - `customizations.codespaces.repositories` entries are granted only when authorized and only
//!   for the owner of the codespace's repository; checked in the order `different-owner`,
//!   `wildcard-in-prebuild`, `invalid-permission`, `not-trusted-by-organization`,
//!   `not-authorized`; such denials name the key as written (`owner/*` before expansion).
//!   `owner/*` expands over the repositories of that owner listed in `access`; `read-all` and
//!   `write-all` expand to every permission at its allowed level.
//! - Organization trust (`trusted_repositories` covering the codespace's repository): every
//!   other repository of the same owner the creator can read gets `contents` and `metadata` read.
//! - Creator cap: above the creator's access a permission is lowered to read when the creator
//!   can read (dropped when it has no read level) and dropped when the creator has no access;
//!   each is listed as `exceeds-creator-access`. Triage counts as read (restrictive).
//! - Grants merge by the higher level; a repository left without permissions is absent.

use std::collections::BTreeMap;

use codespace_devcontainer::repositories as dc;

use crate::decision::Authorized;
use crate::document::OrgPolicy;
use crate::repo::{AccessLevel, RepoName};
use crate::token::{Denial, Level, Permission, RepoPermissions, TokenDenyReason, TokenScope};

/// A pull request the codespace was created for (the codespace is for its head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The fork the pull request comes from.
    pub head: RepoName,
    /// The repository it targets.
    pub base: RepoName,
    /// Whether the base is private.
    pub base_private: bool,
}

/// Which repositories a requested entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestTarget {
    /// `owner/name`.
    Repo(RepoName),
    /// `owner/*` (owner as written).
    Owner(String),
}

impl RequestTarget {
    fn owner(&self) -> &str {
        match self {
            Self::Repo(repo) => repo.owner(),
            Self::Owner(owner) => owner,
        }
    }
}

/// One requested permission as written, and its meaning when valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedPermission {
    /// The permission name as written; `None` when the whole `permissions` value was invalid.
    pub name: Option<String>,
    /// The level as written (JSON text when not a string).
    pub requested: String,
    /// The valid meaning, `None` for `invalid-permission`.
    pub valid: Option<(Permission, Level)>,
}

/// One entry of `customizations.codespaces.repositories`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedEntry {
    /// The key as written.
    pub key: String,
    /// What it targets.
    pub target: RequestTarget,
    /// The permissions, in the order written (`read-all`/`write-all` already expanded).
    pub permissions: Vec<RequestedPermission>,
}

impl RequestedEntry {
    /// Builds the permissions of an entry from its `permissions` string form.
    pub fn from_shorthand(text: &str) -> Vec<RequestedPermission> {
        let expanded = match text {
            "read-all" => Some(dc::RepositoryPermissions::ReadAll),
            "write-all" => Some(dc::RepositoryPermissions::WriteAll),
            _ => None,
        };
        let Some(expanded) = expanded else {
            return vec![RequestedPermission {
                name: None,
                requested: text.to_owned(),
                valid: None,
            }];
        };
        Permission::ALL
            .into_iter()
            .filter(|p| p.requestable())
            .filter_map(|p| {
                let level = expanded.level(p)?;
                Some(RequestedPermission {
                    name: Some(p.name().to_owned()),
                    requested: level.name().to_owned(),
                    valid: Some((p, level)),
                })
            })
            .collect()
    }

    /// Builds one permission of the object form (`name`: `level` as written).
    pub fn from_pair(name: &str, requested: &serde_json::Value) -> RequestedPermission {
        let level_text = match requested {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let valid = Permission::from_name(name)
            .filter(|p| p.requestable())
            .and_then(|p| {
                let level = requested.as_str().and_then(Level::from_name)?;
                p.supports(level).then_some((p, level))
            });
        RequestedPermission {
            name: Some(name.to_owned()),
            requested: level_text,
            valid,
        }
    }
}

/// Everything the token-scope decision needs.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// The codespace's repository.
    pub repository: RepoName,
    /// The creator's own access per repository (missing means none).
    pub access: BTreeMap<RepoName, AccessLevel>,
    /// The pull request the codespace is for, if any.
    pub pull_request: Option<PullRequest>,
    /// The creator's personal fork, once created after a push attempt.
    pub fork: Option<RepoName>,
    /// `customizations.codespaces.repositories`, parsed, in written order.
    pub requested: Vec<RequestedEntry>,
    /// The creator approved the requested permissions.
    pub authorized: bool,
    /// A prebuild.
    pub prebuild: bool,
    /// The organization policy, if any.
    pub policy: Option<&'a OrgPolicy>,
}

struct Want {
    repo: RepoName,
    permission: Permission,
    level: Level,
    capped: bool,
}

fn base_grant(access: AccessLevel) -> Vec<(Permission, Level)> {
    if access.can_write() {
        vec![
            (Permission::Contents, Level::Write),
            (Permission::Issues, Level::Write),
            (Permission::PullRequests, Level::Write),
            (Permission::Metadata, Level::Read),
        ]
    } else if access.can_read() {
        vec![
            (Permission::Contents, Level::Read),
            (Permission::Metadata, Level::Read),
        ]
    } else {
        Vec::new()
    }
}

impl TokenRequest<'_> {
    fn access_of(&self, repo: &RepoName) -> AccessLevel {
        self.access.get(repo).copied().unwrap_or_default()
    }

    fn request_denial(
        &self,
        entry: &RequestedEntry,
        perm: &RequestedPermission,
    ) -> Option<TokenDenyReason> {
        if !entry
            .target
            .owner()
            .eq_ignore_ascii_case(self.repository.owner())
        {
            Some(TokenDenyReason::DifferentOwner)
        } else if self.prebuild && matches!(entry.target, RequestTarget::Owner(_)) {
            Some(TokenDenyReason::WildcardInPrebuild)
        } else if perm.valid.is_none() {
            Some(TokenDenyReason::InvalidPermission)
        } else if self
            .policy
            .and_then(|p| p.trusted_repositories.as_ref())
            .is_some_and(|t| !t.covers(&self.repository))
        {
            Some(TokenDenyReason::NotTrustedByOrganization)
        } else if !self.authorized {
            Some(TokenDenyReason::NotAuthorized)
        } else {
            None
        }
    }
}

fn push(wants: &mut Vec<Want>, repo: &RepoName, grants: Vec<(Permission, Level)>, capped: bool) {
    for (permission, level) in grants {
        wants.push(Want {
            repo: repo.clone(),
            permission,
            level,
            capped,
        });
    }
}

/// Computes the token scope (see the module docs for the rules).
pub fn token_scope(req: &TokenRequest<'_>) -> TokenScope {
    let mut wants: Vec<Want> = Vec::new();
    let mut denied: Vec<Denial> = Vec::new();
    let own_access = req.access_of(&req.repository);
    push(&mut wants, &req.repository, base_grant(own_access), true);
    if let Some(fork) = &req.fork {
        push(&mut wants, fork, base_grant(AccessLevel::Write), true);
    }
    if let Some(pr) = &req.pull_request {
        if pr.base_private {
            push(
                &mut wants,
                &pr.base,
                base_grant(req.access_of(&pr.base)),
                true,
            );
        } else {
            let open_prs = vec![
                (Permission::PullRequests, Level::Write),
                (Permission::Metadata, Level::Read),
            ];
            push(&mut wants, &pr.base, open_prs, false);
        }
    }
    for entry in &req.requested {
        let mut grants = Vec::new();
        for perm in &entry.permissions {
            match (req.request_denial(entry, perm), perm.valid) {
                (Some(reason), _) => denied.push(Denial {
                    repository: entry.key.clone(),
                    permission: perm.name.clone(),
                    requested: perm.requested.clone(),
                    reason,
                }),
                (None, Some(grant)) => grants.push(grant),
                // request_denial returns InvalidPermission whenever `valid` is None.
                (None, None) => {}
            }
        }
        if grants.is_empty() {
            continue;
        }
        match &entry.target {
            RequestTarget::Repo(repo) => push(&mut wants, repo, grants, true),
            RequestTarget::Owner(owner) => {
                let repos: Vec<RepoName> = req
                    .access
                    .keys()
                    .filter(|r| r.owned_by(owner))
                    .cloned()
                    .collect();
                for repo in repos {
                    push(&mut wants, &repo, grants.clone(), true);
                }
            }
        }
    }
    let trusted = req
        .policy
        .and_then(|p| p.trusted_repositories.as_ref())
        .is_some_and(|t| t.covers(&req.repository));
    if trusted {
        let readable: Vec<RepoName> = req
            .access
            .iter()
            .filter(|(repo, level)| {
                repo.same_owner(&req.repository) && **repo != req.repository && level.can_read()
            })
            .map(|(repo, _)| repo.clone())
            .collect();
        for repo in readable {
            push(
                &mut wants,
                &repo,
                vec![
                    (Permission::Contents, Level::Read),
                    (Permission::Metadata, Level::Read),
                ],
                true,
            );
        }
    }

    let mut repositories: BTreeMap<RepoName, RepoPermissions> = BTreeMap::new();
    for want in wants {
        let level = if want.capped {
            match cap(req.access_of(&want.repo), want.permission, want.level) {
                Some(level) if level == want.level => Some(level),
                lowered => {
                    denied.push(Denial {
                        repository: want.repo.as_str().to_owned(),
                        permission: Some(want.permission.name().to_owned()),
                        requested: want.level.name().to_owned(),
                        reason: TokenDenyReason::ExceedsCreatorAccess,
                    });
                    lowered
                }
            }
        } else {
            Some(want.level)
        };
        if let Some(level) = level {
            let perms = repositories.entry(want.repo).or_default();
            let slot = perms.entry(want.permission).or_insert(level);
            *slot = (*slot).max(level);
        }
    }
    let mut unique: Vec<Denial> = Vec::new();
    for denial in denied {
        if !unique.contains(&denial) {
            unique.push(denial);
        }
    }
    let fork_on_push = matches!(own_access, AccessLevel::Read | AccessLevel::Triage);
    TokenScope::new(repositories, fork_on_push, unique)
}

/// The proof the agent needs to ask the host for a token of this scope.
pub fn authorize_token_scope(req: &TokenRequest<'_>) -> Authorized<TokenScope> {
    Authorized::new(token_scope(req))
}

/// The creator cap: the level `level` becomes under the creator's `access` (`None`: dropped).
pub fn cap(access: AccessLevel, permission: Permission, level: Level) -> Option<Level> {
    if access.can_write() {
        Some(level)
    } else if access.can_read() {
        match level {
            Level::Read => Some(Level::Read),
            Level::Write => permission.supports(Level::Read).then_some(Level::Read),
        }
    } else {
        None
    }
}

#[cfg(test)]
#[path = "grant_tests.rs"]
mod tests;
