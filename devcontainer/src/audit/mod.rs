//! Security audit of a devcontainer.json: what can a hostile repository do with it?
//!
//! ```text
//!  Parsed<DevContainer>                   ┌─ container: privileged, capAdd, securityOpt, runArgs,
//!  (decoded tree, unknown properties,  ───┤             build.options, mounts, workspaceMount,
//!   line index)                           │             users, ports, Compose
//!  AuditContext (local features,  ────────┼─ commands:  lifecycle hooks, download-and-execute
//!   substitution context)                 │
//!                                         ├─ features:  source, pinning, option injection,
//!                                         │             well-known and local feature metadata
//!                                         ├─ values:    environment names, host secrets, credentials
//!  AuditContext::compose (Compose files) ─┼─ compose:   audit_compose: one report per Compose file
//!                                         └─ document:  duplicate keys, unknown properties,
//!                                                       extensions, repository permissions
//!                                              ▼
//!                                 Vec<Finding> sorted by (line, column, rule)
//! ```
//!
//! The audit reads the *decoded* tree, never the raw text, so escapes (`"privil\u0065ged"`)
//! cannot hide a key; duplicated keys are audited at their effective (last) value and reported.
//! Values are classified as written (`${localEnv:HOME}/.ssh` is the host home), then the
//! substituted document is audited again, with the host variables unset (the defaults of
//! `${localEnv:X:default}` are what the CLI uses then) and, when the caller supplies a
//! [`SubstitutionContext`], with its values; what only shows, or shows worse, after substitution
//! is added (marked "after variable substitution").
//!
//! Every finding carries the JSON pointer and line:column of the value it is about; messages
//! never contain a secret. The rule catalogue ([`rules`]) is the single list of ids.
//!
//! The library does no I/O: the caller reads files (including local features'
//! `devcontainer-feature.json`) and passes text or parsed trees in; [`render`] turns reports into
//! text, JSON or SARIF strings.

mod ascii;
mod checks;
mod compose;
pub mod credentials;
pub mod docker_args;
pub mod environment;
pub mod mounts;
pub mod render;
pub mod rules;
pub mod shell;
pub mod suggest;

use serde::Serialize;

use crate::compose::ComposeInput;
use crate::error::ErrorSink;
use crate::feature::FeatureMetadata;
use crate::model::DevContainer;
use crate::node::{Member, Node, NodeValue};
use crate::parsed::Parsed;
use crate::span::{LineIndex, Span};
use crate::substitute::{substitute_tree, SubstitutionContext};

pub use compose::audit_compose;
pub use render::{FileReport, ReportError};
pub use rules::{Rule, RuleId, Severity, RULES};

/// One finding: which rule, how bad, where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that fired.
    pub rule: RuleId,
    /// This finding's severity (may differ from the rule's default).
    pub severity: Severity,
    /// JSON pointer (RFC 6901) of the value the finding is about.
    pub pointer: String,
    /// 1-based line of that value (0 when the tree has no positions).
    pub line: usize,
    /// 1-based column (in characters) of that value (0 when unknown).
    pub column: usize,
    /// What was found; never contains a secret.
    pub message: String,
}

/// A feature whose `devcontainer-feature.json` the caller read: a local one (`"./x"` in
/// `features`), or any other whose metadata it fetched (a third-party feature's own
/// `privileged: true` is then reported at its key). What the metadata adds, and the
/// well-known features its `dependsOn` installs, are reported under the feature's key.
#[derive(Debug, Clone)]
pub struct LocalFeature {
    /// The key exactly as written in `features` (e.g. `./my-feature`,
    /// `ghcr.io/acme/features/tool:1`).
    pub key: String,
    /// The parsed `devcontainer-feature.json` (its raw tree).
    pub metadata: Node,
}

/// What the audit knows beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    /// Parsed metadata of local features (and of other features the caller fetched); what
    /// they add is reported under their key.
    pub local_features: Vec<LocalFeature>,
    /// Host environment and folders: when given, the substituted document is audited too and
    /// what only shows after substitution is reported (`${localEnv:X}` that is `/`, ...).
    pub substitution: Option<SubstitutionContext>,
    /// The Compose files `dockerComposeFile` names, as the caller read them: [`audit_compose`]
    /// audits them, and [`audit`] no longer reports `compose-not-audited`.
    pub compose: Option<ComposeInput>,
}

/// Rules worth re-checking after substitution. Credentials and secret forwarding are not: the
/// substituted values are the *host's* secrets, not something written in the file.
const SUBSTITUTED_RULES: &[RuleId] = &[
    RuleId::ContainerSocketMount,
    RuleId::HostPathMount,
    RuleId::Privileged,
    RuleId::Capability,
    RuleId::HostNamespace,
    RuleId::UnconfinedSecurity,
    RuleId::DownloadAndExecute,
    RuleId::RootUser,
    RuleId::AppPortAllInterfaces,
    RuleId::HostDevice,
    RuleId::FeatureOptionInjection,
];

/// Audits a parsed devcontainer.json. Semantic errors do not stop the audit, which reads the
/// decoded tree and the typed model's list of unknown properties; after a syntax error it reads
/// the parts that parsed ([`Parsed::recovered`]). Every value is audited as written, then after
/// substitution with the host variables unset (what the CLI uses then: the default of
/// `${localEnv:X:default}`, the empty string otherwise), then with the caller's
/// [`AuditContext::substitution`] if any; what a substitution makes worse is added.
///
/// ```
/// use codespace_devcontainer::{audit::{audit, AuditContext, RuleId}, parse_devcontainer};
/// let parsed = parse_devcontainer(r#"{"image": "x", "runArgs": ["--cap-add=sys_admin"]}"#);
/// let findings = audit(&parsed, &AuditContext::default());
/// assert_eq!(findings[0].rule, RuleId::Capability);
/// assert_eq!((findings[0].line, findings[0].column), (1, 28));
/// ```
pub fn audit(parsed: &Parsed<DevContainer>, ctx: &AuditContext) -> Vec<Finding> {
    let Some(tree) = parsed.tree.as_ref().or(parsed.recovered.as_ref()) else {
        return Vec::new();
    };
    let unknown = parsed.model.as_ref().map_or(&[][..], |m| &m.unknown[..]);
    let duplicates = if parsed.tree.is_some() {
        parsed.duplicate_keys.clone()
    } else {
        tree.duplicate_keys()
    };
    let mut out = Emitter::new(Some(&parsed.lines));
    checks::devcontainer(tree, unknown, &duplicates, ctx, &mut out);
    // Substitution only changes strings with `${` (decoded: `"\u0024{…}"` counts), and every
    // rule reads one top-level property at a time: the properties without one would give the
    // same findings again, which the merge drops. Only the others are substituted and audited.
    let members = tree.members().unwrap_or_default();
    // Only the occurrence of a key that tools use (the last): a shadowed duplicate with a `${`
    // would otherwise be audited as if it were the value.
    let last: std::collections::HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key.as_str(), i))
        .collect();
    let substitutable: Vec<&Member> = members
        .iter()
        .enumerate()
        .filter(|(i, m)| last.get(m.key.as_str()) == Some(i))
        .map(|(_, m)| m)
        .filter(|m| has_variable(&m.value))
        .collect();
    if substitutable.is_empty() {
        return out.finish();
    }
    for (sctx, suffix) in substitution_contexts(ctx) {
        let mut ignored = ErrorSink::new();
        let substituted = substitutable
            .iter()
            .map(|m| Member {
                key: m.key.clone(),
                key_span: m.key_span,
                value: substitute_tree(&m.value, &sctx, &mut ignored),
            })
            .collect();
        let sub_tree = Node::new(
            NodeValue::Object(substituted),
            tree.pointer.clone(),
            tree.span,
        );
        let mut extra = Emitter::new(Some(&parsed.lines));
        checks::devcontainer(&sub_tree, &[], &sub_tree.duplicate_keys(), ctx, &mut extra);
        merge_substituted(&mut out.findings, extra.finish(), suffix);
    }
    out.finish()
}

/// Whether a string in the subtree contains `${` (iterative: trees may be 128 levels deep).
fn has_variable(node: &Node) -> bool {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match &n.value {
            NodeValue::String(s) if s.contains("${") => return true,
            NodeValue::Array(items) => stack.extend(items),
            NodeValue::Object(members) => stack.extend(members.iter().map(|m| &m.value)),
            _ => {}
        }
    }
    false
}

/// The substitutions every document is audited after: the host variables unset (keeping the
/// caller's folders and ids), then the caller's context when it sets variables.
fn substitution_contexts(ctx: &AuditContext) -> Vec<(SubstitutionContext, &'static str)> {
    let given = ctx.substitution.clone().unwrap_or_default();
    let unset = SubstitutionContext {
        local_env: Default::default(),
        ..given.clone()
    };
    let mut out = vec![(unset, "after variable substitution, host variables unset")];
    if !given.local_env.is_empty() {
        out.push((given, "after variable substitution"));
    }
    out
}

/// Adds the findings of a substituted document that are new or more severe than what the
/// document as written got at the same rule and pointer (those are replaced).
fn merge_substituted(findings: &mut Vec<Finding>, extra: Vec<Finding>, suffix: &str) {
    for f in extra {
        if !SUBSTITUTED_RULES.contains(&f.rule) {
            continue;
        }
        let same = |g: &Finding| g.rule == f.rule && g.pointer == f.pointer;
        if findings.iter().any(|g| same(g) && g.severity >= f.severity) {
            continue;
        }
        findings.retain(|g| !same(g));
        findings.push(Finding {
            message: format!("{} ({suffix})", f.message),
            ..f
        });
    }
}

/// Audits a parsed `devcontainer-feature.json` on its own: what the feature adds to every
/// container that uses it.
pub fn audit_feature(parsed: &Parsed<FeatureMetadata>) -> Vec<Finding> {
    let Some(tree) = parsed.tree.as_ref().or(parsed.recovered.as_ref()) else {
        return Vec::new();
    };
    let unknown = parsed.model.as_ref().map_or(&[][..], |m| &m.unknown[..]);
    let mut out = Emitter::new(Some(&parsed.lines));
    checks::feature_file(tree, unknown, &parsed.duplicate_keys, &mut out);
    out.finish()
}

/// Collects findings and turns spans into line:column.
pub(crate) struct Emitter<'a> {
    index: Option<&'a LineIndex>,
    findings: Vec<Finding>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(index: Option<&'a LineIndex>) -> Self {
        Self {
            index,
            findings: Vec::new(),
        }
    }

    /// A finding about `node`.
    pub(crate) fn node(&mut self, rule: RuleId, severity: Severity, node: &Node, message: String) {
        self.at(rule, severity, &node.pointer, node.span, message);
    }

    /// A finding at an explicit pointer and span.
    pub(crate) fn at(
        &mut self,
        rule: RuleId,
        severity: Severity,
        pointer: &str,
        span: Option<Span>,
        message: String,
    ) {
        let (line, column) = match (self.index, span) {
            (Some(index), Some(span)) => {
                let lc = index.locate(span.start);
                (lc.line as usize, lc.column as usize)
            }
            _ => (0, 0),
        };
        self.findings.push(Finding {
            rule,
            severity,
            pointer: pointer.to_string(),
            line,
            column,
            message,
        });
    }

    /// Line and column of a span, when positions are known.
    pub(crate) fn locate(&self, span: Option<Span>) -> Option<(usize, usize)> {
        let lc = self.index?.locate(span?.start);
        Some((lc.line as usize, lc.column as usize))
    }

    /// Sorted by position then rule; exact duplicates (same rule, place and message) removed.
    pub(crate) fn finish(mut self) -> Vec<Finding> {
        self.findings.sort_by(|a, b| {
            (a.line, a.column, a.rule, &a.pointer, &a.message)
                .cmp(&(b.line, b.column, b.rule, &b.pointer, &b.message))
        });
        self.findings.dedup();
        self.findings
    }
}

#[cfg(test)]
mod tests;
