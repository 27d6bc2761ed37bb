//! Selecting the secrets of all three levels: per-level limits, precedence and withholding (the
//! rules are listed in the [parent module](super)).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{check_name, SecretNameRejection, MAX_SECRETS_PER_LEVEL, MAX_SECRET_BYTES};
use crate::decision::{Authorized, ReasonCode};
use crate::repo::AccessLevel;

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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn secret() -> impl Strategy<Value = SecretMeta> {
            let level = prop::sample::select(vec![
                SecretLevel::User,
                SecretLevel::Repository,
                SecretLevel::Organization,
            ]);
            let name = prop_oneof![
                "[A-Za-z_][A-Za-z0-9_]{0,6}",
                prop::sample::select(vec![
                    "PATH",
                    "path",
                    "GITHUB_X",
                    "LD_PRELOAD",
                    "1A",
                    "A-B",
                    "",
                    "Token",
                    "TOKEN"
                ])
                .prop_map(str::to_owned),
            ];
            let size = prop_oneof![
                0usize..10,
                Just(MAX_SECRET_BYTES),
                Just(MAX_SECRET_BYTES + 1)
            ];
            (level, name, size).prop_map(|(level, name, size)| SecretMeta { level, name, size })
        }

        proptest! {
            /// Only valid, unique (case-insensitively), small enough names are injected, each from
            /// the highest level that has a valid one, and nothing when any fact withholds.
            #[test]
            fn selection_invariants(
                secrets in prop::collection::vec(secret(), 0..30),
                access in prop::sample::select(AccessLevel::ALL.to_vec()),
                fork in any::<bool>(),
                prebuild in any::<bool>(),
            ) {
                let facts = InjectionFacts { creator_access: access, pull_request_from_fork: fork, prebuild };
                let out = select(&secrets, &facts, &[]);
                if !access.can_write() || fork || prebuild {
                    prop_assert!(out.environment.is_empty());
                    prop_assert!(out.withheld.is_some());
                }
                let mut seen = std::collections::HashSet::new();
                for (name, level) in &out.environment {
                    prop_assert!(check_name(name, &[]).is_ok());
                    prop_assert!(seen.insert(name.to_ascii_uppercase()));
                    let source = secrets.iter().find(|s| &s.name == name && s.level == *level).unwrap();
                    prop_assert!(source.size <= MAX_SECRET_BYTES);
                    // No valid secret of a higher level with the same name lost.
                    let rejected_higher = secrets.iter().filter(|s| s.level < *level && s.name.eq_ignore_ascii_case(name));
                    for s in rejected_higher {
                        prop_assert!(out.rejected.iter().any(|r| r.level == s.level && r.name == s.name));
                    }
                }
                for level in [SecretLevel::User, SecretLevel::Repository, SecretLevel::Organization] {
                    prop_assert!(out.environment.values().filter(|l| **l == level).count() <= MAX_SECRETS_PER_LEVEL);
                }
            }
        }
    }
}
