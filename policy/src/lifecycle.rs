//! The trust profile lifecycle commands run under.
//!
//! ```text
//!   creator can write? ─no─► restricted(no-write-access)
//!   fork pull request? ─yes► restricted(fork-pull-request)
//!   prebuild?          ─yes► restricted(prebuild)
//!   org trusts repo?   ─no─► restricted(not-trusted-by-organization)
//!   org says sandboxed ─yes► restricted(sandboxed-by-organization)
//!   otherwise               trusted
//!   restricted + org says trusted-only ⇒ blocked (same reason) until the creator approves
//! ```
//!
//! Rules (issue 3; DESIGN.md §1 "devcontainer.json" and §4 "Lifecycle runner"): trusted runs as
//! the user with secrets and the token; restricted runs in the stricter sandbox without secrets
//! or token; blocked runs nothing until the creator approves, and then runs restricted (chosen
//! restrictively: approval lifts the block, not the sandbox). An organization trust list that
//! does not cover the repository makes it untrusted; no list trusts it. Secrets and the token are
//! withheld for exactly the reasons secrets are (DESIGN.md §1 "Secrets").

use serde::{Deserialize, Serialize};

use crate::decision::{Authorized, ReasonCode};
use crate::document::{LifecycleSetting, OrgPolicy};
use crate::repo::{AccessLevel, RepoName};

/// How far the repository is trusted: the strength of the sandbox its commands run in (the
/// lifecycle decision's profile when it is not blocked). The agent's launcher, sandbox and
/// extension policy all speak this one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// The user's normal abilities, with secrets and the token.
    Trusted,
    /// The strict sandbox, without secrets or token (fork, untrusted, no write access, ...).
    Restricted,
}

/// The profile lifecycle commands get: a [`Trust`], or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Run as the user, with secrets and the token.
    Trusted,
    /// Run in the strict sandbox, without secrets or token.
    Restricted,
    /// Do not run until the creator approves.
    Blocked,
}

/// Why the profile is not trusted (stable kebab-case codes), in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LifecycleReason {
    /// The creator cannot write to the repository.
    NoWriteAccess,
    /// A pull request from a fork.
    ForkPullRequest,
    /// A prebuild.
    Prebuild,
    /// The organization's trusted-repository list does not cover the repository.
    NotTrustedByOrganization,
    /// The organization sandboxes every lifecycle command.
    SandboxedByOrganization,
}

impl ReasonCode for LifecycleReason {
    fn code(&self) -> &'static str {
        match self {
            Self::NoWriteAccess => "no-write-access",
            Self::ForkPullRequest => "fork-pull-request",
            Self::Prebuild => "prebuild",
            Self::NotTrustedByOrganization => "not-trusted-by-organization",
            Self::SandboxedByOrganization => "sandboxed-by-organization",
        }
    }
}

/// The facts the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleFacts {
    /// The creator's access to the repository.
    pub creator_access: AccessLevel,
    /// The codespace is for a pull request from a fork.
    pub pull_request_from_fork: bool,
    /// A prebuild.
    pub prebuild: bool,
    /// The codespace's repository.
    pub repository: RepoName,
}

/// The lifecycle decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleDecision {
    /// The profile.
    pub profile: Profile,
    /// Whether secrets are injected into lifecycle commands.
    pub secrets: bool,
    /// Which token lifecycle commands get.
    pub token: TokenAccess,
    /// Why the profile is not trusted (`None` when trusted).
    pub reason: Option<LifecycleReason>,
}

/// The token lifecycle commands get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenAccess {
    /// No token.
    None,
    /// The codespace's token with its full scope.
    Full,
}

/// What the runner may do: the trust to run under (never blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProfile {
    /// Trusted or restricted.
    pub trust: Trust,
    /// Inject secrets.
    pub secrets: bool,
    /// Token access.
    pub token: TokenAccess,
}

/// Decides the profile.
pub fn decide(facts: &LifecycleFacts, policy: Option<&OrgPolicy>) -> LifecycleDecision {
    let setting = policy.and_then(|p| p.lifecycle_commands);
    let reason = if !facts.creator_access.can_write() {
        Some(LifecycleReason::NoWriteAccess)
    } else if facts.pull_request_from_fork {
        Some(LifecycleReason::ForkPullRequest)
    } else if facts.prebuild {
        Some(LifecycleReason::Prebuild)
    } else if !policy.is_none_or(|p| p.trusts(&facts.repository)) {
        Some(LifecycleReason::NotTrustedByOrganization)
    } else if setting == Some(LifecycleSetting::Sandboxed) {
        Some(LifecycleReason::SandboxedByOrganization)
    } else {
        None
    };
    match reason {
        None => LifecycleDecision {
            profile: Profile::Trusted,
            secrets: true,
            token: TokenAccess::Full,
            reason: None,
        },
        Some(reason) => LifecycleDecision {
            profile: if setting == Some(LifecycleSetting::TrustedOnly) {
                Profile::Blocked
            } else {
                Profile::Restricted
            },
            secrets: false,
            token: TokenAccess::None,
            reason: Some(reason),
        },
    }
}

impl LifecycleDecision {
    /// The trust of the profile; `None` when blocked.
    pub fn trust(&self) -> Option<Trust> {
        match self.profile {
            Profile::Trusted => Some(Trust::Trusted),
            Profile::Restricted => Some(Trust::Restricted),
            Profile::Blocked => None,
        }
    }

    /// The profile the runner may use now; `None` when blocked.
    pub fn authorize(&self) -> Option<Authorized<RunProfile>> {
        self.trust().map(|trust| {
            Authorized::new(RunProfile {
                trust,
                secrets: self.secrets,
                token: self.token,
            })
        })
    }

    /// The profile after the creator approved a blocked run: restricted, never trusted.
    pub fn approved_by_creator(&self) -> Authorized<RunProfile> {
        self.authorize().unwrap_or_else(|| {
            Authorized::new(RunProfile {
                trust: Trust::Restricted,
                secrets: false,
                token: TokenAccess::None,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use LifecycleReason::*;

    fn facts(access: AccessLevel, fork: bool, prebuild: bool) -> LifecycleFacts {
        LifecycleFacts {
            creator_access: access,
            pull_request_from_fork: fork,
            prebuild,
            repository: RepoName::parse("octo/app").unwrap(),
        }
    }

    fn policy(text: &str) -> OrgPolicy {
        OrgPolicy::parse(text).unwrap()
    }

    #[test]
    fn table() {
        let w = AccessLevel::Write;
        let sandboxed = policy(r#"{"lifecycle_commands": "sandboxed"}"#);
        let trusted_only = policy(r#"{"lifecycle_commands": "trusted-only"}"#);
        let other_trusted = policy(r#"{"trusted_repositories": ["octo/other"]}"#);
        let owner_trusted =
            policy(r#"{"trusted_repositories": ["OCTO/*"], "lifecycle_commands": "run"}"#);
        let none =
            policy(r#"{"trusted_repositories": "none", "lifecycle_commands": "trusted-only"}"#);
        let table: Vec<(
            LifecycleFacts,
            Option<&OrgPolicy>,
            Profile,
            Option<LifecycleReason>,
        )> = vec![
            (facts(w, false, false), None, Profile::Trusted, None),
            (
                facts(AccessLevel::Admin, false, false),
                Some(&owner_trusted),
                Profile::Trusted,
                None,
            ),
            (
                facts(AccessLevel::Triage, true, true),
                None,
                Profile::Restricted,
                Some(NoWriteAccess),
            ),
            (
                facts(w, true, true),
                None,
                Profile::Restricted,
                Some(ForkPullRequest),
            ),
            (
                facts(w, false, true),
                None,
                Profile::Restricted,
                Some(Prebuild),
            ),
            (
                facts(w, false, false),
                Some(&other_trusted),
                Profile::Restricted,
                Some(NotTrustedByOrganization),
            ),
            (
                facts(w, false, false),
                Some(&sandboxed),
                Profile::Restricted,
                Some(SandboxedByOrganization),
            ),
            (
                facts(w, false, false),
                Some(&trusted_only),
                Profile::Trusted,
                None,
            ),
            (
                facts(AccessLevel::Read, false, false),
                Some(&trusted_only),
                Profile::Blocked,
                Some(NoWriteAccess),
            ),
            (
                facts(w, false, false),
                Some(&none),
                Profile::Blocked,
                Some(NotTrustedByOrganization),
            ),
        ];
        for (f, p, profile, reason) in table {
            let d = decide(&f, p);
            assert_eq!((d.profile, d.reason), (profile, reason), "{f:?} {p:?}");
            let trusted = profile == Profile::Trusted;
            assert_eq!(d.secrets, trusted);
            assert_eq!(
                d.token,
                if trusted {
                    TokenAccess::Full
                } else {
                    TokenAccess::None
                }
            );
            assert_eq!(d.authorize().is_none(), profile == Profile::Blocked);
            assert_eq!(
                d.approved_by_creator().trust,
                if trusted {
                    Trust::Trusted
                } else {
                    Trust::Restricted
                }
            );
            if profile != Profile::Trusted {
                assert!(!d.approved_by_creator().secrets);
            }
        }
    }

    #[test]
    fn reason_codes_match_serde() {
        for r in [
            NoWriteAccess,
            ForkPullRequest,
            Prebuild,
            NotTrustedByOrganization,
            SandboxedByOrganization,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }
}
