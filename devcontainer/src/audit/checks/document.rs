//! Document-level rules: duplicate keys, unknown or misplaced properties, extensions and
//! Codespaces repository permissions.

use super::super::suggest::{self, BUILD, FEATURE, TOP_LEVEL};
use super::super::{Emitter, RuleId, Severity};
use super::{quoted, strings};
use crate::error::ErrorSink;
use crate::extensions::ExtensionRef;
use crate::node::Node;
use crate::repositories::{parse_repositories, Permission, RepoSelector, RepositoryPermissions};
use crate::span::Span;

/// Which file the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    DevContainer,
    Feature,
}

const VSCODE: &[&str] = &["extensions", "settings", "devPort", "mcp"];
const CODESPACES: &[&str] = &["repositories", "openFiles", "disableAutomaticConfiguration"];

/// Duplicate keys anywhere and unknown properties where the schema is closed.
pub(super) fn document(root: &Node, kind: Kind, out: &mut Emitter<'_>) {
    for dup in root.duplicate_keys() {
        let first = out
            .locate(dup.first)
            .map(|(line, column)| format!(" (first at {line}:{column})"))
            .unwrap_or_default();
        out.at(
            RuleId::DuplicateKey,
            Severity::Medium,
            &dup.pointer,
            dup.duplicate,
            format!(
                "key {} is written more than once{first}; tools use the last value, reviewers often read the first",
                quoted(&dup.key)
            ),
        );
    }
    match kind {
        Kind::DevContainer => {
            unknown_members(root, TOP_LEVEL, false, out);
            if let Some(build) = root.get("build") {
                unknown_members(build, BUILD, true, out);
            }
            if let Some(vscode) = root.resolve("/customizations/vscode") {
                unknown_members(vscode, VSCODE, true, out);
            }
            if let Some(codespaces) = root.resolve("/customizations/codespaces") {
                unknown_members(codespaces, CODESPACES, true, out);
            }
        }
        Kind::Feature => unknown_members(root, FEATURE, false, out),
    }
}

fn unknown_members(object: &Node, known: &[&str], nested: bool, out: &mut Emitter<'_>) {
    let Some(members) = object.members() else {
        return;
    };
    for m in members {
        if known.contains(&m.key.as_str()) {
            continue;
        }
        let hint = match suggest::suggest(&m.key, known) {
            Some(s) => format!("; did you mean {}?", quoted(s)),
            None if nested && suggest::misplaced(&m.key).is_some() => {
                "; it is a top-level property and has no effect here".to_string()
            }
            None => String::new(),
        };
        let span: Option<Span> = m.key_span.or(m.value.span);
        out.at(
            RuleId::UnknownProperty,
            Severity::Low,
            &m.value.pointer,
            span,
            format!("unknown property {} is ignored by the reference tools{hint}", quoted(&m.key)),
        );
    }
}

/// Extensions and repository permissions.
pub(super) fn customizations(root: &Node, out: &mut Emitter<'_>) {
    let lists = [
        root.resolve("/customizations/vscode/extensions"),
        root.get("extensions"),
    ];
    for list in lists.into_iter().flatten() {
        for (node, id) in strings(list) {
            extension(node, id, out);
        }
    }
    if let Some(repos) = root.resolve("/customizations/codespaces/repositories") {
        // Invalid entries are the parser's errors; only valid grants are judged here.
        let mut ignored = ErrorSink::new();
        for grant in parse_repositories(repos, &mut ignored) {
            let wildcard = grant.pattern.value.repo == RepoSelector::All;
            let all_of_owner = if wildcard { " (every repository of the owner)" } else { "" };
            let (severity, what) = match &grant.permissions.value {
                RepositoryPermissions::WriteAll => (Severity::High, "write-all".to_string()),
                p if p.level(Permission::Workflows).is_some() => {
                    (Severity::High, "workflows: write (can change CI)".to_string())
                }
                p if p.grants_write() && wildcard => (Severity::High, "write permissions".to_string()),
                p if p.grants_write() => (Severity::Medium, "write permissions".to_string()),
                _ if wildcard => (Severity::Low, "read permissions".to_string()),
                _ => continue,
            };
            out.at(
                RuleId::RepositoryPermissions,
                severity,
                &grant.pattern.pointer,
                grant.pattern.span,
                format!(
                    "the codespace token asks for {what} on {}{all_of_owner}",
                    quoted(&grant.pattern.value.to_string())
                ),
            );
        }
    }
}

fn extension(node: &Node, id: &str, out: &mut Emitter<'_>) {
    if let Some(c) = id.chars().find(|c| !c.is_ascii()) {
        out.node(
            RuleId::ExtensionSource,
            Severity::Medium,
            node,
            format!(
                "extension id {} contains the non-ASCII character U+{:04X}, a look-alike of a real publisher or name",
                quoted(id),
                u32::from(c)
            ),
        );
        return;
    }
    if let Ok(ExtensionRef::Vsix(path)) = ExtensionRef::parse(id) {
        out.node(
            RuleId::ExtensionSource,
            Severity::Medium,
            node,
            format!("extension installed from the package file {} instead of the marketplace", quoted(&path)),
        );
    }
}
