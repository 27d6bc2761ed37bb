//! Port grants: the host's signed statement "this principal may reach this port at this epoch
//! until then", carried in the `hello` of a `forward` connection.
//!
//! ```text
//!  host (holds the grant key)                        agent (got the key by grant_key_put)
//!  GrantClaims ─ canonical bytes ─ HMAC-SHA256 ─▶ SignedGrant (JSON) ─▶ verify MAC (constant time)
//!                                                                      └▶ GrantClaims ─▶ checks
//! ```
//!
//! Wire form (inside `hello.forward.grant`; times are whole seconds since the Unix epoch, UTC):
//!
//! ```json
//! {"principal": {"login": "mona", "organizations": ["octo"], "authenticated_at": 1764118800},
//!  "port": 3000, "epoch": 7, "expires_at": 1764129600, "mac": "base64(HMAC-SHA256)"}
//! ```
//!
//! `principal` is `null` for an anonymous grant (only a public port admits one).
//!
//! The MAC is HMAC-SHA256 under the grant key over these bytes, exactly, in this order
//! (integers big-endian, strings as their UTF-8 bytes exactly as in the JSON, no case folding):
//!
//! ```text
//! "codespace-agent grant v1" 0x00          label and separator (25 bytes)
//! u8 1 | 0                                 a principal follows | anonymous
//!   u32 len(login)  login                  (only with a principal)
//!   u32 count(organizations)
//!     u32 len(org)  org                    for each organization, in the given order
//!   i64 authenticated_at
//! u16 port
//! u64 epoch
//! i64 expires_at
//! ```
//!
//! Lengths prefix every variable field, so no two different claims share an encoding. The
//! grant key is per codespace (the host generates one for each and delivers it only to that
//! agent), which binds a grant to its codespace; the epoch binds it to one visibility state of
//! the port. Bounds: a login and each organization at most [`MAX_NAME`] bytes, at most
//! [`MAX_ORGANIZATIONS`] organizations.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Minimum grant key length in bytes.
pub const MIN_GRANT_KEY_LEN: usize = 32;
/// Longest login or organization name accepted, in bytes.
pub const MAX_NAME: usize = 256;
/// Most organizations a principal may list.
pub const MAX_ORGANIZATIONS: usize = 256;

const LABEL: &[u8] = b"codespace-agent grant v1\0";

/// The grant key. Its bytes live only inside ring's HMAC key; `Debug` prints nothing of them.
#[derive(Clone)]
pub struct GrantKey(hmac::Key);

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(..)")
    }
}

/// Why bytes are not a usable grant key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantKeyError {
    /// Fewer than [`MIN_GRANT_KEY_LEN`] bytes.
    #[error("grant key has {len} bytes; at least {MIN_GRANT_KEY_LEN} are required")]
    TooShort {
        /// How many bytes there were.
        len: usize,
    },
    /// The base64 text does not decode.
    #[error("grant key is not valid base64")]
    NotBase64,
}

impl GrantKey {
    /// A key from its bytes (at least [`MIN_GRANT_KEY_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, GrantKeyError> {
        if bytes.len() < MIN_GRANT_KEY_LEN {
            return Err(GrantKeyError::TooShort { len: bytes.len() });
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// A key from its base64 text (the `grant_key_put` form). The decoded bytes are wiped.
    pub fn from_base64(text: &str) -> Result<Self, GrantKeyError> {
        let bytes = zeroize::Zeroizing::new(
            B64.decode(text.trim())
                .map_err(|_| GrantKeyError::NotBase64)?,
        );
        Self::new(&bytes)
    }

    /// Signs claims.
    pub fn sign(&self, claims: GrantClaims) -> SignedGrant {
        let tag = hmac::sign(&self.0, &claims.canonical());
        SignedGrant {
            claims,
            mac: B64.encode(tag.as_ref()),
        }
    }

    /// Checks a grant's MAC (constant-time inside ring) and returns its claims.
    pub fn verify(&self, grant: SignedGrant) -> Result<GrantClaims, GrantError> {
        let mac = B64.decode(&grant.mac).map_err(|_| GrantError::Forged)?;
        hmac::verify(&self.0, &grant.claims.canonical(), &mac).map_err(|_| GrantError::Forged)?;
        Ok(grant.claims)
    }
}

/// Who the grant is for, as the host authenticated them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantPrincipal {
    /// Their login.
    pub login: String,
    /// Organizations they are a member of.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// When they authenticated (seconds since the Unix epoch).
    pub authenticated_at: i64,
}

/// What a grant states (everything but the MAC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    /// The principal; `None` for an anonymous grant.
    pub principal: Option<GrantPrincipal>,
    /// The port it opens.
    pub port: u16,
    /// The port's registry epoch when the grant was minted.
    pub epoch: u64,
    /// When it stops being valid (seconds since the Unix epoch).
    pub expires_at: i64,
}

/// Claims plus their MAC, as carried on the wire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    /// The claims.
    #[serde(flatten)]
    pub claims: GrantClaims,
    /// HMAC-SHA256 over [`GrantClaims::canonical`], base64.
    pub mac: String,
}

impl std::fmt::Debug for SignedGrant {
    // The MAC is a bearer credential for its lifetime; keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedGrant")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Why a grant is refused before any policy question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The grant is not well formed (missing fields, names too long, ...).
    #[error("malformed-grant")]
    Malformed,
    /// The MAC does not verify under the agent's grant key.
    #[error("forged")]
    Forged,
}

impl GrantClaims {
    /// The exact bytes the MAC covers (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(LABEL);
        match &self.principal {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                put_str(&mut out, &p.login);
                out.extend_from_slice(&len32(p.organizations.len()).to_be_bytes());
                for org in &p.organizations {
                    put_str(&mut out, org);
                }
                out.extend_from_slice(&p.authenticated_at.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out
    }

    /// Checks the bounds of the module docs: non-empty names of at most [`MAX_NAME`] bytes, at
    /// most [`MAX_ORGANIZATIONS`] organizations, port not 0.
    pub fn check_shape(&self) -> Result<(), GrantError> {
        if self.port == 0 {
            return Err(GrantError::Malformed);
        }
        if let Some(p) = &self.principal {
            let bad = |s: &str| s.is_empty() || s.len() > MAX_NAME;
            if bad(&p.login)
                || p.organizations.len() > MAX_ORGANIZATIONS
                || p.organizations.iter().any(|o| bad(o))
            {
                return Err(GrantError::Malformed);
            }
        }
        Ok(())
    }
}

/// Lengths are bounded by [`GrantClaims::check_shape`] long before they reach `u32::MAX`; a
/// longer one saturates, which only makes the MAC fail.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&len32(s.len()).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Parses the wire form of a grant (a JSON value) and checks its shape.
pub fn parse_grant(value: serde_json::Value) -> Result<SignedGrant, GrantError> {
    let grant: SignedGrant = serde_json::from_value(value).map_err(|_| GrantError::Malformed)?;
    grant.claims.check_shape()?;
    Ok(grant)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> GrantClaims {
        GrantClaims {
            principal: Some(GrantPrincipal {
                login: "mona".into(),
                organizations: vec!["octo".into()],
                authenticated_at: 1_764_118_800,
            }),
            port: 3000,
            epoch: 7,
            expires_at: 1_764_129_600,
        }
    }

    #[test]
    fn canonical_bytes_are_exactly_as_documented() {
        let mut want = b"codespace-agent grant v1\0".to_vec();
        want.push(1);
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(b"mona");
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 4]);
        want.extend_from_slice(b"octo");
        want.extend_from_slice(&1_764_118_800i64.to_be_bytes());
        want.extend_from_slice(&[0x0b, 0xb8]);
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&1_764_129_600i64.to_be_bytes());
        assert_eq!(claims().canonical(), want);
        let anon = GrantClaims {
            principal: None,
            ..claims()
        };
        assert_eq!(anon.canonical()[25], 0);
        assert_eq!(anon.canonical().len(), 25 + 1 + 2 + 8 + 8);
    }

    #[test]
    fn signed_grants_verify_and_any_change_is_forged() {
        let key = GrantKey::new(&[9; 32]).unwrap();
        let signed = key.sign(claims());
        let wire = serde_json::to_value(&signed).unwrap();
        assert_eq!(wire["principal"]["login"], "mona");
        let back = parse_grant(wire.clone()).unwrap();
        assert_eq!(key.verify(back).unwrap(), claims());
        for (field, value) in [
            ("port", serde_json::json!(3001)),
            ("epoch", serde_json::json!(8)),
            ("expires_at", serde_json::json!(1_764_129_601)),
            ("principal", serde_json::Value::Null),
        ] {
            let mut w = wire.clone();
            w[field] = value;
            let g = parse_grant(w).unwrap();
            assert_eq!(key.verify(g), Err(GrantError::Forged), "{field}");
        }
        // Moving bytes between login and organization changes the encoding.
        let mut w = wire.clone();
        w["principal"]["login"] = "monao".into();
        w["principal"]["organizations"] = serde_json::json!(["cto"]);
        assert_eq!(key.verify(parse_grant(w).unwrap()), Err(GrantError::Forged));
        let other = GrantKey::new(&[8; 32]).unwrap();
        assert_eq!(
            other.verify(parse_grant(wire).unwrap()),
            Err(GrantError::Forged)
        );
    }

    #[test]
    fn bad_shapes_and_keys_are_refused() {
        assert_eq!(
            GrantKey::new(&[1; 31]).unwrap_err(),
            GrantKeyError::TooShort { len: 31 }
        );
        assert_eq!(
            GrantKey::from_base64("!!").unwrap_err(),
            GrantKeyError::NotBase64
        );
        assert!(GrantKey::from_base64(&B64.encode([3u8; 32])).is_ok());
        assert!(!format!("{:?}", GrantKey::new(&[0x41; 32]).unwrap()).contains('A'));
        let key = GrantKey::new(&[9; 32]).unwrap();
        let signed = key.sign(claims());
        assert!(!format!("{signed:?}").contains(&signed.mac));
        let mut w = serde_json::to_value(&signed).unwrap();
        w["principal"]["login"] = "".into();
        assert_eq!(parse_grant(w).unwrap_err(), GrantError::Malformed);
        let mut w = serde_json::to_value(&signed).unwrap();
        w["port"] = 0.into();
        assert_eq!(parse_grant(w).unwrap_err(), GrantError::Malformed);
        assert_eq!(
            parse_grant(serde_json::json!({"port": 1})).unwrap_err(),
            GrantError::Malformed
        );
        let mut w = serde_json::to_value(&signed).unwrap();
        w["mac"] = "not base64!".into();
        assert_eq!(key.verify(parse_grant(w).unwrap()), Err(GrantError::Forged));
    }
}
