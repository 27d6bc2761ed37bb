//! The signing broker's socket: `<state-dir>/git-sign.sock`, admitted exactly like the
//! credential broker's (the same code: [`crate::guest::broker::admission`]).
//!
//! ```text
//! accept ─► admission (SO_PEERCRED uid allowed, /proc/PID/cgroup not a restricted run,
//!           a slot of the uid's share)  ── refused: closed at once, recorded (rate-limited)
//!        ─► spawn: read the request (io_timeout, at most protocol::MAX_REQUEST bytes)
//!        ─► SigningService::enabled / ::sign (waits for the host up to signing.wait_s)
//!        ─► write the answer (io_timeout), close
//! ```
//!
//! A refused caller hears nothing, as at the credential broker: the helper reads the close
//! and tells git that the broker refused it (only the codespace's user, outside restricted
//! lifecycle runs, may sign). An admitted connection holds its slot for at most
//! `2 × io_timeout + signing.wait_s`.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixListener;

use super::protocol::{self, HelperRequest};
use super::{Caller, SigningOutcome, SigningService};
use crate::guest::broker::admission::{self, RefusalReports, Report};
use crate::guest::broker::{caller, BrokerConfig, BrokerError, Outcome};

/// Where the signing broker listens in `state_dir`.
pub(crate) fn socket_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join(protocol::SOCKET_NAME)
}

/// The bound signing broker.
pub struct SigningBroker {
    listener: UnixListener,
    admission: Arc<BrokerConfig>,
    service: Arc<SigningService>,
}

impl std::fmt::Debug for SigningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningBroker")
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

impl SigningBroker {
    /// Binds `admission.socket_path` (mode 0666: who may sign is decided per connection)
    /// and returns the broker. `admission` holds the credential broker's rules (allowed uids,
    /// restricted-run marker, slots, `io_timeout`) with the signing socket's path. Must be
    /// called inside a tokio runtime.
    pub(crate) fn bind(
        admission: BrokerConfig,
        service: Arc<SigningService>,
    ) -> Result<Self, BrokerError> {
        let listener = crate::guest::broker::bind_socket(&admission.socket_path)?;
        Self::from_listener(admission, service, listener)
    }

    /// The broker as `codespace-agent run` starts it: the credential broker's admission rules
    /// (`rules`: allowed uids, restricted-run marker, slots, `io_timeout`) at
    /// `<state_dir>/git-sign.sock`, on the socket the privileged side binds when the agent is
    /// separated, on one bound here otherwise.
    pub fn start(
        rules: &BrokerConfig,
        state_dir: &std::path::Path,
        service: Arc<SigningService>,
    ) -> Result<Self, BrokerError> {
        let admission = BrokerConfig {
            socket_path: socket_path(state_dir),
            ..rules.clone()
        };
        match crate::guest::privsep::client() {
            Some(monitor) => {
                let listener = monitor.signing_socket().map_err(|e| BrokerError::Io {
                    action: "get from the privileged side",
                    path: admission.socket_path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                Self::from_listener(admission, service, listener)
            }
            None => Self::bind(admission, service),
        }
    }

    /// The broker on a socket the privileged side bound.
    pub(crate) fn from_listener(
        admission: BrokerConfig,
        service: Arc<SigningService>,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<Self, BrokerError> {
        let listener = crate::guest::broker::async_listener(listener, &admission.socket_path)?;
        Ok(Self {
            listener,
            admission: Arc::new(admission),
            service,
        })
    }

    /// Serves until `shutdown` completes; then removes the socket.
    pub async fn serve<S: Future<Output = ()>>(self, shutdown: S) {
        let mut refusals = RefusalReports::default();
        let service = &self.service;
        let proc_root = &self.admission.proc_root;
        admission::accept_loop(
            &self.listener,
            &self.admission,
            shutdown,
            |stream, uid, pid, slot| {
                let service = Arc::clone(service);
                let io_timeout = self.admission.io_timeout;
                // Who called, read now: the helper may be gone when the decision is recorded.
                let caller = Caller {
                    uid: Some(uid),
                    process: caller(proc_root, pid),
                };
                tokio::spawn(async move {
                    handle_connection(stream, &caller, &service, io_timeout).await;
                    drop(slot);
                });
            },
            |refusal, pid| report_refusal(service, &mut refusals, refusal, caller(proc_root, pid)),
        )
        .await;
        let _ = std::fs::remove_file(&self.admission.socket_path);
    }
}

/// A caller refused at accept, recorded within [`RefusalReports`]' rate.
fn report_refusal(
    service: &SigningService,
    refusals: &mut RefusalReports,
    refusal: Outcome,
    process: serde_json::Map<String, serde_json::Value>,
) {
    let Report::Send { unreported } = refusals.admit(std::time::Instant::now()) else {
        return;
    };
    if unreported > 0 {
        service.record(
            &SigningOutcome::Unreported {
                refusals: unreported,
            },
            &Caller::default(),
        );
    }
    if let Outcome::Silent { uid, reason, .. } = refusal {
        // The broker's reasons serialize as their stable kebab-case codes.
        let code = serde_json::to_value(&reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        service.record(
            &SigningOutcome::Refused {
                code,
                message: protocol::REFUSED_AT_ACCEPT.into(),
            },
            &Caller { uid, process },
        );
    }
}

/// Serves one admitted caller over any stream (unit tests use a duplex).
pub(crate) async fn handle_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    caller: &Caller,
    service: &SigningService,
    io_timeout: std::time::Duration,
) {
    let request = match tokio::time::timeout(io_timeout, read_request(&mut stream)).await {
        Ok(Ok(bytes)) => HelperRequest::decode(&bytes).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no request within {} s", io_timeout.as_secs())),
    };
    let answer = match request {
        Ok(HelperRequest::Enabled) => service.enabled(),
        Ok(HelperRequest::Sign { format, payload }) => service.sign(caller, format, payload).await,
        Err(why) => {
            service.refuse_with(caller, "malformed-request", &format!("bad request: {why}"))
        }
    };
    let _ = tokio::time::timeout(io_timeout, async {
        stream.write_all(&answer.encode()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads until EOF, at most [`protocol::MAX_REQUEST`] bytes.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::with_capacity(4096);
    let limit = protocol::MAX_REQUEST as u64 + 1;
    (&mut *stream)
        .take(limit)
        .read_to_end(&mut buffer)
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if buffer.len() > protocol::MAX_REQUEST {
        return Err(format!(
            "the data to sign is larger than {} bytes",
            protocol::MAX_PAYLOAD
        ));
    }
    Ok(buffer)
}
