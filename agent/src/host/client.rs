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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::dial::{Backoff, ConnectAddr, HybridError};
use crate::wire::handshake::host_start;
use crate::wire::io::{read_frame, write_object, write_payload, FrameIoError};
use crate::wire::message::ErrorFrame;
use crate::wire::{
    AgentInfo, ErrorCode, Event, FrameCodec, HandshakeError, Request, Response, Role, SharedKey,
    WireError, DEFAULT_MAX_FRAME,
};

/// Events buffered for a client that does not read them.
const EVENT_QUEUE: usize = 1024;

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

/// Waiters by request id; `None` once the connection is closed.
type PendingMap = Option<HashMap<u64, oneshot::Sender<Result<Value, WireError>>>>;
type Pending = Arc<Mutex<PendingMap>>;

/// An established control connection.
pub struct Client {
    info: AgentInfo,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Io>>>,
    codec: FrameCodec,
    pending: Pending,
    next_id: AtomicU64,
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
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

    /// Runs the handshake over an already-open stream (tests use in-memory pipes).
    pub async fn handshake(
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
        let welcome = read_frame(&mut rd, &codec)
            .await?
            .ok_or(ClientError::Disconnected)?;
        let (state, auth) = state.handle(&welcome.payload).map_err(hs_err)?;
        if let Some(auth) = auth {
            write_payload(&mut wr, &codec, &auth).await?;
        }
        let ok = read_frame(&mut rd, &codec)
            .await?
            .ok_or(ClientError::Disconnected)?;
        let info = state.handle(&ok.payload).map_err(hs_err)?;

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let reader = tokio::spawn(read_loop(rd, codec, pending.clone(), ev_tx));
        Ok(Self {
            info,
            writer: tokio::sync::Mutex::new(wr),
            codec,
            pending,
            next_id: AtomicU64::new(1),
            events: tokio::sync::Mutex::new(ev_rx),
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
            let Some(map) = guard.as_mut() else {
                return Err(ClientError::Disconnected);
            };
            map.insert(id, tx);
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
            Ok(Ok(Err(e))) => Err(ClientError::Remote(e)),
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                forget(&self.pending, id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// The next event pushed by the agent; `None` once the connection is closed.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        lock(&self.pending).is_some()
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, PendingMap> {
    match p.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

fn forget(p: &Pending, id: u64) {
    if let Some(m) = lock(p).as_mut() {
        m.remove(&id);
    }
}

async fn read_loop(
    mut rd: ReadHalf<Box<dyn Io>>,
    codec: FrameCodec,
    pending: Pending,
    events: mpsc::Sender<Event>,
) {
    let fatal = loop {
        let frame = match read_frame(&mut rd, &codec).await {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => {
                tracing::debug!(error = %e, "agent connection ended");
                break None;
            }
        };
        if frame.object.get("type").and_then(Value::as_str) == Some("error") {
            let e: Option<ErrorFrame> = serde_json::from_value(Value::Object(frame.object)).ok();
            break e.map(|f| f.error);
        }
        if let Some(ev) = Event::from_object(&frame.object) {
            // A host that does not read events loses the newest ones, never its responses.
            let _ = events.try_send(ev);
            continue;
        }
        if let Some(resp) = Response::from_object(&frame.object) {
            let tx = resp
                .id
                .and_then(|id| lock(&pending).as_mut().and_then(|m| m.remove(&id)));
            if let Some(tx) = tx {
                let _ = tx.send(resp.result);
            }
        }
    };
    let waiting = lock(&pending).take().unwrap_or_default();
    for (_, tx) in waiting {
        let _ = tx.send(Err(fatal.clone().unwrap_or_else(|| {
            WireError::new(ErrorCode::Internal, "connection closed")
        })));
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
        let (events, _) = tokio::sync::broadcast::channel(8);
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
