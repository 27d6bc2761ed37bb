//! Hybrid vsock against fake VMM sockets that answer like Firecracker, close, or talk nonsense.

use std::path::PathBuf;
use std::time::Duration;

use codespace_agent::host::{
    Backoff, Client, ClientError, ConnectAddr, ConnectOptions, HybridError,
};
use codespace_agent::wire::SharedKey;
use serde_json::Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::support::{Agent, KEY};

#[derive(Clone, Copy)]
enum Vmm {
    /// Answers `OK 1073741824` and splices to the agent, like Firecracker.
    Firecracker,
    /// Closes after reading CONNECT (no listener in the guest).
    Closes,
    /// Answers garbage.
    Garbage,
}

/// Runs a fake VMM on `path`; the agent's socket stands in for the guest's vsock port 1023.
fn fake_vmm(path: PathBuf, agent_socket: PathBuf, kind: Vmm) {
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let agent_socket = agent_socket.clone();
            tokio::spawn(async move {
                // Read "CONNECT <port>\n" byte by byte, like Firecracker does.
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read(&mut b).await.unwrap_or(0) == 1 && b[0] != b'\n' && line.len() < 32 {
                    line.push(b[0]);
                }
                assert_eq!(line, b"CONNECT 1023");
                match kind {
                    Vmm::Closes => {}
                    Vmm::Garbage => {
                        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    }
                    Vmm::Firecracker => {
                        s.write_all(b"OK 1073741824\n").await.unwrap();
                        let mut guest = UnixStream::connect(agent_socket).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut guest).await;
                    }
                }
            });
        }
    });
}

fn options(path: &std::path::Path, deadline: Duration) -> ConnectOptions {
    let addr: ConnectAddr = format!("hybrid:{}:1023", path.display()).parse().unwrap();
    let mut o = ConnectOptions::new(addr, Some(SharedKey::new(KEY).unwrap()));
    o.backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        deadline: Some(deadline),
    };
    o.attempt_timeout = Duration::from_secs(2);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_handshake_through_a_firecracker_like_vmm() {
    let agent = Agent::start("");
    let vmm = agent.dir.path().join("vm.sock");
    fake_vmm(vmm.clone(), agent.socket(), Vmm::Firecracker);
    let c = Client::connect(&options(&vmm, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(c.info().authenticated);
    let r = c
        .request("ping", Map::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r["pong"], true);
    // And through agentctl (blocking; the fake VMM keeps running on the other worker).
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
            .args([
                "--connect",
                &format!("hybrid:{}:1023", vmm.display()),
                "--key-file",
            ])
            .arg(agent.key_file())
            .arg("ping")
            .output()
    })
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_vmm_that_closes_is_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = dir.path().join("vm.sock");
    fake_vmm(vmm.clone(), dir.path().join("none"), Vmm::Closes);
    let err = Client::connect(&options(&vmm, Duration::from_millis(300)))
        .await
        .unwrap_err();
    match err {
        ClientError::GaveUp { attempts, last } => {
            assert!(attempts > 1);
            assert!(
                matches!(
                    *last,
                    ClientError::Hybrid {
                        source: HybridError::Closed { port: 1023 },
                        ..
                    }
                ),
                "{last}"
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn a_vmm_that_answers_garbage_is_an_immediate_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = dir.path().join("vm.sock");
    fake_vmm(vmm.clone(), dir.path().join("none"), Vmm::Garbage);
    let err = Client::connect(&options(&vmm, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Hybrid {
                source: HybridError::Garbage { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("unexpected answer to CONNECT 1023"),
        "{err}"
    );
}

#[tokio::test]
async fn the_client_waits_for_an_agent_that_starts_late() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = dir.path().join("vm.sock");
    let guest = dir.path().join("guest.sock");
    // The VMM is up but the "guest" listener appears only later: the VMM closes meanwhile.
    let listener = UnixListener::bind(&vmm).unwrap();
    let guest2 = guest.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let guest = guest2.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 13];
                if s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let Ok(mut g) = UnixStream::connect(&guest).await else {
                    return;
                };
                s.write_all(b"OK 1073741825\n").await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut g).await;
            });
        }
    });
    let connecting = tokio::spawn({
        let vmm = vmm.clone();
        async move { Client::connect(&options(&vmm, Duration::from_secs(20))).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let agent = Agent::start("");
    std::os::unix::fs::symlink(agent.socket(), &guest).unwrap();
    let c = connecting.await.unwrap().unwrap();
    assert_eq!(
        c.request("ping", Map::new(), Duration::from_secs(5))
            .await
            .unwrap()["pong"],
        true
    );
}
