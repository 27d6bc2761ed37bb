//! Unit tests of the broker's pure parts and of one connection over an in-memory stream.

#![allow(clippy::unwrap_used)]

use codespace_policy::token::TokenScope;
use time::macros::datetime;

use super::*;
use crate::guest::vault::{Owner, TokenPut, VaultConfig};
use crate::seal::{AgentKeyPair, TokenValue};

const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);
const EXPIRES: OffsetDateTime = datetime!(2026-11-26 03:00 UTC);

fn scope() -> TokenScope {
    serde_json::from_str(
        r#"{"repositories":{"Octo/App":{"contents":"write","metadata":"read"},
            "octo/lib":{"contents":"read","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
    )
    .unwrap()
}

fn request(text: &str) -> CredentialRequest {
    parse_request(text.as_bytes()).unwrap()
}

fn with_live<R>(f: impl FnOnce(&LiveToken<'_>) -> R) -> R {
    let value = TokenValue::new("ghu_broker".into()).unwrap();
    let scope = scope();
    let live = LiveToken {
        value: &value,
        expires_at: EXPIRES,
        scope: &scope,
        host: "github.com",
    };
    f(&live)
}

#[test]
fn requests_parse_like_git_sends_them() {
    let parsed = request(
        "get\nprotocol=https\nhost=github.com\npath=octo/app.git\nwwwauth[]=Basic realm=x\n\n",
    );
    assert_eq!(parsed.action, Action::Get);
    assert_eq!(parsed.protocol.as_deref(), Some("https"));
    assert_eq!(parsed.host.as_deref(), Some("github.com"));
    assert_eq!(parsed.path.as_deref(), Some("octo/app.git"));
    // Lines after the blank line are not part of the request.
    assert_eq!(request("get\nprotocol=https\n\nhost=x\n").host, None);
    for bad in [
        "",
        "fill\nprotocol=https\n",
        "get\nno equals sign\n",
        "get\nhost=a\nhost=b\n",
        "get\nhost=a\0\n",
    ] {
        assert_eq!(
            parse_request(bad.as_bytes()),
            Err(Silence::MalformedRequest),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_request(b"get\n\xff\n"),
        Err(Silence::MalformedRequest)
    );
}

#[test]
fn decisions_follow_protocol_host_and_scope() {
    let cases: &[(&str, Result<Option<&str>, Silence>)] = &[
        ("get\nprotocol=https\nhost=github.com\n", Ok(None)),
        (
            "get\nprotocol=https\nhost=GitHub.COM\npath=octo/app.git\n",
            Ok(Some("Octo/App")),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=OCTO/APP\n",
            Ok(Some("Octo/App")),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/lib.git/info/lfs\n",
            Ok(Some("octo/lib")),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/other.git\n",
            Err(Silence::OutOfScope),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=evil/app.git\n",
            Err(Silence::OutOfScope),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=app.git\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/..\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=/octo/app/\n",
            Ok(Some("Octo/App")),
        ),
        // Paths that name another repository once a URL is normalized or decoded.
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/app.git/../../evil/x.git\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/app/./info\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/app.git/%2e%2e/%2e%2e/evil/x\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo/app\\..\\..\\evil\\x\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=https\nhost=github.com\npath=octo//app\n",
            Err(Silence::InvalidRepository),
        ),
        (
            "get\nprotocol=http\nhost=github.com\n",
            Err(Silence::NotHttps),
        ),
        ("get\nhost=github.com\n", Err(Silence::NotHttps)),
        (
            "get\nprotocol=https\nhost=gitlab.com\npath=octo/app\n",
            Err(Silence::WrongHost),
        ),
        (
            "get\nprotocol=https\nhost=github.com.evil\n",
            Err(Silence::WrongHost),
        ),
        ("get\nprotocol=https\n", Err(Silence::WrongHost)),
        (
            "store\nprotocol=https\nhost=github.com\n",
            Err(Silence::Ignored),
        ),
        (
            "erase\nprotocol=https\nhost=github.com\n",
            Err(Silence::Ignored),
        ),
    ];
    with_live(|live| {
        for (text, expected) in cases {
            let got = decide(&request(text), Some(live), false).map(|grant| match grant {
                Grant::Repository(a) => Some(a.get().0.to_string()),
                Grant::Host => None,
            });
            let expected = expected.clone().map(|r| r.map(str::to_owned));
            assert_eq!(got, expected, "{text:?}");
        }
        let no_path = request("get\nprotocol=https\nhost=github.com\n");
        assert!(matches!(
            decide(&no_path, Some(live), true),
            Err(Silence::MissingPath)
        ));
    });
    let any = request("get\nprotocol=https\nhost=github.com\n");
    assert!(matches!(decide(&any, None, false), Err(Silence::NoToken)));
}

#[test]
fn answers_carry_username_token_and_expiry() {
    with_live(|live| {
        let answer = render_answer(live, &Grant::Host);
        assert_eq!(
            std::str::from_utf8(&answer).unwrap(),
            format!(
                "username=x-access-token\npassword=ghu_broker\npassword_expiry_utc={}\n",
                EXPIRES.unix_timestamp()
            )
        );
    });
}

#[test]
fn restricted_cgroups_are_recognised() {
    let marker = DEFAULT_RESTRICTED_CGROUP_MARKER;
    assert!(in_restricted_cgroup(
        "0::/system.slice/codespace-lifecycle-restricted/run-1\n",
        marker
    ));
    assert!(in_restricted_cgroup(
        "12:pids:/codespace-lifecycle-restricted\n0::/user.slice\n",
        marker
    ));
    assert!(!in_restricted_cgroup(
        "0::/user.slice/user-1000.slice/session-1.scope\n",
        marker
    ));
    assert!(!in_restricted_cgroup("0::/x\n", ""));
}

#[test]
fn peers_are_checked_by_uid_and_cgroup() {
    let proc_root = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(Path::new("/nonexistent"), vec![1000]);
    config.proc_root = proc_root.path().to_path_buf();
    let write = |pid: i32, text: &str| {
        let dir = proc_root.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), text).unwrap();
    };
    write(10, "0::/user.slice\n");
    write(11, "0::/codespace-lifecycle-restricted/job\n");
    assert_eq!(check_peer(1000, Some(10), &config), Ok(()));
    assert_eq!(
        check_peer(1001, Some(10), &config),
        Err(Silence::UidNotAllowed)
    );
    assert_eq!(
        check_peer(1000, Some(11), &config),
        Err(Silence::RestrictedSandbox)
    );
    assert_eq!(
        check_peer(1000, Some(12), &config),
        Err(Silence::UnknownPeer)
    );
    assert_eq!(check_peer(1000, None, &config), Err(Silence::UnknownPeer));
    assert_eq!(
        check_peer(1000, Some(0), &config),
        Err(Silence::UnknownPeer)
    );
}

fn vault_with_token(dir: &Path) -> Vault {
    let vault = Vault::new(
        VaultConfig::new(dir.join("state"), Owner::current()),
        AgentKeyPair::generate().unwrap(),
    )
    .unwrap();
    vault
        .put_token(
            TokenPut {
                value: TokenValue::new("ghu_duplex".into()).unwrap(),
                expires_at: EXPIRES,
                scope: scope(),
                host: None,
            },
            NOW,
        )
        .unwrap();
    vault
}

async fn exchange(vault: &Vault, clock: Clock, request: &[u8]) -> (Outcome, Vec<u8>) {
    let config = BrokerConfig::new(Path::new("/nonexistent"), vec![1000]);
    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(request).await.unwrap();
    client.shutdown().await.unwrap();
    let outcome = handle_connection(
        server,
        1000,
        &serde_json::Map::new(),
        &config,
        vault,
        &clock,
    )
    .await;
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    (outcome, answer)
}

#[tokio::test]
async fn one_connection_in_scope_out_of_scope_and_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_token(dir.path());
    let now: Clock = Arc::new(|| NOW);
    let (outcome, answer) = exchange(
        &vault,
        now.clone(),
        b"get\nprotocol=https\nhost=github.com\npath=octo/app.git\n\n",
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Answered {
            uid: 1000,
            repository: Some("Octo/App".into())
        }
    );
    assert!(String::from_utf8(answer)
        .unwrap()
        .contains("password=ghu_duplex\n"));
    assert!(!format!("{outcome:?}").contains("ghu_"));

    let (outcome, answer) = exchange(
        &vault,
        now,
        b"get\nprotocol=https\nhost=github.com\npath=a/b\n",
    )
    .await;
    assert!(answer.is_empty());
    assert!(matches!(
        outcome,
        Outcome::Silent {
            reason: Silence::OutOfScope,
            ..
        }
    ));

    let after: Clock = Arc::new(|| EXPIRES);
    let (outcome, answer) =
        exchange(&vault, after, b"get\nprotocol=https\nhost=github.com\n").await;
    assert!(answer.is_empty());
    assert!(matches!(
        outcome,
        Outcome::Silent {
            reason: Silence::NoToken,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_token(dir.path());
    let config = BrokerConfig::new(Path::new("/nonexistent"), vec![1000]);
    let (_client, server) = tokio::io::duplex(64);
    let clock: Clock = Arc::new(|| NOW);
    let outcome = handle_connection(
        server,
        1000,
        &serde_json::Map::new(),
        &config,
        &vault,
        &clock,
    )
    .await;
    assert!(matches!(
        outcome,
        Outcome::Silent {
            reason: Silence::Timeout,
            ..
        }
    ));
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_token(dir.path());
    let mut big = b"get\nprotocol=https\nhost=github.com\nx=".to_vec();
    big.resize(MAX_REQUEST_BYTES + 10, b'a');
    let config = BrokerConfig::new(Path::new("/nonexistent"), vec![1000]);
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let clock: Clock = Arc::new(|| NOW);
    let writer = tokio::spawn(async move {
        let _ = client.write_all(&big).await;
        client
    });
    let outcome = handle_connection(
        server,
        1000,
        &serde_json::Map::new(),
        &config,
        &vault,
        &clock,
    )
    .await;
    assert!(matches!(
        outcome,
        Outcome::Silent {
            reason: Silence::MalformedRequest,
            ..
        }
    ));
    drop(writer.await.unwrap());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn only_repositories_in_scope_are_granted(path in "/?([oO][cC][tT][oO]|[a-z./_-]{0,6})/([aA][pP][pP]|[lL][iI][bB]|[a-z./_-]{0,6})(\\.git)?(/(info|lfs|evil|x\\.git|\\.|\\.\\.|%2e|%2E%2E|)){0,3}/?") {
            let text = format!("get\nprotocol=https\nhost=github.com\npath={path}\n");
            let request = parse_request(text.as_bytes()).unwrap();
            with_live(|live| {
                if let Ok(Grant::Repository(authorized)) = decide(&request, Some(live), true) {
                    let repo = authorized.get().0.to_string();
                    prop_assert!(live.scope.covers(&repo));
                    let lower = path.trim_start_matches('/').to_ascii_lowercase();
                    prop_assert!(lower.starts_with(&repo.to_ascii_lowercase()), "{} vs {}", path, repo);
                    // Nothing in a granted path can lead a URL elsewhere once normalized.
                    let rest = lower.trim_end_matches('/');
                    prop_assert!(!rest.contains('%'), "{}", path);
                    prop_assert!(
                        rest.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
                        "{}", path
                    );
                }
                Ok(())
            })?;
        }
    }
}
