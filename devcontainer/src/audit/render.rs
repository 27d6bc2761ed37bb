//! Report renderers: text for people, JSON for scripts, SARIF 2.1.0 for code scanning.
//!
//! Pure functions from a slice of [`FileReport`]s to a `String`; the CLI prints the result.
//!
//! ```text
//! text   path:line:column severity rule message           (errors: path:line:column error message)
//! json   {"files":[{"path","findings":[{rule,severity,pointer,line,column,message}],
//!                   "errors":[{message,pointer,line,column}]}]}
//! sarif  {"version":"2.1.0","runs":[{"tool":{"driver":{name,version,informationUri,rules}},
//!          "results":[{ruleId,ruleIndex,level,message,locations:[physicalLocation..]}],
//!          "invocations":[{executionSuccessful,toolExecutionNotifications}]}]}
//! ```
//!
//! SARIF follows what GitHub code scanning requires: every rule has `shortDescription`,
//! `fullDescription`, `help`, `defaultConfiguration.level` and `properties.security-severity`;
//! every result has a `ruleId`, a `level`, and a location whose region starts at line ≥ 1.

use serde::Serialize;
use serde_json::{json, Value};

use super::rules::RULES;
use super::Finding;

/// An error that kept a file from being audited (unreadable, not valid JSONC, wrong types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportError {
    /// What went wrong.
    pub message: String,
    /// JSON pointer of the offending value (`""` for the whole document).
    pub pointer: String,
    /// 1-based line (0 when unknown, e.g. the file could not be read).
    pub line: usize,
    /// 1-based column in characters (0 when unknown).
    pub column: usize,
}

/// Everything the audit says about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The path as the user gave it (or as discovered in a folder).
    pub path: String,
    /// Findings, sorted by position.
    pub findings: Vec<Finding>,
    /// Errors; a file with errors may still have findings for the parts that parsed.
    pub errors: Vec<ReportError>,
}

/// `path:line:column severity rule message`, one line per finding and per error.
pub fn text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for e in &report.errors {
            out.push_str(&format!(
                "{}:{}:{} error {}\n",
                report.path,
                e.line,
                e.column,
                one_line(&e.message)
            ));
        }
        for f in &report.findings {
            out.push_str(&format!(
                "{}:{}:{} {} {} {}\n",
                report.path,
                f.line,
                f.column,
                f.severity,
                f.rule,
                one_line(&f.message)
            ));
        }
    }
    out
}

fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// The JSON document described in the module docs (pretty-printed, trailing newline).
pub fn json(reports: &[FileReport]) -> String {
    let doc = json!({ "files": reports });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// Where the tool is documented (SARIF `informationUri`).
pub const INFORMATION_URI: &str =
    "https://example.invalid/codespace-agent#codespace-agentctl-audit";

/// A SARIF 2.1.0 log with one run. `tool_version` is the program's version.
pub fn sarif(reports: &[FileReport], tool_version: &str) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id.as_str(),
                "name": pascal_case(r.id.as_str()),
                "shortDescription": { "text": r.short },
                "fullDescription": { "text": r.full },
                "help": {
                    "text": r.full,
                    "markdown": format!("**{}** ({})\n\n{}", r.short, r.default_severity, r.full),
                },
                "defaultConfiguration": { "level": r.default_severity.sarif_level() },
                "properties": {
                    "security-severity": r.default_severity.security_severity(),
                    "tags": ["security", "devcontainer"],
                    "precision": "high",
                    "problem.severity": r.default_severity.sarif_level(),
                },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for report in reports {
        let uri = artifact_uri(&report.path);
        for f in &report.findings {
            let rule_index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
            results.push(json!({
                "ruleId": f.rule.as_str(),
                "ruleIndex": rule_index,
                "level": f.severity.sarif_level(),
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri },
                        "region": { "startLine": f.line.max(1), "startColumn": f.column.max(1) },
                    },
                    "logicalLocations": [{ "fullyQualifiedName": f.pointer, "kind": "member" }],
                }],
                "properties": {
                    "severity": f.severity.as_str(),
                    "security-severity": f.severity.security_severity(),
                    "pointer": f.pointer,
                },
            }));
        }
        for e in &report.errors {
            notifications.push(json!({
                "level": "error",
                "message": { "text": e.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri },
                        "region": { "startLine": e.line.max(1), "startColumn": e.column.max(1) },
                    },
                }],
            }));
        }
    }
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "codespace-agentctl audit",
                    "version": tool_version,
                    "semanticVersion": tool_version,
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }
            },
            "results": results,
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "columnKind": "unicodeCodePoints",
        }],
    });
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// SARIF wants URIs: forward slashes, no leading `./`, spaces and `%` escaped.
fn artifact_uri(path: &str) -> String {
    let p = path.replace('\\', "/");
    let p = p.strip_prefix("./").unwrap_or(&p);
    let mut out = String::new();
    for c in p.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

fn pascal_case(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::{RuleId, Severity};

    fn sample() -> Vec<FileReport> {
        vec![
            FileReport {
                path: "./repo dir/.devcontainer/devcontainer.json".into(),
                findings: vec![Finding {
                    rule: RuleId::Privileged,
                    severity: Severity::Critical,
                    pointer: "/privileged".into(),
                    line: 3,
                    column: 17,
                    message: "container runs privileged\nreally".into(),
                }],
                errors: vec![],
            },
            FileReport {
                path: "bad.json".into(),
                findings: vec![],
                errors: vec![ReportError {
                    message: "expected an object".into(),
                    pointer: String::new(),
                    line: 0,
                    column: 0,
                }],
            },
        ]
    }

    #[test]
    fn text_lines() {
        let out = text(&sample());
        assert_eq!(
            out,
            "./repo dir/.devcontainer/devcontainer.json:3:17 critical privileged container runs privileged really\n\
             bad.json:0:0 error expected an object\n"
        );
    }

    #[test]
    fn json_shape() {
        let v: Value = serde_json::from_str(&json(&sample())).unwrap();
        let f = &v["files"][0]["findings"][0];
        assert_eq!(f["rule"], "privileged");
        assert_eq!(f["severity"], "critical");
        assert_eq!(f["pointer"], "/privileged");
        assert_eq!(
            (f["line"].as_u64(), f["column"].as_u64()),
            (Some(3), Some(17))
        );
        assert_eq!(v["files"][1]["errors"][0]["message"], "expected an object");
        assert_eq!(v["files"][1]["errors"][0]["pointer"], "");
    }

    #[test]
    fn sarif_shape() {
        let v: Value = serde_json::from_str(&sarif(&sample(), "1.2.3")).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        let driver = &run["tool"]["driver"];
        assert_eq!(driver["version"], "1.2.3");
        assert!(driver["informationUri"]
            .as_str()
            .unwrap()
            .starts_with("https://"));
        let rules = driver["rules"].as_array().unwrap();
        assert_eq!(rules.len(), RULES.len());
        for rule in rules {
            for key in [
                "id",
                "shortDescription",
                "fullDescription",
                "help",
                "defaultConfiguration",
            ] {
                assert!(!rule[key].is_null(), "{key} missing in {rule}");
            }
            let score: f64 = rule["properties"]["security-severity"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((0.0..=10.0).contains(&score));
        }
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "privileged");
        assert_eq!(result["level"], "error");
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], "privileged");
        let loc = &result["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            "repo%20dir/.devcontainer/devcontainer.json"
        );
        assert_eq!(loc["region"]["startLine"], 3);
        let invocation = &run["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false);
        assert_eq!(
            invocation["toolExecutionNotifications"][0]["locations"][0]["physicalLocation"]
                ["region"]["startLine"],
            1
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            pascal_case("initialize-command-on-host"),
            "InitializeCommandOnHost"
        );
    }
}
