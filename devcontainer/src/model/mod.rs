//! The typed model of a `devcontainer.json` (reference notes §2).
//!
//! [`DevContainer::from_tree`] walks the raw [`Node`] tree once, property by property. A
//! property with a wrong type or value is reported in the [`ErrorSink`] and left out of the
//! model; everything else is kept, each value wrapped in [`Located`] so the audit can cite its
//! pointer and line:column. Unknown properties are kept (with their pointers) for the audit's
//! `unknown-property` rule; the reference CLI ignores them.
//!
//! Duplicate keys: the last occurrence is the effective one (as in the CLI); the raw tree lists
//! every duplicate.

pub mod customizations;
pub mod features;
pub mod host;
pub mod lifecycle;
pub mod mounts;
pub mod ports;
pub mod source;

use crate::error::{located, ErrorSink};
use crate::node::{Member, Node, NodeValue};
use crate::span::{Located, Span};

use customizations::Customizations;
use features::Feature;
use host::{HostRequirements, RecommendedSecret};
use lifecycle::{Lifecycle, Phase};
use mounts::Mount;
use ports::{AppPort, ForwardPort, PortAttributes, PortKey};
use source::{Build, ContainerSource};

/// Every top-level property the reference tools know (including deprecated ones).
pub const KNOWN_PROPERTIES: &[&str] = &[
    "$schema",
    "name",
    "image",
    "build",
    "dockerFile",
    "context",
    "dockerComposeFile",
    "service",
    "runServices",
    "workspaceFolder",
    "workspaceMount",
    "overrideCommand",
    "shutdownAction",
    "privileged",
    "capAdd",
    "securityOpt",
    "init",
    "runArgs",
    "mounts",
    "appPort",
    "containerEnv",
    "remoteEnv",
    "containerUser",
    "remoteUser",
    "updateRemoteUserUID",
    "userEnvProbe",
    "forwardPorts",
    "portsAttributes",
    "otherPortsAttributes",
    "features",
    "overrideFeatureInstallOrder",
    "initializeCommand",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "waitFor",
    "hostRequirements",
    "secrets",
    "customizations",
    "extensions",
    "settings",
    "devPort",
    "codespaces",
];

/// A member the model does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownProperty {
    /// The key as written (decoded).
    pub key: String,
    /// Pointer of the member.
    pub pointer: String,
    /// Span of the key.
    pub key_span: Option<Span>,
    /// The value.
    pub value: Node,
}

impl UnknownProperty {
    /// From a member.
    #[must_use]
    pub fn of(m: &Member) -> Self {
        Self {
            key: m.key.clone(),
            pointer: m.value.pointer.clone(),
            key_span: m.key_span,
            value: m.value.clone(),
        }
    }
}

/// One `containerEnv` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Variable name (located at the key).
    pub name: Located<String>,
    /// Value.
    pub value: Located<String>,
}

/// One `remoteEnv` entry (`null` asks to unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEnvVar {
    /// Variable name (located at the key).
    pub name: Located<String>,
    /// Value, `None` for `null`.
    pub value: Located<Option<String>>,
}

/// `shutdownAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownAction {
    /// `none`
    None,
    /// `stopContainer`
    StopContainer,
    /// `stopCompose`
    StopCompose,
}

/// `userEnvProbe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserEnvProbe {
    /// `none`
    None,
    /// `interactiveShell`
    InteractiveShell,
    /// `loginShell`
    LoginShell,
    /// `loginInteractiveShell` (default)
    LoginInteractiveShell,
}

/// `waitFor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitFor {
    /// `initializeCommand`
    InitializeCommand,
    /// `onCreateCommand`
    OnCreateCommand,
    /// `updateContentCommand` (default)
    UpdateContentCommand,
    /// `postCreateCommand`
    PostCreateCommand,
    /// `postStartCommand`
    PostStartCommand,
}

/// A typed `devcontainer.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevContainer {
    /// `name`
    pub name: Option<Located<String>>,
    /// `$schema`
    pub schema: Option<Located<String>>,
    /// `image`
    pub image: Option<Located<String>>,
    /// `build`, or the legacy `dockerFile`/`context` (then `legacy` is set).
    pub build: Option<Located<Build>>,
    /// `dockerComposeFile` (string or array, normalised to a list).
    pub docker_compose_file: Vec<Located<String>>,
    /// `service`
    pub service: Option<Located<String>>,
    /// `runServices`
    pub run_services: Vec<Located<String>>,
    /// `workspaceFolder`
    pub workspace_folder: Option<Located<String>>,
    /// `workspaceMount` (a `--mount` string).
    pub workspace_mount: Option<Located<Mount>>,
    /// `overrideCommand`
    pub override_command: Option<Located<bool>>,
    /// `shutdownAction`
    pub shutdown_action: Option<Located<ShutdownAction>>,
    /// `privileged`
    pub privileged: Option<Located<bool>>,
    /// `capAdd`
    pub cap_add: Vec<Located<String>>,
    /// `securityOpt`
    pub security_opt: Vec<Located<String>>,
    /// `init`
    pub init: Option<Located<bool>>,
    /// `runArgs`: passed to `docker run` verbatim.
    pub run_args: Vec<Located<String>>,
    /// `mounts`
    pub mounts: Vec<Located<Mount>>,
    /// `appPort`
    pub app_port: Vec<Located<AppPort>>,
    /// `containerEnv`
    pub container_env: Vec<EnvVar>,
    /// `remoteEnv`
    pub remote_env: Vec<RemoteEnvVar>,
    /// `containerUser`
    pub container_user: Option<Located<String>>,
    /// `remoteUser`
    pub remote_user: Option<Located<String>>,
    /// `updateRemoteUserUID`
    pub update_remote_user_uid: Option<Located<bool>>,
    /// `userEnvProbe`
    pub user_env_probe: Option<Located<UserEnvProbe>>,
    /// `forwardPorts`
    pub forward_ports: Vec<Located<ForwardPort>>,
    /// `portsAttributes` (key located at the key).
    pub ports_attributes: Vec<(Located<PortKey>, Located<PortAttributes>)>,
    /// `otherPortsAttributes`
    pub other_ports_attributes: Option<Located<PortAttributes>>,
    /// `features`
    pub features: Vec<Feature>,
    /// `overrideFeatureInstallOrder`
    pub override_feature_install_order: Vec<Located<String>>,
    /// The lifecycle commands.
    pub lifecycle: Lifecycle,
    /// `waitFor`
    pub wait_for: Option<Located<WaitFor>>,
    /// `hostRequirements`
    pub host_requirements: Option<Located<HostRequirements>>,
    /// `secrets` (recommended secrets).
    pub secrets: Vec<RecommendedSecret>,
    /// `customizations` (+ migrated legacy `extensions`/`settings`/`devPort`).
    pub customizations: Customizations,
    /// Properties the model does not know, at any level it checks.
    pub unknown: Vec<UnknownProperty>,
}

/// Parse a string-valued enum.
pub(crate) fn enum_value<T: Copy>(
    node: &Node,
    property: &str,
    table: &[(&str, T)],
    errors: &mut ErrorSink,
) -> Option<Located<T>> {
    let names = || {
        table
            .iter()
            .map(|(n, _)| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(s) = node.as_str() else {
        errors.wrong_type(node, property, "a string");
        return None;
    };
    match table.iter().find(|(n, _)| *n == s) {
        Some((_, v)) => Some(located(node, *v)),
        None => {
            errors.invalid(
                node,
                property,
                format!("{s:?} is not allowed; expected one of {}", names()),
            );
            None
        }
    }
}

/// A flag the reference CLI reads with JavaScript truthiness (`if (config.privileged)`): a
/// boolean, or a string that is true unless empty (`"false"` is true). Other types are errors.
fn cli_boolean(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<Located<bool>> {
    match &node.value {
        NodeValue::String(s) => Some(located(node, !s.is_empty())),
        _ => errors.boolean(node, property),
    }
}

fn env_map(node: &Node, errors: &mut ErrorSink) -> Vec<EnvVar> {
    errors
        .string_map(node, "containerEnv")
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| EnvVar { name, value })
        .collect()
}

fn remote_env(node: &Node, errors: &mut ErrorSink) -> Vec<RemoteEnvVar> {
    if node.members().is_none() {
        errors.wrong_type(node, "remoteEnv", "an object of strings or null");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let value = match &m.value.value {
            NodeValue::String(s) => Some(s.clone()),
            NodeValue::Null => None,
            _ => {
                errors.wrong_type(
                    &m.value,
                    &format!("remoteEnv.{}", m.key),
                    "a string or null",
                );
                continue;
            }
        };
        out.push(RemoteEnvVar {
            name: Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span),
            value: located(&m.value, value),
        });
    }
    out
}

impl DevContainer {
    /// Build the model from a raw tree whose root is an object. Errors go to `errors`.
    #[must_use]
    pub fn from_tree(root: &Node, errors: &mut ErrorSink) -> Self {
        let mut d = Self::default();
        let mut unknown = Vec::new();
        for m in root.effective_members() {
            let v = &m.value;
            let k = m.key.as_str();
            match k {
                "name" => d.name = errors.string(v, k),
                "$schema" => d.schema = errors.string(v, k),
                "image" => d.image = errors.string(v, k),
                "build" => {
                    d.build = source::parse_build(v, errors, &mut unknown).map(|b| located(v, b));
                }
                "dockerComposeFile" => {
                    d.docker_compose_file = errors.string_or_array(v, k).unwrap_or_default()
                }
                "service" => d.service = errors.string(v, k),
                "runServices" => d.run_services = errors.string_array(v, k).unwrap_or_default(),
                "workspaceFolder" => d.workspace_folder = errors.string(v, k),
                "workspaceMount" => {
                    d.workspace_mount =
                        errors
                            .string(v, k)
                            .and_then(|s| match Mount::parse_str(&s) {
                                Ok(mount) => Some(s.map(|_| mount)),
                                Err(msg) => {
                                    errors.invalid(v, k, msg);
                                    None
                                }
                            });
                }
                "overrideCommand" => d.override_command = errors.boolean(v, k),
                "shutdownAction" => {
                    d.shutdown_action = enum_value(
                        v,
                        k,
                        &[
                            ("none", ShutdownAction::None),
                            ("stopContainer", ShutdownAction::StopContainer),
                            ("stopCompose", ShutdownAction::StopCompose),
                        ],
                        errors,
                    );
                }
                "privileged" => d.privileged = cli_boolean(v, k, errors),
                "capAdd" => d.cap_add = errors.string_array(v, k).unwrap_or_default(),
                "securityOpt" => d.security_opt = errors.string_array(v, k).unwrap_or_default(),
                "init" => d.init = errors.boolean(v, k),
                "runArgs" => d.run_args = errors.string_array(v, k).unwrap_or_default(),
                "mounts" => d.mounts = mounts::parse_mounts(v, k, errors),
                "appPort" => d.app_port = ports::parse_app_port(v, errors),
                "containerEnv" => d.container_env = env_map(v, errors),
                "remoteEnv" => d.remote_env = remote_env(v, errors),
                "containerUser" => d.container_user = errors.string(v, k),
                "remoteUser" => d.remote_user = errors.string(v, k),
                "updateRemoteUserUID" => d.update_remote_user_uid = errors.boolean(v, k),
                "userEnvProbe" => {
                    d.user_env_probe = enum_value(
                        v,
                        k,
                        &[
                            ("none", UserEnvProbe::None),
                            ("interactiveShell", UserEnvProbe::InteractiveShell),
                            ("loginShell", UserEnvProbe::LoginShell),
                            ("loginInteractiveShell", UserEnvProbe::LoginInteractiveShell),
                        ],
                        errors,
                    );
                }
                "forwardPorts" => d.forward_ports = ports::parse_forward_ports(v, errors),
                "portsAttributes" => d.ports_attributes = ports_attributes(v, errors, &mut unknown),
                "otherPortsAttributes" => {
                    d.other_ports_attributes =
                        ports::parse_port_attributes(v, k, errors, &mut unknown)
                            .map(|a| located(v, a));
                }
                "features" => d.features = features::parse_features(v, k, errors),
                "overrideFeatureInstallOrder" => {
                    d.override_feature_install_order = errors.string_array(v, k).unwrap_or_default()
                }
                "waitFor" => {
                    d.wait_for = enum_value(
                        v,
                        k,
                        &[
                            ("initializeCommand", WaitFor::InitializeCommand),
                            ("onCreateCommand", WaitFor::OnCreateCommand),
                            ("updateContentCommand", WaitFor::UpdateContentCommand),
                            ("postCreateCommand", WaitFor::PostCreateCommand),
                            ("postStartCommand", WaitFor::PostStartCommand),
                        ],
                        errors,
                    );
                }
                "hostRequirements" => {
                    d.host_requirements = host::parse_host_requirements(v, errors, &mut unknown)
                        .map(|h| located(v, h));
                }
                "secrets" => d.secrets = host::parse_secrets(v, errors, &mut unknown),
                // Handled below / by parse_customizations; `codespaces` is the deprecated
                // top-level namespace, kept raw only.
                "dockerFile" | "context" | "customizations" | "extensions" | "settings"
                | "devPort" | "codespaces" => {}
                _ if KNOWN_PROPERTIES.contains(&k) => {}
                _ => unknown.push(UnknownProperty::of(m)),
            }
        }
        d.lifecycle = Lifecycle::parse(root, &Phase::ALL, errors);
        d.customizations = customizations::parse_customizations(root, errors);
        d.legacy_build(root, errors);
        d.check_source(root, errors);
        d.unknown = unknown;
        d
    }

    fn legacy_build(&mut self, root: &Node, errors: &mut ErrorSink) {
        let Some(df) = root.get("dockerFile") else {
            if let Some(ctx) = root.get("context") {
                // `context` without `dockerFile` is meaningless but harmless; still type-check.
                let _ = errors.string(ctx, "context");
            }
            return;
        };
        let dockerfile = errors.string(df, "dockerFile");
        let context = root
            .get("context")
            .and_then(|c| errors.string(c, "context"));
        if self.build.is_none() {
            self.build = Some(located(
                df,
                Build {
                    dockerfile,
                    context,
                    legacy: true,
                    ..Build::default()
                },
            ));
        }
    }

    fn check_source(&self, root: &Node, errors: &mut ErrorSink) {
        let has_dockerfile = self.build.as_ref().is_some_and(|b| b.dockerfile.is_some());
        let written: Vec<&str> = [
            (has_dockerfile, "a Dockerfile (build.dockerfile/dockerFile)"),
            (self.image.is_some(), "image"),
            (!self.docker_compose_file.is_empty(), "dockerComposeFile"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        if written.len() > 1 {
            errors.invalid(
                root,
                "container source",
                format!(
                    "several container sources are given ({}); expected exactly one. The reference CLI silently uses {}",
                    written.join(", "),
                    written[0]
                ),
            );
        }
    }

    /// The container source the reference CLI would use (Dockerfile > image > Compose).
    #[must_use]
    pub fn source(&self) -> ContainerSource {
        if self.build.as_ref().is_some_and(|b| b.dockerfile.is_some()) {
            ContainerSource::Dockerfile
        } else if self.image.is_some() {
            ContainerSource::Image
        } else if !self.docker_compose_file.is_empty() {
            ContainerSource::Compose
        } else {
            ContainerSource::Default
        }
    }
}

fn ports_attributes(
    node: &Node,
    errors: &mut ErrorSink,
    unknown: &mut Vec<UnknownProperty>,
) -> Vec<(Located<PortKey>, Located<PortAttributes>)> {
    if node.members().is_none() {
        errors.wrong_type(
            node,
            "portsAttributes",
            "an object keyed by port, range or pattern",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let prop = format!("portsAttributes.{}", m.key);
        if let Some(a) = ports::parse_port_attributes(&m.value, &prop, errors, unknown) {
            out.push((
                Located::new(PortKey::parse(&m.key), m.value.pointer.clone(), m.key_span),
                located(&m.value, a),
            ));
        }
    }
    out
}
