//! Forward tickets end to end: the real `codespace-agent` on a Unix socket with a shared key,
//! tickets fetched over the control connection, forward connections that authenticate in one
//! flight (and carry early data), replays, forged proofs and tickets of another agent boot.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::time::Duration;

use codespace_agent::host::forward::{
    mint, open, open_with, port_epoch, put_grant_key, ForwardError, ForwardStream,
};
use codespace_agent::host::tickets::{open_ticketed, TicketPool};
use codespace_agent::host::Client;
use codespace_agent::wire::grant::{GrantKey, GrantPrincipal, SignedGrant};
use codespace_agent::wire::message::ForwardHello;
use codespace_agent::wire::ticket::{host_start_ticket, ForwardTicket};
use codespace_agent::wire::{FrameCodec, SharedKey};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{Agent, Raw, KEY};

const GRANT_KEY: [u8; 32] = [0x24; 32];
const CODESPACE: &str = r#""codespace": {"owner": "mona"}, "detect": {"poll_interval_ms": 50}"#;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A control client with the grant key installed, and the port's epoch once it is detected.
async fn control(agent: &Agent, port: u16) -> (Client, u64) {
    let c = agent.client().await;
    let t = Duration::from_secs(5);
    put_grant_key(&c, &GRANT_KEY, t).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = port_epoch(&c, port, t).await.unwrap() {
            return (c, e);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} not detected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn grant(port: u16, epoch: u64) -> SignedGrant {
    mint(
        &GrantKey::new(&GRANT_KEY).unwrap(),
        port,
        epoch,
        Some(GrantPrincipal {
            login: "mona".into(),
            organizations: vec![],
            authenticated_at: now() - 10,
        }),
        now(),
        Duration::from_secs(600),
    )
}

async fn tickets(c: &Client, count: u64) -> Vec<ForwardTicket> {
    let mut f = Map::new();
    f.insert("count".into(), count.into());
    let answer = c
        .request("forward_tickets", f, Duration::from_secs(5))
        .await
        .unwrap();
    answer["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ForwardTicket::from_base64(t.as_str().unwrap()).unwrap())
        .collect()
}

/// An echo server: echoes until end of stream, then closes.
async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

async fn echo(s: &mut ForwardStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).await.unwrap();
    back
}

fn reason(
    r: Result<(ForwardStream, codespace_agent::host::forward::Accepted), ForwardError>,
) -> String {
    match r {
        Ok(_) => panic!("the forward connection was accepted"),
        Err(e) => e
            .reason()
            .unwrap_or_else(|| panic!("not a refusal: {e}"))
            .to_owned(),
    }
}

/// The first flight of a ticket connection, as raw bytes.
fn flight(port: u16, g: &SignedGrant, ticket: &ForwardTicket, key: &[u8]) -> Vec<u8> {
    let codec = FrameCodec::default();
    let hello = ForwardHello {
        port,
        grant: serde_json::to_value(g).unwrap(),
        ticket: None,
    };
    let (_, hello, auth) = host_start_ticket(hello, ticket, SharedKey::new(key).unwrap(), [7; 32]);
    let mut out = codec.encode_payload(&hello).unwrap();
    out.extend(codec.encode_payload(&auth).unwrap());
    out
}

/// The frame types (and refusal reason) the agent answers a raw first flight with.
async fn answer_to(agent: &Agent, bytes: &[u8]) -> Vec<String> {
    let mut raw = Raw::connect(agent).await;
    raw.send_bytes(bytes).await;
    let mut seen = Vec::new();
    while let Some(f) = raw.next().await {
        let kind = f.object["type"].as_str().unwrap_or("?").to_owned();
        match f.object.get("reason").and_then(Value::as_str) {
            Some(r) => seen.push(format!("{kind}:{r}")),
            None => seen.push(kind),
        }
        if seen.last().is_some_and(|k| k == "forward_ok") {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn a_ticket_opens_in_one_flight_and_early_data_arrives_first() {
    let port = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let (c, epoch) = control(&agent, port).await;
    let t = tickets(&c, 2).await;
    let g = grant(port, epoch);
    let (mut s, accepted) = open_with(&agent.options(), port, &g, Some(&t[0]), b"early ")
        .await
        .unwrap();
    assert_eq!(accepted.port, port);
    let mut first = [0u8; 6];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(
        &first, b"early ",
        "early data went through before forward_ok was read"
    );
    assert_eq!(echo(&mut s, b"then more").await, b"then more");
    // Without early data, and without a ticket (the full handshake) both still work.
    let (mut s, _) = open_with(&agent.options(), port, &g, Some(&t[1]), b"")
        .await
        .unwrap();
    assert_eq!(echo(&mut s, b"ticket").await, b"ticket");
    let (mut s, _) = open(&agent.options(), port, &g).await.unwrap();
    assert_eq!(echo(&mut s, b"full").await, b"full");
}

#[tokio::test]
async fn a_replayed_first_flight_is_refused() {
    let port = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let (c, epoch) = control(&agent, port).await;
    let t = tickets(&c, 1).await;
    let bytes = flight(port, &grant(port, epoch), &t[0], KEY);
    assert_eq!(
        answer_to(&agent, &bytes).await,
        ["welcome", "ok", "forward_ok"]
    );
    // The same bytes again, as an eavesdropper would replay them.
    assert_eq!(
        answer_to(&agent, &bytes).await,
        ["welcome", "ok", "error:ticket-unknown"]
    );
}

#[tokio::test]
async fn a_forged_proof_is_refused_and_does_not_use_the_ticket_up() {
    let port = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let (c, epoch) = control(&agent, port).await;
    let t = tickets(&c, 1).await;
    let g = grant(port, epoch);
    let forged = flight(port, &g, &t[0], b"not-the-shared-key-but-32-bytes-long!!");
    assert_eq!(answer_to(&agent, &forged).await, ["error:ticket-forged"]);
    // A made-up ticket with a valid proof is unknown.
    let made_up = ForwardTicket::from_bytes([1; 32]);
    assert_eq!(
        reason(open_with(&agent.options(), port, &g, Some(&made_up), b"").await),
        "ticket-unknown"
    );
    let (mut s, _) = open_with(&agent.options(), port, &g, Some(&t[0]), b"")
        .await
        .unwrap();
    assert_eq!(echo(&mut s, b"still good").await, b"still good");
}

#[tokio::test]
async fn tickets_of_an_earlier_agent_boot_are_unknown_and_the_host_falls_back() {
    let port = echo_server().await;
    let first = Agent::start(CODESPACE);
    let (c1, _) = control(&first, port).await;
    let old = tickets(&c1, 1).await;
    let pool = TicketPool::new(8);
    assert_eq!(pool.refill(&c1).await.unwrap(), 8);
    drop(c1);
    drop(first);
    // A new agent process (same shared key): its store started empty.
    let agent = Agent::start(CODESPACE);
    let (c, epoch) = control(&agent, port).await;
    let g = grant(port, epoch);
    assert_eq!(
        reason(open_with(&agent.options(), port, &g, Some(&old[0]), b"").await),
        "ticket-unknown"
    );
    // The host's pool still holds the old boot's tickets: `open_ticketed` falls back to the
    // full handshake (early data included) and empties the pool; the next connection fetches
    // a fresh batch.
    let (mut s, _) = open_ticketed(&agent.options(), &c, &pool, port, &g, b"x")
        .await
        .unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"x");
    assert!(pool.is_empty());
    let (mut s, _) = open_ticketed(&agent.options(), &c, &pool, port, &g, b"")
        .await
        .unwrap();
    assert_eq!(echo(&mut s, b"fresh").await, b"fresh");
    assert_eq!(pool.len(), 7, "one batch of 8 fetched, one used");
}

#[tokio::test]
async fn outstanding_tickets_are_bounded_per_agent() {
    let port = echo_server().await;
    let agent = Agent::start(CODESPACE);
    let (c, epoch) = control(&agent, port).await;
    let mut f = Map::new();
    f.insert("count".into(), json!(257));
    let err = c
        .request("forward_tickets", f, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
    let oldest = tickets(&c, 256).await;
    for _ in 0..4 {
        tickets(&c, 256).await;
    }
    // 1280 issued, at most 1024 outstanding: the oldest batch is forgotten.
    let g = grant(port, epoch);
    assert_eq!(
        reason(open_with(&agent.options(), port, &g, Some(&oldest[0]), b"").await),
        "ticket-unknown"
    );
}
