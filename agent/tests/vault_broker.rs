//! End to end through the library, over a real Unix socket: the host seals secrets and delivers
//! a token, the vault lands them, `exec` sees them, and git's credential helper asks the broker.
//! (The spawned-binary tests come with the daemon's CLI; these call the same library functions.)

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codespace_agent::credential_helper;
use codespace_agent::exec;
use codespace_agent::guest::broker::{Broker, BrokerConfig, Clock, Outcome, Silence};
use codespace_agent::guest::vault::{Owner, SessionEvent, TokenPut, Vault, VaultConfig};
use codespace_agent::seal::{seal, AgentKeyPair, TokenValue};
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);
const EXPIRES: OffsetDateTime = datetime!(2026-11-26 03:00 UTC);

struct Setup {
    _dir: tempfile::TempDir,
    state: PathBuf,
    vault: Vault,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let vault = Vault::new(
        VaultConfig::new(&state, Owner::current()),
        AgentKeyPair::generate().unwrap(),
    )
    .unwrap();
    let scope = serde_json::from_str(
        r#"{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
    )
    .unwrap();
    vault
        .put_token(
            TokenPut {
                value: TokenValue::new("ghu_e2e_token".into()).unwrap(),
                expires_at: EXPIRES,
                scope,
                host: None,
            },
            NOW,
        )
        .unwrap();
    Setup {
        _dir: dir,
        state,
        vault,
    }
}

struct Running {
    outcomes: mpsc::Receiver<Outcome>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(setup: &Setup, config: BrokerConfig, clock: Clock) -> Running {
    let (tx, outcomes) = mpsc::channel(16);
    let broker = Broker::bind(config, setup.vault.clone())
        .unwrap()
        .with_clock(clock)
        .with_outcomes(tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broker
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        outcomes,
        stop,
        task,
    }
}

async fn ask(state: &Path, request: &'static str) -> String {
    let state = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        credential_helper::run(&state, "get", request.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    })
    .await
    .unwrap()
}

fn own_uid() -> u32 {
    Owner::current().uid
}

const IN_SCOPE: &str = "protocol=https\nhost=github.com\npath=Octo/App.git\n\n";

#[tokio::test]
async fn answers_in_scope_and_is_silent_out_of_scope() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let mut running = start(&setup, config, Arc::new(|| NOW));

    let socket = setup.state.join("git-credential.sock");
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);

    let answer = ask(&setup.state, IN_SCOPE).await;
    assert_eq!(
        answer,
        format!(
            "username=x-access-token\npassword=ghu_e2e_token\npassword_expiry_utc={}\n",
            EXPIRES.unix_timestamp()
        )
    );
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Answered {
            uid: own_uid(),
            repository: Some("octo/app".into())
        }
    );

    for (request, reason) in [
        (
            "protocol=https\nhost=github.com\npath=octo/secret.git\n\n",
            Silence::OutOfScope,
        ),
        (
            "protocol=http\nhost=github.com\npath=octo/app.git\n\n",
            Silence::NotHttps,
        ),
        (
            "protocol=https\nhost=example.com\npath=octo/app.git\n\n",
            Silence::WrongHost,
        ),
    ] {
        assert_eq!(ask(&setup.state, request).await, "", "{request:?}");
        let outcome = running.outcomes.recv().await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Silent {
                uid: Some(own_uid()),
                reason
            }
        );
    }

    running.stop.send(()).unwrap();
    running.task.await.unwrap();
    assert!(!socket.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn a_uid_outside_the_allow_list_gets_nothing() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid().wrapping_add(4242)]);
    let mut running = start(&setup, config, Arc::new(|| NOW));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::UidNotAllowed
        }
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn a_caller_in_the_restricted_sandbox_gets_nothing() {
    let setup = setup();
    // A fake /proc where this process's cgroup is the restricted sandbox.
    let proc_root = tempfile::tempdir().unwrap();
    let own = proc_root.path().join(std::process::id().to_string());
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("cgroup"),
        "0::/codespace-lifecycle-restricted/postCreate\n",
    )
    .unwrap();
    let mut config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    config.proc_root = proc_root.path().to_path_buf();
    let mut running = start(&setup, config, Arc::new(|| NOW));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::RestrictedSandbox
        }
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn silent_after_expiry_even_before_the_wipe() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let mut running = start(&setup, config, Arc::new(|| EXPIRES));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert!(matches!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            reason: Silence::NoToken,
            ..
        }
    ));
    // And after the expiry driver wiped it.
    setup.vault.poll_expiry(EXPIRES);
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn bind_replaces_a_stale_socket_but_nothing_else() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let first = start(&setup, config.clone(), Arc::new(|| NOW));
    // Simulate a crash: the task ends without removing the socket file.
    first.task.abort();
    let _ = first.task.await;
    drop(first.stop);
    let mut second = start(&setup, config.clone(), Arc::new(|| NOW));
    assert!(ask(&setup.state, IN_SCOPE).await.contains("password="));
    assert!(second.outcomes.recv().await.is_some());
    second.stop.send(()).unwrap();
    second.task.await.unwrap();

    std::fs::write(&config.socket_path, b"not a socket").unwrap();
    let err = Broker::bind(config, setup.vault.clone()).unwrap_err();
    assert!(err.to_string().contains("not a socket"));
}

#[test]
fn sealed_secrets_reach_exec_at_create() {
    let setup = setup();
    let pk = setup.vault.public_key();
    let report = setup.vault.put_secrets(vec![
        seal(&pk, "DB_PASSWORD", 1, b"p@ss 'word' $x").unwrap(),
        seal(&pk, "BASH_ENV", 1, b"/tmp/evil").unwrap(),
    ]);
    assert_eq!(report.accepted, ["DB_PASSWORD"]);
    let argv: Vec<OsString> = [
        "/bin/sh",
        "-c",
        "printf '%s|%s' \"${DB_PASSWORD-unset}\" \"$GITHUB_TOKEN\"",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let before = exec::command(&setup.state, &argv)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(before.stdout, b"unset|ghu_e2e_token");
    setup.vault.session(SessionEvent::Create, NOW).unwrap();
    let after = exec::command(&setup.state, &argv)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(after.stdout, b"p@ss 'word' $x|ghu_e2e_token");
}
