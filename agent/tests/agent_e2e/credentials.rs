//! The git credential broker and `exec`, through the real daemon and the real helper binary.

use std::process::Command;

use crate::support::{json_out, rfc3339_in, Agent};

fn deliver_token(agent: &Agent) {
    json_out(&agent.put_token("ghs_broker_token", &rfc3339_in(8 * 3600)));
}

#[test]
fn credentials_only_for_the_token_host_and_repositories_in_scope() {
    let agent = Agent::start("");
    deliver_token(&agent);
    let answer = agent.git_credential("protocol=https\nhost=github.com\npath=octo/app.git\n\n");
    assert!(answer.contains("username=x-access-token\n"), "{answer}");
    assert!(answer.contains("password=ghs_broker_token\n"), "{answer}");
    assert!(answer.contains("password_expiry_utc="), "{answer}");
    // Out of scope, another host, plain http: nothing.
    assert_eq!(
        agent.git_credential("protocol=https\nhost=github.com\npath=octo/other.git\n\n"),
        ""
    );
    assert_eq!(
        agent.git_credential("protocol=https\nhost=evil.example\npath=octo/app.git\n\n"),
        ""
    );
    assert_eq!(
        agent.git_credential("protocol=http\nhost=github.com\npath=octo/app.git\n\n"),
        ""
    );
}

#[test]
fn a_caller_with_a_uid_not_allowed_gets_nothing() {
    // The test runs as some uid; allow only another one.
    let me = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let other = if me == 4242 { 4243 } else { 4242 };
    let agent = Agent::start(&format!("\"credential_uids\": [{other}]"));
    deliver_token(&agent);
    assert_eq!(
        agent.git_credential("protocol=https\nhost=github.com\npath=octo/app.git\n\n"),
        ""
    );
}

#[test]
fn no_credentials_without_a_token() {
    let agent = Agent::start("");
    assert_eq!(
        agent.git_credential("protocol=https\nhost=github.com\npath=octo/app.git\n\n"),
        ""
    );
}

#[test]
fn exec_runs_a_command_with_the_environment() {
    let agent = Agent::start("");
    deliver_token(&agent);
    let secrets = agent.write("s.json", r#"{"NPM_TOKEN": "from-the-vault"}"#);
    json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    json_out(&agent.ctl(&["session", "create"]));
    let out = Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
        .args(["exec", "--state-dir"])
        .arg(agent.dir.path().join("state"))
        .args([
            "--",
            "sh",
            "-c",
            "printf '%s %s' \"$NPM_TOKEN\" \"$GITHUB_TOKEN\"",
        ])
        .env("GITHUB_TOKEN", "stale")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-the-vault ghs_broker_token"
    );
}
