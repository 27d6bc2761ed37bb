//! Many clients, slow clients, concurrency.

use std::time::Duration;

use serde_json::{json, Map};

use crate::support::{Agent, Raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_hold_up_the_others() {
    let agent = Agent::start("\"heartbeat_interval_s\": 1");
    // One client stalls mid-handshake, one mid-frame, one never reads what it is sent.
    let mut stalled_handshake = Raw::connect(&agent).await;
    stalled_handshake.send_bytes(&[0, 0, 0, 50, b'{']).await;
    let mut stalled_frame = Raw::handshake(&agent).await;
    stalled_frame.send_bytes(&[0, 0, 1, 0, b'{']).await;
    let mut not_reading = Raw::handshake(&agent).await;
    for id in 0..200u64 {
        not_reading.send(json!({"id": id, "type": "status"})).await;
    }
    // Meanwhile others are served, repeatedly.
    let c = agent.client().await;
    for _ in 0..20 {
        let r = c
            .request("ping", Map::new(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r["pong"], true);
    }
    let out = agent.ctl(&["status"]);
    assert!(out.status.success());
    drop((stalled_handshake, stalled_frame, not_reading));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients() {
    let agent = Agent::start("");
    let opts = agent.options();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let c = codespace_agent::host::Client::connect(&opts).await?;
            c.request("ping", Map::new(), Duration::from_secs(30)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) if v["pong"] == true => ok += 1,
            other => panic!("client failed: {other:?}"),
        }
    }
    assert_eq!(ok, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_on_one_connection() {
    let agent = Agent::start("\"max_requests_per_connection\": 64");
    let c = std::sync::Arc::new(agent.client().await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let kind = if i % 2 == 0 { "ping" } else { "status" };
        tasks.push(tokio::spawn(async move {
            c.request(kind, Map::new(), Duration::from_secs(10)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn heartbeat_events_carry_metrics() {
    let agent = Agent::start("\"heartbeat_interval_s\": 1");
    let c = agent.client().await;
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = c.next_event().await.unwrap();
            if ev.name == "heartbeat" {
                return ev;
            }
        }
    })
    .await
    .unwrap();
    for k in [
        "cpu_percent",
        "memory_total_bytes",
        "memory_used_bytes",
        "load",
        "uptime_s",
        "disk",
        "agent_rss_bytes",
        "agent_cpu_percent",
    ] {
        assert!(
            ev.fields.contains_key(k),
            "heartbeat lacks {k}: {:?}",
            ev.fields
        );
    }
}

/// Issue 18: with nobody active, `idle_warning` then `idle` reach the host at their deadlines,
/// and `status` says since when and why. (The terminals are an empty folder here: a developer
/// typing on the test machine must not count.)
#[tokio::test]
async fn idle_reaches_the_host_at_its_deadline() {
    let terminals = tempfile::tempdir().unwrap();
    let agent = Agent::start(&format!(
        r#""idle": {{"timeout_s": 3, "warn_s": 1, "terminals": "{}"}}"#,
        terminals.path().display()
    ));
    let c = agent.client().await;
    let started = std::time::Instant::now();
    let status = c
        .request("status", serde_json::Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(status["activity"]["source"], "start", "{status}");
    assert_eq!(status["activity"]["timeout_s"], 3, "{status}");
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = c.next_event().await.unwrap();
            if ev.name == "idle_warning" || ev.name == "idle" {
                seen.push((ev.name.clone(), started.elapsed(), ev.fields));
                if ev.name == "idle" {
                    break;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no idle event in 10 s: {seen:?}\n{}", agent.log()));
    let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["idle_warning", "idle"], "{seen:?}");
    let (_, at, fields) = &seen[1];
    // Within a second of the 3 s timeout (the agent started a moment before `started`).
    assert!(*at < Duration::from_secs(4), "idle after {at:?}");
    assert_eq!(fields["source"], "start", "{fields:?}");
    let status = c
        .request("status", serde_json::Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(status["activity"]["idle"], true, "{status}");
    // The host says the web editor is in use: the clock restarts, and idle is not reported
    // again before its new deadline.
    let out = agent.ctl(&["activity"]);
    let state = crate::support::json_out(&out);
    assert_eq!(state["source"], "host", "{state}");
    assert_eq!(state["idle"], false, "{state}");
    let again = std::time::Instant::now();
    let warned = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = c.next_event().await.unwrap();
            if ev.name == "idle_warning" {
                return again.elapsed();
            }
        }
    })
    .await
    .unwrap();
    assert!(
        warned >= Duration::from_millis(1500),
        "warned {warned:?} after activity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_handle_survives_an_agent_restart() {
    use codespace_agent::host::{ConnectAddr, Reconnecting};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("vm.sock");
    let mut first = Agent::start("");
    std::os::unix::fs::symlink(first.socket(), &link).unwrap();
    let mut opts = first.options();
    opts.addr = ConnectAddr::Unix(link.clone());
    let handle = Reconnecting::new(opts);
    let boot = handle.client().await.unwrap().info().clone();
    assert_eq!(
        handle
            .request("ping", Map::new(), Duration::from_secs(5))
            .await
            .unwrap()["pong"],
        true
    );
    // The "VM" restarts: the old agent goes away, a new one listens behind the same address.
    assert_eq!(
        tokio::task::block_in_place(|| first.terminate()).code(),
        Some(0)
    );
    let second = Agent::start("");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(second.socket(), &link).unwrap();
    // A request on the broken connection fails; the next one dials again.
    let mut answered = None;
    for _ in 0..3 {
        if let Ok(v) = handle
            .request("ping", Map::new(), Duration::from_secs(5))
            .await
        {
            answered = Some(v);
            break;
        }
    }
    assert_eq!(answered.unwrap()["pong"], true);
    let now = handle.client().await.unwrap().info().clone();
    assert_eq!(now.boot_id, boot.boot_id, "same kernel, same boot id");
    assert!(now.authenticated);
}
