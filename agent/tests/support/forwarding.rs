//! Port-forwarding helpers shared by the integration tests that play the host: a grant key,
//! grants minted for a principal, a control client with the key installed, an echo server, and
//! forward connections opened through the real agent.

use std::time::{Duration, Instant};

use codespace_agent::host::forward::{mint, open, put_grant_key, ForwardError, ForwardStream};
use codespace_agent::host::ports::{list_all, port_entry};
use codespace_agent::host::Client;
use codespace_agent::wire::grant::{GrantKey, GrantPrincipal};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Agent;

pub const GRANT_KEY: [u8; 32] = [0x42; 32];
pub const CODESPACE: &str =
    r#""codespace": {"owner": "mona", "organization": "octo"}, "detect": {"poll_interval_ms": 50}"#;

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn who(login: &str, orgs: &[&str]) -> Option<GrantPrincipal> {
    Some(GrantPrincipal {
        login: login.into(),
        organizations: orgs.iter().map(|s| (*s).to_owned()).collect(),
        authenticated_at: now() - 10,
    })
}

pub fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A control client with the grant key installed.
pub async fn control(agent: &Agent) -> Client {
    let c = agent.client().await;
    put_grant_key(&c, &GRANT_KEY, Duration::from_secs(5))
        .await
        .unwrap();
    c
}

pub async fn list(c: &Client) -> Value {
    list_all(c, Duration::from_secs(5)).await.unwrap()
}

/// The port's entry in `ports_list`, waiting (bounded) until `pred` holds for it.
pub async fn wait_port(
    c: &Client,
    port: u16,
    pred: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = port_entry(c, port, Duration::from_secs(5)).await.unwrap();
        if pred(entry.as_ref()) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} never matched: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn epoch(c: &Client, port: u16) -> u64 {
    wait_port(c, port, |p| p.is_some()).await.unwrap()["epoch"]
        .as_u64()
        .unwrap()
}

pub async fn set_visibility(c: &Client, port: u16, v: &str) -> Value {
    c.request(
        "ports_visibility",
        fields(json!({"port": port, "visibility": v})),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

/// An echo server: reads to end of stream, then writes everything back and closes.
pub async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (port, serve_echo(l))
}

/// Echoes every connection of `l` back once its client has half-closed.
pub fn serve_echo(l: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    })
}

pub async fn forward(
    agent: &Agent,
    port: u16,
    epoch: u64,
    principal: Option<GrantPrincipal>,
) -> Result<ForwardStream, ForwardError> {
    let grant = mint(
        &GrantKey::new(&GRANT_KEY).unwrap(),
        port,
        epoch,
        principal,
        now(),
        Duration::from_secs(600),
    );
    open(&agent.options(), port, &grant).await.map(|(s, _)| s)
}

pub async fn refused(
    agent: &Agent,
    port: u16,
    grant: &codespace_agent::wire::grant::SignedGrant,
) -> String {
    match open(&agent.options(), port, grant).await {
        Ok(_) => panic!("forward to {port} was accepted"),
        Err(e) => e
            .reason()
            .unwrap_or_else(|| panic!("not a refusal: {e}"))
            .to_owned(),
    }
}

/// Writes `data`, half-closes, and returns everything read back.
pub async fn round_trip(mut s: ForwardStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    back
}
