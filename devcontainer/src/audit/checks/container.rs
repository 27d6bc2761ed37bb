//! Isolation properties: privileged, capAdd, securityOpt, runArgs, mounts, workspaceMount,
//! users, published ports, Compose.

use super::super::docker_args::{self, RunFlag};
use super::super::environment::{
    dangerous_name, local_env_references, public_variable, secret_name,
};
use super::super::mounts::{self, MountSpec};
use super::super::{AuditContext, Emitter, RuleId, Severity};
use super::{quoted, strings};
use crate::node::{Node, NodeValue};

/// `privileged`, `capAdd`, `securityOpt` (shared by devcontainer.json and feature metadata).
pub(super) fn isolation(root: &Node, out: &mut Emitter<'_>) {
    if let Some(node) = root.get("privileged") {
        if node.as_bool() == Some(true) {
            out.node(
                RuleId::Privileged,
                Severity::Critical,
                node,
                "`privileged: true` runs the container privileged: all capabilities, all host devices, no seccomp/AppArmor".into(),
            );
        } else if let Some(s) = node.as_str().filter(|s| !s.is_empty()) {
            // The CLI tests the value for truth: every non-empty string, "false" included.
            out.node(
                RuleId::Privileged,
                Severity::Critical,
                node,
                format!("`privileged` is {}, a non-empty string, which the devcontainer CLI treats as true: the container runs privileged (all capabilities, all host devices, no seccomp/AppArmor)", quoted(s)),
            );
        }
    }
    if let Some(node) = root.get("capAdd") {
        for (item, name) in strings(node) {
            capability(item, name, out);
        }
    }
    if let Some(node) = root.get("securityOpt") {
        for (item, value) in strings(node) {
            security_opt(item, value, out);
        }
    }
}

fn capability(node: &Node, raw: &str, out: &mut Emitter<'_>) {
    let name = docker_args::normalise_capability(raw);
    if name.is_empty() {
        return;
    }
    match docker_args::dangerous_capability(&name) {
        Some(reason) => out.node(
            RuleId::Capability,
            Severity::High,
            node,
            format!("capability {name} added: {reason}"),
        ),
        None => out.node(
            RuleId::Capability,
            Severity::Medium,
            node,
            format!("capability {} added", quoted(&name)),
        ),
    }
}

fn security_opt(node: &Node, value: &str, out: &mut Emitter<'_>) {
    if let Some(what) = docker_args::unconfined_security_opt(value) {
        out.node(
            RuleId::UnconfinedSecurity,
            Severity::High,
            node,
            format!("security option {}: {what}", quoted(value)),
        );
    }
}

/// `runArgs`, parsed with Docker's flag grammar.
pub(super) fn run_args(root: &Node, out: &mut Emitter<'_>) {
    let Some(node) = root.get("runArgs") else {
        return;
    };
    let Some(items) = node.elements() else {
        return;
    };
    let args: Vec<String> = items
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect();
    for parsed in docker_args::parse_run_args(&args) {
        let Some(item) = items.get(parsed.index) else {
            continue;
        };
        match parsed.flag {
            RunFlag::Privileged => out.node(
                RuleId::Privileged,
                Severity::Critical,
                item,
                "runArgs `--privileged` runs the container privileged".into(),
            ),
            RunFlag::CapAdd(name) => capability(item, &name, out),
            RunFlag::SecurityOpt(value) => security_opt(item, &value, out),
            RunFlag::Namespace { namespace, mode } => {
                let severity = if mode == "host" {
                    Severity::Critical
                } else {
                    Severity::Medium
                };
                out.node(
                    RuleId::HostNamespace,
                    severity,
                    item,
                    format!(
                        "runArgs share the {namespace} namespace ({})",
                        quoted(&mode)
                    ),
                );
            }
            RunFlag::Volume(spec) => {
                mount_exposure(
                    item,
                    &mounts::parse_volume(&spec),
                    "runArgs volume",
                    false,
                    out,
                );
            }
            RunFlag::Mount(spec) => {
                mount_exposure(
                    item,
                    &mounts::parse_mount_csv(&spec),
                    "runArgs mount",
                    false,
                    out,
                );
            }
            RunFlag::Device(spec) => {
                let device = spec.split(':').next().unwrap_or_default();
                out.node(
                    RuleId::HostDevice,
                    Severity::Medium,
                    item,
                    format!("host device {} passed to the container", quoted(device)),
                );
            }
            RunFlag::Gpus(spec) => out.node(
                RuleId::HostDevice,
                Severity::Low,
                item,
                format!("GPUs ({}) passed to the container", quoted(&spec)),
            ),
            RunFlag::EnvFile(path) => {
                // A host variable (`${localEnv:HOME}/.env`) names a host path too; only the
                // workspace folder is inside.
                let outside = path.contains("..")
                    || path.starts_with('/')
                    || path.starts_with('~')
                    || path.starts_with('\\')
                    || path.as_bytes().get(1) == Some(&b':')
                    || (path.contains('$') && !path.starts_with("${localWorkspaceFolder}"));
                let severity = if outside {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                out.node(
                    RuleId::HostEnvFile,
                    severity,
                    item,
                    format!(
                        "`--env-file` reads host file {} into the container environment",
                        quoted(&path)
                    ),
                );
            }
            RunFlag::Env(assignment) => match assignment.split_once('=') {
                Some((name, value)) => {
                    env_entry(item, name, Some(value), "runArgs", Severity::High, out);
                }
                // `-e NAME`: Docker copies the host's value of NAME.
                None => {
                    env_entry(item, &assignment, None, "runArgs", Severity::High, out);
                    if secret_name(&assignment) {
                        out.node(
                            RuleId::HostSecretForwarding,
                            Severity::High,
                            item,
                            format!(
                                "runArgs `-e` {} without a value copies the host's value of it into the container",
                                quoted(&assignment)
                            ),
                        );
                    }
                }
            },
            RunFlag::User(user) => {
                if is_root(&user) {
                    out.node(
                        RuleId::RootUser,
                        Severity::Medium,
                        item,
                        format!("runArgs run the container as {}", quoted(&user)),
                    );
                }
            }
            RunFlag::Publish(spec) => publish(item, &spec, "runArgs `-p`", out),
            RunFlag::PublishAll => out.node(
                RuleId::AppPortAllInterfaces,
                Severity::Medium,
                item,
                "runArgs `-P`/`--publish-all` publishes every exposed port on all host interfaces"
                    .into(),
            ),
            RunFlag::DeviceCgroupRule(rule) => {
                let every = docker_args::device_rule_covers_every(&rule);
                out.node(
                    RuleId::HostDevice,
                    if every {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    item,
                    format!(
                        "runArgs `--device-cgroup-rule` {} lets the container use host devices it creates with mknod{}",
                        quoted(&rule),
                        if every { " (every device of the kind)" } else { "" }
                    ),
                );
            }
        }
    }
}

/// `build.options`: extra `docker build` flags. Host networking at build time lets the
/// Dockerfile's `RUN` steps reach services bound to the host's loopback.
pub(super) fn build_options(root: &Node, out: &mut Emitter<'_>) {
    let Some(items) = root.resolve("/build/options").and_then(Node::elements) else {
        return;
    };
    let args: Vec<String> = items
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect();
    for parsed in docker_args::parse_run_args(&args) {
        if let (Some(item), RunFlag::Namespace { namespace, mode }) =
            (items.get(parsed.index), &parsed.flag)
        {
            out.node(
                RuleId::HostNamespace,
                Severity::Medium,
                item,
                format!(
                    "build.options build with the host's {namespace} namespace ({})",
                    quoted(mode)
                ),
            );
        }
    }
}

/// Environment entry checks shared by runArgs `-e` and the env maps: dangerous names and
/// `${localEnv:SECRET}` forwarding.
pub(super) fn env_entry(
    node: &Node,
    name: &str,
    value: Option<&str>,
    place: &str,
    forwarding: Severity,
    out: &mut Emitter<'_>,
) {
    if let Some(reason) = dangerous_name(name) {
        out.node(
            RuleId::DangerousEnvironment,
            Severity::Medium,
            node,
            format!("{place} sets {}: {reason}", quoted(name)),
        );
    }
    if let Some(value) = value {
        for var in local_env_references(value) {
            if secret_name(var) || secret_name(name) && !var.is_empty() && !public_variable(var) {
                out.node(
                    RuleId::HostSecretForwarding,
                    forwarding,
                    node,
                    format!(
                        "{place} copies host variable {} into {}",
                        quoted(var),
                        quoted(name)
                    ),
                );
            }
        }
    }
}

fn publish(node: &Node, spec: &str, place: &str, out: &mut Emitter<'_>) {
    let spec = spec.trim();
    if let Some(what) = docker_args::publish_exposure(spec) {
        out.node(
            RuleId::AppPortAllInterfaces,
            Severity::Medium,
            node,
            format!("{place} {} {what}", quoted(spec)),
        );
    }
}

/// `mounts` (string and object forms).
pub(super) fn mounts(root: &Node, out: &mut Emitter<'_>) {
    let Some(items) = root.get("mounts").and_then(Node::elements) else {
        return;
    };
    for item in items {
        let spec = match &item.value {
            NodeValue::String(s) => mounts::parse_mount_csv(s),
            NodeValue::Object(_) => MountSpec {
                kind: item
                    .get("type")
                    .and_then(Node::as_str)
                    .map(str::to_ascii_lowercase),
                source: item
                    .get("source")
                    .and_then(Node::as_str)
                    .map(str::to_string),
                target: item
                    .get("target")
                    .and_then(Node::as_str)
                    .map(str::to_string),
            },
            _ => continue,
        };
        mount_exposure(item, &spec, "mount", false, out);
    }
}

/// `workspaceMount`: like a mount, and its source must stay inside the workspace.
pub(super) fn workspace_mount(root: &Node, out: &mut Emitter<'_>) {
    let Some(node) = root.get("workspaceMount") else {
        return;
    };
    let Some(text) = node.as_str() else {
        return;
    };
    mount_exposure(
        node,
        &mounts::parse_mount_csv(text),
        "workspaceMount",
        true,
        out,
    );
}

/// Classifies one mount's source (raw, then substituted) and reports what it exposes.
fn mount_exposure(
    node: &Node,
    spec: &MountSpec,
    place: &str,
    workspace: bool,
    out: &mut Emitter<'_>,
) {
    let Some(source) = spec.source.as_deref() else {
        return;
    };
    let named_volume = spec.kind.as_deref() == Some("volume") && !mounts::looks_like_path(source);
    if named_volume || source.trim().is_empty() {
        return;
    }
    for var in local_env_references(source) {
        if secret_name(var) {
            out.node(
                RuleId::HostSecretForwarding,
                Severity::High,
                node,
                format!("{place} source uses host variable {}", quoted(var)),
            );
        }
    }
    if let Some(exposure) = mounts::classify_source(source) {
        let (rule, severity, what) = mounts::rate(&exposure, workspace);
        out.node(rule, severity, node, format!("{place} {what}"));
    }
}

fn is_root(user: &str) -> bool {
    let name = user.trim().split(':').next().unwrap_or_default();
    name == "root" || name == "0"
}

/// `remoteUser`, `containerUser`.
pub(super) fn users(root: &Node, out: &mut Emitter<'_>) {
    for property in ["containerUser", "remoteUser"] {
        if let Some(node) = root.get(property) {
            if node.as_str().is_some_and(is_root) {
                out.node(
                    RuleId::RootUser,
                    Severity::Medium,
                    node,
                    format!(
                        "{property} is root: tools, terminals and lifecycle commands run as root"
                    ),
                );
            }
        }
    }
}

/// `appPort` strings and `portsAttributes.*.elevateIfNeeded`.
pub(super) fn ports(root: &Node, out: &mut Emitter<'_>) {
    if let Some(node) = root.get("appPort") {
        for (item, spec) in strings(node) {
            publish(item, spec, "appPort", out);
        }
    }
    let mut attributes: Vec<&Node> = root
        .get("portsAttributes")
        .and_then(Node::members)
        .map(|m| m.iter().map(|m| &m.value).collect())
        .unwrap_or_default();
    attributes.extend(root.get("otherPortsAttributes"));
    for attrs in attributes {
        if let Some(flag) = attrs.get("elevateIfNeeded") {
            if flag.as_bool() == Some(true) {
                out.node(
                    RuleId::ElevateIfNeeded,
                    Severity::Low,
                    flag,
                    "`elevateIfNeeded: true` lets port forwarding ask for administrator rights on the host".into(),
                );
            }
        }
    }
}

/// `dockerComposeFile`: the isolation settings live elsewhere; said unless the caller passed the
/// Compose files in (then `audit_compose` audits them).
pub(super) fn compose(root: &Node, ctx: &AuditContext, out: &mut Emitter<'_>) {
    if ctx.compose.is_some() {
        return;
    }
    if let Some(node) = root.get("dockerComposeFile") {
        out.node(
            RuleId::ComposeNotAudited,
            Severity::Info,
            node,
            "the container is defined by Docker Compose and the Compose files were not read; privileged mode, mounts and host networking in them are not audited".into(),
        );
    }
}
