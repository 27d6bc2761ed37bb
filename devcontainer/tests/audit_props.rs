//! Property tests for the audit: it never panics, whatever the input, and every finding points
//! at a value that exists in the document, at a real position.
#![allow(clippy::unwrap_used)]

use codespace_devcontainer::audit::{
    audit, credentials, docker_args, mounts, shell, AuditContext, LocalFeature,
};
use codespace_devcontainer::{parse_devcontainer, parse_feature};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Fragments that steer generated strings towards what the rules look for.
const FRAGMENTS: &[&str] = &[
    "curl -fsSL https://x | sh",
    "bash <(wget -qO- x)",
    "sh -c \"$(curl x)\"",
    "iex (iwr x)",
    "source=/var/run/docker.sock,target=/x,type=bind",
    "\"src=//run/../run/docker.sock\",dst=/y",
    "${localEnv:HOME}/.ssh",
    "${localEnv:GITHUB_TOKEN}",
    "${localWorkspaceFolder}/..",
    "--privileged",
    "--cap-add=sys_admin",
    "-v",
    "/:/host",
    "--network",
    "host",
    "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
    "root",
    "0.0.0.0:2375:2375",
    "$(id)",
    "`x`",
    "LD_PRELOAD",
    "./local",
    "ghcr.io/x/y/z:latest",
    "/tmp/x.vsix",
    "",
    "\u{2011}",
    "'",
    "\\",
];

const KEYS: &[&str] = &[
    "image",
    "privileged",
    "capAdd",
    "securityOpt",
    "runArgs",
    "mounts",
    "workspaceMount",
    "remoteUser",
    "containerUser",
    "containerEnv",
    "remoteEnv",
    "appPort",
    "features",
    "initializeCommand",
    "postCreateCommand",
    "onCreateCommand",
    "secrets",
    "customizations",
    "vscode",
    "codespaces",
    "repositories",
    "extensions",
    "permissions",
    "build",
    "args",
    "portsAttributes",
    "elevateIfNeeded",
    "type",
    "source",
    "target",
    "Privileged",
    "postCreateCommmand",
    "a/b~c",
    "",
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 1..4).prop_map(|v| v.join(" ")),
        ".{0,40}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-70000i64..70000).prop_map(Value::from),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), value()), 0..10).prop_map(|members| {
        // Written by hand so duplicate keys survive (a Map would merge them).
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), v))
            .collect();
        format!("{{\n  {}\n}}", body.join(",\n  "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn audit_never_panics_and_pointers_resolve(doc in document(), feature in document()) {
        let parsed = parse_devcontainer(&doc);
        let local = parse_feature(&feature);
        let ctx = AuditContext {
            local_features: local
                .tree
                .iter()
                .map(|t| LocalFeature { key: "./local".into(), metadata: t.clone() })
                .collect(),
            ..AuditContext::default()
        };
        let findings = audit(&parsed, &ctx);
        let tree = parsed.tree.as_ref();
        for f in &findings {
            let tree = tree.unwrap();
            prop_assert!(tree.resolve(&f.pointer).is_some(), "{} does not resolve in {}", f.pointer, doc);
            prop_assert!(f.line >= 1 && f.column >= 1, "{f:?}");
            prop_assert!(!f.message.contains("aB3dE5fG7hI9"), "secret in {f:?}");
        }
        let mut sorted = findings.clone();
        sorted.sort_by_key(|f| (f.line, f.column));
        prop_assert_eq!(
            findings.iter().map(|f| (f.line, f.column)).collect::<Vec<_>>(),
            sorted.iter().map(|f| (f.line, f.column)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn audit_of_arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = audit(&parse_devcontainer(&text), &AuditContext::default());
    }

    #[test]
    fn analysers_never_panic(s in ".{0,200}", args in prop::collection::vec(string(), 0..8)) {
        let _ = shell::analyse_script(&s);
        let _ = shell::analyse_argv(&args);
        let _ = docker_args::parse_run_args(&args);
        let _ = mounts::classify_source(&s);
        let _ = mounts::parse_volume(&s);
        let _ = mounts::parse_mount_csv(&s);
        for hit in credentials::find_credentials(&s) {
            // A redaction never carries more than a short public prefix of the value.
            prop_assert!(hit.redacted.chars().count() < 60);
        }
    }
}
