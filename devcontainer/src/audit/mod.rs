//! Security audit of a devcontainer.json: what can a hostile repository do with it?

pub mod credentials;
pub mod docker_args;
pub mod environment;
pub mod mounts;
pub mod render;
pub mod rules;
pub mod shell;
pub mod suggest;

use serde::Serialize;

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
    /// 1-based line of that value.
    pub line: usize,
    /// 1-based column (in characters) of that value.
    pub column: usize,
    /// What was found; never contains a secret.
    pub message: String,
}
