//! Token and secrets through the real daemon: delivery, snapshot semantics, expiry, redaction.

use std::time::Duration;

use crate::support::{json_out, rfc3339_in, stderr, Agent};

#[test]
fn secrets_are_pending_until_resume_then_land_in_the_environment() {
    let agent = Agent::start("");
    let secrets = agent.write(
        "secrets.json",
        r#"{"NPM_TOKEN": "npm-value-1", "API_KEY": "it's $(not) run"}"#,
    );
    let report = json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    assert_eq!(report["accepted"].as_array().unwrap().len(), 2, "{report}");
    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(
        status["pending_secrets"],
        serde_json::json!(["API_KEY", "NPM_TOKEN"])
    );
    assert_eq!(status["secrets"], serde_json::json!([]));
    let env = std::fs::read_to_string(agent.env_file()).unwrap();
    assert!(
        !env.contains("npm-value-1"),
        "pending secrets must not land before resume: {env}"
    );

    let report = json_out(&agent.ctl(&["session", "resume"]));
    assert_eq!(report["applied_pending"], true);
    let env = std::fs::read_to_string(agent.env_file()).unwrap();
    assert!(env.contains("NPM_TOKEN='npm-value-1'"), "{env}");
    assert!(env.contains(r#"API_KEY='it'\''s $(not) run'"#), "{env}");
    // The file is sourceable and gives back the exact values.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". {} && printf %s \"$API_KEY\"",
            agent.env_file().display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $(not) run");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(agent.env_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(
        status["secrets"],
        serde_json::json!(["API_KEY", "NPM_TOKEN"])
    );
    assert_eq!(status["pending_secrets"], serde_json::Value::Null);
    assert!(
        !agent.log().contains("npm-value-1"),
        "secret value in the agent log"
    );
}

#[test]
fn refused_names_are_reported_per_name_and_the_rest_accepted() {
    let agent = Agent::start("");
    let secrets = agent.write(
        "s.json",
        r#"{"GOOD": "1", "GITHUB_EVIL": "2", "LD_PRELOAD": "3", "9X": "4"}"#,
    );
    let report = json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    assert_eq!(report["accepted"], serde_json::json!(["GOOD"]));
    let rejected: Vec<&str> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 3, "{report}");
    for n in ["GITHUB_EVIL", "LD_PRELOAD", "9X"] {
        assert!(rejected.contains(&n), "{n} not rejected: {report}");
    }
}

#[test]
fn session_create_records_the_codespace_identity() {
    let agent = Agent::start(r#""codespace": {"organization": "octo-org"}"#);
    let r = json_out(&agent.ctl(&[
        "session",
        "create",
        "--owner",
        "octocat",
        "--repository",
        "octo/app",
    ]));
    assert_eq!(r["codespace"]["owner"], "octocat");
    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(
        status["codespace"],
        serde_json::json!({"owner": "octocat", "organization": "octo-org", "repository": "octo/app"})
    );
}

#[test]
fn token_put_exports_and_invalid_deliveries_are_refused() {
    let agent = Agent::start("");
    let args = |exp: &str| agent.put_token("ghs_integration_token\n", exp);
    let r = json_out(&args(&rfc3339_in(3600)));
    assert_eq!(r["host"], "github.com");
    let env = std::fs::read_to_string(agent.env_file()).unwrap();
    assert!(
        env.contains("GITHUB_TOKEN='ghs_integration_token'"),
        "{env}"
    );
    // Already expired: the agent refuses with invalid_argument (exit 1).
    let out = args(&rfc3339_in(-10));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid_argument"),
        "{}",
        stderr(&out)
    );
    // Not RFC 3339: refused before connecting (exit 2).
    assert_eq!(args("tomorrow").status.code(), Some(2));
    assert!(
        !agent.log().contains("ghs_integration_token"),
        "token in the agent log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_pushes_events_and_wipes_the_token() {
    let agent = Agent::start(r#""token": {"expiry_lead_s": 2}"#);
    let client = agent.client().await;
    let out = agent.put_token("ghs_short_lived", &rfc3339_in(3));
    json_out(&out);
    assert!(std::fs::read_to_string(agent.env_file())
        .unwrap()
        .contains("ghs_short_lived"));
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains(&"token_expired".to_owned()) {
            let ev = client.next_event().await.unwrap();
            seen.push(ev.name);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("events so far: {seen:?}; log:\n{}", agent.log()));
    let expiring = seen
        .iter()
        .position(|e| e == "token_expiring")
        .expect("token_expiring before expiry");
    let expired = seen.iter().position(|e| e == "token_expired").unwrap();
    assert!(expiring < expired, "{seen:?}");
    let env = std::fs::read_to_string(agent.env_file()).unwrap();
    assert!(
        !env.contains("ghs_short_lived"),
        "expired token still in the environment: {env}"
    );
    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(status["token"], serde_json::Value::Null);
}

#[test]
fn the_agents_memory_stays_out_of_core_dumps() {
    let agent = Agent::start("");
    let pid = agent.child.as_ref().unwrap().id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let soft_hard: Vec<&str> = core.split_whitespace().skip(4).take(2).collect();
    assert_eq!(soft_hard, ["0", "0"], "no core file, soft or hard: {core}");
    // A non-dumpable process's /proc entries belong to root, whoever runs it; as root that
    // cannot be told apart, so only a non-root run checks it.
    let uid = rustix::process::getuid();
    if !uid.is_root() {
        use std::os::unix::fs::MetadataExt as _;
        let owner = std::fs::metadata(format!("/proc/{pid}/environ"))
            .unwrap()
            .uid();
        assert_eq!(
            owner,
            0,
            "the agent (uid {}) must be non-dumpable",
            uid.as_raw()
        );
    }
}
