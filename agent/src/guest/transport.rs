//! Where the daemon listens and whom it lets in.
//!
//! ```text
//! vsock:any:1023   AF_VSOCK, any local CID, port 1023 (< 1024: only root can bind it, so guest
//!                  code cannot squat it after a crash); the peer CID must be in `allowed_cids`
//!                  (default [2] = the host). The kernel sets the peer CID, a guest process cannot
//!                  forge it; CID 1 (vsock_loopback) and our own CID are refused.
//! unix:/path       development and tests; no peer identity, so the HMAC key is mandatory
//!                  (enforced by the config).
//! ```
//!
//! Accepted connections are returned as [`Conn`], an enum over the concrete streams; the
//! connection handler itself is generic over `AsyncRead + AsyncWrite`, so both transports and
//! the unit tests' in-memory duplex pipes run the same code.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::net::{UnixListener, UnixStream};

/// A listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ListenAddr {
    /// AF_VSOCK; `cid: None` means any local CID.
    Vsock {
        /// Local CID to bind (`None` = `VMADDR_CID_ANY`).
        cid: Option<u32>,
        /// Port.
        port: u32,
    },
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

/// Why a listen address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// Not `vsock:CID|any:PORT` or `unix:PATH`.
    #[error(
        "invalid listen address {addr:?}: expected vsock:any:PORT, vsock:CID:PORT or unix:PATH"
    )]
    Syntax {
        /// The address as given.
        addr: String,
    },
}

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddrError::Syntax { addr: s.to_owned() };
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            let cid = match cid {
                "any" | "-1" => None,
                c => Some(c.parse::<u32>().map_err(|_| bad())?),
            };
            let port = port.parse::<u32>().map_err(|_| bad())?;
            return Ok(Self::Vsock { cid, port });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(path.into()));
        }
        Err(bad())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid: None, port } => write!(f, "vsock:any:{port}"),
            Self::Vsock { cid: Some(c), port } => write!(f, "vsock:{c}:{port}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A vsock peer and its kernel-assigned CID.
    Vsock {
        /// Peer CID.
        cid: u32,
        /// Peer port.
        port: u32,
    },
    /// A Unix-socket peer (identity comes from the HMAC handshake).
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock {cid}:{port}"),
            Self::Unix => f.write_str("unix"),
        }
    }
}

/// Whether a peer may talk to us at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerDecision {
    /// Go on with the handshake.
    Accept,
    /// Close at once; the reason is logged.
    Refuse(String),
}

/// The peer check done right after `accept`, before any byte is read.
pub(crate) fn check_peer(peer: &Peer, allowed_cids: &[u32]) -> PeerDecision {
    match peer {
        Peer::Unix => PeerDecision::Accept,
        Peer::Vsock { cid, .. } if allowed_cids.contains(cid) => PeerDecision::Accept,
        Peer::Vsock { cid, .. } => PeerDecision::Refuse(format!(
            "vsock peer CID {cid} is not in the allowed list {allowed_cids:?}"
        )),
    }
}

/// Binds a Unix socket at `path` with mode `mode`. A stale socket left there by a previous run
/// is replaced; any other kind of file is left alone and refused (`AlreadyExists`), so a
/// mistyped path never deletes a file. Used for every socket the agent listens on.
pub(crate) fn bind_unix(
    path: &Path,
    mode: u32,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum Conn {
    /// Over vsock.
    Vsock(tokio_vsock::VsockStream),
    /// Over a Unix socket.
    Unix(UnixStream),
}

/// A bound listener.
#[derive(Debug)]
pub(crate) enum Listener {
    /// AF_VSOCK.
    Vsock(tokio_vsock::VsockListener),
    /// Unix socket, with the path to remove on drop (none when the socket is another
    /// process's: the privileged side's, handed over).
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    /// Binds the address. For `unix:`, a stale socket file left by a previous run is replaced,
    /// but any other kind of file is left alone and reported.
    pub(crate) fn bind(addr: &ListenAddr) -> std::io::Result<Self> {
        match addr {
            ListenAddr::Vsock { cid, port } => {
                let cid = cid.unwrap_or(tokio_vsock::VMADDR_CID_ANY);
                let l = tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(cid, *port))?;
                Ok(Self::Vsock(l))
            }
            ListenAddr::Unix(path) => {
                // Only the owner (root in production) may even attempt the handshake.
                let l = bind_unix(path, 0o600)?;
                l.set_nonblocking(true)?;
                Ok(Self::Unix(UnixListener::from_std(l)?, Some(path.clone())))
            }
        }
    }

    /// The listener for `addr` on a descriptor bound elsewhere (by the privileged side). Must
    /// be called inside a tokio runtime.
    pub(crate) fn from_fd(addr: &ListenAddr, fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        match addr {
            ListenAddr::Vsock { .. } => Ok(Self::Vsock(tokio_vsock::VsockListener::from(fd))),
            ListenAddr::Unix(_) => {
                let l = std::os::unix::net::UnixListener::from(fd);
                l.set_nonblocking(true)?;
                Ok(Self::Unix(UnixListener::from_std(l)?, None))
            }
        }
    }

    /// Accepts one connection.
    pub(crate) async fn accept(&self) -> std::io::Result<(Conn, Peer)> {
        match self {
            Self::Vsock(l) => {
                let (s, addr) = l.accept().await?;
                Ok((
                    Conn::Vsock(s),
                    Peer::Vsock {
                        cid: addr.cid(),
                        port: addr.port(),
                    },
                ))
            }
            Self::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Conn::Unix(s), Peer::Unix))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        for s in ["vsock:any:1023", "vsock:3:5000", "unix:/run/a.sock"] {
            assert_eq!(s.parse::<ListenAddr>().unwrap().to_string(), s);
        }
        assert_eq!(
            "vsock:-1:1023".parse::<ListenAddr>().unwrap(),
            ListenAddr::Vsock {
                cid: None,
                port: 1023
            }
        );
        for bad in [
            "",
            "tcp:1:2",
            "vsock:any",
            "vsock:x:1",
            "vsock:any:70000000000",
            "unix:",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_allowed_cids_pass() {
        assert_eq!(
            check_peer(&Peer::Vsock { cid: 2, port: 9 }, &[2]),
            PeerDecision::Accept
        );
        for cid in [1, 3, u32::MAX] {
            assert!(matches!(
                check_peer(&Peer::Vsock { cid, port: 9 }, &[2]),
                PeerDecision::Refuse(_)
            ));
        }
        assert_eq!(check_peer(&Peer::Unix, &[]), PeerDecision::Accept);
    }

    #[tokio::test]
    async fn unix_listener_replaces_a_stale_socket_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.sock");
        let l = Listener::bind(&ListenAddr::Unix(p.clone())).unwrap();
        std::mem::forget(l); // leave the socket file behind like a crash would
        let _l2 = Listener::bind(&ListenAddr::Unix(p)).unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, b"x").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(f)).is_err());
    }
}
