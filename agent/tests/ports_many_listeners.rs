//! A process in the VM that opens thousands of listening sockets must not blind the host: the
//! real `codespace-agent` on a Unix socket detects [`LISTENERS`] listeners on loopback, opened
//! by this test, and `ports_list` still answers, in pages, through the real host client and
//! `codespace-agentctl ports list`.
//!
//! Its own test binary: while the listeners are open every agent on the machine sees them, so
//! the tests of another file running beside them would list thousands of ports they did not
//! open.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use codespace_agent::guest::ports::page::MAX_PAGE_PORTS;
use codespace_agent::host::ports::{list_all, list_page};
use codespace_agent::wire::DEFAULT_MAX_FRAME;
use serde_json::{Map, Value};

use support::{json_out, Agent};

/// How many listeners the attacker opens (each on its own port).
const LISTENERS: usize = 6_000;
/// How long detection of all of them may take (it usually takes well under a second).
const DETECTION: Duration = Duration::from_secs(60);
const REQUEST: Duration = Duration::from_secs(20);

/// Raises this process's open-file limit to fit `need` more descriptors (the agent it spawns
/// inherits it; it needs few).
fn raise_nofile(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let want = need + 1024;
    let hard = l.maximum.map(|m| m.max(want));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .unwrap_or_else(|e| panic!("cannot raise RLIMIT_NOFILE to {hard:?} ({l:?}): {e}"));
}

fn ports_of(list: &Value) -> BTreeSet<u16> {
    list["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| u16::try_from(p["port"].as_u64().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn thousands_of_listeners_do_not_break_ports_list() {
    raise_nofile(LISTENERS as u64);
    let listeners: Vec<TcpListener> = (0..LISTENERS)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ours: BTreeSet<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    assert_eq!(ours.len(), LISTENERS);

    let agent = Agent::start(r#""detect": {"poll_interval_ms": 50}"#);
    let c = agent.client().await;
    let deadline = Instant::now() + DETECTION;
    loop {
        let all = list_all(&c, REQUEST)
            .await
            .unwrap_or_else(|e| panic!("ports_list failed: {e}"));
        let missing = ours.difference(&ports_of(&all)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {LISTENERS} listeners still not listed after {DETECTION:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A host that knows nothing of pages gets the first one, told that more follow.
    let first = c.request("ports_list", Map::new(), REQUEST).await.unwrap();
    assert_eq!(first["ports"].as_array().unwrap().len(), MAX_PAGE_PORTS);
    assert_eq!(first["more"], true);

    // Page by page: every port once, in order, each page well under a frame.
    let (mut seen, mut after, mut pages, mut largest) = (Vec::new(), None, 0, 0);
    loop {
        let page = list_page(&c, after, None, REQUEST).await.unwrap();
        pages += 1;
        largest = largest.max(serde_json::to_vec(&page).unwrap().len());
        seen.extend(ports_of(&page));
        if page["more"] == false {
            break;
        }
        after = Some(u16::try_from(page["next_after"].as_u64().unwrap()).unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in port order, once");
    assert!(ours.is_subset(&seen.iter().copied().collect()));
    assert!(pages >= LISTENERS / MAX_PAGE_PORTS, "{pages} pages");
    assert!(
        largest < DEFAULT_MAX_FRAME / 2,
        "largest page {largest} bytes"
    );
    eprintln!("{LISTENERS} listeners: {pages} pages of at most {MAX_PAGE_PORTS} ports, largest {largest} bytes");

    // The CLI fetches every page, or the one asked for.
    let all = json_out(&agent.ctl(&["ports", "list"]));
    assert!(ours.is_subset(&ports_of(&all)));
    assert_eq!(all["more"], false);
    let start = *ours.first().unwrap();
    let one = json_out(&agent.ctl(&[
        "ports",
        "list",
        "--after",
        &start.to_string(),
        "--limit",
        "3",
    ]));
    assert_eq!(one["ports"].as_array().unwrap().len(), 3, "{one}");
    assert_eq!(one["more"], true);
    assert!(ports_of(&one).iter().all(|p| *p > start), "{one}");
    drop(listeners);
}
