//! Port forwarding end to end: the real `codespace-agent` on a Unix socket, real TCP listeners
//! on loopback detected by the agent, grants minted here (this test plays the host), and the
//! `codespace-agentctl ports` commands.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codespace_agent::host::forward::{mint, open, ForwardStream};
use codespace_agent::host::Client;
use codespace_agent::wire::grant::GrantKey;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::forwarding::*;
use support::{json_out, stderr, Agent, Raw, KEY};

/// Raises this process's open-file limit (inherited by the agent it spawns).
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    )
    .unwrap();
}

#[tokio::test]
async fn visibility_changes_bump_epochs_and_removal_forgets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let owner_only = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let oo_port = owner_only.local_addr().unwrap().port();
    let agent = Agent::start(&format!(
        r#"{CODESPACE}, "ports": {{"owner_only": [{oo_port}], "allowed_visibilities": ["private", "org"]}}"#
    ));
    let c = control(&agent).await;
    let p = wait_port(&c, port, |p| p.is_some()).await.unwrap();
    assert_eq!(p["visibility"], "private", "new ports are private: {p}");
    assert_eq!(p["listeners"][0]["addr"], "127.0.0.1", "{p}");
    let e0 = p["epoch"].as_u64().unwrap();

    // Through the CLI: org is allowed, public is not (organization policy).
    let port_s = port.to_string();
    let r = json_out(&agent.ctl(&["ports", "visibility", &port_s, "org"]));
    assert_eq!(r["visibility"], "org");
    let e1 = r["epoch"].as_u64().unwrap();
    assert!(e1 > e0, "{r}");
    let out = agent.ctl(&["ports", "visibility", &port_s, "public"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("visibility-not-allowed"),
        "{}",
        stderr(&out)
    );
    let oo = oo_port.to_string();
    wait_port(&c, oo_port, |p| p.is_some()).await;
    let out = agent.ctl(&["ports", "visibility", &oo, "org"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("owner-only"), "{}", stderr(&out));
    let l = json_out(&agent.ctl(&["ports", "list"]));
    let entry = l["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == oo_port)
        .unwrap();
    assert_eq!(
        (entry["owner_only"].clone(), entry["visibility"].clone()),
        (json!(true), json!("private"))
    );

    // Removed and re-added: private again, with a newer epoch.
    drop(listener);
    wait_port(&c, port, |p| p.is_none()).await;
    let again = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let p = wait_port(&c, port, |p| p.is_some()).await.unwrap();
    assert_eq!(p["visibility"], "private", "{p}");
    assert!(p["epoch"].as_u64().unwrap() > e1, "{p}");
    drop(again);
}

#[tokio::test]
async fn every_bad_grant_is_refused_with_its_reason() {
    let (port, _echo) = echo_server().await;
    let (other, _echo2) = echo_server().await;
    let (oo_port, _echo3) = echo_server().await;
    let agent = Agent::start(&format!(
        r#"{CODESPACE}, "ports": {{"owner_only": [{oo_port}]}}"#
    ));
    let c = control(&agent).await;
    let e = epoch(&c, port).await;
    epoch(&c, other).await;
    let key = GrantKey::new(&GRANT_KEY).unwrap();
    let ttl = Duration::from_secs(600);

    // The owner gets through (private port).
    let s = forward(&agent, port, e, who("mona", &[])).await.unwrap();
    assert_eq!(round_trip(s, b"hi").await, b"hi");

    let forged = mint(
        &GrantKey::new(&[1; 32]).unwrap(),
        port,
        e,
        who("mona", &[]),
        now(),
        ttl,
    );
    assert_eq!(refused(&agent, port, &forged).await, "forged");
    let mut expired = mint(
        &key,
        port,
        e,
        who("mona", &[]),
        now() - 1000,
        Duration::from_secs(10),
    );
    expired.claims.expires_at = now() - 900;
    let expired = key.sign(expired.claims);
    assert_eq!(refused(&agent, port, &expired).await, "expired");
    let for_other = mint(&key, other, e, who("mona", &[]), now(), ttl);
    assert_eq!(refused(&agent, port, &for_other).await, "wrong-port");
    let anonymous = mint(&key, port, e, None, now(), ttl);
    assert_eq!(
        refused(&agent, port, &anonymous).await,
        "authentication-required"
    );
    let stranger = mint(&key, port, e, who("hubot", &["octo"]), now(), ttl);
    assert_eq!(refused(&agent, port, &stranger).await, "not-owner");

    // Org: a member gets through, a non-member does not, an old epoch is stale.
    let e2 = set_visibility(&c, port, "org").await["epoch"]
        .as_u64()
        .unwrap();
    let old = mint(&key, port, e, who("hubot", &["octo"]), now(), ttl);
    assert_eq!(refused(&agent, port, &old).await, "stale-epoch");
    let outsider = mint(&key, port, e2, who("hubot", &["other"]), now(), ttl);
    assert_eq!(
        refused(&agent, port, &outsider).await,
        "not-organization-member"
    );
    let s = forward(&agent, port, e2, who("hubot", &["OCTO"]))
        .await
        .unwrap();
    assert_eq!(round_trip(s, b"member").await, b"member");

    // Public: no principal needed.
    let e3 = set_visibility(&c, port, "public").await["epoch"]
        .as_u64()
        .unwrap();
    let s = forward(&agent, port, e3, None).await.unwrap();
    assert_eq!(round_trip(s, b"anyone").await, b"anyone");

    // Owner-only: the creator only.
    let eo = epoch(&c, oo_port).await;
    let g = mint(&key, oo_port, eo, who("hubot", &["octo"]), now(), ttl);
    assert_eq!(refused(&agent, oo_port, &g).await, "owner-only");
    let g = mint(&key, oo_port, eo, None, now(), ttl);
    assert_eq!(refused(&agent, oo_port, &g).await, "owner-only");
    let s = forward(&agent, oo_port, eo, who("mona", &[]))
        .await
        .unwrap();
    assert_eq!(round_trip(s, b"ssh").await, b"ssh");

    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_port = free.local_addr().unwrap().port();
    drop(free);
    let g = mint(&key, free_port, 1, who("mona", &[]), now(), ttl);
    assert_eq!(refused(&agent, free_port, &g).await, "no-such-port");
}

/// Whether the stream reaches end of stream (or fails) within one second.
async fn closed_within_a_second(s: &mut ForwardStream) -> bool {
    let mut b = [0u8; 16];
    let drained = async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), drained)
        .await
        .is_ok()
}

#[tokio::test]
async fn tightening_and_removal_cut_live_connections_within_a_second() {
    // A server that holds connections open and answers each line.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    epoch(&c, port).await;
    let e = set_visibility(&c, port, "public").await["epoch"]
        .as_u64()
        .unwrap();
    let mut anonymous = forward(&agent, port, e, None).await.unwrap();
    let mut member = forward(&agent, port, e, who("hubot", &["octo"]))
        .await
        .unwrap();
    let mut owner = forward(&agent, port, e, who("mona", &[])).await.unwrap();
    for s in [&mut anonymous, &mut member, &mut owner] {
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
    }
    // public → org: the anonymous connection goes, the others stay.
    let r = set_visibility(&c, port, "org").await;
    assert_eq!(r["revoked"], 1, "{r}");
    assert!(
        closed_within_a_second(&mut anonymous).await,
        "anonymous survived"
    );
    member.write_all(b"still").await.unwrap();
    let mut b = [0u8; 5];
    member.read_exact(&mut b).await.unwrap();
    // org → private: the member goes.
    let r = set_visibility(&c, port, "private").await;
    assert_eq!(r["revoked"], 1, "{r}");
    assert!(closed_within_a_second(&mut member).await, "member survived");
    owner.write_all(b"owner").await.unwrap();
    owner.read_exact(&mut b).await.unwrap();
    // The listener goes away: the owner's connection is cut as well.
    server.abort();
    let _ = server.await;
    // (Detection polls every 50 ms here; the cut follows the detection at once.)
    assert!(
        closed_within_a_second(&mut owner).await,
        "the owner's connection survived the port's removal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_carry_their_own_bytes() {
    raise_nofile();
    let (port, _echo) = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    epoch(&c, port).await;
    let e = set_visibility(&c, port, "org").await["epoch"]
        .as_u64()
        .unwrap();
    const N: usize = 1000;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let opts = Arc::new(agent.options());
    let key = Arc::new(GrantKey::new(&GRANT_KEY).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let barrier = barrier.clone();
        let opts = opts.clone();
        let key = key.clone();
        tasks.spawn(async move {
            let principal = who(if i % 2 == 0 { "mona" } else { "hubot" }, &["octo"]);
            let grant = mint(&key, port, e, principal, now(), Duration::from_secs(600));
            let (s, _) = open(&opts, port, &grant).await.unwrap();
            // Every connection is open before any sends a byte.
            barrier.wait().await;
            let data: Vec<u8> = (0..16 * 1024 + i)
                .map(|j| ((i * 7 + j) % 251) as u8)
                .collect();
            let back = round_trip(s, &data).await;
            assert_eq!(back, data, "connection {i}");
        });
    }
    let all = async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("1,000 connections did not finish in 120 s");
    // All finished: the live table is empty again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while list(&c).await["connections"] != 0 {
        assert!(Instant::now() < deadline, "{}", list(&c).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ctl_ports_forward_relays_and_half_closes() {
    let (port, _echo) = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    epoch(&c, port).await;
    let key_file = agent.write("grant.key", &String::from_utf8(vec![b'k'; 40]).unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
        .arg("--connect")
        .arg(agent.addr())
        .arg("--key-file")
        .arg(agent.key_file())
        .args([
            "ports",
            "forward",
            &port.to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--as", "mona", "--orgs", "octo,other", "--grant-key-file"])
        .arg(&key_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let kill = scopeguard(pid);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?}"));
    let local = ready["listening"].as_str().unwrap().to_owned();
    for round in 0..3 {
        let mut s = TcpStream::connect(&local).await.unwrap();
        let msg = format!("request {round}");
        s.write_all(msg.as_bytes()).await.unwrap();
        // Half-close: the reply still arrives after our end of stream.
        s.shutdown().await.unwrap();
        let mut back = String::new();
        s.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, msg);
        if round == 0 {
            // The visibility changes: the CLI's grants go stale once and are minted again.
            set_visibility(&c, port, "org").await;
        }
    }
    // The CLI used forward tickets: a first batch of 64, one per connection attempt (round 1
    // needed two: the stale grant, then the fresh one).
    assert_eq!(list(&c).await["forward_tickets"], 60);
    drop(kill);
    let _ = child.wait();
}

/// Kills a child by PID when dropped (the test may fail half-way).
struct KillOnDrop(u32);
fn scopeguard(pid: u32) -> KillOnDrop {
    KillOnDrop(pid)
}
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[tokio::test]
async fn misbehaving_forward_clients_do_not_disturb_others() {
    let (port, _echo) = echo_server().await;
    let agent = Agent::start(&format!(r#"{CODESPACE}, "handshake_timeout_ms": 2000"#));
    let c = control(&agent).await;
    let e = epoch(&c, port).await;
    // One stalls before the hello, one sends garbage, one sends a forward hello whose grant is
    // nonsense, one never reads.
    let _stalled = Raw::connect(&agent).await;
    let mut garbage = Raw::connect(&agent).await;
    garbage.send_bytes(b"\x00\x00\x00\x05hello world").await;
    let mut nonsense = Raw::connect(&agent).await;
    {
        use codespace_agent::wire::handshake::host_start_forward;
        use codespace_agent::wire::io::write_payload;
        use codespace_agent::wire::message::ForwardHello;
        use codespace_agent::wire::SharedKey;
        let hello = ForwardHello {
            port,
            grant: json!({"port": "eighty"}),
            ticket: None,
        };
        let (st, payload) = host_start_forward(hello, Some(SharedKey::new(KEY).unwrap()), [1; 32]);
        write_payload(&mut nonsense.stream, &nonsense.codec, &payload)
            .await
            .unwrap();
        let welcome = nonsense.next().await.unwrap();
        let (st, auth) = st.handle(&welcome.payload).unwrap();
        write_payload(&mut nonsense.stream, &nonsense.codec, &auth.unwrap())
            .await
            .unwrap();
        st.handle(&nonsense.next().await.unwrap().payload).unwrap();
        let f = nonsense.next().await.unwrap();
        assert_eq!(f.object["reason"], "malformed-grant", "{:?}", f.object);
        assert!(nonsense.next().await.is_none(), "closed after the refusal");
    }
    let f = garbage.next().await.unwrap();
    assert_eq!(f.object["error"]["code"], "invalid_frame");
    // One stops in the middle of the handshake: a forward hello, then nothing.
    let mut halfway = Raw::connect(&agent).await;
    {
        use codespace_agent::wire::handshake::host_start_forward;
        use codespace_agent::wire::io::write_payload;
        use codespace_agent::wire::message::ForwardHello;
        use codespace_agent::wire::SharedKey;
        let grant = mint(
            &GrantKey::new(&GRANT_KEY).unwrap(),
            port,
            e,
            who("mona", &[]),
            now(),
            Duration::from_secs(60),
        );
        let hello = ForwardHello {
            port,
            grant: serde_json::to_value(grant).unwrap(),
            ticket: None,
        };
        let (_, payload) = host_start_forward(hello, Some(SharedKey::new(KEY).unwrap()), [2; 32]);
        write_payload(&mut halfway.stream, &halfway.codec, &payload)
            .await
            .unwrap();
        assert_eq!(halfway.next().await.unwrap().object["type"], "welcome");
    }
    // A forwarded connection that never reads while the others go on.
    let mut hog = forward(&agent, port, e, who("mona", &[])).await.unwrap();
    hog.write_all(&vec![7u8; 1 << 20]).await.unwrap();
    for i in 0..20 {
        let s = forward(&agent, port, e, who("mona", &[])).await.unwrap();
        let msg = format!("ok {i}");
        assert_eq!(round_trip(s, msg.as_bytes()).await, msg.as_bytes());
    }
    assert_eq!(
        c.request("ping", Map::new(), Duration::from_secs(5))
            .await
            .unwrap()["pong"],
        true
    );
    // The half-way client is cut by the handshake timeout, with an error naming it.
    let f = halfway.next().await.unwrap();
    assert_eq!(f.object["error"]["code"], "timeout", "{:?}", f.object);
}

#[tokio::test]
async fn a_listener_on_ipv6_loopback_only_is_reached_there() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    let port = l.local_addr().unwrap().port();
    serve_echo(l);
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    let e = epoch(&c, port).await;
    let grant = mint(
        &GrantKey::new(&GRANT_KEY).unwrap(),
        port,
        e,
        who("mona", &[]),
        now(),
        Duration::from_secs(60),
    );
    let (s, accepted) = open(&agent.options(), port, &grant).await.unwrap();
    assert_eq!(accepted.target, format!("[::1]:{port}"));
    assert_eq!(round_trip(s, b"six").await, b"six");
}

/// Root-only: a dev server that a restricted run's `postStartCommand` leaves running listens in
/// the restricted principal's own network namespace, where nothing of the VM's loopback is. It
/// is still detected (tagged `restricted`) and its owner reaches it through the forwarder, which
/// connects from inside that namespace.
#[tokio::test]
async fn a_restricted_runs_dev_server_is_detected_and_forwarded() {
    if !support::root::root() {
        return;
    }
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    // The creator's workspace (a uid of its own), with a dev server in postStartCommand: an
    // echo server on 127.0.0.1 in its own network.
    let ws_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws_dir.path(), Some(64_999), Some(64_999)).unwrap();
    // Below the ephemeral range: the other tests of this binary bind port 0 at the same time,
    // and one of them must not get this number on the VM's loopback.
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let server = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port}))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n \
         c.sendall(c.recv(100))\n c.close()\n"
    );
    std::fs::write(ws_dir.path().join("server.py"), server).unwrap();
    std::fs::write(
        ws_dir.path().join(".devcontainer.json"),
        r#"{"postStartCommand": "(/usr/bin/python3 server.py >/dev/null 2>&1 &); sleep 0.5"}"#,
    )
    .unwrap();
    json_out(&agent.ctl(&["session", "create", "--repository", "octo/app"]));
    let run_args = [
        "lifecycle",
        "run",
        "--devcontainer",
        ".devcontainer.json",
        "--workspace",
        ws_dir.path().to_str().unwrap(),
        "--phase",
        "start",
        "--creator-access",
        "read",
        "--json",
    ];
    // Whatever happens below, the dev server goes, through the agent, which knows its cgroup
    // (the test agent sets up no NAT: nothing else of the restricted network outlives it).
    // Dropped before the agent.
    struct Cleanup<'a>(&'a Agent);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.ctl(&["lifecycle", "kill-restricted"]);
        }
    }
    let _cleanup = Cleanup(&agent);
    let out = agent.ctl(&run_args);
    let r: Value = serde_json::from_str(&support::stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stderr(&out), agent.log()));
    assert_eq!(r["profile"], "restricted", "{r}");
    assert_eq!(r["status"], "succeeded", "{r}");
    // The VM's own loopback does not have it...
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    // ...but the agent sees it, in the restricted network.
    let entry = wait_port(&c, port, |p| p.is_some()).await.unwrap();
    let listener = &entry["listeners"][0];
    assert_eq!(listener["network"], "restricted", "{entry}");

    // The owner forwards it like any port.
    let epoch = entry["epoch"].as_u64().unwrap();
    let mut s = forward(&agent, port, epoch, who("mona", &["octo"]))
        .await
        .unwrap();
    s.write_all(b"through the forwarder").await.unwrap();
    let mut back = vec![0; 21];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, b"through the forwarder");
    drop(s);
    // On request, everything restricted runs left behind goes (the dev server too)...
    let killed: Value = serde_json::from_str(&support::stdout(
        &agent.ctl(&["lifecycle", "kill-restricted"]),
    ))
    .unwrap();
    assert!(killed["killed"].as_u64() >= Some(1), "{killed}");
    wait_port(&c, port, |p| p.is_none()).await;
    // ...and when the trust facts change: the creator gets write access.
    let out = agent.ctl(&run_args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}\n{}",
        support::stdout(&out),
        stderr(&out),
        agent.log()
    );
    wait_port(&c, port, |p| p.is_some()).await;
    agent.session_create_with_write_access(&[]);
    wait_port(&c, port, |p| p.is_none()).await;
}

/// An intruder's server run as `nobody` (uid 65534): listens on `127.0.0.1:port` and answers
/// every connection with "intruder". Killed by PID on drop.
struct Intruder(std::process::Child);

impl Intruder {
    fn start(port: u16) -> Self {
        use std::os::unix::process::CommandExt;
        let server = format!(
            "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen(8)\n\
             print('ready',flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(b'intruder')\n \
             c.close()\n"
        );
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", &server])
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the intruder could not listen");
        Self(child)
    }
}

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Root-only (issue 16, part 2): the owner's dev server listens on `[::1]:P` only (Node ≥ 17
/// binds `localhost` there) and P is public; another uid binds `127.0.0.1:P`. That is a new
/// port identity: a new epoch, private again, old grants stale, and the forwarder reaches only
/// the owner's listener, never the other uid's, even after the owner's is gone.
#[tokio::test]
async fn another_uids_listener_on_a_public_port_resets_it_and_is_never_forwarded_to() {
    if !support::root::root() {
        return;
    }
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    let port = l.local_addr().unwrap().port();
    let owner = serve_echo(l);
    let agent = Agent::start(CODESPACE);
    let c = control(&agent).await;
    epoch(&c, port).await;
    let e = set_visibility(&c, port, "public").await["epoch"]
        .as_u64()
        .unwrap();
    let s = forward(&agent, port, e, None).await.unwrap();
    assert_eq!(round_trip(s, b"owner").await, b"owner");
    let key = GrantKey::new(&GRANT_KEY).unwrap();
    let ttl = Duration::from_secs(600);

    let intruder = Intruder::start(port);
    // (a) A new epoch, private again, once the intruder's listener is detected.
    let entry = wait_port(&c, port, |p| {
        p.is_some_and(|p| p["listeners"].as_array().is_some_and(|l| l.len() == 2))
    })
    .await
    .unwrap();
    assert_eq!(entry["visibility"], "private", "{entry}");
    let e2 = entry["epoch"].as_u64().unwrap();
    assert!(e2 > e, "{entry}");
    // (b) The old grants are stale, the owner's and the anonymous visitor's.
    let old = mint(&key, port, e, who("mona", &[]), now(), ttl);
    assert_eq!(refused(&agent, port, &old).await, "stale-epoch");
    let old = mint(&key, port, e, None, now(), ttl);
    assert_eq!(refused(&agent, port, &old).await, "stale-epoch");
    // (c) A new grant reaches the owner's listener, never the intruder's.
    for _ in 0..5 {
        let s = forward(&agent, port, e2, who("mona", &[])).await.unwrap();
        assert_eq!(round_trip(s, b"mine").await, b"mine");
    }
    let anonymous = mint(&key, port, e2, None, now(), ttl);
    assert_eq!(
        refused(&agent, port, &anonymous).await,
        "authentication-required"
    );
    // (d) The owner's listener closes, the intruder's stays: nothing is public, and even the
    // owner's own grant does not reach the intruder.
    owner.abort();
    let _ = owner.await;
    let entry = wait_port(&c, port, |p| {
        p.is_some_and(|p| p["listeners"].as_array().is_some_and(|l| l.len() == 1))
    })
    .await
    .unwrap();
    assert_eq!(entry["visibility"], "private", "{entry}");
    let e3 = entry["epoch"].as_u64().unwrap();
    let g = mint(&key, port, e3, None, now(), ttl);
    assert_eq!(refused(&agent, port, &g).await, "authentication-required");
    let g = mint(&key, port, e3, who("mona", &[]), now(), ttl);
    assert_eq!(refused(&agent, port, &g).await, "port-unreachable");
    // Made public again by the owner, the port still forwards nobody to the intruder.
    let e4 = set_visibility(&c, port, "public").await["epoch"]
        .as_u64()
        .unwrap();
    let g = mint(&key, port, e4, None, now(), ttl);
    assert_eq!(refused(&agent, port, &g).await, "port-unreachable");
    drop(intruder);
}

/// Echoes every chunk as soon as it arrives (a dev server answering requests, an SSH server
/// answering keystrokes).
fn serve_chunks(l: std::net::TcpListener) {
    l.set_nonblocking(true).unwrap();
    let l = TcpListener::from_std(l).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// One request and its answer, every `every`, for `how_long`.
async fn chatter(s: &mut ForwardStream, every: Duration, how_long: Duration) {
    let until = Instant::now() + how_long;
    let mut one = [0u8; 1];
    while Instant::now() < until {
        s.write_all(b"x").await.unwrap();
        s.read_exact(&mut one).await.unwrap();
        tokio::time::sleep(every).await;
    }
}

/// The first `idle_warning` or `idle` event within `within`, and when it came.
async fn next_idle_event(c: &Client, within: Duration) -> Option<(String, Instant, Value)> {
    tokio::time::timeout(within, async {
        loop {
            let ev = c.next_event().await?;
            if ev.name == "idle_warning" || ev.name == "idle" {
                return Some((ev.name, Instant::now(), Value::Object(ev.fields)));
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Issue 18: a dev server answering forwarded requests all the time does not keep the
/// codespace active, even for its owner, and neither does a busy loop; bytes on a connection
/// to an owner-only port (SSH, the editor's server) do, until they stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owner_only_connections_count_as_activity() {
    let terminals = tempfile::tempdir().unwrap();
    let dev = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dev_port = dev.local_addr().unwrap().port();
    let ssh = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ssh_port = ssh.local_addr().unwrap().port();
    serve_chunks(dev);
    serve_chunks(ssh);
    let agent = Agent::start(&format!(
        r#"{CODESPACE}, "ports": {{"owner_only": [{ssh_port}]}},
           "idle": {{"timeout_s": 3, "warn_s": 1, "terminals": "{}"}}"#,
        terminals.path().display()
    ));
    let started = Instant::now();
    let mut busy = Command::new("sh")
        .args(["-c", "while true; do :; done"])
        .spawn()
        .unwrap();
    let c = control(&agent).await;
    let mut web = forward(
        &agent,
        dev_port,
        epoch(&c, dev_port).await,
        who("mona", &[]),
    )
    .await
    .unwrap();
    // Requests every 200 ms, and a busy loop: the warning and idle come at their deadlines
    // all the same.
    let (events, _) = tokio::join!(
        async {
            let warning = next_idle_event(&c, Duration::from_secs(8)).await;
            (warning, next_idle_event(&c, Duration::from_secs(8)).await)
        },
        chatter(&mut web, Duration::from_millis(200), Duration::from_secs(5)),
    );
    let _ = Command::new("kill").arg(busy.id().to_string()).status();
    let _ = busy.wait();
    for (event, name, by) in [(events.0, "idle_warning", 3), (events.1, "idle", 4)] {
        let (got, at, fields) = event.unwrap_or_else(|| panic!("no {name}\n{}", agent.log()));
        assert_eq!(got, name, "{fields}");
        assert!(
            at - started < Duration::from_secs(by),
            "{name} after {:?}",
            at - started
        );
        assert_eq!(fields["source"], "start", "{fields}");
    }

    // The host restarts the clock; then someone types over SSH (a byte each way every
    // 300 ms) for twice the timeout: no warning, no idle.
    json_out(&agent.ctl(&["activity"]));
    let mut shell = forward(
        &agent,
        ssh_port,
        epoch(&c, ssh_port).await,
        who("mona", &[]),
    )
    .await
    .unwrap();
    let (quiet, _) = tokio::join!(
        next_idle_event(&c, Duration::from_secs(6)),
        chatter(
            &mut shell,
            Duration::from_millis(300),
            Duration::from_secs(6)
        ),
    );
    assert!(quiet.is_none(), "{quiet:?}\n{}", agent.log());
    // They stop typing (the connection stays open): the warning comes 2 s after the last
    // byte, from the connection.
    let stopped = Instant::now();
    let (name, at, fields) = next_idle_event(&c, Duration::from_secs(6))
        .await
        .unwrap_or_else(|| panic!("no warning after typing stopped\n{}", agent.log()));
    assert_eq!(name, "idle_warning", "{fields}");
    assert_eq!(fields["source"], "connection", "{fields}");
    assert!(
        at - stopped < Duration::from_secs(3),
        "warned {:?} after the last byte",
        at - stopped
    );
    drop(shell);
}
