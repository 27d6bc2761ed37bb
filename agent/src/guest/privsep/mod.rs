//! Privilege separation: the process that parses host frames holds no dangerous privilege.
//!
//! Started as root (systemd or not), `codespace-agent run` forks before it starts a thread:
//!
//! ```text
//!  codespace-agent (root, the unit's main process: privileged side, monitor.rs)
//!   │  never reads a host frame; serves typed requests (proto.rs) on a socketpair, checks each
//!   │  against its own configuration and the policy library, then: binds the vsock listener and
//!   │  the broker socket, applies the firewall, starts lifecycle commands and extension
//!   │  installs (sandbox: cgroups, namespaces, Landlock, seccomp, the user switch), kills the
//!   │  restricted principal, writes the env file for its owner, makes sockets in the restricted
//!   │  network, attributes listening sockets to processes (/proc/PID/fd)
//!   │
//!   └─ csa-network (network_user, e.g. codespace-agent; confine.rs)
//!        transports, handshake, framing, JSON, every wire service, the vault (secrets in
//!        memory), the credential broker, port detection and forwarding. Capabilities: only
//!        CAP_DAC_READ_SEARCH; no_new_privs; seccomp (no exec, no fork, no identity change, no
//!        mount/namespace/ptrace, sockets of the families it uses); not dumpable.
//! ```
//!
//! Why this shape (the OpenSSH monitor's): the privileged side stays small and never parses
//! what the host sends, and lifecycle commands are its children, so they inherit nothing of the
//! network side's confinement: a trusted repository's `sudo` works wherever the image's
//! sudoers allows it. The trusted profile keeps its own limits (the sandbox: state directory
//! hidden, AF_VSOCK refused, timeout and cgroup kill).
//!
//! Not root (development, the unprivileged tests) or `"network_user": "none"`: one process, as
//! before; there is nothing to separate.
//!
//! The network side dies with the privileged side (`PR_SET_PDEATHSIG`); the privileged side
//! forwards `SIGTERM`/`SIGINT` to it, waits for it, cleans up (the firewall table) and exits
//! with its status.

pub(crate) mod channel;
pub(crate) mod client;
pub mod confine;
pub mod monitor;
pub(crate) mod proto;

use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

use crate::guest::vault::envfile::{self, Owner};

pub(crate) use client::{MonitorClient, MonitorLauncher};
pub use monitor::Monitor;

/// What this process is after [`split`].
#[derive(Debug)]
pub enum Role {
    /// One process: not root, or separation is off.
    Single,
    /// The privileged side: `network` is the network side's pid, `sock` its end of the channel.
    Privileged {
        /// The network side.
        network: rustix::process::Pid,
        /// Its identity.
        network_user: Owner,
        /// The channel.
        sock: UnixStream,
    },
    /// The network side (confined): its client of the privileged side.
    Network(Arc<MonitorClient>),
}

/// Why the processes could not be separated.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The network user does not exist.
    #[error("network_user: {0}")]
    User(#[from] crate::guest::user::UserError),
    /// The network user is root.
    #[error("network_user {0:?} is root: the network side must not be")]
    Root(String),
    /// socketpair or fork failed.
    #[error("cannot start the network side: {0}")]
    Fork(std::io::Error),
    /// The privileged side's socket did not answer.
    #[error("cannot reach the privileged side at {path}: {source}")]
    Connect {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The network side could not confine itself.
    #[error("{0}")]
    Confine(confine::ConfineError),
}

/// The privileged side's uid, as the network side knows it (or this process's own when not
/// separated): who "the agent's own user" is when no user is configured. A privileged side is
/// always root (`split` and `codespace-agent privileged` both refuse to separate otherwise).
pub(crate) fn agent_uid() -> u32 {
    match SEPARATED.get() {
        Some(_) => 0,
        None => rustix::process::geteuid().as_raw(),
    }
}

struct Separated {
    client: Arc<MonitorClient>,
    /// Forked by the privileged side (which then speaks to systemd), rather than started by a
    /// unit of its own.
    forked: bool,
}

/// Process-wide on purpose: which side of the split this process is, is a fact of the process,
/// set once by [`split`] or [`connect`] before any service starts, and never changed.
static SEPARATED: OnceLock<Separated> = OnceLock::new();

/// Whether this process tells systemd it is ready: yes unless it is a network side forked by
/// the privileged side (which is then the unit's main process and notifies).
pub(crate) fn notifies_itself() -> bool {
    !SEPARATED.get().is_some_and(|s| s.forked)
}

/// The network side started by a unit of its own (`User=`): connects to the privileged side's
/// socket at `path` (waiting up to `wait` for it to appear), then confines itself.
pub fn connect(path: &std::path::Path, wait: std::time::Duration) -> Result<Role, SplitError> {
    let deadline = std::time::Instant::now() + wait;
    let sock = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(SplitError::Connect {
                    path: path.to_owned(),
                    source: e,
                })
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    // READY=1 is this process's to send (it is the unit's main process), after confinement.
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        crate::guest::system::prepare_notify().map_err(|e| SplitError::Connect {
            path: path.to_owned(),
            source: e,
        })?;
    }
    confine::confine_started_unprivileged().map_err(SplitError::Confine)?;
    Ok(become_network_side(sock, false))
}

/// Records this process as the network side, talking to the privileged side on `sock`.
fn become_network_side(sock: UnixStream, forked: bool) -> Role {
    let client = Arc::new(MonitorClient::new(sock));
    let _ = SEPARATED.set(Separated {
        client: client.clone(),
        forked,
    });
    Role::Network(client)
}

/// The `privsep` section of `status`: how this agent is split, and who answers.
pub(crate) fn status() -> serde_json::Value {
    let mode = match SEPARATED.get() {
        Some(s) if s.forked => "forked",
        Some(_) => "units",
        None => "single",
    };
    serde_json::json!({
        "mode": mode,
        "network_pid": std::process::id(),
        "network_uid": rustix::process::geteuid().as_raw(),
        "no_new_privs": rustix::thread::no_new_privs().unwrap_or(false),
    })
}

/// The client of the privileged side, in the network side.
pub fn client() -> Option<&'static Arc<MonitorClient>> {
    SEPARATED.get().map(|s| &s.client)
}

/// The privileged side's part of the state directory: the directory and `env/` (0711, root's:
/// the env file is written here for its owner), and `lifecycle/` for the run logs, which the
/// network side writes (its own, 0700).
pub fn prepare_state(state_dir: &std::path::Path, network_user: Owner) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let private = |dir: &std::path::Path, mode| {
        envfile::ensure_private_dir(dir, mode).map_err(|e| std::io::Error::other(e.to_string()))
    };
    private(state_dir, 0o711)?;
    private(&state_dir.join("env"), 0o711)?;
    let logs = state_dir.join("lifecycle");
    match std::fs::create_dir(&logs) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    // lchown: never follow a link someone left where the directory should be.
    std::os::unix::fs::lchown(&logs, Some(network_user.uid), Some(network_user.gid))?;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700))
}

/// The network user's uid and gid (never root).
pub fn network_owner(name: &str) -> Result<Owner, SplitError> {
    let user = crate::guest::user::Account::lookup(name)?;
    if user.is_root() {
        return Err(SplitError::Root(name.to_owned()));
    }
    Ok(user.owner())
}

/// Where the privileged unit listens for its network side by default.
pub fn default_socket(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("privileged.sock")
}

/// Binds the privileged unit's socket at `path` (a stale socket is replaced, nothing else):
/// owned by the network user, mode 0600, so only it (and root) can even connect; the peer is
/// checked again by `SO_PEERCRED` at accept.
pub fn bind_privileged_socket(
    path: &std::path::Path,
    network_user: Owner,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    let l = crate::guest::transport::bind_unix(path, 0o600)?;
    std::os::unix::fs::lchown(path, Some(network_user.uid), Some(network_user.gid))?;
    Ok(l)
}

/// Forks into the two sides when running as root with a `network_user`; must be called before
/// any thread exists (the child of a multi-threaded fork may only call async-signal-safe
/// functions, and this one goes on to run the whole network side).
pub fn split(network_user: Option<&str>) -> Result<Role, SplitError> {
    let Some(name) = network_user else {
        return Ok(Role::Single);
    };
    if !rustix::process::geteuid().is_root() {
        return Ok(Role::Single);
    }
    let user = network_owner(name)?;
    let (privileged, network) = UnixStream::pair().map_err(SplitError::Fork)?;
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the caller guarantees a single-threaded process (see the doc comment), so the
    // child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(SplitError::Fork(std::io::Error::last_os_error())),
        0 => {
            drop(privileged);
            if let Err(e) = confine::confine(user, parent) {
                // Never run the network side unconfined.
                tracing::error!("{e}");
                std::process::exit(1);
            }
            Ok(become_network_side(network, true))
        }
        pid => {
            drop(network);
            let network = rustix::process::Pid::from_raw(pid).ok_or_else(|| {
                SplitError::Fork(std::io::Error::other("fork returned an invalid pid"))
            })?;
            Ok(Role::Privileged {
                network,
                network_user: user,
                sock: privileged,
            })
        }
    }
}
