//! The Compose files of a `dockerComposeFile` configuration, audited with the devcontainer
//! rules: one [`FileReport`] per file, findings at line:column in that file.
//!
//! ```text
//!  ComposeInput ─▶ yaml::parse per file ─▶ services merged in file order
//!     ─▶ services that start (runServices + service, or all; plus depends_on, extends,
//!        network_mode/pid/ipc `service:x`, volumes_from) ─▶ rules per service definition
//! ```
//!
//! Merging follows Compose: a scalar setting (`privileged`, `network_mode`, `pid`, `user`, ...)
//! is the last file's that sets it, so only that one is judged (an override file's
//! `privileged: false` switches it off); lists and maps (`cap_add`, `volumes`, `environment`,
//! ...) add up across files, so every entry is judged. Values are judged as written and as
//! Compose interpolates them with the host variables unset (`${SOCK:-/var/run/docker.sock}`).

mod rules;

use std::collections::{HashSet, VecDeque};

use super::render::{FileReport, ReportError};
use super::{AuditContext, Finding, RuleId, Severity};
use crate::compose::yaml::{self, Yaml, YamlValue};
use crate::compose::ComposeInput;
use crate::model::DevContainer;
use crate::node::Node;
use crate::parsed::Parsed;

/// Audits the Compose files in [`AuditContext::compose`] for the services the configuration
/// starts. Returns one report per file, in the order given (empty without Compose input). An
/// unreadable or invalid file, or a `service` that no file defines, is an error in a report;
/// the files that parsed are still audited.
///
/// ```
/// use codespace_devcontainer::audit::{audit_compose, AuditContext, RuleId};
/// use codespace_devcontainer::compose::{ComposeInput, ComposeSource};
/// let parsed = codespace_devcontainer::parse_devcontainer(
///     r#"{"dockerComposeFile": "docker-compose.yml", "service": "app"}"#,
/// );
/// let ctx = AuditContext {
///     compose: Some(ComposeInput {
///         config_dir: ".devcontainer".into(),
///         files: vec![ComposeSource {
///             path: ".devcontainer/docker-compose.yml".into(),
///             name: "docker-compose.yml".into(),
///             text: Ok("services:\n  app:\n    privileged: true\n".into()),
///         }],
///     }),
///     ..AuditContext::default()
/// };
/// let reports = audit_compose(&parsed, &ctx);
/// assert_eq!(reports[0].findings[0].rule, RuleId::Privileged);
/// assert_eq!((reports[0].findings[0].line, reports[0].findings[0].column), (3, 17));
/// ```
pub fn audit_compose(parsed: &Parsed<DevContainer>, ctx: &AuditContext) -> Vec<FileReport> {
    let Some(input) = &ctx.compose else {
        return Vec::new();
    };
    let config = parsed.tree.as_ref().or(parsed.recovered.as_ref());
    let mut reports: Vec<FileReport> = input
        .files
        .iter()
        .map(|f| FileReport {
            path: f.path.clone(),
            findings: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let docs: Vec<Option<Yaml>> = input
        .files
        .iter()
        .zip(&mut reports)
        .map(|(file, report)| read(file.text.as_deref().map_err(String::as_str), report))
        .collect();
    let project = Project::new(input, &docs);
    let started = project.started(config, &mut reports);
    for (name, why) in &started {
        let defs = project.definitions(name);
        let mut out = rules::Out::new(&project, name, why);
        rules::service(&defs, &mut out);
        for (file, finding) in out.findings {
            reports[file].findings.push(finding);
        }
    }
    for (i, doc) in docs.iter().enumerate() {
        if let Some(include) = doc.as_ref().and_then(|d| d.get("include")) {
            reports[i].findings.push(finding_at(
                RuleId::ComposeNotAudited,
                Severity::Info,
                "/include".into(),
                include,
                "`include` pulls in other Compose files, which are not audited here".into(),
            ));
        }
    }
    for report in &mut reports {
        report.findings.sort_by(|a, b| {
            (a.line, a.column, a.rule, &a.pointer, &a.message)
                .cmp(&(b.line, b.column, b.rule, &b.pointer, &b.message))
        });
        report.findings.dedup();
    }
    reports
}

/// Parses one file; problems go to its report.
fn read(text: Result<&str, &str>, report: &mut FileReport) -> Option<Yaml> {
    let error = |message: String, line, column| ReportError {
        message,
        pointer: String::new(),
        line,
        column,
    };
    let text = match text {
        Ok(text) => text,
        Err(reason) => {
            let message = format!("cannot read Compose file {}: {reason}", report.path);
            report.errors.push(error(message, 0, 0));
            return None;
        }
    };
    match yaml::parse(text) {
        Ok(doc) if doc.is_map() || doc.value == YamlValue::Null => Some(doc),
        Ok(doc) => {
            let message = "a Compose file must contain a mapping at the top level".into();
            report.errors.push(error(message, doc.line, doc.column));
            None
        }
        Err(e) => {
            let message = format!("not valid YAML: {}", e.message);
            report.errors.push(error(message, e.line, e.column));
            None
        }
    }
}

pub(crate) fn finding_at(
    rule: RuleId,
    severity: Severity,
    pointer: String,
    node: &Yaml,
    message: String,
) -> Finding {
    Finding {
        rule,
        severity,
        pointer,
        line: node.line,
        column: node.column,
        message,
    }
}

/// The parsed files and where relative paths point.
pub(crate) struct Project<'a> {
    docs: &'a [Option<Yaml>],
    /// The first file's folder relative to the workspace (`.devcontainer`), `/`-separated.
    pub(crate) dir: String,
}

impl<'a> Project<'a> {
    fn new(input: &ComposeInput, docs: &'a [Option<Yaml>]) -> Self {
        let first = input.files.first().map_or("", |f| f.name.as_str());
        let mut parts: Vec<&str> = input
            .config_dir
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let name_parts: Vec<&str> = first.split(['/', '\\']).collect();
        for part in &name_parts[..name_parts.len().saturating_sub(1)] {
            match *part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        Self {
            docs,
            dir: parts.join("/"),
        }
    }

    /// Every definition of a service, in file order: (file index, its mapping).
    pub(crate) fn definitions(&self, name: &str) -> Vec<(usize, &'a Yaml)> {
        self.docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.as_ref()?.get("services")?.get(name)?)))
            .filter(|(_, s)| s.is_map())
            .collect()
    }

    /// A top-level named volume's definitions (for `driver_opts: {device: …}` bind mounts).
    pub(crate) fn volume(&self, name: &str) -> Vec<(usize, &'a Yaml)> {
        self.docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.as_ref()?.get("volumes")?.get(name)?)))
            .collect()
    }

    /// Every service name, in order of first definition.
    fn all_services(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for doc in self.docs.iter().flatten() {
            if let Some(services) = doc.get("services") {
                for (name, _) in services.entries() {
                    if seen.insert(name.clone()) {
                        out.push(name.clone());
                    }
                }
            }
        }
        out
    }

    /// The services `docker compose up` starts for this configuration, each with why.
    fn started(&self, config: Option<&Node>, reports: &mut [FileReport]) -> Vec<(String, String)> {
        let service = config.and_then(|c| c.get("service")).and_then(Node::as_str);
        let run_services: Option<Vec<&str>> = config
            .and_then(|c| c.get("runServices"))
            .and_then(Node::elements)
            .map(|items| items.iter().filter_map(Node::as_str).collect());
        let all = self.all_services();
        let mut queue: VecDeque<(String, String)> = VecDeque::new();
        match &run_services {
            Some(names) => {
                queue.extend(service.map(|s| (s.to_owned(), "the dev container".into())));
                queue.extend(
                    names
                        .iter()
                        .map(|n| (n.to_string(), "in runServices".into())),
                );
            }
            None => {
                for name in &all {
                    let why = if Some(name.as_str()) == service {
                        "the dev container"
                    } else {
                        "started with the dev container: runServices is not set"
                    };
                    queue.push_back((name.clone(), why.into()));
                }
            }
        }
        if let Some(first) = reports.first_mut() {
            let parsed_any = self.docs.iter().any(Option::is_some);
            match service {
                None => first.errors.push(ReportError {
                    message: "the devcontainer.json names no `service` to run in".into(),
                    pointer: String::new(),
                    line: 0,
                    column: 0,
                }),
                Some(s) if parsed_any && !all.iter().any(|a| a == s) => {
                    first.errors.push(ReportError {
                        message: format!(
                            "service `{s}` (devcontainer.json `service`) is not defined in the Compose files"
                        ),
                        pointer: "/services".into(),
                        line: 0,
                        column: 0,
                    });
                }
                Some(_) => {}
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        while let Some((name, why)) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            for (_, def) in self.definitions(&name) {
                for dep in dependencies(def) {
                    if !seen.contains(&dep) {
                        queue.push_back((dep, format!("a dependency of `{name}`")));
                    }
                }
            }
            out.push((name, why));
        }
        out
    }
}

/// The services a definition makes Compose start too.
fn dependencies(def: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(deps) = def.get("depends_on") {
        // short syntax: a list of names; long syntax: a map keyed by name
        out.extend(
            deps.items()
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned)),
        );
        out.extend(deps.entries().iter().map(|(k, _)| k.clone()));
    }
    for key in ["network_mode", "pid", "ipc"] {
        if let Some(s) = def.get(key).and_then(Yaml::as_str) {
            if let Some(other) = s.strip_prefix("service:") {
                out.push(other.to_owned());
            }
        }
    }
    if let Some(from) = def.get("volumes_from") {
        for item in from.items().iter().filter_map(Yaml::as_str) {
            if !item.starts_with("container:") {
                out.push(item.split(':').next().unwrap_or_default().to_owned());
            }
        }
    }
    if let Some(ext) = def.get("extends") {
        let same_file = ext.get("file").is_none();
        match ext.as_str() {
            Some(name) => out.push(name.to_owned()),
            None if same_file => {
                out.extend(ext.get("service").and_then(Yaml::as_str).map(str::to_owned))
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
