//! Sealing secrets end to end, from the host supervisor to the agent's boot-time key.
//!
//! At boot the agent makes an X25519 key pair ([`AgentKeyPair::generate`]) whose private half
//! never leaves its memory; the public half travels in the `welcome` frame. The host seals each
//! secret on its own, so every ciphertext stands alone:
//!
//! ```text
//! host                                              agent
//! e, E = ephemeral X25519 key pair (fresh per secret)
//! ss   = X25519(e, A)                               ss = X25519(a, E)
//! prk  = HKDF-Extract(salt = LABEL, ss)
//! key  = HKDF-Expand(prk, info = LABEL || E || A, 32)      (the same on both sides)
//! aad  = LABEL || len(name) u32 BE || name || generation u64 BE
//! ct   = ChaCha20-Poly1305(key, nonce = 0, aad, value)
//! send {name, generation, ephemeral_public: E, ciphertext: ct}  ─────▶  open, check replay
//! ```
//!
//! Invariants and why they hold:
//! - **Confidentiality and integrity**: only the holder of `a` derives `key`; any changed byte of
//!   `E`, `ct`, `name` or `generation` fails the Poly1305 tag ([`SealError::Unauthentic`]).
//! - **Binding**: the name and generation are associated data, so a ciphertext cannot be
//!   relabelled as another secret or another generation.
//! - **Nonce reuse is impossible**: each key is derived from a fresh ephemeral key, used for one
//!   message, so the all-zero nonce is never used twice under one key (as in HPKE's base mode).
//! - **Replay**: a valid ciphertext could still be sent again. [`ReplayGuard`] refuses a
//!   generation that is not newer than the last accepted one for that name, and an ephemeral
//!   key it has already seen.
//!
//! Crates: HKDF-SHA256, ChaCha20-Poly1305 and the host's ephemeral X25519 come from `ring`.
//! `ring` only offers single-use private keys (`agree_ephemeral` consumes them), and the agent's
//! key must serve every secret delivered during a boot, so the agent's side uses
//! `x25519-dalek`'s `StaticSecret` (zeroized on drop). Both are RFC 7748 X25519 and the tests
//! check that they agree.

mod value;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use value::{SecretValue, TokenValue, TokenValueError};

/// Domain-separation label, part of the HKDF salt and info and of the associated data. A new
/// sealing scheme gets a new label.
pub const LABEL: &[u8] = b"codespace-agent/seal/v1";

/// Largest sealed value accepted by [`AgentKeyPair::open`] (plaintext bytes). Policy limits
/// (48 KiB per secret) are checked later by the vault; this bound only keeps decryption small.
pub const MAX_SEALED_VALUE: usize = 1 << 20;

/// Errors from sealing and opening. None of them carries a value or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A public key is not 32 bytes, or X25519 produced the all-zero (non-contributory) secret.
    #[error("invalid X25519 public key")]
    InvalidPublicKey,
    /// `ephemeral_public` or `ciphertext` is not valid base64 or has an impossible length.
    #[error("sealed secret {name:?}: {field} is malformed")]
    Malformed {
        /// The secret's name as sent.
        name: String,
        /// Which field.
        field: &'static str,
    },
    /// The ciphertext is larger than [`MAX_SEALED_VALUE`].
    #[error("sealed secret {name:?} is larger than {max} bytes")]
    TooLarge {
        /// The secret's name as sent.
        name: String,
        /// The limit.
        max: usize,
    },
    /// Authentication failed: tampered ciphertext, another agent's key, or a name/generation that
    /// is not the one it was sealed with (the three cannot be told apart, by design).
    #[error("sealed secret {name:?} failed authentication (tampered, mis-bound or wrong key)")]
    Unauthentic {
        /// The secret's name as sent.
        name: String,
    },
    /// The generation is not newer than the last one accepted for this name.
    #[error("sealed secret {name:?}: generation {generation} is not newer than accepted generation {last}")]
    StaleGeneration {
        /// The secret's name.
        name: String,
        /// Generation of this delivery.
        generation: u64,
        /// Last accepted generation.
        last: u64,
    },
    /// The ephemeral public key was already used by an earlier delivery.
    #[error("sealed secret {name:?}: ephemeral key already used")]
    EphemeralReused {
        /// The secret's name.
        name: String,
    },
}

impl SealError {
    /// Stable kebab-case code for reports and the wire.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::Random => "internal",
            SealError::InvalidPublicKey => "invalid-public-key",
            SealError::Malformed { .. } => "malformed",
            SealError::TooLarge { .. } => "too-large",
            SealError::Unauthentic { .. } => "unauthentic",
            SealError::StaleGeneration { .. } | SealError::EphemeralReused { .. } => "replayed",
        }
    }
}

/// One sealed secret as it travels: `{name, generation, ephemeral_public, ciphertext}` with the
/// two byte fields in standard base64. `ciphertext` includes the 16-byte Poly1305 tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// Environment variable name (bound as associated data).
    pub name: String,
    /// Delivery generation, strictly increasing per name (bound as associated data).
    pub generation: u64,
    /// The host's one-use X25519 public key, base64.
    pub ephemeral_public: String,
    /// ChaCha20-Poly1305 ciphertext and tag, base64.
    pub ciphertext: String,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The agent's boot-time X25519 key pair. The private key lives only in this value's memory and
/// is zeroized when it is dropped; there is no way to export it.
pub struct AgentKeyPair {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl fmt::Debug for AgentKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeyPair")
            .field("public", &BASE64.encode(self.public))
            .finish_non_exhaustive()
    }
}

impl AgentKeyPair {
    /// Generates a fresh key pair from the system random number generator.
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| SealError::Random)?;
        let secret = x25519_dalek::StaticSecret::from(*bytes);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ok(Self { secret, public })
    }

    /// The public key to announce in `welcome`.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Authenticates and decrypts `sealed`. This checks integrity and binding only; replay is
    /// the caller's job ([`ReplayGuard`]), because only the caller knows what it accepted.
    pub fn open(&self, sealed: &SealedSecret) -> Result<SecretValue, SealError> {
        let name = &sealed.name;
        let ephemeral = decode_public(name, &sealed.ephemeral_public)?;
        // Base64 decodes 4 characters to 3 bytes: refuse an oversized text before allocating.
        if sealed.ciphertext.len() / 4 * 3 > MAX_SEALED_VALUE + aead::MAX_TAG_LEN + 3 {
            return Err(SealError::TooLarge {
                name: name.clone(),
                max: MAX_SEALED_VALUE,
            });
        }
        let mut buffer = BASE64
            .decode(&sealed.ciphertext)
            .map_err(|_| malformed(name, "ciphertext"))?;
        if buffer.len() < CHACHA20_POLY1305.tag_len() {
            return Err(malformed(name, "ciphertext"));
        }
        if buffer.len() > MAX_SEALED_VALUE + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::TooLarge {
                name: name.clone(),
                max: MAX_SEALED_VALUE,
            });
        }
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral));
        if !shared.was_contributory() {
            return Err(SealError::InvalidPublicKey);
        }
        let key = derive_key(shared.as_bytes(), &ephemeral, &self.public)?;
        let aad = associated_data(name, sealed.generation);
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| SealError::Unauthentic { name: name.clone() })?
            .len();
        buffer.truncate(plain_len);
        Ok(SecretValue::new(buffer))
    }
}

/// Host side: seals `value` for the agent whose public key is `agent_public`, bound to `name`
/// and `generation`.
pub fn seal(
    agent_public: &[u8; 32],
    name: &str,
    generation: u64,
    value: &[u8],
) -> Result<SealedSecret, SealError> {
    if value.len() > MAX_SEALED_VALUE {
        return Err(SealError::TooLarge {
            name: name.to_owned(),
            max: MAX_SEALED_VALUE,
        });
    }
    let rng = SystemRandom::new();
    let ephemeral = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| SealError::Random)?;
    let ephemeral_public: [u8; 32] = ephemeral
        .compute_public_key()
        .map_err(|_| SealError::Random)?
        .as_ref()
        .try_into()
        .map_err(|_| SealError::InvalidPublicKey)?;
    let peer = UnparsedPublicKey::new(&X25519, agent_public);
    // ring refuses a non-contributory (all-zero) shared secret itself.
    let key = agreement::agree_ephemeral(ephemeral, &peer, |shared| {
        derive_key(shared, &ephemeral_public, agent_public)
    })
    .map_err(|_| SealError::InvalidPublicKey)??;
    let mut buffer = Zeroizing::new(value.to_vec());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(associated_data(name, generation)),
        &mut *buffer,
    )
    .map_err(|_| SealError::TooLarge {
        name: name.to_owned(),
        max: MAX_SEALED_VALUE,
    })?;
    Ok(SealedSecret {
        name: name.to_owned(),
        generation,
        ephemeral_public: BASE64.encode(ephemeral_public),
        ciphertext: BASE64.encode(&*buffer),
    })
}

/// A delivery generation for now: microseconds since the Unix epoch, which grow from one
/// delivery to the next, across runs of the host's tools too (the agent refuses a generation
/// that does not: [`ReplayGuard`]).
pub fn generation_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(1)
}

/// Remembers what was accepted so a valid ciphertext cannot be delivered twice.
///
/// Generations are kept per name (compared case-insensitively, like secret names). Ephemeral keys
/// are kept in a bounded first-in-first-out set ([`ReplayGuard::MAX_EPHEMERAL_KEYS`]); forgetting
/// the oldest only weakens a second line of defence, since a replay with the same name and
/// generation is already stale and one with another name or generation fails authentication.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    generations: HashMap<String, u64>,
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl ReplayGuard {
    /// How many ephemeral keys are remembered.
    pub const MAX_EPHEMERAL_KEYS: usize = 65_536;

    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses a delivery whose generation is stale or whose ephemeral key was seen. Does not
    /// record anything: call [`ReplayGuard::record`] once the secret is accepted.
    pub fn check(&self, sealed: &SealedSecret) -> Result<(), SealError> {
        let ephemeral = decode_public(&sealed.name, &sealed.ephemeral_public)?;
        if self.seen.contains(&ephemeral) {
            return Err(SealError::EphemeralReused {
                name: sealed.name.clone(),
            });
        }
        if let Some(&last) = self.generations.get(&fold(&sealed.name)) {
            if sealed.generation <= last {
                return Err(SealError::StaleGeneration {
                    name: sealed.name.clone(),
                    generation: sealed.generation,
                    last,
                });
            }
        }
        Ok(())
    }

    /// Marks the ephemeral key as used (whether or not the secret is accepted afterwards).
    pub fn record_ephemeral(&mut self, sealed: &SealedSecret) {
        if let Ok(ephemeral) = decode_public(&sealed.name, &sealed.ephemeral_public) {
            if self.seen.insert(ephemeral) {
                self.order.push_back(ephemeral);
                if self.order.len() > Self::MAX_EPHEMERAL_KEYS {
                    if let Some(oldest) = self.order.pop_front() {
                        self.seen.remove(&oldest);
                    }
                }
            }
        }
    }

    /// Records an accepted delivery: its generation becomes the floor for the name.
    pub fn record(&mut self, sealed: &SealedSecret) {
        self.record_ephemeral(sealed);
        let last = self.generations.entry(fold(&sealed.name)).or_insert(0);
        *last = (*last).max(sealed.generation);
    }
}

fn fold(name: &str) -> String {
    name.to_ascii_uppercase()
}

fn malformed(name: &str, field: &'static str) -> SealError {
    SealError::Malformed {
        name: name.to_owned(),
        field,
    }
}

fn decode_public(name: &str, text: &str) -> Result<[u8; 32], SealError> {
    if text.len() > 64 {
        return Err(malformed(name, "ephemeral_public"));
    }
    BASE64
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| malformed(name, "ephemeral_public"))
}

fn associated_data(name: &str, generation: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + 4 + name.len() + 8);
    aad.extend_from_slice(LABEL);
    // Names are bounded by the frame size; saturate rather than wrap for absurd lengths.
    let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    aad.extend_from_slice(&len.to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

/// A length type so `hkdf::Okm::fill` can produce a ChaCha20-Poly1305 key.
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        CHACHA20_POLY1305.key_len()
    }
}

fn derive_key(
    shared: &[u8],
    ephemeral_public: &[u8; 32],
    agent_public: &[u8; 32],
) -> Result<LessSafeKey, SealError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, LABEL).extract(shared);
    let info = [LABEL, ephemeral_public.as_slice(), agent_public.as_slice()];
    let okm = prk.expand(&info, KeyLen).map_err(|_| SealError::Random)?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(key.as_mut()).map_err(|_| SealError::Random)?;
    let unbound =
        UnboundKey::new(&CHACHA20_POLY1305, key.as_ref()).map_err(|_| SealError::Random)?;
    Ok(LessSafeKey::new(unbound))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flip(text: &str, index: usize) -> String {
        let mut bytes = BASE64.decode(text).unwrap();
        bytes[index] ^= 0x01;
        BASE64.encode(bytes)
    }

    #[test]
    fn round_trip() {
        let agent = AgentKeyPair::generate().unwrap();
        for value in [
            &b""[..],
            b"x",
            b"multi\nline 'quoted' $HOME \\ \xff\x00 bytes",
        ] {
            let sealed = seal(&agent.public_key(), "API_KEY", 7, value).unwrap();
            assert_eq!(agent.open(&sealed).unwrap().expose(), value);
        }
    }

    #[test]
    fn serde_shape_and_debug_hide_the_ciphertext() {
        let agent = AgentKeyPair::generate().unwrap();
        let sealed = seal(&agent.public_key(), "A", 1, b"v").unwrap();
        let json = serde_json::to_value(&sealed).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["name", "generation", "ephemeral_public", "ciphertext"]
        );
        let back: SealedSecret = serde_json::from_value(json).unwrap();
        assert_eq!(agent.open(&back).unwrap().expose(), b"v");
        assert!(!format!("{sealed:?}").contains(&sealed.ciphertext));
        assert!(!format!("{agent:?}").contains("secret"));
    }

    #[test]
    fn tampering_with_any_field_fails() {
        let agent = AgentKeyPair::generate().unwrap();
        let sealed = seal(&agent.public_key(), "TOKEN", 3, b"value").unwrap();
        let ct_len = BASE64.decode(&sealed.ciphertext).unwrap().len();
        for index in [0, ct_len - 1] {
            let mut bad = sealed.clone();
            bad.ciphertext = flip(&sealed.ciphertext, index);
            assert_eq!(agent.open(&bad).unwrap_err().code(), "unauthentic");
        }
        let mut bad = sealed.clone();
        bad.ephemeral_public = flip(&sealed.ephemeral_public, 5);
        assert!(matches!(
            agent.open(&bad).unwrap_err(),
            SealError::Unauthentic { .. } | SealError::InvalidPublicKey
        ));
        let mut bad = sealed.clone();
        bad.name = "TOKEM".into();
        assert_eq!(agent.open(&bad).unwrap_err().code(), "unauthentic");
        let mut bad = sealed.clone();
        bad.generation = 4;
        assert_eq!(agent.open(&bad).unwrap_err().code(), "unauthentic");
        let mut bad = sealed;
        bad.ciphertext = BASE64.encode([0u8; 15]);
        assert_eq!(agent.open(&bad).unwrap_err().code(), "malformed");
    }

    #[test]
    fn swapped_names_and_generations_fail() {
        let agent = AgentKeyPair::generate().unwrap();
        let a = seal(&agent.public_key(), "A", 1, b"alpha").unwrap();
        let b = seal(&agent.public_key(), "B", 2, b"beta").unwrap();
        let mut swapped = a.clone();
        swapped.name = b.name.clone();
        swapped.generation = b.generation;
        assert!(matches!(
            agent.open(&swapped),
            Err(SealError::Unauthentic { .. })
        ));
        let mut swapped = b;
        swapped.ciphertext = a.ciphertext;
        assert!(matches!(
            agent.open(&swapped),
            Err(SealError::Unauthentic { .. })
        ));
    }

    #[test]
    fn another_agents_key_cannot_open() {
        let agent = AgentKeyPair::generate().unwrap();
        let other = AgentKeyPair::generate().unwrap();
        let sealed = seal(&other.public_key(), "A", 1, b"v").unwrap();
        assert!(matches!(
            agent.open(&sealed),
            Err(SealError::Unauthentic { .. })
        ));
    }

    #[test]
    fn low_order_keys_are_refused() {
        let agent = AgentKeyPair::generate().unwrap();
        assert_eq!(
            seal(&[0; 32], "A", 1, b"v").unwrap_err(),
            SealError::InvalidPublicKey
        );
        let mut sealed = seal(&agent.public_key(), "A", 1, b"v").unwrap();
        sealed.ephemeral_public = BASE64.encode([0u8; 32]);
        assert_eq!(
            agent.open(&sealed).unwrap_err(),
            SealError::InvalidPublicKey
        );
        sealed.ephemeral_public = BASE64.encode([1u8; 31]);
        assert_eq!(agent.open(&sealed).unwrap_err().code(), "malformed");
    }

    #[test]
    fn replay_guard_refuses_stale_generations_and_reused_keys() {
        let agent = AgentKeyPair::generate().unwrap();
        let mut guard = ReplayGuard::new();
        let first = seal(&agent.public_key(), "Api_Key", 5, b"v1").unwrap();
        guard.check(&first).unwrap();
        guard.record(&first);
        // The very same ciphertext again.
        assert!(matches!(
            guard.check(&first),
            Err(SealError::EphemeralReused { .. })
        ));
        // A fresh sealing at an old or equal generation, in any case of the name.
        for generation in [4, 5] {
            let stale = seal(&agent.public_key(), "API_KEY", generation, b"v0").unwrap();
            assert!(matches!(
                guard.check(&stale),
                Err(SealError::StaleGeneration { last: 5, .. })
            ));
        }
        let newer = seal(&agent.public_key(), "API_KEY", 6, b"v2").unwrap();
        guard.check(&newer).unwrap();
        // Another name has its own generations.
        guard
            .check(&seal(&agent.public_key(), "OTHER", 1, b"x").unwrap())
            .unwrap();
    }

    #[test]
    fn replay_guard_forgets_oldest_keys_beyond_its_bound() {
        let mut guard = ReplayGuard::new();
        let sealed = |i: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            SealedSecret {
                name: format!("N{i}"),
                generation: 1,
                ephemeral_public: BASE64.encode(key),
                ciphertext: String::new(),
            }
        };
        let max = u32::try_from(ReplayGuard::MAX_EPHEMERAL_KEYS).unwrap();
        for i in 0..=max {
            guard.record_ephemeral(&sealed(i));
        }
        assert_eq!(guard.seen.len(), ReplayGuard::MAX_EPHEMERAL_KEYS);
        assert!(guard.check(&sealed(0)).is_ok());
        assert!(guard.check(&sealed(max)).is_err());
    }

    #[test]
    fn oversized_ciphertext_is_refused_before_decoding() {
        let agent = AgentKeyPair::generate().unwrap();
        let mut sealed = seal(&agent.public_key(), "A", 1, b"v").unwrap();
        sealed.ciphertext = "A".repeat(MAX_SEALED_VALUE * 2);
        assert_eq!(agent.open(&sealed).unwrap_err().code(), "too-large");
    }
}
