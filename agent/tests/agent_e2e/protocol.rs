//! Handshake and frame-level behaviour of the real daemon.

use serde_json::json;

use crate::support::{json_out, stderr, Agent, Raw};

#[test]
fn ctl_ping_and_status() {
    let agent = Agent::start("");
    let ping = json_out(&agent.ctl(&["ping"]));
    assert_eq!(ping["pong"], true);
    let status = json_out(&agent.ctl(&["status"]));
    for k in [
        "version",
        "agent_id",
        "boot_id",
        "uptime_s",
        "capabilities",
        "codespace",
        "health",
        "token",
        "secrets",
        "pending_secrets",
    ] {
        assert!(status.get(k).is_some(), "status lacks {k}: {status}");
    }
    assert!(status["health"]["agent_rss_bytes"].as_u64().unwrap() > 0);
    assert!(status["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("secrets_put")));
}

#[test]
fn a_wrong_key_is_refused_and_the_agent_keeps_serving() {
    let agent = Agent::start("");
    let other = agent.write("other.key", "another-key-of-at-least-32-bytes-length!");
    let out = agent.ctl_with_key(&other, &["ping"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let short = agent.write("short.key", "too short");
    let out = agent.ctl_with_key(&short, &["ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 32"), "{}", stderr(&out));
    json_out(&agent.ctl(&["ping"]));
}

#[tokio::test]
async fn version_mismatch_gets_an_error_frame_and_a_close() {
    let agent = Agent::start("");
    let mut raw = Raw::connect(&agent).await;
    raw.send(json!({"type": "hello", "versions": [99], "role": "control", "nonce": "AAAA"}))
        .await;
    let f = raw.next().await.unwrap();
    assert_eq!(f.object["type"], "error");
    assert_eq!(f.object["error"]["code"], "version_mismatch");
    assert!(raw.next().await.is_none(), "connection should close");
}

#[tokio::test]
async fn a_request_before_the_handshake_is_a_protocol_violation() {
    let agent = Agent::start("");
    let mut raw = Raw::connect(&agent).await;
    raw.send(json!({"id": 1, "type": "status"})).await;
    let f = raw.next().await.unwrap();
    assert_eq!(f.object["error"]["code"], "protocol_violation");
    assert!(raw.next().await.is_none());
}

#[tokio::test]
async fn oversized_frames_are_refused_before_the_handshake_and_after() {
    let agent = Agent::start("\"max_frame_bytes\": 4096");
    let mut raw = Raw::connect(&agent).await;
    raw.send_bytes(&(2u32 << 20).to_be_bytes()).await;
    let f = raw.next().await.unwrap();
    assert_eq!(f.object["error"]["code"], "invalid_frame");
    assert!(raw.next().await.is_none());

    let mut raw = Raw::handshake(&agent).await;
    raw.send(json!({"id": 1, "type": "ping", "pad": "x".repeat(5000)}))
        .await;
    let f = raw.next_non_event().await.unwrap();
    assert_eq!(f.object["error"]["code"], "invalid_frame");
    assert!(raw.next_non_event().await.is_none());
}

#[tokio::test]
async fn zero_length_and_non_object_frames_are_refused() {
    let agent = Agent::start("");
    let mut raw = Raw::handshake(&agent).await;
    raw.send_bytes(&[0, 0, 0, 0]).await;
    assert_eq!(
        raw.next_non_event().await.unwrap().object["error"]["code"],
        "invalid_frame"
    );
    let mut raw = Raw::handshake(&agent).await;
    raw.send_bytes(&[0, 0, 0, 2, b'4', b'2']).await;
    assert_eq!(
        raw.next_non_event().await.unwrap().object["error"]["code"],
        "invalid_frame"
    );
}

#[tokio::test]
async fn truncated_frames_and_garbage_close_only_their_connection() {
    let agent = Agent::start("");
    // Half a frame, then the client goes away.
    let mut raw = Raw::handshake(&agent).await;
    raw.send_bytes(&[0, 0, 0, 100, b'{', b'"']).await;
    drop(raw);
    // HTTP on the control port: "GET " is read as a ~1.2 GB length and refused at once.
    let mut raw = Raw::connect(&agent).await;
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        raw.next().await.unwrap().object["error"]["code"],
        "invalid_frame"
    );
    // Random bytes after a good handshake.
    let mut raw = Raw::handshake(&agent).await;
    raw.send_bytes(&[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x00, 0x01, 0x02])
        .await;
    assert_eq!(
        raw.next_non_event().await.unwrap().object["error"]["code"],
        "invalid_frame"
    );
    // Everyone else is still served.
    let c = agent.client().await;
    assert_eq!(
        c.request(
            "ping",
            Default::default(),
            std::time::Duration::from_secs(5)
        )
        .await
        .unwrap()["pong"],
        true
    );
}

#[tokio::test]
async fn malformed_requests_and_unknown_types_keep_the_connection() {
    let agent = Agent::start("");
    let mut raw = Raw::handshake(&agent).await;
    raw.send(json!({"id": 1, "type": "reboot_the_world"})).await;
    let f = raw.next_non_event().await.unwrap();
    assert_eq!(
        (f.object["id"].clone(), f.object["error"]["code"].clone()),
        (json!(1), json!("unsupported"))
    );
    raw.send(json!({"type": "ping"})).await;
    assert_eq!(
        raw.next_non_event().await.unwrap().object["error"]["code"],
        "bad_request"
    );
    raw.send(json!({"id": 2, "type": "ping"})).await;
    let f = raw.next_non_event().await.unwrap();
    assert_eq!(f.object["id"], 2);
    assert_eq!(f.object["ok"]["pong"], true);
}

#[tokio::test]
async fn a_silent_client_is_cut_by_the_handshake_timeout() {
    let agent = Agent::start("\"handshake_timeout_ms\": 300");
    let mut raw = Raw::connect(&agent).await;
    let f = raw.next().await.unwrap();
    assert_eq!(f.object["error"]["code"], "timeout");
    assert!(raw.next().await.is_none());
}
