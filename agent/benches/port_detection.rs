//! Port detection cost and latency, idle and under load (1,000 listeners + 10,000 established
//! loopback connections), in one bounded run (< 1 minute). Prints Markdown for
//! `tests/perf/README.md`.
//!
//! ```sh
//! cargo bench -p codespace-agent --bench port_detection            # full run
//! PORT_BENCH_QUICK=1 cargo bench -p codespace-agent --bench port_detection   # fewer trials
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke run with a tiny load.
//!
//! Measured:
//! 1. one sock_diag dump vs one `/proc/net/tcp{,6}` read+parse: CPU time of the calling thread
//!    (`CLOCK_THREAD_CPUTIME_ID`) and wall time, medians;
//! 2. detection latency: a listener is bound at a random moment, the time until the watcher's
//!    `Opened` arrives (and the same for `Closed`), p50/p99/max over many trials, with the
//!    default 150 ms interval;
//! 3. the watcher's CPU cost: the whole process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`) over a
//!    quiet period in which only the watcher runs, as % of one core.
//!
//! The listeners and connections live in this process, so owner resolution scans this
//! process's ~21,000 fds: the worst case for a new listener's latency. Everything is closed
//! before exit; `RLIMIT_NOFILE` is raised for this process only.
// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use codespace_agent::guest::detect::{
    procnet::ProcNet, sock_diag::SockDiag, DetectOptions, Method, PortChange, PortWatcher,
};
use codespace_agent::guest::sandbox::netns::RestrictedSockets;
use rustix::time::{clock_gettime, ClockId};

fn cpu(id: ClockId) -> Duration {
    let t = clock_gettime(id);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Median thread-CPU and wall time of `n` calls.
fn time_it(n: usize, mut f: impl FnMut() -> usize) -> (Duration, Duration, usize) {
    let mut cpus = Vec::with_capacity(n);
    let mut walls = Vec::with_capacity(n);
    let mut found = 0;
    for _ in 0..n {
        let (c0, w0) = (cpu(ClockId::ThreadCPUTime), Instant::now());
        found = f();
        walls.push(w0.elapsed());
        cpus.push(cpu(ClockId::ThreadCPUTime) - c0);
    }
    cpus.sort();
    walls.sort();
    (pct(&cpus, 0.5), pct(&walls, 0.5), found)
}

/// The load: listeners and the client ends of the connections live here; the server ends live
/// in a child process (this binary in "sink" mode), so neither process needs more than ~11,000
/// fds — the hard `RLIMIT_NOFILE` of these machines is 20,000 and raising it needs privilege.
struct Load {
    _listeners: Vec<TcpListener>,
    _conns: Vec<TcpStream>,
    sink: std::process::Child,
}

impl Drop for Load {
    fn drop(&mut self) {
        // Closing its stdin tells the sink to exit; then reap it (our own child).
        drop(self.sink.stdin.take());
        let _ = self.sink.wait();
    }
}

/// Sink mode: accept `n` connections, say so, hold them until stdin closes.
fn sink(n: usize) {
    use std::io::{Read, Write};
    raise_nofile(n as u64 + 256);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "{}", server.local_addr().unwrap().port()).unwrap();
    out.flush().unwrap();
    let held: Vec<TcpStream> = (0..n).map(|_| server.accept().unwrap().0).collect();
    writeln!(out, "ready {}", held.len()).unwrap();
    out.flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let max = cur.maximum.unwrap_or(u64::MAX);
    // Root may raise the hard limit; others get as far as it allows.
    let target = Rlimit {
        current: Some(want),
        maximum: Some(want.max(max)),
    };
    if setrlimit(Resource::Nofile, target).is_ok() {
        return want;
    }
    let soft = want.min(max);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    );
    soft
}

fn make_load(listeners: usize, conns: usize) -> Load {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut ls = Vec::with_capacity(listeners);
    for i in 0..listeners {
        // 4 in 5 IPv4, as in shared/reference/sandbox-ports.md.
        let a = if i % 5 == 4 { "[::1]:0" } else { "127.0.0.1:0" };
        ls.push(TcpListener::bind(a).unwrap());
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("PORT_BENCH_SINK", conns.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let cs: Vec<TcpStream> = (0..conns)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let ready = lines.next().unwrap().unwrap();
    assert_eq!(ready, format!("ready {conns}"));
    Load {
        _listeners: ls,
        _conns: cs,
        sink: child,
    }
}

struct Latency {
    opened: Vec<Duration>,
    closed: Vec<Duration>,
}

/// Binds and closes a listener `trials` times at pseudo-random phases of the poll interval.
async fn latency(
    rx: &mut tokio::sync::mpsc::Receiver<PortChange>,
    trials: usize,
    interval: Duration,
) -> Latency {
    let mut out = Latency {
        opened: vec![],
        closed: vec![],
    };
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let deadline = Duration::from_secs(5);
    for _ in 0..trials {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let phase = Duration::from_micros(x % interval.as_micros() as u64);
        tokio::time::sleep(phase).await;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t0 = Instant::now();
        let wait = async {
            loop {
                match rx.recv().await {
                    Some(PortChange::Opened(s)) if s.port == port => return,
                    Some(_) => {}
                    None => panic!("watcher stopped"),
                }
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .expect("no Opened");
        out.opened.push(t0.elapsed());
        tokio::time::sleep(phase).await;
        drop(l);
        let t0 = Instant::now();
        let wait = async {
            loop {
                match rx.recv().await {
                    Some(PortChange::Closed(s)) if s.port == port => return,
                    Some(_) => {}
                    None => panic!("watcher stopped"),
                }
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .expect("no Closed");
        out.closed.push(t0.elapsed());
    }
    out.opened.sort();
    out.closed.sort();
    out
}

/// Process CPU over `quiet` while only the watcher runs, as % of one core.
async fn watcher_cpu(quiet: Duration) -> f64 {
    let (c0, w0) = (cpu(ClockId::ProcessCPUTime), Instant::now());
    tokio::time::sleep(quiet).await;
    let used = cpu(ClockId::ProcessCPUTime) - c0;
    100.0 * used.as_secs_f64() / w0.elapsed().as_secs_f64()
}

fn watch_opts(method: Method) -> DetectOptions {
    DetectOptions {
        method,
        ignore_pid: None,
        ..DetectOptions::default()
    }
}

struct Row {
    diag: (Duration, Duration, usize),
    proc_: (Duration, Duration, usize),
    lat: Latency,
    cpu_diag: f64,
    cpu_proc: f64,
}

/// How much to measure.
#[derive(Clone, Copy)]
struct Plan {
    dumps: usize,
    reads: usize,
    trials: usize,
    cpu_diag: Duration,
    cpu_proc: Duration,
    settle: Duration,
}

const FULL: Plan = Plan {
    dumps: 300,
    reads: 30,
    trials: 40,
    cpu_diag: Duration::from_secs(10),
    cpu_proc: Duration::from_secs(5),
    settle: Duration::from_secs(1),
};
const QUICK: Plan = Plan {
    dumps: 50,
    reads: 5,
    trials: 10,
    cpu_diag: Duration::from_secs(3),
    cpu_proc: Duration::from_secs(2),
    settle: Duration::from_secs(1),
};
const SMOKE: Plan = Plan {
    dumps: 3,
    reads: 2,
    trials: 2,
    cpu_diag: Duration::from_millis(300),
    cpu_proc: Duration::from_millis(300),
    settle: Duration::from_millis(300),
};

async fn measure(plan: Plan) -> Row {
    let mut sd = SockDiag::open().unwrap();
    let mut pn = ProcNet::new(std::path::Path::new("/proc"));
    let diag = time_it(plan.dumps, || sd.dump().unwrap().len());
    let proc_ = time_it(plan.reads, || pn.read().unwrap().len());
    let (events, _keep) = codespace_agent::guest::service::EventSink::channel(4096);
    let opts = watch_opts(Method::SockDiag);
    let (w, mut rx) = PortWatcher::spawn(&opts, events.clone(), RestrictedSockets::none());
    // Drain the initial set (every listener is new at the first poll).
    tokio::time::sleep(plan.settle).await;
    while rx.try_recv().is_ok() {}
    let lat = latency(&mut rx, plan.trials, opts.poll_interval).await;
    let cpu_diag = watcher_cpu(plan.cpu_diag).await;
    drop(w);
    let (w, rx) = PortWatcher::spawn(
        &watch_opts(Method::ProcNet),
        events,
        RestrictedSockets::none(),
    );
    tokio::time::sleep(plan.settle).await;
    drop(rx);
    let cpu_proc = watcher_cpu(plan.cpu_proc).await;
    drop(w);
    Row {
        diag,
        proc_,
        lat,
        cpu_diag,
        cpu_proc,
    }
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: a smoke run with a small
    // load, so the test suite checks that the benchmark works without paying for it.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let plan = if smoke {
        SMOKE
    } else if std::env::var_os("PORT_BENCH_QUICK").is_some() {
        QUICK
    } else {
        FULL
    };
    if let Some(n) = std::env::var_os("PORT_BENCH_SINK") {
        return sink(n.to_str().and_then(|s| s.parse().ok()).unwrap_or(0));
    }
    let (listeners, conns) = if smoke { (20, 50) } else { (1_000, 10_000) };
    let limit = raise_nofile((listeners + conns + 512) as u64);
    assert!(
        limit as usize >= listeners + conns + 512,
        "RLIMIT_NOFILE {limit} is too low for the load"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idle = rt.block_on(measure(plan));
    let t = Instant::now();
    let load = make_load(listeners, conns);
    eprintln!(
        "load: {listeners} listeners + {conns} established connections in {:?}",
        t.elapsed()
    );
    let loaded = rt.block_on(measure(plan));
    drop(load);

    println!("| | idle | loaded ({listeners} listeners + {conns} established) |");
    println!("|---|---|---|");
    let r = [&idle, &loaded];
    println!(
        "| sock_diag dump, CPU / wall (median) | {:.3} / {:.3} ms | {:.3} / {:.3} ms |",
        ms(r[0].diag.0),
        ms(r[0].diag.1),
        ms(r[1].diag.0),
        ms(r[1].diag.1)
    );
    println!(
        "| /proc/net/tcp{{,6}} read+parse, CPU / wall (median) | {:.3} / {:.3} ms | {:.3} / {:.3} ms |",
        ms(r[0].proc_.0), ms(r[0].proc_.1), ms(r[1].proc_.0), ms(r[1].proc_.1)
    );
    println!(
        "| listeners found (sock_diag / procnet) | {} / {} | {} / {} |",
        r[0].diag.2, r[0].proc_.2, r[1].diag.2, r[1].proc_.2
    );
    for (name, pick) in [("opened", 0), ("closed", 1)] {
        let v = |x: &Row| {
            if pick == 0 {
                x.lat.opened.clone()
            } else {
                x.lat.closed.clone()
            }
        };
        let (a, b) = (v(r[0]), v(r[1]));
        println!(
            "| latency listen→`{name}` p50 / p99 / max ({} trials) | {:.0} / {:.0} / {:.0} ms | {:.0} / {:.0} / {:.0} ms |",
            a.len(),
            ms(pct(&a, 0.5)), ms(pct(&a, 0.99)), ms(a[a.len() - 1]),
            ms(pct(&b, 0.5)), ms(pct(&b, 0.99)), ms(b[b.len() - 1])
        );
    }
    println!(
        "| watcher CPU, sock_diag every 150 ms (% of one core) | {:.3} % | {:.3} % |",
        r[0].cpu_diag, r[1].cpu_diag
    );
    println!(
        "| watcher CPU, procnet every 150 ms (% of one core) | {:.3} % | {:.3} % |",
        r[0].cpu_proc, r[1].cpu_proc
    );
    println!();
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
