//! `ip link set NAME up`, spoken directly: one `RTM_NEWLINK` request on a `NETLINK_ROUTE`
//! socket of the calling thread's network namespace, and the kernel's acknowledgement. Used to
//! bring up the loopback of a new restricted namespace ([`super::netns`]) without running `ip`.
//!
//! ```text
//!  request = nlmsghdr { len 40, type RTM_NEWLINK (16), flags REQUEST|ACK, seq }
//!          + ifinfomsg { family AF_UNSPEC, type 0, index 0 (look up by name),
//!                        flags IFF_UP, change IFF_UP (only this bit changes) }
//!          + rtattr { len 4 + name + NUL, type IFLA_IFNAME (3) } name NUL, padded to 4
//!  answer  = nlmsghdr { type NLMSG_ERROR (2), seq } + int error (0: done; -errno otherwise)
//! ```
//!
//! Building the request and reading the answer are pure functions ([`request`], [`ack`]); only
//! [`set_up`] makes system calls, through `rustix`. Fields are in native byte order, as in
//! `<linux/netlink.h>` and `<linux/rtnetlink.h>`.

use std::io;

use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const RTA_HDR: usize = 4;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFLA_IFNAME: u16 = 3;
const IFF_UP: u32 = 0x1;
/// `IFNAMSIZ`: an interface name and its NUL.
const IFNAMSIZ: usize = 16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The `RTM_NEWLINK` request that sets `IFF_UP` on interface `name` (`None` for a name the
/// kernel would refuse: empty, too long, or with a NUL or `/`).
pub(crate) fn request(name: &str, seq: u32) -> Option<Vec<u8>> {
    if name.is_empty()
        || name.len() >= IFNAMSIZ
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        return None;
    }
    let attr_len = RTA_HDR + name.len() + 1;
    let len = NLMSG_HDR + IFINFOMSG + align4(attr_len);
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel. ifinfomsg: family, pad, type (all 0), index 0 at 20..24.
    let info = NLMSG_HDR;
    b[info + 8..info + 12].copy_from_slice(&IFF_UP.to_ne_bytes());
    b[info + 12..info + 16].copy_from_slice(&IFF_UP.to_ne_bytes());
    let attr = info + IFINFOMSG;
    b[attr..attr + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
    b[attr + 2..attr + 4].copy_from_slice(&IFLA_IFNAME.to_ne_bytes());
    b[attr + RTA_HDR..attr + RTA_HDR + name.len()].copy_from_slice(name.as_bytes());
    Some(b)
}

/// What one datagram says about request `seq`: `Some(Ok)` acknowledged, `Some(Err)` refused
/// with the kernel's errno, `None` nothing about it (another sequence number, or too short).
pub(crate) fn ack(buf: &[u8], seq: u32) -> Option<io::Result<()>> {
    let mut off = 0;
    while buf.len().saturating_sub(off) >= NLMSG_HDR + 4 {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        if len < NLMSG_HDR || len > buf.len() - off {
            return None;
        }
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().ok()?);
        if kind == NLMSG_ERROR && msg_seq == seq && len >= NLMSG_HDR + 4 {
            let at = off + NLMSG_HDR;
            let error = i32::from_ne_bytes(buf[at..at + 4].try_into().ok()?);
            return Some(match error {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e.saturating_neg())),
            });
        }
        off += align4(len);
    }
    None
}

/// Sets interface `name` of the calling thread's network namespace up (`CAP_NET_ADMIN` there).
pub(crate) fn set_up(name: &str) -> io::Result<()> {
    const SEQ: u32 = 1;
    let req = request(name, SEQ).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        )
    })?;
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None, // protocol 0 of AF_NETLINK: NETLINK_ROUTE
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(2)),
    )?;
    let kernel = netlink::SocketAddrNetlink::new(0, 0);
    rustix::net::sendto(&sock, &req, SendFlags::empty(), &kernel)?;
    let mut buf = [0u8; 1024];
    loop {
        let (n, _) = rustix::net::recv(&sock, &mut buf[..], RecvFlags::empty())?;
        if let Some(answer) = ack(&buf[..n], SEQ) {
            return answer;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_what_ip_link_set_up_sends() {
        let b = request("lo", 7).unwrap();
        assert_eq!(b.len(), 40);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(u16::from_ne_bytes(b[6..8].try_into().unwrap()), 0x5);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // Index 0: looked up by the name attribute; flags and change mask both IFF_UP.
        assert_eq!(&b[20..24], &[0; 4]);
        assert_eq!(u32::from_ne_bytes(b[24..28].try_into().unwrap()), IFF_UP);
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), IFF_UP);
        assert_eq!(u16::from_ne_bytes(b[32..34].try_into().unwrap()), 7);
        assert_eq!(
            u16::from_ne_bytes(b[34..36].try_into().unwrap()),
            IFLA_IFNAME
        );
        assert_eq!(&b[36..40], b"lo\0\0");
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", "a\0b"] {
            assert!(request(bad, 1).is_none(), "{bad:?}");
        }
        assert_eq!(request("fifteen-chars-x", 1).unwrap().len(), 52);
    }

    fn message(kind: u16, seq: u32, error: i32) -> Vec<u8> {
        let mut m = vec![0u8; 36];
        m[0..4].copy_from_slice(&36u32.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m[16..20].copy_from_slice(&error.to_ne_bytes());
        m
    }

    #[test]
    fn acks_and_refusals_are_told_apart_by_sequence() {
        assert!(matches!(ack(&message(NLMSG_ERROR, 3, 0), 3), Some(Ok(()))));
        let refused = ack(&message(NLMSG_ERROR, 3, -libc::EPERM), 3).unwrap();
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EPERM));
        // Another request's answer, a non-error message, a short or lying datagram: nothing.
        assert!(ack(&message(NLMSG_ERROR, 4, 0), 3).is_none());
        assert!(ack(&message(RTM_NEWLINK, 3, 0), 3).is_none());
        assert!(ack(&[0u8; 10], 3).is_none());
        let mut lying = message(NLMSG_ERROR, 3, 0);
        lying[0..4].copy_from_slice(&4096u32.to_ne_bytes());
        assert!(ack(&lying, 3).is_none());
        // The answer after another message in the same datagram.
        let mut two = message(RTM_NEWLINK, 9, 0);
        two.extend(message(NLMSG_ERROR, 3, -libc::ENODEV));
        let e = ack(&two, 3).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn loopback_of_a_new_namespace_comes_up() {
        if !rustix::process::geteuid().is_root() {
            return; // a network namespace needs CAP_SYS_ADMIN; the root tests in CI run this
        }
        std::thread::spawn(|| {
            super::super::syscalls::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
            // Down in a new namespace: nothing reaches 127.0.0.1, not even its own listener.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let to = l.local_addr().unwrap();
            assert!(std::net::TcpStream::connect(to).is_err());
            set_up("lo").unwrap();
            std::net::TcpStream::connect(to).unwrap();
            let e = set_up("no-such-if").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        })
        .join()
        .unwrap();
    }
}
