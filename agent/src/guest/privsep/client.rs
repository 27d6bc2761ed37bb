//! The network side's handle on the privileged side: one request at a time, with its reply.
//!
//! [`MonitorClient::call`] holds a lock across a request and its reply, so answers can never be
//! matched to the wrong caller; every answer is quick (the slowest, a launch, is the
//! privileged side's spawn of a few ms, which the runner waits for on a blocking thread, never
//! on the runtime's). Long waits never go through the channel: a launched
//! command's output and exit status come back on pipes of their own.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

use super::channel;
use super::proto::{
    ExitWire, FactsWire, Launch, Reply, Request, SocketKind, SocketRef, MAX_OWNER_QUERIES,
};
use crate::guest::detect::owner::Owner as SocketOwner;
use crate::guest::detect::RawListener;
use crate::guest::firewall::FirewallStatus;
use crate::guest::lifecycle::launcher::{
    ExitReport, LaunchError, LaunchSpec, Launched, Launcher, OutputPipe, Program,
};
use crate::guest::sandbox::netns::{NetSocket, RestrictedSockets};

/// The network side's end of the channel.
#[derive(Debug)]
pub struct MonitorClient {
    sock: Mutex<UnixStream>,
}

/// Why a request did not get its effect.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The channel broke (the privileged side is gone).
    #[error("privileged side unreachable: {0}")]
    Channel(#[from] io::Error),
    /// The privileged side said no.
    #[error("refused by the privileged side: {0}")]
    Refused(String),
    /// The effect failed there.
    #[error("{0}")]
    Failed(String),
    /// An answer that does not fit the request.
    #[error("unexpected answer from the privileged side to {0}")]
    Unexpected(&'static str),
}

impl MonitorClient {
    /// A client on the network side's end of the socketpair.
    pub(crate) fn new(sock: UnixStream) -> Self {
        Self {
            sock: Mutex::new(sock),
        }
    }

    /// Sends `req` (and `blob`) and waits for the answer; `refused` and `failed` answers become
    /// errors.
    pub(crate) fn call(
        &self,
        req: &Request,
        blob: &[u8],
    ) -> Result<(Reply, Vec<OwnedFd>), CallError> {
        let json = serde_json::to_vec(req).map_err(io::Error::other)?;
        let sock = self
            .sock
            .lock()
            .map_err(|_| io::Error::other("privsep channel lock poisoned"))?;
        channel::send(&sock, &json, blob, &[])?;
        let frame = channel::recv(&sock)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the privileged side closed")
        })?;
        drop(sock);
        let reply: Reply = serde_json::from_slice(&frame.json)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        match reply {
            Reply::Refused { reason } => Err(CallError::Refused(reason)),
            Reply::Failed { error } => Err(CallError::Failed(error)),
            other => Ok((other, frame.fds)),
        }
    }

    /// The control listener's descriptor and the firewall's state.
    pub(crate) fn listen(&self) -> Result<(OwnedFd, FirewallStatus), CallError> {
        match self.call(&Request::Listen {}, &[])? {
            (Reply::Listening { firewall }, fds) => Ok((one(fds, "listen")?, firewall)),
            _ => Err(CallError::Unexpected("listen")),
        }
    }

    /// The credential broker's listening socket.
    pub fn broker_socket(&self) -> Result<std::os::unix::net::UnixListener, CallError> {
        match self.call(&Request::BrokerSocket {}, &[])? {
            (Reply::Done, fds) => Ok(one(fds, "broker_socket")?.into()),
            _ => Err(CallError::Unexpected("broker_socket")),
        }
    }

    /// The signing broker's listening socket.
    pub fn signing_socket(&self) -> Result<std::os::unix::net::UnixListener, CallError> {
        match self.call(&Request::SigningSocket {}, &[])? {
            (Reply::Done, fds) => Ok(one(fds, "signing_socket")?.into()),
            _ => Err(CallError::Unexpected("signing_socket")),
        }
    }

    /// Writes the git configuration that turns signing on for `format`, or removes it.
    pub fn signing_git_config(
        &self,
        format: Option<codespace_policy::signing::SigningFormat>,
    ) -> Result<(), CallError> {
        match self.call(&Request::SigningGitConfig { format }, &[])? {
            (Reply::Done, _) => Ok(()),
            _ => Err(CallError::Unexpected("signing_git_config")),
        }
    }

    /// Writes the environment file (`Some(contents)`) or removes it (`None`).
    pub(crate) fn env_file(&self, contents: Option<&[u8]>) -> Result<(), CallError> {
        let req = Request::EnvFile {
            remove: contents.is_none(),
        };
        match self.call(&req, contents.unwrap_or_default())? {
            (Reply::Done, _) => Ok(()),
            _ => Err(CallError::Unexpected("env_file")),
        }
    }

    /// Brings the codespace user's `credHelpers` in line with `hosts` (guest::registry).
    pub fn docker_config(
        &self,
        hosts: &[codespace_policy::container_registry::RegistryHost],
    ) -> Result<crate::guest::registry::docker_config::DockerConfigReport, CallError> {
        let registries = hosts.iter().map(ToString::to_string).collect();
        match self.call(&Request::DockerConfig { registries }, &[])? {
            (Reply::DockerConfig { report }, _) => Ok(report),
            _ => Err(CallError::Unexpected("docker_config")),
        }
    }

    /// Kills the restricted principal's processes; how many.
    pub(crate) fn kill_restricted(&self) -> Result<usize, CallError> {
        match self.call(&Request::KillRestricted {}, &[])? {
            (Reply::Killed { count }, _) => Ok(count),
            _ => Err(CallError::Unexpected("kill_restricted")),
        }
    }

    /// A socket inside the restricted network namespace (see
    /// [`crate::guest::sandbox::netns::RestrictedNetwork::socket_in`]).
    pub(crate) fn restricted_socket(
        &self,
        kind: SocketKind,
        have: Option<u64>,
    ) -> Result<Option<NetSocket>, CallError> {
        match self.call(&Request::RestrictedSocket { kind, have }, &[])? {
            (Reply::Done, _) => Ok(None),
            (Reply::Socket { netns }, fds) if fds.is_empty() => {
                Ok(Some(NetSocket::Unchanged(netns)))
            }
            (Reply::Socket { netns }, fds) => {
                Ok(Some(NetSocket::New(one(fds, "restricted_socket")?, netns)))
            }
            _ => Err(CallError::Unexpected("restricted_socket")),
        }
    }

    /// The newest genuine terminal stamp the privileged side sees.
    pub(crate) fn terminal_activity(&self) -> Result<Option<std::time::SystemTime>, CallError> {
        match self.call(&Request::TerminalActivity {}, &[])? {
            (Reply::Terminal { latest_us }, _) => {
                Ok(latest_us.map(|us| std::time::UNIX_EPOCH + Duration::from_micros(us)))
            }
            _ => Err(CallError::Unexpected("terminal_activity")),
        }
    }

    /// The processes holding `want` (those found).
    pub(crate) fn socket_owners(&self, want: &[RawListener]) -> HashMap<u64, SocketOwner> {
        let mut found = HashMap::new();
        for chunk in want.chunks(MAX_OWNER_QUERIES) {
            let sockets = chunk
                .iter()
                .map(|l| SocketRef {
                    inode: l.inode,
                    uid: l.uid,
                })
                .collect();
            match self.call(&Request::SocketOwners { sockets }, &[]) {
                Ok((Reply::Owners { owners }, _)) => {
                    found.extend(owners.into_iter().map(|o| {
                        let owner = SocketOwner {
                            pid: o.pid,
                            process: o.process,
                        };
                        (o.inode, owner)
                    }));
                }
                Ok(_) => tracing::warn!("unexpected answer to socket_owners"),
                Err(e) => tracing::warn!(error = %e, "socket owners unknown"),
            }
        }
        found
    }
}

fn one(fds: Vec<OwnedFd>, op: &'static str) -> Result<OwnedFd, CallError> {
    fds.into_iter().next().ok_or(CallError::Unexpected(op))
}

/// Starts commands through the privileged side.
#[derive(Debug)]
pub(crate) struct MonitorLauncher {
    client: std::sync::Arc<MonitorClient>,
    name: &'static str,
}

impl MonitorLauncher {
    /// A launcher over `client`; `name` is the privileged side's own launcher (`sandbox`,
    /// `plain`), which is what reports show.
    pub(crate) fn new(client: std::sync::Arc<MonitorClient>, name: &'static str) -> Self {
        Self { client, name }
    }
}

impl Launcher for MonitorLauncher {
    fn launch(&self, spec: &LaunchSpec, program: &Program) -> Result<Launched, LaunchError> {
        let millis = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let req = Request::Launch(Box::new(Launch {
            strength: spec.strength,
            user: spec.user.name.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            workspace: spec.workspace.clone(),
            timeout_ms: millis(spec.limits.timeout),
            grace_ms: millis(spec.limits.grace),
            program: program.clone(),
            facts: spec.facts.as_ref().map(|f| FactsWire {
                creator_access: f.creator_access,
                pull_request_from_fork: f.pull_request_from_fork,
                prebuild: f.prebuild,
                repository: f.repository.to_string(),
            }),
        }));
        let start = Instant::now();
        let (applied, degraded, fds) = match self.client.call(&req, &[]) {
            Ok((Reply::Launched { applied, degraded }, fds)) if fds.len() == 3 => {
                (applied, degraded, fds)
            }
            Ok(_) => return Err(LaunchError::Sandbox("unexpected answer to launch".into())),
            Err(e) => return Err(LaunchError::Sandbox(e.to_string())),
        };
        let mut fds = fds.into_iter();
        let (Some(exit), Some(out), Some(err)) = (fds.next(), fds.next(), fds.next()) else {
            return Err(LaunchError::Sandbox(
                "launch answer without its pipes".into(),
            ));
        };
        let pipe = |fd: OwnedFd| -> Result<OutputPipe, LaunchError> {
            tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                .map(|r| Box::pin(r) as OutputPipe)
                .map_err(|e| LaunchError::Sandbox(format!("output pipe: {e}")))
        };
        let stdout = Some(pipe(out)?);
        let stderr = Some(pipe(err)?);
        let mut exit = tokio::net::unix::pipe::Receiver::from_owned_fd(exit)
            .map_err(|e| LaunchError::Sandbox(format!("exit pipe: {e}")))?;
        let exit = Box::pin(async move {
            let mut text = Vec::new();
            let _ = (&mut exit).take(4096).read_to_end(&mut text).await;
            match serde_json::from_slice::<ExitWire>(&text) {
                Ok(w) => ExitReport {
                    code: w.code,
                    signal: w.signal,
                    timed_out: w.timed_out,
                    duration: Duration::from_micros(w.duration_us),
                },
                // The privileged side went away before the command ended.
                Err(_) => ExitReport {
                    code: None,
                    signal: None,
                    timed_out: false,
                    duration: start.elapsed(),
                },
            }
        });
        Ok(Launched {
            stdout,
            stderr,
            exit,
            applied,
            degraded,
        })
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn kill_restricted(&self) -> usize {
        self.client.kill_restricted().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "restricted processes not killed");
            0
        })
    }

    fn restricted_sockets(self: std::sync::Arc<Self>) -> RestrictedSockets {
        RestrictedSockets::new(move |kind, have| {
            self.client
                .restricted_socket(kind, have)
                .map_err(std::io::Error::other)
        })
    }
}
