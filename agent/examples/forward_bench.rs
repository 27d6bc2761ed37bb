//! Port-forwarding benchmark (issue 5): throughput of a 1 GiB transfer and connection set-up
//! latency through the agent's forwarder, against socat doing the same Unix → TCP relay and
//! against a direct TCP connection (the ceiling). Run by `tests/perf/ports_forward.sh`.
//!
//! ```text
//! direct  client ──TCP──────────────────────────────────────────▶ server
//! socat   client ──Unix──▶ socat UNIX-LISTEN:..,fork TCP:127.0.0.1:P ──TCP──▶ server
//! agent   client ──Unix──▶ codespace-agent (hello+grant, HMAC handshake, splice) ──TCP──▶ server
//! ```
//!
//! The agent's set-up is measured three ways, interleaved with the others: the full handshake
//! (two round trips), a forward ticket (one round trip, `host::tickets`), and a ticket with the
//! first byte sent as early data right behind the handshake frames. Throughput uses the ticket.
//!
//! Throughput: the client writes 1 GiB (1 MiB writes) and half-closes; the sink answers with the
//! byte count once it has read everything; the time runs from the first write to that answer.
//! The three paths take turns, nine rounds by default: direct TCP's own rate is bimodal on a
//! 2-vCPU VM (its two ends on one vCPU or on two), so a few rounds can land in either mode.
//! Set-up latency: from the start of `connect` (for the agent: dial, handshake with the grant,
//! `forward_ok`) until one byte has gone to an echo server and back, per connection, over
//! sequential connections. Tickets are fetched outside the timed part (a host keeps a batch).
//! Usage: `forward_bench AGENT_BIN [--gib N] [--connections N] [--rounds N]`.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codespace_agent::host::forward::{mint, open_with, port_epoch, put_grant_key};
use codespace_agent::host::tickets::TicketPool;
use codespace_agent::host::{Client, ConnectAddr, ConnectOptions};
use codespace_agent::wire::grant::{GrantKey, GrantPrincipal};
use codespace_agent::wire::SharedKey;
use serde_json::json;

const KEY: &[u8] = b"benchmark-shared-key-0123456789abcdef";
const GRANT_KEY: [u8; 32] = [0x5a; 32];
const CHUNK: usize = 1 << 20;

/// Kills a child process by PID on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sink: reads to end of stream, answers the byte count (8 bytes, big-endian).
fn sink_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(&total.to_be_bytes());
            });
        }
    });
    port
}

/// Echo: one thread per connection, echoes until end of stream.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Pushes `total` bytes through a connected blocking stream and waits for the sink's count.
fn push<S: Read + Write>(mut s: S, total: u64, shutdown: impl FnOnce(&S)) -> Duration {
    let buf = vec![0xabu8; CHUNK];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    shutdown(&s);
    let mut count = [0u8; 8];
    s.read_exact(&mut count).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(u64::from_be_bytes(count), total, "the sink lost bytes");
    elapsed
}

/// CPU time (user + system, own and reaped children) of a process, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime..cstime are fields 14..17.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks: u64 = f.iter().sum();
    // /proc reports in USER_HZ, which is 100 on Linux whatever the kernel tick rate.
    let hz = 100u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

fn ping<S: Read + Write>(s: &mut S) {
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Direct,
    Socat,
    Agent(Handshake),
}

/// How the agent path opens a forward connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handshake {
    /// hello → welcome → auth → ok + forward_ok.
    Full,
    /// hello + auth with a ticket → welcome + ok + forward_ok.
    Ticket,
    /// As `Ticket`, the first byte sent right behind the handshake frames.
    TicketEarly,
}

impl Handshake {
    const ALL: [Self; 3] = [Self::Full, Self::Ticket, Self::TicketEarly];

    fn index(self) -> usize {
        match self {
            Self::Full => 0,
            Self::Ticket => 1,
            Self::TicketEarly => 2,
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    socat_sink: PathBuf,
    socat_echo: PathBuf,
    sink: u16,
    echo: u16,
    opts: ConnectOptions,
    key: GrantKey,
    epochs: (u64, u64),
    agent_pid: u32,
    socat_sink_pid: u32,
    rt: tokio::runtime::Runtime,
    /// The control connection (tickets come from it).
    control: Client,
    tickets: TicketPool,
    /// Time of the agent's `open` (dial, handshake, grant check, connect, `forward_ok`), per
    /// [`Handshake`].
    open_times: std::cell::RefCell<[Vec<Duration>; 3]>,
    _procs: Vec<Proc>,
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn setup(agent_bin: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_server();
    let echo = echo_server();
    std::fs::write(dir.path().join("key"), KEY).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({
            "workspace_dir": dir.path(),
            "codespace": {"owner": "mona"},
        })
        .to_string(),
    )
    .unwrap();
    let agent_sock = dir.path().join("agent.sock");
    let agent = Command::new(agent_bin)
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("config.json"))
        .arg("--listen")
        .arg(format!("unix:{}", agent_sock.display()))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--key-file")
        .arg(dir.path().join("key"))
        .env("CODESPACE_AGENT_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent_pid = agent.id();
    let mut procs = vec![Proc(agent)];
    let socat_sink = dir.path().join("socat-sink.sock");
    let socat_echo = dir.path().join("socat-echo.sock");
    let mut socat_pids = Vec::new();
    for (path, port) in [(&socat_sink, sink), (&socat_echo, echo)] {
        let p = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", path.display()))
            .arg(format!("TCP:127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("socat (apt-get install socat)");
        socat_pids.push(p.id());
        procs.push(Proc(p));
    }
    for p in [&agent_sock, &socat_sink, &socat_echo] {
        wait_for(p);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = ConnectOptions::new(
        ConnectAddr::Unix(agent_sock.clone()),
        Some(SharedKey::new(KEY).unwrap()),
    );
    let (control, epochs) = rt.block_on(async {
        let c = Client::connect(&opts).await.unwrap();
        let t = Duration::from_secs(5);
        put_grant_key(&c, &GRANT_KEY, t).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sink_epoch = port_epoch(&c, sink, t).await.unwrap();
            let echo_epoch = port_epoch(&c, echo, t).await.unwrap();
            if let (Some(a), Some(b)) = (sink_epoch, echo_epoch) {
                break (c, (a, b));
            }
            assert!(
                Instant::now() < deadline,
                "ports {sink}, {echo} not detected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Setup {
        _dir: dir,
        socat_sink,
        socat_echo,
        sink,
        echo,
        opts,
        key: GrantKey::new(&GRANT_KEY).unwrap(),
        epochs,
        agent_pid,
        socat_sink_pid: socat_pids[0],
        rt,
        control,
        tickets: TicketPool::new(256),
        open_times: std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]),
        _procs: procs,
    }
}

fn principal() -> Option<GrantPrincipal> {
    Some(GrantPrincipal {
        login: "mona".into(),
        organizations: vec![],
        authenticated_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    })
}

/// A blocking stream to the sink (`echo == false`) or echo server through `mode`.
enum Conn {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Setup {
    fn connect(&self, mode: Mode, echo: bool) -> Conn {
        let port = if echo { self.echo } else { self.sink };
        match mode {
            Mode::Direct => {
                let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            Mode::Socat => Conn::Unix(
                std::os::unix::net::UnixStream::connect(if echo {
                    &self.socat_echo
                } else {
                    &self.socat_sink
                })
                .unwrap(),
            ),
            Mode::Agent(handshake) => {
                let epoch = if echo { self.epochs.1 } else { self.epochs.0 };
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let grant = mint(
                    &self.key,
                    port,
                    epoch,
                    principal(),
                    now,
                    Duration::from_secs(3600),
                );
                let ticket = match handshake {
                    Handshake::Full => None,
                    Handshake::Ticket | Handshake::TicketEarly => Some(
                        self.rt
                            .block_on(self.tickets.take_or_refill(&self.control))
                            .unwrap(),
                    ),
                };
                let early: &[u8] = match handshake {
                    Handshake::TicketEarly => b"x",
                    Handshake::Full | Handshake::Ticket => b"",
                };
                let start = Instant::now();
                let (s, _) = self
                    .rt
                    .block_on(open_with(&self.opts, port, &grant, ticket.as_ref(), early))
                    .unwrap();
                if echo {
                    self.open_times.borrow_mut()[handshake.index()].push(start.elapsed());
                }
                let codespace_agent::host::forward::ForwardStream::Unix(s) = s else {
                    panic!("unix expected")
                };
                let s = s.into_std().unwrap();
                s.set_nonblocking(false).unwrap();
                Conn::Unix(s)
            }
        }
    }

    fn throughput(&self, mode: Mode, bytes: u64) -> Duration {
        match self.connect(mode, false) {
            Conn::Tcp(s) => push(s, bytes, |s| {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }),
            Conn::Unix(s) => push(s, bytes, |s| {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }),
        }
    }

    fn setup_latency(&self, mode: Mode) -> Duration {
        let start = Instant::now();
        match self.connect(mode, true) {
            Conn::Tcp(mut s) => {
                ping(&mut s);
                start.elapsed()
            }
            Conn::Unix(mut s) if mode == Mode::Agent(Handshake::TicketEarly) => {
                // The byte went out with the handshake; only its echo is still to come.
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                start.elapsed()
            }
            Conn::Unix(mut s) => {
                ping(&mut s);
                start.elapsed()
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agent_bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/codespace-agent".into());
    let gib = arg(&args, "--gib", 1);
    let connections = arg(&args, "--connections", 2000) as usize;
    let rounds = arg(&args, "--rounds", 9);
    let s = setup(&agent_bin);
    let modes = [Mode::Direct, Mode::Socat, Mode::Agent(Handshake::Ticket)];
    let setup_modes = [
        Mode::Direct,
        Mode::Socat,
        Mode::Agent(Handshake::Full),
        Mode::Agent(Handshake::Ticket),
        Mode::Agent(Handshake::TicketEarly),
    ];
    let bytes = gib << 30;

    // Warm-up (page cache of the binaries, socat's first fork, the agent's first connection).
    for m in modes {
        s.throughput(m, 64 << 20);
    }
    for m in setup_modes {
        for _ in 0..50 {
            s.setup_latency(m);
        }
    }
    *s.open_times.borrow_mut() = [Vec::new(), Vec::new(), Vec::new()];
    let mut gbps: Vec<Vec<f64>> = vec![Vec::new(); 3];
    // CPU seconds the relay process spent per GiB moved (socat: its forked children included).
    let mut relay_cpu = [Duration::ZERO; 3];
    for _ in 0..rounds {
        for (i, m) in modes.iter().enumerate() {
            let pid = match m {
                Mode::Direct => None,
                Mode::Socat => Some(s.socat_sink_pid),
                Mode::Agent(_) => Some(s.agent_pid),
            };
            let before = pid.map(cpu_time);
            let t = s.throughput(*m, bytes);
            if let (Some(pid), Some(before)) = (pid, before) {
                // socat's child is reaped (and counted) a moment after the connection closes.
                std::thread::sleep(Duration::from_millis(50));
                relay_cpu[i] += cpu_time(pid).saturating_sub(before);
            }
            gbps[i].push(bytes as f64 * 8.0 / t.as_secs_f64() / 1e9);
        }
    }
    let mut lat: Vec<Vec<Duration>> = (0..setup_modes.len())
        .map(|_| Vec::with_capacity(connections))
        .collect();
    // Interleaved in blocks so machine load drifts hit all paths alike.
    for _ in 0..connections / 100 {
        for (i, m) in setup_modes.iter().enumerate() {
            for _ in 0..100 {
                lat[i].push(s.setup_latency(*m));
            }
        }
    }
    println!("| path | throughput, {gib} GiB (median of {rounds}) | set-up p50 | set-up p99 |");
    println!("|---|---|---|---|");
    let names = [
        "direct TCP (ceiling)",
        "socat Unix → TCP",
        "agent, full handshake",
        "agent, ticket",
        "agent, ticket + early data",
    ];
    let mut summary = Vec::new();
    for (i, m) in setup_modes.iter().enumerate() {
        lat[i].sort();
        let p50 = percentile(&lat[i], 0.5);
        let p99 = percentile(&lat[i], 0.99);
        let throughput = match modes.iter().position(|x| x == m) {
            Some(_) if rounds == 0 => "(not measured: --rounds 0)".to_owned(),
            Some(t) => {
                let g = median(gbps[t].clone());
                format!(
                    "{:.2} Gbit/s ({:.0} MiB/s)",
                    g,
                    g * 1e9 / 8.0 / (1 << 20) as f64
                )
            }
            None => "(as above)".to_owned(),
        };
        println!(
            "| {} | {throughput} | {} µs | {} µs |",
            names[i],
            p50.as_micros(),
            p99.as_micros()
        );
        summary.push((p50, p99));
    }
    let (direct, socat, agent) = (
        median(gbps[0].clone()),
        median(gbps[1].clone()),
        median(gbps[2].clone()),
    );
    let mut opens = s.open_times.borrow().clone();
    for h in Handshake::ALL {
        let v = &mut opens[h.index()];
        v.sort();
        println!(
            "agent open ({h:?}: dial + handshake + grant + connect + forward_ok) p50 {} µs, p99 {} µs",
            percentile(v, 0.5).as_micros(),
            percentile(v, 0.99).as_micros()
        );
    }
    println!();
    println!(
        "agent / socat throughput: {:.2}x (target >= 1.2x); agent / direct: {:.0}% (target >= 70%); agent set-up p50 {} µs full, {} µs ticket, {} µs ticket + early data (target < 200 µs)",
        agent / socat,
        agent / direct * 100.0,
        summary[2].0.as_micros(),
        summary[3].0.as_micros(),
        summary[4].0.as_micros()
    );
    let best = |i: usize| gbps[i].iter().copied().fold(0.0, f64::max);
    println!(
        "best of {rounds}: direct {:.2}, socat {:.2}, agent {:.2} Gbit/s; agent / socat {:.2}x, agent / direct {:.0}%",
        best(0),
        best(1),
        best(2),
        best(2) / best(1),
        best(2) / best(0) * 100.0
    );
    let per_gib = |i: usize| relay_cpu[i].as_secs_f64() / (rounds * gib) as f64;
    println!(
        "relay CPU per GiB: socat {:.3} s, agent {:.3} s ({:.1}x less)",
        per_gib(1),
        per_gib(2),
        per_gib(1) / per_gib(2).max(1e-9)
    );
    println!(
        "raw throughput runs (Gbit/s): direct {:?}, socat {:?}, agent {:?}",
        gbps[0], gbps[1], gbps[2]
    );
}
