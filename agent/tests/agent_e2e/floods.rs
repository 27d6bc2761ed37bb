//! Connection and request floods (issue 16, part 4): idle unauthenticated connections must not
//! keep the host out, a client beyond capacity hears `busy` at once, and a pipelined `status`
//! flood stays within a bounded number of threads and memory.

use std::time::{Duration, Instant};

use serde_json::{json, Map};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use codespace_agent::wire::io::{read_frame, write_object};
use codespace_agent::wire::FrameCodec;

use crate::support::{Agent, Raw};

/// `Threads`, `VmRSS` and `RssAnon` (KiB) of a process, from `/proc/PID/status`. `VmRSS` also
/// counts the pages of the (debug, large) binary that ran; `RssAnon` is the heap and stacks.
fn threads_and_rss(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"), field("RssAnon:"))
}

/// The next frame of a connection that is expected to be an immediate `busy` refusal.
async fn expect_busy(raw: &mut Raw, within: Duration) -> Duration {
    let started = Instant::now();
    let frame = tokio::time::timeout(within, read_frame(&mut raw.stream, &raw.codec))
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"))
        .unwrap()
        .expect("the agent closed without a word");
    assert_eq!(frame.object["type"], "error", "{:?}", frame.object);
    assert_eq!(frame.object["error"]["code"], "busy", "{:?}", frame.object);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_keep_the_host_out() {
    let agent = Agent::start("");
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(UnixStream::connect(agent.socket()).await.unwrap());
    }
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let c = agent.client().await;
        c.request("ping", Map::new(), Duration::from_secs(10)).await
    })
    .await;
    let latency = started.elapsed();
    eprintln!("ping under 1000 idle connections: {latency:?}");
    let pong = answered.unwrap_or_else(|_| panic!("no ping answer within 10 s"));
    assert_eq!(pong.unwrap()["pong"], true);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_capacity_a_client_hears_busy_at_once() {
    let agent = Agent::start("\"max_connections\": 2, \"max_handshakes\": 2");
    // Established connections fill the capacity: the next one is refused before its hello.
    let _a = Raw::handshake(&agent).await;
    let _b = Raw::handshake(&agent).await;
    let mut late = Raw::connect(&agent).await;
    let took = expect_busy(&mut late, Duration::from_secs(2)).await;
    eprintln!("busy beyond max_connections after {took:?}");
    drop((_a, _b));

    // Connections still in the handshake have a budget of their own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _idle1 = Raw::connect(&agent).await;
    let _idle2 = Raw::connect(&agent).await;
    let mut third = Raw::connect(&agent).await;
    let took = expect_busy(&mut third, Duration::from_secs(2)).await;
    eprintln!("busy beyond max_handshakes after {took:?}");
}

const FLOOD_CONNECTIONS: usize = 60;
const FLOOD_REQUESTS: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_flood_stays_within_bounded_threads_and_memory() {
    // A short heartbeat: freed memory goes back at each tick.
    let agent = Agent::start("\"max_connections\": 64, \"heartbeat_interval_s\": 1");
    let pid = agent.child.as_ref().unwrap().id();
    let (threads0, rss0, anon0) = threads_and_rss(pid);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut threads, mut rss, mut anon) = (0, 0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (t, r, a) = threads_and_rss(pid);
                threads = threads.max(t);
                rss = rss.max(r);
                anon = anon.max(a);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (threads, rss, anon)
        })
    };
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        let raw = Raw::handshake(&agent).await;
        clients.push(tokio::spawn(async move {
            let (mut rd, mut wr) = raw.stream.into_split();
            let writer = tokio::spawn(async move {
                let codec = FrameCodec::default();
                let mut buf = Vec::new();
                for id in 0..FLOOD_REQUESTS {
                    let m: Map<String, serde_json::Value> = json!({"id": id, "type": "status"})
                        .as_object()
                        .cloned()
                        .unwrap();
                    write_object(&mut buf, &codec, &m).await.unwrap();
                }
                wr.write_all(&buf).await.unwrap();
                wr
            });
            let codec = FrameCodec::new(1 << 20);
            let (mut answers, mut busy) = (0u64, 0u64);
            while answers < FLOOD_REQUESTS {
                let Ok(Some(f)) = read_frame(&mut rd, &codec).await else {
                    break;
                };
                if f.object.contains_key("id") {
                    answers += 1;
                    if f.object.get("error").is_some_and(|e| e["code"] == "busy") {
                        busy += 1;
                    }
                }
            }
            drop(writer.await.unwrap());
            (answers, busy)
        }));
    }
    let (mut answers, mut busy) = (0, 0);
    for c in clients {
        let (a, b) = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("flood did not finish in 120 s")
            .unwrap();
        answers += a;
        busy += b;
    }
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (max_threads, max_rss, max_anon) = sampler.await.unwrap();
    // Idle blocking threads leave after their keep-alive (2 s), and the heartbeat's tick gives
    // the freed heap back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (threads1, rss1, anon1) = threads_and_rss(pid);
    eprintln!(
        "status flood {FLOOD_CONNECTIONS}x{FLOOD_REQUESTS}: {answers} answers ({busy} busy) in \
         {elapsed:?}; threads {threads0} -> max {max_threads} -> {threads1}; \
         RSS {rss0} KiB -> max {max_rss} KiB -> {rss1} KiB after 3 s; \
         anonymous {anon0} KiB -> max {max_anon} KiB -> {anon1} KiB"
    );
    assert_eq!(answers, FLOOD_CONNECTIONS as u64 * FLOOD_REQUESTS);
    assert!(max_threads < 64, "{max_threads} threads during the flood");
    // The heap and stacks (not the binary's pages, which a debug build has many of) stay under
    // 32 MiB, and most of it goes back afterwards (measured: 1 -> 23 -> 4 MiB).
    assert!(max_anon < 32 << 10, "{max_anon} KiB anonymous memory");
    assert!(
        anon1 < 16 << 10,
        "{anon1} KiB anonymous memory kept after the flood"
    );
}
