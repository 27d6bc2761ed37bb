//! `customizations.codespaces.repositories`: extra GitHub repositories whose permissions the
//! codespace's token asks for (the creator approves them at creation).
//!
//! ```jsonc
//! "repositories": {
//!   "my-org/my-repo": { "permissions": { "contents": "write", "pull_requests": "read" } },
//!   "my-org/*":       { "permissions": "read-all" }
//! }
//! ```
//!
//! Parsing is strict because this object widens a token: keys are `owner/name` or `owner/*`
//! (the wildcard only in the repository part), values are `{"permissions": "read-all" |
//! "write-all"}` or `{"permissions": {<permission>: <level>}}` with the twelve requestable
//! permission names below, and each permission only at the levels GitHub grants for it (`packages`
//! read only, `workflows` write only). Anything else is an error, never silently dropped.
//!
//! [`Permission`] and [`Level`] are also the token's permission table: `codespace-policy` computes
//! the token scope in these types (adding `metadata`, which every token carries and no
//! devcontainer.json can ask for), so the names and the levels each permission exists at are
//! written down once, here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{located, ErrorSink, ModelErrorKind};
use crate::node::Node;
use crate::span::Located;

/// A repository permission of a GitHub token (GitHub App permission names), in name order — the
/// order is the `Ord` that sorts permission maps. All but [`Permission::Metadata`] may be requested
/// by a repository entry ([`Permission::requestable`]). Serialized as the JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Permission {
    /// `actions`
    Actions,
    /// `checks`
    Checks,
    /// `contents`
    Contents,
    /// `deployments`
    Deployments,
    /// `discussions`
    Discussions,
    /// `issues`
    Issues,
    /// `metadata` (read only; comes with every token, not requestable)
    Metadata,
    /// `packages` (read only)
    Packages,
    /// `pages`
    Pages,
    /// `pull_requests`
    PullRequests,
    /// `repository_projects`
    RepositoryProjects,
    /// `statuses`
    Statuses,
    /// `workflows` (write only)
    Workflows,
}

/// Access level of one permission; `Write` includes `Read`. Serialized as `"read"` / `"write"`.
/// Exhaustive on purpose: GitHub repository permissions have exactly these two levels, and code
/// that ranks them (`write` ⊇ `read`) should not have to invent a third.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `read`
    Read,
    /// `write` (implies read)
    Write,
}

impl Permission {
    /// Every permission, in name order.
    pub const ALL: [Self; 13] = [
        Self::Actions,
        Self::Checks,
        Self::Contents,
        Self::Deployments,
        Self::Discussions,
        Self::Issues,
        Self::Metadata,
        Self::Packages,
        Self::Pages,
        Self::PullRequests,
        Self::RepositoryProjects,
        Self::Statuses,
        Self::Workflows,
    ];

    /// Whether a devcontainer.json may request it (every permission but `metadata`).
    #[must_use]
    pub const fn requestable(self) -> bool {
        !matches!(self, Self::Metadata)
    }

    /// The JSON name (`"pull_requests"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Actions => "actions",
            Self::Checks => "checks",
            Self::Contents => "contents",
            Self::Deployments => "deployments",
            Self::Discussions => "discussions",
            Self::Issues => "issues",
            Self::Metadata => "metadata",
            Self::Packages => "packages",
            Self::Pages => "pages",
            Self::PullRequests => "pull_requests",
            Self::RepositoryProjects => "repository_projects",
            Self::Statuses => "statuses",
            Self::Workflows => "workflows",
        }
    }

    /// Parse a JSON name (exact, case-sensitive as in the schema); `metadata` included, so a
    /// caller parsing a request also checks [`Permission::requestable`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The levels this permission exists at (`packages` and `metadata` read only, `workflows`
    /// write only, the others both).
    #[must_use]
    pub const fn allowed_levels(self) -> &'static [Level] {
        match self {
            Self::Packages | Self::Metadata => &[Level::Read],
            Self::Workflows => &[Level::Write],
            _ => &[Level::Read, Level::Write],
        }
    }

    /// Whether the permission exists at `level`.
    #[must_use]
    pub fn supports(self, level: Level) -> bool {
        self.allowed_levels().contains(&level)
    }

    /// The highest level the permission exists at.
    #[must_use]
    pub fn max_level(self) -> Level {
        if self.supports(Level::Write) {
            Level::Write
        } else {
            Level::Read
        }
    }
}

impl Level {
    /// The JSON name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    /// Parse `"read"` / `"write"`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which repositories an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepositoryPattern {
    /// The account (user or organisation).
    pub owner: String,
    /// One repository or all of the owner's.
    pub repo: RepoSelector,
}

/// The repository part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RepoSelector {
    /// A single named repository.
    Named(String),
    /// `*`: every repository of the owner.
    All,
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            RepoSelector::Named(n) => write!(f, "{}/{n}", self.owner),
            RepoSelector::All => write!(f, "{}/*", self.owner),
        }
    }
}

/// What an entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepositoryPermissions {
    /// `"read-all"`.
    ReadAll,
    /// `"write-all"`.
    WriteAll,
    /// An explicit map of permission → level.
    Scoped(BTreeMap<Permission, Level>),
}

impl RepositoryPermissions {
    /// The level granted for `permission` (`read-all`/`write-all` grant each permission at the
    /// highest level it allows up to read/write respectively).
    #[must_use]
    pub fn level(&self, permission: Permission) -> Option<Level> {
        let levels = permission.allowed_levels();
        match self {
            Self::ReadAll => levels.contains(&Level::Read).then_some(Level::Read),
            Self::WriteAll => levels.iter().copied().max(),
            Self::Scoped(map) => map.get(&permission).copied(),
        }
    }

    /// Whether any permission is requested at `write`.
    #[must_use]
    pub fn grants_write(&self) -> bool {
        Permission::ALL
            .into_iter()
            .any(|p| self.level(p) == Some(Level::Write))
    }
}

/// One entry of `repositories`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryGrant {
    /// The key, located at the key's position.
    pub pattern: Located<RepositoryPattern>,
    /// The `permissions` value.
    pub permissions: Located<RepositoryPermissions>,
}

/// Why a repositories entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The key is not `owner/name` or `owner/*`.
    #[error("repository key {key:?} is invalid: {reason}; expected \"owner/name\" or \"owner/*\"")]
    BadKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Unknown permission name.
    #[error("unknown repository permission {name:?}; expected one of actions, checks, contents, deployments, discussions, issues, packages, pages, pull_requests, repository_projects, statuses, workflows")]
    UnknownPermission {
        /// The name as written.
        name: String,
    },
    /// A level the permission cannot have (`packages: write`, `workflows: read`, `admin`).
    #[error("permission {permission} cannot be {level:?}; allowed: {}", permission.allowed_levels().iter().map(|l| format!("{:?}", l.name())).collect::<Vec<_>>().join(" or "))]
    BadLevel {
        /// The permission.
        permission: Permission,
        /// The level as written.
        level: String,
    },
    /// `permissions` is a string other than `read-all` / `write-all`.
    #[error("permissions {value:?} is invalid; expected \"read-all\", \"write-all\" or an object of permission levels")]
    BadShorthand {
        /// The string as written.
        value: String,
    },
    /// A member other than `permissions` in an entry.
    #[error("unexpected member {key:?} in a repository entry; only \"permissions\" is allowed")]
    UnexpectedMember {
        /// The key.
        key: String,
    },
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parse one key (`owner/name` or `owner/*`).
///
/// # Errors
/// [`RepositoryError::BadKey`] when it is neither.
pub fn parse_pattern(key: &str) -> Result<RepositoryPattern, RepositoryError> {
    let bad = |reason| RepositoryError::BadKey {
        key: key.to_owned(),
        reason,
    };
    let (owner, repo) = key.split_once('/').ok_or_else(|| bad("no '/'"))?;
    if owner == "*" {
        return Err(bad("the owner cannot be a wildcard"));
    }
    if !is_name(owner) {
        return Err(bad("the owner must be letters, digits, '-', '_' or '.'"));
    }
    if repo == "*" {
        return Ok(RepositoryPattern {
            owner: owner.to_owned(),
            repo: RepoSelector::All,
        });
    }
    if !is_name(repo) {
        return Err(bad(
            "the repository must be '*' or letters, digits, '-', '_' or '.' (one '/' only)",
        ));
    }
    Ok(RepositoryPattern {
        owner: owner.to_owned(),
        repo: RepoSelector::Named(repo.to_owned()),
    })
}

/// Parse the whole `repositories` object. Every problem is recorded in `errors`; valid entries
/// are returned (duplicate keys: the last occurrence counts, as in the reference tools).
pub fn parse_repositories(node: &Node, errors: &mut ErrorSink) -> Vec<RepositoryGrant> {
    const PROP: &str = "customizations.codespaces.repositories";
    if node.members().is_none() {
        errors.wrong_type(node, PROP, "an object keyed \"owner/name\"");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let pattern = match parse_pattern(&m.key) {
            Ok(p) => Located::new(p, m.value.pointer.clone(), m.key_span.or(m.value.span)),
            Err(e) => {
                errors.push(&m.value, ModelErrorKind::Repository(e));
                continue;
            }
        };
        if let Some(permissions) = parse_entry(&m.value, errors) {
            out.push(RepositoryGrant {
                pattern,
                permissions,
            });
        }
    }
    out
}

fn parse_entry(entry: &Node, errors: &mut ErrorSink) -> Option<Located<RepositoryPermissions>> {
    const PROP: &str = "repository entry";
    if entry.members().is_none() {
        errors.wrong_type(entry, PROP, "an object with \"permissions\"");
        return None;
    }
    for m in entry.effective_members().filter(|m| m.key != "permissions") {
        errors.push(
            &m.value,
            ModelErrorKind::Repository(RepositoryError::UnexpectedMember { key: m.key.clone() }),
        );
    }
    let Some(perms) = entry.get("permissions") else {
        errors.push(
            entry,
            ModelErrorKind::MissingMember {
                property: PROP.to_owned(),
                member: "permissions",
            },
        );
        return None;
    };
    if let Some(s) = perms.as_str() {
        return match s {
            "read-all" => Some(located(perms, RepositoryPermissions::ReadAll)),
            "write-all" => Some(located(perms, RepositoryPermissions::WriteAll)),
            _ => {
                errors.push(
                    perms,
                    ModelErrorKind::Repository(RepositoryError::BadShorthand {
                        value: s.to_owned(),
                    }),
                );
                None
            }
        };
    }
    if perms.members().is_none() {
        errors.wrong_type(
            perms,
            "permissions",
            "\"read-all\", \"write-all\" or an object of permission levels",
        );
        return None;
    }
    let before = errors.len();
    let mut map = BTreeMap::new();
    for m in perms.effective_members() {
        let Some(permission) = Permission::from_name(&m.key).filter(|p| p.requestable()) else {
            errors.push(
                &m.value,
                ModelErrorKind::Repository(RepositoryError::UnknownPermission {
                    name: m.key.clone(),
                }),
            );
            continue;
        };
        let Some(level_text) = m.value.as_str() else {
            errors.wrong_type(
                &m.value,
                &format!("permission {}", m.key),
                "\"read\" or \"write\"",
            );
            continue;
        };
        match Level::from_name(level_text).filter(|l| permission.allowed_levels().contains(l)) {
            Some(level) => {
                map.insert(permission, level);
            }
            None => errors.push(
                &m.value,
                ModelErrorKind::Repository(RepositoryError::BadLevel {
                    permission,
                    level: level_text.to_owned(),
                }),
            ),
        }
    }
    (errors.len() == before).then(|| located(perms, RepositoryPermissions::Scoped(map)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: serde_json::Value) -> (Vec<RepositoryGrant>, Vec<crate::error::ModelError>) {
        let node = Node::from_json_value_at(&v, "/customizations/codespaces/repositories");
        let mut sink = ErrorSink::new();
        let grants = parse_repositories(&node, &mut sink);
        (grants, sink.into_errors())
    }

    #[test]
    fn valid_entries() {
        let (g, e) = run(json!({
            "o/r": {"permissions": {"contents": "write", "packages": "read", "workflows": "write"}},
            "Layr-Labs/*": {"permissions": "read-all"},
            "a.b_c/d-e.f": {"permissions": "write-all"}
        }));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].pattern.to_string(), "o/r");
        assert_eq!(
            g[0].permissions.level(Permission::Workflows),
            Some(Level::Write)
        );
        assert_eq!(g[0].permissions.level(Permission::Issues), None);
        assert_eq!(g[1].pattern.repo, RepoSelector::All);
        assert!(!g[1].permissions.grants_write());
        assert_eq!(g[1].permissions.level(Permission::Workflows), None);
        assert_eq!(
            g[2].permissions.level(Permission::Packages),
            Some(Level::Read)
        );
        assert!(g[2].permissions.grants_write());
        assert_eq!(
            g[0].pattern.pointer,
            "/customizations/codespaces/repositories/o~1r"
        );
    }

    #[test]
    fn every_permission_name_round_trips() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.name()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), json!(p.name()));
            for level in p.allowed_levels() {
                assert!(p.supports(*level));
            }
            assert!(p.supports(p.max_level()));
        }
        assert_eq!(Permission::from_name("Contents"), None);
        assert_eq!(
            Permission::ALL.iter().filter(|p| p.requestable()).count(),
            12
        );
        assert_eq!(serde_json::to_value(Level::Write).unwrap(), json!("write"));
    }

    #[test]
    fn metadata_cannot_be_requested() {
        let (g, e) = run(json!({"o/r": {"permissions": {"metadata": "read"}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].to_string()
                .contains("unknown repository permission \"metadata\""),
            "{}",
            e[0]
        );
        assert!(g
            .iter()
            .all(|g| !matches!(&g.permissions.value, RepositoryPermissions::Scoped(m) if m.contains_key(&Permission::Metadata))));
    }

    #[test]
    fn invalid_entries_are_all_reported() {
        let (g, e) = run(json!({
            "*/*": {"permissions": "write-all"},
            "noslash": {"permissions": "read-all"},
            "o/r/x": {"permissions": "read-all"},
            "o/": {"permissions": "read-all"},
            "o/a": {"permissions": "admin"},
            "o/b": {"permissions": {"packages": "write"}},
            "o/c": {"permissions": {"workflows": "read"}},
            "o/d": {"permissions": {"secrets": "read"}},
            "o/e": {"permissions": {"contents": true}},
            "o/f": {},
            "o/g": {"permissions": "read-all", "extra": 1},
            "o/h": "read-all",
            "o/i": {"permissions": 3}
        }));
        assert_eq!(g.len(), 1, "only o/g's permissions survive: {g:?}");
        assert_eq!(e.len(), 13, "{e:#?}");
        assert!(e
            .iter()
            .any(|x| x.to_string().contains("owner cannot be a wildcard")));
        assert!(e.iter().any(|x| x
            .to_string()
            .contains("cannot be \"write\"; allowed: \"read\"")));
        assert_eq!(e[0].pointer, "/customizations/codespaces/repositories/*~1*");
        let (_, e) = run(json!([]));
        assert_eq!(e.len(), 1);
    }
}
