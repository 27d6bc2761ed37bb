//! The restricted principal's network: one network namespace per codespace, shared by every
//! restricted run (a dev server that `postStartCommand` starts and the test suite a later run
//! starts see each other), with a loopback of its own.
//!
//! ```text
//!   agent's namespace (the creator, sshd, the editor,    restricted namespace
//!   other users' loopback services, ports 2222, …)       lo: the restricted runs' own servers
//!        ▲  forwarder: a socket made in the restricted        ▲
//!        │  namespace connects to its 127.0.0.1 / [::1]       │ setns in every restricted child
//!   csr-host 169.254.117.1/30 ◄──── veth ────► csr-ns 169.254.117.2/30, default route
//!        │  masquerade out; nothing of the VM itself (input dropped), no internal ranges
//! ```
//!
//! What it gives, by construction rather than by rules: loopback services of every other
//! principal are unreachable (another loopback), the owner-only ports (SSH, the editor) cannot be
//! squatted (binding 2222 there binds nothing the agent's side uses), and abstract Unix sockets
//! (per network namespace) of the creator's X server, D-Bus or tmux are out of reach on every
//! kernel, without Landlock ABI 6. Port detection dumps both namespaces and the forwarder
//! connects into the one the listener lives in, so a restricted dev server is forwardable like
//! any port.
//!
//! Outbound internet (`sandbox.restricted_outbound`, default on, as in Codespaces) goes through a
//! veth pair and a masquerade rule (`ip` and `nft`, like the firewall); DNS servers are the
//! upstream ones (the VM's `127.0.0.53` stub is on the other loopback): the restricted world gets
//! its own `resolv.conf`. IPv4 only outbound; loopback works for both families.
//!
//! The namespace is found again after an agent restart through any live process of the
//! restricted principal (its `/proc/PID/ns/net`), so a dev server keeps being forwarded.
//!
//! Nothing of it is process-wide: the [`RestrictedNetwork`] is a field of the
//! [`super::Sandbox`] that makes it, and port detection and forwarding reach it through the
//! launcher that owns that sandbox ([`RestrictedSockets`]), on the privileged side when the
//! agent is separated.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// The host side of the veth pair.
pub(crate) const HOST_IF: &str = "csr-host";
/// The namespace side of the veth pair.
pub(crate) const NS_IF: &str = "csr-ns";
/// The host side's address (the namespace's gateway).
pub(crate) const HOST_ADDR: &str = "169.254.117.1";
/// The namespace side's address.
pub(crate) const NS_ADDR: &str = "169.254.117.2";
/// The nft table (`ip` family) that masquerades the namespace and fences it off the VM.
pub(crate) const NFT_TABLE: &str = "codespace_agent_restricted";
/// Internal ranges the namespace never reaches (as the firewall's defaults: other VMs, the
/// provider's network, the cloud metadata service).
pub(crate) const BLOCKED_OUTBOUND: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
];

/// What the restricted network is made of (for the run's report and `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NetReport {
    /// The namespace's inode (as in `/proc/PID/ns/net`), to match processes to it.
    pub(crate) inode: u64,
    /// Outbound internet: `nat` (through the veth), `off` (configured), or why it failed.
    pub(crate) outbound: String,
    /// The restricted world's `resolv.conf` (bound over `/etc/resolv.conf` in its runs), if one
    /// was written.
    pub(crate) resolv_conf: Option<PathBuf>,
}

/// The codespace's restricted network namespace.
#[derive(Debug, Clone)]
pub(crate) struct RestrictedNet {
    /// The namespace.
    pub(crate) fd: Arc<OwnedFd>,
    /// What it is made of.
    pub(crate) report: NetReport,
}

/// The codespace's restricted network as its sandbox holds it: made by the first restricted
/// run (or adopted from a live restricted process after an agent restart), shared by every
/// later one, forgotten when the restricted principal's processes are killed.
#[derive(Debug, Default)]
pub(crate) struct RestrictedNetwork {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    net: Option<RestrictedNet>,
    /// This network turned IPv4 forwarding on (for its outbound), so
    /// [`RestrictedNetwork::teardown`] turns it off again.
    forwarding_was_off: bool,
}

impl RestrictedNetwork {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // Only plain data lives behind the lock; a panic elsewhere leaves it usable.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The namespace if there is one (no side effects): for port detection and forwarding.
    pub(crate) fn current(&self) -> Option<RestrictedNet> {
        self.lock().net.clone()
    }

    /// The codespace's namespace: the one held, else the one a live process of `uid` is in (an
    /// agent restarted under a running dev server), else a new one. `outbound` asks for
    /// internet access; `world_root` is where the restricted world's `resolv.conf` goes.
    pub(crate) fn get_or_create(
        &self,
        uid: u32,
        outbound: bool,
        world_root: &Path,
    ) -> io::Result<RestrictedNet> {
        let mut held = self.lock();
        if let Some(net) = held.net.as_ref() {
            return Ok(net.clone());
        }
        let fd = match adopt(uid) {
            Some(fd) => fd,
            None => create()?,
        };
        let inode = inode_of(&fd)?;
        let fd = Arc::new(fd);
        let (outbound, resolv_conf) = if outbound {
            let resolvers = resolvers();
            match connect_outbound(&fd, &resolvers, &mut held.forwarding_was_off) {
                Ok(()) => (
                    "nat".to_owned(),
                    write_resolv_conf(world_root, &resolvers).ok(),
                ),
                Err(e) => (format!("unavailable: {e}"), None),
            }
        } else {
            ("off".to_owned(), None)
        };
        let net = RestrictedNet {
            fd,
            report: NetReport {
                inode,
                outbound,
                resolv_conf,
            },
        };
        held.net = Some(net.clone());
        Ok(net)
    }

    /// A socket of `kind` made inside the namespace (`None` when there is none yet), or
    /// [`NetSocket::Unchanged`] when `have` is the namespace's inode. TCP sockets are
    /// non-blocking (the forwarder connects them); the `sock_diag` socket is blocking (its dump
    /// reads with a timeout).
    pub(crate) fn socket_in(
        &self,
        kind: crate::guest::privsep::proto::SocketKind,
        have: Option<u64>,
    ) -> io::Result<Option<NetSocket>> {
        use crate::guest::privsep::proto::SocketKind;
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let Some(net) = self.current() else {
            return Ok(None);
        };
        if have == Some(net.report.inode) {
            return Ok(Some(NetSocket::Unchanged(net.report.inode)));
        }
        let (family, socket_type, protocol, flags) = match kind {
            SocketKind::Tcp4 => (
                AddressFamily::INET,
                SocketType::STREAM,
                None,
                SocketFlags::NONBLOCK,
            ),
            SocketKind::Tcp6 => (
                AddressFamily::INET6,
                SocketType::STREAM,
                None,
                SocketFlags::NONBLOCK,
            ),
            SocketKind::SockDiag => (
                AddressFamily::NETLINK,
                SocketType::DGRAM,
                Some(rustix::net::netlink::SOCK_DIAG),
                SocketFlags::empty(),
            ),
        };
        let fd = within(&net.fd, move || {
            Ok(rustix::net::socket_with(
                family,
                socket_type,
                flags | SocketFlags::CLOEXEC,
                protocol,
            )?)
        })?;
        Ok(Some(NetSocket::New(fd, net.report.inode)))
    }

    /// Forgets the namespace (it lives on while processes are in it), removes the veth pair and
    /// the nft table, and turns forwarding off again if this network turned it on: after the
    /// restricted processes were killed, and in tests.
    pub(crate) fn teardown(&self) {
        let mut held = self.lock();
        if std::mem::take(&mut held.forwarding_was_off) {
            let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/forwarding", "0\n");
        }
        let _ = ip(&["link", "del", HOST_IF], None);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", NFT_TABLE])
            .stderr(Stdio::null())
            .status();
        held.net = None;
    }
}

/// Where sockets inside the codespace's restricted network come from, for port detection and
/// forwarding: the launcher that owns the sandbox (and so the [`RestrictedNetwork`]), which asks
/// the privileged side when the agent is separated. Cheap to clone.
#[derive(Clone)]
pub struct RestrictedSockets(Arc<SocketSource>);

/// The function behind [`RestrictedSockets`]: `(kind, have)` as [`RestrictedNetwork::socket_in`].
type SocketSource = dyn Fn(crate::guest::privsep::proto::SocketKind, Option<u64>) -> io::Result<Option<NetSocket>>
    + Send
    + Sync;

impl RestrictedSockets {
    /// Sockets from `source` (`|kind, have| sandbox.restricted_socket(kind, have)`).
    pub(crate) fn new(
        source: impl Fn(
                crate::guest::privsep::proto::SocketKind,
                Option<u64>,
            ) -> io::Result<Option<NetSocket>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self(Arc::new(source))
    }

    /// No restricted network (an unsandboxed launcher, tests).
    pub fn none() -> Self {
        Self::new(|_, _| Ok(None))
    }

    /// A socket of `kind` in the restricted namespace, as [`RestrictedNetwork::socket_in`].
    pub(crate) fn socket(
        &self,
        kind: crate::guest::privsep::proto::SocketKind,
        have: Option<u64>,
    ) -> io::Result<Option<NetSocket>> {
        (self.0)(kind, have)
    }
}

impl std::fmt::Debug for RestrictedSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestrictedSockets").finish_non_exhaustive()
    }
}

fn inode_of(fd: &OwnedFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd).map_err(io::Error::from)?.st_ino)
}

/// The network namespace of a live process of `uid` that is not the agent's own.
fn adopt(uid: u32) -> Option<OwnedFd> {
    let own = std::fs::metadata("/proc/self/ns/net").ok()?;
    use std::os::unix::fs::MetadataExt as _;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let path = format!("/proc/{pid}/ns/net");
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        if file.metadata().map(|m| m.ino()).ok() != Some(own.ino()) {
            return Some(OwnedFd::from(file));
        }
    }
    None
}

/// What [`RestrictedNetwork::socket_in`] hands out.
#[derive(Debug)]
pub(crate) enum NetSocket {
    /// The caller's namespace (its inode) is still the codespace's: no new socket.
    Unchanged(u64),
    /// A socket made inside the namespace, and the namespace's inode.
    New(OwnedFd, u64),
}

/// Runs `f` on a short-lived thread inside the namespace `ns` (a thread may switch its network
/// namespace alone; the rest of the agent stays where it is).
pub(crate) fn within<T: Send + 'static>(
    ns: &Arc<OwnedFd>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = ns.clone();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// A new namespace with its loopback up, made on a thread that then exits (a thread may take
/// a network namespace of its own; the rest of the agent stays where it is).
fn create() -> io::Result<OwnedFd> {
    std::thread::spawn(|| {
        super::syscalls::unshare(rustix::thread::UnshareFlags::NEWNET)?;
        // By netlink: no `ip` needed for the isolated namespace.
        super::link::set_up("lo")?;
        Ok(OwnedFd::from(std::fs::File::open(
            "/proc/thread-self/ns/net",
        )?))
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Runs `ip ARGS`, inside `ns` when given.
fn ip(args: &[&str], ns: Option<&Arc<OwnedFd>>) -> io::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    if let Some(ns) = ns {
        super::child::install(&mut cmd, super::child::JoinNetwork(ns.clone()));
    }
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("ip {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The nft ruleset of [`NFT_TABLE`]: masquerade what leaves the namespace, drop what it sends
/// to the VM itself (sshd, the editor, every local service) and to internal ranges, except DNS
/// to the VM's upstream `resolvers` (often inside those ranges: a cloud's VPC resolver); let
/// nothing but replies into it. Replies come in on the VM's own interfaces, so forwarding must
/// be on for them; when the VM forwarded nothing before (`was_router` false), everything that
/// neither comes from nor goes to the namespace is still not forwarded.
pub(crate) fn nft_ruleset(resolvers: &[String], was_router: bool) -> String {
    let not_a_router = if was_router {
        String::new()
    } else {
        format!("\t\tiifname != \"{HOST_IF}\" oifname != \"{HOST_IF}\" drop\n")
    };
    let blocked = BLOCKED_OUTBOUND.join(", ");
    let v4: Vec<&str> = resolvers
        .iter()
        .filter(|r| r.parse::<std::net::Ipv4Addr>().is_ok())
        .map(String::as_str)
        .collect();
    let dns = if v4.is_empty() {
        String::new()
    } else {
        let set = v4.join(", ");
        format!(
            "\t\tiifname \"{HOST_IF}\" ip daddr {{ {set} }} udp dport 53 accept\n\
             \t\tiifname \"{HOST_IF}\" ip daddr {{ {set} }} tcp dport 53 accept\n"
        )
    };
    format!(
        "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n\
         table ip {NFT_TABLE} {{\n\
         \tchain input {{ type filter hook input priority 0; policy accept;\n\
         \t\tiifname \"{HOST_IF}\" ct state established,related accept\n\
         \t\tiifname \"{HOST_IF}\" drop\n\t}}\n\
         \tchain forward {{ type filter hook forward priority 0; policy accept;\n\
         {dns}\t\tiifname \"{HOST_IF}\" ip daddr {{ {blocked} }} drop\n\
         \t\toifname \"{HOST_IF}\" ct state established,related accept\n\
         \t\toifname \"{HOST_IF}\" drop\n\
         {not_a_router}\t}}\n\
         \tchain postrouting {{ type nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr {NS_ADDR} oifname != \"{HOST_IF}\" masquerade\n\t}}\n}}\n"
    )
}

/// The veth pair, addresses, default route, forwarding on the host side and the nft table.
/// Sets `turned_forwarding_on` when it turned IPv4 forwarding on (failing or not after that).
fn connect_outbound(
    ns: &Arc<OwnedFd>,
    resolvers: &[String],
    turned_forwarding_on: &mut bool,
) -> io::Result<()> {
    // The agent's descriptor, by the agent's pid (it is close-on-exec, so not `ip`'s own).
    let ns_path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
    // A pair left by an earlier agent goes first (its namespace may be gone or be this one).
    let _ = ip(&["link", "del", HOST_IF], None);
    ip(
        &[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", &ns_path,
        ],
        None,
    )?;
    ip(
        &["addr", "add", &format!("{HOST_ADDR}/30"), "dev", HOST_IF],
        None,
    )?;
    ip(&["link", "set", HOST_IF, "up"], None)?;
    ip(
        &["addr", "add", &format!("{NS_ADDR}/30"), "dev", NS_IF],
        Some(ns),
    )?;
    ip(&["link", "set", NS_IF, "up"], Some(ns))?;
    ip(&["route", "add", "default", "via", HOST_ADDR], Some(ns))?;
    // IPv4 decides forwarding by the input interface, and the namespace's replies come in on
    // the VM's uplinks: forwarding goes on everywhere, and the ruleset keeps the VM from
    // routing anything else it did not route before.
    let was_router =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1");
    std::fs::write("/proc/sys/net/ipv4/conf/all/forwarding", "1\n")?;
    if !was_router {
        *turned_forwarding_on = true;
    }
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("nft: {e}")))?;
    if let Some(mut stdin) = nft.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(nft_ruleset(resolvers, was_router).as_bytes())?;
    }
    let out = nft.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Nameservers of `text` (resolv.conf syntax) that are not loopback addresses.
pub(crate) fn upstream_nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .filter(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_owned)
        .collect()
}

/// The VM's upstream nameservers: those of `/etc/resolv.conf` that are not loopback, else
/// systemd-resolved's upstream list.
fn resolvers() -> Vec<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|t| upstream_nameservers(&t))
            .unwrap_or_default()
    };
    let servers = read("/etc/resolv.conf");
    if servers.is_empty() {
        read("/run/systemd/resolve/resolv.conf")
    } else {
        servers
    }
}

/// Writes `<world_root>/resolv.conf` naming `servers`.
fn write_resolv_conf(world_root: &Path, servers: &[String]) -> io::Result<PathBuf> {
    if servers.is_empty() {
        return Err(io::Error::other("no upstream nameserver known"));
    }
    let text: String = std::iter::once(
        "# codespace-agent: the restricted world's resolvers (the VM's loopback stub is on \
         another loopback)\n"
            .to_owned(),
    )
    .chain(servers.iter().map(|s| format!("nameserver {s}\n")))
    .collect();
    std::fs::create_dir_all(world_root)?;
    let path = world_root.join("resolv.conf");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstream_nameservers_skip_the_loopback_stub() {
        let text = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n\
                    nameserver ::1\nnameserver 2001:db8::53\noptions edns0\n";
        assert_eq!(upstream_nameservers(text), ["10.0.0.2", "2001:db8::53"]);
    }

    #[test]
    fn the_ruleset_fences_the_namespace_off_the_vm() {
        let r = nft_ruleset(&["10.0.0.2".into(), "2001:db8::53".into()], false);
        assert!(r.contains(&format!("iifname \"{HOST_IF}\" drop")));
        assert!(
            r.contains("ip daddr { 10.0.0.2 } udp dport 53 accept"),
            "{r}"
        );
        assert!(r.contains("169.254.0.0/16"));
        assert!(r.contains("masquerade"));
        assert!(r.contains(&format!("oifname \"{HOST_IF}\" drop")));
        assert!(r.contains(&format!(
            "iifname != \"{HOST_IF}\" oifname != \"{HOST_IF}\" drop"
        )));
        assert!(!nft_ruleset(&[], true).contains("iifname !="));
    }
}
