//! The requests the agent answers: [`Request`], parsed once from a frame's `type` and fields
//! (as mini-redis's `Command::from_frame`) and matched as an enum from then on. Each request
//! name is written once, in the `name` of its family ([`ServiceRequest`],
//! [`PortsRequest`], [`LifecycleRequest`], [`SigningRequest`]); the capability list is built from the same
//! families.
//!
//! ```text
//!  frame ─► wire::Request {id, type, timeout_ms, fields}   (the envelope: wire/message.rs)
//!        ─► Request::from_frame(type, fields)              (this file)
//!        ─► Dispatcher: Lifecycle ─► a Job (own deadline)
//!                       ping, forward_tickets ─► answered inline
//!                       the rest ─► the blocking pool, within request_timeout
//! ```
//!
//! A request's own fields are parsed by its handler, after the dispatcher has checked that the
//! service it needs runs here (an agent without the secrets service answers `unavailable`
//! whatever the fields say). An unknown `type` is kept by name for the `unsupported` answer.

use serde_json::{Map, Value};

pub(crate) use super::lifecycle::LifecycleRequest;
pub(crate) use super::ports::service::PortsRequest;

/// A family of requests, each with its wire name.
pub(crate) trait Named: Copy + 'static {
    /// Every member, in the order the capability list announces them.
    const ALL: &'static [Self];

    /// The wire name (`type`).
    fn name(self) -> &'static str;

    /// The member with this wire name.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

/// The requests the secrets service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRequest {
    /// `token_put`.
    TokenPut,
    /// `secrets_put`.
    SecretsPut,
    /// `session`.
    Session,
    /// `registry_put`.
    RegistryPut,
    /// `registry_remove`.
    RegistryRemove,
}

impl Named for ServiceRequest {
    const ALL: &'static [Self] = &[
        Self::TokenPut,
        Self::SecretsPut,
        Self::Session,
        Self::RegistryPut,
        Self::RegistryRemove,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::TokenPut => "token_put",
            Self::SecretsPut => "secrets_put",
            Self::Session => "session",
            Self::RegistryPut => "registry_put",
            Self::RegistryRemove => "registry_remove",
        }
    }
}

/// The host's answers to the signing broker's `signing_request` events (guest::signing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningRequest {
    /// `signature_put`: the signature for a waiting request.
    SignaturePut,
    /// `signature_refuse`: the host will not sign it.
    SignatureRefuse,
}

impl Named for SigningRequest {
    const ALL: &'static [Self] = &[Self::SignaturePut, Self::SignatureRefuse];

    fn name(self) -> &'static str {
        match self {
            Self::SignaturePut => "signature_put",
            Self::SignatureRefuse => "signature_refuse",
        }
    }
}

/// One request, by type, with the fields its handler parses.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `ping`.
    Ping,
    /// `status`.
    Status,
    /// `activity`: the host says someone is using the codespace (the web editor).
    Activity,
    /// `trail`: the audit records after `since` (see [`super::trail`]).
    Trail(Map<String, Value>),
    /// A request of the secrets service.
    Service(ServiceRequest, Map<String, Value>),
    /// A request of the port service.
    Ports(PortsRequest, Map<String, Value>),
    /// A long-running lifecycle request.
    Lifecycle(LifecycleRequest, Map<String, Value>),
    /// An answer to a signing request.
    Signing(SigningRequest, Map<String, Value>),
    /// A type this agent does not know.
    Unknown(String),
}

impl Request {
    /// The request a frame's `type` and remaining fields make.
    pub fn from_frame(kind: String, fields: Map<String, Value>) -> Self {
        if let Some(r) = [Self::Ping, Self::Status, Self::Activity]
            .into_iter()
            .find(|r| r.name() == kind)
        {
            return r;
        }
        if kind == "trail" {
            return Self::Trail(fields);
        }
        if let Some(r) = ServiceRequest::from_name(&kind) {
            return Self::Service(r, fields);
        }
        if let Some(r) = PortsRequest::from_name(&kind) {
            return Self::Ports(r, fields);
        }
        if let Some(r) = LifecycleRequest::from_name(&kind) {
            return Self::Lifecycle(r, fields);
        }
        if let Some(r) = SigningRequest::from_name(&kind) {
            return Self::Signing(r, fields);
        }
        Self::Unknown(kind)
    }

    /// The wire name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Ping => "ping",
            Self::Status => "status",
            Self::Activity => "activity",
            Self::Trail(_) => "trail",
            Self::Service(r, _) => r.name(),
            Self::Ports(r, _) => r.name(),
            Self::Lifecycle(r, _) => r.name(),
            Self::Signing(r, _) => r.name(),
            Self::Unknown(name) => name,
        }
    }

    /// Whether it is answered inline on the connection's task: it must be cheap and never
    /// block (no file or `/proc` I/O). Everything else runs on the blocking pool.
    pub(crate) fn is_inline(&self) -> bool {
        // `forward_tickets`: random bytes and a set insert; a host refills its tickets between
        // forward connections, so a blocking-pool hop would be latency for nothing.
        matches!(
            self,
            Self::Ping | Self::Ports(PortsRequest::ForwardTickets, _)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_name() -> Vec<&'static str> {
        let mut names = vec!["ping", "status", "activity", "trail"];
        names.extend(ServiceRequest::ALL.iter().map(|r| r.name()));
        names.extend(PortsRequest::ALL.iter().map(|r| r.name()));
        names.extend(LifecycleRequest::ALL.iter().map(|r| r.name()));
        names.extend(SigningRequest::ALL.iter().map(|r| r.name()));
        names
    }

    #[test]
    fn every_name_parses_back_to_itself_and_names_are_unique() {
        let names = every_name();
        for name in &names {
            let r = Request::from_frame((*name).to_owned(), Map::new());
            assert!(!matches!(r, Request::Unknown(_)), "{name}");
            assert_eq!(r.name(), *name);
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn unknown_types_keep_their_name_and_fields_reach_the_handler() {
        for name in ["reboot", "PING", "events", "forward", ""] {
            let r = Request::from_frame(name.into(), Map::new());
            assert_eq!(r, Request::Unknown(name.into()));
            assert_eq!(r.name(), name);
        }
        let mut fields = Map::new();
        fields.insert("count".into(), 3.into());
        assert_eq!(
            Request::from_frame("forward_tickets".into(), fields.clone()),
            Request::Ports(PortsRequest::ForwardTickets, fields)
        );
    }

    #[test]
    fn only_ping_and_forward_tickets_are_inline() {
        let inline: Vec<_> = every_name()
            .into_iter()
            .filter(|n| Request::from_frame((*n).into(), Map::new()).is_inline())
            .collect();
        assert_eq!(inline, ["ping", "forward_tickets"]);
    }
}
