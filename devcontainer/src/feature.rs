//! `devcontainer-feature.json`: the metadata of a feature, and what the feature contributes to
//! the container it is installed in.
//!
//! A feature is root-run code (`install.sh`) plus declarations merged into the container
//! configuration: `privileged`, `init`, `capAdd`, `securityOpt`, `mounts`, `containerEnv`, an
//! `entrypoint` run at every start, lifecycle commands and customizations. An auditor reviewing
//! a devcontainer.json that uses a local feature must look at these too, which is why they are
//! typed the same way as the document's own properties.

use crate::error::{located, ErrorSink};
use crate::model::customizations::{parse_customizations, Customizations};
use crate::model::features::{parse_feature_options, FeatureOptions, FeatureRef};
use crate::model::lifecycle::{Lifecycle, Phase};
use crate::model::mounts::{parse_mounts, Mount};
use crate::model::{EnvVar, UnknownProperty};
use crate::node::{Node, NodeValue};
use crate::parsed::Parsed;
use crate::span::Located;

/// Top-level properties of `devcontainer-feature.json` the model knows.
pub const KNOWN_FEATURE_PROPERTIES: &[&str] = &[
    "$schema",
    "id",
    "version",
    "name",
    "description",
    "documentationURL",
    "licenseURL",
    "keywords",
    "options",
    "containerEnv",
    "privileged",
    "init",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "mounts",
    "customizations",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "dependsOn",
    "installsAfter",
    "legacyIds",
    "deprecated",
];

/// Type of a feature option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionType {
    /// `"string"`
    String,
    /// `"boolean"`
    Boolean,
}

/// A default/proposal/enum value of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionDefault {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
}

/// One declared option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureOption {
    /// Option id (located at the key).
    pub id: Located<String>,
    /// `type`.
    pub kind: Option<Located<OptionType>>,
    /// `default`.
    pub default: Option<Located<OptionDefault>>,
    /// `proposals`: suggestions, other values allowed.
    pub proposals: Vec<Located<String>>,
    /// `enum`: the only values allowed.
    pub enum_values: Vec<Located<String>>,
    /// `description`.
    pub description: Option<Located<String>>,
}

/// One `dependsOn` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The key (a feature reference), located at the key.
    pub key: Located<String>,
    /// The parsed reference.
    pub reference: FeatureRef,
    /// Options passed to it.
    pub options: Located<FeatureOptions>,
}

/// A typed `devcontainer-feature.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureMetadata {
    /// `id` (required).
    pub id: Option<Located<String>>,
    /// `version`.
    pub version: Option<Located<String>>,
    /// `name`.
    pub name: Option<Located<String>>,
    /// `description`.
    pub description: Option<Located<String>>,
    /// `documentationURL`.
    pub documentation_url: Option<Located<String>>,
    /// `licenseURL`.
    pub license_url: Option<Located<String>>,
    /// `keywords`.
    pub keywords: Vec<Located<String>>,
    /// `options`.
    pub options: Vec<FeatureOption>,
    /// `containerEnv`.
    pub container_env: Vec<EnvVar>,
    /// `privileged`.
    pub privileged: Option<Located<bool>>,
    /// `init`.
    pub init: Option<Located<bool>>,
    /// `capAdd`.
    pub cap_add: Vec<Located<String>>,
    /// `securityOpt`.
    pub security_opt: Vec<Located<String>>,
    /// `entrypoint`: run at every container start.
    pub entrypoint: Option<Located<String>>,
    /// `mounts`.
    pub mounts: Vec<Located<Mount>>,
    /// `customizations`.
    pub customizations: Customizations,
    /// Lifecycle commands (no `initializeCommand` for features).
    pub lifecycle: Lifecycle,
    /// `dependsOn`: hard dependencies.
    pub depends_on: Vec<Dependency>,
    /// `installsAfter`: soft ordering.
    pub installs_after: Vec<Located<String>>,
    /// `legacyIds`.
    pub legacy_ids: Vec<Located<String>>,
    /// `deprecated`.
    pub deprecated: Option<Located<bool>>,
    /// Unknown properties.
    pub unknown: Vec<UnknownProperty>,
}

fn option_default(
    node: &Node,
    property: &str,
    errors: &mut ErrorSink,
) -> Option<Located<OptionDefault>> {
    match &node.value {
        NodeValue::String(s) => Some(located(node, OptionDefault::String(s.clone()))),
        NodeValue::Bool(b) => Some(located(node, OptionDefault::Bool(*b))),
        _ => {
            errors.wrong_type(node, property, "a string or a boolean");
            None
        }
    }
}

fn parse_options(
    node: &Node,
    errors: &mut ErrorSink,
    unknown: &mut Vec<UnknownProperty>,
) -> Vec<FeatureOption> {
    if node.members().is_none() {
        errors.wrong_type(node, "options", "an object keyed by option id");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let o = &m.value;
        let prop = format!("options.{}", m.key);
        if o.members().is_none() {
            errors.wrong_type(o, &prop, "an object {type, default, ...}");
            continue;
        }
        let mut opt = FeatureOption {
            id: Located::new(m.key.clone(), o.pointer.clone(), m.key_span),
            kind: None,
            default: None,
            proposals: Vec::new(),
            enum_values: Vec::new(),
            description: None,
        };
        for f in o.effective_members() {
            let v = &f.value;
            let p = format!("{prop}.{}", f.key);
            match f.key.as_str() {
                "type" => {
                    opt.kind = crate::model::enum_value(
                        v,
                        &p,
                        &[
                            ("string", OptionType::String),
                            ("boolean", OptionType::Boolean),
                        ],
                        errors,
                    );
                }
                "default" => opt.default = option_default(v, &p, errors),
                "proposals" => opt.proposals = errors.string_array(v, &p).unwrap_or_default(),
                "enum" => opt.enum_values = errors.string_array(v, &p).unwrap_or_default(),
                "description" => opt.description = errors.string(v, &p),
                _ => unknown.push(UnknownProperty::of(f)),
            }
        }
        out.push(opt);
    }
    out
}

fn parse_depends_on(node: &Node, errors: &mut ErrorSink) -> Vec<Dependency> {
    if node.members().is_none() {
        errors.wrong_type(node, "dependsOn", "an object keyed by feature id");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let reference = match FeatureRef::parse(&m.key) {
            Ok(r) => r,
            Err(msg) => {
                errors.invalid(&m.value, "dependsOn", msg);
                continue;
            }
        };
        if let Some(options) =
            parse_feature_options(&m.value, &format!("dependsOn.{}", m.key), errors)
        {
            out.push(Dependency {
                key: Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span),
                reference,
                options: located(&m.value, options),
            });
        }
    }
    out
}

impl FeatureMetadata {
    /// Build the model from a raw tree whose root is an object.
    #[must_use]
    pub fn from_tree(root: &Node, errors: &mut ErrorSink) -> Self {
        let mut f = Self::default();
        let mut unknown = Vec::new();
        for m in root.effective_members() {
            let v = &m.value;
            let k = m.key.as_str();
            match k {
                "id" => f.id = errors.string(v, k),
                "version" => f.version = errors.string(v, k),
                "name" => f.name = errors.string(v, k),
                "description" => f.description = errors.string(v, k),
                "documentationURL" => f.documentation_url = errors.string(v, k),
                "licenseURL" => f.license_url = errors.string(v, k),
                "keywords" => f.keywords = errors.string_array(v, k).unwrap_or_default(),
                "options" => f.options = parse_options(v, errors, &mut unknown),
                "containerEnv" => {
                    f.container_env = errors
                        .string_map(v, k)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, value)| EnvVar { name, value })
                        .collect();
                }
                "privileged" => f.privileged = errors.boolean(v, k),
                "init" => f.init = errors.boolean(v, k),
                "capAdd" => f.cap_add = errors.string_array(v, k).unwrap_or_default(),
                "securityOpt" => f.security_opt = errors.string_array(v, k).unwrap_or_default(),
                "entrypoint" => f.entrypoint = errors.string(v, k),
                "mounts" => f.mounts = parse_mounts(v, k, errors),
                "dependsOn" => f.depends_on = parse_depends_on(v, errors),
                "installsAfter" => f.installs_after = errors.string_array(v, k).unwrap_or_default(),
                "legacyIds" => f.legacy_ids = errors.string_array(v, k).unwrap_or_default(),
                "deprecated" => f.deprecated = errors.boolean(v, k),
                _ if KNOWN_FEATURE_PROPERTIES.contains(&k) => {}
                _ => unknown.push(UnknownProperty::of(m)),
            }
        }
        if f.id.is_none() {
            errors.push(
                root,
                crate::ModelErrorKind::MissingMember {
                    property: "devcontainer-feature.json".to_owned(),
                    member: "id",
                },
            );
        }
        f.lifecycle = Lifecycle::parse(root, &Phase::ALL[1..], errors);
        f.customizations = parse_customizations(root, errors);
        f.customizations.vscode = f
            .customizations
            .vscode
            .take()
            .filter(|_| root.get("customizations").is_some());
        f.unknown = unknown;
        f
    }
}

/// Parse a `devcontainer-feature.json` text.
///
/// ```
/// let parsed = codespace_devcontainer::parse_feature(
///     r#"{"id": "dind", "version": "2.0.0", "privileged": true, "entrypoint": "/init.sh"}"#,
/// );
/// let feature = parsed.model.unwrap();
/// assert_eq!(feature.privileged.unwrap().pointer, "/privileged");
/// assert_eq!(feature.entrypoint.unwrap().value, "/init.sh");
/// ```
#[must_use]
pub fn parse_feature(text: &str) -> Parsed<FeatureMetadata> {
    Parsed::build(text, FeatureMetadata::from_tree)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn feature_contributions() {
        let p = parse_feature(
            r#"{
  "id": "docker-outside-of-docker", "version": "1.6.0",
  "options": {"version": {"type": "string", "proposals": ["latest"], "default": "latest"},
              "moby": {"type": "boolean", "default": true}},
  "privileged": true, "init": true, "entrypoint": "/usr/local/share/init.sh",
  "mounts": [{"source": "/var/run/docker.sock", "target": "/var/run/docker-host.sock", "type": "bind"}],
  "securityOpt": ["label=disable"], "containerEnv": {"A": "b"},
  "postCreateCommand": ["echo", "x"],
  "dependsOn": {"ghcr.io/devcontainers/features/common-utils:2": {"x": true}},
  "installsAfter": ["ghcr.io/devcontainers/features/common-utils"],
  "customizations": {"vscode": {"extensions": ["ms-azuretools.vscode-docker"]}}
}"#,
        );
        assert!(p.is_ok(), "{:?}", p.diagnostics());
        let f = p.model.unwrap();
        assert_eq!(f.options.len(), 2);
        assert_eq!(
            f.options[1].default.as_ref().unwrap().value,
            OptionDefault::Bool(true)
        );
        assert_eq!(f.mounts[0].source.as_deref(), Some("/var/run/docker.sock"));
        assert!(f.lifecycle.post_create.is_some());
        assert_eq!(f.depends_on.len(), 1);
        assert_eq!(f.customizations.vscode.unwrap().extensions.len(), 1);
    }

    #[test]
    fn errors_are_collected() {
        let p = parse_feature(
            r#"{"privileged": "yes", "options": {"a": {"type": "number"}}, "initializeCommand": "x", "onCreateCommand": 1}"#,
        );
        let d = p.diagnostics();
        // missing id, privileged type, option type, onCreateCommand type
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(p.model.unwrap().unknown[0].key, "initializeCommand");
    }
}
