//! The host's client: one authenticated control connection with requests in flight and events.
//!
//! ```text
//! Client::connect(opts) ── dial (retry/backoff) ── hybrid preamble? ── handshake ──▶ Client
//!   request(type, fields) ─ id ─▶ writer (mutex)      reader task ─▶ pending[id] (oneshot)
//!                                                                 └▶ events (bounded queue)
//! ```
//!
//! Requests may be issued concurrently from many tasks; each waits for its own id. When the
//! connection breaks (the VM was suspended, the agent restarted) every pending request fails with
//! [`ClientError::Disconnected`]; [`Reconnecting`] dials again on the next request, so a host
//! supervisor keeps one handle per VM across suspend/resume.
//!
//! The agent is not trusted (a compromised guest holds the shared key): what the reader keeps
//! is bounded ([`super::inbound`]: unread events by bytes, only awaited answers parsed in full),
//! and a frame the protocol does not allow ends the connection with
//! [`ClientError::ProtocolViolation`], which says what the agent did, for the waiting request
//! and every later one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::oneshot;

use super::dial::{Backoff, ConnectAddr, HybridError};
use super::inbound::{classify, EventQueue, Inbound};
use crate::wire::frame::parse_payload;
use crate::wire::handshake::host_start;
use crate::wire::io::{read_payload, write_object, write_payload, FrameIoError};
use crate::wire::message::ErrorFrame;
use crate::wire::{
    AgentInfo, ErrorCode, Event, FrameCodec, HandshakeError, Request, Response, Role, SharedKey,
    WireError, DEFAULT_MAX_FRAME,
};

/// The longest [`Client::handshake`] waits for the agent (a connection made by
/// [`Client::connect`] is bounded by its `attempt_timeout` too).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream the client can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Everything that can go wrong on the host side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not open the socket.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The hybrid-vsock preamble failed.
    #[error("{addr}: {source}")]
    Hybrid {
        /// The address.
        addr: String,
        /// Why.
        source: HybridError,
    },
    /// The handshake failed.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The address.
        addr: String,
        /// Why.
        source: HandshakeError,
    },
    /// The handshake did not finish in time.
    #[error("handshake with {addr} timed out")]
    HandshakeTimeout {
        /// The address.
        addr: String,
    },
    /// A frame could not be read or written.
    #[error("{0}")]
    Frame(#[from] FrameIoError),
    /// The agent answered with an error.
    #[error("agent error {}: {}", .0.code, .0.message)]
    Remote(WireError),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection is gone.
    #[error("connection to the agent closed")]
    Disconnected,
    /// The agent sent what the protocol does not allow (a frame over the size limit, a
    /// payload that is not a JSON object, a malformed error frame or answer); the connection
    /// is closed. The guest may be compromised: this is not worth a retry.
    #[error("protocol violation by the agent: {0}")]
    ProtocolViolation(String),
    /// The agent's answer does not say what the request needs (a page of `ports_list`
    /// without its list, a paging cursor that goes backwards).
    #[error("unexpected answer to {request}: {reason}")]
    UnexpectedAnswer {
        /// The request.
        request: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Retries exhausted.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether dialing again may help (the agent is not up yet, or went away).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::HandshakeTimeout { .. } | Self::Disconnected => true,
            // The agent's connection slots are full: one may free up.
            Self::Handshake { source, .. } => source.code == ErrorCode::Busy,
            Self::Hybrid { source, .. } => matches!(
                source,
                HybridError::Closed { .. } | HybridError::Timeout { .. } | HybridError::Io(_)
            ),
            Self::Frame(e) => matches!(e, FrameIoError::Truncated | FrameIoError::Io(_)),
            Self::Remote(_)
            | Self::UnexpectedAnswer { .. }
            | Self::ProtocolViolation(_)
            | Self::Timeout(_)
            | Self::GaveUp { .. } => false,
        }
    }
}

/// How to reach and authenticate an agent.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Address.
    pub addr: ConnectAddr,
    /// Shared key (mandatory for `unix:`; the agent decides).
    pub key: Option<SharedKey>,
    /// Maximum frame size.
    pub max_frame_bytes: usize,
    /// Deadline for one attempt (dial, preamble and handshake).
    pub attempt_timeout: Duration,
    /// Retry policy while the agent is not ready.
    pub backoff: Backoff,
}

impl ConnectOptions {
    /// Defaults: 1 MiB frames, 5 s per attempt, [`Backoff::default`].
    pub fn new(addr: ConnectAddr, key: Option<SharedKey>) -> Self {
        Self {
            addr,
            key,
            max_frame_bytes: DEFAULT_MAX_FRAME,
            attempt_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

/// Why a connection ended, as every request waiting on it (or issued later) is told.
#[derive(Debug, Clone)]
enum Ended {
    /// The agent's fatal error frame.
    Fatal(WireError),
    /// The agent broke the protocol: what it did.
    Violation(String),
    /// The stream ended or failed.
    Closed,
}

impl Ended {
    fn error(&self) -> ClientError {
        match self {
            Self::Fatal(e) => ClientError::Remote(e.clone()),
            Self::Violation(what) => ClientError::ProtocolViolation(what.clone()),
            Self::Closed => ClientError::Disconnected,
        }
    }
}

/// Waiters by request id while the connection is up; why it ended once it is not.
type PendingMap = Result<HashMap<u64, oneshot::Sender<Result<Value, ClientError>>>, Ended>;
type Pending = Arc<Mutex<PendingMap>>;

/// Reads one frame's payload from the agent: a frame the codec refuses is the agent's
/// protocol violation, a stream that ends is [`ClientError::Disconnected`].
pub(crate) async fn read_from_agent<R: AsyncRead + Unpin>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Vec<u8>, ClientError> {
    match read_payload(reader, codec).await {
        Ok(Some(payload)) => Ok(payload),
        Ok(None) => Err(ClientError::Disconnected),
        Err(FrameIoError::Frame(e)) => Err(ClientError::ProtocolViolation(e.to_string())),
        Err(e) => Err(ClientError::Frame(e)),
    }
}

/// An established control connection.
pub struct Client {
    info: AgentInfo,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Io>>>,
    codec: FrameCodec,
    pending: Pending,
    next_id: AtomicU64,
    events: Arc<EventQueue>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn dial(addr: &ConnectAddr, timeout: Duration) -> Result<Box<dyn Io>, ClientError> {
    Ok(Box::new(super::forward::dial(addr, timeout).await?))
}

impl Client {
    /// Connects, retrying with backoff while the agent is not ready.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, ClientError> {
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match Self::connect_once(opts).await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_transient() => {
                    let delay = opts.backoff.delay(attempts);
                    if opts
                        .backoff
                        .deadline
                        .is_some_and(|d| start.elapsed() + delay > d)
                    {
                        return Err(ClientError::GaveUp {
                            attempts,
                            last: Box::new(e),
                        });
                    }
                    tracing::debug!(error = %e, attempts, "agent not ready; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: dial, preamble, handshake.
    pub async fn connect_once(opts: &ConnectOptions) -> Result<Self, ClientError> {
        let name = opts.addr.to_string();
        let attempt = async {
            let stream = dial(&opts.addr, opts.attempt_timeout).await?;
            Self::handshake(stream, opts.key.clone(), opts.max_frame_bytes, &name).await
        };
        tokio::time::timeout(opts.attempt_timeout, attempt)
            .await
            .map_err(|_| ClientError::HandshakeTimeout { addr: name.clone() })?
    }

    /// Runs the handshake over an already-open stream (tests use in-memory pipes), within
    /// [`HANDSHAKE_TIMEOUT`]: an agent that stops answering (a frame announced and never
    /// finished) is [`ClientError::HandshakeTimeout`], never a wait without end.
    pub async fn handshake(
        stream: Box<dyn Io>,
        key: Option<SharedKey>,
        max_frame: usize,
        name: &str,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            Self::handshake_unbounded(stream, key, max_frame, name),
        )
        .await
        .map_err(|_| ClientError::HandshakeTimeout {
            addr: name.to_owned(),
        })?
    }

    async fn handshake_unbounded(
        stream: Box<dyn Io>,
        key: Option<SharedKey>,
        max_frame: usize,
        name: &str,
    ) -> Result<Self, ClientError> {
        let codec = FrameCodec::new(max_frame);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut nonce = [0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ClientError::Handshake {
                addr: name.to_owned(),
                source: HandshakeError {
                    code: ErrorCode::Internal,
                    message: "random number generator failed".into(),
                },
            })?;
        let hs_err = |source| ClientError::Handshake {
            addr: name.to_owned(),
            source,
        };
        let (state, hello) = host_start(Role::Control, key, nonce);
        write_payload(&mut wr, &codec, &hello).await?;
        let welcome = read_from_agent(&mut rd, &codec).await?;
        let (state, auth) = state.handle(&welcome).map_err(hs_err)?;
        if let Some(auth) = auth {
            write_payload(&mut wr, &codec, &auth).await?;
        }
        let ok = read_from_agent(&mut rd, &codec).await?;
        let info = state.handle(&ok).map_err(hs_err)?;

        let pending: Pending = Arc::new(Mutex::new(Ok(HashMap::new())));
        let events = Arc::new(EventQueue::default());
        let reader = tokio::spawn(read_loop(rd, codec, pending.clone(), events.clone()));
        Ok(Self {
            info,
            writer: tokio::sync::Mutex::new(wr),
            codec,
            pending,
            next_id: AtomicU64::new(1),
            events,
            reader,
        })
    }

    /// What the agent said about itself in `welcome`.
    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    /// Sends a request and waits for its result (at most `timeout`, also sent as `timeout_ms`).
    pub async fn request(
        &self,
        kind: &str,
        fields: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut guard = lock(&self.pending);
            match guard.as_mut() {
                Ok(map) => map.insert(id, tx),
                Err(ended) => return Err(ended.error()),
            };
        }
        let req = Request {
            id,
            kind: kind.to_owned(),
            timeout_ms: Some(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
            fields,
        };
        let sent = {
            let mut w = self.writer.lock().await;
            write_object(&mut *w, &self.codec, &req.to_object()).await
        };
        if let Err(e) = sent {
            forget(&self.pending, id);
            return Err(e.into());
        }
        // A little slack so the agent's own `timeout` error wins over ours.
        match tokio::time::timeout(timeout + Duration::from_millis(500), rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                forget(&self.pending, id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// The next event pushed by the agent; `None` once the connection is closed and every
    /// event received was read. Events nobody reads are kept up to a bound (4 MiB, 1024
    /// events); the newest beyond it are dropped ([`Client::events_dropped`]).
    pub async fn next_event(&self) -> Option<Event> {
        self.events.next().await
    }

    /// How many events were dropped because they were not read in time.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        lock(&self.pending).is_ok()
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, PendingMap> {
    match p.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

fn forget(p: &Pending, id: u64) {
    if let Ok(m) = lock(p).as_mut() {
        m.remove(&id);
    }
}

async fn read_loop(
    mut rd: ReadHalf<Box<dyn Io>>,
    codec: FrameCodec,
    pending: Pending,
    events: Arc<EventQueue>,
) {
    let ended = loop {
        let payload = match read_from_agent(&mut rd, &codec).await {
            Ok(p) => p,
            Err(ClientError::ProtocolViolation(what)) => break Ended::Violation(what),
            Err(e) => {
                tracing::debug!(error = %e, "agent connection ended");
                break Ended::Closed;
            }
        };
        match route(&payload, &pending) {
            // A host that does not read events loses the newest ones, never its answers.
            Ok(true) => {
                if !events.push(payload) {
                    tracing::debug!("event dropped: the client does not read its events");
                }
            }
            Ok(false) => {}
            Err(ended) => break ended,
        }
    };
    if let Ended::Violation(what) = &ended {
        tracing::warn!(violation = %what, "protocol violation by the agent; connection closed");
    }
    let waiting = std::mem::replace(&mut *lock(&pending), Err(ended.clone()));
    for (_, tx) in waiting.unwrap_or_default() {
        let _ = tx.send(Err(ended.error()));
    }
    events.close();
}

/// Acts on one frame from the agent: an answer goes to its waiter; `Ok(true)` says the frame
/// is an event to queue; `Err` ends the connection.
fn route(payload: &[u8], pending: &Pending) -> Result<bool, Ended> {
    match classify(payload).map_err(Ended::Violation)? {
        Inbound::Fatal => match serde_json::from_slice::<ErrorFrame>(payload) {
            Ok(f) => Err(Ended::Fatal(f.error)),
            Err(_) => Err(Ended::Violation("malformed error frame".into())),
        },
        Inbound::Event => Ok(true),
        Inbound::Response(id) => {
            // Parsed in full only when a request waits for it (it asked for the answer).
            let Some(tx) = lock(pending).as_mut().ok().and_then(|m| m.remove(&id)) else {
                tracing::debug!(id, "answer to no request in flight; dropped");
                return Ok(false);
            };
            let resp = parse_payload(payload)
                .ok()
                .and_then(|o| Response::from_object(&o))
                .ok_or_else(|| Ended::Violation(format!("malformed answer to request {id}")))?;
            let _ = tx.send(resp.result.map_err(ClientError::Remote));
            Ok(false)
        }
        Inbound::Other(kind) => {
            tracing::debug!(kind = ?kind, "frame that is no answer nor event; dropped");
            Ok(false)
        }
    }
}

/// A handle that dials again when the connection is gone (VM suspended and resumed, agent
/// restarted). Requests are never re-sent on their own: a request whose connection broke fails,
/// the next one reconnects.
#[derive(Debug)]
pub struct Reconnecting {
    opts: ConnectOptions,
    current: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Reconnecting {
    /// A handle that connects lazily.
    pub fn new(opts: ConnectOptions) -> Self {
        Self {
            opts,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The live client, dialing (with backoff) if there is none.
    pub async fn client(&self) -> Result<Arc<Client>, ClientError> {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref().filter(|c| c.is_connected()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::connect(&self.opts).await?);
        *cur = Some(c.clone());
        Ok(c)
    }

    /// A request on the live client.
    pub async fn request(
        &self,
        kind: &str,
        fields: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.client().await?.request(kind, fields, timeout).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guest::config::CodespaceIdentity;
    use crate::guest::dispatch::{AgentFacts, Dispatcher};
    use crate::guest::health::HealthSampler;
    use crate::guest::server::{Server, ServerSettings};
    use crate::guest::transport::Peer;
    use crate::wire::handshake::AgentIdentity;
    use crate::wire::io::read_frame;
    use std::path::Path;

    fn agent(key: Option<SharedKey>) -> (Box<dyn Io>, tokio::sync::watch::Sender<bool>) {
        let settings = ServerSettings {
            max_frame_bytes: DEFAULT_MAX_FRAME,
            max_connections: 4,
            max_handshakes: 4,
            max_requests_per_connection: 64,
            handshake_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(1),
            allowed_cids: vec![2],
        };
        let facts = AgentFacts {
            agent_id: "vm-1".into(),
            boot_id: "boot".into(),
            started: Instant::now(),
        };
        let d = Arc::new(Dispatcher::new(
            facts,
            None,
            CodespaceIdentity::default(),
            Arc::new(HealthSampler::new(Path::new("/"))),
        ));
        let identity = AgentIdentity {
            agent_id: "vm-1".into(),
            boot_id: "boot".into(),
            capabilities: d.capabilities(),
            public_key: [4; 32],
        };
        let (events, _) = crate::guest::service::EventSink::channel(8);
        let server = Server::new(settings, identity, key, d, events);
        let (a, b) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move { server.serve_connection(b, Peer::Unix, rx).await });
        (Box::new(a), tx)
    }

    #[tokio::test]
    async fn many_requests_in_flight_on_one_connection() {
        let key = SharedKey::new(&[1; 40]).unwrap();
        let (io, _stop) = agent(Some(key.clone()));
        let c = Arc::new(
            Client::handshake(io, Some(key), DEFAULT_MAX_FRAME, "test")
                .await
                .unwrap(),
        );
        assert_eq!(c.info().agent_id, "vm-1");
        assert!(c.info().authenticated);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.request("ping", Map::new(), Duration::from_secs(5)).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), serde_json::json!({"pong": true}));
        }
        let err = c
            .request("nope", Map::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Remote(WireError {
                    code: ErrorCode::Unsupported,
                    ..
                })
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_wrong_key_fails_the_handshake() {
        let (io, _stop) = agent(Some(SharedKey::new(&[1; 32]).unwrap()));
        let err = Client::handshake(
            io,
            Some(SharedKey::new(&[2; 32]).unwrap()),
            DEFAULT_MAX_FRAME,
            "t",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Handshake {
                    source: HandshakeError {
                        code: ErrorCode::Unauthorized,
                        ..
                    },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn pending_requests_fail_when_the_agent_stops() {
        let (io, stop) = agent(None);
        let c = Client::handshake(io, None, DEFAULT_MAX_FRAME, "t")
            .await
            .unwrap();
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = c
            .request("ping", Map::new(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            err.is_transient() || matches!(err, ClientError::Remote(_)),
            "{err}"
        );
        assert!(!c.is_connected());
    }

    /// An in-process agent that completes the handshake honestly (the real agent-side state
    /// machine, key `key`) and hands back its end of the stream, to misbehave on.
    async fn handshaken(key: &SharedKey) -> (Arc<Client>, tokio::io::DuplexStream) {
        use crate::wire::handshake::{AfterHello, AwaitHello};
        use crate::wire::io::read_payload;
        let (host, mut agent) = tokio::io::duplex(1 << 16);
        let client = tokio::spawn(Client::handshake(
            Box::new(host),
            Some(key.clone()),
            DEFAULT_MAX_FRAME,
            "fake",
        ));
        let codec = FrameCodec::default();
        let hello = read_payload(&mut agent, &codec).await.unwrap().unwrap();
        let AfterHello::AwaitAuth { state, welcome } =
            AwaitHello::new(crate::wire::handshake::tests::identity(), Some(key.clone()))
                .handle(&hello, [2; 32])
                .unwrap()
        else {
            panic!("expected the full handshake")
        };
        write_payload(&mut agent, &codec, &welcome).await.unwrap();
        let auth = read_payload(&mut agent, &codec).await.unwrap().unwrap();
        let (_, ok) = state.handle(&auth).unwrap();
        write_payload(&mut agent, &codec, &ok).await.unwrap();
        (Arc::new(client.await.unwrap().unwrap()), agent)
    }

    /// Sends `status` and returns the pending answer and the id the agent saw.
    async fn status_request(
        c: &Arc<Client>,
        agent: &mut tokio::io::DuplexStream,
    ) -> (tokio::task::JoinHandle<Result<Value, ClientError>>, u64) {
        let pending = {
            let c = c.clone();
            tokio::spawn(async move {
                c.request("status", Map::new(), Duration::from_secs(30))
                    .await
            })
        };
        let request = read_frame(agent, &FrameCodec::default())
            .await
            .unwrap()
            .unwrap();
        (pending, request.object["id"].as_u64().unwrap())
    }

    /// Issue 20: a compromised guest floods 60 KB events while the host waits for an answer.
    /// What the host keeps of events nobody read is bounded; the answer still arrives.
    #[tokio::test]
    async fn a_flood_of_unread_events_is_bounded() {
        let key = SharedKey::new(&[1; 32]).unwrap();
        let (c, mut agent) = handshaken(&key).await;
        let (pending, id) = status_request(&c, &mut agent).await;
        let codec = FrameCodec::default();
        let pad = "x".repeat(60_000);
        for n in 0..600 {
            let ev = Event::new("noise", serde_json::json!({"n": n, "pad": pad}));
            write_object(&mut agent, &codec, &ev.to_object())
                .await
                .unwrap();
        }
        let answer = Response {
            id: Some(id),
            result: Ok(serde_json::json!({"fine": true})),
        };
        write_object(&mut agent, &codec, &answer.to_object())
            .await
            .unwrap();
        assert_eq!(pending.await.unwrap().unwrap()["fine"], true);
        let mut kept = 0usize;
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(50), c.next_event()).await
        {
            kept += serde_json::to_vec(&ev.to_object()).unwrap().len();
        }
        assert!(kept > 0, "the first events are kept for a reader");
        assert!(kept <= 8 << 20, "{kept} bytes of unread events kept");
    }

    /// Issue 20: a protocol violation by the agent is reported as what the agent did, to the
    /// request that was waiting and to every later one; it is not worth retrying.
    #[tokio::test]
    async fn a_protocol_violation_by_the_agent_says_what_the_agent_did() {
        let oversized = 0xFFFF_FFF0u32.to_be_bytes().to_vec();
        let mut not_json = 5u32.to_be_bytes().to_vec();
        not_json.extend_from_slice(b"{nope");
        let mut not_object = 2u32.to_be_bytes().to_vec();
        not_object.extend_from_slice(b"42");
        let bad_error = br#"{"type":"error","error":"no"}"#;
        let mut malformed_error = (bad_error.len() as u32).to_be_bytes().to_vec();
        malformed_error.extend_from_slice(bad_error);
        let cases: [(&[u8], &str); 5] = [
            (
                &oversized,
                "protocol violation by the agent: frame of 4294967280 bytes exceeds the maximum of 1048576 bytes",
            ),
            (&[0, 0, 0, 0], "protocol violation by the agent: zero-length frame"),
            (&not_json, "protocol violation by the agent: frame payload is not valid JSON"),
            (&not_object, "protocol violation by the agent: "),
            (&malformed_error, "protocol violation by the agent: malformed error frame"),
        ];
        for (bytes, expected) in cases {
            let key = SharedKey::new(&[1; 32]).unwrap();
            let (c, mut agent) = handshaken(&key).await;
            let (pending, _) = status_request(&c, &mut agent).await;
            tokio::io::AsyncWriteExt::write_all(&mut agent, bytes)
                .await
                .unwrap();
            let err = pending.await.unwrap().unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err}");
            assert!(!err.is_transient(), "{err}");
            let again = c
                .request("ping", Map::new(), Duration::from_secs(5))
                .await
                .unwrap_err();
            assert_eq!(again.to_string(), err.to_string());
            assert!(!c.is_connected());
        }
    }

    /// Found by `fuzz/fuzz_targets/host.rs`: an agent that announces a frame, sends part of it
    /// and then stays silent must not hold `Client::handshake` forever (the case the fuzz
    /// target minimized: a 8704-byte frame of which 39 bytes came).
    #[tokio::test(start_paused = true)]
    async fn a_silent_agent_cannot_hold_the_handshake() {
        let (host, mut agent) = tokio::io::duplex(1 << 16);
        tokio::io::AsyncWriteExt::write_all(&mut agent, &[0, 0, 0x22, 0, b'{'])
            .await
            .unwrap();
        let key = SharedKey::new(&[1; 32]).unwrap();
        let err = Client::handshake(Box::new(host), Some(key), DEFAULT_MAX_FRAME, "silent")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::HandshakeTimeout { .. }), "{err}");
        drop(agent);
    }

    /// An agent that goes away while a request waits is a disconnection (worth a retry), not
    /// an error the agent answered.
    #[tokio::test]
    async fn a_closed_connection_is_a_disconnection() {
        let key = SharedKey::new(&[1; 32]).unwrap();
        let (c, mut agent) = handshaken(&key).await;
        let (pending, _) = status_request(&c, &mut agent).await;
        drop(agent);
        let err = pending.await.unwrap().unwrap_err();
        assert!(matches!(err, ClientError::Disconnected), "{err}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn connect_gives_up_after_the_deadline_on_a_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ConnectOptions::new(ConnectAddr::Unix(dir.path().join("none.sock")), None);
        opts.backoff = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            deadline: Some(Duration::from_millis(100)),
        };
        let err = Client::connect(&opts).await.unwrap_err();
        assert!(
            matches!(err, ClientError::GaveUp { attempts, .. } if attempts > 1),
            "{err}"
        );
    }
}
