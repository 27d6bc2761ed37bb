//! Which secrets enter a codespace's environment, and under which names.
//!
//! Secrets come from three levels (user, repository, organization). The agent asks
//! [`select`] with each secret's level, name and value size (never the value), and injects
//! exactly the names in [`SecretSelection::environment`].
//!
//! ```text
//!  per level: check_name ─► duplicate-name ─► too-large ─► too-many   (first failing reason)
//!  across levels: user > repository > organization (case-insensitive)
//!  withheld: no write access / fork pull request / prebuild ⇒ nothing is injected
//! ```
//!
//! Rules and their sources:
//! - Names are ASCII letters, digits and `_` (`invalid-name`), not starting with a digit
//!   (`starts-with-digit`), not starting with `GITHUB_` in any case (`reserved-prefix`):
//!   DESIGN.md §1 "Secrets", workspace-agents.md §2.4.
//! - Names that hijack execution are refused (`dangerous-name`): the list in [`DANGEROUS_NAMES`],
//!   from DESIGN.md §2 and workspace-agents.md §4/§5.8 (Gitpod CLC-1591), plus the organization
//!   policy's `secrets.deny_names`. Names are case-insensitive (§2.4), so every comparison is.
//! - Names are unique per level, case-insensitively (`duplicate-name`): every member of a group
//!   of names that differ only in case is refused, chosen restrictively because no rule says
//!   which spelling is meant.
//! - At most 48 KiB (49 152 bytes) per value (`too-large`), at most 100 per level
//!   (`too-many`: names past the first 100 of a level in byte-wise sorted order): DESIGN.md §1.
//! - Precedence user > repository > organization, case-insensitive: DESIGN.md §1 (the GitHub
//!   docs leave user vs repository ambiguous, workspace-agents.md §2.4). A refused secret does
//!   not shadow a valid one of a lower level.
//! - Nothing is injected without write access to the repository, for a pull request from a
//!   fork, or in a prebuild (`withheld`, first applicable in that order): DESIGN.md §1.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::decision::{Authorized, ReasonCode};
use crate::repo::AccessLevel;

/// Maximum size of one secret value in bytes (48 KiB).
pub const MAX_SECRET_BYTES: usize = 49_152;

/// Maximum number of secrets per level.
pub const MAX_SECRETS_PER_LEVEL: usize = 100;

/// Why a secret name is refused on its own (see [`check_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SecretNameRejection {
    /// Empty, or a character other than ASCII letters, digits and `_`.
    InvalidName,
    /// Starts with a digit.
    StartsWithDigit,
    /// Starts with `GITHUB_` (any case).
    ReservedPrefix,
    /// Hijacks execution (see [`DANGEROUS_NAMES`]) or is in the policy's `deny_names`.
    DangerousName,
}

impl ReasonCode for SecretNameRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidName => "invalid-name",
            Self::StartsWithDigit => "starts-with-digit",
            Self::ReservedPrefix => "reserved-prefix",
            Self::DangerousName => "dangerous-name",
        }
    }
}

/// A name pattern of the deny list: exact, or a prefix when it ends in `*`.
///
/// Each entry says why it is dangerous; `dead_entries` tests keep the list honest.
pub const DANGEROUS_NAMES: &[(&str, &str)] = &[
    (
        "LD_*",
        "dynamic loader variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT) inject code",
    ),
    ("BASH_ENV", "sourced by every non-interactive bash"),
    ("ENV", "sourced by interactive POSIX shells"),
    ("PROMPT_COMMAND", "run by bash before every prompt"),
    ("PS0", "prompt strings expand command substitutions"),
    ("PS1", "prompt strings expand command substitutions"),
    ("PS2", "prompt strings expand command substitutions"),
    ("PS3", "prompt strings expand command substitutions"),
    ("PS4", "prompt strings expand command substitutions"),
    (
        "ZDOTDIR",
        "moves zsh's startup files to an attacker's directory",
    ),
    ("PATH", "decides which program runs"),
    ("CDPATH", "redirects cd in scripts"),
    ("SHELL", "decides which shell tools spawn"),
    ("IFS", "changes word splitting of every shell script"),
    (
        "NODE_OPTIONS",
        "--require preloads code into every node process",
    ),
    (
        "PYTHON*",
        "PYTHONPATH, PYTHONSTARTUP, PYTHONHOME load code into python",
    ),
    ("PERL*", "PERL5OPT, PERL5LIB load code into perl"),
    ("JAVA_TOOL_OPTIONS", "-javaagent loads code into every JVM"),
    (
        "GIT_*",
        "GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_* run code and redirect credentials",
    ),
];

fn pattern_matches(pattern: &str, upper_name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => upper_name.starts_with(&prefix.to_ascii_uppercase()),
        None => upper_name.eq_ignore_ascii_case(pattern),
    }
}

/// Checks one secret name on its own, against the fixed rules and the organization's extra
/// deny list (`secrets.deny_names`, exact names or prefixes ending in `*`, case-insensitive).
///
/// The first failing rule in the order invalid-name, starts-with-digit, reserved-prefix,
/// dangerous-name is returned.
pub fn check_name(name: &str, extra_deny: &[String]) -> Result<(), SecretNameRejection> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SecretNameRejection::InvalidName);
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Err(SecretNameRejection::StartsWithDigit);
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("GITHUB_") {
        return Err(SecretNameRejection::ReservedPrefix);
    }
    let fixed = DANGEROUS_NAMES.iter().map(|(pattern, _)| *pattern);
    let extra = extra_deny.iter().map(String::as_str);
    if fixed
        .chain(extra)
        .any(|pattern| pattern_matches(pattern, &upper))
    {
        return Err(SecretNameRejection::DangerousName);
    }
    Ok(())
}

/// The level a secret was defined at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SecretLevel {
    /// The creator's own secrets (highest precedence).
    User,
    /// The repository's secrets.
    Repository,
    /// The organization's secrets (lowest precedence).
    Organization,
}

/// Why one secret is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SecretRejection {
    /// See [`SecretNameRejection::InvalidName`].
    InvalidName,
    /// See [`SecretNameRejection::StartsWithDigit`].
    StartsWithDigit,
    /// See [`SecretNameRejection::ReservedPrefix`].
    ReservedPrefix,
    /// See [`SecretNameRejection::DangerousName`].
    DangerousName,
    /// The same name in another case exists at the same level.
    DuplicateName,
    /// The value is over 49 152 bytes.
    TooLarge,
    /// Past the first 100 names of its level in sorted order.
    TooMany,
}

impl From<SecretNameRejection> for SecretRejection {
    fn from(reason: SecretNameRejection) -> Self {
        match reason {
            SecretNameRejection::InvalidName => Self::InvalidName,
            SecretNameRejection::StartsWithDigit => Self::StartsWithDigit,
            SecretNameRejection::ReservedPrefix => Self::ReservedPrefix,
            SecretNameRejection::DangerousName => Self::DangerousName,
        }
    }
}

impl ReasonCode for SecretRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidName => "invalid-name",
            Self::StartsWithDigit => "starts-with-digit",
            Self::ReservedPrefix => "reserved-prefix",
            Self::DangerousName => "dangerous-name",
            Self::DuplicateName => "duplicate-name",
            Self::TooLarge => "too-large",
            Self::TooMany => "too-many",
        }
    }
}

/// Why no secret at all is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WithheldReason {
    /// The creator lacks write access to the codespace's repository.
    NoWriteAccess,
    /// The codespace is for a pull request from a fork.
    ForkPullRequest,
    /// The environment is a prebuild.
    Prebuild,
}

impl ReasonCode for WithheldReason {
    fn code(&self) -> &'static str {
        match self {
            Self::NoWriteAccess => "no-write-access",
            Self::ForkPullRequest => "fork-pull-request",
            Self::Prebuild => "prebuild",
        }
    }
}

/// The facts that decide whether secrets are injected at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectionFacts {
    /// The creator's access to the codespace's repository.
    pub creator_access: AccessLevel,
    /// The codespace is for a pull request from a fork.
    pub pull_request_from_fork: bool,
    /// The environment is a prebuild.
    pub prebuild: bool,
}

impl InjectionFacts {
    /// The first reason to withhold every secret, if any.
    pub fn withheld(&self) -> Option<WithheldReason> {
        if !self.creator_access.can_write() {
            Some(WithheldReason::NoWriteAccess)
        } else if self.pull_request_from_fork {
            Some(WithheldReason::ForkPullRequest)
        } else if self.prebuild {
            Some(WithheldReason::Prebuild)
        } else {
            None
        }
    }
}

/// One secret as the selection sees it: level, name and value size, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// Where it was defined.
    pub level: SecretLevel,
    /// Its name as written.
    pub name: String,
    /// Size of its value in bytes.
    pub size: usize,
}

/// A secret that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSecret {
    /// Its level.
    pub level: SecretLevel,
    /// Its name as written.
    pub name: String,
    /// Why.
    pub reason: SecretRejection,
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSelection {
    /// Names to inject (as written at the winning level) and the level each comes from.
    /// Empty when `withheld` is set.
    pub environment: BTreeMap<String, SecretLevel>,
    /// Refused secrets, by level (user, repository, organization) then in input order.
    pub rejected: Vec<RejectedSecret>,
    /// Why nothing is injected, if so.
    pub withheld: Option<WithheldReason>,
}

impl SecretSelection {
    /// The names the agent may inject, as a proof it can act on.
    pub fn authorize(&self) -> Authorized<BTreeMap<String, SecretLevel>> {
        // `environment` is empty whenever `withheld` is set, so this never widens.
        Authorized::new(self.environment.clone())
    }
}

/// Decides which secrets to inject (see the module docs for the rules).
pub fn select(
    secrets: &[SecretMeta],
    facts: &InjectionFacts,
    extra_deny: &[String],
) -> SecretSelection {
    let levels = [
        SecretLevel::User,
        SecretLevel::Repository,
        SecretLevel::Organization,
    ];
    let mut rejected = Vec::new();
    // Upper-cased name -> (written name, level); levels are visited by precedence.
    let mut winners: BTreeMap<String, (String, SecretLevel)> = BTreeMap::new();
    for level in levels {
        let entries: Vec<&SecretMeta> = secrets.iter().filter(|s| s.level == level).collect();
        let mut case_count: HashMap<String, usize> = HashMap::new();
        for entry in &entries {
            *case_count
                .entry(entry.name.to_ascii_uppercase())
                .or_default() += 1;
        }
        let mut sorted: Vec<&str> = entries.iter().map(|s| s.name.as_str()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let kept: Vec<&str> = sorted.into_iter().take(MAX_SECRETS_PER_LEVEL).collect();
        for entry in entries {
            let upper = entry.name.to_ascii_uppercase();
            let reason = match check_name(&entry.name, extra_deny) {
                Err(reason) => Some(reason.into()),
                Ok(()) if case_count.get(&upper).copied().unwrap_or(0) > 1 => {
                    Some(SecretRejection::DuplicateName)
                }
                Ok(()) if entry.size > MAX_SECRET_BYTES => Some(SecretRejection::TooLarge),
                Ok(()) if kept.binary_search(&entry.name.as_str()).is_err() => {
                    Some(SecretRejection::TooMany)
                }
                Ok(()) => None,
            };
            match reason {
                Some(reason) => rejected.push(RejectedSecret {
                    level,
                    name: entry.name.clone(),
                    reason,
                }),
                None => {
                    winners
                        .entry(upper)
                        .or_insert_with(|| (entry.name.clone(), level));
                }
            }
        }
    }
    let withheld = facts.withheld();
    let environment = if withheld.is_some() {
        BTreeMap::new()
    } else {
        winners.into_values().collect()
    };
    SecretSelection {
        environment,
        rejected,
        withheld,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_table() {
        let deny = vec!["AWS_SECRET".to_owned(), "corp_*".to_owned()];
        let table: &[(&str, Result<(), SecretNameRejection>)] = &[
            ("API_KEY", Ok(())),
            ("a", Ok(())),
            ("_X1", Ok(())),
            ("", Err(SecretNameRejection::InvalidName)),
            ("MY KEY", Err(SecretNameRejection::InvalidName)),
            ("MY-KEY", Err(SecretNameRejection::InvalidName)),
            ("KÉY", Err(SecretNameRejection::InvalidName)),
            ("1KEY", Err(SecretNameRejection::StartsWithDigit)),
            ("GITHUB_TOKEN", Err(SecretNameRejection::ReservedPrefix)),
            ("github_foo", Err(SecretNameRejection::ReservedPrefix)),
            ("GITHUB", Ok(())),
            ("LD_PRELOAD", Err(SecretNameRejection::DangerousName)),
            ("ld_library_path", Err(SecretNameRejection::DangerousName)),
            ("LDX", Ok(())),
            ("BASH_ENV", Err(SecretNameRejection::DangerousName)),
            ("ENV", Err(SecretNameRejection::DangerousName)),
            ("ENVIRONMENT", Ok(())),
            ("PROMPT_COMMAND", Err(SecretNameRejection::DangerousName)),
            ("PS0", Err(SecretNameRejection::DangerousName)),
            ("ps4", Err(SecretNameRejection::DangerousName)),
            ("PS5", Ok(())),
            ("ZDOTDIR", Err(SecretNameRejection::DangerousName)),
            ("PATH", Err(SecretNameRejection::DangerousName)),
            ("MY_PATH", Ok(())),
            ("CDPATH", Err(SecretNameRejection::DangerousName)),
            ("SHELL", Err(SecretNameRejection::DangerousName)),
            ("IFS", Err(SecretNameRejection::DangerousName)),
            ("NODE_OPTIONS", Err(SecretNameRejection::DangerousName)),
            ("NODE_ENV", Ok(())),
            ("PYTHONPATH", Err(SecretNameRejection::DangerousName)),
            ("PYTHON", Err(SecretNameRejection::DangerousName)),
            ("PERL5OPT", Err(SecretNameRejection::DangerousName)),
            ("JAVA_TOOL_OPTIONS", Err(SecretNameRejection::DangerousName)),
            ("JAVA_HOME", Ok(())),
            ("GIT_SSH_COMMAND", Err(SecretNameRejection::DangerousName)),
            ("GITLAB_TOKEN", Ok(())),
            ("aws_secret", Err(SecretNameRejection::DangerousName)),
            ("AWS_SECRET_2", Ok(())),
            ("CORP_TOKEN", Err(SecretNameRejection::DangerousName)),
        ];
        for (name, want) in table {
            assert_eq!(&check_name(name, &deny), want, "{name:?}");
        }
    }

    #[test]
    fn every_dangerous_entry_is_live_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (pattern, why) in DANGEROUS_NAMES {
            assert!(seen.insert(*pattern), "duplicate {pattern}");
            assert!(!why.is_empty());
            let example = pattern.replace('*', "X");
            assert_eq!(
                check_name(&example, &[]),
                Err(SecretNameRejection::DangerousName),
                "{pattern}"
            );
        }
    }

    #[test]
    fn reason_codes_match_serde() {
        for r in [
            SecretRejection::InvalidName,
            SecretRejection::StartsWithDigit,
            SecretRejection::ReservedPrefix,
            SecretRejection::DangerousName,
            SecretRejection::DuplicateName,
            SecretRejection::TooLarge,
            SecretRejection::TooMany,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
        for w in [
            WithheldReason::NoWriteAccess,
            WithheldReason::ForkPullRequest,
            WithheldReason::Prebuild,
        ] {
            assert_eq!(serde_json::to_value(w).unwrap(), w.code());
        }
    }

    fn meta(level: SecretLevel, name: &str, size: usize) -> SecretMeta {
        SecretMeta {
            level,
            name: name.to_owned(),
            size,
        }
    }

    const WRITER: InjectionFacts = InjectionFacts {
        creator_access: AccessLevel::Write,
        pull_request_from_fork: false,
        prebuild: false,
    };

    #[test]
    fn precedence_user_over_repository_over_organization() {
        use SecretLevel::*;
        let secrets = [
            meta(Organization, "TOKEN", 1),
            meta(Repository, "token", 1),
            meta(User, "Token", 1),
            meta(Organization, "ORG_ONLY", 1),
            meta(Repository, "REPO", 1),
            meta(Organization, "repo", 1),
        ];
        let out = select(&secrets, &WRITER, &[]);
        let env: Vec<(&str, SecretLevel)> = out
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            env,
            vec![
                ("ORG_ONLY", Organization),
                ("REPO", Repository),
                ("Token", User)
            ]
        );
        assert!(out.rejected.is_empty());
        assert_eq!(out.withheld, None);
    }

    #[test]
    fn duplicate_large_and_too_many() {
        use SecretLevel::*;
        let mut secrets = vec![
            meta(User, "DUP", 1),
            meta(User, "dup", 1),
            meta(Repository, "DUP", 1),
            meta(User, "BIG", MAX_SECRET_BYTES + 1),
            meta(User, "EXACT", MAX_SECRET_BYTES),
            meta(Organization, "BIG", 3),
        ];
        for i in 0..101 {
            secrets.push(meta(Organization, &format!("N{i:03}"), 1));
        }
        let out = select(&secrets, &WRITER, &[]);
        let rejected: Vec<(SecretLevel, &str, SecretRejection)> = out
            .rejected
            .iter()
            .map(|r| (r.level, r.name.as_str(), r.reason))
            .collect();
        // Organization sorted: BIG, N000..N098 are the first 100, N099 and N100 are past them.
        assert_eq!(
            rejected,
            vec![
                (User, "DUP", SecretRejection::DuplicateName),
                (User, "dup", SecretRejection::DuplicateName),
                (User, "BIG", SecretRejection::TooLarge),
                (Organization, "N099", SecretRejection::TooMany),
                (Organization, "N100", SecretRejection::TooMany),
            ]
        );
        assert_eq!(out.environment.get("DUP"), Some(&Repository));
        assert_eq!(out.environment.get("BIG"), Some(&Organization));
        assert_eq!(out.environment.get("EXACT"), Some(&User));
    }

    #[test]
    fn withheld_reasons_in_order() {
        let secrets = [
            meta(SecretLevel::User, "A", 1),
            meta(SecretLevel::User, "1A", 1),
        ];
        let table = [
            (
                AccessLevel::Read,
                true,
                true,
                Some(WithheldReason::NoWriteAccess),
            ),
            (
                AccessLevel::None,
                false,
                false,
                Some(WithheldReason::NoWriteAccess),
            ),
            (
                AccessLevel::Admin,
                true,
                true,
                Some(WithheldReason::ForkPullRequest),
            ),
            (
                AccessLevel::Maintain,
                false,
                true,
                Some(WithheldReason::Prebuild),
            ),
            (AccessLevel::Write, false, false, None),
        ];
        for (creator_access, pull_request_from_fork, prebuild, want) in table {
            let facts = InjectionFacts {
                creator_access,
                pull_request_from_fork,
                prebuild,
            };
            let out = select(&secrets, &facts, &[]);
            assert_eq!(out.withheld, want);
            assert_eq!(out.environment.is_empty(), want.is_some());
            assert_eq!(out.authorize().get().is_empty(), want.is_some());
            assert_eq!(out.rejected.len(), 1);
        }
    }
}
