//! Process lifecycle: readiness notification, draining on SIGTERM, configuration errors.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::support::{json_out, Agent};

#[test]
fn sd_notify_ready_is_sent_when_listening() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let agent = Agent::start_with_env("", &[("NOTIFY_SOCKET", notify.as_path())]);
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(agent.socket().exists(), "READY before the socket exists");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut agent = Agent::start("");
    json_out(&agent.ctl(&["ping"]));
    let status = agent.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    assert!(!agent.socket().exists(), "socket left behind");
    assert!(agent.log().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_clients_hear_shutting_down() {
    let mut agent = Agent::start("");
    let c = agent.client().await;
    let status = tokio::task::block_in_place(|| agent.terminate());
    assert_eq!(status.code(), Some(0));
    let mut names = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), c.next_event())
        .await
        .unwrap()
    {
        names.push(ev.name);
    }
    assert!(names.contains(&"shutting_down".to_owned()), "{names:?}");
}

#[test]
fn configuration_errors_exit_2_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(&cfg, r#"{"max_connections": 0}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_connections"));
    // unix: without a key
    let out = Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
        .args(["run", "--listen"])
        .arg(format!("unix:{}", dir.path().join("a.sock").display()))
        .arg("--state-dir")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key"));
}
