//! Why a `forward` connection is refused: one enum, one stable kebab-case reason per case, and
//! one exhaustive mapping onto the wire's error codes.
//!
//! The refusal frame names the reason twice, for machines and for people:
//!
//! ```json
//! {"type": "error", "reason": "stale-epoch",
//!  "error": {"code": "unauthorized", "message": "stale-epoch: the grant is for epoch 3, the port is at epoch 5"}}
//! ```
//!
//! Access refusals of the policy keep the policy's own codes (`authentication-required`,
//! `authentication-expired`, `authentication-invalid`, `not-owner`, `not-organization-member`).

use codespace_policy::ports::PortDenyReason;
use codespace_policy::ReasonCode;
use serde_json::{json, Map, Value};

use crate::wire::message::{to_object, ErrorFrame};
use crate::wire::{ErrorCode, WireError};

/// A refused forward connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ForwardRefusal {
    /// The agent has no port service (not configured).
    #[error("this agent does not forward ports")]
    Unavailable,
    /// The host has not delivered a grant key yet.
    #[error("no grant key was delivered to this agent")]
    NoGrantKey,
    /// The hello has no `forward` member.
    #[error("{0}")]
    Malformed(&'static str),
    /// The hello's forward ticket verified but is not (or no longer) outstanding: used
    /// before (a replay), issued by an earlier boot of the agent, or forgotten.
    #[error("the forward ticket is unknown or was used already")]
    TicketUnknown,
    /// The proof that goes with a forward ticket does not verify under the shared key.
    #[error("the forward ticket's proof does not verify")]
    TicketForged,
    /// The grant does not parse or breaks its bounds.
    #[error("the grant is malformed")]
    MalformedGrant,
    /// The grant's MAC does not verify.
    #[error("the grant's signature does not verify")]
    Forged,
    /// The grant is for another port.
    #[error("the grant is for port {grant}, the connection asks for port {asked}")]
    WrongPort {
        /// The grant's port.
        grant: u16,
        /// The hello's port.
        asked: u16,
    },
    /// The grant's expiry has passed.
    #[error("the grant expired")]
    Expired,
    /// The grant lives longer than 3 hours after the authentication (or after now, anonymous).
    #[error("the grant is valid for more than 3 hours after authentication")]
    LifetimeTooLong,
    /// The port is configured never to be forwarded.
    #[error("port {0} is never forwarded")]
    PortDenied(u16),
    /// Nothing listens on the port (it is not in the registry).
    #[error("no listener on port {0}")]
    NoSuchPort(u16),
    /// The port changed since the grant was minted.
    #[error("the grant is for epoch {grant}, the port is at epoch {current}")]
    StaleEpoch {
        /// The grant's epoch.
        grant: u64,
        /// The port's epoch.
        current: u64,
    },
    /// An owner-only port and the principal is not the creator.
    #[error("port {0} carries connections to the codespace itself; only its creator may use it")]
    OwnerOnly(u16),
    /// The policy denied the principal.
    #[error("the port's visibility does not admit this principal")]
    Access(PortDenyReason),
    /// A connection limit is reached.
    #[error("too many forwarded connections ({scope} limit {limit})")]
    TooManyConnections {
        /// `port` or `total`.
        scope: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Connecting to the listener failed.
    #[error("cannot connect to port {0} on 127.0.0.1 or [::1]")]
    PortUnreachable(u16),
}

impl ForwardRefusal {
    /// The stable reason code.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::NoGrantKey => "no-grant-key",
            Self::Malformed(_) => "malformed",
            Self::TicketUnknown => "ticket-unknown",
            Self::TicketForged => "ticket-forged",
            Self::MalformedGrant => "malformed-grant",
            Self::Forged => "forged",
            Self::WrongPort { .. } => "wrong-port",
            Self::Expired => "expired",
            Self::LifetimeTooLong => "lifetime-too-long",
            Self::PortDenied(_) => "port-denied",
            Self::NoSuchPort(_) => "no-such-port",
            Self::StaleEpoch { .. } => "stale-epoch",
            Self::OwnerOnly(_) => "owner-only",
            Self::Access(r) => r.code(),
            Self::TooManyConnections { .. } => "too-many-connections",
            Self::PortUnreachable(_) => "port-unreachable",
        }
    }

    /// The wire error code.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable | Self::NoGrantKey | Self::PortUnreachable(_) => {
                ErrorCode::Unavailable
            }
            Self::Malformed(_) | Self::MalformedGrant => ErrorCode::BadRequest,
            Self::Forged
            | Self::TicketUnknown
            | Self::TicketForged
            | Self::WrongPort { .. }
            | Self::Expired
            | Self::LifetimeTooLong
            | Self::StaleEpoch { .. }
            | Self::OwnerOnly(_)
            | Self::Access(_) => ErrorCode::Unauthorized,
            Self::PortDenied(_) | Self::NoSuchPort(_) => ErrorCode::InvalidArgument,
            Self::TooManyConnections { .. } => ErrorCode::Busy,
        }
    }

    /// The refusal frame (see the module docs).
    pub(crate) fn frame(&self) -> Map<String, Value> {
        let mut m = to_object(&ErrorFrame::new(WireError::new(
            self.code(),
            format!("{}: {self}", self.reason()),
        )));
        m.insert("reason".into(), json!(self.reason()));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_name_the_reason_and_the_code() {
        let r = ForwardRefusal::StaleEpoch {
            grant: 3,
            current: 5,
        };
        let f = r.frame();
        assert_eq!(f["type"], "error");
        assert_eq!(f["reason"], "stale-epoch");
        assert_eq!(f["error"]["code"], "unauthorized");
        assert_eq!(
            f["error"]["message"],
            "stale-epoch: the grant is for epoch 3, the port is at epoch 5"
        );
        assert_eq!(
            ForwardRefusal::Access(PortDenyReason::NotOrganizationMember).reason(),
            "not-organization-member"
        );
        assert_eq!(
            ForwardRefusal::TooManyConnections {
                scope: "port",
                limit: 1
            }
            .code(),
            ErrorCode::Busy
        );
    }
}
