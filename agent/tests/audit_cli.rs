//! `codespace-agentctl audit`, run as a real process over the fixtures in
//! `devcontainer/tests/fixtures/audit/`: exit codes, formats, folder discovery, local features,
//! SARIF shape.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../devcontainer/tests/fixtures/audit")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
        .arg("audit")
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = run(&all);
    (code(&out), serde_json::from_str(&stdout(&out)).unwrap())
}

fn rules_of(file: &Value) -> Vec<String> {
    file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn exit_codes() {
    // Clean: only info findings.
    assert_eq!(code(&run(&["clean"])), 0);
    // Critical findings fail the default threshold (high).
    assert_eq!(code(&run(&["hostile"])), 1);
    assert_eq!(code(&run(&["hostile", "--fail-on", "never"])), 0);
    // A medium finding passes the default and fails --fail-on medium.
    assert_eq!(code(&run(&["medium-only/devcontainer.json"])), 0);
    assert_eq!(
        code(&run(&[
            "medium-only/devcontainer.json",
            "--fail-on",
            "medium"
        ])),
        1
    );
    assert_eq!(code(&run(&["clean", "--fail-on", "info"])), 1);
    // Unreadable or invalid files: 2, even with findings elsewhere.
    assert_eq!(code(&run(&["invalid/devcontainer.json"])), 2);
    assert_eq!(code(&run(&["type-error/devcontainer.json"])), 2);
    assert_eq!(code(&run(&["does-not-exist.json"])), 2);
    assert_eq!(code(&run(&["empty-folder"])), 2);
    assert_eq!(code(&run(&["hostile", "invalid/devcontainer.json"])), 2);
    // Bad arguments are clap's usage error (also 2), never a panic.
    let out = run(&["clean", "--fail-on", "severe"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("severe"));
}

#[test]
fn text_format() {
    let out = run(&["medium-only/devcontainer.json"]);
    assert_eq!(
        stdout(&out),
        "medium-only/devcontainer.json:1:36 medium root-user remoteUser is root: tools, terminals and lifecycle commands run as root\n"
    );
    let out = run(&["invalid/devcontainer.json"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("invalid/devcontainer.json:1:3 error "),
        "{text}"
    );
}

#[test]
fn json_format_and_errors() {
    let (code, v) = json(&["type-error/devcontainer.json", "clean"]);
    assert_eq!(code, 2);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let bad = &files[0];
    assert_eq!(bad["path"], "type-error/devcontainer.json");
    let error = &bad["errors"][0];
    assert_eq!(error["pointer"], "/postCreateCommand");
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(4), Some(24))
    );
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("postCreateCommand"));
    // The parts that parsed are still audited.
    assert!(rules_of(bad).contains(&"privileged".to_string()));
    let finding = &bad["findings"][0];
    for key in ["rule", "severity", "pointer", "line", "column", "message"] {
        assert!(!finding[key].is_null(), "{key} missing");
    }
    assert_eq!(files[1]["path"], "clean/.devcontainer/devcontainer.json");
    assert_eq!(files[1]["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn hostile_fixture_every_trick() {
    let (code, v) = json(&["hostile"]);
    assert_eq!(code, 1);
    let file = &v["files"][0];
    assert_eq!(file["path"], "hostile/.devcontainer/devcontainer.json");
    let rules = rules_of(file);
    for rule in [
        "duplicate-key",
        "privileged",
        "initialize-command-on-host",
        "download-and-execute",
        "capability",
        "host-namespace",
        "host-path-mount",
        "unconfined-security",
        "host-secret-forwarding",
        "container-socket-mount",
        "root-user",
        "dangerous-environment",
        "embedded-credential",
        "app-port-all-interfaces",
        "feature-option-injection",
        "feature-source",
        "feature-unpinned",
        "extension-source",
        "unknown-property",
        "repository-permissions",
        "lifecycle-command",
    ] {
        assert!(
            rules.contains(&rule.to_string()),
            "{rule} missing: {rules:?}"
        );
    }
    // The local feature was read from ./evil-feature/devcontainer-feature.json.
    let findings = file["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["rule"] == "privileged"
        && f["pointer"] == "/features/.~1evil-feature"
        && f["message"].as_str().unwrap().contains("local feature")));
    // Sorted by position.
    let positions: Vec<(u64, u64)> = findings
        .iter()
        .map(|f| (f["line"].as_u64().unwrap(), f["column"].as_u64().unwrap()))
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    // The embedded token never appears in the output.
    assert!(!v.to_string().contains("aB3dE5fG7hI9"));
}

#[test]
fn folder_discovery() {
    let (_, v) = json(&["multi"]);
    let paths: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "multi/.devcontainer.json",
            "multi/.devcontainer/a/devcontainer.json",
            "multi/.devcontainer/b/devcontainer.json",
        ]
    );
}

#[test]
fn feature_files_are_audited_as_features() {
    let (code, v) = json(&["feature/devcontainer-feature.json"]);
    assert_eq!(code, 1);
    let rules = rules_of(&v["files"][0]);
    assert_eq!(rules, vec!["container-socket-mount", "unconfined-security"]);
}

#[test]
fn bom_crlf_and_synthetic_traits() {
    let (code, v) = json(&["windows/devcontainer.json", "--fail-on", "medium"]);
    assert_eq!(code, 1);
    let file = &v["files"][0];
    assert_eq!(file["errors"].as_array().unwrap().len(), 0);
    assert_eq!(
        rules_of(file),
        vec![
            "app-port-all-interfaces",
            "dangerous-environment",
            "elevate-if-needed"
        ]
    );
    assert_eq!(file["findings"][0]["line"], 3);
}

#[test]
fn lookalike_extension_is_an_error_and_a_finding() {
    let (code, v) = json(&["lookalike/devcontainer.json"]);
    assert_eq!(code, 2);
    let file = &v["files"][0];
    assert!(file["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("U+2011"));
    assert_eq!(rules_of(file), vec!["extension-source"]);
}

#[test]
fn sarif_shape() {
    let out = run(&["--format", "sarif", "hostile", "invalid/devcontainer.json"]);
    assert_eq!(code(&out), 2);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif"));
    let run = &v["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "codespace-agentctl audit");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    assert!(driver["informationUri"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let rules = driver["rules"].as_array().unwrap();
    assert!(rules.len() >= 21);
    for rule in rules {
        assert!(rule["id"].is_string());
        assert!(rule["shortDescription"]["text"].is_string());
        assert!(rule["fullDescription"]["text"].is_string());
        assert!(rule["help"]["text"].is_string());
        assert!(["error", "warning", "note"]
            .contains(&rule["defaultConfiguration"]["level"].as_str().unwrap()));
        let score: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&score));
    }
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        let id = result["ruleId"].as_str().unwrap();
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], id);
        assert!(["error", "warning", "note"].contains(&result["level"].as_str().unwrap()));
        assert!(result["message"]["text"].is_string());
        let loc = &result["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            "hostile/.devcontainer/devcontainer.json"
        );
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(loc["region"]["startColumn"].as_u64().unwrap() >= 1);
    }
    let invocation = &run["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    assert_eq!(
        invocation["toolExecutionNotifications"][0]["locations"][0]["physicalLocation"]
            ["artifactLocation"]["uri"],
        "invalid/devcontainer.json"
    );
}

#[test]
fn readme_documents_every_rule() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("### `codespace-agentctl audit`")
        .nth(1)
        .expect("README has the audit section");
    for rule in codespace_devcontainer::audit::RULES {
        let row = format!("| `{}` | {} |", rule.id, rule.default_severity);
        assert!(section.contains(&row), "README lacks the row {row}");
    }
}

#[test]
fn compose_files_are_audited_at_their_own_lines() {
    let (exit, doc) = json(&["compose"]);
    assert_eq!(exit, 1, "{doc:#}");
    let files = doc["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "compose/.devcontainer/devcontainer.json",
            "compose/.devcontainer/docker-compose.yml",
            "compose/.devcontainer/docker-compose.override.yml",
        ]
    );
    // the devcontainer.json no longer says the Compose files were not audited
    assert!(rules_of(&files[0]).is_empty(), "{:#}", files[0]);
    let socket = &files[1]["findings"][0];
    assert_eq!(socket["rule"], "container-socket-mount");
    assert_eq!(
        (socket["line"].as_u64(), socket["column"].as_u64()),
        (Some(14), Some(9))
    );
    assert_eq!(socket["pointer"], "/services/app/volumes/0");
    assert_eq!(rules_of(&files[2]), ["capability"]);
    let text = stdout(&run(&["compose"]));
    assert!(
        text.contains(
            "compose/.devcontainer/docker-compose.yml:14:9 critical container-socket-mount"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_compose_file_is_an_error_naming_it() {
    let (exit, doc) = json(&["compose-missing"]);
    assert_eq!(exit, 2, "{doc:#}");
    let report = &doc["files"][1];
    assert_eq!(
        report["path"],
        "compose-missing/.devcontainer/docker-compose.yml"
    );
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message
            .contains("cannot read Compose file compose-missing/.devcontainer/docker-compose.yml"),
        "{message}"
    );
}
