//! The rules over a parsed tree. Each submodule owns one group of properties; this file says
//! which groups apply to a devcontainer.json and which to a devcontainer-feature.json.

mod commands;
mod container;
mod document;
mod features;
mod values;

use super::{AuditContext, Emitter};
use crate::model::UnknownProperty;
use crate::node::{DuplicateKey, Member, Node, NodeValue};

/// Every rule over a devcontainer.json.
pub(crate) fn devcontainer(
    root: &Node,
    unknown: &[UnknownProperty],
    duplicates: &[DuplicateKey],
    ctx: &AuditContext,
    out: &mut Emitter<'_>,
) {
    container::isolation(root, out);
    container::run_args(root, out);
    container::build_options(root, out);
    container::mounts(root, out);
    container::workspace_mount(root, out);
    container::users(root, out);
    container::ports(root, out);
    container::compose(root, ctx, out);
    commands::lifecycle(root, true, out);
    features::features(root, ctx, out);
    values::environment(root, out);
    document::document(root, unknown, duplicates, document::Kind::DevContainer, out);
    document::customizations(root, out);
}

/// Every rule over a devcontainer-feature.json (what the feature adds to any container using it).
pub(crate) fn feature_file(
    root: &Node,
    unknown: &[UnknownProperty],
    duplicates: &[DuplicateKey],
    out: &mut Emitter<'_>,
) {
    container::isolation(root, out);
    container::mounts(root, out);
    commands::lifecycle(root, false, out);
    commands::entrypoint(root, out);
    values::environment(root, out);
    document::document(root, unknown, duplicates, document::Kind::Feature, out);
}

/// The string elements of an array (or the value itself if it is a string).
fn strings(node: &Node) -> Vec<(&Node, &str)> {
    match &node.value {
        NodeValue::String(s) => vec![(node, s.as_str())],
        NodeValue::Array(items) => items
            .iter()
            .filter_map(|n| n.as_str().map(|s| (n, s)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every string value in the tree, iteratively (the tree may be 128 levels deep).
fn all_strings(root: &Node) -> Vec<(&Node, &str)> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.value {
            NodeValue::String(s) => out.push((node, s.as_str())),
            NodeValue::Array(items) => stack.extend(items.iter().rev()),
            NodeValue::Object(members) => stack.extend(members.iter().rev().map(|m| &m.value)),
            _ => {}
        }
    }
    out
}

/// Every object member in the tree (for checks on keys).
fn all_members(root: &Node) -> Vec<&Member> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.value {
            NodeValue::Array(items) => stack.extend(items.iter().rev()),
            NodeValue::Object(members) => {
                out.extend(members.iter());
                stack.extend(members.iter().rev().map(|m| &m.value));
            }
            _ => {}
        }
    }
    out
}

/// Quotes a user-controlled name for a message, cut to a readable length. A text holding a
/// credential is replaced by its redaction, so no message can carry a secret.
pub(crate) fn quoted(text: &str) -> String {
    const MAX: usize = 80;
    if let Some(hit) = super::credentials::find_credentials(text)
        .into_iter()
        .next()
    {
        return format!("`{}`", hit.redacted);
    }
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > MAX {
        let cut: String = clean.chars().take(MAX).collect();
        format!("`{cut}…`")
    } else {
        format!("`{clean}`")
    }
}
