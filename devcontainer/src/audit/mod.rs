//! Security audit of a devcontainer.json: what can a hostile repository do with it?
//!
//! ```text
//!  text ─parse─▶ Node tree (+ LineIndex) ─┬─ container: privileged, capAdd, securityOpt, runArgs,
//!                                         │             mounts, workspaceMount, users, ports
//!  AuditContext (local features) ─────────┼─ commands:  lifecycle hooks, download-and-execute
//!                                         ├─ features:  source, pinning, option injection,
//!                                         │             well-known and local feature metadata
//!                                         ├─ values:    environment names, host secrets, credentials
//!                                         └─ document:  duplicate keys, unknown properties,
//!                                                       extensions, repository permissions
//!                                              ▼
//!                                 Vec<Finding> sorted by (line, column, rule)
//! ```
//!
//! The audit reads the *decoded* tree, never the raw text, so escapes (`"privil\u0065ged"`)
//! cannot hide a key; duplicated keys are audited at their effective (last) value and reported.
//! Mount sources are classified both as written (`${localEnv:HOME}/.ssh` is the host home) and,
//! when the caller supplies the host environment, after substitution.
//!
//! Every finding carries the JSON pointer and line:column of the value it is about; messages
//! never contain a secret. The rule catalogue ([`rules`]) is the single list of ids.
//!
//! The library does no I/O: the caller reads files (including local features'
//! `devcontainer-feature.json`) and passes text or parsed trees in; [`render`] turns reports into
//! text, JSON or SARIF strings.

mod checks;
pub mod credentials;
pub mod docker_args;
pub mod environment;
pub mod mounts;
pub mod render;
pub mod rules;
pub mod shell;
pub mod suggest;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::node::Node;
use crate::span::{LineIndex, Span};

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

/// A local feature (`"./x"` in `features`) whose `devcontainer-feature.json` the caller read.
#[derive(Debug, Clone)]
pub struct LocalFeature {
    /// The key exactly as written in `features` (e.g. `./my-feature`).
    pub key: String,
    /// The parsed `devcontainer-feature.json`.
    pub metadata: Node,
}

/// What the audit knows beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    /// Parsed metadata of local features; what they add is reported under their key.
    pub local_features: Vec<LocalFeature>,
    /// Host environment for `${localEnv:..}` substitution of mount sources (empty: the raw
    /// forms are still classified).
    pub local_env: BTreeMap<String, String>,
    /// Host folder that `${localWorkspaceFolder}` stands for, if known.
    pub local_workspace_folder: Option<String>,
}

/// Audits a devcontainer.json tree. `index` must index the text the tree was parsed from.
pub fn audit_tree(root: &Node, index: &LineIndex, ctx: &AuditContext) -> Vec<Finding> {
    let mut out = Emitter::new(Some(index));
    checks::devcontainer(root, ctx, &mut out);
    out.finish()
}

/// Audits a `devcontainer-feature.json` tree on its own.
pub fn audit_feature_tree(root: &Node, index: &LineIndex) -> Vec<Finding> {
    let mut out = Emitter::new(Some(index));
    checks::feature_file(root, &mut out);
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
