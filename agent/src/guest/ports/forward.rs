//! The `forward` connection role: after the (authenticated) handshake, check the grant, connect
//! to the local listener, answer, then become a raw byte pipe.
//!
//! ```text
//! host                                         agent
//! hello{role:forward, forward:{port, grant}} ─▶
//!            ◀─ welcome
//! auth [+ early bytes] ──────────────────────▶ (the shared-key handshake, when configured)
//!                                              ticket (if any): redeem, else ticket-unknown
//!                                              admit: grant MAC, port, expiry, epoch,
//!                                                     owner-only, policy access, limits
//!                                              connect to the port owner's listeners only,
//!                                              at their loopback addresses, IPv4 first
//!                                              (127.0.0.1 / ::1, or the loopback address
//!                                              bound), in the owner's network namespace;
//!                                              none left: port-unreachable
//!                                              early bytes ─▶ the listener
//!            ◀─ ok  +  {"type":"forward_ok","port":P,"target":"127.0.0.1:P","visibility":..,"epoch":..}
//!               (the handshake's `ok` is held back and sent in the same write as the answer)
//!   raw bytes  ◀══════════════ splice ══════════════▶  the listener
//!
//! refused:   ◀─ {"type":"error","reason":"stale-epoch","error":{"code":..,"message":..}}  close
//! ```
//!
//! With a forward ticket ([`crate::wire::ticket`]) the host sends `hello`, `auth` (and any early
//! bytes) in one flight and `welcome` is held back too: `welcome` + `ok` + the answer leave in
//! one write, one round trip in all.
//!
//! Early data: the host may send stream bytes right behind its last handshake frame instead of
//! waiting for `forward_ok`. Those the server's read buffer already holds arrive here as
//! [`ForwardRequest::early`] and are written to the listener before the relay starts (the rest
//! are still in the socket and the relay moves them in order); on any refusal they are dropped
//! unread by anyone. Once admitted, the relay runs on its own task and leaves the server's
//! connection budget: the port service's limits bound it from then on. It ends when both sides
//! have closed, when the connection is revoked (visibility tightened, port removed), when the
//! principal's authentication expires (three hours after it was made, as the policy counts;
//! not the grant's own expiry, which only bounds when the connection may be opened) or when
//! the agent shuts down.
//!
//! Whose listener: another uid may bind the same port on another loopback address (the owner's
//! dev server on `[::1]:P` only, someone else's on `127.0.0.1:P`). Connecting to "whatever
//! answers on 127.0.0.1, else ::1" would hand the owner's grant and a public port's visitors
//! to that server, so the target is the port owner's own listeners
//! ([`super::service::PortsService::target_of`]), never the first address that answers.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use codespace_policy::ports::ForwardGrant;
use codespace_policy::Authorized;
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::guest::detect::Network;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::refusal::ForwardRefusal;
use super::service::{Admission, ForwardTarget, PortsService};
use crate::guest::config::CodespaceIdentity;
use crate::guest::sandbox::netns::RestrictedSockets;
use crate::guest::trail::Kind;
use crate::guest::transport::Peer;
use crate::relay::{relay_metered, relay_streams, reregister, Meter, RelayEnd};
use crate::wire::io::FrameIoError;
use crate::wire::message::ForwardHello;
use crate::wire::ticket::ForwardTicket;
use crate::wire::FrameCodec;

/// How long writing the answer frame may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server hands over after a `forward` handshake.
#[derive(Debug)]
pub(crate) struct ForwardRequest {
    /// The hello's `forward` member.
    pub(crate) hello: Option<ForwardHello>,
    /// Handshake payloads not sent yet (`ok`; `welcome` and `ok` after a ticket hello): they
    /// go out, in order, in the same write as the answer.
    pub(crate) held: Vec<Vec<u8>>,
    /// The hello's forward ticket, its proof already verified; redeemed before anything else.
    pub(crate) ticket: Option<ForwardTicket>,
    /// Stream bytes the host sent behind its last handshake frame that were read already.
    pub(crate) early: Vec<u8>,
    /// The agent's frame codec.
    pub(crate) codec: FrameCodec,
    /// Who connected.
    pub(crate) peer: Peer,
}

/// The port service and the codespace's identity at connection time.
pub(crate) type ForwardContext = Option<(Arc<PortsService>, CodespaceIdentity)>;

/// Serves one `forward` connection whose handshake is complete.
pub(crate) async fn serve<S>(
    context: ForwardContext,
    mut stream: S,
    request: ForwardRequest,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = request.peer.clone();
    let ports = context.as_ref().map(|(p, _)| p.clone());
    let (admission, target, target_addr) = match admit_and_connect(context, &request).await {
        Ok(ok) => ok,
        Err(refusal) => {
            warn!(%peer, reason = refusal.reason(), "forward refused: {refusal}");
            if let Some(ports) = &ports {
                ports.audit(
                    Kind::Forward,
                    json!({
                        "decision": "refused",
                        "port": request.hello.as_ref().map(|h| h.port),
                        "reason": refusal.reason(),
                        "message": refusal.to_string(),
                        "peer": peer.to_string(),
                    }),
                );
            }
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
                if answer(&mut stream, &request, &refusal.frame())
                    .await
                    .is_ok()
                {
                    let _ = stream.shutdown().await;
                }
            })
            .await;
            return;
        }
    };
    let grant = *admission.grant.get();
    let ok = json!({
        "type": "forward_ok",
        "port": grant.port,
        "target": target_addr.to_string(),
        "visibility": grant.visibility,
        "epoch": grant.epoch,
    });
    let ok = ok.as_object().cloned().unwrap_or_default();
    match tokio::time::timeout(ANSWER_TIMEOUT, answer(&mut stream, &request, &ok)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "host left before forward_ok");
            return;
        }
        Err(_) => {
            warn!(%peer, "host does not read forward_ok; closing");
            return;
        }
    }
    debug!(%peer, port = grant.port, target = %target_addr, "forwarding");
    if let Some(ports) = ports {
        tokio::spawn(forward(ports, stream, target, admission, stop));
    }
}

/// Writes the held handshake frames and the forwarder's answer in one write.
async fn answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &ForwardRequest,
    frame: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), FrameIoError> {
    let mut out = Vec::with_capacity(1024);
    for payload in &request.held {
        out.extend_from_slice(&request.codec.encode_payload(payload)?);
    }
    out.extend_from_slice(&request.codec.encode(frame)?);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

async fn admit_and_connect(
    context: ForwardContext,
    request: &ForwardRequest,
) -> Result<(Admission, TcpStream, SocketAddr), ForwardRefusal> {
    let (ports, codespace) = context.ok_or(ForwardRefusal::Unavailable)?;
    // Single use: the ticket leaves the store before the grant is even looked at, so a
    // replayed first flight can never reach the port.
    if let Some(ticket) = &request.ticket {
        if !ports.tickets().redeem(ticket) {
            return Err(ForwardRefusal::TicketUnknown);
        }
    }
    let admission = ports.admit(
        request.hello.as_ref(),
        &codespace,
        OffsetDateTime::now_utc(),
    )?;
    let port = admission.grant.port;
    let to = ports
        .target_of(port)
        .ok_or(ForwardRefusal::PortUnreachable(port))?;
    let (mut target, addr) = connect(
        &admission.grant,
        ports.config().connect_timeout,
        &to,
        ports.restricted_sockets(),
    )
    .await?;
    if !request.early.is_empty() {
        // A fresh connection's send buffer takes the few KiB of early data at once.
        tokio::time::timeout(
            ports.config().connect_timeout,
            target.write_all(&request.early),
        )
        .await
        .map_err(|_| ForwardRefusal::PortUnreachable(port))?
        .map_err(|_| ForwardRefusal::PortUnreachable(port))?;
    }
    Ok((admission, target, addr))
}

/// Connects to a listener of the owner of an authorized port, at the loopback addresses the
/// owner's listeners are bound to (IPv4 first), in the owner's network namespace. Never to
/// another uid's listener: with none of the owner's left, the port is unreachable. Returns
/// the stream and the address it reached.
async fn connect(
    grant: &Authorized<ForwardGrant>,
    timeout: Duration,
    to: &ForwardTarget,
    restricted: &RestrictedSockets,
) -> Result<(TcpStream, SocketAddr), ForwardRefusal> {
    let port = grant.port;
    for ip in &to.addrs {
        let addr = SocketAddr::new(*ip, port);
        match connect_one(addr, timeout, to.network, restricted).await {
            Ok(s) => {
                // The relay must not add Nagle delays of its own to small writes.
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Err(e) => debug!(%addr, error = %e, "connect failed"),
        }
    }
    Err(ForwardRefusal::PortUnreachable(port))
}

/// Connects to one address. On loopback the kernel runs the whole TCP handshake (or the
/// refusal) inside `connect(2)`, so the outcome is usually known when it returns: then no trip
/// through the reactor (registration, wakeup, a timer) is needed. Otherwise wait for it, at
/// most `timeout`.
async fn connect_one(
    addr: SocketAddr,
    timeout: Duration,
    network: Network,
    restricted: &RestrictedSockets,
) -> io::Result<TcpStream> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let v4 = addr.is_ipv4();
    let family = if v4 {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let socket = move || -> io::Result<std::os::fd::OwnedFd> {
        Ok(rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?)
    };
    let fd = match network {
        Network::Agent => socket()?,
        // A socket belongs to the namespace it was made in: made there (on a thread of its
        // own, off the runtime), it connects to that namespace's loopback.
        // (by the privileged side when the agent is separated).
        Network::Restricted => {
            use crate::guest::privsep::proto::SocketKind;
            use crate::guest::sandbox::netns::NetSocket;
            let kind = if v4 {
                SocketKind::Tcp4
            } else {
                SocketKind::Tcp6
            };
            let restricted = restricted.clone();
            match tokio::task::spawn_blocking(move || restricted.socket(kind, None))
                .await
                .map_err(io::Error::other)??
            {
                Some(NetSocket::New(fd, _)) => fd,
                _ => return Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }
    };
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    sockopt::socket_error(&fd)??;
    let connected = rustix::net::getpeername(&fd).is_ok_and(|a| a.is_some());
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd))?;
    if !connected {
        tokio::time::timeout(timeout, stream.writable())
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        stream.peer_addr()?;
    }
    Ok(stream)
}

/// Raises the soft open-file limit to the hard one: each forwarded connection holds two sockets
/// and two pipes (six descriptors), far beyond the usual soft limit of 1024. Returns the new
/// soft limit, or `None` when it could not be read or changed (then the old one stays).
pub(crate) fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    if current.current == current.maximum {
        return current.current;
    }
    let wanted = Rlimit {
        current: current.maximum,
        maximum: current.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => current.maximum,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            current.current
        }
    }
}

/// A host stream as the relay takes it.
enum Endpoint<S> {
    /// A Unix socket (`unix:` and hybrid vsock listeners): relayed as it is.
    Unix(UnixStream),
    /// An AF_VSOCK socket, registered anew because tokio-vsock does not expose readiness.
    Vsock(AsyncFd<OwnedFd>),
    /// A stream without a descriptor (in-memory, in tests): copied through user space.
    Stream(S),
}

fn endpoint<S: Any>(stream: S) -> io::Result<Endpoint<S>> {
    let mut slot = Some(stream);
    let any: &mut dyn Any = &mut slot;
    if let Some(s) = any
        .downcast_mut::<Option<UnixStream>>()
        .and_then(Option::take)
    {
        return Ok(Endpoint::Unix(s));
    }
    if let Some(s) = any
        .downcast_mut::<Option<tokio_vsock::VsockStream>>()
        .and_then(Option::take)
    {
        return reregister(s).map(Endpoint::Vsock);
    }
    slot.map(Endpoint::Stream)
        .ok_or_else(|| io::Error::other("the host stream was taken twice"))
}

/// Longest single timer while waiting for a wall-clock deadline.
const DEADLINE_STEP: Duration = Duration::from_secs(60);

/// Resolves once the wall clock has passed `until` (never for `None`). It sleeps in steps of
/// at most [`DEADLINE_STEP`] and looks at the wall clock after each, because tokio's timers
/// run on the monotonic clock, which stands still while the VM is paused or snapshotted: a
/// codespace resumed hours later notices within a minute that the authentication expired.
async fn wall_clock_deadline(until: Option<OffsetDateTime>) {
    let Some(until) = until else {
        return std::future::pending().await;
    };
    loop {
        let left = until - OffsetDateTime::now_utc();
        if !left.is_positive() {
            return;
        }
        let step = Duration::try_from(left).map_or(DEADLINE_STEP, |l| l.min(DEADLINE_STEP));
        tokio::time::sleep(step).await;
    }
}

/// Relays an admitted connection until it ends, is revoked, its principal's authentication
/// expires or the agent stops; then records it in the audit trail (who, which port, when, how
/// many bytes each way, how it ended). Bytes on an owner-only port count as activity meanwhile.
async fn forward<S>(
    ports: Arc<PortsService>,
    stream: S,
    target: TcpStream,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = OffsetDateTime::now_utc();
    let meter = Arc::new(Meter::new());
    let watch = ports.watch_activity(&admission, &meter);
    let Admission {
        grant,
        authenticated_until,
        revoked,
        ticket,
        principal,
        owner_only: _,
    } = admission;
    let port = grant.port;
    // Why the relay was cancelled, for the record.
    let cause = std::sync::Mutex::new("");
    let cancel = async {
        let why = tokio::select! {
            _ = revoked => "revoked",
            () = wall_clock_deadline(authenticated_until) => {
                info!(port, "the principal's authentication expired; closing the forwarded connection");
                "authentication-expired"
            }
            stopping = async { stop.wait_for(|s| *s).await.is_ok() } => {
                if !stopping {
                    // No shutdown signal will ever come; only revocation ends us early.
                    std::future::pending::<()>().await;
                }
                "agent-stopping"
            }
        };
        *cause.lock().unwrap_or_else(|p| p.into_inner()) = why;
    };
    let end = match endpoint(stream) {
        Ok(Endpoint::Unix(host)) => relay_metered(host, target, cancel, &meter).await,
        Ok(Endpoint::Vsock(host)) => relay_metered(host, target, cancel, &meter).await,
        Ok(Endpoint::Stream(host)) => relay_streams(host, target, cancel, &meter).await,
        Err(e) => RelayEnd::Failed(e),
    };
    drop(watch);
    let stats = meter.stats();
    let ended = match &end {
        RelayEnd::Finished(_) => "closed",
        RelayEnd::Cancelled => *cause.lock().unwrap_or_else(|p| p.into_inner()),
        _ => "failed",
    };
    ports.audit(
        Kind::Forward,
        json!({
            "decision": "allowed",
            "principal": principal,
            "port": port,
            "visibility": grant.visibility,
            "start": crate::guest::activity::rfc3339(started),
            "end": crate::guest::activity::rfc3339(OffsetDateTime::now_utc()),
            "bytes_to_port": stats.a_to_b,
            "bytes_from_port": stats.b_to_a,
            "ended": ended,
        }),
    );
    match end {
        RelayEnd::Finished(stats) => debug!(
            port = grant.port,
            to_listener = stats.a_to_b,
            to_host = stats.b_to_a,
            "forwarded connection closed"
        ),
        RelayEnd::Cancelled => info!(port = grant.port, "forwarded connection revoked or stopped"),
        RelayEnd::Failed(e) => debug!(port = grant.port, error = %e, "forwarded connection failed"),
        #[allow(unreachable_patterns)]
        _ => {}
    }
    drop(ticket);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guest::ports::config::PortsConfig;
    use crate::wire::grant::{GrantClaims, GrantKey, GrantPrincipal};
    use crate::wire::io::read_frame;
    use base64::Engine as _;
    use tokio::io::AsyncReadExt;

    fn context(port: u16) -> (Arc<PortsService>, CodespaceIdentity) {
        let s = PortsService::new(PortsConfig::default(), None);
        let mut f = serde_json::Map::new();
        f.insert(
            "key".into(),
            base64::engine::general_purpose::STANDARD
                .encode([5u8; 32])
                .into(),
        );
        s.put_grant_key(f).unwrap();
        s.port_opened(port);
        let c = CodespaceIdentity {
            owner: Some("mona".into()),
            ..Default::default()
        };
        (s, c)
    }

    fn request(s: &PortsService, port: u16, login: &str) -> ForwardRequest {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        request_authenticated_at(s, port, login, now, now + 600)
    }

    /// A request whose principal authenticated at `authenticated_at`, with a grant that
    /// expires at `expires_at` (seconds since the Unix epoch).
    fn request_authenticated_at(
        s: &PortsService,
        port: u16,
        login: &str,
        authenticated_at: i64,
        expires_at: i64,
    ) -> ForwardRequest {
        let epoch = s.list(&CodespaceIdentity::default(), Default::default())["ports"][0]["epoch"]
            .as_u64()
            .unwrap();
        let grant = GrantKey::new(&[5; 32]).unwrap().sign(GrantClaims {
            principal: Some(GrantPrincipal {
                login: login.into(),
                organizations: vec![],
                authenticated_at,
            }),
            port,
            epoch,
            expires_at,
        });
        ForwardRequest {
            held: vec![br#"{"type":"ok"}"#.to_vec()],
            hello: Some(ForwardHello {
                port,
                grant: serde_json::to_value(grant).unwrap(),
                ticket: None,
            }),
            ticket: None,
            early: Vec::new(),
            codec: FrameCodec::default(),
            peer: Peer::Unix,
        }
    }

    /// The next frame the agent sent to the host (its object).
    async fn next(
        host: &mut tokio::io::DuplexStream,
    ) -> serde_json::Map<String, serde_json::Value> {
        read_frame(host, &FrameCodec::default())
            .await
            .unwrap()
            .expect("a frame, not the end of the stream")
            .object
    }

    /// Reads frames of these types, in this order.
    async fn expect_frames(host: &mut tokio::io::DuplexStream, kinds: &[&str]) {
        for kind in kinds {
            assert_eq!(next(host).await["type"], *kind);
        }
    }

    #[tokio::test]
    async fn an_admitted_duplex_stream_is_piped_to_the_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (s, c) = context(port);
        let req = request(&s, port, "mona");
        let (mut host, agent) = tokio::io::duplex(4096);
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(serve(Some((s.clone(), c)), agent, req, stop));
        expect_frames(&mut host, &["ok", "forward_ok"]).await;
        let (mut conn, _) = listener.accept().await.unwrap();
        host.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            s.list(&CodespaceIdentity::default(), Default::default())["connections"],
            1
        );
    }

    #[tokio::test]
    async fn a_connection_ends_when_its_principals_authentication_expires() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (s, c) = context(port);
        // Authenticated almost three hours ago: three seconds of authentication left, and a
        // grant that lasts exactly as long (the longest the agent accepts).
        let lifetime = codespace_policy::ports::AUTHENTICATION_LIFETIME.whole_seconds();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let authenticated_at = now - lifetime + 3;
        let req = request_authenticated_at(&s, port, "mona", authenticated_at, now + 3);
        let (mut host, agent) = tokio::io::duplex(4096);
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(serve(Some((s.clone(), c)), agent, req, stop));
        expect_frames(&mut host, &["ok", "forward_ok"]).await;
        let (mut conn, _) = listener.accept().await.unwrap();
        host.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            &buf, b"hi",
            "the connection works while the authentication holds"
        );
        let end = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("the connection outlived its principal's authentication");
        assert_eq!(end.unwrap(), 0, "the listener sees the connection closed");
        assert!(
            OffsetDateTime::now_utc().unix_timestamp() >= authenticated_at + lifetime,
            "closed at the expiry, not before"
        );
        let mut rest = Vec::new();
        assert_eq!(host.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(
            s.list(&CodespaceIdentity::default(), Default::default())["connections"],
            0
        );
    }

    #[tokio::test]
    async fn a_refusal_is_one_error_frame_then_close() {
        let (s, c) = context(1);
        let req = request(&s, 1, "hubot");
        let (mut host, agent) = tokio::io::duplex(4096);
        let (_stop_tx, stop) = watch::channel(false);
        serve(Some((s, c)), agent, req, stop).await;
        expect_frames(&mut host, &["ok"]).await;
        assert_eq!(next(&mut host).await["reason"], "not-owner");
        assert!(read_frame(&mut host, &FrameCodec::default())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn early_bytes_reach_the_listener_first_and_a_used_ticket_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (s, c) = context(port);
        let ticket = s.tickets().issue(1).unwrap().remove(0);
        let mut req = request(&s, port, "mona");
        req.ticket = Some(ticket.clone());
        req.held = vec![
            br#"{"type":"welcome"}"#.to_vec(),
            br#"{"type":"ok"}"#.to_vec(),
        ];
        req.early = b"early ".to_vec();
        let (mut host, agent) = tokio::io::duplex(4096);
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(serve(
            Some((s.clone(), c.clone())),
            agent,
            req,
            stop.clone(),
        ));
        expect_frames(&mut host, &["welcome", "ok", "forward_ok"]).await;
        let (mut conn, _) = listener.accept().await.unwrap();
        host.write_all(b"late").await.unwrap();
        let mut buf = [0u8; 10];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"early late");
        // The same ticket again: refused before the grant is looked at, early bytes dropped.
        let mut again = request(&s, port, "mona");
        again.ticket = Some(ticket);
        again.early = b"never".to_vec();
        let (mut host, agent) = tokio::io::duplex(4096);
        serve(Some((s, c)), agent, again, stop).await;
        expect_frames(&mut host, &["ok"]).await;
        assert_eq!(next(&mut host).await["reason"], "ticket-unknown");
        let no_conn = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            no_conn.is_err(),
            "a refused connection must not reach the listener"
        );
    }
}
