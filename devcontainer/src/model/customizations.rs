//! `customizations`: tool-specific settings. Two namespaces are typed because they grant
//! something: `vscode` (extensions to install, machine settings) and `codespaces` (extra
//! repository permissions for the token, files to open). Every other namespace is kept raw.
//!
//! Legacy top-level `extensions`, `settings` and `devPort` are migrated like the CLI's
//! `updateFromOldProperties`: extensions appended after `customizations.vscode.extensions`,
//! settings merged with `customizations.vscode.settings` winning, `devPort` replacing.

use crate::error::{located, ErrorSink, ModelErrorKind};
use crate::extensions::ExtensionRef;
use crate::model::ports::port_number;
use crate::node::Node;
use crate::repositories::{parse_repositories, RepositoryGrant};
use crate::span::Located;

/// The typed view of `customizations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Customizations {
    /// `customizations.vscode` (plus migrated legacy properties).
    pub vscode: Option<VsCodeCustomizations>,
    /// `customizations.codespaces`.
    pub codespaces: Option<CodespacesCustomizations>,
    /// Pointer and span of the `customizations` object, if written (its other namespaces are
    /// in the raw tree at that pointer; not copied here, as they can be large).
    pub location: Option<Located<()>>,
}

/// `customizations.vscode`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VsCodeCustomizations {
    /// Parsed extension references, `customizations.vscode.extensions` first, then legacy
    /// top-level `extensions`. Invalid entries are errors and not listed.
    pub extensions: Vec<Located<ExtensionRef>>,
    /// `customizations.vscode.settings`, kept raw.
    pub settings: Option<Node>,
    /// Legacy top-level `settings`, kept raw (overridden key by key by `settings`).
    pub legacy_settings: Option<Node>,
    /// `devPort` (legacy top-level wins, as in the CLI).
    pub dev_port: Option<Located<u16>>,
}

impl VsCodeCustomizations {
    /// The settings the CLI would apply: legacy settings overlaid with `settings`.
    #[must_use]
    pub fn effective_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for node in [&self.legacy_settings, &self.settings]
            .into_iter()
            .flatten()
        {
            if let serde_json::Value::Object(map) = node.to_json_value() {
                out.extend(map);
            }
        }
        out
    }
}

/// `customizations.codespaces`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodespacesCustomizations {
    /// `repositories`: extra token permissions requested.
    pub repositories: Vec<RepositoryGrant>,
    /// `openFiles`.
    pub open_files: Vec<Located<String>>,
    /// `disableAutomaticConfiguration`.
    pub disable_automatic_configuration: Option<Located<bool>>,
}

fn parse_extensions(
    node: &Node,
    property: &str,
    errors: &mut ErrorSink,
) -> Vec<Located<ExtensionRef>> {
    let Some(items) = node.elements() else {
        errors.wrong_type(node, property, "an array of extension id strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(s) = item.as_str() else {
            errors.wrong_type(
                item,
                &format!("each entry of {property}"),
                "an extension id string (\"publisher.name\")",
            );
            continue;
        };
        match ExtensionRef::parse(s) {
            Ok(r) => out.push(located(item, r)),
            Err(e) => errors.push(item, ModelErrorKind::Extension(e)),
        }
    }
    out
}

/// Parse `customizations` of a document (`root` is the document, for the legacy properties).
pub fn parse_customizations(root: &Node, errors: &mut ErrorSink) -> Customizations {
    let raw = root.get("customizations");
    let mut out = Customizations {
        location: raw.map(|c| located(c, ())),
        ..Customizations::default()
    };
    if let Some(c) = raw {
        if c.members().is_none() {
            errors.wrong_type(c, "customizations", "an object keyed by tool name");
        }
    }
    let vscode_node = raw.and_then(|c| c.get("vscode"));
    let legacy_ext = root.get("extensions");
    let legacy_settings = root.get("settings");
    let legacy_dev_port = root.get("devPort");
    if vscode_node.is_some()
        || legacy_ext.is_some()
        || legacy_settings.is_some()
        || legacy_dev_port.is_some()
    {
        let mut v = VsCodeCustomizations::default();
        if let Some(vs) = vscode_node {
            if vs.members().is_none() {
                errors.wrong_type(vs, "customizations.vscode", "an object");
            }
            if let Some(e) = vs.get("extensions") {
                v.extensions = parse_extensions(e, "customizations.vscode.extensions", errors);
            }
            if let Some(s) = vs.get("settings") {
                if s.members().is_none() {
                    errors.wrong_type(s, "customizations.vscode.settings", "an object");
                }
                v.settings = Some(s.clone());
            }
            if let Some(p) = vs.get("devPort") {
                v.dev_port =
                    port_number(p, "customizations.vscode.devPort", errors).map(|n| located(p, n));
            }
        }
        if let Some(e) = legacy_ext {
            v.extensions
                .extend(parse_extensions(e, "extensions", errors));
        }
        if let Some(s) = legacy_settings {
            if s.members().is_none() {
                errors.wrong_type(s, "settings", "an object");
            }
            v.legacy_settings = Some(s.clone());
        }
        if let Some(p) = legacy_dev_port {
            v.dev_port = port_number(p, "devPort", errors).map(|n| located(p, n));
        }
        out.vscode = Some(v);
    }
    if let Some(cs) = raw.and_then(|c| c.get("codespaces")) {
        out.codespaces = Some(parse_codespaces(cs, errors));
    }
    out
}

fn parse_codespaces(cs: &Node, errors: &mut ErrorSink) -> CodespacesCustomizations {
    let mut out = CodespacesCustomizations::default();
    if cs.members().is_none() {
        errors.wrong_type(cs, "customizations.codespaces", "an object");
        return out;
    }
    if let Some(r) = cs.get("repositories") {
        out.repositories = parse_repositories(r, errors);
    }
    if let Some(f) = cs.get("openFiles") {
        out.open_files = errors
            .string_array(f, "customizations.codespaces.openFiles")
            .unwrap_or_default();
    }
    if let Some(d) = cs.get("disableAutomaticConfiguration") {
        out.disable_automatic_configuration =
            errors.boolean(d, "customizations.codespaces.disableAutomaticConfiguration");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vscode_and_legacy_are_merged() {
        let root = Node::from_json_value(&json!({
            "customizations": {"vscode": {"extensions": ["a.b", 3, "ms\u{2011}python.python"], "settings": {"x": 1, "y": 1}},
                               "codespaces": {"openFiles": ["README.md"], "repositories": {"o/r": {"permissions": "read-all"}}}},
            "extensions": ["-c.d"], "settings": {"y": 2, "z": 2}, "devPort": 8000
        }));
        let mut e = ErrorSink::new();
        let c = parse_customizations(&root, &mut e);
        let errs = e.into_errors();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[1].to_string().contains("U+2011"));
        let v = c.vscode.unwrap();
        assert_eq!(v.extensions.len(), 2);
        assert_eq!(v.extensions[1].pointer, "/extensions/0");
        assert_eq!(v.effective_settings().get("y"), Some(&json!(1)));
        assert_eq!(v.effective_settings().get("z"), Some(&json!(2)));
        assert_eq!(v.dev_port.unwrap().value, 8000);
        let cs = c.codespaces.unwrap();
        assert_eq!(cs.open_files.len(), 1);
        assert_eq!(cs.repositories.len(), 1);
    }
}
