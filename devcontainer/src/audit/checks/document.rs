//! Document-level rules: duplicate keys, unknown or misplaced properties, extensions and
//! Codespaces repository permissions.

use super::super::suggest::{self, BUILD};
use super::super::{Emitter, RuleId, Severity};
use super::{quoted, strings};
use crate::error::ErrorSink;
use crate::extensions::ExtensionRef;
use crate::feature::KNOWN_FEATURE_PROPERTIES;
use crate::model::{UnknownProperty, KNOWN_PROPERTIES};
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

/// Duplicate keys anywhere; unknown properties as the typed model found them, plus the
/// `customizations.vscode` / `.codespaces` levels the model leaves open.
pub(super) fn document(
    root: &Node,
    unknown: &[UnknownProperty],
    kind: Kind,
    out: &mut Emitter<'_>,
) {
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
    for u in unknown {
        let parent = u.pointer.rsplit_once('/').map_or("", |(p, _)| p);
        let candidates: &[&str] = match (kind, parent) {
            (Kind::DevContainer, "") => KNOWN_PROPERTIES,
            (Kind::Feature, "") => KNOWN_FEATURE_PROPERTIES,
            (_, "/build") => BUILD,
            _ => &[],
        };
        report_unknown(
            &u.key,
            &u.pointer,
            u.key_span.or(u.value.span),
            candidates,
            !parent.is_empty(),
            out,
        );
    }
    if kind == Kind::DevContainer {
        for (pointer, known) in [
            ("/customizations/vscode", VSCODE),
            ("/customizations/codespaces", CODESPACES),
        ] {
            let Some(members) = root.resolve(pointer).and_then(Node::members) else {
                continue;
            };
            for m in members.iter().filter(|m| !known.contains(&m.key.as_str())) {
                report_unknown(
                    &m.key,
                    &m.value.pointer,
                    m.key_span.or(m.value.span),
                    known,
                    true,
                    out,
                );
            }
        }
    }
}

fn report_unknown(
    key: &str,
    pointer: &str,
    span: Option<Span>,
    candidates: &[&str],
    nested: bool,
    out: &mut Emitter<'_>,
) {
    let hint = match suggest::suggest(key, candidates) {
        Some(s) => format!("; did you mean {}?", quoted(s)),
        None if nested && suggest::misplaced(key).is_some() => {
            "; it is a top-level property and has no effect here".to_string()
        }
        None => String::new(),
    };
    out.at(
        RuleId::UnknownProperty,
        Severity::Low,
        pointer,
        span,
        format!(
            "unknown property {} is ignored by the reference tools{hint}",
            quoted(key)
        ),
    );
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
            let all_of_owner = if wildcard {
                " (every repository of the owner)"
            } else {
                ""
            };
            let (severity, what) = match &grant.permissions.value {
                RepositoryPermissions::WriteAll => (Severity::High, "write-all".to_string()),
                p if p.level(Permission::Workflows).is_some() => (
                    Severity::High,
                    "workflows: write (can change CI)".to_string(),
                ),
                p if p.grants_write() && wildcard => {
                    (Severity::High, "write permissions".to_string())
                }
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

/// Marketplace publishers worth imitating; a publisher one or two edits away from one of them is
/// a typosquat candidate.
const KNOWN_PUBLISHERS: &[&str] = &[
    "ms-python",
    "ms-vscode",
    "ms-vscode-remote",
    "ms-toolsai",
    "ms-azuretools",
    "ms-dotnettools",
    "ms-kubernetes-tools",
    "ms-playwright",
    "github",
    "dbaeumer",
    "esbenp",
    "redhat",
    "golang",
    "rust-lang",
    "vscjava",
    "hashicorp",
    "eamodio",
    "streetsidesoftware",
    "visualstudioexptteam",
    "denoland",
    "bradlc",
];

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
    if let Ok(ExtensionRef::Install(ext) | ExtensionRef::Remove(ext)) = ExtensionRef::parse(id) {
        let publisher = ext.publisher.to_ascii_lowercase();
        let near = KNOWN_PUBLISHERS.iter().find(|known| {
            publisher.len() >= 5
                && **known != publisher
                && suggest::distance(known, &publisher) <= 2
        });
        if let Some(known) = near {
            out.node(
                RuleId::ExtensionSource,
                Severity::Medium,
                node,
                format!(
                    "extension publisher {} looks like the well-known publisher {}",
                    quoted(&ext.publisher),
                    quoted(known)
                ),
            );
        }
        return;
    }
    if let Ok(ExtensionRef::Vsix(path)) = ExtensionRef::parse(id) {
        out.node(
            RuleId::ExtensionSource,
            Severity::Medium,
            node,
            format!(
                "extension installed from the package file {} instead of the marketplace",
                quoted(&path)
            ),
        );
    }
}
