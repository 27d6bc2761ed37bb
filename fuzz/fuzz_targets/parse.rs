//! Fuzz the parser: any text, as a devcontainer.json and as a devcontainer-feature.json, must
//! parse without panicking; every error must have a position inside the text and a pointer that
//! resolves; substitution of a parsed document must not panic either.
#![no_main]

use codespace_devcontainer::{
    parse_devcontainer, parse_feature, substitute, substitute_str, SubstitutionContext,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
    let parsed = parse_devcontainer(text);
    for d in parsed.diagnostics() {
        assert!(d.line >= 1 && d.line <= lines, "{d:?}");
        assert!(d.column >= 1, "{d:?}");
    }
    if let Some(tree) = &parsed.tree {
        for e in &parsed.errors {
            assert!(tree.resolve(&e.pointer).is_some(), "unresolvable {}", e.pointer);
        }
        for dup in &parsed.duplicate_keys {
            assert!(tree.resolve(&dup.pointer).is_some());
        }
        // Round trip through serde_json and back must keep the effective values.
        let json = tree.to_json_value();
        let again = codespace_devcontainer::Node::from_json_value(&json);
        assert_eq!(again.to_json_value(), json);
    }
    let ctx = SubstitutionContext {
        local_env: [("HOME".to_owned(), "/home/u".to_owned())].into_iter().collect(),
        local_workspace_folder: Some("/w/p".to_owned()),
        container_workspace_folder: Some("/workspaces/p".to_owned()),
        devcontainer_id: Some("0".repeat(52)),
        container_env: Some(Default::default()),
    };
    let _ = substitute(&parsed, &ctx);
    let _ = substitute_str(text, &ctx, &mut Vec::new());
    let _ = parse_feature(text);
});
