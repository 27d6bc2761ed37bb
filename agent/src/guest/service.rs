//! The boundary between connection handling and the secrets/token side (the vault).
//!
//! The request handlers in [`super::dispatch`] know the wire; the vault knows tokens, sealed
//! secrets, the environment file and the credential broker. They meet at [`SecretsService`]: the
//! dispatcher hands over the request's fields, the service answers with a JSON result or a
//! [`ServiceError`], which maps onto the wire's error codes by one exhaustive `match`
//! ([`ServiceError::wire`]). Events the service raises on its own (token expiring, expired) go
//! through the [`EventSink`] it was given at construction.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::trail::{Kind, Trail};
use crate::wire::{ErrorCode, Event, WireError};

/// Sender side of the agent's event stream; every control connection receives what is sent.
/// It also holds the audit trail, so every part of the agent that can raise an event can
/// record what it decided ([`EventSink::audit`]) without being handed a second object.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: broadcast::Sender<Event>,
    trail: Arc<Trail>,
}

impl EventSink {
    /// A stream that buffers `capacity` events per slow receiver, with a trail that keeps the
    /// last `records`.
    pub(crate) fn new(capacity: usize, records: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            trail: Arc::new(Trail::new(records)),
        }
    }

    /// A stream and a first receiver (for tests and single consumers).
    pub fn channel(capacity: usize) -> (Self, broadcast::Receiver<Event>) {
        let sink = Self::new(capacity, super::trail::DEFAULT_CAPACITY);
        let rx = sink.subscribe();
        (sink, rx)
    }

    /// Sends an event to every control connection; fails only when none is listening.
    pub(crate) fn send(&self, event: Event) -> Result<usize, broadcast::error::SendError<Event>> {
        self.tx.send(event)
    }

    /// A new receiver of the events sent from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// How many receivers are listening.
    pub(crate) fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Records a security-relevant decision or action in the trail and sends it to the host as
    /// an `audit` event. `fields` must hold no secret: names, numbers and reasons only.
    pub(crate) fn audit(&self, kind: Kind, fields: Value) {
        self.trail.push(kind, fields, |record| {
            let _ = self.tx.send(Event::new("audit", record.clone()));
        });
    }

    /// The audit trail.
    pub(crate) fn trail(&self) -> &Trail {
        &self.trail
    }
}

/// Why the service refused or failed a request. Messages are for the host and carry no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A field is missing, malformed or refused by policy.
    #[error("{0}")]
    InvalidArgument(String),
    /// The operation is not possible in the current state (e.g. nothing to resume).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the agent (I/O on the state directory ...).
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The wire form of the error.
    pub(crate) fn wire(&self) -> WireError {
        let code = match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        };
        WireError::new(code, self.to_string())
    }
}

/// A lifecycle event sent by the host with `session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionKind {
    /// The codespace was created: the environment snapshot is taken.
    Create,
    /// The codespace resumed: pending secrets land.
    Resume,
    /// The codespace is about to be suspended.
    Suspend,
}

impl SessionKind {
    /// Parses the wire spelling.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "resume" => Some(Self::Resume),
            "suspend" => Some(Self::Suspend),
            _ => None,
        }
    }

    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Resume => "resume",
            Self::Suspend => "suspend",
        }
    }
}

/// What the dispatcher needs from the vault.
pub trait SecretsService: Send + Sync + 'static {
    /// The boot-time X25519 public key announced in `welcome`.
    fn public_key(&self) -> [u8; 32];
    /// `token_put`: `{token, expires_at, scope, host?}`.
    fn put_token(&self, fields: Map<String, Value>) -> Result<Value, ServiceError>;
    /// `secrets_put`: `{secrets: [sealed, ..]}`; refusals per name are part of the `Ok` report.
    fn put_secrets(&self, fields: Map<String, Value>) -> Result<Value, ServiceError>;
    /// `session`: a lifecycle event.
    fn session(&self, kind: SessionKind) -> Result<Value, ServiceError>;
    /// The codespace starts (`true`) or stops being a prebuild, as `session create`'s
    /// `codespace.prebuild` says; called before that session event is applied.
    fn set_prebuild(&self, prebuild: bool) -> Result<Value, ServiceError>;
    /// `registry_put`: `{registry, username, secret: sealed, expires_at, scope?}`.
    fn put_registry(&self, fields: Map<String, Value>) -> Result<Value, ServiceError>;
    /// `registry_remove`: `{registry}`.
    fn remove_registry(&self, fields: Map<String, Value>) -> Result<Value, ServiceError>;
    /// Token and secrets part of `status` (expiry, scope, names current and pending).
    fn status(&self) -> Value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_fixed_codes() {
        assert_eq!(
            ServiceError::InvalidArgument("x".into()).wire().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            ServiceError::Unavailable("x".into()).wire().code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            ServiceError::Internal("x".into()).wire().code,
            ErrorCode::Internal
        );
    }

    #[test]
    fn session_kinds_round_trip() {
        for k in [
            SessionKind::Create,
            SessionKind::Resume,
            SessionKind::Suspend,
        ] {
            assert_eq!(SessionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SessionKind::parse("restart"), None);
    }
}
