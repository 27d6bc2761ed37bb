//! Table tests of the Compose audit over fixture files (`tests/fixtures/compose/`: excerpts of
//! real files, each naming its source, and hand-made evasions).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::compose::ComposeSource;
use crate::parse_devcontainer;

fn fixture(name: &str) -> Result<String, String> {
    let path = format!(
        "{}/tests/fixtures/compose/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).map_err(|e| e.to_string())
}

/// `file:line:column severity rule` per finding and `file:line:column error message` per error.
fn run(config: &str, files: &[(&str, Result<String, String>)]) -> Vec<String> {
    let parsed = parse_devcontainer(config);
    let ctx = AuditContext {
        compose: Some(ComposeInput {
            config_dir: ".devcontainer".into(),
            files: files
                .iter()
                .map(|(name, text)| ComposeSource {
                    path: (*name).to_owned(),
                    name: (*name).to_owned(),
                    text: text.clone(),
                })
                .collect(),
        }),
        ..AuditContext::default()
    };
    // The devcontainer.json itself no longer says the Compose files were not audited.
    assert!(
        !super::super::audit(&parsed, &ctx)
            .iter()
            .any(|f| f.rule == RuleId::ComposeNotAudited),
        "{config}"
    );
    let mut out = Vec::new();
    for report in audit_compose(&parsed, &ctx) {
        for e in &report.errors {
            out.push(format!(
                "{}:{}:{} error {}",
                report.path, e.line, e.column, e.message
            ));
        }
        for f in &report.findings {
            assert!(f.message.starts_with("service `"), "{}", f.message);
            out.push(format!(
                "{}:{}:{} {} {}",
                report.path, f.line, f.column, f.severity, f.rule
            ));
        }
    }
    out
}

#[test]
fn real_and_hostile_compose_files() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "the Docker socket of the docker-outside-of-docker template; `../..` is the workspace's parent",
            r#"{"dockerComposeFile": "templates-dood.yml", "service": "app"}"#,
            &["templates-dood.yml"],
            &[
                "templates-dood.yml:14:9 critical container-socket-mount",
                "templates-dood.yml:16:9 medium host-path-mount",
            ],
        ),
        (
            "network_mode service:db starts db too; its named volume is no finding",
            r#"{"dockerComposeFile": ["templates-mongo.yml"], "service": "app", "runServices": []}"#,
            &["templates-mongo.yml"],
            &["templates-mongo.yml:11:9 medium host-path-mount"],
        ),
        (
            "depends_on (short syntax) of rails' own compose file",
            r#"{"dockerComposeFile": "rails.yaml", "service": "rails", "runServices": ["rails"]}"#,
            &["rails.yaml"],
            &["rails.yaml:8:9 medium host-path-mount"],
        ),
        (
            "evasions: merge keys, interpolation defaults, long syntax, depends_on long syntax",
            r#"{"dockerComposeFile": "hostile.yml", "service": "app", "runServices": ["app"]}"#,
            &["hostile.yml"],
            &[
                "hostile.yml:4:15 critical privileged",
                "hostile.yml:5:13 high capability",
                "hostile.yml:11:19 critical host-namespace",
                "hostile.yml:13:9 high unconfined-security",
                "hostile.yml:15:9 medium host-device",
                "hostile.yml:17:9 critical container-socket-mount",
                "hostile.yml:19:17 high host-path-mount",
                "hostile.yml:21:9 critical host-path-mount",
                "hostile.yml:23:9 medium host-env-file",
                "hostile.yml:25:19 high host-secret-forwarding",
                "hostile.yml:26:18 high host-secret-forwarding",
                "hostile.yml:27:19 medium dangerous-environment",
                "hostile.yml:34:10 critical host-namespace",
                "hostile.yml:36:9 high host-secret-forwarding",
                "hostile.yml:38:9 medium app-port-all-interfaces",
            ],
        ),
        (
            "a later file overrides a scalar (privileged off) and adds to a list",
            r#"{"dockerComposeFile": ["base.yml", "override.yml"], "service": "app"}"#,
            &["base.yml", "override.yml"],
            &[
                "base.yml:7:11 medium root-user",
                "override.yml:6:9 high capability",
            ],
        ),
    ];
    for (what, config, names, expected) in cases {
        let files: Vec<(&str, Result<String, String>)> =
            names.iter().map(|n| (*n, fixture(n))).collect();
        assert_eq!(run(config, &files), *expected, "{what}");
    }
}

#[test]
fn runservices_unset_starts_every_service() {
    let files = [("hostile.yml", fixture("hostile.yml"))];
    let all = run(
        r#"{"dockerComposeFile": "hostile.yml", "service": "app"}"#,
        &files,
    );
    // `unrelated` starts too: its privileged mode is reported
    assert!(
        all.contains(&"hostile.yml:43:17 critical privileged".to_owned()),
        "{all:#?}"
    );
}

#[test]
fn unreadable_invalid_and_missing_are_errors_naming_the_file() {
    type Files<'a> = Vec<(&'a str, Result<String, String>)>;
    let cases: &[(&str, &str, Files<'_>, &[&str])] = &[
        (
            "a file that cannot be read",
            r#"{"dockerComposeFile": ["gone.yml", "base.yml"], "service": "app"}"#,
            vec![
                ("gone.yml", Err("No such file or directory (os error 2)".into())),
                ("base.yml", fixture("base.yml")),
            ],
            &[
                "gone.yml:0:0 error cannot read Compose file gone.yml: No such file or directory (os error 2)",
                "base.yml:7:11 medium root-user",
                "base.yml:6:17 critical privileged",
            ],
        ),
        (
            "invalid YAML: where",
            r#"{"dockerComposeFile": "x.yml", "service": "app"}"#,
            vec![("x.yml", Ok("services:\n  app:\n    cap_add: [SYS_ADMIN\n".into()))],
            &["x.yml:4:1 error not valid YAML: while parsing a flow sequence, expected ',' or ']'"],
        ),
        (
            "not a mapping",
            r#"{"dockerComposeFile": "x.yml", "service": "app"}"#,
            vec![("x.yml", Ok("- app\n".into()))],
            &["x.yml:1:1 error a Compose file must contain a mapping at the top level"],
        ),
        (
            "a service no file defines",
            r#"{"dockerComposeFile": "x.yml", "service": "web"}"#,
            vec![("x.yml", Ok("services:\n  app:\n    image: x\n".into()))],
            &["x.yml:0:0 error service `web` (devcontainer.json `service`) is not defined in the Compose files"],
        ),
        (
            "no service at all",
            r#"{"dockerComposeFile": "x.yml"}"#,
            vec![("x.yml", Ok("services: {}\n".into()))],
            &["x.yml:0:0 error the devcontainer.json names no `service` to run in"],
        ),
    ];
    for (what, config, files, expected) in cases {
        let mut got = run(config, files);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn without_compose_input_the_config_says_it_was_not_audited() {
    let parsed = parse_devcontainer(r#"{"dockerComposeFile": "x.yml", "service": "app"}"#);
    let ctx = AuditContext::default();
    assert!(audit_compose(&parsed, &ctx).is_empty());
    let findings = super::super::audit(&parsed, &ctx);
    assert_eq!(findings[0].rule, RuleId::ComposeNotAudited);
}

#[test]
fn relative_paths_resolve_against_the_first_files_folder() {
    // `../..` from `.devcontainer/compose/` is the workspace itself: nothing to report.
    let config = r#"{"dockerComposeFile": "compose/a.yml", "service": "app"}"#;
    let text = "services:\n  app:\n    volumes: ['../..:/w', '../../..:/up']\n";
    let got = run(config, &[("compose/a.yml", Ok(text.into()))]);
    assert_eq!(got, ["compose/a.yml:3:27 medium host-path-mount"]);
}
