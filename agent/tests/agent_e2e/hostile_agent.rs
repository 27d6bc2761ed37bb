//! A compromised guest against `codespace-agentctl` (issue 20): a fake agent that completes the
//! handshake with the right key (a compromised VM has it), then misbehaves. The host must end
//! every case in bounded time and bounded memory, and say what the agent did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use codespace_agent::wire::handshake::{AfterHello, AgentIdentity, AwaitHello};
use codespace_agent::wire::io::{read_frame, read_payload, write_object, write_payload};
use codespace_agent::wire::{Event, FrameCodec, Response, SharedKey};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use crate::support::{stderr, KEY};

/// What the fake agent does once the host's first request has arrived.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Announces a frame of 4294967280 bytes.
    OversizedFrame,
    /// Floods `count` events of 60 KB, measures the host's peak memory, then answers.
    EventFlood { count: usize },
}

/// Accepts one connection on `path`, completes the handshake, reads one request and
/// misbehaves; returns the host's peak resident memory (kB) when it measured it.
async fn fake_agent(path: PathBuf, how: Misbehaviour) -> Option<u64> {
    let listener = UnixListener::bind(&path).unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let host_pid = s.peer_cred().unwrap().pid().unwrap();
    handshake(&mut s).await;
    let codec = FrameCodec::default();
    let request = read_frame(&mut s, &codec).await.unwrap().unwrap();
    let id = request.object["id"].as_u64().unwrap();
    match how {
        Misbehaviour::OversizedFrame => {
            s.write_all(&0xFFFF_FFF0u32.to_be_bytes()).await.unwrap();
            None
        }
        Misbehaviour::EventFlood { count } => {
            let pad = "x".repeat(60_000);
            for n in 0..count {
                let ev = Event::new("noise", json!({"n": n, "pad": pad}));
                write_object(&mut s, &codec, &ev.to_object()).await.unwrap();
            }
            // Every event has been read by the host (the socket holds less than one): its
            // high-water mark now includes whatever it kept of them.
            let peak = peak_rss_kb(host_pid);
            let answer = Response {
                id: Some(id),
                result: Ok(json!({"fine": true})),
            };
            write_object(&mut s, &codec, &answer.to_object())
                .await
                .unwrap();
            // Wait for the host to close.
            let _ = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, &codec)).await;
            peak
        }
    }
}

/// The agent's side of the handshake, through the real state machine and the shared key.
async fn handshake(s: &mut UnixStream) {
    let codec = FrameCodec::default();
    let key = SharedKey::new(KEY).unwrap();
    let identity = AgentIdentity {
        agent_id: "compromised".into(),
        boot_id: "b".into(),
        capabilities: vec!["status".into()],
        public_key: [9; 32],
    };
    let hello = read_payload(s, &codec).await.unwrap().unwrap();
    let AfterHello::AwaitAuth { state, welcome } = AwaitHello::new(identity, Some(key))
        .handle(&hello, [3; 32])
        .unwrap()
    else {
        panic!("expected the full handshake");
    };
    write_payload(s, &codec, &welcome).await.unwrap();
    let auth = read_payload(s, &codec).await.unwrap().unwrap();
    let (_, ok) = state.handle(&auth).unwrap();
    write_payload(s, &codec, &ok).await.unwrap();
}

/// `VmHWM` of a process, in kB.
fn peak_rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs `codespace-agentctl --connect unix:SOCKET status` against a fake agent.
async fn status_against(dir: &Path, how: Misbehaviour) -> (Output, Option<u64>) {
    let socket = dir.join("agent.sock");
    let key = dir.join("key");
    std::fs::write(&key, KEY).unwrap();
    let agent = tokio::spawn(fake_agent(socket.clone(), how));
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ctl = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"));
    ctl.arg("--connect")
        .arg(format!("unix:{}", socket.display()))
        .arg("--key-file")
        .arg(&key)
        .arg("--connect-timeout")
        .arg("5")
        .arg("status")
        .stdin(Stdio::null());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || ctl.output().unwrap()),
    )
    .await
    .expect("agentctl must finish")
    .unwrap();
    let peak = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    (out, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_a_protocol_violation_with_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = status_against(dir.path(), Misbehaviour::OversizedFrame).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "protocol violation by the agent: frame of 4294967280 bytes exceeds the maximum of \
             1048576 bytes"
        ),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_while_waiting_keeps_agentctl_under_16_mb() {
    let dir = tempfile::tempdir().unwrap();
    let (out, peak) = status_against(dir.path(), Misbehaviour::EventFlood { count: 600 }).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let peak = peak.expect("the host's VmHWM");
    eprintln!("agentctl status under a flood of 600 events of 60 KB peaked at {peak} kB");
    assert!(peak < 16 * 1024, "agentctl status peaked at {peak} kB");
}
