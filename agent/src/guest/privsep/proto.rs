//! The messages between the network-facing process and the privileged one.
//!
//! Every request names one privileged effect; the privileged side decides everything else from
//! its own configuration (the address it binds, the broker's path, the environment file's path
//! and owner, the restricted principal, the organization policy). Unknown operations and unknown
//! fields are refused by `serde`, so a newer or a compromised network side cannot smuggle an
//! option in.
//!
//! | request | effect (privileged side) | answer (+ descriptors) |
//! |---|---|---|
//! | `listen` | applies the firewall once, binds the configured control address | `listening {firewall}` + listener |
//! | `broker_socket` | binds `STATE_DIR/git-credential.sock`, mode 0666 | `done` + listener |
//! | `signing_socket` | binds `STATE_DIR/git-sign.sock`, mode 0666 | `done` + listener |
//! | `signing_git_config {format}` | writes its fixed git configuration for `ssh`/`openpgp` at `signing.git_config` (0644), or removes it (`null`) | `done` |
//! | `launch` | checks the run against the policy and the principals, starts it | `launched {applied, degraded}` + exit, stdout, stderr pipes |
//! | `kill_restricted` | kills every restricted process of the codespace | `killed {count}` |
//! | `env_file` | checks every name, writes the env file (blob) for its owner, or removes it | `done` |
//! | `restricted_socket {kind, have}` | a socket made inside the restricted network namespace | `socket {netns}` + socket |
//! | `socket_owners {sockets}` | which process holds each listening socket (`/proc/PID/fd`) | `owners {owners}` |
//! | `terminal_activity` | the newest genuine stamp of `/dev/pts/N` (guest::activity) | `terminal {latest_us}` |
//! | `docker_config {registries}` | `credHelpers` for exactly these registries in the user's `~/.docker/config.json` (guest::registry) | `docker_config {report}` |
//!
//! Any request may be answered `refused {reason}` (the policy or a principal rule says no) or
//! `failed {error}` (the effect failed).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::guest::firewall::FirewallStatus;
use crate::guest::lifecycle::launcher::{Program, Trust};

/// What the network side asks for.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// The control listener (and the firewall before it).
    Listen {},
    /// The credential broker's listening socket.
    BrokerSocket {},
    /// The signing broker's listening socket.
    SigningSocket {},
    /// Turn signing on in git (the privileged side's own template for `format`), or off.
    SigningGitConfig {
        /// The format, or `None` to remove the file.
        format: Option<codespace_policy::signing::SigningFormat>,
    },
    /// Start one lifecycle command or extension install.
    Launch(Box<Launch>),
    /// Kill every process of the restricted principal.
    KillRestricted {},
    /// Write the environment file (the frame's blob is its contents), or remove it.
    EnvFile {
        /// Remove instead of writing.
        remove: bool,
    },
    /// A socket inside the restricted network namespace.
    RestrictedSocket {
        /// Which kind.
        kind: SocketKind,
        /// The namespace inode the caller already has a socket for: answered without a new
        /// socket while it is still the codespace's namespace.
        have: Option<u64>,
    },
    /// The newest input or output on the VM's terminals (guest::activity): the network side's
    /// unit has a private `/dev` and cannot see them.
    TerminalActivity {},
    /// Owners of listening sockets.
    SocketOwners {
        /// The sockets (at most [`MAX_OWNER_QUERIES`]).
        sockets: Vec<SocketRef>,
    },
    /// Point Docker at the registry credential helper for exactly these registries (each
    /// parsed again here; at most `MAX_REGISTRIES`). The directory and its owner are this
    /// side's: the configured `docker_config_dir` or the codespace user's `~/.docker`.
    DockerConfig {
        /// The registries' hosts.
        registries: Vec<String>,
    },
}

impl Request {
    /// The operation's name, for logs and errors.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Self::Listen {} => "listen",
            Self::BrokerSocket {} => "broker_socket",
            Self::SigningSocket {} => "signing_socket",
            Self::SigningGitConfig { .. } => "signing_git_config",
            Self::Launch(_) => "launch",
            Self::KillRestricted {} => "kill_restricted",
            Self::EnvFile { .. } => "env_file",
            Self::RestrictedSocket { .. } => "restricted_socket",
            Self::SocketOwners { .. } => "socket_owners",
            Self::TerminalActivity {} => "terminal_activity",
            Self::DockerConfig { .. } => "docker_config",
        }
    }
}

/// Most sockets one `socket_owners` request may ask about.
pub(crate) const MAX_OWNER_QUERIES: usize = 4096;

/// One command to start.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Launch {
    /// Trusted or restricted.
    pub(crate) strength: Trust,
    /// The account it runs as (checked against the principals, then resolved again from
    /// `/etc/passwd` by the privileged side: uid, gid, home and shell are never taken from here).
    pub(crate) user: String,
    /// The command's environment (may hold secrets: no `Debug`).
    pub(crate) env: Vec<(String, String)>,
    /// Working directory.
    pub(crate) cwd: PathBuf,
    /// The workspace folder.
    pub(crate) workspace: PathBuf,
    /// Timeout of the command.
    pub(crate) timeout_ms: u64,
    /// Time between `SIGTERM` and `SIGKILL` at the timeout.
    pub(crate) grace_ms: u64,
    /// The command.
    pub(crate) program: Program,
    /// The policy's inputs; a trusted launch without them is refused.
    pub(crate) facts: Option<FactsWire>,
}

/// The trust facts a lifecycle decision is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FactsWire {
    /// `none` … `admin`.
    pub(crate) creator_access: codespace_policy::repo::AccessLevel,
    /// A pull request from a fork.
    pub(crate) pull_request_from_fork: bool,
    /// A prebuild.
    pub(crate) prebuild: bool,
    /// `owner/name`.
    pub(crate) repository: String,
}

/// Kinds of socket the restricted network namespace hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SocketKind {
    /// TCP over IPv4, non-blocking (the forwarder connects it).
    Tcp4,
    /// TCP over IPv6, non-blocking.
    Tcp6,
    /// `NETLINK_SOCK_DIAG` (port detection dumps it).
    SockDiag,
}

/// A listening socket to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SocketRef {
    /// Its inode.
    pub(crate) inode: u64,
    /// Its uid (processes of that uid are searched first).
    pub(crate) uid: u32,
}

/// A socket's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnerWire {
    /// The socket's inode.
    pub(crate) inode: u64,
    /// The process.
    pub(crate) pid: u32,
    /// Its command name.
    pub(crate) process: String,
}

/// How a command ended, as written to its exit pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExitWire {
    /// Exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// Terminating signal, if killed.
    pub(crate) signal: Option<i32>,
    /// Whether the timeout fired.
    pub(crate) timed_out: bool,
    /// From start to exit.
    pub(crate) duration_us: u64,
}

/// What the privileged side answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Reply {
    /// Done (descriptors as the request says).
    Done,
    /// The control listener is attached; the firewall's state for `status`.
    Listening {
        /// The firewall.
        firewall: FirewallStatus,
    },
    /// Started: exit pipe, stdout and stderr are attached, in that order.
    Launched {
        /// What the sandbox applied.
        applied: Option<serde_json::Value>,
        /// Layers the machine could not give.
        degraded: Vec<String>,
    },
    /// How many processes were killed.
    Killed {
        /// Count.
        count: usize,
    },
    /// The socket is attached, unless the request's `have` is still the namespace. (No
    /// namespace at all is answered `done`.)
    Socket {
        /// The namespace's inode (it changes when the namespace is made anew).
        netns: u64,
    },
    /// The newest terminal stamp, microseconds since the epoch (none: no terminal shows any).
    Terminal {
        /// The stamp.
        latest_us: Option<u64>,
    },
    /// Owners found (sockets without one are left out).
    Owners {
        /// The owners.
        owners: Vec<OwnerWire>,
    },
    /// What the Docker configuration sync did.
    DockerConfig {
        /// The report.
        report: crate::guest::registry::docker_config::DockerConfigReport,
    },
    /// Not allowed (a rule of the privileged side; the reason is for the host).
    Refused {
        /// Why.
        reason: String,
    },
    /// The effect failed.
    Failed {
        /// Why.
        error: String,
    },
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Launch")
            .field("strength", &self.strength)
            .field("user", &self.user)
            .field("env_names", &names)
            .field("cwd", &self.cwd)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Launch(l) => l.fmt(f),
            other => f.write_str(other.op()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_and_fields_are_refused() {
        for text in [
            r#"{"op":"become_root"}"#,
            r#"{"op":"listen","address":"vsock:any:1"}"#,
            r#"{"op":"env_file","remove":false,"path":"/etc/shadow"}"#,
            r#"{"op":"restricted_socket","kind":"raw"}"#,
        ] {
            assert!(
                serde_json::from_str::<Request>(text).is_err(),
                "accepted {text}"
            );
        }
        let ok: Request = serde_json::from_str(r#"{"op":"kill_restricted"}"#).unwrap();
        assert_eq!(ok.op(), "kill_restricted");
    }

    #[test]
    fn programs_keep_their_wire_form() {
        for (program, text) in [
            (
                Program::Shell("echo hi".into()),
                r#"{"form":"shell","argv":"echo hi"}"#,
            ),
            (
                Program::Exec(vec!["npm".into(), "ci".into()]),
                r#"{"form":"exec","argv":["npm","ci"]}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&program).unwrap(), text);
            assert_eq!(serde_json::from_str::<Program>(text).unwrap(), program);
        }
    }

    #[test]
    fn a_launch_does_not_show_its_environment_values() {
        let l = Launch {
            strength: Trust::Trusted,
            user: "codespace".into(),
            env: vec![("GITHUB_TOKEN".into(), "ghu_secretvalue".into())],
            cwd: "/w".into(),
            workspace: "/w".into(),
            timeout_ms: 1,
            grace_ms: 1,
            program: Program::Shell("true".into()),
            facts: None,
        };
        let shown = format!("{:?}", Request::Launch(Box::new(l)));
        assert!(shown.contains("GITHUB_TOKEN"), "{shown}");
        assert!(!shown.contains("ghu_secretvalue"), "{shown}");
    }
}
