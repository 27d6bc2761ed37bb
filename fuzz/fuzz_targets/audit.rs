//! Fuzz the audit: any text, parsed as a devcontainer.json and as a feature, must audit without
//! panicking, and every finding must point at a value that exists. The analysers are fed the raw
//! text too, since they see user strings directly.
#![no_main]

use codespace_devcontainer::audit::{
    audit, audit_feature, credentials, docker_args, mounts, shell, AuditContext, LocalFeature,
};
use codespace_devcontainer::{parse_devcontainer, parse_feature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let feature = parse_feature(text);
    let _ = audit_feature(&feature);
    let ctx = AuditContext {
        local_features: feature
            .tree
            .iter()
            .map(|t| LocalFeature {
                key: "./x".into(),
                metadata: t.clone(),
            })
            .collect(),
        ..AuditContext::default()
    };
    let parsed = parse_devcontainer(text);
    let findings = audit(&parsed, &ctx);
    if let Some(tree) = &parsed.tree {
        for f in &findings {
            assert!(
                tree.resolve(&f.pointer).is_some(),
                "unresolvable pointer {}",
                f.pointer
            );
            assert!(f.line >= 1 && f.column >= 1);
        }
    }
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let _ = shell::analyse_script(text);
    let _ = shell::analyse_argv(&words);
    let _ = docker_args::parse_run_args(&words);
    let _ = mounts::classify_source(text);
    let _ = mounts::parse_mount_csv(text);
    let _ = mounts::parse_volume(text);
    let _ = credentials::find_credentials(text);
});
