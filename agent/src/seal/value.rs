//! Byte strings that must never leak: secret values and the repository token.
//!
//! Both types own their bytes, overwrite them with zeros when dropped (`zeroize`), and have a
//! `Debug` that prints only the length (`<redacted 12 bytes>`). Neither implements `Display` or
//! `Serialize`: the one way to read a value is [`SecretValue::expose`] / [`TokenValue::expose`], so
//! every place a value leaves the process (the environment file, a credential answer, the wire on
//! the host side) names it explicitly and can be found with a grep.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, Zeroizing};

/// The plaintext value of one secret, zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Takes ownership of `bytes` (no copy is left behind by this call).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The plaintext. Call sites are the only places a value leaves the vault.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretValue {
    fn from(mut bytes: Zeroizing<Vec<u8>>) -> Self {
        // Move the buffer out; the emptied `Zeroizing` has nothing left to wipe.
        Self(std::mem::take(&mut *bytes))
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// Why a string cannot be a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenValueError {
    /// The token is empty.
    #[error("token is empty")]
    Empty,
    /// The token is longer than [`TokenValue::MAX_LEN`].
    #[error("token is {len} bytes, more than the maximum of {max}")]
    TooLong {
        /// Actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token has a byte outside printable ASCII (`!`..=`~`): a newline or `=` in git's
    /// line-based credential protocol could smuggle extra keys, so only visible characters pass.
    #[error("token has a character outside printable ASCII at byte {position}")]
    InvalidCharacter {
        /// Byte offset of the first bad character (the character itself is not reported).
        position: usize,
    },
}

/// The repository token (e.g. a `ghu_…` GitHub App user token), zeroized on drop and redacted
/// in `Debug`. Only printable ASCII without spaces is accepted, which every GitHub token format
/// satisfies and which keeps it safe inside a credential answer or a quoted shell line.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenValue(String);

impl TokenValue {
    /// Longest token accepted (GitHub tokens are well under 300 bytes).
    pub const MAX_LEN: usize = 4096;

    /// Checks and takes ownership of `value`. On error the string is zeroized before returning.
    pub fn new(value: String) -> Result<Self, TokenValueError> {
        let value = Zeroizing::new(value);
        if value.is_empty() {
            return Err(TokenValueError::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(TokenValueError::TooLong {
                len: value.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(position) = value.bytes().position(|b| !(b'!'..=b'~').contains(&b)) {
            return Err(TokenValueError::InvalidCharacter { position });
        }
        let mut value = value;
        Ok(Self(std::mem::take(&mut *value)))
    }

    /// The token itself. Call sites are the only places it leaves the vault.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty token is refused by [`TokenValue::new`].
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for TokenValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// Deserializes from a JSON string and applies [`TokenValue::new`]'s checks. The error message
/// never contains the value.
impl<'de> Deserialize<'de> for TokenValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        TokenValue::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretValue::new(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "<redacted 7 bytes>");
        let token = TokenValue::new("ghu_abcdef".into()).unwrap();
        assert_eq!(format!("{token:?}"), "<redacted 10 bytes>");
        assert_eq!(token.expose(), "ghu_abcdef");
    }

    #[test]
    fn token_rejects_control_and_space_characters() {
        assert_eq!(TokenValue::new(String::new()), Err(TokenValueError::Empty));
        for bad in ["ghu_x\ny", "a b", "tok\0", "é"] {
            let err = TokenValue::new(bad.into()).unwrap_err();
            assert!(
                matches!(err, TokenValueError::InvalidCharacter { .. }),
                "{bad:?}"
            );
            assert!(!err.to_string().contains(bad));
        }
        let long = "a".repeat(TokenValue::MAX_LEN + 1);
        assert!(matches!(
            TokenValue::new(long),
            Err(TokenValueError::TooLong { .. })
        ));
    }

    #[test]
    fn token_deserializes_with_checks_and_without_echoing() {
        let ok: TokenValue = serde_json::from_str("\"ghu_1\"").unwrap();
        assert_eq!(ok.expose(), "ghu_1");
        let err = serde_json::from_str::<TokenValue>("\"ghu_secret\\nx=1\"").unwrap_err();
        assert!(!err.to_string().contains("ghu_secret"));
    }

    #[test]
    fn zeroizing_conversion_keeps_bytes() {
        let value = SecretValue::from(Zeroizing::new(b"abc".to_vec()));
        assert_eq!(value.expose(), b"abc");
        assert_eq!(value.len(), 3);
    }
}
