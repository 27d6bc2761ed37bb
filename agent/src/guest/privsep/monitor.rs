//! The privileged side: serves [`Request`]s from the network-facing process, one at a time.
//!
//! It never sees a host frame. What it does get is checked against its own configuration and
//! the policy library before anything happens:
//!
//! - **launch**: the account must be the restricted principal for a restricted run, and the
//!   configured user (or one of `sandbox.trusted_users`) for a trusted one; the account's uid,
//!   gid, home and shell come from this side's own `/etc/passwd` lookup. A trusted run also needs
//!   trust facts for which [`codespace_policy::lifecycle::decide`] (with the organization
//!   policy this side read itself) says `trusted`: a network side that asks for a trusted run
//!   of a repository the policy does not trust is refused. The sandbox then checks the
//!   environment's names again, as it does for every run.
//! - **env_file**: the path and the owner are this side's; every name in the contents must
//!   pass [`codespace_policy::secrets::check_name`] (or be the token's variable), so a
//!   compromised network side cannot plant `BASH_ENV` or `LD_PRELOAD` in a login shell.
//! - **docker_config**: every registry is parsed again with the policy's
//!   [`codespace_policy::container_registry::RegistryHost`], at most `MAX_REGISTRIES`; the
//!   directory and its owner are this side's, and the write follows none of the user's links
//!   ([`crate::guest::registry::docker_config`]). The worst a compromised network side can do
//!   is point Docker at the agent's own helper for a few more hosts.
//! - **listen** / **broker_socket** / **signing_socket**: the addresses come from the
//!   configuration; the sockets are bound once and the same ones handed out again (a network
//!   side that restarts gets them).
//! - **signing_git_config**: the network side names a format or none; the file's path, the
//!   program it names and every line in it are this side's (`guest::signing::gitconfig`).

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codespace_policy::ReasonCode as _;
use tokio::io::AsyncWriteExt as _;

use super::channel;
use super::proto::{ExitWire, FactsWire, Launch, OwnerWire, Reply, Request, MAX_OWNER_QUERIES};
use crate::guest::config::AgentConfig;
use crate::guest::detect::owner::OwnerResolver;
use crate::guest::detect::RawListener;
use crate::guest::firewall::Firewall;
use crate::guest::lifecycle::launcher::{LaunchLimits, LaunchSpec, Launcher, OutputPipe, Trust};
use crate::guest::sandbox::netns::NetSocket;
use crate::guest::sandbox::netns::RestrictedSockets;
use crate::guest::transport::Listener;
use crate::guest::user::{self, Account};
use crate::guest::vault::envfile::{self, Owner};

/// The privileged side's state.
pub struct Monitor {
    config: AgentConfig,
    owner: Owner,
    launcher: Arc<dyn Launcher>,
    /// Sockets inside the restricted network namespace, which the launcher's sandbox owns.
    restricted: RestrictedSockets,
    org_policy: Option<codespace_policy::OrgPolicy>,
    passwd: PathBuf,
    firewall: Option<Firewall>,
    listener: Option<Listener>,
    broker: Option<std::os::unix::net::UnixListener>,
    signing: Option<std::os::unix::net::UnixListener>,
    resolver: OwnerResolver,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("launcher", &self.launcher.name())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor for `config`; `owner` owns the environment file; launches go to `launcher`;
    /// async work (waiting for commands, relaying their output) runs on `runtime`.
    pub fn new(
        config: AgentConfig,
        owner: Owner,
        launcher: Arc<dyn Launcher>,
        org_policy: Option<codespace_policy::OrgPolicy>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let proc_root = config.detect.proc_root.clone();
        Self {
            config,
            owner,
            restricted: launcher.clone().restricted_sockets(),
            launcher,
            org_policy,
            passwd: PathBuf::from("/etc/passwd"),
            firewall: None,
            listener: None,
            broker: None,
            signing: None,
            resolver: OwnerResolver::new(&proc_root),
            runtime,
        }
    }

    /// Reads accounts from `path` instead of `/etc/passwd` (tests).
    #[cfg(test)]
    pub(crate) fn with_passwd(mut self, path: &std::path::Path) -> Self {
        self.passwd = path.to_owned();
        self
    }

    /// Serves requests on `sock` until the other side closes it. A request that cannot be
    /// parsed is answered `refused` and serving goes on; a broken channel ends it.
    pub fn serve(&mut self, sock: &UnixStream) -> std::io::Result<()> {
        serve_with(sock, |req, blob| self.handle(req, blob))
    }

    /// [`Monitor::serve`] for a monitor that the main thread may take away to stop (and drop,
    /// which removes the firewall): the lock is held for one request at a time, and serving
    /// ends when the monitor is gone.
    pub(crate) fn serve_shared(
        shared: &Mutex<Option<Monitor>>,
        sock: &UnixStream,
    ) -> std::io::Result<()> {
        serve_with(sock, |req, blob| match shared.lock() {
            Ok(mut held) => match held.as_mut() {
                Some(m) => m.handle(req, blob),
                None => (failed("the privileged side is stopping"), Vec::new()),
            },
            Err(_) => (failed("the privileged side's lock is poisoned"), Vec::new()),
        })
    }

    /// Handles one request (public for the tests of the rules).
    pub(crate) fn handle(&mut self, req: Request, blob: &[u8]) -> (Reply, Vec<OwnedFd>) {
        let result = match req {
            Request::Listen {} => self.listen(),
            Request::BrokerSocket {} => {
                let path = crate::guest::broker::socket_path(&self.config.state_dir);
                bound_once(&mut self.broker, &path)
            }
            Request::SigningSocket {} => {
                let path = crate::guest::signing::broker::socket_path(&self.config.state_dir);
                bound_once(&mut self.signing, &path)
            }
            Request::SigningGitConfig { format } => {
                let c = &self.config.signing;
                crate::guest::signing::gitconfig::apply(&c.git_config, format, &c.program)
                    .map(|()| (Reply::Done, Vec::new()))
                    .map_err(|e| failed(format!("{}: {e}", c.git_config.display())))
            }
            Request::Launch(l) => self.launch(*l),
            Request::KillRestricted {} => Ok((
                Reply::Killed {
                    count: self.launcher.kill_restricted(),
                },
                Vec::new(),
            )),
            Request::EnvFile { remove } => self.env_file(remove, blob),
            Request::DockerConfig { registries } => self.docker_config(&registries),
            Request::RestrictedSocket { kind, have } => match self.restricted.socket(kind, have) {
                Ok(None) => Ok((Reply::Done, Vec::new())),
                Ok(Some(NetSocket::Unchanged(netns))) => Ok((Reply::Socket { netns }, Vec::new())),
                Ok(Some(NetSocket::New(fd, netns))) => Ok((Reply::Socket { netns }, vec![fd])),
                Err(e) => Err(failed(format!(
                    "cannot make a socket in the restricted network: {e}"
                ))),
            },
            Request::TerminalActivity {} => Ok((
                Reply::Terminal {
                    latest_us: crate::guest::activity::latest_terminal_activity(
                        &self.config.idle.terminals,
                        std::time::SystemTime::now(),
                    )
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64),
                },
                Vec::new(),
            )),
            Request::SocketOwners { sockets } => {
                if sockets.len() > MAX_OWNER_QUERIES {
                    Err(Reply::Refused {
                        reason: format!("more than {MAX_OWNER_QUERIES} sockets in one request"),
                    })
                } else {
                    let want: Vec<RawListener> = sockets
                        .iter()
                        .map(|s| RawListener {
                            addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
                            port: 0,
                            uid: s.uid,
                            inode: s.inode,
                        })
                        .collect();
                    let owners = self
                        .resolver
                        .resolve(&want)
                        .into_iter()
                        .map(|(inode, o)| OwnerWire {
                            inode,
                            pid: o.pid,
                            process: o.process,
                        })
                        .collect();
                    Ok((Reply::Owners { owners }, Vec::new()))
                }
            }
        };
        result.unwrap_or_else(|reply| (reply, Vec::new()))
    }

    fn listen(&mut self) -> Result<(Reply, Vec<OwnedFd>), Reply> {
        let _rt = self.runtime.enter();
        if self.listener.is_none() {
            // Before anything listens (as the single-process agent does it).
            let firewall = Firewall::apply(&self.config.firewall);
            let listener = Listener::bind(&self.config.listen).map_err(|e| Reply::Failed {
                error: format!("cannot listen on {}: {e}", self.config.listen),
            })?;
            self.firewall = Some(firewall);
            self.listener = Some(listener);
            // The kernel queues connections from here on, so the unit is ready now.
            if let Err(e) = crate::guest::system::sd_notify("READY=1\nSTATUS=listening") {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
        let firewall = self
            .firewall
            .as_ref()
            .map(Firewall::status)
            .ok_or_else(|| failed("no firewall state"))?;
        let fd = match self.listener.as_ref() {
            Some(Listener::Vsock(l)) => l.as_fd().try_clone_to_owned(),
            Some(Listener::Unix(l, _)) => l.as_fd().try_clone_to_owned(),
            None => return Err(failed("no listener")),
        }
        .map_err(|e| failed(format!("cannot duplicate the listener: {e}")))?;
        Ok((Reply::Listening { firewall }, vec![fd]))
    }

    fn env_file(&self, remove: bool, contents: &[u8]) -> Result<(Reply, Vec<OwnedFd>), Reply> {
        let path = crate::guest::vault::environment_path(&self.config.state_dir);
        if remove {
            envfile::remove(&path).map_err(|e| failed(e.to_string()))?;
            return Ok((Reply::Done, Vec::new()));
        }
        let shown = path.display().to_string();
        let entries = envfile::parse(&shown, contents).map_err(|e| Reply::Refused {
            reason: format!("environment file contents: {e}"),
        })?;
        for (name, _) in &entries {
            if name == crate::guest::vault::TOKEN_VARIABLE {
                continue;
            }
            codespace_policy::secrets::check_name(name, &[]).map_err(|e| Reply::Refused {
                reason: format!("environment file: {name:?} is refused ({})", e.code()),
            })?;
        }
        envfile::write_atomic(&path, contents, self.owner).map_err(|e| failed(e.to_string()))?;
        Ok((Reply::Done, Vec::new()))
    }

    fn docker_config(&self, registries: &[String]) -> Result<(Reply, Vec<OwnedFd>), Reply> {
        use crate::guest::registry::docker_config;
        use codespace_policy::container_registry::{RegistryHost, MAX_REGISTRIES};
        if registries.len() > MAX_REGISTRIES {
            return Err(Reply::Refused {
                reason: format!("more than {MAX_REGISTRIES} registries"),
            });
        }
        let hosts = registries
            .iter()
            .map(|r| {
                RegistryHost::parse(r).map_err(|e| Reply::Refused {
                    reason: format!("registry {r:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let passwd = std::fs::read_to_string(&self.passwd).unwrap_or_default();
        let dir = docker_config::config_dir(
            self.config.docker_config_dir.as_deref(),
            &passwd,
            self.owner,
        )
        .map_err(|e| failed(e.to_string()))?;
        let report =
            docker_config::sync(&dir, self.owner, &hosts).map_err(|e| failed(e.to_string()))?;
        Ok((Reply::DockerConfig { report }, Vec::new()))
    }

    fn launch(&self, l: Launch) -> Result<(Reply, Vec<OwnedFd>), Reply> {
        let user = self.check_launch(&l)?;
        let spec = LaunchSpec {
            strength: l.strength,
            user,
            env: l.env,
            cwd: l.cwd,
            workspace: l.workspace,
            state_dir: self.config.state_dir.clone(),
            limits: LaunchLimits {
                timeout: Duration::from_millis(l.timeout_ms),
                grace: Duration::from_millis(l.grace_ms),
            },
            facts: None,
        };
        let program = l.program;
        let _rt = self.runtime.enter();
        let launched = self
            .launcher
            .launch(&spec, &program)
            .map_err(|e| failed(e.to_string()))?;
        let (exit_r, exit_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        relay(launched.stdout, out_w);
        relay(launched.stderr, err_w);
        let exit = launched.exit;
        tokio::spawn(async move {
            let r = exit.await;
            let wire = ExitWire {
                code: r.code,
                signal: r.signal,
                timed_out: r.timed_out,
                duration_us: r.duration.as_micros().min(u128::from(u64::MAX)) as u64,
            };
            // A few dozen bytes: one write into an empty pipe never blocks.
            if let Ok(text) = serde_json::to_vec(&wire) {
                let _ = rustix::io::write(&exit_w, &text);
            }
        });
        Ok((
            Reply::Launched {
                applied: launched.applied,
                degraded: launched.degraded,
            },
            vec![exit_r, out_r, err_r],
        ))
    }

    /// The principal and policy rules of a launch; the account to run as.
    fn check_launch(&self, l: &Launch) -> Result<Account, Reply> {
        let refuse = |reason: String| Reply::Refused { reason };
        let passwd = std::fs::read_to_string(&self.passwd).unwrap_or_default();
        let sandbox = &self.config.sandbox;
        let allowed = match l.strength {
            Trust::Restricted => l.user == sandbox.restricted_user,
            Trust::Trusted => {
                let configured = sandbox.default_user.as_ref().or(self.config.user.as_ref());
                match configured {
                    Some(c) => &l.user == c || sandbox.trusted_users.contains(&l.user),
                    // No configured user: the agent's own account (and the trusted list).
                    None => {
                        user::find(&passwd, &l.user)
                            .is_some_and(|u| u.uid == rustix::process::geteuid().as_raw())
                            || sandbox.trusted_users.contains(&l.user)
                    }
                }
            }
        };
        if !allowed {
            return Err(refuse(format!(
                "{} runs may not run as {:?}",
                strength_name(l.strength),
                l.user
            )));
        }
        if l.strength == Trust::Trusted {
            let facts = l
                .facts
                .as_ref()
                .ok_or_else(|| refuse("a trusted run without trust facts".into()))?;
            self.check_trusted(facts).map_err(refuse)?;
        }
        user::find(&passwd, &l.user)
            // A numeric principal (UID or UID:GID) without a passwd entry.
            .or_else(|| Account::numeric(&l.user))
            .ok_or_else(|| {
                refuse(format!(
                    "user {:?} does not exist in {}",
                    l.user,
                    self.passwd.display()
                ))
            })
    }

    fn check_trusted(&self, facts: &FactsWire) -> Result<(), String> {
        let repository = codespace_policy::repo::RepoName::parse(&facts.repository)
            .map_err(|e| format!("trust facts: repository: {e}"))?;
        let decision = codespace_policy::lifecycle::decide(
            &codespace_policy::lifecycle::LifecycleFacts {
                creator_access: facts.creator_access,
                pull_request_from_fork: facts.pull_request_from_fork,
                prebuild: facts.prebuild,
                repository,
            },
            self.org_policy.as_ref(),
        );
        match decision.reason {
            None => Ok(()),
            Some(reason) => Err(format!(
                "the policy does not trust this run ({}): it must run restricted",
                reason.code()
            )),
        }
    }
}

fn strength_name(s: Trust) -> &'static str {
    match s {
        Trust::Trusted => "trusted",
        Trust::Restricted => "restricted",
    }
}

/// A broker socket at `path`, bound the first time (mode 0666: its broker admits callers by
/// `SO_PEERCRED`) and the same listener handed out again, so a restarted network side gets it.
fn bound_once(
    slot: &mut Option<std::os::unix::net::UnixListener>,
    path: &std::path::Path,
) -> Result<(Reply, Vec<OwnedFd>), Reply> {
    if slot.is_none() {
        let l = crate::guest::broker::bind_socket(path).map_err(|e| failed(e.to_string()))?;
        *slot = Some(l);
    }
    let fd = slot
        .as_ref()
        .map(|l| l.as_fd().try_clone_to_owned())
        .ok_or_else(|| failed("no broker socket"))?
        .map_err(|e| {
            failed(format!(
                "cannot duplicate the socket {}: {e}",
                path.display()
            ))
        })?;
    Ok((Reply::Done, vec![fd]))
}

fn failed(error: impl Into<String>) -> Reply {
    Reply::Failed {
        error: error.into(),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Reply> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| failed(format!("cannot create a pipe: {e}")))
}

/// Copies a command's output into the pipe whose other end went to the network side. The
/// copy ends when the command's side closes (its last process exited or closed the stream) or
/// when the network side closed its end.
fn relay(from: Option<OutputPipe>, to: OwnedFd) {
    let Some(mut from) = from else {
        return; // dropping `to` closes the pipe: the reader sees the end at once
    };
    let sender = match tokio::net::unix::pipe::Sender::from_owned_fd(to) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot relay a command's output");
            return;
        }
    };
    tokio::spawn(async move {
        let mut sender = sender;
        let _ = tokio::io::copy(&mut from, &mut sender).await;
        let _ = sender.shutdown().await;
    });
}

/// The serving loop: one frame in, one answer out.
fn serve_with(
    sock: &UnixStream,
    mut handle: impl FnMut(Request, &[u8]) -> (Reply, Vec<OwnedFd>),
) -> std::io::Result<()> {
    while let Some(frame) = channel::recv(sock)? {
        let (reply, fds) = match serde_json::from_slice::<Request>(&frame.json) {
            Ok(req) => {
                let op = req.op();
                let (reply, fds) = handle(req, &frame.blob);
                if let Reply::Refused { reason } = &reply {
                    tracing::warn!(op, reason = %reason, "privileged side refused a request");
                }
                (reply, fds)
            }
            Err(e) => {
                tracing::warn!(error = %e, "privileged side got a malformed request");
                (
                    Reply::Refused {
                        reason: format!("malformed request: {e}"),
                    },
                    Vec::new(),
                )
            }
        };
        let json = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        channel::send(sock, &json, &[], &borrowed)?;
    }
    Ok(())
}

/// Accepts network sides on `listener` (the privileged unit's socket) one after the other:
/// a connection whose peer is not `network_uid` (`SO_PEERCRED`) is closed unanswered; an
/// accepted one is served until it closes (the network unit restarting), then the next is
/// accepted. Returns when the monitor is gone.
pub fn accept_network_sides(
    shared: &Mutex<Option<Monitor>>,
    listener: &std::os::unix::net::UnixListener,
    network_uid: u32,
) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept on the privileged socket failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = rustix::net::sockopt::socket_peercred(&stream).map(|c| c.uid.as_raw());
        if peer != Ok(network_uid) {
            tracing::warn!(
                ?peer,
                network_uid,
                "refused a privileged-socket peer that is not the network side"
            );
            continue;
        }
        tracing::info!("network side connected");
        if let Err(e) = Monitor::serve_shared(shared, &stream) {
            tracing::warn!(error = %e, "privsep channel failed");
        }
        tracing::info!("network side disconnected");
        if shared.lock().map(|m| m.is_none()).unwrap_or(true) {
            return;
        }
    }
}

/// Waits for the network side (`child`) and forwards `SIGTERM`/`SIGINT` to it; returns its exit
/// status (a signal counts as failure).
pub async fn supervise(child: rustix::process::Pid) -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let waiter = tokio::task::spawn_blocking(move || {
        rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty())
    });
    tokio::pin!(waiter);
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    loop {
        let next = async {
            match (term.as_mut(), int.as_mut()) {
                (Some(t), Some(i)) => tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                },
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            status = &mut waiter => {
                return match status {
                    Ok(Ok(Some((_, s)))) => s.exit_status().unwrap_or(1),
                    _ => 1,
                };
            }
            () = next => {
                tracing::info!("termination signal received; stopping the network side");
                let _ = rustix::process::kill_process(child, rustix::process::Signal::TERM);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guest::lifecycle::launcher::{PlainLauncher, Program};
    use crate::guest::privsep::proto::{SocketRef, MAX_OWNER_QUERIES};

    struct Setup {
        dir: tempfile::TempDir,
        monitor: Monitor,
    }

    /// A monitor with default settings, a passwd file where the test's own uid is `me` and a
    /// restricted principal exists, and the plain launcher (runs as the test's user).
    fn setup(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "me:x:{uid}:{gid}::/tmp:/bin/sh\ncodespace:x:64991:64991::/tmp:/bin/sh\n\
                 codespace-restricted:x:64992:64992::/tmp:/bin/sh\n"
            ),
        )
        .unwrap();
        let cfg = dir.path().join("config.jsonc");
        std::fs::write(&cfg, format!("{{ {extra} }}")).unwrap();
        let config = crate::guest::config::load(
            Some(&cfg),
            &crate::guest::config::Overrides {
                state_dir: Some(dir.path().join("state")),
                ..Default::default()
            },
        )
        .unwrap();
        crate::guest::privsep::prepare_state(&config.state_dir, Owner { uid, gid }).unwrap();
        let monitor = Monitor::new(
            config,
            Owner { uid, gid },
            Arc::new(PlainLauncher),
            None,
            tokio::runtime::Handle::current(),
        )
        .with_passwd(&passwd);
        Setup { dir, monitor }
    }

    fn launch(strength: Trust, user: &str, access: Option<&str>) -> Request {
        Request::Launch(Box::new(Launch {
            strength,
            user: user.into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
            workspace: "/".into(),
            timeout_ms: 10_000,
            grace_ms: 100,
            program: Program::Shell("echo launched; exit 3".into()),
            facts: access.map(|a| FactsWire {
                creator_access: codespace_policy::repo::AccessLevel::parse(a).unwrap(),
                pull_request_from_fork: false,
                prebuild: false,
                repository: "octo/app".into(),
            }),
        }))
    }

    fn refused(reply: &Reply) -> &str {
        match reply {
            Reply::Refused { reason } => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_trusted_launch_the_policy_does_not_trust_is_refused_whatever_the_network_side_says()
    {
        let mut s = setup("");
        // The network side asks for trusted with facts that make the run restricted.
        let (r, fds) = s
            .monitor
            .handle(launch(Trust::Trusted, "me", Some("read")), &[]);
        assert!(refused(&r).contains("no-write-access"), "{r:?}");
        assert!(fds.is_empty());
        // ... or with no facts at all.
        let (r, _) = s.monitor.handle(launch(Trust::Trusted, "me", None), &[]);
        assert!(refused(&r).contains("without trust facts"), "{r:?}");
        // A fork's pull request is not trusted either, even with write access.
        let mut l = launch(Trust::Trusted, "me", Some("admin"));
        if let Request::Launch(l) = &mut l {
            if let Some(f) = l.facts.as_mut() {
                f.pull_request_from_fork = true;
            }
        }
        let (r, _) = s.monitor.handle(l, &[]);
        assert!(refused(&r).contains("fork-pull-request"), "{r:?}");
    }

    #[tokio::test]
    async fn launches_run_only_as_their_principal() {
        let mut s = setup(r#""user": "codespace""#);
        for (strength, user) in [
            // Restricted runs are the restricted principal's, never root or the creator's.
            (Trust::Restricted, "root"),
            (Trust::Restricted, "codespace"),
            // Trusted runs are the configured user's (or a listed trusted user's).
            (Trust::Trusted, "root"),
            (Trust::Trusted, "codespace-restricted"),
        ] {
            let (r, _) = s.monitor.handle(launch(strength, user, Some("write")), &[]);
            assert!(
                refused(&r).contains("may not run as"),
                "{strength:?} {user}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_allowed_launch_hands_back_its_output_and_exit_on_pipes() {
        use tokio::io::AsyncReadExt as _;
        let mut s = setup("");
        let (r, fds) = s
            .monitor
            .handle(launch(Trust::Trusted, "me", Some("write")), &[]);
        assert!(matches!(r, Reply::Launched { .. }), "{r:?}");
        let mut fds = fds.into_iter();
        let (exit, out) = (fds.next().unwrap(), fds.next().unwrap());
        let mut text = String::new();
        tokio::net::unix::pipe::Receiver::from_owned_fd(out)
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "launched\n");
        let mut report = Vec::new();
        tokio::net::unix::pipe::Receiver::from_owned_fd(exit)
            .unwrap()
            .read_to_end(&mut report)
            .await
            .unwrap();
        let report: ExitWire = serde_json::from_slice(&report).unwrap();
        assert_eq!(report.code, Some(3));
        assert!(!report.timed_out);
    }

    #[tokio::test]
    async fn the_env_file_takes_only_names_the_policy_allows() {
        let mut s = setup("");
        let path = crate::guest::vault::environment_path(&s.dir.path().join("state"));
        // Written by hand: the vault's renderer itself leaves such a name out.
        let evil = b"API_KEY='x'\nLD_PRELOAD='/tmp/evil.so'\n";
        let (r, _) = s.monitor.handle(Request::EnvFile { remove: false }, evil);
        assert!(refused(&r).contains("LD_PRELOAD"), "{r:?}");
        assert!(!path.exists(), "a refused file was written");
        let fine = envfile::render([("API_KEY", &b"x"[..]), ("GITHUB_TOKEN", b"t")]);
        let (r, _) = s.monitor.handle(Request::EnvFile { remove: false }, &fine);
        assert!(matches!(r, Reply::Done), "{r:?}");
        assert!(std::fs::read_to_string(&path).unwrap().contains("API_KEY"));
        // Text that is not an env file at all.
        let (r, _) = s
            .monitor
            .handle(Request::EnvFile { remove: false }, b"rm -rf /\n");
        refused(&r);
        let (r, _) = s.monitor.handle(Request::EnvFile { remove: true }, &[]);
        assert!(matches!(r, Reply::Done), "{r:?}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_malformed_or_oversized_request_is_answered_and_serving_goes_on() {
        let mut s = setup("");
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let r = s.monitor.serve(&ours);
            (s, r)
        });
        let ask = |json: &[u8]| {
            channel::send(&theirs, json, &[], &[]).unwrap();
            let f = channel::recv(&theirs).unwrap().unwrap();
            serde_json::from_slice::<Reply>(&f.json).unwrap()
        };
        assert!(refused(&ask(b"{\"op\":\"become_root\"}")).contains("malformed"));
        assert!(refused(&ask(b"\xff\xfe")).contains("malformed"));
        let too_many = serde_json::to_vec(&Request::SocketOwners {
            sockets: vec![SocketRef { inode: 1, uid: 0 }; MAX_OWNER_QUERIES + 1],
        })
        .unwrap();
        assert!(refused(&ask(&too_many)).contains("more than"));
        let fine = serde_json::to_vec(&Request::SocketOwners { sockets: vec![] }).unwrap();
        assert!(matches!(ask(&fine), Reply::Owners { .. }));
        drop(theirs);
        let (_s, r) = server.join().unwrap();
        r.unwrap();
    }
}
