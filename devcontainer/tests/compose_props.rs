//! Property tests of the Compose audit: any text (and YAML-looking text built from Compose's
//! keys) is read without panicking, and every finding points inside the file it is about.
#![allow(clippy::unwrap_used)]

use codespace_devcontainer::audit::{audit_compose, AuditContext};
use codespace_devcontainer::compose::{ComposeInput, ComposeSource};
use codespace_devcontainer::parse_devcontainer;
use proptest::prelude::*;

fn check(text: &str) {
    let config =
        parse_devcontainer(r#"{"dockerComposeFile": ["a.yml", "b.yml"], "service": "app"}"#);
    let source = |name: &str| ComposeSource {
        path: name.to_owned(),
        name: name.to_owned(),
        text: Ok(text.to_owned()),
    };
    let ctx = AuditContext {
        compose: Some(ComposeInput {
            config_dir: ".devcontainer".into(),
            files: vec![source("a.yml"), source("b.yml")],
        }),
        ..AuditContext::default()
    };
    let lines = text.split('\n').count();
    let reports = audit_compose(&config, &ctx);
    assert_eq!(reports.len(), 2);
    for report in reports {
        for f in &report.findings {
            assert!(f.line >= 1 && f.line <= lines, "{f:?} in {text:?}");
            assert!(f.column >= 1, "{f:?}");
        }
        for e in &report.errors {
            assert!(e.line <= lines, "{e:?} in {text:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn compose_shaped_text_never_panics(
        lines in proptest::collection::vec(
            (0usize..4, prop::sample::select(vec![
                "services:", "app:", "privileged: true", "cap_add: [SYS_ADMIN]", "- /:/h",
                "volumes:", "<<: *a", "x: &a {pid: host}", "environment:", "- TOKEN",
                "depends_on: [app]", "network_mode: service:app", "- ${A:-/var/run}:/x",
                "env_file: ../../e", "ports: ['1:1']", "type: bind", "source: ~/.ssh", "'", "[", "-",
            ])),
            0..24,
        )
    ) {
        let text: String = lines
            .iter()
            .map(|(indent, line)| format!("{}{line}\n", "  ".repeat(*indent)))
            .collect();
        check(&text);
    }
}
