//! Table tests of the CLI contracts of port-access, port-replay, secrets, extensions and
//! lifecycle (token-scope's are in `grant_tests.rs`), with exact JSON outputs.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::*;

fn ok(topic: Topic, input: Value) -> Value {
    match run(topic, &input.to_string()) {
        Ok(v) => v,
        Err(err) => panic!("{input}: {err}"),
    }
}

fn invalid(topic: Topic, input: &str) -> Vec<String> {
    match run(topic, input) {
        Err(CliError::Invalid(errs)) => errs.0.iter().map(|e| e.pointer.clone()).collect(),
        Err(CliError::Syntax(err)) => vec![format!("syntax: {err}")],
        Ok(v) => panic!("{input} accepted: {v}"),
    }
}

#[test]
fn topic_names_round_trip() {
    for topic in Topic::ALL {
        assert_eq!(Topic::parse(topic.name()), Some(topic));
    }
    assert_eq!(Topic::parse("nope"), None);
}

fn port_input(visibility: &str, principal: Value, policy: Value) -> Value {
    json!({
        "codespace": {"owner": "mona", "organization": "octo"},
        "visibility": visibility, "principal": principal,
        "now": "2026-01-01T12:00:00Z", "org_policy": policy
    })
}

#[test]
fn port_access_contract() {
    let fresh = |login: &str, orgs: Value| json!({"login": login, "organizations": orgs, "authenticated_at": "2026-01-01T11:00:00+00:00"});
    let table = [
        (
            port_input("public", Value::Null, Value::Null),
            json!({"decision": "allow", "effective_visibility": "public", "reason": null}),
        ),
        (
            port_input("public", Value::Null, json!({"port_visibility": ["org"]})),
            json!({"decision": "deny", "effective_visibility": "org", "reason": "authentication-required"}),
        ),
        (
            port_input(
                "org",
                fresh("hubot", json!(["Octo"])),
                json!({"port_visibility": []}),
            ),
            json!({"decision": "deny", "effective_visibility": "private", "reason": "not-owner"}),
        ),
        (
            port_input("org", fresh("hubot", json!(["Octo"])), json!({})),
            json!({"decision": "allow", "effective_visibility": "org", "reason": null}),
        ),
        (
            port_input("org", fresh("hubot", json!(["other"])), Value::Null),
            json!({"decision": "deny", "effective_visibility": "org", "reason": "not-organization-member"}),
        ),
        (
            port_input("private", fresh("MONA", json!([])), Value::Null),
            json!({"decision": "allow", "effective_visibility": "private", "reason": null}),
        ),
        (
            port_input(
                "private",
                json!({"login": "mona", "organizations": [], "authenticated_at": "2026-01-01T09:00:00Z"}),
                Value::Null,
            ),
            json!({"decision": "deny", "effective_visibility": "private", "reason": "authentication-expired"}),
        ),
        (
            port_input(
                "private",
                json!({"login": "mona", "organizations": [], "authenticated_at": "2026-01-01T14:01:01+02:00"}),
                Value::Null,
            ),
            json!({"decision": "deny", "effective_visibility": "private", "reason": "authentication-invalid"}),
        ),
    ];
    for (input, want) in table {
        assert_eq!(ok(Topic::PortAccess, input.clone()), want, "{input}");
    }
    // Extreme but valid times never panic.
    let edge = port_input(
        "private",
        json!({"login": "mona", "organizations": [], "authenticated_at": "9999-12-31T23:59:59Z"}),
        Value::Null,
    );
    let mut edge = edge;
    edge["now"] = json!("9999-12-31T23:59:59Z");
    assert_eq!(ok(Topic::PortAccess, edge)["decision"], "allow");
    let no_org = json!({"codespace": {"owner": "mona", "organization": null}, "visibility": "org",
                        "principal": null, "now": "2026-01-01T12:00:00Z", "org_policy": null});
    assert_eq!(
        ok(Topic::PortAccess, no_org),
        json!({"decision": "deny", "effective_visibility": "private", "reason": "authentication-required"})
    );
}

#[test]
fn port_access_invalid_inputs() {
    assert_eq!(
        invalid(
            Topic::PortAccess,
            r#"{"codespace": {"owner": "mona"}, "visibility": "secret", "principal": {"login": "x", "organizations": [1], "authenticated_at": "2026-01-01 12:00"}, "now": "2026-01-01T12:00:00", "org_policy": {"port_visibility": "org"}}"#
        ),
        vec![
            "/codespace/organization",
            "/visibility",
            "/principal/organizations/0",
            "/principal/authenticated_at",
            "/now",
            "/org_policy/port_visibility"
        ]
    );
    assert_eq!(invalid(Topic::PortAccess, "[]"), vec![""]);
    assert!(invalid(Topic::PortAccess, "{")
        .join("")
        .starts_with("syntax:"));
}

#[test]
fn port_replay_contract() {
    let input = json!({
        "org_policy": {"port_visibility": ["org", "public"]},
        "events": [
            {"op": "add", "port": 3000},
            {"op": "add", "port": 8080},
            {"op": "set_visibility", "port": 3000, "visibility": "public"},
            {"op": "set_visibility", "port": 8080, "visibility": "org"},
            {"op": "set_visibility", "port": 9999, "visibility": "org"},
            {"op": "add", "port": 70000},
            {"op": "policy", "org_policy": {"port_visibility": ["public"]}},
            {"op": "set_visibility", "port": 3000, "visibility": "org"},
            {"op": "restart"},
            {"op": "set_visibility", "port": 8080, "visibility": "org"},
            {"op": "add", "port": 22},
            {"op": "remove", "port": 22},
            {"op": "remove", "port": 22}
        ]
    });
    assert_eq!(
        ok(Topic::PortReplay, input),
        json!({
            "ports": {"3000": "private", "8080": "private"},
            "rejected": [
                {"index": 4, "reason": "unknown-port"},
                {"index": 5, "reason": "invalid-port"},
                {"index": 9, "reason": "visibility-not-allowed"},
                {"index": 12, "reason": "unknown-port"}
            ]
        })
    );
    assert_eq!(
        ok(Topic::PortReplay, json!({"org_policy": null, "events": []})),
        json!({"ports": {}, "rejected": []})
    );
}

#[test]
fn port_replay_invalid_inputs() {
    assert_eq!(
        invalid(
            Topic::PortReplay,
            r#"{"org_policy": null, "events": [{"op": "add"}, {"op": "jump", "port": 1}, {"op": "restart", "port": 1}, {"op": "add", "port": 1.5}, {"op": "set_visibility", "port": 1, "visibility": "everyone"}, {"op": "policy", "org_policy": {"idle_timeout_minutes": 1}}, 7]}"#
        ),
        vec![
            "/events/0/port",
            "/events/1/op",
            "/events/2/port",
            "/events/3/port",
            "/events/4/visibility",
            "/events/5/org_policy/idle_timeout_minutes",
            "/events/6"
        ]
    );
    assert_eq!(
        invalid(Topic::PortReplay, r#"{"events": []}"#),
        vec!["/org_policy"]
    );
}

#[test]
fn secrets_contract() {
    let input = json!({
        "creator_access": "write", "pull_request_from_fork": false, "prebuild": false,
        "org_policy": {"secrets": {"deny_names": ["NPM_TOKEN"]}},
        "user": {"API_KEY": "u", "npm_token": "x", "1X": "x", "GITHUB_TOKEN": "x"},
        "repository": {"api_key": "r", "DB_URL": "r", "LD_PRELOAD": "x", "Dup": "a", "DUP": "b", "BIG": "x".repeat(49_153)},
        "organization": {"DB_URL": "o", "ORG_ONLY": "o", "BAD NAME": "x"}
    });
    assert_eq!(
        ok(Topic::Secrets, input.clone()),
        json!({
            "environment": {"API_KEY": "user", "DB_URL": "repository", "ORG_ONLY": "organization"},
            "rejected": [
                {"level": "user", "name": "npm_token", "reason": "dangerous-name"},
                {"level": "user", "name": "1X", "reason": "starts-with-digit"},
                {"level": "user", "name": "GITHUB_TOKEN", "reason": "reserved-prefix"},
                {"level": "repository", "name": "LD_PRELOAD", "reason": "dangerous-name"},
                {"level": "repository", "name": "Dup", "reason": "duplicate-name"},
                {"level": "repository", "name": "DUP", "reason": "duplicate-name"},
                {"level": "repository", "name": "BIG", "reason": "too-large"},
                {"level": "organization", "name": "BAD NAME", "reason": "invalid-name"}
            ],
            "withheld": null
        })
    );
    let text = ok(Topic::Secrets, input.clone()).to_string();
    assert!(
        !text.contains("\"u\"") && !text.contains("xxx"),
        "values never printed"
    );
    for (access, fork, prebuild, reason) in [
        ("read", false, false, "no-write-access"),
        ("admin", true, true, "fork-pull-request"),
        ("maintain", false, true, "prebuild"),
    ] {
        let mut i = input.clone();
        i["creator_access"] = json!(access);
        i["pull_request_from_fork"] = json!(fork);
        i["prebuild"] = json!(prebuild);
        let out = ok(Topic::Secrets, i);
        assert_eq!(out["environment"], json!({}));
        assert_eq!(out["withheld"], json!(reason));
    }
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("S{i:03}"), json!("v"))).collect();
    let out = ok(
        Topic::Secrets,
        json!({"creator_access": "write", "pull_request_from_fork": false, "prebuild": false, "org_policy": null,
               "user": {}, "repository": {}, "organization": many}),
    );
    assert_eq!(
        out["rejected"],
        json!([{"level": "organization", "name": "S100", "reason": "too-many"}])
    );
    assert_eq!(out["environment"].as_object().unwrap().len(), 100);
}

#[test]
fn secrets_invalid_inputs() {
    let errs = invalid(
        Topic::Secrets,
        r#"{"creator_access": "owner", "pull_request_from_fork": null, "prebuild": false, "org_policy": null, "user": {"A": 1}, "repository": [], "organization": {}}"#,
    );
    assert_eq!(
        errs,
        vec![
            "/creator_access",
            "/pull_request_from_fork",
            "/user/A",
            "/repository"
        ]
    );
    let dup = invalid(
        Topic::Secrets,
        r#"{"creator_access": "write", "pull_request_from_fork": false, "prebuild": false, "org_policy": null, "user": {"A": "1", "A": "2"}, "repository": {}, "organization": {}}"#,
    );
    assert!(dup[0].contains("duplicate key"), "{dup:?}");
    // The message names the field, never the secret's value.
    let err = run(
        Topic::Secrets,
        r#"{"creator_access": "write", "pull_request_from_fork": false, "prebuild": false, "org_policy": null, "user": {"A": ["hunter2"]}, "repository": {}, "organization": {}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/user/A") && !err.contains("hunter2"), "{err}");
}

#[test]
fn extensions_contract() {
    let input = json!({
        "org_policy": {"extensions": {"allow": ["ms-python", "rust-lang.*"], "deny": ["ms-python.bad"]}},
        "trust": "restricted",
        "requested": ["ms-python.python@2024.1.0", "Rust-Lang.rust-analyzer", "ms-python.bad", "evil.ext", "-ms-vscode.cpptools", "/tmp/x.vsix", "ms-pythοn.python"]
    });
    assert_eq!(
        ok(Topic::Extensions, input),
        json!({
            "install": [{"id": "ms-python.python", "version": "2024.1.0"}, {"id": "Rust-Lang.rust-analyzer", "version": null}],
            "remove": [{"id": "ms-vscode.cpptools"}],
            "refused": [
                {"id": "ms-python.bad", "reason": "denied-by-organization"},
                {"id": "evil.ext", "reason": "not-in-allow-list"},
                {"id": "/tmp/x.vsix", "reason": "vsix-not-allowed"},
                {"id": "ms-pythοn.python", "reason": "invalid-id"}
            ]
        })
    );
    let restricted = ok(
        Topic::Extensions,
        json!({"org_policy": null, "trust": "restricted", "requested": ["a.b"]}),
    );
    assert_eq!(
        restricted,
        json!({"install": [], "remove": [], "refused": [{"id": "a.b", "reason": "untrusted-repository"}]})
    );
    let trusted = ok(
        Topic::Extensions,
        json!({"org_policy": {"extensions": {"allow_vsix": true}}, "trust": "trusted", "requested": ["a.b@prerelease", "/x.vsix"]}),
    );
    assert_eq!(
        trusted,
        json!({"install": [{"id": "a.b", "version": "prerelease"}, {"id": "/x.vsix", "version": null}], "remove": [], "refused": []})
    );
}

#[test]
fn extensions_invalid_inputs() {
    assert_eq!(
        invalid(
            Topic::Extensions,
            r#"{"org_policy": {"extensions": {"allow": ["a.b.c"]}}, "trust": "yes", "requested": ["a.b", 3]}"#
        ),
        vec!["/org_policy/extensions/allow/0", "/trust", "/requested/1"]
    );
}

#[test]
fn lifecycle_contract() {
    let base = |access: &str, fork: bool, prebuild: bool, policy: Value| json!({"creator_access": access, "pull_request_from_fork": fork, "prebuild": prebuild, "repository": "octo/app", "org_policy": policy});
    let table = [
        (
            base("write", false, false, Value::Null),
            json!({"profile": "trusted", "secrets": true, "token": "full", "reason": null}),
        ),
        (
            base("read", false, false, Value::Null),
            json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "no-write-access"}),
        ),
        (
            base("admin", true, false, Value::Null),
            json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "fork-pull-request"}),
        ),
        (
            base("admin", false, true, Value::Null),
            json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "prebuild"}),
        ),
        (
            base(
                "admin",
                false,
                false,
                json!({"trusted_repositories": ["octo/lib"]}),
            ),
            json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "not-trusted-by-organization"}),
        ),
        (
            base(
                "admin",
                false,
                false,
                json!({"lifecycle_commands": "sandboxed"}),
            ),
            json!({"profile": "restricted", "secrets": false, "token": "none", "reason": "sandboxed-by-organization"}),
        ),
        (
            base(
                "none",
                false,
                false,
                json!({"lifecycle_commands": "trusted-only"}),
            ),
            json!({"profile": "blocked", "secrets": false, "token": "none", "reason": "no-write-access"}),
        ),
        (
            base(
                "write",
                false,
                false,
                json!({"lifecycle_commands": "trusted-only", "trusted_repositories": ["OCTO/*"]}),
            ),
            json!({"profile": "trusted", "secrets": true, "token": "full", "reason": null}),
        ),
    ];
    for (input, want) in table {
        assert_eq!(ok(Topic::Lifecycle, input.clone()), want, "{input}");
    }
}

#[test]
fn lifecycle_invalid_inputs() {
    assert_eq!(
        invalid(
            Topic::Lifecycle,
            r#"{"creator_access": "write", "pull_request_from_fork": false, "prebuild": 0, "repository": "octo/app/x", "org_policy": {"lifecycle_commands": "never"}, "now": "x"}"#
        ),
        vec![
            "/prebuild",
            "/repository",
            "/org_policy/lifecycle_commands",
            "/now"
        ]
    );
}
