//! A process in the VM that opens thousands of listening sockets must not blind the host: the
//! real `codespace-agent` on a Unix socket detects [`LISTENERS`] listeners on loopback, opened
//! by this test, and `ports_list` through the real host client still answers.
//!
//! Its own test binary: while the listeners are open every agent on the machine sees them, so
//! the tests of another file running beside them would list thousands of ports they did not
//! open.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use support::Agent;

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
        let list = c
            .request("ports_list", Map::new(), REQUEST)
            .await
            .unwrap_or_else(|e| panic!("ports_list failed: {e}"));
        let found = ports_of(&list);
        let missing = ours.difference(&found).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {LISTENERS} listeners still not listed after {DETECTION:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(listeners);
}
