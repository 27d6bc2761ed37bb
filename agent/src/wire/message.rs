//! Messages of the control channel, above the frame layer.
//!
//! ```text
//! handshake   host: {"type":"hello","versions":[1],"role":"control","nonce":B64}
//!                   role "forward" adds "forward":{"port":3000,"grant":{..}} (see wire::grant)
//!                   and may add "ticket":B64 inside it, then "auth" follows at once (wire::ticket)
//!             agent: {"type":"welcome","version":1,"agent_id":..,"boot_id":..,"capabilities":[..],
//!                     "public_key":B64,"nonce":B64,"auth":"hmac-sha256"|"none"}
//!             host: {"type":"auth","proof":B64}              (only when auth is hmac-sha256)
//!             agent: {"type":"ok","proof":B64?}
//! requests    {"id":7,"type":"status","timeout_ms":5000, ..fields}
//! responses   {"id":7,"ok":{..}}  |  {"id":7,"error":{"code":"unsupported","message":".."}}
//! events      {"event":"heartbeat", ..fields}
//! fatal       {"type":"error","error":{"code":..,"message":..}}  then the agent closes
//! ```
//!
//! Error codes are the closed set [`ErrorCode`]; every internal error is mapped to one of them by
//! an exhaustive `match` at its source, and the message is written for the peer (never `{:?}` of
//! an internal value, never a secret).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Protocol versions this build speaks, newest last.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// The fixed set of error codes on the wire (version 1). New codes need a new protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame could not be decoded (zero length, too large, not a JSON object). Fatal.
    InvalidFrame,
    /// A frame arrived that is not allowed at this point of the handshake. Fatal.
    ProtocolViolation,
    /// No protocol version in common. Fatal.
    VersionMismatch,
    /// Authentication missing or wrong. Fatal.
    Unauthorized,
    /// The request lacks `id` or `type`, or a field has the wrong shape.
    BadRequest,
    /// Unknown request `type` or connection role.
    Unsupported,
    /// The request is well formed but a value is refused (bad secret name, expired token ...).
    InvalidArgument,
    /// The request's deadline (or the handshake's) passed.
    Timeout,
    /// Too many connections or requests in flight; retry later.
    Busy,
    /// The feature is not available on this agent (not configured or not built).
    Unavailable,
    /// The agent is draining for shutdown.
    ShuttingDown,
    /// A failure inside the agent; details are in the agent's log.
    Internal,
}

impl ErrorCode {
    /// The code's wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFrame => "invalid_frame",
            Self::ProtocolViolation => "protocol_violation",
            Self::VersionMismatch => "version_mismatch",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::Unsupported => "unsupported",
            Self::InvalidArgument => "invalid_argument",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}` as carried by responses and fatal error frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation for the peer.
    pub message: String,
}

impl WireError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error with every value the peer sent taken out of its message
    /// ([`without_values`]): what a refusal says in logs and in the audit trail.
    pub fn without_values(mut self) -> Self {
        self.message = without_values(&self.message);
        self
    }
}

/// Where a parser's message quotes the value it was given rather than a name it knows.
const VALUE_ECHOES: [&str; 6] = [
    "unknown field ",
    "unknown variant ",
    "invalid type: string ",
    "invalid value: string ",
    "got ",
    "duplicate field ",
];

/// `message` with the values a peer sent replaced by `…`: serde's "unknown field `X`",
/// "unknown variant `X`", "invalid type: string \"X\"", "invalid value: string \"X\"" and a
/// policy's "got \"X\"" quote the bad input, which may be a token sent in the wrong field.
/// The names and expectations around them stay ("expected one of `private`, `org`").
pub fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for echo in VALUE_ECHOES {
            let Some(after) = rest.strip_prefix(echo) else {
                continue;
            };
            let quote = match after.chars().next() {
                Some(q @ ('`' | '"')) => q,
                _ => continue,
            };
            // The quoted value ends at the last matching quote before the next ", " or the
            // end (a value may itself contain the quote character).
            let body = &after[1..];
            let end = body.find(", ").map_or(body.len(), |i| i).min(body.len());
            let close = body[..end].rfind(quote).unwrap_or(end);
            out.push_str(echo);
            out.push(quote);
            out.push('…');
            out.push(quote);
            rest = body.get(close + 1..).unwrap_or("");
            continue 'scan;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Role a host connection asks for in `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Requests, responses and events.
    Control,
    /// A port-forwarding stream (served by a later version of the agent).
    Forward,
}

/// Authentication scheme announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuthScheme {
    /// No shared key: trust rests on the transport (vsock from CID 2 on a privileged port).
    None,
    /// HMAC-SHA256 over the transcript with the shared key, both directions.
    HmacSha256,
}

/// The host's opening frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always `"hello"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Protocol versions the host speaks.
    pub versions: Vec<u32>,
    /// What the connection is for.
    pub role: Role,
    /// Host nonce, base64 (freshness of the agent's proof).
    pub nonce: String,
    /// With role `forward`: the port and the grant (absent on control connections, so hellos
    /// of hosts that do not forward are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardHello>,
}

/// What a `forward` hello asks for: a port and the grant that opens it.
///
/// The grant stays a raw JSON value here so that a malformed one is refused by the forwarder
/// with its own reason (`malformed-grant`) after authentication, not as a broken hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardHello {
    /// The port in the guest.
    pub port: u16,
    /// The signed grant ([`crate::wire::grant`]).
    pub grant: Value,
    /// A single-use forward ticket, base64 ([`crate::wire::ticket`]): the host proves the
    /// shared key in its first flight (an `auth` frame right behind this hello) instead of
    /// answering the agent's `welcome`. Absent: the full handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// The agent's answer to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Always `"welcome"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The chosen version.
    pub version: u32,
    /// Stable identity of this agent (the VM's machine id or the configured id).
    pub agent_id: String,
    /// Kernel boot id: changes at every boot, so the host sees restarts.
    pub boot_id: String,
    /// Request types and features this agent serves.
    pub capabilities: Vec<String>,
    /// The agent's boot-time X25519 public key, base64 (secrets are sealed to it).
    pub public_key: String,
    /// Agent nonce, base64.
    pub nonce: String,
    /// Whether the host must prove the shared key.
    pub auth: AuthScheme,
}

/// The host's proof of the shared key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Always `"auth"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HMAC-SHA256, base64.
    pub proof: String,
}

/// The agent's final handshake frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeOk {
    /// Always `"ok"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent's own proof of the shared key, base64, when auth is `hmac-sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// A fatal error frame (handshake failures, undecodable frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub error: WireError,
}

impl ErrorFrame {
    /// Builds the frame.
    pub fn new(error: WireError) -> Self {
        Self {
            kind: "error".into(),
            error,
        }
    }
}

/// Request id: chosen by the host, echoed in the response.
pub type RequestId = u64;

/// A parsed request envelope; the type-specific fields stay in `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Correlates the response.
    pub id: RequestId,
    /// Request type, e.g. `status`.
    pub kind: String,
    /// Deadline asked for by the host.
    pub timeout_ms: Option<u64>,
    /// The remaining fields.
    pub fields: Map<String, Value>,
}

/// Why an object is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestParseError {
    /// `id` missing or not an unsigned integer.
    #[error("request has no numeric `id`")]
    MissingId,
    /// `type` missing or not a string.
    #[error("request {id} has no string `type`")]
    MissingType {
        /// The request's id.
        id: RequestId,
    },
    /// `timeout_ms` is not an unsigned integer.
    #[error("request {id}: `timeout_ms` must be a non-negative integer")]
    BadTimeout {
        /// The request's id.
        id: RequestId,
    },
}

impl Request {
    /// Splits an object into the envelope and the type-specific fields.
    pub fn parse(mut object: Map<String, Value>) -> Result<Self, RequestParseError> {
        let id = object
            .remove("id")
            .and_then(|v| v.as_u64())
            .ok_or(RequestParseError::MissingId)?;
        let kind = match object.remove("type") {
            Some(Value::String(s)) => s,
            _ => return Err(RequestParseError::MissingType { id }),
        };
        let timeout_ms = match object.remove("timeout_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or(RequestParseError::BadTimeout { id })?),
        };
        Ok(Self {
            id,
            kind,
            timeout_ms,
            fields: object,
        })
    }

    /// The request as a JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("type".into(), self.kind.clone().into());
        if let Some(t) = self.timeout_ms {
            m.insert("timeout_ms".into(), t.into());
        }
        for (k, v) in &self.fields {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        m
    }
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id (`None` when the request had none we could read).
    pub id: Option<RequestId>,
    /// The result.
    pub result: Result<Value, WireError>,
}

impl Response {
    /// The response as a JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), self.id.map_or(Value::Null, Value::from));
        match &self.result {
            Ok(v) => {
                m.insert("ok".into(), v.clone());
            }
            Err(e) => {
                m.insert("error".into(), to_value(e));
            }
        }
        m
    }

    /// Reads a response object (host side); `None` if the object is not a response.
    pub fn from_object(object: &Map<String, Value>) -> Option<Self> {
        let id = match object.get("id")? {
            Value::Null => None,
            v => Some(v.as_u64()?),
        };
        if let Some(ok) = object.get("ok") {
            return Some(Self {
                id,
                result: Ok(ok.clone()),
            });
        }
        let err: WireError = serde_json::from_value(object.get("error")?.clone()).ok()?;
        Some(Self {
            id,
            result: Err(err),
        })
    }
}

/// An event pushed by the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name, e.g. `heartbeat`, `token_expiring`.
    pub name: String,
    /// The event's fields.
    pub fields: Map<String, Value>,
}

impl Event {
    /// Builds an event from a name and an object of fields (non-objects are put under `data`).
    pub fn new(name: impl Into<String>, fields: Value) -> Self {
        let fields = match fields {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("data".into(), other);
                m
            }
        };
        Self {
            name: name.into(),
            fields,
        }
    }

    /// The event as a JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), self.name.clone().into());
        for (k, v) in &self.fields {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        m
    }

    /// Reads an event object (host side); `None` if the object is not an event.
    pub fn from_object(object: &Map<String, Value>) -> Option<Self> {
        let name = object.get("event")?.as_str()?.to_owned();
        let mut fields = object.clone();
        fields.remove("event");
        Some(Self { name, fields })
    }
}

/// Serialises a message struct into its JSON object.
pub fn to_object<T: Serialize>(msg: &T) -> Map<String, Value> {
    match serde_json::to_value(msg) {
        Ok(Value::Object(m)) => m,
        // Our message types are all structs of plain fields; they serialise to objects.
        _ => Map::new(),
    }
}

fn to_value<T: Serialize>(msg: &T) -> Value {
    Value::Object(to_object(msg))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn values_the_peer_sent_are_taken_out_of_messages() {
        for (message, clean) in [
            (
                "token_put: unknown field `ghs_x`, expected one of `repositories`, `denied`",
                "token_put: unknown field `…`, expected one of `repositories`, `denied`",
            ),
            (
                "ports_visibility: invalid type: string \"s3cr3t\", expected i64",
                "ports_visibility: invalid type: string \"…\", expected i64",
            ),
            (
                "unknown variant `a`b`, expected one of `private`, `org`",
                "unknown variant `…`, expected one of `private`, `org`",
            ),
            (
                "expected \"owner/name\", got \"s3cr3t\"",
                "expected \"owner/name\", got \"…\"",
            ),
            ("missing field `secrets`", "missing field `secrets`"),
            ("got nothing", "got nothing"),
            ("unknown field `unterminated", "unknown field `…`"),
            ("", ""),
        ] {
            assert_eq!(without_values(message), clean, "{message}");
        }
    }

    #[test]
    fn request_envelope_is_split_from_fields() {
        let r = Request::parse(obj(
            json!({"id": 3, "type": "status", "timeout_ms": 10, "x": 1}),
        ))
        .unwrap();
        assert_eq!(
            (r.id, r.kind.as_str(), r.timeout_ms),
            (3, "status", Some(10))
        );
        assert_eq!(r.fields, obj(json!({"x": 1})));
        assert_eq!(Request::parse(r.to_object()).unwrap(), r);
    }

    #[test]
    fn malformed_requests_are_named() {
        assert_eq!(
            Request::parse(obj(json!({"type": "x"}))),
            Err(RequestParseError::MissingId)
        );
        assert_eq!(
            Request::parse(obj(json!({"id": -1, "type": "x"}))),
            Err(RequestParseError::MissingId)
        );
        assert_eq!(
            Request::parse(obj(json!({"id": 1}))),
            Err(RequestParseError::MissingType { id: 1 })
        );
        assert_eq!(
            Request::parse(obj(json!({"id": 1, "type": "x", "timeout_ms": "soon"}))),
            Err(RequestParseError::BadTimeout { id: 1 })
        );
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response {
            id: Some(1),
            result: Ok(json!({"pong": true})),
        };
        assert_eq!(Response::from_object(&ok.to_object()).unwrap(), ok);
        let err = Response {
            id: None,
            result: Err(WireError::new(ErrorCode::Unsupported, "no")),
        };
        let o = err.to_object();
        assert_eq!(o["error"]["code"], "unsupported");
        assert_eq!(Response::from_object(&o).unwrap(), err);
    }

    #[test]
    fn error_codes_spell_as_documented() {
        for code in [
            ErrorCode::InvalidFrame,
            ErrorCode::BadRequest,
            ErrorCode::ShuttingDown,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn events_carry_their_name() {
        let e = Event::new("heartbeat", json!({"uptime_s": 3}));
        let o = e.to_object();
        assert_eq!(o["event"], "heartbeat");
        assert_eq!(Event::from_object(&o).unwrap(), e);
        assert!(Event::from_object(&obj(json!({"id": 1}))).is_none());
    }
}
