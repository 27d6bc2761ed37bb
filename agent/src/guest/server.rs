//! The daemon's connection handling: accept, check the peer, handshake, then serve requests.
//!
//! ```text
//! accept loop (never waits) ── check_peer ── admission ── spawn per connection
//!   admission: all slots taken ─▶ `busy` at once; handshake budget full ─▶ evict the oldest
//!              handshake (≥ 250 ms old, it hears `busy`), else the newcomer hears `busy`
//!   connection: handshake (timeout, evictable) ─▶ a slot of Semaphore(max_connections)
//!               (none free ─▶ `busy`) ─▶ control loop
//!               role forward ─▶ guest::ports::forward (grant check, then a byte relay)
//!               forward hello with a ticket: its `auth` follows at once (wire::ticket)
//!     reader: frame → Request → permit(max_requests_per_connection) → spawn handler (timeout)
//!     handlers ─┐
//!     events  ──┼─▶ mpsc (bounded) ─▶ writer task (each write has a deadline)
//!               │
//!   shutdown: stop accepting, stop reading, let in-flight requests answer, close (bounded grace)
//! ```
//!
//! Isolation between clients: each connection has its own tasks, its own bounded queue and its
//! own write deadline. A client that never reads its responses fills only its own queue and is
//! dropped when a write stalls; a client that never finishes the handshake is cut by the
//! handshake timeout; a malformed frame closes only that connection. Events are offered to each
//! connection with `try_send`, so a slow consumer loses events (and is told how many) instead of
//! slowing the others.
//!
//! Admission (issue 16, part 4): an unauthenticated peer must not keep the host out. A
//! connection in the handshake holds no connection slot; it holds a place in a separate, small
//! budget (`max_handshakes`, 16), oldest first. A newcomer to a full budget evicts the oldest
//! handshake if that one has had `HANDSHAKE_GRACE` (a host's handshake takes milliseconds), so
//! a flood of idle connections is cycled out while the host's newest connection gets through;
//! within the grace the newcomer is refused, so a burst of the host's own connections retries
//! instead of evicting itself. Only a completed handshake takes one of `max_connections` slots.
//! Every refusal is the `busy` error frame (the handshake's error frame, read by the host in place
//! of `welcome`), written only if the socket takes it at once: the accept loop never waits, so
//! the listen backlog never fills behind a stuck peer.
//!
//! Threads and memory: non-inline requests run on tokio's blocking pool, which the binary bounds
//! (8 threads); beyond `max_requests_per_connection` in flight a request gets `busy`, and each
//! connection's answers queue holds at most `OUT_QUEUE` frames, so a pipelined flood costs queued
//! work, not threads, and nothing grows without bound.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::broker::admission::{RefusalReports, Report};
use super::dispatch::Dispatcher;
use super::ports::forward::{self, ForwardRequest};
use super::ports::ForwardRefusal;
use super::request::Request;
use super::service::EventSink;
use super::trail::Kind;
use super::transport::{check_peer, Conn, Listener, Peer, PeerDecision};
use crate::wire::handshake::{AfterHello, AgentIdentity, Agreed, AwaitHello, HandshakeError};
use crate::wire::io::{read_frame, read_payload, write_object, write_payload, FrameIoError};
use crate::wire::message::{to_object, ErrorFrame, ForwardHello, RequestId};
use crate::wire::ticket::ForwardTicket;
use crate::wire::{self, ErrorCode, Event, FrameCodec, Response, Role, SharedKey, WireError};

/// How long one frame write may take before the client is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing queue per connection (responses and events).
const OUT_QUEUE: usize = 256;
/// Read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;
/// How long a refused peer gets to take its `busy` frame.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection in the handshake is safe from eviction by newer ones: enough for a
/// host's handshake (a few milliseconds over vsock), so a burst of the host's own connections
/// is refused (and retried) rather than evicting itself.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(250);

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Maximum frame payload.
    pub max_frame_bytes: usize,
    /// Concurrent connections past the handshake (control and forward).
    pub max_connections: usize,
    /// Concurrent connections still in the handshake (unauthenticated).
    pub max_handshakes: usize,
    /// Requests in flight per connection.
    pub max_requests_per_connection: usize,
    /// Deadline of the whole handshake.
    pub handshake_timeout: Duration,
    /// Default and upper bound of a request's deadline.
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Allowed vsock peer CIDs.
    pub allowed_cids: Vec<u32>,
}

struct Shared {
    settings: ServerSettings,
    codec: FrameCodec,
    identity: AgentIdentity,
    key: Option<SharedKey>,
    dispatcher: Arc<Dispatcher>,
    events: EventSink,
    rng: SystemRandom,
    /// Refused peers and handshakes go into the audit trail at a bounded rate: anyone who can
    /// reach the listener can be refused as often as they like.
    refusals: std::sync::Mutex<RefusalReports>,
}

impl Shared {
    /// Records a refused connection in the audit trail, within the refusal rate (a flood is
    /// counted, and the count goes with the next record).
    fn record_refusal(&self, mut fields: Value) {
        let report = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(Instant::now());
        if let Report::Send { unreported } = report {
            if unreported > 0 {
                fields["unrecorded_before"] = unreported.into();
            }
            self.events.audit(Kind::Refusal, fields);
        }
    }
}

/// The agent's server: cheap to clone, one per process.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// What the handshake hands to the forwarder.
struct ForwardStart {
    hello: Option<ForwardHello>,
    /// Handshake frames held back for the answer's write.
    held: Vec<Vec<u8>>,
    ticket: Option<ForwardTicket>,
}

/// Why a connection ended during the handshake.
enum HandshakeEnd {
    /// Tell the peer, then close.
    Refuse(HandshakeError),
    /// A forward ticket's proof failed: a named forward refusal, then close.
    RefuseForward(ForwardRefusal),
    /// The peer went away; nothing to say.
    Closed,
}

impl From<HandshakeError> for HandshakeEnd {
    fn from(e: HandshakeError) -> Self {
        Self::Refuse(e)
    }
}

fn io_end(e: FrameIoError) -> HandshakeEnd {
    match e {
        FrameIoError::Frame(f) => HandshakeEnd::Refuse(HandshakeError {
            code: ErrorCode::InvalidFrame,
            message: f.to_string(),
        }),
        FrameIoError::Truncated | FrameIoError::Io(_) => HandshakeEnd::Closed,
        // Future variants: treat as a closed connection.
        #[allow(unreachable_patterns)]
        _ => HandshakeEnd::Closed,
    }
}

impl Server {
    /// Builds the server. `identity` is what `welcome` announces; `key` makes auth mandatory.
    pub fn new(
        settings: ServerSettings,
        identity: AgentIdentity,
        key: Option<SharedKey>,
        dispatcher: Arc<Dispatcher>,
        events: EventSink,
    ) -> Self {
        let codec = FrameCodec::new(settings.max_frame_bytes);
        Self {
            shared: Arc::new(Shared {
                settings,
                codec,
                identity,
                key,
                dispatcher,
                events,
                rng: SystemRandom::new(),
                refusals: std::sync::Mutex::new(RefusalReports::default()),
            }),
        }
    }

    /// Accepts connections until `shutdown` resolves, then drains: in-flight requests get up to
    /// `shutdown_grace` to answer, then every connection is closed.
    ///
    /// The loop never waits for a slot: a connection the agent cannot take hears `busy` at once
    /// (see the module doc, "Admission").
    pub(crate) async fn run(&self, listener: Listener, shutdown: impl Future<Output = ()>) {
        let settings = &self.shared.settings;
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        let mut handshakes = Handshakes::new(settings.max_handshakes);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while conns.try_join_next().is_some() {}
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = &mut shutdown => break,
            };
            let (conn, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let PeerDecision::Refuse(reason) = check_peer(&peer, &settings.allowed_cids) {
                warn!(%peer, %reason, "connection refused");
                self.shared.record_refusal(
                    json!({"what": "peer", "peer": peer.to_string(), "reason": reason.to_string()}),
                );
                continue;
            }
            let admitted = if slots.available_permits() == 0 {
                Err("all connection slots are taken")
            } else {
                handshakes
                    .admit(Instant::now())
                    .ok_or("too many connections in the handshake")
            };
            let evicted = match admitted {
                Ok(evicted) => evicted,
                Err(why) => {
                    debug!(%peer, why, "connection refused: busy");
                    match conn {
                        Conn::Unix(mut s) => refuse_now(&mut s, &self.shared.codec, why).await,
                        Conn::Vsock(mut s) => refuse_now(&mut s, &self.shared.codec, why).await,
                    }
                    continue;
                }
            };
            let admission = Admission {
                evicted,
                slots: slots.clone(),
            };
            let server = self.clone();
            let stop = stop_rx.clone();
            conns.spawn(async move {
                match conn {
                    Conn::Unix(s) => server.serve_admitted(s, peer, stop, admission).await,
                    Conn::Vsock(s) => server.serve_admitted(s, peer, stop, admission).await,
                }
            });
        }
        info!(
            connections = conns.len(),
            "shutting down: draining connections"
        );
        drop(listener);
        let _ = self
            .shared
            .events
            .send(Event::new("shutting_down", Value::Null));
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(
            self.shared.settings.shutdown_grace + Duration::from_secs(1),
            async { while conns.join_next().await.is_some() {} },
        )
        .await;
        if drained.is_err() {
            warn!("connections did not drain in time; closing them");
            conns.abort_all();
        }
    }

    /// Serves one connection (any byte stream) until it closes or `stop` turns true. Outside
    /// [`Server::run`]'s admission: never evicted, a slot of its own.
    pub async fn serve_connection<S>(&self, stream: S, peer: Peer, stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_never, evicted) = oneshot::channel();
        let admission = Admission {
            evicted,
            slots: Arc::new(Semaphore::new(1)),
        };
        self.serve_admitted(stream, peer, stop, admission).await;
    }

    /// Serves one admitted connection: the handshake (unless evicted), then a connection slot
    /// (or `busy`), then the role's loop.
    async fn serve_admitted<S>(
        &self,
        stream: S,
        peer: Peer,
        mut stop: watch::Receiver<bool>,
        admission: Admission,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let sh = &self.shared;
        let Admission { mut evicted, slots } = admission;
        let (rd, mut wr) = tokio::io::split(stream);
        // Buffered: a frame's header and payload usually arrive in one read system call.
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
        let handshake = tokio::time::timeout(
            sh.settings.handshake_timeout,
            self.handshake(&mut rd, &mut wr),
        );
        let outcome = tokio::select! {
            r = handshake => Some(r),
            // A dropped sender (no eviction possible) disables this branch.
            Ok(()) = &mut evicted => None,
        };
        let Some(outcome) = outcome else {
            debug!(%peer, "handshake evicted by a newer connection");
            refuse_busy(
                &mut wr,
                &sh.codec,
                "evicted: too many connections in the handshake",
            )
            .await;
            return;
        };
        // The handshake is over: its place in the handshake budget is free again.
        drop(evicted);
        let (agreed, forward) = match outcome {
            Ok(Ok(a)) => a,
            Ok(Err(HandshakeEnd::Refuse(e))) => {
                warn!(%peer, code = %e.code, reason = %e.message, "handshake refused");
                sh.record_refusal(json!({"what": "handshake", "peer": peer.to_string(),
                                         "code": e.code, "reason": e.message}));
                let _ = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    write_payload(&mut wr, &sh.codec, &e.frame_payload()),
                )
                .await;
                return;
            }
            Ok(Err(HandshakeEnd::RefuseForward(refusal))) => {
                warn!(%peer, reason = refusal.reason(), "forward refused: {refusal}");
                sh.record_refusal(json!({"what": "forward-ticket", "peer": peer.to_string(),
                                         "reason": refusal.reason(), "message": refusal.to_string()}));
                let _ = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    write_object(&mut wr, &sh.codec, &refusal.frame()),
                )
                .await;
                return;
            }
            Ok(Err(HandshakeEnd::Closed)) => {
                debug!(%peer, "peer left during the handshake");
                return;
            }
            Err(_) => {
                warn!(%peer, "handshake timed out");
                sh.record_refusal(json!({"what": "handshake", "peer": peer.to_string(),
                                         "code": ErrorCode::Timeout, "reason": "handshake not completed in time"}));
                let e = WireError::new(ErrorCode::Timeout, "handshake not completed in time");
                let _ = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    write_object(&mut wr, &sh.codec, &to_object(&ErrorFrame::new(e))),
                )
                .await;
                return;
            }
        };
        let Ok(_slot) = slots.try_acquire_owned() else {
            warn!(%peer, "connection refused after its handshake: all slots are taken");
            refuse_busy(&mut wr, &sh.codec, "all connection slots are taken").await;
            return;
        };
        if let Some(start) = forward {
            // The connection now belongs to the forwarder (guest::ports::forward). Bytes the
            // host sent behind its last handshake frame may sit in our read buffer already:
            // they are the stream's first bytes (early data), handed over with the rest.
            let request = ForwardRequest {
                hello: start.hello,
                held: start.held,
                ticket: start.ticket,
                early: rd.buffer().to_vec(),
                codec: sh.codec,
                peer,
            };
            let stream = rd.into_inner().unsplit(wr);
            forward::serve(sh.dispatcher.forward_context(), stream, request, stop).await;
            return;
        }
        if agreed.role != Role::Control {
            let e = WireError::new(
                ErrorCode::Unsupported,
                "this agent serves only control connections",
            );
            let _ = tokio::time::timeout(
                WRITE_TIMEOUT,
                write_object(&mut wr, &sh.codec, &to_object(&ErrorFrame::new(e))),
            )
            .await;
            return;
        }
        info!(%peer, version = agreed.version, "control connection established");
        if *stop.borrow() {
            return;
        }

        let (out_tx, mut out_rx) = mpsc::channel::<Map<String, Value>>(OUT_QUEUE);
        let codec = sh.codec;
        let writer = tokio::spawn(async move {
            while let Some(obj) = out_rx.recv().await {
                match tokio::time::timeout(WRITE_TIMEOUT, write_object(&mut wr, &codec, &obj)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "write failed");
                        break;
                    }
                    Err(_) => {
                        warn!("client does not read; dropping the connection");
                        break;
                    }
                }
            }
            let _ = wr.shutdown().await;
        });
        let forwarder = tokio::spawn(forward_events(sh.events.subscribe(), out_tx.clone()));

        let in_flight = Arc::new(Semaphore::new(sh.settings.max_requests_per_connection));
        let mut requests = JoinSet::new();
        loop {
            while requests.try_join_next().is_some() {}
            let frame = tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = out_tx.closed() => break,
                f = read_frame(&mut rd, &sh.codec) => f,
            };
            let object = match frame {
                Ok(Some(f)) => f.object,
                Ok(None) => break,
                Err(FrameIoError::Frame(e)) => {
                    warn!(%peer, error = %e, "invalid frame; closing the connection");
                    let err =
                        ErrorFrame::new(WireError::new(ErrorCode::InvalidFrame, e.to_string()));
                    let _ = out_tx.send(to_object(&err)).await;
                    break;
                }
                Err(e) => {
                    debug!(%peer, error = %e, "connection ended");
                    break;
                }
            };
            let id = object.get("id").and_then(Value::as_u64);
            let envelope = match wire::Request::parse(object) {
                Ok(r) => r,
                Err(e) => {
                    let resp = Response {
                        id,
                        result: Err(WireError::new(ErrorCode::BadRequest, e.to_string())),
                    };
                    if out_tx.send(resp.to_object()).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let (req_id, timeout_ms) = (envelope.id, envelope.timeout_ms);
            let req = Request::from_frame(envelope.kind, envelope.fields);
            let req = match sh.dispatcher.start_job(req) {
                Err(req) => req,
                Ok(job) => {
                    // Long-running (lifecycle): its own deadline, polled on a task of this
                    // connection so other requests keep being served.
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        if out_tx.send(busy(req_id)).await.is_err() {
                            break;
                        }
                        continue;
                    };
                    let tx = out_tx.clone();
                    // The work is a task of its own: a run goes on when this connection goes
                    // away (its output stays in the run log and reaches other connections as
                    // events); only its own deadline stops it.
                    let deadline = job.deadline;
                    let mut work = tokio::spawn(job.work);
                    requests.spawn(async move {
                        let result = match tokio::time::timeout(deadline, &mut work).await {
                            Ok(Ok(r)) => r,
                            Ok(Err(join)) => {
                                warn!(id = req_id, error = %join, "long-running request failed");
                                Err(WireError::new(
                                    ErrorCode::Internal,
                                    "request handler failed; see the agent log",
                                ))
                            }
                            Err(_) => {
                                work.abort();
                                Err(WireError::new(
                                    ErrorCode::Timeout,
                                    format!("no result within {} ms", deadline.as_millis()),
                                ))
                            }
                        };
                        let resp = Response {
                            id: Some(req_id),
                            result,
                        };
                        let _ = tx.send(resp.to_object()).await;
                        drop(permit);
                    });
                    continue;
                }
            };
            if req.is_inline() {
                // Cheap and non-blocking: answered right here, no task, no thread hop.
                let id = req_id;
                let result = sh.dispatcher.handle(req).map_err(|e| e.wire());
                if out_tx
                    .send(
                        Response {
                            id: Some(id),
                            result,
                        }
                        .to_object(),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                if out_tx.send(busy(req_id)).await.is_err() {
                    break;
                }
                continue;
            };
            let limit = sh.settings.request_timeout;
            let deadline = timeout_ms.map_or(limit, |ms| Duration::from_millis(ms).min(limit));
            let dispatcher = sh.dispatcher.clone();
            let tx = out_tx.clone();
            requests.spawn(async move {
                let id = req_id;
                debug!(id, kind = %req.name(), "request");
                let work = tokio::task::spawn_blocking(move || dispatcher.handle(req));
                let result = match tokio::time::timeout(deadline, work).await {
                    Ok(Ok(r)) => r.map_err(|e| e.wire()),
                    Ok(Err(join)) => {
                        warn!(id, error = %join, "request handler failed");
                        Err(WireError::new(
                            ErrorCode::Internal,
                            "request handler failed; see the agent log",
                        ))
                    }
                    Err(_) => Err(WireError::new(
                        ErrorCode::Timeout,
                        format!("no result within {} ms", deadline.as_millis()),
                    )),
                };
                let _ = tx
                    .send(
                        Response {
                            id: Some(id),
                            result,
                        }
                        .to_object(),
                    )
                    .await;
                drop(permit);
            });
        }
        // Drain: requests already accepted still answer (each has its own deadline).
        let grace = sh.settings.shutdown_grace;
        if tokio::time::timeout(grace, async {
            while requests.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            requests.abort_all();
        }
        forwarder.abort();
        drop(out_tx);
        let _ = writer.await;
        debug!(%peer, "connection closed");
    }

    async fn handshake<R, W>(
        &self,
        rd: &mut R,
        wr: &mut W,
    ) -> Result<(Agreed, Option<ForwardStart>), HandshakeEnd>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let sh = &self.shared;
        // Raw payloads: `AwaitHello` and friends parse each frame once, straight into its type.
        let hello = read_payload(rd, &sh.codec)
            .await
            .map_err(io_end)?
            .ok_or(HandshakeEnd::Closed)?;
        let mut nonce = [0u8; 32];
        sh.rng.fill(&mut nonce).map_err(|_| HandshakeError {
            code: ErrorCode::Internal,
            message: "random number generator failed".into(),
        })?;
        let start = AwaitHello::new(sh.identity.clone(), sh.key.clone());
        let mut ticket = None;
        let mut held = Vec::with_capacity(2);
        let (mut agreed, ok) = match start.handle(&hello, nonce)? {
            AfterHello::Established {
                agreed,
                welcome,
                ok,
            } => {
                write_payload(wr, &sh.codec, &welcome)
                    .await
                    .map_err(io_end)?;
                (agreed, ok)
            }
            AfterHello::AwaitAuth { state, welcome } => {
                write_payload(wr, &sh.codec, &welcome)
                    .await
                    .map_err(io_end)?;
                let auth = read_payload(rd, &sh.codec)
                    .await
                    .map_err(io_end)?
                    .ok_or(HandshakeEnd::Closed)?;
                state.handle(&auth)?
            }
            AfterHello::TicketProof { state } => {
                // The `auth` came in the same flight as the hello: usually it is buffered.
                let auth = read_payload(rd, &sh.codec)
                    .await
                    .map_err(io_end)?
                    .ok_or(HandshakeEnd::Closed)?;
                let proven = state.handle(&auth).map_err(|e| match e.code {
                    ErrorCode::Unauthorized => {
                        HandshakeEnd::RefuseForward(ForwardRefusal::TicketForged)
                    }
                    _ => HandshakeEnd::Refuse(e),
                })?;
                // Nothing was sent yet: `welcome` goes out with `ok` and the answer.
                held.push(proven.welcome);
                ticket = Some(proven.ticket);
                (proven.agreed, proven.ok)
            }
        };
        if agreed.role == Role::Forward {
            // The forwarder sends `ok` together with its answer (one write, one wakeup of the
            // host).
            held.push(ok);
            let forward = agreed.forward.take();
            return Ok((
                agreed,
                Some(ForwardStart {
                    hello: forward,
                    held,
                    ticket,
                }),
            ));
        }
        write_payload(wr, &sh.codec, &ok).await.map_err(io_end)?;
        Ok((agreed, None))
    }
}

/// What the accept loop hands to a connection: how it learns that it was evicted from the
/// handshake budget, and the slots it takes one of once the handshake is done.
struct Admission {
    evicted: oneshot::Receiver<()>,
    slots: Arc<Semaphore>,
}

/// Connections still in the handshake, oldest first: at most `max`. A new connection takes the
/// place of the oldest one that has had `HANDSHAKE_GRACE`; if none has, the new one is
/// refused. Pure bookkeeping (time is passed in); only the accept loop touches it.
struct Handshakes {
    max: usize,
    queue: VecDeque<(Instant, oneshot::Sender<()>)>,
}

impl Handshakes {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            queue: VecDeque::new(),
        }
    }

    /// Admits a connection arriving at `now`: its eviction notice, or `None` (refuse it).
    fn admit(&mut self, now: Instant) -> Option<oneshot::Receiver<()>> {
        // A connection drops its receiver when its handshake ends.
        self.queue.retain(|(_, tx)| !tx.is_closed());
        if self.queue.len() >= self.max {
            let oldest = self.queue.front().map(|(since, _)| *since)?;
            if now.saturating_duration_since(oldest) < HANDSHAKE_GRACE {
                return None;
            }
            if let Some((_, tx)) = self.queue.pop_front() {
                let _ = tx.send(());
            }
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push_back((now, tx));
        Some(rx)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

/// The `busy` error frame that refuses a connection before (or instead of) its handshake.
fn busy_frame(why: &str) -> Map<String, Value> {
    to_object(&ErrorFrame::new(WireError::new(ErrorCode::Busy, why)))
}

/// Tells a refused peer `busy` (bounded wait), then the caller closes.
async fn refuse_busy<W: AsyncWrite + Unpin>(wr: &mut W, codec: &FrameCodec, why: &str) {
    let _ = tokio::time::timeout(
        REFUSAL_WRITE_TIMEOUT,
        write_object(wr, codec, &busy_frame(why)),
    )
    .await;
}

/// Tells a refused peer `busy` only if its socket takes the frame right away: the accept loop
/// never waits on a peer (a fresh socket's empty send buffer always takes it).
async fn refuse_now<W: AsyncWrite + Unpin>(wr: &mut W, codec: &FrameCodec, why: &str) {
    // `timeout` polls the write once before it looks at the (already expired) deadline.
    let _ = tokio::time::timeout(Duration::ZERO, write_object(wr, codec, &busy_frame(why))).await;
}

/// The answer to a request over the connection's bound of requests in flight.
fn busy(id: RequestId) -> Map<String, Value> {
    Response {
        id: Some(id),
        result: Err(WireError::new(
            ErrorCode::Busy,
            "too many requests in flight on this connection",
        )),
    }
    .to_object()
}

/// Copies broadcast events into one connection's queue without ever waiting on it.
async fn forward_events(mut rx: broadcast::Receiver<Event>, tx: mpsc::Sender<Map<String, Value>>) {
    let mut lost: u64 = 0;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            () = tx.closed() => return,
        };
        match ev {
            Ok(ev) => {
                if lost > 0
                    && tx
                        .try_send(Event::new("events_lost", json!({"count": lost})).to_object())
                        .is_ok()
                {
                    lost = 0;
                }
                if tx.try_send(ev.to_object()).is_err() {
                    lost += 1;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => lost += n,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
