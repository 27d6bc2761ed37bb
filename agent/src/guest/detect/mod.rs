//! Listening-port detection: which TCP ports are open in the VM, who opened them, and when that
//! changes.
//!
//! ```text
//!  every poll_interval (150 ms):
//!    source ── sock_diag dump (LISTEN only, v4 + v6)   ─┐   RawListener {addr, port, uid, inode}
//!          └─ or /proc/net/tcp{,6} (state 0A) fallback ─┘
//!       │
//!    Tracker::update (pure diff keyed by (addr, port, inode))
//!       │  new listeners only ─▶ owner::OwnerResolver (inode → pid via /proc/PID/fd)
//!       ▼
//!    PortChange::{Opened, Closed} ─▶ mpsc channel (the forwarder's registry)
//!                                 └▶ EventSink: `port_opened` / `port_closed` events to the host
//! ```
//!
//! Why polling and why `sock_diag`: a dump filtered in the kernel to `TCP_LISTEN` walks only the
//! listening hash, so it costs ~0.04 ms idle and ~0.6 ms with 1,000 listeners and 10,000
//! established connections; `/proc/net/tcp` walks every bucket of the established hash on every
//! read (~3 ms idle, ~39 ms loaded; measured in `shared/reference/sandbox-ports.md` and in
//! `tests/perf/README.md`). The fallback exists for kernels built without `INET_DIAG`.
//!
//! Invariants:
//! - a socket is identified by `(address, port, inode)`: a port closed and reopened between two
//!   polls is reported as `Closed` then `Opened` (new inode), never silently merged;
//! - owners are resolved only for listeners that are new in this poll (a `/proc` fd scan is the
//!   expensive part), and never re-resolved;
//! - sockets of the agent itself (`ignore_pid`) and `ignore_ports` are never reported;
//! - the scan sees the agent's network namespace and the codespace's restricted one (a
//!   restricted run's dev server, tagged [`Network::Restricted`]); listeners inside containers
//!   with their own netns are invisible, as for every netns-unaware tool.

mod options;
pub mod owner;
pub mod procnet;
pub mod sock_diag;
mod tracker;
mod watcher;

use std::net::IpAddr;

use serde::Serialize;

pub use self::options::{DetectConfigError, DetectOptions, Method, RawDetectConfig};
pub(crate) use self::tracker::Tracker;
pub use self::watcher::{DetectionStatus, PortWatcher};

/// What a listener is bound to, as the forwarder and the host care about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BindScope {
    /// `127.0.0.0/8`, `::1` (or `::ffff:127.x.y.z`): reachable only from inside the VM, which is
    /// what the agent's forwarder connects to.
    Loopback,
    /// `0.0.0.0` or `::`: every interface.
    #[serde(rename = "all")]
    AllInterfaces,
    /// One non-loopback address of the VM (e.g. the address of `eth0`).
    Specific,
}

impl BindScope {
    /// The scope of a bound address.
    pub(crate) fn of(addr: IpAddr) -> Self {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        if addr.is_unspecified() {
            Self::AllInterfaces
        } else if addr.is_loopback() {
            Self::Loopback
        } else {
            Self::Specific
        }
    }

    /// The wire spelling used in events and `status`: `loopback`, `all` or `specific`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::AllInterfaces => "all",
            Self::Specific => "specific",
        }
    }
}

/// A listener as a source reports it, before owner resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawListener {
    /// Bound address.
    pub(crate) addr: IpAddr,
    /// Bound port.
    pub(crate) port: u16,
    /// The socket's owner uid (the creating process's fsuid).
    pub(crate) uid: u32,
    /// The socket's inode (the `N` of `/proc/PID/fd/* -> socket:[N]`).
    pub inode: u64,
}

/// A listening TCP socket with its owner, as reported to the forwarder and the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListeningSocket {
    /// Bound port.
    pub port: u16,
    /// Bound address (`0.0.0.0`, `::`, `127.0.0.1`, ...).
    pub addr: IpAddr,
    /// What the address means for reachability.
    pub scope: BindScope,
    /// Uid owning the socket.
    pub uid: u32,
    /// Socket inode; distinguishes a reopened port from the old one.
    pub(crate) inode: u64,
    /// Owning process, when it could be found (it may have exited or live in another PID
    /// namespace).
    pub pid: Option<u32>,
    /// The owning process's command name (`/proc/PID/comm`).
    pub process: Option<String>,
    /// Which network namespace it listens in: the agent's, or the restricted principal's
    /// ([`crate::guest::sandbox::netns`]), where the forwarder must connect from.
    pub(crate) network: Network,
}

/// The network namespace a listener lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Network {
    /// The agent's (the VM's) namespace.
    #[default]
    Agent,
    /// The codespace's restricted namespace (a restricted run's dev server).
    Restricted,
}

impl ListeningSocket {
    /// Joins a raw listener with its (possibly unknown) owner.
    pub(crate) fn new(raw: RawListener, owner: Option<&owner::Owner>) -> Self {
        Self {
            port: raw.port,
            addr: raw.addr,
            scope: BindScope::of(raw.addr),
            uid: raw.uid,
            inode: raw.inode,
            pid: owner.map(|o| o.pid),
            process: owner.map(|o| o.process.clone()),
            network: Network::Agent,
        }
    }

    /// The event fields: `port, address, scope, pid, process, uid`.
    pub(crate) fn event_fields(&self) -> serde_json::Value {
        serde_json::json!({
            "port": self.port,
            "address": self.addr.to_string(),
            "scope": self.scope.as_str(),
            "pid": self.pid,
            "process": self.process,
            "uid": self.uid,
            "network": self.network,
        })
    }
}

/// A change in the set of listening sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", content = "socket", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PortChange {
    /// A socket started listening (or was listening when the watcher started).
    Opened(ListeningSocket),
    /// A socket stopped listening; carries what was reported when it opened.
    Closed(ListeningSocket),
}

impl PortChange {
    /// The socket concerned.
    pub fn socket(&self) -> &ListeningSocket {
        match self {
            Self::Opened(s) | Self::Closed(s) => s,
        }
    }

    /// The event name: `port_opened` or `port_closed`.
    pub(crate) fn event_name(&self) -> &'static str {
        match self {
            Self::Opened(_) => "port_opened",
            Self::Closed(_) => "port_closed",
        }
    }

    /// The event pushed to the host.
    pub(crate) fn to_event(&self) -> crate::wire::Event {
        crate::wire::Event::new(self.event_name(), self.socket().event_fields())
    }
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A netlink system call failed (`socket`, `sendto`, `recv`).
    #[error("sock_diag {op}: {source}")]
    SockDiagIo {
        /// The operation.
        op: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel's answer could not be parsed.
    #[error("sock_diag: {0}")]
    SockDiagParse(#[from] sock_diag::ParseError),
    /// The kernel answered the dump with an error (e.g. no `inet_diag` module).
    #[error("sock_diag dump refused by the kernel: {0}")]
    SockDiagRefused(std::io::Error),
    /// A `/proc/net` table could not be read.
    #[error("cannot read {path}: {source}")]
    ProcNet {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where listeners come from: a sock_diag socket kept open between polls, or `/proc/net`.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum Source {
    /// Netlink `NETLINK_SOCK_DIAG` dumps.
    SockDiag(sock_diag::SockDiag),
    /// `/proc/net/tcp` and `/proc/net/tcp6`.
    ProcNet(procnet::ProcNet),
}

impl Source {
    /// Opens the source the options ask for; `auto` tries sock_diag (one probe dump) and falls
    /// back to `/proc/net` when netlink is unavailable, logging why.
    pub(crate) fn open(opts: &DetectOptions) -> Result<Self, DetectError> {
        let procnet = || Self::ProcNet(procnet::ProcNet::new(&opts.proc_root));
        match opts.method {
            Method::ProcNet => Ok(procnet()),
            Method::SockDiag => Ok(Self::SockDiag(sock_diag::SockDiag::open()?)),
            Method::Auto => {
                let probe = sock_diag::SockDiag::open().and_then(|mut s| s.dump().map(|_| s));
                match probe {
                    Ok(s) => Ok(Self::SockDiag(s)),
                    Err(e) => {
                        tracing::warn!(error = %e, "sock_diag unavailable; polling /proc/net/tcp instead");
                        Ok(procnet())
                    }
                }
            }
        }
    }

    /// `sock_diag` or `procnet`, as reported in `status`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::SockDiag(_) => "sock_diag",
            Self::ProcNet(_) => "procnet",
        }
    }

    /// Every listening TCP socket (IPv4 and IPv6), in the kernel's order (stable from one
    /// dump to the next while nothing changes, which lets the watcher compare dumps without
    /// sorting them; [`Tracker`] orders and deduplicates).
    pub(crate) fn listeners(&mut self) -> Result<Vec<RawListener>, DetectError> {
        match self {
            Self::SockDiag(s) => s.dump(),
            Self::ProcNet(p) => p.read(),
        }
    }
}

/// One scan: every listening socket with its owner, minus the ignored ones. Resolves the owner of
/// every listener (a full `/proc` fd scan), so prefer [`PortWatcher`] for repeated use.
pub fn scan(opts: &DetectOptions) -> Result<Vec<ListeningSocket>, DetectError> {
    let mut source = Source::open(opts)?;
    let mut tracker = Tracker::new(opts);
    let mut resolver = owner::OwnerResolver::new(&opts.proc_root);
    let raw = source.listeners()?;
    tracker.update(raw, |want| resolver.resolve(want));
    Ok(tracker.current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_address() {
        let s = |a: &str| BindScope::of(a.parse().unwrap_or(IpAddr::from([1, 1, 1, 1])));
        assert_eq!(s("127.0.0.1"), BindScope::Loopback);
        assert_eq!(s("127.0.0.53"), BindScope::Loopback);
        assert_eq!(s("::1"), BindScope::Loopback);
        assert_eq!(s("::ffff:127.0.0.1"), BindScope::Loopback);
        assert_eq!(s("0.0.0.0"), BindScope::AllInterfaces);
        assert_eq!(s("::"), BindScope::AllInterfaces);
        assert_eq!(s("::ffff:0.0.0.0"), BindScope::AllInterfaces);
        assert_eq!(s("10.1.2.3"), BindScope::Specific);
        assert_eq!(s("fe80::1"), BindScope::Specific);
        assert_eq!(BindScope::AllInterfaces.as_str(), "all");
        assert_eq!(
            serde_json::to_value(BindScope::AllInterfaces).ok(),
            Some(serde_json::json!("all"))
        );
    }

    #[test]
    fn events_carry_the_documented_fields() {
        let raw = RawListener {
            addr: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            uid: 1000,
            inode: 42,
        };
        let owner = owner::Owner {
            pid: 7,
            process: "node".into(),
        };
        let c = PortChange::Opened(ListeningSocket::new(raw, Some(&owner)));
        let e = c.to_event();
        assert_eq!(e.name, "port_opened");
        assert_eq!(
            serde_json::Value::Object(e.fields),
            serde_json::json!({"port": 8080, "address": "0.0.0.0", "scope": "all",
                               "pid": 7, "process": "node", "uid": 1000, "network": "agent"})
        );
        let closed = PortChange::Closed(ListeningSocket::new(raw, None)).to_event();
        assert_eq!(closed.name, "port_closed");
        assert_eq!(closed.fields["pid"], serde_json::Value::Null);
    }
}
