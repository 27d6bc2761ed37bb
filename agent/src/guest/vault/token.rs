//! The repository token held by the vault, and its expiry schedule (pure: `now` is an argument).
//!
//! ```text
//!   put_token ──► Live ──(now ≥ expires_at − lead)──► Live, warned ──(now ≥ expires_at)──► wiped
//!                  │ emits nothing                     │ emits token_expiring               emits token_expired
//!                  └──────────── a new put_token replaces it at any point, warning re-armed ──┘
//! ```
//!
//! A token whose expiry is already inside the lead time is warned about at the first poll; a
//! token that is already expired is refused by [`TokenPut::validate`]. Between the expiry
//! instant and the next poll the token is still in memory, so every reader goes through
//! [`Token::live`], which treats it as absent from `expires_at` on.

use codespace_policy::token::TokenScope;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::seal::TokenValue;

/// The host the token is for when neither the config nor the delivery says otherwise.
pub const DEFAULT_TOKEN_HOST: &str = "github.com";

/// A token delivery from the host (`token put`), as it arrives on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPut {
    /// The token itself.
    pub value: TokenValue,
    /// When it stops working (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// What it may be used for (`policy token-scope` output).
    pub scope: TokenScope,
    /// The git host it is for; the vault's configured host when absent.
    #[serde(default)]
    pub host: Option<String>,
}

/// Why a token delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `expires_at` is not after `now`.
    #[error("token expired at {expires_at} (now {now})")]
    AlreadyExpired {
        /// The delivered expiry.
        expires_at: OffsetDateTime,
        /// The vault's clock.
        now: OffsetDateTime,
    },
    /// The host is not a plain host name with an optional port.
    #[error("invalid token host {host:?}: expected a DNS name with an optional :port")]
    InvalidHost {
        /// The host as delivered.
        host: String,
    },
}

impl TokenError {}

/// Normalizes a git host (`github.com`, `ghe.example:8443`) with the policy's one spelling of
/// a host ([`codespace_policy::host::normalize`]: lower case, DNS labels, an optional numeric
/// port). Anything else (user info, paths, spaces) is refused so that the broker compares
/// exactly what git sends as `host=`.
pub(crate) fn normalize_host(host: &str) -> Result<String, TokenError> {
    codespace_policy::host::normalize(host).ok_or_else(|| TokenError::InvalidHost {
        host: host.to_owned(),
    })
}

impl TokenPut {
    /// Checks the delivery against `now` and resolves its host (`default_host` when absent).
    pub(crate) fn validate(
        self,
        default_host: &str,
        now: OffsetDateTime,
    ) -> Result<Token, TokenError> {
        if self.expires_at <= now {
            return Err(TokenError::AlreadyExpired {
                expires_at: self.expires_at,
                now,
            });
        }
        let host = normalize_host(self.host.as_deref().unwrap_or(default_host))?;
        Ok(Token {
            value: self.value,
            expires_at: self.expires_at,
            scope: self.scope,
            host,
            warned: false,
        })
    }
}

/// A validated token in the vault.
#[derive(Debug)]
pub(crate) struct Token {
    value: TokenValue,
    expires_at: OffsetDateTime,
    scope: TokenScope,
    host: String,
    warned: bool,
}

/// What the expiry schedule asks for at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpiryStep {
    /// Nothing to do yet.
    Wait,
    /// Announce the coming expiry (once).
    Warn,
    /// The token is expired: wipe it.
    Wipe,
}

impl Token {
    /// The token, or `None` once `now` has reached the expiry.
    pub(crate) fn live(&self, now: OffsetDateTime) -> Option<&TokenValue> {
        (now < self.expires_at).then_some(&self.value)
    }

    /// When the token stops working.
    pub(crate) fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// Its scope.
    pub(crate) fn scope(&self) -> &TokenScope {
        &self.scope
    }

    /// The (normalized) git host it is for.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The next instant the schedule has something to do.
    pub(crate) fn next_deadline(&self, lead: time::Duration) -> OffsetDateTime {
        if self.warned {
            self.expires_at
        } else {
            self.expires_at - lead
        }
    }

    /// Advances the schedule to `now`: a warning is returned once, a wipe at the expiry.
    pub(crate) fn step(&mut self, lead: time::Duration, now: OffsetDateTime) -> ExpiryStep {
        if now >= self.expires_at {
            ExpiryStep::Wipe
        } else if !self.warned && now >= self.expires_at - lead {
            self.warned = true;
            ExpiryStep::Warn
        } else {
            ExpiryStep::Wait
        }
    }
}

/// The token part of `status` (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenStatus {
    /// When it stops working (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    /// Its scope.
    pub(crate) scope: TokenScope,
    /// The git host it is for.
    pub(crate) host: String,
    /// Whether it is exported as `GITHUB_TOKEN` in the environment file.
    pub(crate) exported: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn put(expires_at: OffsetDateTime, host: Option<&str>) -> TokenPut {
        TokenPut {
            value: TokenValue::new("ghu_test".into()).unwrap(),
            expires_at,
            scope: TokenScope::default(),
            host: host.map(str::to_owned),
        }
    }

    #[test]
    fn wire_shape_parses() {
        let json = r#"{"value":"ghu_abc","expires_at":"2026-11-25T20:00:00Z",
            "scope":{"repositories":{"octo/app":{"contents":"write"}},"fork_on_push":false,"denied":[]},
            "host":"GitHub.com"}"#;
        let put: TokenPut = serde_json::from_str(json).unwrap();
        let token = put
            .validate("github.com", datetime!(2026-11-25 19:00 UTC))
            .unwrap();
        assert_eq!(token.host(), "github.com");
        assert!(token.scope().covers("Octo/App.git"));
        assert!(!format!("{token:?}").contains("ghu_abc"));
    }

    #[test]
    fn hosts_are_normalized_or_refused() {
        assert_eq!(
            normalize_host("GHE.example:8443").unwrap(),
            "ghe.example:8443"
        );
        for bad in [
            "",
            "user@github.com",
            "github.com/x",
            "a b",
            "-x",
            "h:0",
            "h:99999",
            "h:",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expired_deliveries_are_refused() {
        let now = datetime!(2026-11-25 19:00 UTC);
        let err = put(now, None).validate("github.com", now).unwrap_err();
        assert!(matches!(err, TokenError::AlreadyExpired { .. }), "{err}");
        let err = put(now + Duration::hours(1), Some("bad host"))
            .validate("github.com", now)
            .unwrap_err();
        assert!(matches!(err, TokenError::InvalidHost { .. }), "{err}");
    }

    #[test]
    fn schedule_warns_once_then_wipes() {
        let now = datetime!(2026-11-25 19:00 UTC);
        let lead = Duration::minutes(10);
        let mut token = put(now + Duration::hours(1), None)
            .validate("github.com", now)
            .unwrap();
        assert_eq!(token.next_deadline(lead), now + Duration::minutes(50));
        assert_eq!(
            token.step(lead, now + Duration::minutes(49)),
            ExpiryStep::Wait
        );
        assert_eq!(
            token.step(lead, now + Duration::minutes(50)),
            ExpiryStep::Warn
        );
        assert_eq!(
            token.step(lead, now + Duration::minutes(55)),
            ExpiryStep::Wait
        );
        assert_eq!(token.next_deadline(lead), now + Duration::hours(1));
        assert!(token.live(now + Duration::minutes(59)).is_some());
        assert!(token.live(now + Duration::hours(1)).is_none());
        assert_eq!(token.step(lead, now + Duration::hours(1)), ExpiryStep::Wipe);
    }

    #[test]
    fn short_token_is_warned_at_first_poll() {
        let now = datetime!(2026-11-25 19:00 UTC);
        let lead = Duration::minutes(10);
        let mut token = put(now + Duration::minutes(2), None)
            .validate("github.com", now)
            .unwrap();
        assert!(token.next_deadline(lead) < now);
        assert_eq!(token.step(lead, now), ExpiryStep::Warn);
    }
}
