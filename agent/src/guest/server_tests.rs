//! Unit tests of the server: requests by id, the handshake's refusals and timeout, events,
//! stop (over in-memory duplex streams).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::guest::config::CodespaceIdentity;
use crate::guest::dispatch::AgentFacts;
use crate::guest::health::HealthSampler;
use crate::wire::handshake::host_start;
use crate::wire::io::RawFrame;
use std::path::Path;
use std::time::Instant;
use tokio::io::{AsyncWriteExt, DuplexStream};

fn server(key: Option<SharedKey>) -> (Server, EventSink) {
    let settings = ServerSettings {
        max_frame_bytes: 4096,
        max_connections: 4,
        max_handshakes: 4,
        max_requests_per_connection: 2,
        handshake_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(1),
        allowed_cids: vec![2],
    };
    let facts = AgentFacts {
        agent_id: "a".into(),
        boot_id: "b".into(),
        started: Instant::now(),
    };
    let health = Arc::new(HealthSampler::new(Path::new("/")));
    let d = Arc::new(Dispatcher::new(
        facts,
        None,
        CodespaceIdentity::default(),
        health,
    ));
    let identity = AgentIdentity {
        agent_id: "a".into(),
        boot_id: "b".into(),
        capabilities: d.capabilities(),
        public_key: [3; 32],
    };
    let (events, _) = EventSink::channel(16);
    (
        Server::new(settings, identity, key, d, events.clone()),
        events,
    )
}

fn start(
    key: Option<SharedKey>,
) -> (
    DuplexStream,
    watch::Sender<bool>,
    EventSink,
    tokio::task::JoinHandle<()>,
) {
    let (s, events) = server(key);
    let (client, agent) = tokio::io::duplex(1 << 16);
    let (tx, rx) = watch::channel(false);
    let h = tokio::spawn(async move { s.serve_connection(agent, Peer::Unix, rx).await });
    (client, tx, events, h)
}

async fn next(c: &mut DuplexStream) -> RawFrame {
    read_frame(c, &FrameCodec::new(1 << 20))
        .await
        .unwrap()
        .unwrap()
}

async fn send(c: &mut DuplexStream, v: Value) {
    write_object(c, &FrameCodec::default(), v.as_object().unwrap())
        .await
        .unwrap();
}

async fn connect(c: &mut DuplexStream, key: Option<SharedKey>) {
    let (hs, hello) = host_start(Role::Control, key, [9; 32]);
    write_payload(c, &FrameCodec::default(), &hello)
        .await
        .unwrap();
    let (hs, auth) = hs.handle(&next(c).await.payload).unwrap();
    if let Some(a) = auth {
        write_payload(c, &FrameCodec::default(), &a).await.unwrap();
    }
    hs.handle(&next(c).await.payload).unwrap();
}

#[tokio::test]
async fn requests_are_answered_by_id_and_unknown_types_are_unsupported() {
    let key = SharedKey::new(&[5; 32]).unwrap();
    let (mut c, _stop, _ev, _h) = start(Some(key.clone()));
    connect(&mut c, Some(key)).await;
    send(&mut c, json!({"id": 1, "type": "ping"})).await;
    send(&mut c, json!({"id": 2, "type": "warp"})).await;
    send(&mut c, json!({"type": "no id"})).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..3 {
        let r = Response::from_object(&next(&mut c).await.object).unwrap();
        seen.insert(r.id, r.result);
    }
    assert_eq!(seen[&Some(1)], Ok(json!({"pong": true})));
    assert_eq!(
        seen[&Some(2)].as_ref().unwrap_err().code,
        ErrorCode::Unsupported
    );
    assert_eq!(
        seen[&None].as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn a_request_before_the_handshake_is_refused_and_closes() {
    let (mut c, _stop, _ev, h) = start(None);
    send(&mut c, json!({"id": 1, "type": "ping"})).await;
    let f = next(&mut c).await;
    assert_eq!(f.object["type"], "error");
    assert_eq!(f.object["error"]["code"], "protocol_violation");
    h.await.unwrap();
}

#[tokio::test]
async fn an_oversized_frame_gets_an_error_and_a_close() {
    let (mut c, _stop, _ev, h) = start(None);
    connect(&mut c, None).await;
    c.write_all(&[0, 1, 0, 0]).await.unwrap();
    let f = next(&mut c).await;
    assert_eq!(f.object["error"]["code"], "invalid_frame");
    h.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_cut_by_the_handshake_timeout() {
    let (mut c, _stop, _ev, h) = start(None);
    let f = next(&mut c).await;
    assert_eq!(f.object["error"]["code"], "timeout");
    h.await.unwrap();
}

#[tokio::test]
async fn events_reach_control_connections() {
    let (mut c, _stop, ev, _h) = start(None);
    connect(&mut c, None).await;
    // The subscription starts right after the handshake; a ping round trip orders us after it.
    send(&mut c, json!({"id": 1, "type": "ping"})).await;
    next(&mut c).await;
    ev.send(Event::new("token_expiring", json!({"in_s": 5})))
        .unwrap();
    let f = next(&mut c).await;
    assert_eq!(f.object["event"], "token_expiring");
}

#[tokio::test]
async fn stop_ends_the_connection() {
    let (mut c, stop, _ev, h) = start(None);
    connect(&mut c, None).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3), h)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn the_handshake_budget_evicts_the_oldest_after_its_grace() {
    let t0 = Instant::now();
    let mut hs = Handshakes::new(2);
    let mut first = hs.admit(t0).unwrap();
    let _second = hs.admit(t0).unwrap();
    // Full, and nobody has had the grace: the newcomer is refused.
    assert!(hs.admit(t0 + HANDSHAKE_GRACE / 2).is_none());
    // Later the oldest is evicted in favour of the newcomer.
    let _third = hs.admit(t0 + HANDSHAKE_GRACE).unwrap();
    assert_eq!(first.try_recv(), Ok(()));
    assert_eq!(hs.len(), 2);
}

#[test]
fn a_finished_handshake_frees_its_place() {
    let t0 = Instant::now();
    let mut hs = Handshakes::new(1);
    let done = hs.admit(t0).unwrap();
    drop(done);
    let mut next = hs.admit(t0).unwrap();
    assert_eq!(hs.len(), 1);
    assert!(next.try_recv().is_err(), "not evicted");
}

#[tokio::test]
async fn a_full_server_answers_busy_before_the_hello() {
    let (s, _events) = server(Some(
        SharedKey::new(b"0123456789abcdef0123456789abcdef").unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener =
        Listener::bind(&crate::guest::transport::ListenAddr::Unix(path.clone())).unwrap();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        s.run(listener, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await;
    });
    // Four idle connections fill the handshake budget (4); the fifth, within the grace, hears
    // `busy` at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::UnixStream::connect(&path).await.unwrap());
    }
    let mut fifth = tokio::net::UnixStream::connect(&path).await.unwrap();
    let f = tokio::time::timeout(
        Duration::from_secs(2),
        read_frame(&mut fifth, &FrameCodec::default()),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(f.object["error"]["code"], "busy");
    let _ = stop_tx.send(true);
    server.await.unwrap();
}
