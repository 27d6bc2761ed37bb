//! Listening TCP sockets from `/proc/net/tcp` and `/proc/net/tcp6`: the fallback when netlink
//! `sock_diag` is unavailable.
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 ...
//! ```
//!
//! Addresses are the kernel's `__be32` words printed with `%08X` as *native* integers (so on
//! x86 `127.0.0.1` reads `0100007F`); IPv6 is four such words. Ports are `%04X` in host order.
//! State `0A` is `TCP_LISTEN`. Each read walks the whole established hash in the kernel, which is
//! why this costs ~60× a sock_diag dump under load.
//!
//! [`parse`] is pure and total: a malformed line is skipped with its line number and the reason,
//! never a panic and never a silently wrong socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{DetectError, RawListener};

/// A line that was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub(crate) reason: String,
}

/// The listeners of one table and the lines that were skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    /// Sockets in state LISTEN.
    pub listeners: Vec<RawListener>,
    /// Malformed lines.
    pub skipped: Vec<Skipped>,
}

/// Which table: the address width differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Family {
    /// `/proc/net/tcp`.
    V4,
    /// `/proc/net/tcp6`.
    V6,
}

/// Parses a whole table (the first line is the header).
pub fn parse(text: &str, family: Family) -> Table {
    let mut t = Table::default();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, family) {
            Ok(Some(l)) => t.listeners.push(l),
            Ok(None) => {}
            Err(reason) => t.skipped.push(Skipped {
                line: i + 1,
                reason,
            }),
        }
    }
    t
}

/// One line: `Ok(None)` for a socket in another state.
fn parse_line(line: &str, family: Family) -> Result<Option<RawListener>, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if f.len() < 10 {
        return Err(format!("{} fields, expected at least 10", f.len()));
    }
    if f[3] != "0A" {
        // Validate the state anyway so garbage is reported, not ignored.
        u8::from_str_radix(f[3], 16).map_err(|_| format!("state `{}` is not hex", f[3]))?;
        return Ok(None);
    }
    let (addr, port) = f[1]
        .split_once(':')
        .ok_or_else(|| format!("local address `{}` has no `:`", f[1]))?;
    let port = u16::from_str_radix(port, 16).map_err(|_| format!("port `{port}` is not hex"))?;
    let addr = parse_addr(addr, family)?;
    let uid = f[7]
        .parse::<u32>()
        .map_err(|_| format!("uid `{}` is not a number", f[7]))?;
    let inode = f[9]
        .parse::<u64>()
        .map_err(|_| format!("inode `{}` is not a number", f[9]))?;
    Ok(Some(RawListener {
        addr,
        port,
        uid,
        inode,
    }))
}

fn parse_addr(hex: &str, family: Family) -> Result<IpAddr, String> {
    let words = match family {
        Family::V4 => 1,
        Family::V6 => 4,
    };
    if hex.len() != words * 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("address `{hex}` is not {} hex digits", words * 8));
    }
    let mut bytes = [0u8; 16];
    for w in 0..words {
        let word = u32::from_str_radix(&hex[w * 8..w * 8 + 8], 16)
            .map_err(|_| format!("address `{hex}` is not hex"))?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Ok(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(bytes)),
    })
}

/// Reads both tables under a `/proc` root.
#[derive(Debug, Clone)]
pub struct ProcNet {
    root: PathBuf,
    warned: bool,
}

impl ProcNet {
    /// Tables under `proc_root/net/`.
    pub fn new(proc_root: &Path) -> Self {
        Self {
            root: proc_root.join("net"),
            warned: false,
        }
    }

    /// Listeners of both families. A missing `tcp6` (IPv6 disabled) is not an error.
    pub fn read(&mut self) -> Result<Vec<RawListener>, DetectError> {
        let mut out = Vec::new();
        for (name, family) in [("tcp", Family::V4), ("tcp6", Family::V6)] {
            let path = self.root.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if family == Family::V6 && e.kind() == std::io::ErrorKind::NotFound => {
                    continue
                }
                Err(source) => return Err(DetectError::ProcNet { path, source }),
            };
            let t = parse(&text, family);
            if !t.skipped.is_empty() && !self.warned {
                // Once: a kernel format we do not understand would otherwise log every poll.
                self.warned = true;
                tracing::warn!(path = %path.display(), first = ?t.skipped[0], count = t.skipped.len(),
                    "skipped malformed lines");
            }
            out.extend(t.listeners);
        }
        Ok(out)
    }
}

#[cfg(all(test, target_endian = "little"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TCP: &str = include_str!("fixtures/proc_net_tcp");
    const TCP6: &str = include_str!("fixtures/proc_net_tcp6");

    #[test]
    fn v4_fixture() {
        let t = parse(TCP, Family::V4);
        assert_eq!(t.skipped, vec![]);
        assert_eq!(
            t.listeners,
            vec![
                RawListener {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    uid: 1000,
                    inode: 4242
                },
                RawListener {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 22,
                    uid: 0,
                    inode: 1234
                },
                RawListener {
                    addr: "10.0.2.15".parse().unwrap(),
                    port: 5432,
                    uid: 105,
                    inode: 999
                },
            ]
        );
    }

    #[test]
    fn v6_fixture() {
        let t = parse(TCP6, Family::V6);
        assert_eq!(t.skipped, vec![]);
        assert_eq!(
            t.listeners,
            vec![
                RawListener {
                    addr: "::".parse().unwrap(),
                    port: 22,
                    uid: 0,
                    inode: 1235
                },
                RawListener {
                    addr: "::1".parse().unwrap(),
                    port: 3000,
                    uid: 1000,
                    inode: 5555
                },
                RawListener {
                    addr: "::ffff:127.0.0.1".parse().unwrap(),
                    port: 9229,
                    uid: 1000,
                    inode: 6666
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_with_reasons() {
        let text = "header\n\
            0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 1000 0 1\n\
            1: 0100007F 00000000:0000 0A 0:0 00:0 0 1000 0 1\n\
            2: 0100007F:ZZZZ 00000000:0000 0A 0:0 00:0 0 1000 0 1\n\
            3: 0100007:1F90 00000000:0000 0A 0:0 00:0 0 1000 0 1\n\
            4: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 root 0 1\n\
            5: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 1000 0 -1\n\
            6: short line\n\
            7: 0100007F:1F90 00000000:0000 XY 0:0 00:0 0 1000 0 1\n\
            8: 0100007F:1F90 00000000:0000 01 0:0 00:0 0 1000 0 1\n\
            9: 0100007\u{e9}:1F90 00000000:0000 0A 0:0 00:0 0 1000 0 1\n";
        let t = parse(text, Family::V4);
        assert_eq!(t.listeners.len(), 1);
        let lines: Vec<usize> = t.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 11]);
        let reasons: Vec<&str> = t.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons[0].contains("no `:`"), "{reasons:?}");
        assert!(reasons[1].contains("port"), "{reasons:?}");
        assert!(reasons[2].contains("8 hex digits"), "{reasons:?}");
        assert!(reasons[3].contains("uid `root`"), "{reasons:?}");
        assert!(reasons[4].contains("inode"), "{reasons:?}");
        assert!(reasons[5].contains("fields"), "{reasons:?}");
        assert!(reasons[6].contains("state"), "{reasons:?}");
        assert!(reasons[7].contains("hex digits"), "{reasons:?}");
        // A v4 address in the v6 table is the wrong width.
        assert_eq!(parse(text, Family::V6).skipped.len(), 9);
    }

    #[test]
    fn reads_a_fixture_tree_and_tolerates_a_missing_tcp6() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/tcp"), TCP).unwrap();
        let got = ProcNet::new(dir.path()).read().unwrap();
        assert_eq!(got.len(), 3);
        std::fs::write(dir.path().join("net/tcp6"), TCP6).unwrap();
        assert_eq!(ProcNet::new(dir.path()).read().unwrap().len(), 6);
        let err = ProcNet::new(&dir.path().join("missing"))
            .read()
            .unwrap_err();
        assert!(err.to_string().contains("missing/net/tcp"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,400}") {
            let _ = parse(&text, Family::V4);
            let _ = parse(&text, Family::V6);
        }

        /// Well-formed listening lines round-trip: what the kernel would print is what we read.
        #[test]
        fn printed_listeners_parse_back(a in proptest::prelude::any::<[u8; 4]>(), port: u16,
                                        uid: u32, inode: u64) {
            let word = u32::from_ne_bytes(a);
            let text = format!("hdr\n 0: {word:08X}:{port:04X} 00000000:0000 0A 0:0 00:0 0 {uid} 0 {inode} 1\n");
            let t = parse(&text, Family::V4);
            proptest::prop_assert_eq!(t.listeners, vec![RawListener {
                addr: IpAddr::V4(Ipv4Addr::from(a)), port, uid, inode }]);
        }
    }

    #[test]
    fn the_real_table_has_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = ProcNet::new(Path::new("/proc")).read().unwrap();
        assert!(got.iter().any(|r| r.port == port && r.addr.is_loopback()));
    }
}
