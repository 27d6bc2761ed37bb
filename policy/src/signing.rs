//! Commit signing: whether the agent asks the host to sign what git hands it (issue 17).
//!
//! The private key never enters the VM. Git calls the agent's helper as its signing program;
//! the helper asks the agent's broker; the broker asks this module; only an allowed request is
//! sent to the host, which signs it and sends the signature back. The host runs the same
//! decision again before it signs (a compromised guest cannot make it sign anything else).
//!
//! ```text
//!   mode off for the session?                 ─yes► refused(signing-off)
//!   prebuild?                                 ─yes► refused(prebuild)
//!   git asks for another format (ssh/openpgp)? ─yes► refused(wrong-format)
//!   codespace's repository unknown?            ─yes► refused(no-repository)
//!   repository not in the user's trusted list? ─yes► refused(repository-not-trusted)
//!   payload not a git commit or tag object?    ─yes► refused(not-a-commit-or-tag)
//!   committer/tagger email not verified?       ─yes► refused(unverified-email)
//!   60 signatures in the last 60 s already?    ─yes► refused(rate-limited)
//!   otherwise                                        Authorized<Approved>
//! ```
//!
//! Rules, after Codespaces' "GPG verification" (off by default, then a list of trusted
//! repositories; `gh-gpgsign` signs only for those) and DevPod's SSH signature helper (the
//! host runs `ssh-keygen -Y sign -n git`):
//! - the host turns signing on per session (`ssh` or `openpgp`) with the user's trusted
//!   repositories (`owner/name` or `owner/*`, case-insensitive) and verified emails; a
//!   session created without them has signing off;
//! - prebuilds never sign: nobody's key signs code a prebuild produced;
//! - only what git signs is signed ([`object`]): a commit or a tag, never a blob, a push
//!   certificate or an SSH challenge; and only as the user: the committer's (tagger's) email
//!   must be one of the verified ones (compared ASCII case-insensitively, as GitHub does);
//! - at most [`MAX_PER_WINDOW`] requests per [`RATE_WINDOW`] reach the host: only allowed
//!   requests count, so a refused flood does not lock the user out, and a runaway loop of real
//!   commits is stopped after a minute's worth.
//!
//! The first checks (mode, prebuild, repository) depend only on the session:
//! [`SigningSettings::enabled`] answers them alone, for the git configuration the agent
//! writes and for `codespace-agent git-sign --enabled`.

pub mod object;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decision::{Authorized, ReasonCode};
use crate::repo::{RepoName, RepoNameError, RepoPattern};

pub use object::{GitObject, ObjectKind, PayloadError};

/// Requests allowed per [`RATE_WINDOW`].
pub const MAX_PER_WINDOW: usize = 60;
/// The window [`MAX_PER_WINDOW`] counts over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most trusted-repository patterns, and most verified emails, in one session's settings.
pub const MAX_LIST: usize = 1000;

/// A signature format git asks for: `gpg.format` `ssh` or `openpgp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningFormat {
    /// An SSH signature (`ssh-keygen -Y sign -n git`), git's `gpg.format = ssh`.
    Ssh,
    /// An OpenPGP detached, armored signature (`gpg --detach-sign --armor`).
    #[serde(rename = "openpgp")]
    OpenPgp,
}

impl SigningFormat {
    /// `ssh` or `openpgp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ssh => "ssh",
            Self::OpenPgp => "openpgp",
        }
    }

    /// Parses `ssh` or `openpgp`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ssh" => Some(Self::Ssh),
            "openpgp" => Some(Self::OpenPgp),
            _ => None,
        }
    }
}

impl fmt::Display for SigningFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether and how the session signs: `off`, `ssh` or `openpgp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningMode {
    /// No signing (the default).
    #[default]
    Off,
    /// SSH signatures.
    Ssh,
    /// OpenPGP signatures.
    #[serde(rename = "openpgp")]
    OpenPgp,
}

impl SigningMode {
    /// Parses `off`, `ssh` or `openpgp`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            _ => SigningFormat::parse(text).map(Self::from),
        }
    }

    /// The format, when on.
    pub fn format(self) -> Option<SigningFormat> {
        match self {
            Self::Off => None,
            Self::Ssh => Some(SigningFormat::Ssh),
            Self::OpenPgp => Some(SigningFormat::OpenPgp),
        }
    }
}

impl From<SigningFormat> for SigningMode {
    fn from(f: SigningFormat) -> Self {
        match f {
            SigningFormat::Ssh => Self::Ssh,
            SigningFormat::OpenPgp => Self::OpenPgp,
        }
    }
}

/// A verified email, compared ASCII case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEmail(String);

impl VerifiedEmail {
    /// Parses `local@domain`: one `@`, both parts non-empty, no whitespace, control
    /// characters or `<>` (nothing git could not write between `<` and `>`).
    pub fn parse(text: &str) -> Option<Self> {
        let (local, domain) = text.split_once('@')?;
        let clean = !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'));
        (clean
            && !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && text.len() <= 254)
            .then(|| Self(text.to_owned()))
    }

    /// The email as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `email` is this one.
    pub fn matches(&self, email: &str) -> bool {
        self.0.eq_ignore_ascii_case(email)
    }
}

/// What the host gave for the session (`session create --signing ... --signing-trusted ...
/// --verified-emails ...`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigningSettings {
    /// Off, or the format.
    pub mode: SigningMode,
    /// Repositories the user trusts for signing.
    pub trusted: Vec<RepoPattern>,
    /// The user's verified emails.
    pub verified_emails: Vec<VerifiedEmail>,
}

/// The settings as they travel (session request, host configuration): every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigningSettings {
    /// `off`, `ssh` or `openpgp` (default `off`).
    #[serde(default)]
    pub mode: Option<String>,
    /// `owner/name` or `owner/*` patterns.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Verified emails.
    #[serde(default)]
    pub verified_emails: Vec<String>,
}

/// Why signing settings are invalid; each names the field and, in a list, the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// `mode` is not `off`, `ssh` or `openpgp`.
    #[error("mode: {0:?} is not one of off, ssh, openpgp")]
    Mode(String),
    /// A trusted-repository pattern is invalid.
    #[error("trusted[{index}]: {source}")]
    Trusted {
        /// Its index.
        index: usize,
        /// Why.
        source: RepoNameError,
    },
    /// A verified email is invalid.
    #[error("verified_emails[{index}]: {email:?} is not an email address")]
    Email {
        /// Its index.
        index: usize,
        /// The text (emails are not secret).
        email: String,
    },
    /// A list is longer than [`MAX_LIST`].
    #[error("{field}: more than {MAX_LIST} entries")]
    TooMany {
        /// The field.
        field: &'static str,
    },
}

impl RawSigningSettings {
    /// The typed settings, or every reason they are invalid (the first of each list).
    pub fn build(&self) -> Result<SigningSettings, SettingsError> {
        let mode = match self.mode.as_deref() {
            None => SigningMode::Off,
            Some(m) => SigningMode::parse(m).ok_or_else(|| SettingsError::Mode(m.to_owned()))?,
        };
        if self.trusted.len() > MAX_LIST {
            return Err(SettingsError::TooMany { field: "trusted" });
        }
        if self.verified_emails.len() > MAX_LIST {
            return Err(SettingsError::TooMany {
                field: "verified_emails",
            });
        }
        let trusted = self
            .trusted
            .iter()
            .enumerate()
            .map(|(index, p)| {
                RepoPattern::parse(p.trim())
                    .map_err(|source| SettingsError::Trusted { index, source })
            })
            .collect::<Result<_, _>>()?;
        let verified_emails = self
            .verified_emails
            .iter()
            .enumerate()
            .map(|(index, e)| {
                VerifiedEmail::parse(e.trim()).ok_or_else(|| SettingsError::Email {
                    index,
                    email: e.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SigningSettings {
            mode,
            trusted,
            verified_emails,
        })
    }
}

/// What the session knows about the codespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigningFacts {
    /// The codespace's repository (`None` when the host did not say, or said something that is
    /// not `owner/name`).
    pub repository: Option<RepoName>,
    /// The codespace is a prebuild.
    pub prebuild: bool,
}

/// Why nothing is signed. Codes are stable; messages are what git shows the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningRefusal {
    /// The host did not turn signing on for this session.
    #[error("commit signing is off for this codespace")]
    Off,
    /// A prebuild.
    #[error("commit signing is off in prebuilds")]
    Prebuild,
    /// Git asked for the other format.
    #[error("git asked for an {requested} signature, but this codespace signs with {configured} (gpg.format = {configured})")]
    WrongFormat {
        /// The session's format.
        configured: SigningFormat,
        /// What git asked for.
        requested: SigningFormat,
    },
    /// The codespace's repository is not known.
    #[error("the codespace's repository is not known, so it cannot be checked against your trusted repositories")]
    NoRepository,
    /// The repository is not in the user's trusted list.
    #[error("repository {repository} is not in your trusted repositories for commit signing")]
    RepositoryNotTrusted {
        /// The codespace's repository.
        repository: RepoName,
    },
    /// The payload is not a commit or tag.
    #[error("only git commits and tags are signed: {0}")]
    NotCommitOrTag(PayloadError),
    /// The signer's email is not verified.
    #[error("the {header} email <{email}> is not one of your verified emails")]
    UnverifiedEmail {
        /// `committer` or `tagger`.
        header: &'static str,
        /// The email in the object.
        email: String,
    },
    /// Too many requests.
    #[error("more than {MAX_PER_WINDOW} signing requests in the last minute; try again in {retry_after_s} s")]
    RateLimited {
        /// Seconds until one more is allowed.
        retry_after_s: u64,
    },
}

impl ReasonCode for SigningRefusal {
    fn code(&self) -> &'static str {
        match self {
            Self::Off => "signing-off",
            Self::Prebuild => "prebuild",
            Self::WrongFormat { .. } => "wrong-format",
            Self::NoRepository => "no-repository",
            Self::RepositoryNotTrusted { .. } => "repository-not-trusted",
            Self::NotCommitOrTag(_) => "not-a-commit-or-tag",
            Self::UnverifiedEmail { .. } => "unverified-email",
            Self::RateLimited { .. } => "rate-limited",
        }
    }
}

/// What an allowed request signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The format.
    pub format: SigningFormat,
    /// The codespace's repository (trusted).
    pub repository: RepoName,
    /// The object (with a verified signer).
    pub object: GitObject,
}

impl SigningSettings {
    /// The session-only checks: the format to sign with, or why signing is off for this
    /// codespace whatever git asks.
    pub fn enabled(
        &self,
        facts: &SigningFacts,
    ) -> Result<(SigningFormat, RepoName), SigningRefusal> {
        let format = self.mode.format().ok_or(SigningRefusal::Off)?;
        if facts.prebuild {
            return Err(SigningRefusal::Prebuild);
        }
        let repository = facts
            .repository
            .clone()
            .ok_or(SigningRefusal::NoRepository)?;
        if !self.trusted.iter().any(|p| p.matches(&repository)) {
            return Err(SigningRefusal::RepositoryNotTrusted { repository });
        }
        Ok((format, repository))
    }
}

/// Decides one request to sign `payload` in `format` (the order of the checks is the module
/// docs' diagram). An allowed request takes one of `limiter`'s places at `now`.
pub fn decide(
    settings: &SigningSettings,
    facts: &SigningFacts,
    format: SigningFormat,
    payload: &[u8],
    limiter: &mut RateLimiter,
    now: Instant,
) -> Result<Authorized<Approved>, SigningRefusal> {
    let (configured, repository) = settings.enabled(facts)?;
    if format != configured {
        return Err(SigningRefusal::WrongFormat {
            configured,
            requested: format,
        });
    }
    let object = check_payload(payload, Some(&settings.verified_emails))?;
    limiter
        .admit(now)
        .map_err(|retry_after| SigningRefusal::RateLimited {
            retry_after_s: retry_after.as_secs().max(1),
        })?;
    Ok(Authorized::new(Approved {
        format,
        repository,
        object,
    }))
}

/// The payload's checks alone: a commit or tag object whose committer (tagger) email is one of
/// `verified` (`None`: any email; for a host that was not told the user's emails, which still
/// signs nothing but commits and tags).
pub fn check_payload(
    payload: &[u8],
    verified: Option<&[VerifiedEmail]>,
) -> Result<GitObject, SigningRefusal> {
    let object = object::parse(payload).map_err(SigningRefusal::NotCommitOrTag)?;
    if verified.is_some_and(|list| !list.iter().any(|e| e.matches(&object.signer_email))) {
        return Err(SigningRefusal::UnverifiedEmail {
            header: object.kind.signer_header(),
            email: object.signer_email,
        });
    }
    Ok(object)
}

/// At most [`MAX_PER_WINDOW`] admissions in any [`RATE_WINDOW`]: a sliding log of the last
/// admissions' times (bounded by the maximum). Pure: time is passed in.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    admitted: VecDeque<Instant>,
}

impl RateLimiter {
    /// Takes a place at `now`, or says how long until one frees.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        self.forget_before(now);
        if self.admitted.len() >= MAX_PER_WINDOW {
            let oldest = self.admitted.front().copied().unwrap_or(now);
            return Err(RATE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        self.admitted.push_back(now);
        Ok(())
    }

    /// Admissions within the window that ends at `now`.
    pub fn recent(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        self.admitted.len()
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .admitted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            self.admitted.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
