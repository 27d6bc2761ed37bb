//! The rules over one Compose service: the same rule ids, severities and lists as the
//! devcontainer.json audit (capabilities, security options, host paths and sockets, secret and
//! dangerous environment names), read from Compose's keys.

use super::{finding_at, Project};
use crate::audit::checks::quoted;
use crate::audit::credentials::find_credentials;
use crate::audit::docker_args::{
    dangerous_capability, device_rule_covers_every, normalise_capability, publish_exposure,
    unconfined_security_opt,
};
use crate::audit::environment::{dangerous_name, public_variable, secret_name};
use crate::audit::mounts::{self, classify_source, normalise, Root};
use crate::audit::{Finding, RuleId, Severity};
use crate::compose::interpolate;
use crate::compose::yaml::{Yaml, YamlValue};
use crate::pointer::{child_index, child_key};

/// Findings of one service, each with the index of the file it is in.
pub(super) struct Out<'p> {
    project: &'p Project<'p>,
    /// `service `app``, the prefix of every message.
    who: String,
    /// `/services/app`.
    base: String,
    file: usize,
    pub(super) findings: Vec<(usize, Finding)>,
}

impl<'p> Out<'p> {
    pub(super) fn new(project: &'p Project<'p>, name: &str, why: &str) -> Self {
        Self {
            project,
            who: format!("service {} ({why})", quoted(name)),
            base: child_key("/services", name),
            file: 0,
            findings: Vec::new(),
        }
    }

    fn emit(
        &mut self,
        rule: RuleId,
        severity: Severity,
        pointer: String,
        node: &Yaml,
        what: String,
    ) {
        let message = format!("{}: {what}", self.who);
        self.findings.push((
            self.file,
            finding_at(rule, severity, pointer, node, message),
        ));
    }
}

/// The text of a scalar as written and, when it reads host variables, as Compose interpolates
/// it with them unset (flagged `true`).
fn readings(text: &str) -> Vec<(String, bool)> {
    let mut out = vec![(text.to_owned(), false)];
    if text.contains('$') {
        let unset = interpolate::unset(text);
        if unset != text {
            out.push((unset, true));
        }
    }
    out
}

const AFTER: &str = " (after interpolation, host variables unset)";

/// The worst of a check over every reading of a scalar.
fn worst(
    text: &str,
    check: impl Fn(&str) -> Option<(RuleId, Severity, String)>,
) -> Option<(RuleId, Severity, String)> {
    let mut best: Option<(RuleId, Severity, String)> = None;
    for (reading, interpolated) in readings(text) {
        if let Some((rule, severity, what)) = check(&reading) {
            if best.as_ref().is_none_or(|b| severity > b.1) {
                let what = if interpolated { what + AFTER } else { what };
                best = Some((rule, severity, what));
            }
        }
    }
    best
}

/// Every rule over a service's definitions (file order).
pub(super) fn service(defs: &[(usize, &Yaml)], out: &mut Out<'_>) {
    // Scalars: the last definition that sets one is in effect.
    for key in [
        "privileged",
        "network_mode",
        "pid",
        "ipc",
        "userns_mode",
        "uts",
        "cgroup",
        "user",
    ] {
        if let Some((file, node)) = defs.iter().rev().find_map(|(f, d)| Some((*f, d.get(key)?))) {
            out.file = file;
            let Some(text) = node.as_str() else { continue };
            let pointer = child_key(&out.base, key);
            if let Some((rule, severity, what)) = worst(text, |v| scalar(key, v)) {
                out.emit(rule, severity, pointer, node, what);
            }
        }
    }
    // Lists and maps: every definition adds to them.
    for (file, def) in defs {
        out.file = *file;
        for (key, node) in def.entries() {
            let pointer = child_key(&out.base, key);
            match key.as_str() {
                "cap_add" => each_string(node, &pointer, out, capability),
                "security_opt" => each_string(node, &pointer, out, security_opt),
                "devices" => devices(node, &pointer, out),
                "device_cgroup_rules" => each_string(node, &pointer, out, device_cgroup_rule),
                "volumes" => volumes(node, &pointer, out),
                "env_file" => env_files(node, &pointer, out),
                "environment" => environment(node, &pointer, out),
                "ports" => ports(node, &pointer, out),
                "extends" if node.get("file").is_some() => out.emit(
                    RuleId::ComposeNotAudited,
                    Severity::Info,
                    pointer,
                    node,
                    "`extends` takes settings from another Compose file, which is not audited here"
                        .into(),
                ),
                _ => {}
            }
        }
    }
}

fn scalar(key: &str, value: &str) -> Option<(RuleId, Severity, String)> {
    let v = value.trim().to_ascii_lowercase();
    match key {
        // Compose casts `privileged` like a boolean after interpolation.
        "privileged" => matches!(v.as_str(), "true" | "yes" | "y" | "on").then(|| {
            (
                RuleId::Privileged,
                Severity::Critical,
                "`privileged` runs the container privileged: all capabilities, all host devices, no seccomp/AppArmor".into(),
            )
        }),
        "user" => {
            let name = v.split(':').next().unwrap_or_default();
            (name == "root" || name == "0").then(|| {
                (
                    RuleId::RootUser,
                    Severity::Medium,
                    format!("runs as {}", quoted(value)),
                )
            })
        }
        _ => {
            let namespace = match key {
                "network_mode" => "network",
                "userns_mode" => "user",
                other => other,
            };
            let severity = if v == "host" {
                Severity::Critical
            } else if v.starts_with("container:") {
                Severity::Medium
            } else {
                return None;
            };
            Some((
                RuleId::HostNamespace,
                severity,
                format!("shares the {namespace} namespace ({})", quoted(value)),
            ))
        }
    }
}

/// Runs `check` on every string of a list (or a lone string).
fn each_string(
    node: &Yaml,
    pointer: &str,
    out: &mut Out<'_>,
    check: fn(&str) -> Option<(RuleId, Severity, String)>,
) {
    let items: Vec<(String, &Yaml)> = match &node.value {
        YamlValue::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (child_index(pointer, i), item))
            .collect(),
        _ => vec![(pointer.to_owned(), node)],
    };
    for (p, item) in items {
        if let Some(text) = item.as_str() {
            if let Some((rule, severity, what)) = worst(text, check) {
                out.emit(rule, severity, p, item, what);
            }
        }
    }
}

fn capability(raw: &str) -> Option<(RuleId, Severity, String)> {
    let name = normalise_capability(raw);
    if name.is_empty() {
        return None;
    }
    Some(match dangerous_capability(&name) {
        Some(reason) => (
            RuleId::Capability,
            Severity::High,
            format!("capability {name} added: {reason}"),
        ),
        None => (
            RuleId::Capability,
            Severity::Medium,
            format!("capability {} added", quoted(&name)),
        ),
    })
}

fn security_opt(value: &str) -> Option<(RuleId, Severity, String)> {
    unconfined_security_opt(value).map(|what| {
        (
            RuleId::UnconfinedSecurity,
            Severity::High,
            format!("security option {}: {what}", quoted(value)),
        )
    })
}

fn device(spec: &str) -> Option<(RuleId, Severity, String)> {
    let device = spec.split(':').next().unwrap_or_default().trim();
    (!device.is_empty()).then(|| {
        (
            RuleId::HostDevice,
            Severity::Medium,
            format!("host device {} passed to the container", quoted(device)),
        )
    })
}

fn device_cgroup_rule(rule: &str) -> Option<(RuleId, Severity, String)> {
    let every = device_rule_covers_every(rule);
    Some((
        RuleId::HostDevice,
        if every {
            Severity::High
        } else {
            Severity::Medium
        },
        format!(
            "`device_cgroup_rules` {} lets the container use host devices it creates with mknod{}",
            quoted(rule),
            if every {
                " (every device of the kind)"
            } else {
                ""
            }
        ),
    ))
}

/// `devices`: `/dev/x[:/dev/y[:rwm]]`, or the long syntax `{source: /dev/x, …}`.
fn devices(node: &Yaml, pointer: &str, out: &mut Out<'_>) {
    for (i, item) in node.items().iter().enumerate() {
        let p = child_index(pointer, i);
        let (text, at) = match item.get("source") {
            Some(source) => (source.as_str(), source),
            None => (item.as_str(), item),
        };
        if let Some((rule, severity, what)) = text.and_then(|t| worst(t, device)) {
            out.emit(rule, severity, p, at, what);
        }
    }
}

/// A host path of the Compose file as the audit's classifier reads it: relative paths are
/// relative to the first Compose file's folder, which is placed in the workspace.
fn host_path(source: &str, project_dir: &str) -> String {
    let s = source.trim();
    let relative = s == "."
        || s == ".."
        || s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with(".\\")
        || s.starts_with("..\\");
    if relative && !project_dir.is_empty() {
        format!("${{localWorkspaceFolder}}/{project_dir}/{s}")
    } else if relative {
        format!("${{localWorkspaceFolder}}/{s}")
    } else {
        s.to_owned()
    }
}

/// `volumes`: short `SOURCE:TARGET[:MODE]` and long `{type, source, target}` syntax.
fn volumes(node: &Yaml, pointer: &str, out: &mut Out<'_>) {
    for (i, item) in node.items().iter().enumerate() {
        let p = child_index(pointer, i);
        match &item.value {
            YamlValue::Scalar { text, .. } => {
                for (reading, interpolated) in readings(text) {
                    let spec = mounts::parse_volume(&reading);
                    let Some(source) = spec.source else { continue };
                    if spec.kind.as_deref() == Some("volume") {
                        named_volume(&source, &p, item, out);
                    } else if mount(&source, &p, item, interpolated, out) {
                        break;
                    }
                }
            }
            YamlValue::Map(_) => {
                let kind = item.get("type").and_then(Yaml::as_str).unwrap_or("volume");
                let Some(source_node) = item.get("source") else {
                    continue;
                };
                let Some(source) = source_node.as_str() else {
                    continue;
                };
                let p = child_key(&p, "source");
                for (reading, interpolated) in readings(source) {
                    if kind.eq_ignore_ascii_case("volume") && !mounts::looks_like_path(&reading) {
                        named_volume(&reading, &p, source_node, out);
                    } else if mount(&reading, &p, source_node, interpolated, out) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Judges one mount source; `true` when it was reported.
fn mount(source: &str, pointer: &str, node: &Yaml, interpolated: bool, out: &mut Out<'_>) -> bool {
    if !interpolated {
        for var in interpolate::references(source) {
            if secret_name(var) {
                out.emit(
                    RuleId::HostSecretForwarding,
                    Severity::High,
                    pointer.to_owned(),
                    node,
                    format!("volume source uses host variable {}", quoted(var)),
                );
            }
        }
    }
    let path = host_path(source, &out.project.dir);
    let Some(exposure) = classify_source(&path) else {
        return false;
    };
    let (rule, severity, what) = mounts::rate(&exposure, false);
    let suffix = if interpolated { AFTER } else { "" };
    out.emit(
        rule,
        severity,
        pointer.to_owned(),
        node,
        format!("volume {what}{suffix}"),
    );
    true
}

/// A named volume whose top-level definition binds a host path through the local driver
/// (`driver_opts: {type: none, o: bind, device: /var/run}`).
fn named_volume(name: &str, pointer: &str, node: &Yaml, out: &mut Out<'_>) {
    let project = out.project;
    for (_, def) in project.volume(name) {
        let Some(device) = def.get("driver_opts").and_then(|o| o.get("device")) else {
            continue;
        };
        let Some(path) = device.as_str() else {
            continue;
        };
        let path = host_path(&interpolate::unset(path), &project.dir);
        if let Some(exposure) = classify_source(&path) {
            let (rule, severity, what) = mounts::rate(&exposure, false);
            out.emit(
                rule,
                severity,
                pointer.to_owned(),
                node,
                format!(
                    "volume {} is a bind mount of a host path: it {what}",
                    quoted(name)
                ),
            );
        }
    }
}

/// `env_file`: a path, a list of paths, or a list of `{path, required}`.
fn env_files(node: &Yaml, pointer: &str, out: &mut Out<'_>) {
    let items: Vec<(String, &Yaml)> = match &node.value {
        YamlValue::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (child_index(pointer, i), item.get("path").unwrap_or(item)))
            .collect(),
        _ => vec![(pointer.to_owned(), node)],
    };
    for (p, item) in items {
        let Some(path) = item.as_str() else { continue };
        let inside = readings(path).iter().all(|(reading, _)| {
            let n = normalise(&host_path(reading, &out.project.dir));
            n.root == Root::Workspace && !n.escaped && !reading.contains('$')
        });
        let severity = if inside {
            Severity::Low
        } else {
            Severity::Medium
        };
        out.emit(
            RuleId::HostEnvFile,
            severity,
            p,
            item,
            format!(
                "`env_file` reads host file {} into the container environment",
                quoted(path)
            ),
        );
    }
}

/// `environment`: a map (`NAME: value`, `NAME:` takes the host's value) or a list
/// (`NAME=value`, `NAME` takes the host's value).
fn environment(node: &Yaml, pointer: &str, out: &mut Out<'_>) {
    let entries: Vec<(String, Option<&str>, String, &Yaml)> = match &node.value {
        YamlValue::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str(), child_key(pointer, k), v))
            .collect(),
        YamlValue::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let text = item.as_str()?;
                let (name, value) = match text.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (text, None),
                };
                Some((name.to_owned(), value, child_index(pointer, i), item))
            })
            .collect(),
        _ => Vec::new(),
    };
    for (name, value, p, at) in entries {
        let name = name.trim();
        if let Some(reason) = dangerous_name(name) {
            out.emit(
                RuleId::DangerousEnvironment,
                Severity::Medium,
                p.clone(),
                at,
                format!("environment sets {}: {reason}", quoted(name)),
            );
        }
        let Some(value) = value else {
            if secret_name(name) {
                out.emit(
                    RuleId::HostSecretForwarding,
                    Severity::High,
                    p,
                    at,
                    format!("environment {} without a value copies the host's value of it into the container", quoted(name)),
                );
            }
            continue;
        };
        for var in interpolate::references(value) {
            if secret_name(var) || secret_name(name) && !public_variable(var) {
                out.emit(
                    RuleId::HostSecretForwarding,
                    Severity::High,
                    p.clone(),
                    at,
                    format!(
                        "environment copies host variable {} into {}",
                        quoted(var),
                        quoted(name)
                    ),
                );
            }
        }
        if let Some(hit) = find_credentials(value).into_iter().next() {
            out.emit(
                RuleId::EmbeddedCredential,
                Severity::Critical,
                p,
                at,
                format!(
                    "environment {} holds a literal {} ({})",
                    quoted(name),
                    hit.kind.describe(),
                    hit.redacted
                ),
            );
        }
    }
}

/// `ports`: `[HOST_IP:]HOST_PORT:CONTAINER_PORT`, a bare container port, or
/// `{target, published, host_ip}`.
fn ports(node: &Yaml, pointer: &str, out: &mut Out<'_>) {
    for (i, item) in node.items().iter().enumerate() {
        let p = child_index(pointer, i);
        let spec = match &item.value {
            YamlValue::Scalar { text, .. } => text.clone(),
            YamlValue::Map(_) => {
                let ip = item.get("host_ip").and_then(Yaml::as_str).unwrap_or("");
                let published = item.get("published").and_then(Yaml::as_str).unwrap_or("");
                let target = item.get("target").and_then(Yaml::as_str).unwrap_or("");
                match (ip, published) {
                    ("", "") => target.to_owned(),
                    ("", _) => format!("{published}:{target}"),
                    _ => format!("{ip}:{published}:{target}"),
                }
            }
            _ => continue,
        };
        let check = |s: &str| {
            publish_exposure(s).map(|what| {
                (
                    RuleId::AppPortAllInterfaces,
                    Severity::Medium,
                    format!("port {} {what}", quoted(s.trim())),
                )
            })
        };
        // A bound address that interpolation removes is not a finding of its own.
        if let Some((rule, severity, what)) = check(&spec) {
            out.emit(rule, severity, p, item, what);
        }
    }
}
