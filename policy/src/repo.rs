//! Repository names, repository patterns and the creator's access level.
//!
//! Rules (issue 3, "CLI contracts"): repository names, logins and organizations compare
//! case-insensitively. A [`RepoName`] keeps the spelling it was written with for output, but
//! equality, ordering and hashing use the lower-cased form, so `Octo/App` and `octo/app` are
//! the same repository everywhere in this crate.
//!
//! Syntax (chosen restrictively, following GitHub's own limits): the owner is 1–39 ASCII
//! letters, digits or `-`, not starting with `-`; the name is 1–100 ASCII letters, digits,
//! `.`, `_` or `-`, and not `.` or `..`. Anything else is rejected rather than guessed at.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a repository name or pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepoNameError {
    /// Not of the form `owner/name`.
    #[error("expected \"owner/name\", got {0:?}")]
    NotOwnerSlashName(String),
    /// The owner part is not a valid login or organization name.
    #[error("invalid owner {0:?} (1-39 ASCII letters, digits or '-', not starting with '-')")]
    InvalidOwner(String),
    /// The repository part is not a valid repository name.
    #[error("invalid repository name {0:?} (1-100 ASCII letters, digits, '.', '_' or '-')")]
    InvalidName(String),
}

/// Checks an owner (user login or organization name).
pub fn is_valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 39
        && !owner.starts_with('-')
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_valid_repo_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An `owner/name` repository reference, compared case-insensitively.
#[derive(Clone)]
pub struct RepoName {
    written: String,
    key: String,
    slash: usize,
}

impl RepoName {
    /// Parses `owner/name`.
    pub fn parse(text: &str) -> Result<Self, RepoNameError> {
        let Some((owner, name)) = text.split_once('/') else {
            return Err(RepoNameError::NotOwnerSlashName(text.to_owned()));
        };
        if !is_valid_owner(owner) {
            return Err(RepoNameError::InvalidOwner(owner.to_owned()));
        }
        if !is_valid_repo_part(name) {
            return Err(RepoNameError::InvalidName(name.to_owned()));
        }
        Ok(Self {
            written: text.to_owned(),
            key: text.to_ascii_lowercase(),
            slash: owner.len(),
        })
    }

    /// The name as it was written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The owner as written.
    pub fn owner(&self) -> &str {
        &self.written[..self.slash]
    }

    /// The repository part as written.
    pub fn name(&self) -> &str {
        &self.written[self.slash + 1..]
    }

    /// The lower-cased `owner/name` used for comparisons.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// True when both repositories have the same owner (case-insensitive).
    pub fn same_owner(&self, other: &RepoName) -> bool {
        self.key[..self.slash] == other.key[..other.slash]
    }

    /// True when this repository's owner is `owner` (case-insensitive).
    pub fn owned_by(&self, owner: &str) -> bool {
        self.owner().eq_ignore_ascii_case(owner)
    }
}

impl PartialEq for RepoName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for RepoName {}

impl Hash for RepoName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for RepoName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RepoName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.written, f)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl std::str::FromStr for RepoName {
    type Err = RepoNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RepoName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for RepoName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A repository pattern of the organization policy: `owner/name` or `owner/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepoPattern {
    /// Exactly one repository.
    Repo(RepoName),
    /// Every repository of one owner (`owner/*`); the owner is stored lower-cased.
    Owner(String),
}

impl RepoPattern {
    /// Parses `owner/name` or `owner/*`.
    pub fn parse(text: &str) -> Result<Self, RepoNameError> {
        match text.split_once('/') {
            Some((owner, "*")) => {
                if is_valid_owner(owner) {
                    Ok(Self::Owner(owner.to_ascii_lowercase()))
                } else {
                    Err(RepoNameError::InvalidOwner(owner.to_owned()))
                }
            }
            _ => RepoName::parse(text).map(Self::Repo),
        }
    }

    /// True when the pattern covers `repo`.
    pub fn matches(&self, repo: &RepoName) -> bool {
        match self {
            Self::Repo(name) => name == repo,
            Self::Owner(owner) => repo.owned_by(owner),
        }
    }
}

impl fmt::Display for RepoPattern {
    /// As written in a list: `owner/name` or `owner/*` (the owner lower-cased).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repo(name) => fmt::Display::fmt(name, f),
            Self::Owner(owner) => write!(f, "{owner}/*"),
        }
    }
}

/// The creator's own access to a repository, lowest first.
///
/// Source: issue 3 (`none|read|triage|write|maintain|admin`; missing means none).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AccessLevel {
    /// No access (also what a missing fact means: deny by default).
    #[default]
    None,
    /// Read (clone, fetch).
    Read,
    /// Triage: treated as read for every decision (chosen restrictively: triage grants no
    /// contents write).
    Triage,
    /// Write (push).
    Write,
    /// Maintain.
    Maintain,
    /// Admin.
    Admin,
}

impl AccessLevel {
    /// Every level, lowest first.
    pub const ALL: [AccessLevel; 6] = [
        AccessLevel::None,
        AccessLevel::Read,
        AccessLevel::Triage,
        AccessLevel::Write,
        AccessLevel::Maintain,
        AccessLevel::Admin,
    ];

    /// Parses the CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::None => "none",
            AccessLevel::Read => "read",
            AccessLevel::Triage => "triage",
            AccessLevel::Write => "write",
            AccessLevel::Maintain => "maintain",
            AccessLevel::Admin => "admin",
        }
    }

    /// Write, maintain or admin.
    pub fn can_write(self) -> bool {
        self >= AccessLevel::Write
    }

    /// Anything but none.
    pub fn can_read(self) -> bool {
        self >= AccessLevel::Read
    }
}

/// Case-insensitive equality of logins and organization names.
pub fn same_login(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_compare_case_insensitively_and_keep_spelling() {
        let a = RepoName::parse("Octo/App").unwrap();
        let b = RepoName::parse("octo/app").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Octo/App");
        assert_eq!(a.owner(), "Octo");
        assert_eq!(a.name(), "App");
        assert!(a.same_owner(&RepoName::parse("OCTO/other").unwrap()));
        assert!(!a.same_owner(&RepoName::parse("octa/app").unwrap()));
    }

    #[test]
    fn bad_repo_names_are_rejected() {
        for bad in [
            "",
            "octo",
            "/app",
            "octo/",
            "-octo/app",
            "octo/a/b",
            "oc to/app",
            "octo/..",
            "octo/é",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RepoName::parse(&format!("{}/a", "o".repeat(40))).is_err());
        assert!(RepoName::parse("my-org/my_repo.rs").is_ok());
    }

    #[test]
    fn patterns_match() {
        let repo = RepoName::parse("Octo/App").unwrap();
        assert!(RepoPattern::parse("octo/*").unwrap().matches(&repo));
        assert!(RepoPattern::parse("OCTO/app").unwrap().matches(&repo));
        assert!(!RepoPattern::parse("octo/other").unwrap().matches(&repo));
        assert!(!RepoPattern::parse("other/*").unwrap().matches(&repo));
        assert!(RepoPattern::parse("*/*").is_err());
        assert!(RepoPattern::parse("octo/a*").is_err());
    }

    #[test]
    fn access_levels_order() {
        assert!(AccessLevel::Admin.can_write());
        assert!(!AccessLevel::Triage.can_write());
        assert!(AccessLevel::Triage.can_read());
        assert!(!AccessLevel::None.can_read());
        for level in AccessLevel::ALL {
            assert_eq!(AccessLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(AccessLevel::parse("Write"), None);
    }
}
