//! Regression tests: every input the fuzzer ever crashed on, checked with the same invariants
//! as the fuzz target (`fuzz/fuzz_targets/parse.rs`).
#![allow(clippy::unwrap_used)]

use codespace_devcontainer::{parse_devcontainer, parse_feature};

fn check(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let lines = u32::try_from(text.split('\n').count()).unwrap();
    let parsed = parse_devcontainer(text);
    for d in parsed.diagnostics() {
        assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{d:?}");
    }
    if let Some(tree) = &parsed.tree {
        let json = tree.to_json_value();
        assert_eq!(
            codespace_devcontainer::Node::from_json_value(&json).to_json_value(),
            json
        );
        for e in &parsed.errors {
            assert!(
                tree.resolve(&e.pointer).is_some(),
                "unresolvable {} ({e})",
                e.pointer
            );
        }
        for dup in &parsed.duplicate_keys {
            assert!(
                tree.resolve(&dup.pointer).is_some(),
                "unresolvable {}",
                dup.pointer
            );
        }
    }
    let _ = parse_feature(text);
}

#[test]
/// Duplicate keys inside an object that is itself a shadowed duplicate were reported with a
/// pointer that cannot resolve (it names the effective object instead).
fn fuzz_crash_1_duplicates_inside_a_shadowed_object() {
    check(include_bytes!("regressions/fuzz-crash-1.json"));
}

/// A float whose serde_json parse was not correctly rounded changed value on a round trip
/// through `to_json_value` / `from_json_value`.
#[test]
fn fuzz_crash_2_float_round_trip() {
    check(include_bytes!("regressions/fuzz-crash-2.json"));
}
