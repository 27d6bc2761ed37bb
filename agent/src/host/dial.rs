//! Dialing an agent: addresses, the hybrid-vsock `CONNECT` preamble, retry with backoff.
//!
//! ```text
//! vsock:CID:PORT            AF_VSOCK straight to the guest (host kernel with vhost-vsock)
//! hybrid:/path/vm.sock:PORT Firecracker / Cloud Hypervisor / vhost-device-vsock Unix socket:
//!                             host → VMM  "CONNECT 1023\n"
//!                             VMM  → host "OK 1073741824\n"   (then the stream is the guest's)
//!                           the VMM closes the socket if nothing listens in the guest yet
//! unix:/path                a Unix socket (development, tests)
//! ```
//!
//! The `OK` line is read one byte at a time so no byte of the agent's first frame is swallowed,
//! and at most [`MAX_HYBRID_LINE`] bytes are read. The host usually dials before the guest
//! listens, so [`Backoff`] retries what can heal (refused, missing socket, VMM closing on us)
//! and gives up at once on what cannot (garbage from the VMM).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest `OK <n>\n` line accepted (Firecracker's own buffer is 32 bytes).
pub const MAX_HYBRID_LINE: usize = 32;

/// Where an agent can be reached from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectAddr {
    /// AF_VSOCK.
    Vsock {
        /// Guest CID.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// Hybrid vsock through the VMM's Unix socket.
    Hybrid {
        /// The VMM's socket.
        path: PathBuf,
        /// Guest port.
        port: u32,
    },
    /// Plain Unix socket.
    Unix(PathBuf),
}

/// A connect address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid agent address {0:?}: expected vsock:CID:PORT, hybrid:UDS_PATH:PORT or unix:PATH")]
pub struct ConnectAddrError(pub String);

impl FromStr for ConnectAddr {
    type Err = ConnectAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConnectAddrError(s.to_owned());
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            return Ok(Self::Vsock {
                cid: cid.parse().map_err(|_| bad())?,
                port: port.parse().map_err(|_| bad())?,
            });
        }
        if let Some(rest) = s.strip_prefix("hybrid:") {
            // The path may contain ':'; the port is after the last one.
            let (path, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Hybrid {
                path: path.into(),
                port: port.parse().map_err(|_| bad())?,
            });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(Self::Unix(path.into()));
            }
        }
        Err(bad())
    }
}

impl fmt::Display for ConnectAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::Hybrid { path, port } => write!(f, "hybrid:{}:{port}", path.display()),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Failures of the hybrid-vsock preamble.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// The VMM closed the socket: usually nothing listens on that port in the guest yet.
    #[error("the VMM closed the connection after CONNECT {port} (no listener in the guest yet?)")]
    Closed {
        /// Guest port.
        port: u32,
    },
    /// The VMM answered something other than `OK <n>`.
    #[error("unexpected answer to CONNECT {port}: {answer:?}")]
    Garbage {
        /// Guest port.
        port: u32,
        /// What arrived (lossy UTF-8, at most 32 bytes).
        answer: String,
    },
    /// No full answer in time.
    #[error("no answer to CONNECT {port} within {ms} ms")]
    Timeout {
        /// Guest port.
        port: u32,
        /// The deadline.
        ms: u128,
    },
    /// Socket error.
    #[error("hybrid vsock I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the `CONNECT <port>\n` / `OK <n>\n` exchange; returns the VMM's host-side port number.
pub async fn hybrid_connect<S>(
    stream: &mut S,
    port: u32,
    timeout: Duration,
) -> Result<u64, HybridError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        stream
            .write_all(format!("CONNECT {port}\n").as_bytes())
            .await?;
        stream.flush().await?;
        let mut line = Vec::with_capacity(MAX_HYBRID_LINE);
        loop {
            let mut b = [0u8; 1];
            if stream.read(&mut b).await? == 0 {
                return Err(if line.is_empty() {
                    HybridError::Closed { port }
                } else {
                    HybridError::Garbage {
                        port,
                        answer: String::from_utf8_lossy(&line).into_owned(),
                    }
                });
            }
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
            if line.len() >= MAX_HYBRID_LINE {
                return Err(HybridError::Garbage {
                    port,
                    answer: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
        parse_ok(&line).ok_or_else(|| HybridError::Garbage {
            port,
            answer: String::from_utf8_lossy(&line).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HybridError::Timeout {
            port,
            ms: timeout.as_millis(),
        })?
}

fn parse_ok(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.split_ascii_whitespace();
    let ok = parts.next()?;
    let n = parts.next()?.parse().ok()?;
    (ok == "OK" && parts.next().is_none()).then_some(n)
}

/// Exponential backoff for dialing an agent that may not listen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Give up after this long in total (`None`: never).
    pub deadline: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(20),
            max: Duration::from_secs(2),
            deadline: Some(Duration::from_secs(60)),
        }
    }
}

impl Backoff {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            deadline: Some(Duration::ZERO),
        }
    }

    /// The delay before attempt `n + 1` (n ≥ 1 attempts made).
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "vsock:3:1023".parse::<ConnectAddr>().unwrap(),
            ConnectAddr::Vsock { cid: 3, port: 1023 }
        );
        assert_eq!(
            "hybrid:/run/fc:a/v.sock:1023"
                .parse::<ConnectAddr>()
                .unwrap(),
            ConnectAddr::Hybrid {
                path: "/run/fc:a/v.sock".into(),
                port: 1023
            }
        );
        assert_eq!(
            "unix:/tmp/s".parse::<ConnectAddr>().unwrap().to_string(),
            "unix:/tmp/s"
        );
        for bad in ["vsock:3", "hybrid::1", "hybrid:/x:y", "unix:", "tcp:1"] {
            assert!(bad.parse::<ConnectAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ok_lines() {
        assert_eq!(parse_ok(b"OK 1073741824"), Some(1_073_741_824));
        for bad in [&b"ok 1"[..], b"OK", b"OK x", b"OK 1 2", b"ERR 1"] {
            assert_eq!(parse_ok(bad), None);
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            deadline: None,
        };
        let d: Vec<_> = (1..6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 50, 50]);
        assert_eq!(b.delay(1000), Duration::from_millis(50));
    }

    async fn vmm_answering(answer: &'static [u8]) -> Result<u64, HybridError> {
        let (mut host, mut vmm) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut buf = [0u8; 13];
            vmm.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"CONNECT 1023\n");
            vmm.write_all(answer).await.unwrap();
            // Keep the stream open until the host is done reading.
            let mut rest = Vec::new();
            let _ = vmm.read_to_end(&mut rest).await;
        });
        let r = hybrid_connect(&mut host, 1023, Duration::from_millis(300)).await;
        drop(host);
        r
    }

    #[tokio::test]
    async fn firecracker_ok_leaves_the_payload_unread() {
        let (mut host, mut vmm) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut buf = [0u8; 13];
            vmm.read_exact(&mut buf).await.unwrap();
            vmm.write_all(b"OK 1073741824\n\x00\x00\x00\x02{}")
                .await
                .unwrap();
        });
        assert_eq!(
            hybrid_connect(&mut host, 1023, Duration::from_secs(1))
                .await
                .unwrap(),
            1_073_741_824
        );
        let mut rest = [0u8; 6];
        host.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x00\x00\x00\x02{}");
    }

    #[tokio::test]
    async fn garbage_and_overlong_answers_are_errors() {
        assert!(matches!(
            vmm_answering(b"HELLO\n").await,
            Err(HybridError::Garbage { .. })
        ));
        assert!(matches!(
            vmm_answering(&[b'O'; 40]).await,
            Err(HybridError::Garbage { .. })
        ));
    }

    #[tokio::test]
    async fn silence_times_out() {
        assert!(matches!(
            vmm_answering(b"OK 1").await,
            Err(HybridError::Timeout { .. })
        ));
    }
}
