//! Integration tests of `codespace-agentctl policy <topic>`: spawn the real binary, feed one
//! JSON object on stdin (or `--input FILE`), and check the exact JSON printed and the exit code
//! (0 for any decision, 2 for invalid input with the field's JSON pointer on stderr).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn agentctl(args: &[&str], stdin: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that does not read stdin (`--input FILE`, a usage error) may exit first.
    if let Err(err) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs a topic that must decide; returns the parsed output (exactly one JSON line).
fn decide(topic: &str, input: &Value) -> Value {
    let out = agentctl(&["policy", topic], &input.to_string());
    assert_eq!(out.code, 0, "{topic} {input}: stderr {}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one JSON object on one line: {}",
        out.stdout
    );
    serde_json::from_str(&out.stdout).unwrap()
}

/// Runs a topic on invalid input; returns stderr after checking exit 2 and empty stdout.
fn reject(topic: &str, input: &str) -> String {
    let out = agentctl(&["policy", topic], input);
    assert_eq!(out.code, 2, "{topic} {input}: stdout {}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out.stderr
}

fn token_input(access: &str, requested: Value, authorized: bool) -> Value {
    json!({
        "repository": "octo/app", "access": {"octo/app": access, "octo/lib": "read"},
        "pull_request": null, "fork": null, "requested": requested,
        "authorized": authorized, "prebuild": false, "org_policy": null
    })
}

#[test]
fn token_scope_allow_deny_invalid() {
    let requested = json!({"octo/lib": {"permissions": {"contents": "write"}}});
    assert_eq!(
        decide(
            "token-scope",
            &token_input("write", requested.clone(), true)
        ),
        json!({
            "repositories": {
                "octo/app": {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
                "octo/lib": {"contents": "read"}
            },
            "fork_on_push": false,
            "denied": [{"repository": "octo/lib", "permission": "contents", "requested": "write", "reason": "exceeds-creator-access"}]
        })
    );
    assert_eq!(
        decide("token-scope", &token_input("read", requested, false)),
        json!({
            "repositories": {"octo/app": {"contents": "read", "metadata": "read"}},
            "fork_on_push": true,
            "denied": [{"repository": "octo/lib", "permission": "contents", "requested": "write", "reason": "not-authorized"}]
        })
    );
    let mut missing = token_input("write", Value::Null, false);
    missing.as_object_mut().unwrap().remove("prebuild");
    let stderr = reject("token-scope", &missing.to_string());
    assert!(
        stderr.contains("/prebuild: required field is missing"),
        "{stderr}"
    );
    let mut unknown = token_input("write", Value::Null, false);
    unknown["access"]["octo/app"] = json!("owner");
    unknown["color"] = json!("blue");
    let stderr = reject("token-scope", &unknown.to_string());
    assert!(
        stderr.contains("/access/octo~1app: expected one of"),
        "{stderr}"
    );
    assert!(stderr.contains("/color: unknown field"), "{stderr}");
}

fn port_input(visibility: &str, principal: Value) -> Value {
    json!({
        "codespace": {"owner": "mona", "organization": "octo"}, "visibility": visibility,
        "principal": principal, "now": "2026-03-01T10:00:00Z", "org_policy": {"port_visibility": ["org"]}
    })
}

#[test]
fn port_access_allow_deny_invalid() {
    let member = json!({"login": "hubot", "organizations": ["OCTO"], "authenticated_at": "2026-03-01T09:00:00Z"});
    assert_eq!(
        decide("port-access", &port_input("public", member.clone())),
        json!({"decision": "allow", "effective_visibility": "org", "reason": null})
    );
    assert_eq!(
        decide("port-access", &port_input("private", member)),
        json!({"decision": "deny", "effective_visibility": "private", "reason": "not-owner"})
    );
    assert_eq!(
        decide("port-access", &port_input("org", Value::Null)),
        json!({"decision": "deny", "effective_visibility": "org", "reason": "authentication-required"})
    );
    let stale =
        json!({"login": "mona", "organizations": [], "authenticated_at": "2026-03-01T07:00:00Z"});
    assert_eq!(
        decide("port-access", &port_input("private", stale)),
        json!({"decision": "deny", "effective_visibility": "private", "reason": "authentication-expired"})
    );
    let mut bad = port_input("private", Value::Null);
    bad["now"] = json!("yesterday");
    let stderr = reject("port-access", &bad.to_string());
    assert!(
        stderr.contains("/now: expected an RFC 3339 time"),
        "{stderr}"
    );
}

#[test]
fn port_replay_allow_deny_invalid() {
    let input = json!({
        "org_policy": null,
        "events": [
            {"op": "add", "port": 3000},
            {"op": "set_visibility", "port": 3000, "visibility": "public"},
            {"op": "add", "port": 5432},
            {"op": "remove", "port": 5432},
            {"op": "set_visibility", "port": 5432, "visibility": "org"},
            {"op": "policy", "org_policy": {"port_visibility": []}},
            {"op": "add", "port": 0},
            {"op": "add", "port": 8080},
            {"op": "set_visibility", "port": 8080, "visibility": "org"}
        ]
    });
    assert_eq!(
        decide("port-replay", &input),
        json!({
            "ports": {"3000": "public", "8080": "org"},
            "rejected": [{"index": 4, "reason": "unknown-port"}, {"index": 6, "reason": "invalid-port"}]
        })
    );
    let mut restarted = input.clone();
    restarted["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"op": "restart"}));
    restarted["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"op": "set_visibility", "port": 3000, "visibility": "org"}));
    assert_eq!(
        decide("port-replay", &restarted),
        json!({
            "ports": {"3000": "private", "8080": "private"},
            "rejected": [
                {"index": 4, "reason": "unknown-port"},
                {"index": 6, "reason": "invalid-port"},
                {"index": 10, "reason": "visibility-not-allowed"}
            ]
        })
    );
    let stderr = reject(
        "port-replay",
        r#"{"org_policy": null, "events": [{"op": "add", "port": "3000"}]}"#,
    );
    assert!(
        stderr.contains("/events/0/port: expected an integer"),
        "{stderr}"
    );
}

#[test]
fn secrets_allow_deny_invalid() {
    let input = json!({
        "creator_access": "write", "pull_request_from_fork": false, "prebuild": false,
        "org_policy": {"secrets": {"deny_names": ["CORP_*"]}},
        "user": {"TOKEN": "s3cr3t-user"},
        "repository": {"token": "s3cr3t-repo", "BASH_ENV": "/tmp/x", "CORP_KEY": "k"},
        "organization": {"ORG_KEY": "s3cr3t-org", "github_pat": "x"}
    });
    let out = agentctl(&["policy", "secrets"], &input.to_string());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains("s3cr3t"),
        "a value was printed: {}",
        out.stdout
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({
            "environment": {"ORG_KEY": "organization", "TOKEN": "user"},
            "rejected": [
                {"level": "repository", "name": "BASH_ENV", "reason": "dangerous-name"},
                {"level": "repository", "name": "CORP_KEY", "reason": "dangerous-name"},
                {"level": "organization", "name": "github_pat", "reason": "reserved-prefix"}
            ],
            "withheld": null
        })
    );
    let mut fork = input.clone();
    fork["pull_request_from_fork"] = json!(true);
    let out = decide("secrets", &fork);
    assert_eq!(out["environment"], json!({}));
    assert_eq!(out["withheld"], json!("fork-pull-request"));
    let mut bad = input;
    bad["user"]["TOKEN"] = json!({"nested": "s3cr3t-user"});
    let stderr = reject("secrets", &bad.to_string());
    assert!(
        stderr.contains("/user/TOKEN: expected a string"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

#[test]
fn extensions_allow_deny_invalid() {
    let input = json!({
        "org_policy": {"extensions": {"deny": ["evil"]}},
        "trust": "trusted",
        "requested": ["ms-python.python@1.0.0", "EVIL.miner", "-ms-vscode.cpptools", "bad id"]
    });
    assert_eq!(
        decide("extensions", &input),
        json!({
            "install": [{"id": "ms-python.python", "version": "1.0.0"}],
            "remove": [{"id": "ms-vscode.cpptools"}],
            "refused": [
                {"id": "EVIL.miner", "reason": "denied-by-organization"},
                {"id": "bad id", "reason": "invalid-id"}
            ]
        })
    );
    let mut restricted = input.clone();
    restricted["trust"] = json!("restricted");
    assert_eq!(
        decide("extensions", &restricted)["refused"][0],
        json!({"id": "ms-python.python@1.0.0", "reason": "untrusted-repository"})
    );
    let stderr = reject("extensions", r#"{"org_policy": null, "trust": "trusted"}"#);
    assert!(
        stderr.contains("/requested: required field is missing"),
        "{stderr}"
    );
}

#[test]
fn lifecycle_allow_deny_invalid() {
    let input = json!({
        "creator_access": "admin", "pull_request_from_fork": false, "prebuild": false,
        "repository": "octo/app", "org_policy": {"trusted_repositories": ["octo/*"], "lifecycle_commands": "trusted-only"}
    });
    assert_eq!(
        decide("lifecycle", &input),
        json!({"profile": "trusted", "secrets": true, "token": "full", "reason": null})
    );
    let mut prebuild = input.clone();
    prebuild["prebuild"] = json!(true);
    assert_eq!(
        decide("lifecycle", &prebuild),
        json!({"profile": "blocked", "secrets": false, "token": "none", "reason": "prebuild"})
    );
    let mut other = input.clone();
    other["repository"] = json!("other/app");
    other["org_policy"]["lifecycle_commands"] = json!("run");
    assert_eq!(
        decide("lifecycle", &other),
        json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "not-trusted-by-organization"})
    );
    let mut bad = input;
    bad["org_policy"]["idle_timeout_minutes"] = json!(500);
    let stderr = reject("lifecycle", &bad.to_string());
    assert!(
        stderr.contains(
            "/org_policy/idle_timeout_minutes: idle timeout 500 is outside 5-240 minutes"
        ),
        "{stderr}"
    );
}

#[test]
fn input_file_syntax_errors_and_usage() {
    let path = std::env::temp_dir().join(format!("policy-cli-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"creator_access": "write", "pull_request_from_fork": false, "prebuild": false, "repository": "octo/app", "org_policy": null}"#).unwrap();
    let out = agentctl(
        &["policy", "lifecycle", "--input", path.to_str().unwrap()],
        "not read",
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["profile"],
        "trusted"
    );

    let missing = agentctl(
        &[
            "policy",
            "lifecycle",
            "--input",
            "/nonexistent/policy-input.json",
        ],
        "",
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/policy-input.json"),
        "{}",
        missing.stderr
    );

    let stderr = reject(
        "lifecycle",
        "{\n  \"creator_access\": \"write\",\n  \"creator_access\": \"read\"\n}",
    );
    assert!(
        stderr.contains("not valid JSON") && stderr.contains("duplicate key"),
        "{stderr}"
    );
    let stderr = reject("lifecycle", "");
    assert!(stderr.contains("not valid JSON"), "{stderr}");

    let unknown = agentctl(&["policy", "weather"], "{}");
    assert_eq!(unknown.code, 2);
    assert!(unknown.stdout.is_empty());
}
