//! Unit tests of the vault handle: snapshot semantics, token replacement and expiry with
//! injected time, and the environment file it writes.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt as _;

use codespace_policy::token::TokenScope;
use time::macros::datetime;
use time::Duration;

use super::*;
use crate::seal::seal;

const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);

fn vault(dir: &Path) -> Vault {
    Vault::new(
        VaultConfig::new(dir.join("state"), Owner::current()),
        AgentKeyPair::generate().unwrap(),
    )
    .unwrap()
}

fn env(vault: &Vault) -> Vec<(String, Vec<u8>)> {
    envfile::read(&vault.environment_path())
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name, value.expose().to_vec()))
        .collect()
}

fn entry(name: &str, value: &str) -> (String, Vec<u8>) {
    (name.to_owned(), value.as_bytes().to_vec())
}

fn scope() -> TokenScope {
    serde_json::from_str(
        r#"{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
    )
    .unwrap()
}

fn token(value: &str, expires_at: OffsetDateTime) -> TokenPut {
    TokenPut {
        value: TokenValue::new(value.to_owned()).unwrap(),
        expires_at,
        scope: scope(),
        host: None,
    }
}

#[test]
fn new_vault_prepares_directories_and_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let state = dir.path().join("state");
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o7777, 0o711);
    assert_eq!(
        std::fs::metadata(state.join("env")).unwrap().mode() & 0o7777,
        0o711
    );
    let file = std::fs::metadata(vault.environment_path()).unwrap();
    assert_eq!(file.mode() & 0o7777, 0o600);
    assert_eq!(file.uid(), Owner::current().uid);
    assert!(env(&vault).is_empty());
}

#[test]
fn owner_other_than_self_needs_root() {
    if rustix::process::geteuid().is_root() {
        return; // as root, chown is allowed: nothing to refuse
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = VaultConfig::new(dir.path().join("s"), Owner::current());
    config.owner.uid += 1;
    let err = Vault::new(config, AgentKeyPair::generate().unwrap()).unwrap_err();
    assert!(matches!(err, VaultError::OwnerMismatch { .. }));
}

#[test]
fn secrets_are_pending_until_create_or_resume() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let pk = vault.public_key();
    let report = vault.put_secrets(vec![
        seal(&pk, "API_KEY", 1, b"one").unwrap(),
        seal(&pk, "PATH", 1, b"/evil").unwrap(),
    ]);
    assert_eq!(report.accepted, ["API_KEY"]);
    assert_eq!(report.rejected[0].reason, "dangerous-name");
    let status = vault.status();
    assert!(status.secrets.is_empty());
    assert_eq!(status.pending_secrets, Some(vec!["API_KEY".to_owned()]));
    assert!(env(&vault).is_empty(), "nothing lands before create");

    let report = vault.session(SessionEvent::Create, NOW).unwrap();
    assert!(report.applied_pending);
    assert_eq!(env(&vault), [entry("API_KEY", "one")]);
    assert_eq!(vault.status().pending_secrets, None);

    // Delivered while running: pending again, the environment keeps the old snapshot.
    vault.put_secrets(vec![
        seal(&pk, "API_KEY", 2, b"two").unwrap(),
        seal(&pk, "NEW_ONE", 1, b"new").unwrap(),
    ]);
    assert_eq!(env(&vault), [entry("API_KEY", "one")]);
    vault.session(SessionEvent::Suspend, NOW).unwrap();
    assert_eq!(
        env(&vault),
        [entry("API_KEY", "one")],
        "suspend does not apply"
    );
    let status = vault.status();
    assert_eq!(status.session, Some(SessionEvent::Suspend));
    assert_eq!(
        status.pending_secrets,
        Some(vec!["API_KEY".to_owned(), "NEW_ONE".to_owned()])
    );

    vault.session(SessionEvent::Resume, NOW).unwrap();
    assert_eq!(
        env(&vault),
        [entry("API_KEY", "two"), entry("NEW_ONE", "new")]
    );

    // A delivery is the complete set: a secret left out disappears at the next resume.
    vault.put_secrets(vec![seal(&pk, "NEW_ONE", 2, b"newer").unwrap()]);
    let report = vault.session(SessionEvent::Resume, NOW).unwrap();
    assert_eq!(report.secrets, ["NEW_ONE"]);
    assert_eq!(env(&vault), [entry("NEW_ONE", "newer")]);

    // A resume with nothing pending keeps the current set.
    let report = vault.session(SessionEvent::Resume, NOW).unwrap();
    assert!(!report.applied_pending);
    assert_eq!(env(&vault), [entry("NEW_ONE", "newer")]);
}

#[test]
fn token_lands_at_once_and_is_replaced_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let status = vault
        .put_token(token("ghu_first", NOW + Duration::hours(8)), NOW)
        .unwrap();
    assert_eq!(status.host, "github.com");
    assert!(status.exported);
    assert_eq!(env(&vault), [entry("GITHUB_TOKEN", "ghu_first")]);
    vault.with_token(NOW, |t| assert_eq!(t.unwrap().value.expose(), "ghu_first"));

    vault
        .put_token(token("ghu_second", NOW + Duration::hours(9)), NOW)
        .unwrap();
    assert_eq!(env(&vault), [entry("GITHUB_TOKEN", "ghu_second")]);
    vault.with_token(NOW, |t| assert_eq!(t.unwrap().value.expose(), "ghu_second"));

    let json = serde_json::to_string(&vault.status()).unwrap();
    assert!(
        json.contains("\"expires_at\":\"2026-11-26T04:00:00Z\""),
        "{json}"
    );
    assert!(json.contains("octo/app"));
    assert!(!json.contains("ghu_"));
}

#[test]
fn token_export_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = VaultConfig::new(dir.path().join("state"), Owner::current());
    config.export_token = false;
    let vault = Vault::new(config, AgentKeyPair::generate().unwrap()).unwrap();
    let status = vault
        .put_token(token("ghu_x", NOW + Duration::hours(1)), NOW)
        .unwrap();
    assert!(!status.exported);
    assert!(env(&vault).is_empty());
    vault.with_token(NOW, |t| assert!(t.is_some()));
}

#[test]
fn expired_token_delivery_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let err = vault.put_token(token("ghu_x", NOW), NOW).unwrap_err();
    assert!(matches!(
        err,
        VaultError::Token(TokenError::AlreadyExpired { .. })
    ));
    assert!(vault.status().token.is_none());
}

#[test]
fn expiry_warns_then_wipes_memory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let pk = vault.public_key();
    vault.put_secrets(vec![seal(&pk, "KEEP", 1, b"k").unwrap()]);
    vault.session(SessionEvent::Create, NOW).unwrap();
    let expires = NOW + Duration::hours(1);
    vault.put_token(token("ghu_exp", expires), NOW).unwrap();

    assert_eq!(vault.next_deadline(), Some(expires - Duration::minutes(10)));
    assert!(vault.poll_expiry(NOW + Duration::minutes(49)).is_empty());
    assert_eq!(
        vault.poll_expiry(NOW + Duration::minutes(50)),
        [VaultEvent::TokenExpiring {
            expires_at: expires
        }]
    );
    assert!(vault.poll_expiry(NOW + Duration::minutes(51)).is_empty());
    assert_eq!(vault.next_deadline(), Some(expires));

    // Past expiry but before the driver polls: readers already see no token.
    vault.with_token(expires, |t| assert!(t.is_none()));

    assert_eq!(
        vault.poll_expiry(expires + Duration::seconds(1)),
        [VaultEvent::TokenExpired {
            expired_at: expires
        }]
    );
    assert_eq!(env(&vault), [entry("KEEP", "k")]);
    assert!(vault.status().token.is_none());
    assert_eq!(vault.next_deadline(), None);
    let event = serde_json::to_value(VaultEvent::TokenExpired {
        expired_at: expires,
    })
    .unwrap();
    assert_eq!(event["event"], "token_expired");
}

#[test]
fn a_new_token_rearms_the_warning() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    vault
        .put_token(token("ghu_a", NOW + Duration::minutes(5)), NOW)
        .unwrap();
    assert_eq!(vault.poll_expiry(NOW).len(), 1);
    let later = NOW + Duration::hours(2);
    vault.put_token(token("ghu_b", later), NOW).unwrap();
    assert!(vault.poll_expiry(NOW + Duration::minutes(6)).is_empty());
    assert_eq!(
        vault.poll_expiry(later - Duration::minutes(1)),
        [VaultEvent::TokenExpiring { expires_at: later }]
    );
}

#[test]
fn suspend_wipes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    vault
        .put_token(token("ghu_s", NOW + Duration::hours(1)), NOW)
        .unwrap();
    let report = vault.session(SessionEvent::Suspend, NOW).unwrap();
    assert!(report.token_wiped);
    assert!(env(&vault).is_empty());
    vault.with_token(NOW, |t| assert!(t.is_none()));
}

#[test]
fn a_prebuild_exports_no_token_takes_no_secret_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let pk = vault.public_key();
    // Pending before the prebuild starts: dropped when it does.
    vault.put_secrets(vec![seal(&pk, "API_KEY", 1, b"v").unwrap()]);
    let report = vault.set_prebuild(true, NOW).unwrap();
    assert_eq!(report.secrets_wiped, 1);
    let refused = vault.put_secrets(vec![seal(&pk, "API_KEY", 2, b"v").unwrap()]);
    assert!(refused.accepted.is_empty());
    assert_eq!(refused.rejected[0].reason, "prebuild");
    vault.session(SessionEvent::Create, NOW).unwrap();
    vault
        .put_token(token("ghs_prebuild", NOW + Duration::hours(1)), NOW)
        .unwrap();
    // Served (the prebuild's own work), never exported.
    vault.with_token(NOW, |t| assert!(t.is_some()));
    assert!(env(&vault).is_empty());
    assert!(vault.status().prebuild);
    // Nothing changes when the fact does not.
    assert!(!vault.set_prebuild(true, NOW).unwrap().token_wiped);
    let report = vault.set_prebuild(false, NOW).unwrap();
    assert!(report.token_wiped);
    vault.with_token(NOW, |t| assert!(t.is_none()));
    assert!(env(&vault).is_empty());
    let status = vault.status();
    assert!(!status.prebuild && status.token.is_none() && status.secrets.is_empty());
    // The creator's token, after: exported as usual.
    vault
        .put_token(token("ghu_creator", NOW + Duration::hours(1)), NOW)
        .unwrap();
    assert_eq!(env(&vault), [entry("GITHUB_TOKEN", "ghu_creator")]);
}

#[test]
fn failed_writes_are_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let env_dir = dir.path().join("state/env");
    // Make the env directory unusable by replacing it with a file.
    std::fs::remove_dir_all(&env_dir).unwrap();
    std::fs::write(&env_dir, b"").unwrap();
    let err = vault.put_token(token("ghu_w", NOW + Duration::hours(1)), NOW);
    assert!(matches!(err, Err(VaultError::EnvFile(_))));
    assert_eq!(vault.next_deadline(), Some(NOW + RETRY_AFTER));
    let events = vault.poll_expiry(NOW + RETRY_AFTER);
    assert!(matches!(
        events[..],
        [VaultEvent::EnvironmentWriteFailed { .. }]
    ));
    assert!(!format!("{events:?}").contains("ghu_w"));
    std::fs::remove_file(&env_dir).unwrap();
    std::fs::create_dir(&env_dir).unwrap();
    assert!(vault.poll_expiry(NOW + RETRY_AFTER * 2).is_empty());
    assert_eq!(env(&vault), [entry("GITHUB_TOKEN", "ghu_w")]);
}

#[tokio::test(start_paused = true)]
async fn driver_emits_events_on_a_test_clock() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let start = tokio::time::Instant::now();
    let clock = move || NOW + (tokio::time::Instant::now() - start);
    let expires = NOW + Duration::hours(1);
    vault.put_token(token("ghu_d", expires), NOW).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_expiry(vault.clone(), clock, tx, async {
        let _ = stop_rx.await;
    }));
    // Paused time advances automatically while every task waits.
    assert_eq!(
        rx.recv().await.unwrap(),
        VaultEvent::TokenExpiring {
            expires_at: expires
        }
    );
    assert!(clock() >= expires - Duration::minutes(10));
    assert_eq!(
        rx.recv().await.unwrap(),
        VaultEvent::TokenExpired {
            expired_at: expires
        }
    );
    assert!(clock() >= expires);
    vault.with_token(clock(), |t| assert!(t.is_none()));
    stop_tx.send(()).unwrap();
    task.await.unwrap();
}

/// Issue 16 end to end: the secrets that ran code or emptied the environment before are
/// refused on delivery, each with its name and the deny list's reason (never the value), and
/// the file the vault writes is sourced by bash the way the profile.d hook does without running
/// anything, the ordinary secret still exported.
#[test]
fn shell_special_and_tool_hijacking_secret_names_are_refused_on_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let pk = vault.public_key();
    let marker = dir.path().join("ran");
    let payload = format!("path[$(id -un > {})]", marker.display());
    let hostile = [
        "RANDOM",
        "OPTIND",
        "EUID",
        "XDG_CONFIG_HOME",
        "HOME",
        "PAGER",
        "LESSOPEN",
        "npm_config_script_shell",
    ];
    let mut delivery: Vec<_> = hostile
        .iter()
        .map(|name| seal(&pk, name, 1, payload.as_bytes()).unwrap())
        .collect();
    delivery.push(seal(&pk, "API_KEY", 1, b"kept").unwrap());
    let report = vault.put_secrets(delivery);
    assert_eq!(report.accepted, ["API_KEY"]);
    let refused: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, hostile);
    for rejection in &report.rejected {
        assert_eq!(rejection.reason, "dangerous-name");
        let why = codespace_policy::secrets::dangerous_reason(&rejection.name).unwrap();
        assert!(
            rejection.message.contains(&format!("{:?}", rejection.name))
                && rejection.message.contains(why),
            "{}",
            rejection.message
        );
        assert!(
            !rejection.message.contains("id -un"),
            "{}",
            rejection.message
        );
    }

    vault.session(SessionEvent::Create, NOW).unwrap();
    assert_eq!(env(&vault), [entry("API_KEY", "kept")]);
    let out = std::process::Command::new("/bin/bash")
        .arg("-c")
        .arg("set -a; . \"$1\"; set +a; printf %s \"$API_KEY\"")
        .arg("bash")
        .arg(vault.environment_path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"kept");
    assert!(!marker.exists());
}
