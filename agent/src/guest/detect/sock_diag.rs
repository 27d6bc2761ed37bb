//! Listening TCP sockets from a netlink `NETLINK_SOCK_DIAG` dump.
//!
//! ```text
//!  request  = nlmsghdr { len 72, type SOCK_DIAG_BY_FAMILY (20), flags REQUEST|DUMP, seq }
//!           + inet_diag_req_v2 { family AF_INET|AF_INET6, protocol IPPROTO_TCP,
//!                                states 1 << TCP_LISTEN, id: all zero }
//!  answer   = one or more datagrams, each a run of 4-byte-aligned netlink messages:
//!             inet_diag_msg { family, state, .., id { sport (BE), dport, src[16], dst[16], .. },
//!                             .., uid, inode } + attributes (ignored)
//!             ... then NLMSG_DONE (or NLMSG_ERROR with a negative errno)
//! ```
//!
//! The state filter runs in the kernel, which then walks only the listening hash: the cost does
//! not grow with established connections. Building the request and parsing the answer are pure
//! functions ([`request`], [`parse`]); [`SockDiag`] only does the system calls (through `rustix`,
//! no `unsafe` here). Header fields are in native byte order, ports big-endian, addresses in
//! network order, as in `<linux/inet_diag.h>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{DetectError, RawListener};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u8 = 10;
/// `inet_diag_req_v2`: 8 bytes + a 48-byte `inet_diag_sockid`.
const REQ_LEN: usize = 56;
/// `inet_diag_msg` up to and including `idiag_inode`.
const MSG_LEN: usize = 72;
/// A generous receive buffer: the kernel fills each datagram up to about a page or 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;
/// A dump never takes this long; the bound keeps a wedged kernel from wedging the watcher.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an answer could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A message header claims a length that does not fit.
    #[error("message at byte {offset}: length {len} does not fit in the {available} bytes left")]
    BadLength {
        /// Where the message starts.
        offset: usize,
        /// The claimed length.
        len: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// A diag message is shorter than `inet_diag_msg`.
    #[error("inet_diag_msg at byte {offset} is {len} bytes, need {MSG_LEN}")]
    ShortDiagMsg {
        /// Where the message starts.
        offset: usize,
        /// Its payload length.
        len: usize,
    },
    /// A family other than the two requested.
    #[error("inet_diag_msg at byte {offset} has address family {family}")]
    UnknownFamily {
        /// Where the message starts.
        offset: usize,
        /// The family.
        family: u8,
    },
}

/// What one datagram of the answer held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Listeners found (only messages with our sequence number and state LISTEN).
    pub listeners: Vec<RawListener>,
    /// `NLMSG_DONE` seen: the dump is complete.
    pub(crate) done: bool,
    /// `NLMSG_ERROR` (or an error in `NLMSG_DONE`) with this errno.
    pub(crate) errno: Option<i32>,
}

/// The dump request for one address family (`AF_INET` = 2, `AF_INET6` = 10).
pub(crate) fn request(family: u8, seq: u32) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut b = [0u8; NLMSG_HDR + REQ_LEN];
    b[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel. inet_diag_req_v2 follows.
    b[16] = family;
    b[17] = IPPROTO_TCP;
    // idiag_ext 0 (no extra attributes), pad 0
    b[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    // inet_diag_sockid all zero: no port/address filter.
    b
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one datagram of the answer. Messages with another sequence number (left over from an
/// earlier, abandoned dump) are skipped; so are sockets not in state LISTEN (the kernel filter
/// should not let any through).
pub fn parse(buf: &[u8], seq: u32) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut off = 0;
    while buf.len() - off >= NLMSG_HDR {
        let len = u32_ne(buf, off) as usize;
        let available = buf.len() - off;
        if len < NLMSG_HDR || len > available {
            return Err(ParseError::BadLength {
                offset: off,
                len,
                available,
            });
        }
        let kind = u16_ne(buf, off + 4);
        let msg_seq = u32_ne(buf, off + 8);
        let payload = &buf[off + NLMSG_HDR..off + len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE | NLMSG_ERROR => {
                    // Both carry an `int error` first (0 = fine; negative errno otherwise).
                    let err = if payload.len() >= 4 {
                        i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]])
                    } else {
                        0
                    };
                    if err != 0 {
                        out.errno = Some(-err);
                    }
                    out.done = true;
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(l) = parse_msg(payload, off)? {
                        out.listeners.push(l);
                    }
                }
                _ => {}
            }
        }
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        off += (len + 3) & !3;
        if off > buf.len() {
            break;
        }
    }
    Ok(out)
}

fn parse_msg(p: &[u8], offset: usize) -> Result<Option<RawListener>, ParseError> {
    if p.len() < MSG_LEN {
        return Err(ParseError::ShortDiagMsg {
            offset,
            len: p.len(),
        });
    }
    let (family, state) = (p[0], p[1]);
    if state != TCP_LISTEN {
        return Ok(None);
    }
    // inet_diag_sockid starts at 4: sport(2, BE) dport(2) src[16] dst[16] if(4) cookie(8).
    let port = u16::from_be_bytes([p[4], p[5]]);
    let src: [u8; 16] = {
        let mut a = [0; 16];
        a.copy_from_slice(&p[8..24]);
        a
    };
    let addr = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(src)),
        family => return Err(ParseError::UnknownFamily { offset, family }),
    };
    // After the id (ends at 52): expires, rqueue, wqueue, uid, inode.
    let uid = u32_ne(p, 64);
    let inode = u64::from(u32_ne(p, 68));
    Ok(Some(RawListener {
        addr,
        port,
        uid,
        inode,
    }))
}

/// An open `NETLINK_SOCK_DIAG` socket, reused for every dump.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens the netlink socket (no privilege needed).
    pub fn open() -> Result<Self, DetectError> {
        let io = |op| {
            move |e: rustix::io::Errno| DetectError::SockDiagIo {
                op,
                source: e.into(),
            }
        };
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )
        .map_err(io("socket"))?;
        Self::from_fd(fd)
    }

    /// Uses a `NETLINK_SOCK_DIAG` socket made elsewhere (inside another network namespace: a
    /// socket dumps the namespace it was made in).
    pub(crate) fn from_fd(fd: OwnedFd) -> Result<Self, DetectError> {
        let io = |op| {
            move |e: rustix::io::Errno| DetectError::SockDiagIo {
                op,
                source: e.into(),
            }
        };
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(RECV_TIMEOUT),
        )
        .map_err(io("setsockopt(SO_RCVTIMEO)"))?;
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Dumps the listening TCP sockets of both address families.
    pub fn dump(&mut self) -> Result<Vec<RawListener>, DetectError> {
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            self.dump_family(family, &mut out)?;
        }
        Ok(out)
    }

    fn dump_family(&mut self, family: u8, out: &mut Vec<RawListener>) -> Result<(), DetectError> {
        self.seq = self.seq.wrapping_add(1);
        let req = request(family, self.seq);
        let kernel = netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, &req, SendFlags::empty(), &kernel).map_err(|e| {
            DetectError::SockDiagIo {
                op: "sendto",
                source: e.into(),
            }
        })?;
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty())
                .map_err(|e| DetectError::SockDiagIo {
                    op: "recv",
                    source: e.into(),
                })?;
            let parsed = parse(&self.buf[..n], self.seq)?;
            out.extend(parsed.listeners);
            if let Some(errno) = parsed.errno {
                return Err(DetectError::SockDiagRefused(
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            if parsed.done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Builds one `SOCK_DIAG_BY_FAMILY` message as the kernel would, with `extra` attribute bytes.
    #[allow(clippy::too_many_arguments)] // one argument per field of the fixture message
    fn diag_msg(
        seq: u32,
        family: u8,
        state: u8,
        addr: &[u8],
        port: u16,
        uid: u32,
        inode: u32,
        extra: usize,
    ) -> Vec<u8> {
        let len = NLMSG_HDR + MSG_LEN + extra;
        let mut b = vec![0u8; len];
        b[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[6..8].copy_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        let p = &mut b[NLMSG_HDR..];
        p[0] = family;
        p[1] = state;
        p[4..6].copy_from_slice(&port.to_be_bytes());
        p[8..8 + addr.len()].copy_from_slice(addr);
        p[64..68].copy_from_slice(&uid.to_ne_bytes());
        p[68..72].copy_from_slice(&inode.to_ne_bytes());
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn done(seq: u32, err: i32) -> Vec<u8> {
        let mut b = vec![0u8; 20];
        b[0..4].copy_from_slice(&20u32.to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        b[16..20].copy_from_slice(&err.to_ne_bytes());
        b
    }

    #[test]
    fn request_layout_matches_the_kernel_headers() {
        let r = request(AF_INET6, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_ne(&r, 0), 72);
        assert_eq!(u16_ne(&r, 4), 20);
        assert_eq!(u16_ne(&r, 6), 0x301);
        assert_eq!(u32_ne(&r, 8), 9);
        assert_eq!((r[16], r[17]), (10, 6));
        assert_eq!(u32_ne(&r, 20), 1 << 10);
        assert!(r[24..].iter().all(|b| *b == 0));
    }

    #[test]
    fn parses_v4_and_v6_listeners_and_done() {
        let mut buf = diag_msg(5, AF_INET, TCP_LISTEN, &[127, 0, 0, 1], 8080, 1000, 4242, 6);
        let v6 = "::1".parse::<Ipv6Addr>().unwrap().octets();
        buf.extend(diag_msg(5, AF_INET6, TCP_LISTEN, &v6, 443, 0, 77, 0));
        buf.extend(diag_msg(4, AF_INET, TCP_LISTEN, &[1, 2, 3, 4], 1, 0, 1, 0)); // stale seq
        buf.extend(diag_msg(5, AF_INET, 1, &[1, 2, 3, 4], 2, 0, 2, 0)); // ESTABLISHED
        buf.extend(done(5, 0));
        let p = parse(&buf, 5).unwrap();
        assert!(p.done);
        assert_eq!(p.errno, None);
        assert_eq!(
            p.listeners,
            vec![
                RawListener {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    uid: 1000,
                    inode: 4242
                },
                RawListener {
                    addr: "::1".parse().unwrap(),
                    port: 443,
                    uid: 0,
                    inode: 77
                },
            ]
        );
    }

    #[test]
    fn errors_in_done_and_error_messages_are_reported() {
        let p = parse(&done(1, -2), 1).unwrap();
        assert_eq!((p.done, p.errno), (true, Some(2)));
        let mut e = done(1, -22);
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse(&e, 1).unwrap().errno, Some(22));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let mut m = diag_msg(1, AF_INET, TCP_LISTEN, &[0; 4], 1, 0, 1, 0);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(
            parse(&m, 1),
            Err(ParseError::BadLength { len: 1000, .. })
        ));
        m[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse(&m, 1),
            Err(ParseError::BadLength { len: 3, .. })
        ));
        let mut short = diag_msg(1, AF_INET, TCP_LISTEN, &[0; 4], 1, 0, 1, 0);
        short.truncate(40);
        short[0..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(matches!(
            parse(&short, 1),
            Err(ParseError::ShortDiagMsg { len: 24, .. })
        ));
        let odd = diag_msg(1, 7, TCP_LISTEN, &[0; 4], 1, 0, 1, 0);
        assert!(matches!(
            parse(&odd, 1),
            Err(ParseError::UnknownFamily { family: 7, .. })
        ));
        // A trailing partial header is ignored (the kernel never sends one; we do not panic).
        let p = parse(&[0u8; 7], 1).unwrap();
        assert_eq!(p, Parsed::default());
    }

    #[test]
    fn any_bytes_parse_without_panicking() {
        // A small deterministic fuzz: random lengths and contents.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            let _ = parse(&bytes, (x >> 8) as u32 & 3);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_parses_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), seq: u32) {
            let _ = parse(&bytes, seq);
        }
    }

    #[test]
    fn a_real_dump_finds_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut s = SockDiag::open().unwrap();
        let found = s.dump().unwrap();
        assert!(
            found.iter().any(|r| r.port == port && r.addr.is_loopback()),
            "{port} not in {found:?}"
        );
        drop(l);
        let again = s.dump().unwrap();
        assert!(!again.iter().any(|r| r.port == port));
    }
}
