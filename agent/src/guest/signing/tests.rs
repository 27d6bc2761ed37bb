//! The signing service without sockets: decisions, the host's answers, the wait, the git
//! configuration's writes, and one connection over an in-memory stream.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::broadcast;

use super::*;

const EMAIL: &str = "mona@example.com";

fn commit(email: &str) -> Vec<u8> {
    format!(
        "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor M <{email}> 1 +0000\n\
         committer M <{email}> 1 +0000\n\nmessage\n"
    )
    .into_bytes()
}

/// An armored SSHSIG blob for `namespace` (structurally valid; no real signature).
fn ssh_armor(namespace: &str) -> String {
    let mut b = b"SSHSIG".to_vec();
    b.extend_from_slice(&1u32.to_be_bytes());
    for field in [&b"key"[..], namespace.as_bytes(), b"", b"sha512", b"sig"] {
        b.extend_from_slice(&(field.len() as u32).to_be_bytes());
        b.extend_from_slice(field);
    }
    format!(
        "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

struct Fixture {
    service: Arc<SigningService>,
    events: broadcast::Receiver<Event>,
    writes: Arc<Mutex<Vec<Option<SigningFormat>>>>,
}

fn fixture(wait: Duration) -> Fixture {
    let (sink, events) = EventSink::channel(64);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let w = writes.clone();
    let config = SigningConfig {
        wait,
        ..SigningConfig::default()
    };
    let service = SigningService::new(
        config,
        sink,
        Arc::new(move |f| {
            w.lock().unwrap().push(f);
            Ok(())
        }),
    );
    Fixture {
        service,
        events,
        writes,
    }
}

fn identity(repository: &str, prebuild: bool) -> CodespaceIdentity {
    CodespaceIdentity {
        repository: Some(repository.into()),
        prebuild: prebuild.then_some(true),
        ..Default::default()
    }
}

fn on() -> SigningSettings {
    settings_field(Some(
        json!({"mode": "ssh", "trusted": ["octo/*"], "verified_emails": [EMAIL]}),
    ))
    .unwrap()
    .unwrap()
}

/// The next signing decision in the audit trail (its `audit` event).
async fn next_decision(events: &mut broadcast::Receiver<Event>) -> Map<String, Value> {
    loop {
        let record = next(events, "audit").await;
        if record["kind"] == "signing" {
            return record;
        }
    }
}

/// The next event with `name`.
async fn next(events: &mut broadcast::Receiver<Event>, name: &str) -> Map<String, Value> {
    loop {
        let ev = events.recv().await.unwrap();
        if ev.name == name {
            return ev.fields;
        }
    }
}

#[test]
fn the_git_configuration_follows_the_session() {
    let f = fixture(Duration::from_secs(10));
    // At start: a stale file is removed.
    assert_eq!(*f.writes.lock().unwrap(), vec![None]);
    f.service.update(Some(on()), &identity("octo/app", false));
    f.service.update(None, &identity("octo/app", false));
    // A prebuild, then an untrusted repository, then a session without signing: off.
    f.service.update(Some(on()), &identity("octo/app", true));
    f.service.update(Some(on()), &identity("octo/tools", false));
    f.service.update(
        Some(SigningSettings::default()),
        &identity("octo/app", false),
    );
    assert_eq!(
        *f.writes.lock().unwrap(),
        vec![
            None,
            Some(SigningFormat::Ssh),
            None,
            Some(SigningFormat::Ssh),
            None
        ],
        "written only when it changes"
    );
    assert_eq!(f.service.status()["reason"], "signing-off");
}

#[tokio::test]
async fn refusals_are_recorded_with_their_code_and_never_reach_the_host() {
    let mut f = fixture(Duration::from_secs(10));
    f.service.update(Some(on()), &identity("octo/app", false));
    let answer = f
        .service
        .sign(
            &Caller::uid(1000),
            SigningFormat::Ssh,
            commit("eve@example.com"),
        )
        .await;
    let BrokerAnswer::Refused(reason) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(reason.code, "unverified-email");
    let decision = next_decision(&mut f.events).await;
    assert_eq!(decision["decision"], "refused");
    assert_eq!(decision["code"], "unverified-email");
    assert_eq!(decision["uid"], 1000);
    assert!(f.events.try_recv().is_err(), "no signing_request was sent");
}

#[tokio::test]
async fn the_host_signature_is_checked_then_handed_to_the_helper() {
    let mut f = fixture(Duration::from_secs(10));
    f.service.update(Some(on()), &identity("octo/app", false));
    let service = f.service.clone();
    let signing = tokio::spawn(async move {
        service
            .sign(&Caller::uid(1000), SigningFormat::Ssh, commit(EMAIL))
            .await
    });
    let allowed = next_decision(&mut f.events).await;
    assert_eq!(allowed["decision"], "allowed");
    assert_eq!(allowed["signer"], EMAIL);
    let request = next(&mut f.events, REQUEST_EVENT).await;
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["repository"], "octo/app");
    assert_eq!(request["object"], "commit");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(request["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, commit(EMAIL));
    let put = |signature: String| {
        let mut m = Map::new();
        m.insert("signing_id".into(), id.clone().into());
        m.insert("signature".into(), signature.into());
        f.service.put_signature(m)
    };
    // A signature for another namespace, or of the other format, is refused; the request
    // still waits.
    let err = put(ssh_armor("file")).unwrap_err().to_string();
    assert!(err.contains("namespace \"file\""), "{err}");
    assert!(put("not armor".into()).is_err());
    put(ssh_armor("git")).unwrap();
    assert_eq!(
        signing.await.unwrap(),
        BrokerAnswer::Signature(ssh_armor("git"))
    );
    assert_eq!(next_decision(&mut f.events).await["decision"], "signed");
    // Answered: a second answer finds nothing waiting.
    let err = put(ssh_armor("git")).unwrap_err().to_string();
    assert!(err.contains("is waiting"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_host_times_out_and_a_refusing_one_is_heard() {
    let mut f = fixture(Duration::from_secs(10));
    f.service.update(Some(on()), &identity("octo/app", false));
    let answer = f
        .service
        .sign(&Caller::uid(7), SigningFormat::Ssh, commit(EMAIL))
        .await;
    let BrokerAnswer::Refused(reason) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(reason.code, "timeout");
    let timed_out = loop {
        let d = next_decision(&mut f.events).await;
        if d["decision"] != "allowed" {
            break d;
        }
    };
    assert_eq!(timed_out["decision"], "timed_out");
    assert_eq!(timed_out["waited_ms"], 10_000);
    assert_eq!(f.service.status()["waiting"], 0);

    let service = f.service.clone();
    let signing = tokio::spawn(async move {
        service
            .sign(&Caller::uid(7), SigningFormat::Ssh, commit(EMAIL))
            .await
    });
    let id = next(&mut f.events, REQUEST_EVENT).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut m = Map::new();
    m.insert("signing_id".into(), id.into());
    m.insert("reason".into(), "locked\n\x1b[31m".into());
    f.service.refuse_signature(m).unwrap();
    let BrokerAnswer::Refused(reason) = signing.await.unwrap() else {
        panic!()
    };
    assert_eq!(reason.code, "host-refused");
    assert_eq!(reason.message, "the host refused to sign: locked  [31m");
}

#[test]
fn host_requests_are_checked_field_by_field() {
    let f = fixture(Duration::from_secs(10));
    for (fields, needle) in [
        (json!({}), "missing `signing_id`"),
        (
            json!({"signing_id": 1, "signature": "x"}),
            "must be a string",
        ),
        (
            json!({"signing_id": "a", "signature": "x", "extra": 1}),
            "unknown field `extra`",
        ),
        (
            json!({"signing_id": "nope", "signature": ssh_armor("git")}),
            "is waiting",
        ),
    ] {
        let err = f
            .service
            .put_signature(fields.as_object().cloned().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    assert!(settings_field(Some(json!({"mode": "gpg"})))
        .unwrap_err()
        .contains("signing.mode"));
    assert!(settings_field(Some(json!({"trusted": ["a"]})))
        .unwrap_err()
        .contains("signing.trusted[0]"));
    assert!(settings_field(Some(json!({"modes": "ssh"})))
        .unwrap_err()
        .contains("unknown field"));
    assert_eq!(settings_field(Some(Value::Null)).unwrap(), None);
}

#[tokio::test]
async fn one_connection_over_a_stream() {
    let f = fixture(Duration::from_secs(10));
    let ask = |request: Vec<u8>| {
        let service = f.service.clone();
        async move {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let task = tokio::spawn(async move {
                broker::handle_connection(
                    server,
                    &Caller::uid(1000),
                    &service,
                    Duration::from_secs(5),
                )
                .await;
            });
            client.write_all(&request).await.unwrap();
            client.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            task.await.unwrap();
            protocol::BrokerAnswer::decode(&answer).unwrap()
        }
    };
    let off = ask(protocol::HelperRequest::Enabled.encode()).await;
    assert!(
        matches!(off, BrokerAnswer::Disabled(ref r) if r.code == "signing-off"),
        "{off:?}"
    );
    f.service.update(Some(on()), &identity("octo/app", false));
    assert_eq!(
        ask(protocol::HelperRequest::Enabled.encode()).await,
        BrokerAnswer::Enabled(SigningFormat::Ssh)
    );
    let junk = ask(b"get\nprotocol=https\n\n".to_vec()).await;
    assert!(
        matches!(junk, BrokerAnswer::Refused(ref r) if r.code == "malformed-request"),
        "{junk:?}"
    );
    // No host listens (the fixture's receiver is dropped only at the end): refused at once.
    drop(f.events);
    let lonely = ask(protocol::HelperRequest::Sign {
        format: SigningFormat::Ssh,
        payload: commit(EMAIL),
    }
    .encode())
    .await;
    assert!(
        matches!(lonely, BrokerAnswer::Refused(ref r) if r.code == "no-host"),
        "{lonely:?}"
    );
}
