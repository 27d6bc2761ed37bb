//! Port detection with real listeners on loopback: the library (`scan`, `PortWatcher`) with both
//! sources, and the real `codespace-agent` binary pushing `port_opened` / `port_closed` events.
//! Waits are bounded; nothing here asserts on timing (numbers live in the benchmark).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::net::{IpAddr, TcpListener};
use std::time::Duration;

use codespace_agent::guest::detect::{
    scan, BindScope, DetectOptions, ListeningSocket, Method, PortChange, PortWatcher,
};
use codespace_agent::guest::sandbox::netns::RestrictedSockets;
use serde_json::{json, Map};

/// The tests of this file take turns: a test that spawns the agent forks this process, and until
/// the child execs it holds copies of every socket, so a concurrent scan could rightly name the
/// fork as a listener's owner (seen in CI).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three listeners: loopback v4, loopback v6, all interfaces v4.
fn listeners() -> Vec<TcpListener> {
    ["127.0.0.1:0", "[::1]:0", "0.0.0.0:0"]
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect()
}

fn find(found: &[ListeningSocket], l: &TcpListener) -> Option<ListeningSocket> {
    let a = l.local_addr().unwrap();
    found
        .iter()
        .find(|s| s.port == a.port() && s.addr == a.ip())
        .cloned()
}

fn opts(method: Method) -> DetectOptions {
    DetectOptions {
        method,
        poll_interval: Duration::from_millis(25),
        ignore_pid: None,
        ..DetectOptions::default()
    }
}

#[test]
fn scan_finds_listeners_with_scope_and_owner_by_both_methods() {
    let _turn = SERIAL.blocking_lock();
    let ls = listeners();
    let me = std::process::id();
    for method in [Method::SockDiag, Method::ProcNet] {
        let found = scan(&opts(method)).unwrap();
        let want = [
            BindScope::Loopback,
            BindScope::Loopback,
            BindScope::AllInterfaces,
        ];
        for (l, scope) in ls.iter().zip(want) {
            let s = find(&found, l).unwrap_or_else(|| panic!("{method:?}: {l:?} not in {found:?}"));
            assert_eq!(s.scope, scope, "{method:?} {s:?}");
            assert_eq!(s.pid, Some(me), "{method:?} {s:?}");
            assert!(s.process.is_some(), "{s:?}");
            assert_eq!(s.uid, rustix::process::geteuid().as_raw());
        }
    }
    // Ignoring a port or our own pid hides the sockets.
    let port = ls[0].local_addr().unwrap().port();
    let mut o = opts(Method::Auto);
    o.ignore_ports.insert(port);
    assert!(find(&scan(&o).unwrap(), &ls[0]).is_none());
    let o = DetectOptions {
        ignore_pid: Some(me),
        ..opts(Method::Auto)
    };
    let found = scan(&o).unwrap();
    assert!(ls.iter().all(|l| find(&found, l).is_none()));
}

async fn next_change(
    rx: &mut tokio::sync::mpsc::Receiver<PortChange>,
    pred: impl Fn(&PortChange) -> bool,
) -> PortChange {
    let fut = async {
        loop {
            let c = rx.recv().await.expect("watcher channel closed");
            if pred(&c) {
                return c;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("no matching change within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_opened_then_closed_for_both_methods() {
    let _turn = SERIAL.lock().await;
    for method in [Method::SockDiag, Method::ProcNet] {
        let (events, _keep) = codespace_agent::guest::service::EventSink::channel(1024);
        let (w, mut rx) = PortWatcher::spawn(&opts(method), events, RestrictedSockets::none());
        let ls = listeners();
        // Changes of one poll come in address order, not bind order: collect them as a set.
        let mut want: Vec<std::net::SocketAddr> =
            ls.iter().map(|l| l.local_addr().unwrap()).collect();
        while !want.is_empty() {
            let c = next_change(&mut rx, |c| matches!(c, PortChange::Opened(_))).await;
            let s = c.socket();
            if let Some(i) = want
                .iter()
                .position(|a| a.port() == s.port && a.ip() == s.addr)
            {
                assert_eq!(s.pid, Some(std::process::id()));
                want.remove(i);
            }
        }
        let a = ls[1].local_addr().unwrap();
        drop(ls);
        next_change(
            &mut rx,
            |c| matches!(c, PortChange::Closed(s) if s.port == a.port() && s.addr == a.ip()),
        )
        .await;
        let st = w.status();
        let name = if method == Method::SockDiag {
            "sock_diag"
        } else {
            "procnet"
        };
        assert_eq!(st.method, name);
        assert_eq!(st.last_error, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pushes_port_events_and_reports_detection_in_status() {
    let _turn = SERIAL.lock().await;
    let agent = support::Agent::start(r#""detect": {"poll_interval_ms": 50}"#);
    let client = agent.client().await;
    let st = client
        .request("status", Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        ["sock_diag", "procnet", "none"].contains(&st["detection"]["method"].as_str().unwrap()),
        "{st}"
    );
    assert_eq!(
        st["firewall"],
        json!({"enabled": false, "applied": false, "table": "codespace_agent"})
    );

    let ls = listeners();
    let me = std::process::id();
    let mut want: Vec<(u16, IpAddr, &str)> = ls
        .iter()
        .zip(["loopback", "loopback", "all"])
        .map(|(l, scope)| {
            (
                l.local_addr().unwrap().port(),
                l.local_addr().unwrap().ip(),
                scope,
            )
        })
        .collect();
    let wait = async {
        while !want.is_empty() {
            let e = client.next_event().await.expect("connection closed");
            if e.name != "port_opened" {
                continue;
            }
            let port = e.fields["port"].as_u64().unwrap() as u16;
            let addr: IpAddr = e.fields["address"].as_str().unwrap().parse().unwrap();
            if let Some(i) = want.iter().position(|w| w.0 == port && w.1 == addr) {
                assert_eq!(e.fields["scope"], want[i].2, "{e:?}");
                assert_eq!(e.fields["pid"], me, "{e:?}");
                assert!(e.fields["process"].is_string(), "{e:?}");
                want.remove(i);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("port_opened missing; log:\n{}", agent.log()));

    let closed = ls[2].local_addr().unwrap().port();
    drop(ls);
    let wait = async {
        loop {
            let e = client.next_event().await.expect("connection closed");
            if e.name == "port_closed" && e.fields["port"] == closed {
                assert_eq!(e.fields["scope"], "all");
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("port_closed missing; log:\n{}", agent.log()));

    let st = client
        .request("status", Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    let d = &st["detection"];
    assert!(d["scans"].as_u64().unwrap() >= 2, "{st}");
    assert!(
        d["last_scan_us"].is_u64() && d["listeners"].is_u64(),
        "{st}"
    );
    // The agent's own listener (a unix socket here) and its own TCP sockets are never reported;
    // nothing of ours is left open.
    assert_eq!(d["last_error"], serde_json::Value::Null);
}

/// The firewall is a second layer: an agent whose `nft` cannot run still serves, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_nft_starts_and_reports_the_firewall_error() {
    let _turn = SERIAL.lock().await;
    let agent =
        support::Agent::start(r#""firewall": {"enabled": true, "nft": "/nonexistent/nft"}"#);
    let client = agent.client().await;
    let st = client
        .request("status", Map::new(), Duration::from_secs(10))
        .await
        .unwrap();
    let fw = &st["firewall"];
    assert_eq!(
        (fw["enabled"].clone(), fw["applied"].clone()),
        (json!(true), json!(false)),
        "{st}"
    );
    assert!(
        fw["error"].as_str().unwrap().contains("/nonexistent/nft"),
        "{st}"
    );
    assert!(
        agent.log().contains("firewall NOT applied"),
        "{}",
        agent.log()
    );
}
