//! Lifecycle commands and how they will be executed.
//!
//! | written                          | runs as                                        |
//! |----------------------------------|------------------------------------------------|
//! | `"npm ci && npm test"`           | [`Command::Shell`]: `/bin/sh -c "npm ci && …"`  |
//! | `["npm", "ci"]`                  | [`Command::Exec`]: argv exec'd, no shell        |
//! | `{"a": "…", "b": ["…"]}`         | [`LifecycleCommand::Parallel`]: entries at once |
//!
//! A command that does nothing (`""`, whitespace, `[]`, `{}`, `null`) is *absent*, as in the
//! reference CLI. Any other type (a number, a boolean, an object inside an object entry) is an
//! error: the CLI skips it silently or crashes, and either way the file does not do what it says.
//! Phases: `initializeCommand` (on the host!), then in the container `onCreateCommand`,
//! `updateContentCommand`, `postCreateCommand`, `postStartCommand`, `postAttachCommand`.

use crate::error::{located, ErrorSink};
use crate::node::Node;
use crate::span::Located;

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// A string, run as `/bin/sh -c <string>`.
    Shell(Located<String>),
    /// An array, exec'd directly as argv (no shell unless argv\[0\] is one).
    Exec(Vec<Located<String>>),
}

impl Command {
    /// The argv the reference CLI runs for this command (`/bin/sh -c …` for [`Command::Shell`]).
    #[must_use]
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".to_owned(), "-c".to_owned(), s.value.clone()],
            Self::Exec(args) => args.iter().map(|a| a.value.clone()).collect(),
        }
    }

    /// Every string of the command with its location (the shell string, or each argv element).
    #[must_use]
    pub fn strings(&self) -> Vec<&Located<String>> {
        match self {
            Self::Shell(s) => vec![s],
            Self::Exec(args) => args.iter().collect(),
        }
    }
}

/// A named entry of the object form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCommand {
    /// The entry's key (a label; keys may contain spaces).
    pub name: Located<String>,
    /// What it runs.
    pub command: Located<Command>,
}

/// The value of one lifecycle property.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleCommand {
    /// A single command (string or array form).
    Single(Command),
    /// The object form: every entry is started at the same time.
    Parallel(Vec<NamedCommand>),
}

impl LifecycleCommand {
    /// All commands in it, with the entry name for parallel ones.
    #[must_use]
    pub fn commands(&self) -> Vec<(Option<&Located<String>>, &Command)> {
        match self {
            Self::Single(c) => vec![(None, c)],
            Self::Parallel(entries) => entries
                .iter()
                .map(|e| (Some(&e.name), &e.command.value))
                .collect(),
        }
    }
}

/// Which lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Phase {
    /// `initializeCommand`: runs on the host.
    Initialize,
    /// `onCreateCommand`
    OnCreate,
    /// `updateContentCommand`
    UpdateContent,
    /// `postCreateCommand`
    PostCreate,
    /// `postStartCommand`
    PostStart,
    /// `postAttachCommand`
    PostAttach,
}

impl Phase {
    /// All phases in execution order.
    pub const ALL: [Self; 6] = [
        Self::Initialize,
        Self::OnCreate,
        Self::UpdateContent,
        Self::PostCreate,
        Self::PostStart,
        Self::PostAttach,
    ];

    /// The property name.
    #[must_use]
    pub const fn property(self) -> &'static str {
        match self {
            Self::Initialize => "initializeCommand",
            Self::OnCreate => "onCreateCommand",
            Self::UpdateContent => "updateContentCommand",
            Self::PostCreate => "postCreateCommand",
            Self::PostStart => "postStartCommand",
            Self::PostAttach => "postAttachCommand",
        }
    }

    /// Whether the command runs on the host rather than in the container.
    #[must_use]
    pub const fn runs_on_host(self) -> bool {
        matches!(self, Self::Initialize)
    }
}

/// The six lifecycle properties of a document (or of a feature, which has no `initialize`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// `initializeCommand`
    pub initialize: Option<Located<LifecycleCommand>>,
    /// `onCreateCommand`
    pub on_create: Option<Located<LifecycleCommand>>,
    /// `updateContentCommand`
    pub update_content: Option<Located<LifecycleCommand>>,
    /// `postCreateCommand`
    pub post_create: Option<Located<LifecycleCommand>>,
    /// `postStartCommand`
    pub post_start: Option<Located<LifecycleCommand>>,
    /// `postAttachCommand`
    pub post_attach: Option<Located<LifecycleCommand>>,
}

impl Lifecycle {
    /// The command of `phase`, if present.
    #[must_use]
    pub fn get(&self, phase: Phase) -> Option<&Located<LifecycleCommand>> {
        match phase {
            Phase::Initialize => self.initialize.as_ref(),
            Phase::OnCreate => self.on_create.as_ref(),
            Phase::UpdateContent => self.update_content.as_ref(),
            Phase::PostCreate => self.post_create.as_ref(),
            Phase::PostStart => self.post_start.as_ref(),
            Phase::PostAttach => self.post_attach.as_ref(),
        }
    }

    /// Present commands in execution order.
    pub fn iter(&self) -> impl Iterator<Item = (Phase, &Located<LifecycleCommand>)> {
        Phase::ALL
            .into_iter()
            .filter_map(|p| self.get(p).map(|c| (p, c)))
    }

    fn slot(&mut self, phase: Phase) -> &mut Option<Located<LifecycleCommand>> {
        match phase {
            Phase::Initialize => &mut self.initialize,
            Phase::OnCreate => &mut self.on_create,
            Phase::UpdateContent => &mut self.update_content,
            Phase::PostCreate => &mut self.post_create,
            Phase::PostStart => &mut self.post_start,
            Phase::PostAttach => &mut self.post_attach,
        }
    }

    /// Read the lifecycle properties of `phases` from the object `obj`.
    pub fn parse(obj: &Node, phases: &[Phase], errors: &mut ErrorSink) -> Self {
        let mut out = Self::default();
        for &phase in phases {
            if let Some(node) = obj.get(phase.property()) {
                *out.slot(phase) = parse_lifecycle(node, phase.property(), errors);
            }
        }
        out
    }
}

const EXPECTED: &str = "a string, an array of strings, or an object of strings/arrays";

/// Parse one lifecycle value; `None` when absent/empty or invalid (invalid is recorded).
pub fn parse_lifecycle(
    node: &Node,
    property: &str,
    errors: &mut ErrorSink,
) -> Option<Located<LifecycleCommand>> {
    if node.members().is_some() {
        let mut entries = Vec::new();
        for m in node.effective_members() {
            let name = Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span);
            let prop = format!("{property}.{}", m.key);
            if let Some(command) = parse_command(&m.value, &prop, errors) {
                entries.push(NamedCommand {
                    name,
                    command: located(&m.value, command),
                });
            }
        }
        return (!entries.is_empty()).then(|| located(node, LifecycleCommand::Parallel(entries)));
    }
    if matches!(node.value, crate::node::NodeValue::Null) {
        return None;
    }
    parse_command(node, property, errors).map(|c| located(node, LifecycleCommand::Single(c)))
}

fn parse_command(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<Command> {
    if let Some(s) = node.as_str() {
        return (!s.trim().is_empty()).then(|| Command::Shell(located(node, s.to_owned())));
    }
    if node.elements().is_some() {
        let before = errors.len();
        let args = errors.string_array(node, property)?;
        if errors.len() != before {
            return None;
        }
        return (!args.is_empty()).then_some(Command::Exec(args));
    }
    if node.members().is_some() {
        errors.wrong_type(node, property, "a string or an array of strings");
        return None;
    }
    errors.wrong_type(node, property, EXPECTED);
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: serde_json::Value) -> (Lifecycle, usize) {
        let n = Node::from_json_value(&v);
        let mut e = ErrorSink::new();
        let l = Lifecycle::parse(&n, &Phase::ALL, &mut e);
        (l, e.len())
    }

    #[test]
    fn three_forms() {
        let (l, e) = run(json!({
            "initializeCommand": "echo hi",
            "onCreateCommand": ["npm", "ci"],
            "postCreateCommand": {"a": "x", "b": ["sh", "-c", "y"]},
        }));
        assert_eq!(e, 0);
        let init = l.initialize.as_ref().unwrap();
        let LifecycleCommand::Single(c) = &init.value else {
            panic!()
        };
        assert_eq!(c.argv(), ["/bin/sh", "-c", "echo hi"]);
        let LifecycleCommand::Single(c) = &l.on_create.as_ref().unwrap().value else {
            panic!()
        };
        assert_eq!(c.argv(), ["npm", "ci"]);
        let pc = l.post_create.as_ref().unwrap();
        assert_eq!(pc.commands().len(), 2);
        assert_eq!(pc.commands()[1].0.unwrap().value, "b");
        assert_eq!(
            pc.commands()[1].1.strings()[2].pointer,
            "/postCreateCommand/b/2"
        );
        assert_eq!(l.iter().count(), 3);
        assert!(Phase::Initialize.runs_on_host());
    }

    #[test]
    fn empty_forms_are_absent() {
        let (l, e) = run(json!({
            "onCreateCommand": "", "updateContentCommand": "  \n", "postCreateCommand": [],
            "postStartCommand": {}, "postAttachCommand": null,
        }));
        assert_eq!(e, 0);
        assert_eq!(l.iter().count(), 0);
    }

    #[test]
    fn wrong_types_are_errors() {
        let (l, e) = run(json!({
            "onCreateCommand": 42, "updateContentCommand": true, "postCreateCommand": {"a": 42},
            "postStartCommand": {"a": {"b": "x"}}, "postAttachCommand": ["ok", 1],
        }));
        assert_eq!(e, 5);
        assert_eq!(l.iter().count(), 0);
    }
}
