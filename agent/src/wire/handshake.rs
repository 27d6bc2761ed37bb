//! The handshake as a sans-I/O state machine, for both ends.
//!
//! ```text
//!   host                                   agent
//!   HostStart ──hello{versions,role,nonce}──▶ AwaitHello
//!   AwaitWelcome ◀──welcome{version,..,nonce,auth}── (chooses the newest common version)
//!     auth = hmac-sha256:
//!   AwaitOk ──auth{proof_h}──────────────────▶ AwaitAuth   (verifies proof_h)
//!   Established ◀──ok{proof_a}─────────────── Established (host verifies proof_a)
//!     auth = none:
//!   AwaitOk ◀──ok───────────────────────────── Established
//! ```
//!
//! `proof_h = HMAC-SHA256(key, "codespace-agent v1 host" ‖ len‖hello ‖ len‖welcome)` over the
//! exact payload bytes that crossed the wire; `proof_a` adds the auth payload and a different
//! label, so the agent proves the key too and a reflected proof is useless. Both nonces make every
//! transcript unique. Every state's `handle` consumes `self`: a state that failed or finished cannot
//! be used again, and the data of a later state (the agreed version, the key) exists only there.
//! Any frame other than the expected one ends the handshake with a [`HandshakeError`] whose
//! [`ErrorCode`] the caller sends in an error frame before closing.
//!
//! A `forward` hello may instead carry a single-use ticket and be followed at once by its
//! `auth`: one round trip instead of two. That variant, and why it is as safe, is
//! [`super::ticket`]'s.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::hmac;

use super::frame::parse_payload;
use super::message::{
    to_object, Auth, AuthScheme, ErrorCode, ErrorFrame, ForwardHello, HandshakeOk, Hello, Role,
    Welcome, SUPPORTED_VERSIONS,
};
use super::ticket::{AwaitTicketProof, ForwardTicket};

/// Minimum shared key length in bytes.
pub const MIN_KEY_LEN: usize = 32;

const HOST_LABEL: &[u8] = b"codespace-agent v1 host";
pub(super) const AGENT_LABEL: &[u8] = b"codespace-agent v1 agent";

/// The shared key. Its bytes are kept only inside ring's HMAC key; `Debug` shows nothing.
#[derive(Clone)]
pub struct SharedKey(hmac::Key);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// Why bytes are not a usable shared key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Fewer than [`MIN_KEY_LEN`] bytes.
    #[error("shared key has {len} bytes; at least {MIN_KEY_LEN} are required")]
    TooShort {
        /// How many bytes there were.
        len: usize,
    },
}

impl SharedKey {
    /// Builds a key from its bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: bytes.len() });
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    pub(super) fn sign(&self, label: &[u8], parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label);
        for p in parts {
            ctx.update(&transcript_len(p));
            ctx.update(p);
        }
        ctx.sign()
    }

    pub(super) fn verify(&self, label: &[u8], parts: &[&[u8]], proof: &[u8]) -> bool {
        let mut msg = label.to_vec();
        for p in parts {
            msg.extend_from_slice(&transcript_len(p));
            msg.extend_from_slice(p);
        }
        // Constant-time comparison inside ring.
        hmac::verify(&self.0, &msg, proof).is_ok()
    }
}

fn transcript_len(p: &[u8]) -> [u8; 8] {
    (p.len() as u64).to_be_bytes()
}

/// A failed handshake: the code to send in the error frame and a message for the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handshake failed ({code}): {message}")]
pub struct HandshakeError {
    /// Wire code.
    pub code: ErrorCode,
    /// Explanation (no secrets).
    pub message: String,
}

impl HandshakeError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error frame's payload for this failure.
    pub fn frame_payload(&self) -> Vec<u8> {
        let frame = ErrorFrame::new(super::message::WireError::new(
            self.code,
            self.message.clone(),
        ));
        serde_json::to_vec(&to_object(&frame)).unwrap_or_default()
    }
}

pub(super) fn payload_of<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    // Straight to bytes: the same fields in the same order as through a `Map`, without one.
    serde_json::to_vec(msg).unwrap_or_default()
}

/// Just the `type` member of a frame (every other member is skipped without allocating).
#[derive(serde::Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Reads a frame that must be `expected`; an error frame from the peer is reported as such.
pub(super) fn expect<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    expected: &str,
) -> Result<T, HandshakeError> {
    // The usual case, an object of the expected type, is parsed once, straight into `T`; all
    // else takes the slower path below, which names what is wrong.
    let is_object = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if is_object {
        if let Ok(Kind { kind: Some(kind) }) = serde_json::from_slice::<Kind<'_>>(payload) {
            if kind == expected {
                return serde_json::from_slice(payload).map_err(|e| {
                    HandshakeError::new(
                        ErrorCode::ProtocolViolation,
                        format!("malformed `{expected}`: {e}"),
                    )
                });
            }
        }
    }
    let object = parse_payload(payload)
        .map_err(|e| HandshakeError::new(ErrorCode::InvalidFrame, e.to_string()))?;
    let kind = object.get("type").and_then(|v| v.as_str()).unwrap_or("");
    if kind == "error" && expected != "error" {
        let remote: Option<ErrorFrame> = serde_json::from_value(object.clone().into()).ok();
        return Err(match remote {
            Some(f) => {
                HandshakeError::new(f.error.code, format!("peer refused: {}", f.error.message))
            }
            None => HandshakeError::new(
                ErrorCode::ProtocolViolation,
                "peer sent a malformed error frame",
            ),
        });
    }
    if kind != expected {
        return Err(HandshakeError::new(
            ErrorCode::ProtocolViolation,
            format!("expected `{expected}` during the handshake"),
        ));
    }
    serde_json::from_value(object.into()).map_err(|e| {
        HandshakeError::new(
            ErrorCode::ProtocolViolation,
            format!("malformed `{expected}`: {e}"),
        )
    })
}

pub(super) fn decode_b64(field: &str, s: &str) -> Result<Vec<u8>, HandshakeError> {
    B64.decode(s).map_err(|_| {
        HandshakeError::new(
            ErrorCode::ProtocolViolation,
            format!("`{field}` is not base64"),
        )
    })
}

// ---------------------------------------------------------------- agent side

/// What the agent announces about itself in `welcome`.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// Stable agent id.
    pub agent_id: String,
    /// Kernel boot id.
    pub boot_id: String,
    /// Capability list.
    pub capabilities: Vec<String>,
    /// X25519 public key for sealed secrets.
    pub public_key: [u8; 32],
}

/// Agent state 1: waiting for the host's `hello`.
#[derive(Debug)]
pub struct AwaitHello {
    identity: AgentIdentity,
    key: Option<SharedKey>,
}

/// Agent state 2 (with a shared key): waiting for `auth`.
#[derive(Debug)]
pub struct AwaitAuth {
    key: SharedKey,
    hello: Vec<u8>,
    welcome: Vec<u8>,
    agreed: Agreed,
}

/// What both ends agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// Protocol version.
    pub version: u32,
    /// Connection role.
    pub role: Role,
    /// The hello's `forward` member (port, grant, ticket), parsed with the hello, for the
    /// forwarder to act on once the connection is authenticated.
    pub forward: Option<ForwardHello>,
}

/// The agent's next step after `hello`.
#[derive(Debug)]
pub enum AfterHello {
    /// Send `welcome`, then wait for `auth`.
    AwaitAuth {
        /// Next state.
        state: AwaitAuth,
        /// `welcome` payload to send.
        welcome: Vec<u8>,
    },
    /// A `forward` hello with a ticket: read the `auth` that follows it (no `welcome` first;
    /// see [`super::ticket`]).
    TicketProof {
        /// Next state.
        state: AwaitTicketProof,
    },
    /// Send `welcome` and `ok`; the connection is established.
    Established {
        /// What was agreed.
        agreed: Agreed,
        /// `welcome` payload to send.
        welcome: Vec<u8>,
        /// `ok` payload to send.
        ok: Vec<u8>,
    },
}

impl AwaitHello {
    /// Starts the agent side; `key` makes authentication mandatory.
    pub fn new(identity: AgentIdentity, key: Option<SharedKey>) -> Self {
        Self { identity, key }
    }

    /// Handles the first frame; `nonce` is fresh randomness from the caller.
    pub fn handle(self, payload: &[u8], nonce: [u8; 32]) -> Result<AfterHello, HandshakeError> {
        let hello: Hello = expect(payload, "hello")?;
        let version = SUPPORTED_VERSIONS
            .iter()
            .rev()
            .find(|v| hello.versions.contains(v))
            .copied()
            .ok_or_else(|| {
                HandshakeError::new(
                    ErrorCode::VersionMismatch,
                    format!("no common protocol version: agent speaks {SUPPORTED_VERSIONS:?}, host offered {:?}", hello.versions),
                )
            })?;
        decode_b64("nonce", &hello.nonce)?;
        let ticket = hello
            .forward
            .as_ref()
            .and_then(|f| f.ticket.as_deref())
            .map(ForwardTicket::from_base64)
            .transpose()?;
        let agreed = Agreed {
            version,
            role: hello.role,
            forward: hello.forward,
        };
        let welcome = Welcome {
            kind: "welcome".into(),
            version,
            agent_id: self.identity.agent_id,
            boot_id: self.identity.boot_id,
            capabilities: self.identity.capabilities,
            public_key: B64.encode(self.identity.public_key),
            nonce: B64.encode(nonce),
            auth: if self.key.is_some() {
                AuthScheme::HmacSha256
            } else {
                AuthScheme::None
            },
        };
        let welcome = payload_of(&welcome);
        if let Some(ticket) = ticket {
            if hello.role != Role::Forward {
                return Err(HandshakeError::new(
                    ErrorCode::ProtocolViolation,
                    "only a `forward` hello may carry a ticket",
                ));
            }
            let key = self.key.ok_or_else(|| {
                HandshakeError::new(
                    ErrorCode::Unauthorized,
                    "this agent has no shared key, so it accepts no forward tickets",
                )
            })?;
            return Ok(AfterHello::TicketProof {
                state: AwaitTicketProof::new(key, payload.to_vec(), welcome, agreed, ticket),
            });
        }
        Ok(match self.key {
            Some(key) => AfterHello::AwaitAuth {
                state: AwaitAuth {
                    key,
                    hello: payload.to_vec(),
                    welcome: welcome.clone(),
                    agreed,
                },
                welcome,
            },
            None => AfterHello::Established {
                agreed,
                welcome,
                ok: payload_of(&HandshakeOk {
                    kind: "ok".into(),
                    proof: None,
                }),
            },
        })
    }
}

impl AwaitAuth {
    /// Checks the host's proof; on success returns the `ok` payload to send.
    pub fn handle(self, payload: &[u8]) -> Result<(Agreed, Vec<u8>), HandshakeError> {
        let ok = answer_auth(
            &self.key,
            payload,
            (HOST_LABEL, &[&self.hello, &self.welcome]),
            [&self.hello, &self.welcome],
            "authentication failed",
        )?;
        Ok((self.agreed, ok))
    }
}

/// The host's `auth` payload: `key`'s HMAC under `label` over `parts`. The full handshake signs
/// `hello ‖ welcome`, a forward ticket's flight the hello alone ([`super::ticket`]).
pub(super) fn auth_payload(key: &SharedKey, label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    payload_of(&Auth {
        kind: "auth".into(),
        proof: B64.encode(key.sign(label, parts).as_ref()),
    })
}

/// Checks a host `auth` payload, whose proof must be `key`'s HMAC under `expected.0` over the
/// parts `expected.1`, and builds the agent's `ok` payload, whose proof covers `hello ‖ welcome
/// ‖ auth`. A wrong proof is `Unauthorized`, with `refusal` as the message. Both the full
/// handshake and the forward-ticket hello ([`super::ticket`]) answer `auth` through here.
pub(super) fn answer_auth(
    key: &SharedKey,
    payload: &[u8],
    expected: (&[u8], &[&[u8]]),
    [hello, welcome]: [&[u8]; 2],
    refusal: &str,
) -> Result<Vec<u8>, HandshakeError> {
    let auth: Auth = expect(payload, "auth")?;
    let proof = decode_b64("proof", &auth.proof)?;
    let (label, signed) = expected;
    if !key.verify(label, signed, &proof) {
        return Err(HandshakeError::new(ErrorCode::Unauthorized, refusal));
    }
    let agent_proof = key.sign(AGENT_LABEL, &[hello, welcome, payload]);
    Ok(payload_of(&HandshakeOk {
        kind: "ok".into(),
        proof: Some(B64.encode(agent_proof.as_ref())),
    }))
}

// ----------------------------------------------------------------- host side

/// Host state 1: `hello` sent, waiting for `welcome`.
#[derive(Debug)]
pub struct AwaitWelcome {
    key: Option<SharedKey>,
    hello: Vec<u8>,
    role: Role,
}

/// Host state 2: waiting for `ok`.
#[derive(Debug)]
pub struct AwaitOk {
    pub(super) expect_proof: Option<(SharedKey, Vec<Vec<u8>>)>,
    pub(super) info: AgentInfo,
}

/// What the host learned about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Agreed version.
    pub version: u32,
    /// Agent id.
    pub agent_id: String,
    /// Boot id.
    pub boot_id: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Agent's X25519 public key.
    pub public_key: [u8; 32],
    /// Whether both sides proved the shared key.
    pub authenticated: bool,
    /// The connection's role.
    pub role: Role,
}

/// Starts the host side: returns the state and the `hello` payload to send.
pub fn host_start(role: Role, key: Option<SharedKey>, nonce: [u8; 32]) -> (AwaitWelcome, Vec<u8>) {
    start_with(role, None, key, nonce)
}

/// Starts the host side of a `forward` connection: the hello names the port and carries the
/// grant (inside the transcript the HMAC proof covers).
pub fn host_start_forward(
    forward: ForwardHello,
    key: Option<SharedKey>,
    nonce: [u8; 32],
) -> (AwaitWelcome, Vec<u8>) {
    start_with(Role::Forward, Some(forward), key, nonce)
}

pub(super) fn start_with(
    role: Role,
    forward: Option<ForwardHello>,
    key: Option<SharedKey>,
    nonce: [u8; 32],
) -> (AwaitWelcome, Vec<u8>) {
    let hello = Hello {
        kind: "hello".into(),
        versions: SUPPORTED_VERSIONS.to_vec(),
        role,
        nonce: B64.encode(nonce),
        forward,
    };
    let hello = payload_of(&hello);
    (
        AwaitWelcome {
            key,
            hello: hello.clone(),
            role,
        },
        hello,
    )
}

/// Reads a `welcome`: what it says about the agent, and the authentication it asks for.
pub(super) fn parse_welcome(
    payload: &[u8],
    role: Role,
) -> Result<(AgentInfo, AuthScheme), HandshakeError> {
    let welcome: Welcome = expect(payload, "welcome")?;
    if !SUPPORTED_VERSIONS.contains(&welcome.version) {
        return Err(HandshakeError::new(
            ErrorCode::VersionMismatch,
            format!(
                "agent chose version {} which this host does not speak",
                welcome.version
            ),
        ));
    }
    decode_b64("nonce", &welcome.nonce)?;
    let pk = decode_b64("public_key", &welcome.public_key)?;
    let public_key: [u8; 32] = pk.try_into().map_err(|_| {
        HandshakeError::new(ErrorCode::ProtocolViolation, "`public_key` is not 32 bytes")
    })?;
    let info = AgentInfo {
        version: welcome.version,
        agent_id: welcome.agent_id,
        boot_id: welcome.boot_id,
        capabilities: welcome.capabilities,
        public_key,
        authenticated: false,
        role,
    };
    Ok((info, welcome.auth))
}

impl AwaitWelcome {
    /// Handles `welcome`; returns the next state and the `auth` payload to send, if any.
    pub fn handle(self, payload: &[u8]) -> Result<(AwaitOk, Option<Vec<u8>>), HandshakeError> {
        let (mut info, auth) = parse_welcome(payload, self.role)?;
        match (auth, self.key) {
            (AuthScheme::HmacSha256, Some(key)) => {
                let auth = auth_payload(&key, HOST_LABEL, &[&self.hello, payload]);
                info.authenticated = true;
                let transcript = vec![self.hello, payload.to_vec(), auth.clone()];
                Ok((
                    AwaitOk {
                        expect_proof: Some((key, transcript)),
                        info,
                    },
                    Some(auth),
                ))
            }
            (AuthScheme::HmacSha256, None) => Err(HandshakeError::new(
                ErrorCode::Unauthorized,
                "the agent requires a shared key and none was given",
            )),
            // A host that holds a key wants the agent to prove it too; an agent that does not
            // ask for authentication might be an impostor.
            (AuthScheme::None, Some(_)) => Err(HandshakeError::new(
                ErrorCode::Unauthorized,
                "a shared key was given but the agent does not authenticate",
            )),
            (AuthScheme::None, None) => Ok((
                AwaitOk {
                    expect_proof: None,
                    info,
                },
                None,
            )),
        }
    }
}

impl AwaitOk {
    /// Handles `ok`; on success the connection is established.
    pub fn handle(self, payload: &[u8]) -> Result<AgentInfo, HandshakeError> {
        let ok: HandshakeOk = expect(payload, "ok")?;
        if let Some((key, transcript)) = self.expect_proof {
            let proof = ok.proof.ok_or_else(|| {
                HandshakeError::new(ErrorCode::Unauthorized, "agent sent no proof")
            })?;
            let proof = decode_b64("proof", &proof)?;
            let parts: Vec<&[u8]> = transcript.iter().map(Vec::as_slice).collect();
            if !key.verify(AGENT_LABEL, &parts, &proof) {
                return Err(HandshakeError::new(
                    ErrorCode::Unauthorized,
                    "the agent's proof is wrong",
                ));
            }
        }
        Ok(self.info)
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
pub(crate) mod tests;
