//! The host side of port forwarding: mint grants, open `forward` connections.
//!
//! ```text
//! mint(key, port, epoch, principal, now, ttl) ─▶ SignedGrant
//! open(opts, port, grant):                                                  two round trips
//!   dial (unix | hybrid | vsock) ─ hello{role:forward, forward:{port, grant}} ─ welcome
//!   ─ auth ─ ok ─ forward_ok | error{reason}  ─▶ ForwardStream (raw bytes to the guest port)
//! open_with(opts, port, grant, Some(ticket), early):                        one round trip
//!   dial ─ hello{.., forward:{port, grant, ticket}} + auth [+ early] ─ welcome ─ ok
//!   ─ forward_ok | error{reason}
//! ```
//!
//! The grant key is the host's; it reaches the agent once over the control connection
//! (`grant_key_put {key: base64}`) and every grant is signed with it. Tickets come from the
//! control connection too (`forward_tickets`, see [`super::tickets`] and
//! [`crate::wire::ticket`]). One forward connection carries exactly one TCP connection to the
//! guest port; the stream returned by [`open`] is already past the handshake, so its first
//! byte is the listener's.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use super::client::{read_from_agent, Client, ClientError, ConnectOptions};
use super::dial::{hybrid_connect, ConnectAddr};
use crate::relay::widen_unix_send_buffer;
use crate::wire::frame::parse_payload;
use crate::wire::grant::{GrantClaims, GrantKey, GrantPrincipal, SignedGrant};
use crate::wire::handshake::{host_start_forward, AwaitOk, AwaitWelcome};
use crate::wire::io::FrameIoError;
use crate::wire::message::{ErrorFrame, ForwardHello};
use crate::wire::ticket::{host_start_ticket, AwaitTicketWelcome, ForwardTicket};
use crate::wire::{ErrorCode, FrameCodec, HandshakeError, WireError};

/// The longest grant lifetime the agent accepts (3 hours after authentication).
pub const MAX_GRANT_TTL: Duration = Duration::from_secs(3 * 3600);

/// Installs the host's grant key in the agent (`grant_key_put` on the control connection);
/// from then on the agent checks every grant's signature against it. Returns the agent's answer
/// (`{"grant_key": "installed"}`). The base64 text is wiped once sent, but the copies the
/// request's JSON and frame buffers make of it are not (the key stays in the host's memory
/// anyway, as the key it signs grants with).
pub async fn put_grant_key(
    control: &Client,
    key: &[u8],
    timeout: Duration,
) -> Result<Value, ClientError> {
    use base64::Engine as _;
    let encoded = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key));
    let mut fields = serde_json::Map::new();
    fields.insert("key".into(), Value::String(encoded.as_str().to_owned()));
    control.request("grant_key_put", fields, timeout).await
}

/// The port's current visibility epoch from `ports_list`, which a grant must name; `None` when
/// the agent has detected no listener on it (yet: detection takes up to a polling interval).
pub async fn port_epoch(
    control: &Client,
    port: u16,
    timeout: Duration,
) -> Result<Option<u64>, ClientError> {
    let entry = super::ports::port_entry(control, port, timeout).await?;
    Ok(entry.and_then(|p| p["epoch"].as_u64()))
}

/// Signs a grant for `port` at `epoch`, valid from `now` (seconds since the Unix epoch) for
/// `ttl`, capped at [`MAX_GRANT_TTL`] after the principal's authentication.
pub fn mint(
    key: &GrantKey,
    port: u16,
    epoch: u64,
    principal: Option<GrantPrincipal>,
    now: i64,
    ttl: Duration,
) -> SignedGrant {
    let ttl = i64::try_from(ttl.min(MAX_GRANT_TTL).as_secs()).unwrap_or(0);
    let base = principal.as_ref().map_or(now, |p| p.authenticated_at);
    let cap = base.saturating_add(i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(0));
    key.sign(GrantClaims {
        principal,
        port,
        epoch,
        expires_at: now.saturating_add(ttl).min(cap),
    })
}

/// Why a forward connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Dialing or the handshake failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The agent refused the grant or the port; `reason` is its stable code.
    #[error("forward refused ({reason}): {}", .error.message)]
    Refused {
        /// The refusal reason (`stale-epoch`, `forged`, ...).
        reason: String,
        /// The error the agent sent.
        error: WireError,
    },
    /// The agent answered something other than `forward_ok` or an error.
    #[error("unexpected answer to a forward request")]
    UnexpectedAnswer,
}

impl ForwardError {
    /// The refusal reason, when the agent refused.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// What the agent said when it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The port.
    pub port: u16,
    /// The address the agent connected to (`127.0.0.1:PORT` or `[::1]:PORT`).
    pub target: String,
    /// The port's epoch.
    pub epoch: u64,
}

/// An open forward connection: a byte stream to the guest port.
#[derive(Debug)]
#[non_exhaustive]
pub enum ForwardStream {
    /// Over a Unix socket (`unix:` or `hybrid:`).
    Unix(UnixStream),
    /// Over AF_VSOCK.
    Vsock(tokio_vsock::VsockStream),
}

impl AsFd for ForwardStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Unix(s) => s.as_fd(),
            Self::Vsock(s) => s.as_fd(),
        }
    }
}

impl AsyncRead for ForwardStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Vsock(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ForwardStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Vsock(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Vsock(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Vsock(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Opens a transport stream to the agent (Unix, hybrid vsock or vsock); the control client
/// ([`super::client`]) dials the same way.
pub(crate) async fn dial(
    addr: &ConnectAddr,
    timeout: Duration,
) -> Result<ForwardStream, ClientError> {
    let name = addr.to_string();
    let conn = |source| ClientError::Connect {
        addr: name.clone(),
        source,
    };
    match addr {
        ConnectAddr::Unix(p) => Ok(ForwardStream::Unix(
            UnixStream::connect(p).await.map_err(conn)?,
        )),
        ConnectAddr::Hybrid { path, port } => {
            let mut s = UnixStream::connect(path).await.map_err(conn)?;
            hybrid_connect(&mut s, *port, timeout)
                .await
                .map_err(|source| ClientError::Hybrid {
                    addr: name.clone(),
                    source,
                })?;
            Ok(ForwardStream::Unix(s))
        }
        ConnectAddr::Vsock { cid, port } => Ok(ForwardStream::Vsock(
            tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                .await
                .map_err(conn)?,
        )),
    }
}

/// Opens a forward connection to `port` with `grant` (one attempt, bounded by
/// `opts.attempt_timeout`, repeated with `opts.backoff` only while the agent answers `busy`):
/// the full handshake, no early data.
pub async fn open(
    opts: &ConnectOptions,
    port: u16,
    grant: &SignedGrant,
) -> Result<(ForwardStream, Accepted), ForwardError> {
    open_with(opts, port, grant, None, &[]).await
}

/// Opens a forward connection, with a single-use `ticket` when given (one round trip; needs
/// `opts.key`, without which the ticket is not used), and sends `early_data` right behind the
/// last handshake frame instead of after `forward_ok` (the agent forwards it once the
/// connection is admitted and drops it on a refusal).
///
/// Early data leaves before the agent's proof has been checked, so it must not be secret from
/// whoever might hold the transport address: pass it only when the address is trusted (the
/// stream is not used, and the call fails, if the proof is wrong). A ticket refused as
/// `ticket-unknown` (the agent restarted, or forgot it) is reported as such; retrying with
/// the full handshake is the caller's choice ([`super::tickets::open_ticketed`] does it).
///
/// An agent at capacity answers `busy` before it reads anything (guest::server, "Admission"):
/// nothing was redeemed or forwarded, so the attempt is repeated after `opts.backoff`'s delay,
/// within its deadline.
pub async fn open_with(
    opts: &ConnectOptions,
    port: u16,
    grant: &SignedGrant,
    ticket: Option<&ForwardTicket>,
    early_data: &[u8],
) -> Result<(ForwardStream, Accepted), ForwardError> {
    let start = std::time::Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match open_once(opts, port, grant, ticket, early_data).await {
            Err(ForwardError::Client(ClientError::Handshake { source, .. }))
                if source.code == ErrorCode::Busy
                    && opts
                        .backoff
                        .deadline
                        .is_none_or(|d| start.elapsed() + opts.backoff.delay(attempts) <= d) =>
            {
                tokio::time::sleep(opts.backoff.delay(attempts)).await;
            }
            done => return done,
        }
    }
}

/// One attempt of [`open_with`].
async fn open_once(
    opts: &ConnectOptions,
    port: u16,
    grant: &SignedGrant,
    ticket: Option<&ForwardTicket>,
    early_data: &[u8],
) -> Result<(ForwardStream, Accepted), ForwardError> {
    let name = opts.addr.to_string();
    let codec = FrameCodec::new(opts.max_frame_bytes);
    // The first flight is ready before the dial, so it follows the connect at once: an agent
    // woken by the connect finds it there instead of going back to sleep for it.
    let (state, flight) = first_flight(opts, &codec, port, grant, ticket, early_data, &name)?;
    let attempt = async {
        let mut stream = dial(&opts.addr, opts.attempt_timeout).await?;
        if let (ConnectAddr::Unix(_), ForwardStream::Unix(s)) = (&opts.addr, &stream) {
            // Bulk data: a wider send buffer lets each wakeup move more (tests/perf/README.md).
            widen_unix_send_buffer(s.as_fd());
        }
        let accepted =
            handshake(&mut stream, &codec, state, &flight, early_data, port, &name).await?;
        Ok((stream, accepted))
    };
    tokio::time::timeout(opts.attempt_timeout, attempt)
        .await
        .map_err(|_| ForwardError::Client(ClientError::HandshakeTimeout { addr: name.clone() }))?
}

/// The host's side of the handshake after its first flight.
enum Sent {
    /// A ticket hello and its `auth` (and any early data) went out; `welcome` comes next.
    Ticket(AwaitTicketWelcome),
    /// A plain hello went out; `welcome` comes next, then `auth` and the early data go out.
    Full(AwaitWelcome),
}

fn handshake_error(name: &str, source: HandshakeError) -> ForwardError {
    ForwardError::Client(ClientError::Handshake {
        addr: name.to_owned(),
        source,
    })
}

fn frame_error(e: impl Into<FrameIoError>) -> ForwardError {
    ForwardError::Client(ClientError::Frame(e.into()))
}

/// Builds everything the host sends before it hears from the agent: with a ticket (and a key)
/// `hello` + `auth` + the early data, else the `hello` alone.
fn first_flight(
    opts: &ConnectOptions,
    codec: &FrameCodec,
    port: u16,
    grant: &SignedGrant,
    ticket: Option<&ForwardTicket>,
    early_data: &[u8],
    name: &str,
) -> Result<(Sent, Vec<u8>), ForwardError> {
    let mut nonce = [0u8; 32];
    SystemRandom::new().fill(&mut nonce).map_err(|_| {
        handshake_error(
            name,
            HandshakeError {
                code: ErrorCode::Internal,
                message: "random number generator failed".into(),
            },
        )
    })?;
    let forward = ForwardHello {
        port,
        grant: serde_json::to_value(grant).map_err(|_| ForwardError::UnexpectedAnswer)?,
        ticket: None,
    };
    match (ticket, &opts.key) {
        (Some(ticket), Some(key)) => {
            let (state, hello, auth) = host_start_ticket(forward, ticket, key.clone(), nonce);
            let mut flight = codec.encode_payload(&hello).map_err(frame_error)?;
            flight.extend_from_slice(&codec.encode_payload(&auth).map_err(frame_error)?);
            flight.extend_from_slice(early_data);
            Ok((Sent::Ticket(state), flight))
        }
        _ => {
            let (state, hello) = host_start_forward(forward, opts.key.clone(), nonce);
            let flight = codec.encode_payload(&hello).map_err(frame_error)?;
            Ok((Sent::Full(state), flight))
        }
    }
}

async fn handshake(
    stream: &mut ForwardStream,
    codec: &FrameCodec,
    sent: Sent,
    flight: &[u8],
    early_data: &[u8],
    port: u16,
    name: &str,
) -> Result<Accepted, ForwardError> {
    // Everything the host says before it hears back goes out in one write: one wakeup of the
    // agent, and a frame is never split from its header.
    let flight_sent = send(stream, flight).await;
    let welcome = match (flight_sent, next_payload(stream, codec).await) {
        (Ok(()), welcome) => welcome?,
        // A refused connection (`busy`) is closed at once, perhaps before the flight arrived;
        // the agent's answer is still there to read, and says why.
        (Err(_), Ok(answer)) => answer,
        (Err(e), Err(_)) => return Err(frame_error(e)),
    };
    let state: AwaitOk = match sent {
        Sent::Ticket(state) => state
            .handle(&welcome)
            .map_err(|e| handshake_error(name, e))?,
        Sent::Full(state) => {
            let (state, auth) = state
                .handle(&welcome)
                .map_err(|e| handshake_error(name, e))?;
            let mut second = match auth {
                Some(auth) => codec.encode_payload(&auth).map_err(frame_error)?,
                None => Vec::new(),
            };
            second.extend_from_slice(early_data);
            if !second.is_empty() {
                if let Err(e) = send(stream, &second).await {
                    // Evicted from the handshake (`busy`, a newer connection needed the slot)
                    // while the proof was on its way: the agent's answer is there to read, and
                    // a `busy` one is retried like any other.
                    let answer = next_payload(stream, codec)
                        .await
                        .map_err(|_| frame_error(e))?;
                    state
                        .handle(&answer)
                        .map_err(|e| handshake_error(name, e))?;
                    return Err(ForwardError::UnexpectedAnswer);
                }
            }
            state
        }
    };
    let ok = next_payload(stream, codec).await?;
    state.handle(&ok).map_err(|e| handshake_error(name, e))?;
    let answer = next_object(stream, codec).await?;
    match answer.get("type").and_then(Value::as_str) {
        Some("forward_ok") => Ok(Accepted {
            port,
            target: answer
                .get("target")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            epoch: answer.get("epoch").and_then(Value::as_u64).unwrap_or(0),
        }),
        Some("error") => Err(refusal(answer)),
        _ => Err(ForwardError::UnexpectedAnswer),
    }
}

async fn send(stream: &mut ForwardStream, bytes: &[u8]) -> Result<(), FrameIoError> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// The next handshake frame's payload, unparsed (the handshake state parses it, once); a
/// forward refusal (an error frame with a `reason`, which a ticket hello can get instead of
/// `welcome`) becomes [`ForwardError::Refused`].
async fn next_payload(
    stream: &mut ForwardStream,
    codec: &FrameCodec,
) -> Result<Vec<u8>, ForwardError> {
    /// Just the `type` member (the rest is skipped).
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let payload = read_from_agent(stream, codec).await?;
    let is_error =
        serde_json::from_slice::<Kind>(&payload).is_ok_and(|k| k.kind.as_deref() == Some("error"));
    if is_error {
        if let Ok(object) = parse_payload(&payload) {
            if object.contains_key("reason") {
                return Err(refusal(object));
            }
        }
    }
    Ok(payload)
}

/// The forwarder's answer, as an object (anything else is the agent's protocol violation).
async fn next_object(
    stream: &mut ForwardStream,
    codec: &FrameCodec,
) -> Result<serde_json::Map<String, Value>, ForwardError> {
    let payload = read_from_agent(stream, codec).await?;
    parse_payload(&payload)
        .map_err(|e| ForwardError::Client(ClientError::ProtocolViolation(e.to_string())))
}

fn refusal(answer: serde_json::Map<String, Value>) -> ForwardError {
    let reason = answer
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    match serde_json::from_value::<ErrorFrame>(Value::Object(answer)) {
        Ok(f) => ForwardError::Refused {
            reason,
            error: f.error,
        },
        Err(_) => ForwardError::UnexpectedAnswer,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::grant::parse_grant;

    #[test]
    fn minted_grants_verify_and_never_outlive_three_hours() {
        let key = GrantKey::new(&[1; 32]).unwrap();
        let who = GrantPrincipal {
            login: "mona".into(),
            organizations: vec![],
            authenticated_at: 1000,
        };
        let g = mint(
            &key,
            3000,
            4,
            Some(who.clone()),
            2000,
            Duration::from_secs(60),
        );
        assert_eq!(g.claims.expires_at, 2060);
        let back = parse_grant(serde_json::to_value(&g).unwrap()).unwrap();
        assert_eq!(key.verify(back).unwrap().epoch, 4);
        let g = mint(&key, 3000, 4, Some(who), 2000, Duration::from_secs(99_999));
        assert_eq!(g.claims.expires_at, 1000 + 3 * 3600);
        let g = mint(&key, 3000, 4, None, 2000, Duration::from_secs(99_999));
        assert_eq!(g.claims.expires_at, 2000 + 3 * 3600);
    }

    #[test]
    fn refusals_expose_their_reason() {
        let e = ForwardError::Refused {
            reason: "stale-epoch".into(),
            error: WireError::new(ErrorCode::Unauthorized, "stale-epoch: x"),
        };
        assert_eq!(e.reason(), Some("stale-epoch"));
        assert!(e.to_string().contains("stale-epoch"));
    }
}
