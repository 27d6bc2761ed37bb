//! The firewall, for real, in two network namespaces this test creates and deletes:
//!
//! ```text
//!   guest ns (the VM)                          outside ns (other VMs / internal network)
//!   lo + veth 10.231.0.1/24  ◀──── veth ────▶  10.231.0.2/24 (allowed), 10.231.0.3/24 (blocked)
//!             fd31::1/64                       fd31::2/64 (allowed),    fd31::3/64 (blocked)
//!   codespace-agent (firewall on)              TCP listener on both addresses
//!   TCP echo listener 0.0.0.0:P
//! ```
//!
//! Checks, before and after the agent starts: inbound to the guest's listener works, then is
//! dropped; a connection that predates the table keeps working; loopback inside the guest works;
//! outbound to the blocked address fails and to the other one succeeds; a connection forwarded
//! through the agent (its Unix socket, a signed grant: how the host reaches a port) reaches a
//! listener on 127.0.0.1 and the dual-stack one whose direct inbound is dropped, and data
//! round-trips; after SIGTERM the table is gone. The agent runs through `ip netns exec`; the test's own sockets are created on
//! threads that `setns` into a namespace (a socket stays in the namespace it was created in),
//! which keeps every connect attempt in-process with a bounded timeout.
//!
//! Needs root (netns, nftables); see HELPERS.md: without root it fails unless
//! `CODESPACE_SKIP_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codespace_agent::host::forward::{mint, open, port_epoch, put_grant_key};
use codespace_agent::wire::grant::{GrantKey, GrantPrincipal};
use serde_json::Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

use support::root::root as root_or_skip;

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; deleted on drop (which also deletes the veth and any
/// nft table inside them).
struct Netns {
    guest: String,
    outside: String,
}

impl Netns {
    fn create() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id());
        // The guard exists before anything is created, so a failure half-way is cleaned up too.
        let ns = Self {
            guest: format!("cafw-g{id}"),
            outside: format!("cafw-o{id}"),
        };
        run(&["ip", "netns", "add", &ns.guest]);
        run(&["ip", "netns", "add", &ns.outside]);
        let (vg, vo) = (format!("cafg{id}"), format!("cafo{id}"));
        run(&[
            "ip",
            "link",
            "add",
            &vg,
            "netns",
            &ns.guest,
            "type",
            "veth",
            "peer",
            "name",
            &vo,
            "netns",
            &ns.outside,
        ]);
        for (n, dev, addrs) in [
            (&ns.guest, &vg, &["10.231.0.1/24", "fd31::1/64"][..]),
            (
                &ns.outside,
                &vo,
                &["10.231.0.2/24", "10.231.0.3/24", "fd31::2/64", "fd31::3/64"][..],
            ),
        ] {
            for a in addrs {
                // nodad: IPv6 addresses are usable at once instead of after duplicate detection.
                let mut cmd = vec!["ip", "-n", n, "addr", "add", a, "dev", dev];
                if a.contains(':') {
                    cmd.push("nodad");
                }
                run(&cmd);
            }
            run(&["ip", "-n", n, "link", "set", dev, "up"]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.guest, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `f` on a thread that has entered the named network namespace.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Connects from inside `ns`; bounded by [`CONNECT_TIMEOUT`].
fn connect_from(ns: &str, to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(ns, move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT))
}

/// A listener inside `ns` that echoes each connection's bytes back.
fn echo_listener(ns: &str, addr: &str) -> u16 {
    let addr = addr.to_owned();
    let l: TcpListener = in_netns(ns, move || TcpListener::bind(addr).unwrap());
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn echo(s: &mut TcpStream, msg: &[u8]) -> bool {
    s.set_read_timeout(Some(CONNECT_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.write_all(msg).is_ok() && s.read_exact(&mut buf).is_ok() && buf == msg
}

const GRANT_KEY: [u8; 32] = [0x42; 32];

/// Waits (bounded) until the agent's port detector lists `port` and returns its epoch.
async fn detected_epoch(client: &codespace_agent::host::Client, port: u16) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(epoch) = port_epoch(client, port, Duration::from_secs(5))
            .await
            .unwrap()
        {
            return epoch;
        }
        assert!(Instant::now() < deadline, "port {port} never detected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forwards one connection to the guest's `port` through the agent (as the owner, with a grant
/// signed here, where the host would sign it), sends `msg` and returns what the echo sent back.
async fn forwarded_echo(agent: &support::Agent, port: u16, epoch: u64, msg: &[u8]) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let who = GrantPrincipal {
        login: "mona".into(),
        organizations: vec!["octo".into()],
        authenticated_at: now - 10,
    };
    let grant = mint(
        &GrantKey::new(&GRANT_KEY).unwrap(),
        port,
        epoch,
        Some(who),
        now,
        Duration::from_secs(600),
    );
    let (mut s, _) = open(&agent.options(), port, &grant)
        .await
        .unwrap_or_else(|e| panic!("forward to {port} refused: {e}\n{}", agent.log()));
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(CONNECT_TIMEOUT * 5, s.read_exact(&mut back))
        .await
        .expect("no echo through the forward")
        .unwrap();
    back
}

fn tables(ns: &str) -> String {
    run(&["ip", "netns", "exec", ns, "nft", "list", "tables"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_in_network_namespaces() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::create();
    let (g, o) = (ns.guest.clone(), ns.outside.clone());
    let guest_port = echo_listener(&g, "[::]:0"); // dual-stack: v4 and v6
    let local_port = echo_listener(&g, "127.0.0.1:0"); // only reachable inside the guest
    let out_port = echo_listener(&o, "[::]:0");
    let inbound = format!("10.231.0.1:{guest_port}");
    let allowed = format!("10.231.0.2:{out_port}");
    let blocked = format!("10.231.0.3:{out_port}");
    let inbound6 = format!("[fd31::1]:{guest_port}");
    let allowed6 = format!("[fd31::2]:{out_port}");
    let blocked6 = format!("[fd31::3]:{out_port}");

    // Before: everything connects.
    let mut old = connect_from(&o, &inbound).expect("inbound before the firewall");
    assert!(echo(&mut old, b"before"));
    assert!(
        connect_from(&g, &blocked).is_ok(),
        "outbound before the firewall"
    );
    assert!(
        connect_from(&o, &inbound6).is_ok(),
        "inbound v6 before the firewall"
    );
    assert!(
        connect_from(&g, &blocked6).is_ok(),
        "outbound v6 before the firewall"
    );

    // The real agent inside the guest namespace.
    let table = format!("cafw{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), support::KEY).unwrap();
    let config = format!(
        r#"{{ {} "workspace_dir": "{}",
             "codespace": {{ "owner": "mona", "organization": "octo" }},
             "detect": {{ "poll_interval_ms": 50 }},
             "firewall": {{ "enabled": true, "table": "{table}",
                            "blocked_ranges": ["10.231.0.3/32", "fd31::3/128"],
                            "allow_resolvers": false }} }}"#,
        support::NETWORK_USER_CONFIG,
        dir.path().display()
    );
    std::fs::write(dir.path().join("config.jsonc"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let sock = dir.path().join("agent.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &g])
        .arg(env!("CARGO_BIN_EXE_codespace-agent"))
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("config.jsonc"))
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--key-file")
        .arg(dir.path().join("key"))
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // `ip netns exec` execs the agent: the child's pid is the agent's.
    let mut agent = support::Agent {
        dir,
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "agent did not start:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = agent.client().await;
    let st = client
        .request("status", Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(st["firewall"]["applied"], true, "{st}\n{}", agent.log());
    assert_eq!(st["firewall"]["table"], table.as_str());
    assert!(tables(&g).contains(&format!("table inet {table}")));
    assert!(
        !tables(&o).contains(&table),
        "the table is only in the guest namespace"
    );

    // After: new inbound dropped; the older connection, loopback and allowed outbound work.
    let e = connect_from(&o, &inbound).map(|_| ()).unwrap_err();
    eprintln!("inbound with the firewall: {e}");
    assert!(
        echo(&mut old, b"after"),
        "a connection older than the table was cut"
    );
    let mut lo = connect_from(&g, &format!("127.0.0.1:{guest_port}")).expect("loopback");
    assert!(echo(&mut lo, b"loopback"));
    let mut own = connect_from(&g, &inbound).expect("the guest's own address (via lo)");
    assert!(echo(&mut own, b"own address"));
    let mut out = connect_from(&g, &allowed).expect("outbound to an address not blocked");
    assert!(echo(&mut out, b"outbound"));
    let e = connect_from(&g, &blocked).map(|_| ()).unwrap_err();
    eprintln!("outbound to the blocked range: {e}");
    // IPv6: the same, through neighbour discovery that must keep working.
    assert!(
        connect_from(&o, &inbound6).is_err(),
        "inbound v6 not dropped"
    );
    let mut out6 = connect_from(&g, &allowed6).expect("outbound v6 to an address not blocked");
    assert!(echo(&mut out6, b"outbound v6"));
    assert!(
        connect_from(&g, &blocked6).is_err(),
        "outbound v6 to the blocked range"
    );
    let mut lo6 = connect_from(&g, &format!("[::1]:{guest_port}")).expect("loopback v6");
    assert!(echo(&mut lo6, b"loopback v6"));

    // Through the agent: the host's way in. The forwarder dials loopback inside the guest, which
    // the firewall lets through, so both the 127.0.0.1-only listener and the dual-stack one whose
    // direct inbound was just dropped are reached, and bytes round-trip.
    let put = put_grant_key(&client, &GRANT_KEY, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(put["grant_key"], "installed", "{put}");
    for port in [local_port, guest_port] {
        let epoch = detected_epoch(&client, port).await;
        let msg = format!("through the agent to {port}");
        let back = forwarded_echo(&agent, port, epoch, msg.as_bytes()).await;
        assert_eq!(back, msg.as_bytes(), "forwarded bytes differ");
    }
    assert!(
        connect_from(&o, &inbound).is_err(),
        "direct inbound to the veth address still dropped after forwarding"
    );

    // The loaded table holds the configured range (replacement on restart: the test below).
    let again = Command::new("ip")
        .args(["netns", "exec", &g, "nft", "list", "table", "inet", &table])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        listed.contains("10.231.0.3") && listed.contains("fd31::3"),
        "{listed}"
    );

    // Stop: SIGTERM by pid; the table is gone, inbound works again.
    drop(client);
    let status = agent.terminate();
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(
        !tables(&g).contains(&table),
        "table left behind:\n{}",
        tables(&g)
    );
    assert!(
        connect_from(&o, &inbound).is_ok(),
        "inbound after the agent stopped"
    );
}

#[test]
fn the_generated_ruleset_is_accepted_twice_by_nft() {
    if !root_or_skip() {
        return;
    }
    use codespace_agent::guest::firewall::{ruleset, FirewallConfig, RawFirewallConfig};
    let ns = Netns::create();
    let raw = RawFirewallConfig {
        enabled: Some(true),
        allowed_ranges: Some(vec!["10.0.0.2".into(), "fd00::/8".into()]),
        ..Default::default()
    };
    let c = FirewallConfig::from_raw(raw).unwrap();
    let text =
        ruleset::ruleset(&c.plan(&["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()]));
    for _ in 0..2 {
        support::run_with_stdin(
            Command::new("ip").args(["netns", "exec", &ns.guest, "nft", "-f", "-"]),
            text.as_bytes(),
        );
    }
    let t = tables(&ns.guest);
    assert_eq!(t.matches("codespace_agent").count(), 1, "{t}");
}
