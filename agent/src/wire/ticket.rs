//! Forward tickets: a `forward` connection that authenticates in its first flight.
//!
//! The full handshake costs a `forward` connection two round trips before its first byte
//! (`hello` → `welcome`, `auth` → `ok` + `forward_ok`). With a ticket it costs one:
//!
//! ```text
//!  control connection (authenticated):  forward_tickets {count} ─▶ {tickets: [B64 × count]}
//!
//!  host                                                   agent
//!  hello{role:forward, forward:{port, grant, ticket}} ─┐
//!  auth{proof_t}                                       ├─▶ verify proof_t, take the ticket out
//!  [early stream bytes, optional]                    ──┘   of its store, check the grant,
//!                                                          connect 127.0.0.1:PORT
//!            ◀── welcome + ok{proof_a} + forward_ok      (one write)   │ early bytes ──▶ listener
//!
//!  proof_t = HMAC-SHA256(key, "codespace-agent v1 forward-ticket" ‖ len‖hello)
//!  proof_a = HMAC-SHA256(key, "codespace-agent v1 agent" ‖ len‖hello ‖ len‖welcome ‖ len‖auth)
//! ```
//!
//! `hello` is the exact payload bytes that crossed the wire, so `proof_t` covers the ticket, the
//! host nonce, the port and the grant together; `proof_a` is the agent's proof of the full
//! handshake, computed the same way over this transcript.
//!
//! Why this is as safe as the full handshake (the idea of TLS 1.3's single-use session
//! tickets, RFC 8446 §8.1):
//! - **Freshness.** In the full handshake the agent's nonce makes every host proof unique, so
//!   a recorded `auth` is useless. Here the host proves before it has seen an agent nonce, so a
//!   recorded first flight would verify again; the ticket takes the nonce's place. Tickets are
//!   256 random bits from the agent's RNG, handed out only on an authenticated control
//!   connection, kept only in the agent's memory, and each is **removed from the store the
//!   first time a connection presents it with a valid proof, before anything else happens**
//!   (grant check, connect). A replayed first flight finds no ticket and is refused
//!   (`ticket-unknown`); so is one from an earlier boot of the agent, whose store started
//!   empty.
//! - **Binding.** Without the shared key nobody can compute `proof_t`, so a ticket seen on the
//!   wire cannot be moved onto another hello (another port, grant or nonce). A wrong proof is
//!   refused (`ticket-forged`) without consuming the ticket, so a party that lacks the key
//!   cannot use up the host's tickets either.
//! - **Separation.** `proof_t` has its own label: it can never pass for the `auth` of a full
//!   handshake (which covers the agent's `welcome` too) or the other way round.
//! - **The agent is still authenticated** by `proof_a` over the whole transcript, including
//!   the host's fresh nonce, and the host checks it before it uses the stream.
//! - **Bounded.** The agent keeps at most a fixed number of outstanding tickets (issuing more
//!   forgets the oldest) and hands out a bounded batch per request; see
//!   [`crate::guest::ports::tickets`].
//!
//! Early data: the host may send stream bytes right behind its last handshake frame instead of
//! waiting for `forward_ok`. The agent forwards them to the listener only once the connection
//! is admitted and drops them with the connection on any refusal. They leave the host before it
//! has checked `proof_a`, so only a caller that trusts the transport address (the socket path
//! is its own) should send them; [`crate::host::forward::open_with`] makes it opt-in.
//!
//! Without a ticket the full handshake runs as before (older hosts, vsock without a key).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::handshake::{
    answer_auth, auth_payload, decode_b64, parse_welcome, start_with, Agreed, AwaitOk,
    HandshakeError, SharedKey,
};
use super::message::{AuthScheme, ErrorCode, ForwardHello, Role};

/// Length of a ticket in bytes.
pub const TICKET_LEN: usize = 32;

const TICKET_LABEL: &[u8] = b"codespace-agent v1 forward-ticket";

/// A single-use forward ticket. Useless without the shared key, but kept out of logs all the
/// same: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ForwardTicket([u8; TICKET_LEN]);

impl std::fmt::Debug for ForwardTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardTicket(..)")
    }
}

impl ForwardTicket {
    /// A ticket from its bytes.
    pub fn from_bytes(bytes: [u8; TICKET_LEN]) -> Self {
        Self(bytes)
    }

    /// The ticket's bytes.
    pub fn as_bytes(&self) -> &[u8; TICKET_LEN] {
        &self.0
    }

    /// The wire form (base64).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses the wire form: base64 of exactly [`TICKET_LEN`] bytes.
    pub fn from_base64(text: &str) -> Result<Self, HandshakeError> {
        let bytes = decode_b64("ticket", text)?;
        let bytes: [u8; TICKET_LEN] = bytes.try_into().map_err(|_| {
            HandshakeError::new(
                ErrorCode::ProtocolViolation,
                format!("`ticket` is not {TICKET_LEN} bytes"),
            )
        })?;
        Ok(Self(bytes))
    }
}

// ---------------------------------------------------------------- agent side

/// Agent state after a ticket hello: the host's `auth` follows in the same flight.
#[derive(Debug)]
pub struct AwaitTicketProof {
    key: SharedKey,
    hello: Vec<u8>,
    welcome: Vec<u8>,
    agreed: Agreed,
    ticket: ForwardTicket,
}

/// A ticket hello whose proof verified. The ticket is not redeemed yet: the caller takes it
/// out of its store (refusing the connection if it is not there) before acting on the hello.
#[derive(Debug)]
pub struct TicketProven {
    /// What was agreed.
    pub agreed: Agreed,
    /// The ticket to redeem.
    pub ticket: ForwardTicket,
    /// `welcome` payload, to send with the answer.
    pub welcome: Vec<u8>,
    /// `ok` payload (the agent's proof), to send with the answer.
    pub ok: Vec<u8>,
}

impl AwaitTicketProof {
    pub(super) fn new(
        key: SharedKey,
        hello: Vec<u8>,
        welcome: Vec<u8>,
        agreed: Agreed,
        ticket: ForwardTicket,
    ) -> Self {
        Self {
            key,
            hello,
            welcome,
            agreed,
            ticket,
        }
    }

    /// Checks the host's `auth` against the hello. A wrong proof is `Unauthorized`.
    pub fn handle(self, payload: &[u8]) -> Result<TicketProven, HandshakeError> {
        let ok = answer_auth(
            &self.key,
            payload,
            (TICKET_LABEL, &[&self.hello]),
            [&self.hello, &self.welcome],
            "the forward ticket's proof does not verify",
        )?;
        Ok(TicketProven {
            agreed: self.agreed,
            ticket: self.ticket,
            welcome: self.welcome,
            ok,
        })
    }
}

// ----------------------------------------------------------------- host side

/// Host state after sending a ticket hello and its `auth`: waiting for `welcome`.
#[derive(Debug)]
pub struct AwaitTicketWelcome {
    key: SharedKey,
    hello: Vec<u8>,
    auth: Vec<u8>,
}

/// Starts a ticket `forward` connection: returns the state, the `hello` payload and the `auth`
/// payload, to be sent together (one write). The ticket goes into `forward.ticket`.
pub fn host_start_ticket(
    mut forward: ForwardHello,
    ticket: &ForwardTicket,
    key: SharedKey,
    nonce: [u8; 32],
) -> (AwaitTicketWelcome, Vec<u8>, Vec<u8>) {
    forward.ticket = Some(ticket.to_base64());
    let hello = start_with(Role::Forward, Some(forward), None, nonce).1;
    let auth = auth_payload(&key, TICKET_LABEL, &[&hello]);
    (
        AwaitTicketWelcome {
            key,
            hello: hello.clone(),
            auth: auth.clone(),
        },
        hello,
        auth,
    )
}

impl AwaitTicketWelcome {
    /// Handles `welcome`; the next frame is the agent's `ok`.
    pub fn handle(self, payload: &[u8]) -> Result<AwaitOk, HandshakeError> {
        let (mut info, auth) = parse_welcome(payload, Role::Forward)?;
        if auth != AuthScheme::HmacSha256 {
            // Only an agent that holds the key can have issued the ticket.
            return Err(HandshakeError::new(
                ErrorCode::Unauthorized,
                "the agent answered a ticket without authenticating",
            ));
        }
        info.authenticated = true;
        Ok(AwaitOk {
            expect_proof: Some((self.key, vec![self.hello, payload.to_vec(), self.auth])),
            info,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::handshake::tests::{identity, key};
    use crate::wire::handshake::{host_start_forward, AfterHello, AwaitHello};
    use serde_json::json;

    fn forward(port: u16) -> ForwardHello {
        ForwardHello {
            port,
            grant: json!({"port": port}),
            ticket: None,
        }
    }

    fn agent_reads(hello: &[u8], agent_key: Option<SharedKey>) -> AwaitTicketProof {
        match AwaitHello::new(identity(), agent_key)
            .handle(hello, [2; 32])
            .unwrap()
        {
            AfterHello::TicketProof { state } => state,
            other => panic!("expected the ticket path, got {other:?}"),
        }
    }

    #[test]
    fn one_flight_authenticates_both_sides_and_names_the_ticket() {
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let (host, hello, auth) = host_start_ticket(forward(3000), &ticket, key(1), [1; 32]);
        let proven = agent_reads(&hello, Some(key(1))).handle(&auth).unwrap();
        assert_eq!(proven.ticket, ticket);
        assert_eq!(proven.agreed.role, Role::Forward);
        let info = host
            .handle(&proven.welcome)
            .unwrap()
            .handle(&proven.ok)
            .unwrap();
        assert!(info.authenticated);
        assert_eq!(info.agent_id, "a1");
    }

    #[test]
    fn a_proof_under_another_key_is_unauthorized() {
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let (_, hello, auth) = host_start_ticket(forward(3000), &ticket, key(2), [1; 32]);
        let err = agent_reads(&hello, Some(key(1))).handle(&auth).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn a_proof_does_not_carry_over_to_another_hello() {
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let (_, _, auth) = host_start_ticket(forward(3000), &ticket, key(1), [1; 32]);
        // Same ticket and nonce, another port: the recorded proof must not verify.
        let (_, other, _) = host_start_ticket(forward(3001), &ticket, key(1), [1; 32]);
        let err = agent_reads(&other, Some(key(1))).handle(&auth).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn a_ticket_proof_is_no_full_handshake_proof_and_the_other_way_round() {
        // A full-handshake auth (label "host", over hello ‖ welcome) behind a ticket hello.
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let mut f = forward(3000);
        f.ticket = Some(ticket.to_base64());
        let (host, hello) = host_start_forward(f, Some(key(1)), [1; 32]);
        let state = agent_reads(&hello, Some(key(1)));
        let (_, full_auth) = host.handle(&state.welcome).unwrap();
        assert_eq!(
            state.handle(&full_auth.unwrap()).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        // A ticket auth behind a full handshake.
        let (_, hello, ticket_auth) = host_start_ticket(forward(3000), &ticket, key(1), [1; 32]);
        let mut plain: serde_json::Value = serde_json::from_slice(&hello).unwrap();
        plain["forward"].as_object_mut().unwrap().remove("ticket");
        let plain = serde_json::to_vec(&plain).unwrap();
        let AfterHello::AwaitAuth { state, .. } = AwaitHello::new(identity(), Some(key(1)))
            .handle(&plain, [2; 32])
            .unwrap()
        else {
            panic!("expected the full handshake")
        };
        assert_eq!(
            state.handle(&ticket_auth).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn an_agent_without_a_key_refuses_tickets() {
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let (_, hello, _) = host_start_ticket(forward(3000), &ticket, key(1), [1; 32]);
        let err = AwaitHello::new(identity(), None)
            .handle(&hello, [2; 32])
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn malformed_tickets_and_tickets_on_control_hellos_are_protocol_violations() {
        for bad in ["", "AAAA", "not base64!"] {
            let err = ForwardTicket::from_base64(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::ProtocolViolation, "{bad}");
        }
        let mut f = forward(3000);
        f.ticket = Some(ForwardTicket::from_bytes([1; TICKET_LEN]).to_base64());
        let hello = json!({"type": "hello", "versions": [1], "role": "control",
            "nonce": B64.encode([1u8; 32]), "forward": f});
        let err = AwaitHello::new(identity(), Some(key(1)))
            .handle(&serde_json::to_vec(&hello).unwrap(), [2; 32])
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ProtocolViolation);
    }

    #[test]
    fn the_host_refuses_an_unauthenticated_or_wrong_answer() {
        let ticket = ForwardTicket::from_bytes([9; TICKET_LEN]);
        let (host, hello, auth) = host_start_ticket(forward(3000), &ticket, key(1), [1; 32]);
        let proven = agent_reads(&hello, Some(key(1))).handle(&auth).unwrap();
        let mut w: serde_json::Value = serde_json::from_slice(&proven.welcome).unwrap();
        w["auth"] = "none".into();
        let err = host.handle(&serde_json::to_vec(&w).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        // An `ok` from another transcript (another host nonce) does not verify.
        let (host2, hello2, auth2) = host_start_ticket(forward(3000), &ticket, key(1), [3; 32]);
        let proven2 = agent_reads(&hello2, Some(key(1))).handle(&auth2).unwrap();
        let err = host2
            .handle(&proven2.welcome)
            .unwrap()
            .handle(&proven.ok)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert!(!format!("{ticket:?}").contains('9'));
    }
}
