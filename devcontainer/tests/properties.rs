//! Property tests: parsing never panics, pointers and spans are consistent, substitution is
//! idempotent when values cannot introduce new variables.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use codespace_devcontainer::node::{Node, NodeValue};
use codespace_devcontainer::parse::parse_tree;
use codespace_devcontainer::{
    parse_devcontainer, parse_feature, substitute_str, SubstitutionContext,
};
use proptest::prelude::*;

const SEED_DOC: &str = include_str!("fixtures/hostile.jsonc");

fn all_nodes(n: &Node) -> Vec<&Node> {
    let mut out = vec![n];
    match &n.value {
        NodeValue::Array(items) => items.iter().for_each(|i| out.extend(all_nodes(i))),
        NodeValue::Object(members) => members.iter().for_each(|m| out.extend(all_nodes(&m.value))),
        _ => {}
    }
    out
}

fn check_document(text: &str) {
    let p = parse_devcontainer(text);
    let line_count = u32::try_from(text.split('\n').count()).unwrap();
    for d in p.diagnostics() {
        assert!(d.line >= 1 && d.line <= line_count, "{d:?}");
        assert!(d.column >= 1, "{d:?}");
    }
    if let Some(tree) = &p.tree {
        for e in &p.errors {
            assert!(
                tree.resolve(&e.pointer).is_some(),
                "error pointer {} does not resolve",
                e.pointer
            );
        }
        for d in &p.duplicate_keys {
            assert!(
                tree.resolve(&d.pointer).is_some(),
                "duplicate pointer {} does not resolve",
                d.pointer
            );
        }
        for u in &p.model.as_ref().unwrap().unknown {
            assert!(tree.resolve(&u.pointer).is_some());
        }
    }
    let _ = parse_feature(text);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-z~/ \\u{e9}\"\\\\]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z~/]{0,4}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_document(&text);
    }

    #[test]
    fn jsonish_text_never_panics(text in "[\\{\\}\\[\\]\",:a-z0-9 /*\\\\\n.\\-$]{0,200}") {
        check_document(&text);
    }

    #[test]
    fn mutated_valid_documents_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[\\{\\}\\[\\]\",:a-z0-9 /*\\n]{0,3}"), 1..6)
    ) {
        let mut text = SEED_DOC.to_owned();
        for (at, delete, insert) in edits {
            let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let start = boundaries[at.index(boundaries.len())];
            let end = boundaries.iter().copied().filter(|b| *b >= start).nth(delete).unwrap_or(text.len());
            text.replace_range(start..end, &insert);
        }
        check_document(&text);
    }

    #[test]
    fn every_pointer_resolves_to_its_node_and_spans_reparse(value in json_value()) {
        let doc = serde_json::json!({ "root": value });
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let tree = parse_tree(&text).unwrap();
        for node in all_nodes(&tree) {
            let found = tree.resolve(&node.pointer).unwrap();
            prop_assert_eq!(found, node);
            let span = node.span.unwrap();
            let reparsed: serde_json::Value = serde_json::from_str(&text[span.start..span.end]).unwrap();
            prop_assert_eq!(reparsed, node.to_json_value());
        }
        prop_assert_eq!(tree.to_json_value(), doc.clone());
        prop_assert_eq!(Node::from_json_value(&doc).to_json_value(), doc);
    }

    #[test]
    fn substitution_is_idempotent_when_values_are_plain(
        s in "([a-z:/ ]|\\$|\\{|\\}|\\$\\{localEnv:[A-C]?(:[a-z]*)?\\}|\\$\\{containerEnv:[A-C]\\}|\\$\\{devcontainerId\\}|\\$\\{localWorkspaceFolder(Basename)?\\})*",
        env in prop::collection::btree_map("[A-C]", "[a-z/]{0,5}", 0..3),
    ) {
        let ctx = SubstitutionContext {
            local_env: env.clone(),
            local_workspace_folder: Some("/w/proj".into()),
            container_workspace_folder: None,
            devcontainer_id: Some("id".into()),
            container_env: Some(env.into_iter().collect::<BTreeMap<_, _>>()),
        };
        let mut errors = Vec::new();
        let once = substitute_str(&s, &ctx, &mut errors);
        let twice = substitute_str(&once, &ctx, &mut errors);
        prop_assert_eq!(&once, &twice);
        if !s.contains("${") {
            prop_assert_eq!(&once, &s);
        }
    }
}
