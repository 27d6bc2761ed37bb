//! Frames on the socketpair between the two processes.
//!
//! ```text
//!  [u32 LE json length][u32 LE blob length][json][blob]     descriptors (SCM_RIGHTS, at most
//!   └──────────── first sendmsg ───────────┘                 MAX_FDS) ride on the header
//! ```
//!
//! The JSON part is a [`super::proto`] message (small, typed, unknown fields refused); the blob
//! carries bytes that must not be inflated into JSON numbers (the environment file's contents).
//! Both lengths are checked against their limits before anything is allocated, so a peer that
//! announces 4 GiB costs nothing but an error. A stream socket (not `SOCK_SEQPACKET`) because a
//! datagram may not be larger than the socket's send buffer (~208 KiB by default), and an
//! environment file may be.
//!
//! Reads and writes are blocking: each side calls from one thread at a time (the network side
//! holds a lock around a whole request and its reply, the privileged side serves in one loop).

use std::io::{self, IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// Largest JSON part: every message is a few hundred bytes, a launch with its environment a
/// few KiB; 256 KiB leaves room for a large `remoteEnv` and nothing for a flood.
pub(crate) const MAX_JSON: usize = 256 * 1024;
/// Largest blob: an environment file with every secret at its size limit fits.
pub(crate) const MAX_BLOB: usize = 16 * 1024 * 1024;
/// Most descriptors one frame carries (a launch answers with three pipes).
pub(crate) const MAX_FDS: usize = 3;

/// One received frame.
pub(crate) struct Frame {
    /// The message.
    pub(crate) json: Vec<u8>,
    /// The bytes beside it (may hold secrets: zeroed on drop).
    pub(crate) blob: zeroize::Zeroizing<Vec<u8>>,
    /// Descriptors that came with it.
    pub(crate) fds: Vec<OwnedFd>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("json_len", &self.json.len())
            .field("blob_len", &self.blob.len())
            .field("fds", &self.fds.len())
            .finish()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Sends one frame.
pub(crate) fn send(
    sock: &UnixStream,
    json: &[u8],
    blob: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if json.len() > MAX_JSON || blob.len() > MAX_BLOB || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "privsep frame over its limits ({} B json, {} B blob, {} fds)",
                json.len(),
                blob.len(),
                fds.len()
            ),
        ));
    }
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&(json.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&(blob.len() as u32).to_le_bytes());
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("privsep: descriptor buffer too small"));
    }
    let sent = loop {
        match sendmsg(
            sock,
            &[IoSlice::new(&header)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut w = sock;
    w.write_all(&header[sent..])?;
    w.write_all(json)?;
    w.write_all(blob)?;
    Ok(())
}

/// Receives one frame; `None` at end of stream (the other side is gone).
pub(crate) fn recv(sock: &UnixStream) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 8];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut header)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    if got.flags.contains(ReturnFlags::CTRUNC) || fds.len() > MAX_FDS {
        return Err(invalid(format!(
            "privsep frame with more than {MAX_FDS} descriptors"
        )));
    }
    let mut r = sock;
    r.read_exact(&mut header[got.bytes..])?;
    let json_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let blob_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if json_len > MAX_JSON || blob_len > MAX_BLOB {
        return Err(invalid(format!(
            "privsep frame announces {json_len} B json and {blob_len} B blob (limits {MAX_JSON} \
             and {MAX_BLOB})"
        )));
    }
    let mut json = vec![0; json_len];
    r.read_exact(&mut json)?;
    let mut blob = zeroize::Zeroizing::new(vec![0; blob_len]);
    r.read_exact(&mut blob)?;
    Ok(Some(Frame { json, blob, fds }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd as _;

    #[test]
    fn a_frame_round_trips_with_its_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send(&a, br#"{"op":"x"}"#, b"secret", &[r.as_fd(), w.as_fd()]).unwrap();
        let f = recv(&b).unwrap().unwrap();
        assert_eq!(f.json, br#"{"op":"x"}"#);
        assert_eq!(&f.blob[..], b"secret");
        assert_eq!(f.fds.len(), 2);
        // The received write end reaches the original read end.
        rustix::io::write(&f.fds[1], b"!").unwrap();
        let mut one = [0u8; 1];
        rustix::io::read(&r, &mut one).unwrap();
        assert_eq!(&one, b"!");
    }

    #[test]
    fn a_large_blob_crosses_a_stream_in_pieces() {
        let (a, b) = UnixStream::pair().unwrap();
        let big = vec![7u8; 3 * 1024 * 1024];
        let sender = std::thread::spawn(move || send(&a, b"{}", &big, &[]).unwrap());
        let f = recv(&b).unwrap().unwrap();
        sender.join().unwrap();
        assert_eq!(f.blob.len(), 3 * 1024 * 1024);
        assert!(f.blob.iter().all(|&x| x == 7));
    }

    #[test]
    fn an_announced_size_over_the_limit_is_refused_before_allocating() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        (&a).write_all(&header).unwrap();
        let e = recv(&b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("limits"), "{e}");
    }

    #[test]
    fn sending_over_the_limits_is_refused_and_the_end_of_stream_is_none() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(send(&a, &vec![b' '; MAX_JSON + 1], b"", &[]).is_err());
        drop(a);
        assert!(recv(&b).unwrap().is_none());
    }
}
