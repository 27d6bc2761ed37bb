//! The audit trail end to end (issue 18): the real agent records every security-relevant
//! decision and action, `codespace-agentctl trail` reads it back (paged, `--since`,
//! `--follow`), and no secret value ever reaches it.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::forwarding::*;
use support::{json_out, rfc3339_in, stderr, stdout, Agent};

/// Secret values fed through every path that records; none may appear in the trail.
const TOKEN: &str = "ghs_TRAILTOKEN0123456789abcdef";
const SECRET: &str = "trail-secret-value-8f3a1c";

/// The whole trail as `codespace-agentctl trail` prints it.
fn trail(agent: &Agent, extra: &[&str]) -> (String, Vec<Value>) {
    let mut args = vec!["trail"];
    args.extend_from_slice(extra);
    let out = agent.ctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (text, records)
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

fn credential(agent: &Agent, path: &str) -> String {
    agent.git_credential(&format!("protocol=https\nhost=github.com\npath={path}\n\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_a_record_and_no_secret_reaches_the_trail() {
    let dev = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dev.local_addr().unwrap().port();
    let agent = Agent::start(&format!(
        r#"{CODESPACE}, "lifecycle": {{"launcher": "plain"}}, "ports": {{"allowed_visibilities": ["private", "org", "public"]}}"#
    ));
    // Session, token and secrets (the values are the ones searched for below).
    agent.session_create_with_write_access(&[]);
    json_out(&agent.put_token(TOKEN, &rfc3339_in(3600)));
    let secrets = agent.write(
        "secrets.json",
        &format!(r#"{{"TRAIL_SECRET": "{SECRET}"}}"#),
    );
    json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    // The broker: answered in scope, refused out of scope.
    assert!(credential(&agent, "octo/app.git").contains(TOKEN));
    assert_eq!(credential(&agent, "octo/other.git"), "");
    // A lifecycle run that prints both secrets.
    let ws = agent.dir.path().join("ws");
    std::fs::create_dir_all(ws.join(".devcontainer")).unwrap();
    std::fs::write(
        ws.join(".devcontainer/devcontainer.json"),
        r#"{"postCreateCommand": "echo $TRAIL_SECRET $GITHUB_TOKEN"}"#,
    )
    .unwrap();
    let (report, _) = agent.lifecycle_run_json(
        ".devcontainer/devcontainer.json",
        ws.to_str().unwrap(),
        "create",
        &["--repository", "octo/app", "--creator-access", "write"],
    );
    assert_eq!(report["status"], "succeeded", "{report}");
    // Refused requests whose fields carry the secret values (an agent that echoed a field
    // into its error would put them in the record).
    let c = control(&agent).await;
    let t = Duration::from_secs(5);
    for (kind, body) in [
        (
            "token_put",
            serde_json::json!({"value": TOKEN, "expires_at": format!("x{TOKEN}"),
                               "scope": {SECRET: 1}}),
        ),
        (
            "token_put",
            serde_json::json!({"value": TOKEN, "expires_at": rfc3339_in(60),
                               "scope": {"repositories": {SECRET: {"contents": SECRET}}}}),
        ),
        (
            "ports_visibility",
            serde_json::json!({"port": SECRET, "visibility": "public"}),
        ),
        (
            "ports_visibility",
            serde_json::json!({"port": port, "visibility": SECRET}),
        ),
        (
            "secrets_put",
            serde_json::json!({"secrets": [{"name": SECRET}], SECRET: TOKEN}),
        ),
        ("session", serde_json::json!({"event": SECRET})),
    ] {
        assert!(c.request(kind, fields(body), t).await.is_err(), "{kind}");
    }
    // A handshake with the wrong key.
    let wrong = agent.write("wrong-key", "another-key-that-is-long-enough-0123456789");
    assert!(!agent.ctl_with_key(&wrong, &["status"]).status.success());
    // A visibility change and a forwarded connection that carries the secret as bytes.
    let e = epoch(&c, port).await;
    set_visibility(&c, port, "public").await;
    let e2 = epoch(&c, port).await;
    assert!(e2 > e);
    let server = tokio::spawn(async move {
        let l = tokio::net::TcpListener::from_std({
            dev.set_nonblocking(true).unwrap();
            dev
        })
        .unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        s.write_all(b"ok").await.unwrap();
        buf
    });
    let mut s = forward(&agent, port, e2, who("hubot", &[])).await.unwrap();
    s.write_all(SECRET.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"ok");
    assert_eq!(server.await.unwrap(), SECRET.as_bytes());
    // A forward refused (a stale epoch).
    let _ = refused(&agent, port, &{
        let key = codespace_agent::wire::grant::GrantKey::new(&GRANT_KEY).unwrap();
        codespace_agent::host::forward::mint(
            &key,
            port,
            e,
            who("hubot", &[]),
            now(),
            Duration::from_secs(60),
        )
    })
    .await;

    // The forwarded connection's record is written when its relay task ends: wait for it.
    let mut waited = 0;
    let (text, records) = loop {
        let (text, records) = trail(&agent, &[]);
        if of_kind(&records, "forward")
            .iter()
            .any(|r| r["decision"] == "allowed")
            || waited > 100
        {
            break (text, records);
        }
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Nothing secret, anywhere.
    for secret in [TOKEN, SECRET] {
        assert!(!text.contains(secret), "{secret} in the trail:\n{text}");
    }
    // Numbered from 1 without gaps, each with a time.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{text}");
    assert!(records.iter().all(|r| r["time"].as_str().is_some()));

    let session = of_kind(&records, "session");
    assert_eq!(session[0]["event"], "create", "{text}");
    assert_eq!(session[0]["codespace"]["creator_access"], "write", "{text}");
    assert_eq!(session[0]["codespace"]["repository"], "octo/app", "{text}");
    assert_eq!(of_kind(&records, "token_delivered").len(), 1, "{text}");
    let secrets = of_kind(&records, "secrets_delivered");
    assert!(
        secrets[0].to_string().contains("TRAIL_SECRET"),
        "secret names are recorded: {text}"
    );
    let cred = of_kind(&records, "credential");
    let answered = cred.iter().find(|r| r["outcome"] == "answered").unwrap();
    assert_eq!(answered["repository"], "octo/app", "{text}");
    assert!(answered["pid"].as_u64().is_some(), "{text}");
    assert!(
        answered["exe"].as_str().is_some() || answered["comm"].as_str().is_some(),
        "{text}"
    );
    let silent = cred.iter().find(|r| r["outcome"] == "silent").unwrap();
    assert_eq!(
        (&silent["repository"], &silent["reason"]),
        (&Value::from("octo/other"), &Value::from("out-of-scope")),
        "{text}"
    );
    let lifecycle = of_kind(&records, "lifecycle");
    // Creating the session changed the trust facts: what restricted runs left was killed.
    assert!(
        lifecycle.iter().any(|r| r["action"] == "restricted_killed"),
        "{text}"
    );
    let run = lifecycle.iter().find(|r| r["run"].is_string()).unwrap();
    assert_eq!(run["phase"], "create", "{text}");
    assert_eq!(run["status"], "succeeded", "{text}");
    assert_eq!(run["commands"][0]["exit_code"], 0, "{text}");
    assert_eq!(run["profile"], "trusted", "{text}");
    assert_eq!(run["secrets_injected"], true, "{text}");
    let vis = of_kind(&records, "visibility");
    assert_eq!(
        (&vis[0]["port"], &vis[0]["visibility"]),
        (&Value::from(port), &Value::from("public")),
        "{text}"
    );
    let fwd = of_kind(&records, "forward");
    let allowed = fwd.iter().find(|r| r["decision"] == "allowed").unwrap();
    assert_eq!(allowed["principal"], "hubot", "{text}");
    assert_eq!(allowed["port"], port, "{text}");
    assert_eq!(allowed["visibility"], "public", "{text}");
    assert_eq!(allowed["bytes_to_port"], SECRET.len(), "{text}");
    assert_eq!(allowed["bytes_from_port"], 2, "{text}");
    assert_eq!(allowed["ended"], "closed", "{text}");
    assert!(
        allowed["start"].as_str() <= allowed["end"].as_str(),
        "{text}"
    );
    let stale = fwd.iter().find(|r| r["decision"] == "refused").unwrap();
    assert_eq!(stale["reason"], "stale-epoch", "{text}");
    let refusals = of_kind(&records, "refusal");
    assert!(
        refusals
            .iter()
            .any(|r| r["what"] == "request" && r["request"] == "token_put"),
        "{text}"
    );
    assert!(
        refusals
            .iter()
            .any(|r| r["what"] == "request" && r["request"] == "ports_visibility"),
        "{text}"
    );
    assert!(refusals.iter().any(|r| r["what"] == "handshake"), "{text}");

    // `--since`: exactly the records after it.
    let (_, after) = trail(&agent, &["--since", "3"]);
    assert_eq!(after.first().unwrap()["seq"], 4);
    assert_eq!(after.len(), records.len() - 3);
}

#[test]
fn a_host_that_reconnects_gets_what_it_missed_in_pages_and_follows_without_duplicates() {
    // A ring of 600: more than one page (500), and old records fall out.
    let agent = Agent::start(r#""audit_records": 600"#);
    // 700 refused requests (unknown type): 100 fall out of the ring.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = agent.client().await;
        for _ in 0..700 {
            let _ = c
                .request(
                    "no_such_request",
                    serde_json::Map::new(),
                    Duration::from_secs(5),
                )
                .await;
        }
    });
    let out = agent.ctl(&["trail", "--since", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (101..=700).collect::<Vec<_>>());
    assert!(
        stderr(&out).contains("50 audit records after 50 are no longer kept"),
        "{}",
        stderr(&out)
    );

    // --follow: the records kept after --since, then new ones as they happen, each once.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
        .args(["--connect", &agent.addr(), "--key-file"])
        .arg(agent.key_file())
        .args(["trail", "--since", "698", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut next_seq = || {
        let line = lines.next().unwrap().unwrap();
        serde_json::from_str::<Value>(&line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((next_seq(), next_seq()), (699, 700));
    rt.block_on(async {
        let c = agent.client().await;
        let _ = c
            .request(
                "still_no_such_request",
                serde_json::Map::new(),
                Duration::from_secs(5),
            )
            .await;
    });
    assert_eq!(next_seq(), 701);
    // Stopped by PID: the one this test started.
    let _ = Command::new("kill").arg(follow.id().to_string()).status();
    let _ = follow.wait();
}

/// Anyone who can reach the listener can be refused as often as they like: a flood of
/// handshakes with the wrong key is recorded at most 8 a second, the rest counted in the next
/// record, so it cannot push the host's records out of the ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_handshakes_is_counted_not_recorded_one_by_one() {
    use codespace_agent::host::{Client, ConnectOptions};
    use codespace_agent::wire::SharedKey;
    let agent = Agent::start(r#""audit_records": 100"#);
    agent.session_create_with_write_access(&[]);
    let mut wrong = ConnectOptions::new(
        agent.addr().parse().unwrap(),
        Some(SharedKey::new(b"another-key-that-is-long-enough-0123456789").unwrap()),
    );
    wrong.backoff.deadline = Some(Duration::ZERO);
    for _ in 0..300 {
        assert!(Client::connect_once(&wrong).await.is_err());
    }
    // One more refusal a second later carries the count of those left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(Client::connect_once(&wrong).await.is_err());
    let (text, records) = trail(&agent, &[]);
    let refusals = of_kind(&records, "refusal");
    let counted: u64 = refusals
        .iter()
        .filter_map(|r| r["unrecorded_before"].as_u64())
        .sum();
    assert!(
        refusals.len() < 60,
        "{} refusal records for 301 refused handshakes:\n{text}",
        refusals.len()
    );
    assert_eq!(refusals.len() as u64 + counted, 301, "{text}");
    // The session record from before the flood is still kept.
    assert_eq!(of_kind(&records, "session").len(), 1, "{text}");
}
