//! Fuzz the Compose audit: any text as a Compose file (and as a second, overriding one) must be
//! read without panicking; errors name the file, and every finding has a position inside it.
#![no_main]

use codespace_devcontainer::audit::{audit_compose, AuditContext};
use codespace_devcontainer::compose::{ComposeInput, ComposeSource};
use codespace_devcontainer::parse_devcontainer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
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
    for report in audit_compose(&config, &ctx) {
        for f in &report.findings {
            assert!(f.line >= 1 && f.line <= lines, "{f:?}");
            assert!(f.column >= 1, "{f:?}");
        }
    }
});
