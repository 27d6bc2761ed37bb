//! Lifecycle commands and feature entrypoints: what runs, where, and whether it runs code
//! fetched from the network.

use super::super::environment::{local_env_references, secret_name};
use super::super::shell::{self, DownloadExecKind};
use super::super::{Emitter, RuleId, Severity};
use super::quoted;
use crate::node::{Node, NodeValue};

/// Lifecycle properties in execution order; `initializeCommand` only exists in devcontainer.json.
const PHASES: &[&str] = &[
    "initializeCommand",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
];

/// One command in any of the three forms: the node to point at and what to analyse.
enum Form<'a> {
    Script(&'a Node, &'a str),
    Argv(&'a Node, Vec<String>),
}

/// The commands of one lifecycle value: a string, an argv array, or an object of either.
fn forms(node: &Node) -> Vec<Form<'_>> {
    fn single(node: &Node) -> Option<Form<'_>> {
        match &node.value {
            NodeValue::String(s) => Some(Form::Script(node, s)),
            NodeValue::Array(items) => Some(Form::Argv(
                node,
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect(),
            )),
            _ => None,
        }
    }
    match &node.value {
        NodeValue::Object(_) => node
            .effective_members()
            .filter_map(|m| single(&m.value))
            .collect(),
        _ => single(node).into_iter().collect(),
    }
}

fn has_command(node: &Node) -> bool {
    match &node.value {
        NodeValue::String(s) => !s.trim().is_empty(),
        NodeValue::Array(items) => !items.is_empty(),
        NodeValue::Object(members) => !members.is_empty(),
        _ => false,
    }
}

fn download_exec<'a>(form: &Form<'a>) -> Option<(&'a Node, DownloadExecKind)> {
    match form {
        Form::Script(node, s) => shell::analyse_script(s).map(|k| (*node, k)),
        Form::Argv(node, argv) => shell::analyse_argv(argv).map(|k| (*node, k)),
    }
}

/// Lifecycle hooks. `devcontainer` says whether `initializeCommand` is meaningful (it is not a
/// feature property).
pub(super) fn lifecycle(root: &Node, devcontainer: bool, out: &mut Emitter<'_>) {
    for &phase in PHASES {
        let Some(node) = root.get(phase) else {
            continue;
        };
        if !has_command(node) {
            continue;
        }
        if phase == "initializeCommand" && devcontainer {
            out.node(
                RuleId::InitializeCommandOnHost,
                Severity::Critical,
                node,
                "initializeCommand runs on the host, outside the container, every time the container starts".into(),
            );
        } else {
            out.node(
                RuleId::LifecycleCommand,
                Severity::Info,
                node,
                format!("{phase} runs repository code in the container"),
            );
        }
        for form in forms(node) {
            host_secrets(phase, &form, out);
            if let Some((at, kind)) = download_exec(&form) {
                let place = if phase == "initializeCommand" {
                    "on the host"
                } else {
                    "in the container"
                };
                out.node(
                    RuleId::DownloadAndExecute,
                    Severity::Critical,
                    at,
                    format!(
                        "{phase} downloads and executes code {place}: {}",
                        kind.describe()
                    ),
                );
            }
        }
    }
}

/// `${localEnv:SECRET}` in a command: the CLI substitutes the host's value into the command
/// line, which sends it wherever the command likes (and into the process list and logs).
fn host_secrets(phase: &str, form: &Form<'_>, out: &mut Emitter<'_>) {
    let (node, texts): (&Node, Vec<&str>) = match form {
        Form::Script(node, s) => (node, vec![s]),
        Form::Argv(node, argv) => (node, argv.iter().map(String::as_str).collect()),
    };
    let mut names: Vec<&str> = texts
        .into_iter()
        .flat_map(local_env_references)
        .filter(|name| secret_name(name))
        .collect();
    names.dedup();
    if !names.is_empty() {
        let shown: Vec<String> = names.iter().map(|n| quoted(n)).collect();
        out.node(
            RuleId::HostSecretForwarding,
            Severity::High,
            node,
            format!(
                "{phase} receives host secret {} on its command line, where the command can send it anywhere",
                shown.join(", ")
            ),
        );
    }
}

/// A feature's `entrypoint`: a shell snippet run at every container start, as root.
pub(super) fn entrypoint(root: &Node, out: &mut Emitter<'_>) {
    let Some(node) = root.get("entrypoint") else {
        return;
    };
    let Some(script) = node.as_str() else {
        return;
    };
    if script.trim().is_empty() {
        return;
    }
    out.node(
        RuleId::LifecycleCommand,
        Severity::Info,
        node,
        "entrypoint runs at every container start, before any lifecycle command".into(),
    );
    if let Some(kind) = shell::analyse_script(script) {
        out.node(
            RuleId::DownloadAndExecute,
            Severity::Critical,
            node,
            format!(
                "entrypoint downloads and executes code: {}",
                kind.describe()
            ),
        );
    }
}
