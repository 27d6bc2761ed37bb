//! Relaying bytes between two connected sockets, zero-copy where the kernel allows.
//!
//! ```text
//!        splice(a → pipe)         splice(pipe → b)
//!   a ────────────────▶ [pipe a→b] ────────────────▶ b      (and the mirror image b → a)
//!   EOF on a  ──▶ shutdown(b, SHUT_WR)   the other direction goes on (half-close)
//! ```
//!
//! [`relay`] takes two [`RelaySocket`]s: sockets that tokio's reactor already watches and that
//! have a descriptor. Tokio's Unix and TCP streams are used as they are, so setting up a relay
//! costs no system call for the sockets (a forwarded connection's first byte waits for that
//! set-up); a stream whose readiness tokio does not expose (vsock) is registered anew once
//! ([`reregister`]). Each direction moves data through its own pipe with `splice(2)`: the
//! payload pages are passed by reference from the source socket's receive queue into the pipe
//! and from the pipe into the destination socket, never copied through user space. A
//! direction drains its pipe completely before it splices into it again, so the pipe side
//! never blocks and `EAGAIN` always means "the socket is not ready". If the kernel refuses
//! `splice` for a socket type (`EINVAL`), that direction falls back to `read`/`write` through a
//! user-space buffer.
//!
//! [`relay_streams`] is the fallback for streams without a descriptor (in-memory test pipes):
//! `tokio::io::copy_bidirectional`, which half-closes the same way.
//!
//! [`relay_metered`] counts the bytes of each direction in a [`Meter`] as they pass, with the
//! time of the last transfer, so whoever holds the meter can read them while the relay runs
//! (the activity clock, for the owner-only ports) and after it was cancelled (the audit
//! record of a forwarded connection). Counting costs two relaxed atomic operations and a
//! coarse clock read per chunk.
//!
//! Invariants: the relay ends when both directions have seen end of stream, when either fails,
//! or when `cancel` resolves; then both sockets and both pipes are closed (dropped).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest};

/// Pipe capacity a direction grows to once it carries bulk data (the kernel may grant less;
/// `/proc/sys/fs/pipe-max-size` is 1 MiB by default). A new pipe has the kernel's default
/// (64 KiB): most connections carry little, and a pipe's slot array is sized by its capacity.
pub const PIPE_SIZE: usize = 1024 * 1024;
/// Largest single `splice` asked for.
const SPLICE_LEN: usize = PIPE_SIZE;
/// Buffer of the user-space fallback.
const COPY_BUFFER: usize = 64 * 1024;

/// Bytes moved by a finished relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// From the first socket to the second.
    pub a_to_b: u64,
    /// From the second socket to the first.
    pub b_to_a: u64,
}

/// The live byte counts of a relay and when bytes last moved, readable while it runs.
#[derive(Debug, Default)]
pub struct Meter {
    a_to_b: AtomicU64,
    b_to_a: AtomicU64,
    /// Milliseconds since the Unix epoch of the last transfer (0: none yet).
    last_ms: AtomicU64,
}

impl Meter {
    /// A meter with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes moved so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            a_to_b: self.a_to_b.load(Ordering::Relaxed),
            b_to_a: self.b_to_a.load(Ordering::Relaxed),
        }
    }

    /// When bytes last moved in either direction, if ever.
    pub fn last_transfer(&self) -> Option<SystemTime> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    fn count(&self, a_to_b: bool, bytes: u64) {
        let counter = if a_to_b { &self.a_to_b } else { &self.b_to_a };
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.stamp();
    }

    fn stamp(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_ms.store(now.max(1), Ordering::Relaxed);
    }
}

/// How a relay ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayEnd {
    /// Both directions reached end of stream.
    Finished(RelayStats),
    /// `cancel` resolved first (revocation, shutdown); both sockets were closed.
    Cancelled,
    /// A socket failed (reset by the peer, ...).
    Failed(io::Error),
}

/// Send buffer asked for on the Unix-socket leg (capped by `net.core.wmem_max`).
pub const UNIX_SEND_BUFFER: usize = 2 * 1024 * 1024;

/// Widens a Unix stream socket's send buffer. A Unix stream's queue is bounded by the
/// sender's send buffer alone (208 KiB by default), so with the default each side of a bulk
/// transfer wakes the other every 200 KiB; a wider buffer lets the relay move more per wakeup.
/// Best effort: the default keeps working. Not for TCP, where it would turn off autotuning.
pub fn widen_unix_send_buffer(fd: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, UNIX_SEND_BUFFER);
}

/// A connected, non-blocking socket that the relay can wait on and splice through: watched by
/// tokio's reactor, with a descriptor.
pub trait RelaySocket: AsFd + Send + Sync {
    /// Waits until the socket may be ready for `interest` (a single interest, read or write).
    fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<()>> + Send;

    /// Runs `op` if the socket is ready for `interest`; an `op` that would block clears the
    /// readiness, so the next [`ready`](Self::ready) waits for the reactor.
    fn try_io<R>(&self, interest: Interest, op: impl FnOnce() -> io::Result<R>) -> io::Result<R>;

    /// Called once when the relay starts writing bulk data to this socket (a direction filled
    /// its pipe). Unix sockets widen their send buffer then ([`widen_unix_send_buffer`]);
    /// short connections never pay for it.
    fn bulk_writes(&self) {}
}

impl RelaySocket for tokio::net::UnixStream {
    async fn ready(&self, interest: Interest) -> io::Result<()> {
        tokio::net::UnixStream::ready(self, interest)
            .await
            .map(drop)
    }

    fn try_io<R>(&self, interest: Interest, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        tokio::net::UnixStream::try_io(self, interest, op)
    }

    fn bulk_writes(&self) {
        widen_unix_send_buffer(self.as_fd());
    }
}

impl RelaySocket for tokio::net::TcpStream {
    async fn ready(&self, interest: Interest) -> io::Result<()> {
        tokio::net::TcpStream::ready(self, interest).await.map(drop)
    }

    fn try_io<R>(&self, interest: Interest, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        tokio::net::TcpStream::try_io(self, interest, op)
    }
}

impl RelaySocket for AsyncFd<OwnedFd> {
    async fn ready(&self, interest: Interest) -> io::Result<()> {
        // Dropping the guard keeps the readiness; `try_io` clears it when the call would block.
        AsyncFd::ready(self, interest).await.map(drop)
    }

    fn try_io<R>(&self, interest: Interest, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        AsyncFd::try_io(self, interest, |_| op())
    }
}

/// Takes over the descriptor of a stream whose readiness tokio does not expose (a
/// `tokio_vsock::VsockStream`): duplicates it, drops the stream (deregistering it from
/// whatever reactor held it) and registers the duplicate with tokio's reactor.
pub fn reregister<T: AsFd>(stream: T) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = stream.as_fd().try_clone_to_owned()?;
    drop(stream);
    register(fd)
}

/// Registers a descriptor with tokio's reactor.
#[allow(unsafe_code)] // tokio's registration is `unsafe` because of I/O safety; see SAFETY.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid, open descriptor that it alone closes, on drop, and its
    // `as_raw_fd` always returns the same number; the `AsyncFd` owns it, so it stays open and
    // refers to the same file description for the `AsyncFd`'s whole life.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Relays between two connected, non-blocking sockets until both directions end or `cancel`
/// resolves; both are closed when it returns.
pub async fn relay<A, B>(a: A, b: B, cancel: impl Future<Output = ()>) -> RelayEnd
where
    A: RelaySocket,
    B: RelaySocket,
{
    relay_metered(a, b, cancel, &Meter::new()).await
}

/// [`relay`], counting the bytes in `meter` as they move.
pub async fn relay_metered<A, B>(
    a: A,
    b: B,
    cancel: impl Future<Output = ()>,
    meter: &Meter,
) -> RelayEnd
where
    A: RelaySocket,
    B: RelaySocket,
{
    let both = async {
        let (ab, ba) = tokio::join!(one_way(&a, &b, meter, true), one_way(&b, &a, meter, false));
        match (ab, ba) {
            (Ok(a_to_b), Ok(b_to_a)) => RelayEnd::Finished(RelayStats { a_to_b, b_to_a }),
            (Err(e), _) | (_, Err(e)) => RelayEnd::Failed(e),
        }
    };
    tokio::select! {
        end = both => end,
        () = cancel => RelayEnd::Cancelled,
    }
}

/// Relays between two streams that have no descriptor, with a user-space copy. The meter is
/// only told the totals at the end (`copy_bidirectional` reports nothing before).
pub async fn relay_streams<A, B>(
    mut a: A,
    mut b: B,
    cancel: impl Future<Output = ()>,
    meter: &Meter,
) -> RelayEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => match r {
            Ok((a_to_b, b_to_a)) => {
                meter.count(true, a_to_b);
                meter.count(false, b_to_a);
                RelayEnd::Finished(RelayStats { a_to_b, b_to_a })
            }
            Err(e) => RelayEnd::Failed(e),
        },
        () = cancel => RelayEnd::Cancelled,
    }
}

/// Waits until `socket` is ready for `interest` and runs `op`, again and again while it would
/// block.
async fn when_ready<S: RelaySocket, R>(
    socket: &S,
    interest: Interest,
    mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
) -> io::Result<R> {
    loop {
        socket.ready(interest).await?;
        match socket.try_io(interest, || op(socket.as_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// One direction's pipe.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes (what `F_GETPIPE_SZ` said when it was made, or what it grew to).
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = fcntl_getpipe_size(&write).unwrap_or(PIPE_SIZE);
        Ok(Self {
            read,
            write,
            capacity,
        })
    }
}

/// Copies `src` to `dst` until end of stream, then shuts `dst` down for writing; counts in
/// `meter` as the `a_to_b` direction or the other.
async fn one_way<S: RelaySocket, D: RelaySocket>(
    src: &S,
    dst: &D,
    meter: &Meter,
    a_to_b: bool,
) -> io::Result<u64> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut total = 0u64;
    let mut pipe = Some(Pipe::new()?);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let moved = match &pipe {
            Some(p) => {
                let r = when_ready(src, Interest::READABLE, |s| {
                    splice(s, None, &p.write, None, SPLICE_LEN, flags).map_err(io::Error::from)
                })
                .await;
                match r {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && total == 0 => {
                        // This socket type cannot splice: copy through user space from now on.
                        pipe = None;
                        buf = vec![0; COPY_BUFFER];
                        continue;
                    }
                    r => r?,
                }
            }
            None => {
                when_ready(src, Interest::READABLE, |s| {
                    rustix::io::read(s, &mut buf[..]).map_err(io::Error::from)
                })
                .await?
            }
        };
        if moved == 0 {
            // End of stream: pass the half-close on; ENOTCONN means the peer is gone already.
            match rustix::net::shutdown(dst, rustix::net::Shutdown::Write) {
                Ok(()) | Err(rustix::io::Errno::NOTCONN) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(total);
        }
        let mut left = moved;
        while left > 0 {
            let n = match &pipe {
                Some(p) => {
                    when_ready(dst, Interest::WRITABLE, |d| {
                        splice(&p.read, None, d, None, left, flags).map_err(io::Error::from)
                    })
                    .await?
                }
                None => {
                    let start = moved - left;
                    when_ready(dst, Interest::WRITABLE, |d| {
                        rustix::io::write(d, &buf[start..moved]).map_err(io::Error::from)
                    })
                    .await?
                }
            };
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            left -= n;
        }
        total += moved as u64;
        meter.count(a_to_b, moved as u64);
        if let Some(p) = pipe.as_mut() {
            if moved >= p.capacity && p.capacity < PIPE_SIZE {
                // A full pipe: bulk data. Grow it (now, while empty) so each system call moves
                // more, and let the destination widen its buffer; best effort, the small pipe
                // keeps working if the kernel says no.
                p.capacity = fcntl_setpipe_size(&p.write, PIPE_SIZE).unwrap_or(PIPE_SIZE);
                dst.bulk_writes();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UnixStream};

    /// A Unix socket pair on one side and a TCP connection on the other, relayed in between.
    async fn relayed() -> (
        UnixStream,
        TcpStream,
        tokio::task::JoinHandle<RelayEnd>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (client, agent_side) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = tokio::spawn(relay(agent_side, target, async move {
            let _ = rx.await;
        }));
        (client, server, h, tx)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_half_close_is_passed_on() {
        let (mut client, mut server, h, _cancel) = relayed().await;
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let p = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&p).await.unwrap();
            client.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload, "server sees every byte, then end of stream");
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"done");
        match h.await.unwrap() {
            RelayEnd::Finished(s) => assert_eq!((s.a_to_b, s.b_to_a), (3_000_000, 4)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn cancel_closes_both_sockets() {
        let (mut client, mut server, h, cancel) = relayed().await;
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        cancel.send(()).unwrap();
        assert!(matches!(h.await.unwrap(), RelayEnd::Cancelled));
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_meter_counts_while_the_relay_runs_and_after_a_cancel() {
        let (mut client, agent_side) = UnixStream::pair().unwrap();
        let (far, mut server) = UnixStream::pair().unwrap();
        let meter = std::sync::Arc::new(Meter::new());
        assert_eq!(meter.last_transfer(), None);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let m = meter.clone();
        let h = tokio::spawn(async move {
            relay_metered(
                agent_side,
                far,
                async move {
                    let _ = rx.await;
                },
                &m,
            )
            .await
        });
        let before = std::time::SystemTime::now() - Duration::from_millis(1);
        client.write_all(&[7; 1000]).await.unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(b"ok").await.unwrap();
        let mut ok = [0u8; 2];
        client.read_exact(&mut ok).await.unwrap();
        // Read while the relay still runs.
        assert_eq!((meter.stats().a_to_b, meter.stats().b_to_a), (1000, 2));
        assert!(meter.last_transfer().unwrap() >= before);
        tx.send(()).unwrap();
        assert!(matches!(h.await.unwrap(), RelayEnd::Cancelled));
        // A cancelled relay reports no stats; the meter still has them.
        assert_eq!((meter.stats().a_to_b, meter.stats().b_to_a), (1000, 2));
    }

    /// "ping" one way, half-close, "pong" back, close: the relay passes both and ends.
    async fn ping_pong<C, S>(mut client: C, mut server: S, relay: tokio::task::JoinHandle<RelayEnd>)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        S: AsyncRead + AsyncWrite + Unpin,
    {
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        server.write_all(b"pong").await.unwrap();
        drop(server);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        assert!(matches!(relay.await.unwrap(), RelayEnd::Finished(_)));
    }

    #[tokio::test]
    async fn a_reregistered_descriptor_relays_like_a_tokio_stream() {
        let (client, agent_side) = UnixStream::pair().unwrap();
        let (far, server) = UnixStream::pair().unwrap();
        let h = tokio::spawn(relay(
            reregister(agent_side).unwrap(),
            far,
            std::future::pending(),
        ));
        ping_pong(client, server, h).await;
    }

    #[tokio::test]
    async fn streams_without_descriptors_use_the_copy_fallback() {
        let (c, a) = tokio::io::duplex(1024);
        let (b, s) = tokio::io::duplex(1024);
        let h = tokio::spawn(async move {
            relay_streams(a, b, std::future::pending(), &Meter::new()).await
        });
        ping_pong(c, s, h).await;
    }
}
