//! What a lifecycle run will execute, decided from the parsed devcontainer.json alone (pure).
//!
//! | phase    | properties, in order                                        |
//! |----------|-------------------------------------------------------------|
//! | `create` | `onCreateCommand`, `updateContentCommand`, `postCreateCommand` |
//! | `start`  | `postStartCommand`                                          |
//! | `attach` | `postAttachCommand`                                         |
//!
//! Each present property is one [`Step`]; a step of the object form holds several commands that
//! start together. Steps run one after another and a failing step stops the later ones (the
//! runner's job). `initializeCommand` runs on the host in the reference tools and never here; a
//! plan notes that it was present. A prebuild stops after `updateContentCommand`, as the
//! reference CLI's `--prebuild` does, so `postCreateCommand` is skipped with that reason.

use codespace_devcontainer::model::lifecycle::{Command, LifecycleCommand, Phase};
use codespace_devcontainer::DevContainer;
use serde::Serialize;

use super::launcher::Program;

/// The phase a host asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunPhase {
    /// After the codespace was created.
    Create,
    /// After each start.
    Start,
    /// At each attach.
    Attach,
}

impl RunPhase {
    /// Parses the wire spelling.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "start" => Some(Self::Start),
            "attach" => Some(Self::Attach),
            _ => None,
        }
    }

    /// The properties run, in order.
    pub(crate) fn properties(self) -> &'static [Phase] {
        match self {
            Self::Create => &[Phase::OnCreate, Phase::UpdateContent, Phase::PostCreate],
            Self::Start => &[Phase::PostStart],
            Self::Attach => &[Phase::PostAttach],
        }
    }

    /// How many steps a run can have at most (for deadlines).
    pub(crate) fn max_steps(self) -> u32 {
        self.properties().len() as u32
    }
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedCommand {
    /// `property` or `property.key` (the object form's entry key).
    pub(crate) name: String,
    /// The lifecycle property.
    pub(crate) property: &'static str,
    /// The object form's key.
    pub(crate) key: Option<String>,
    /// What runs.
    pub(crate) program: Program,
}

/// One property's commands (several only for the object form, which runs them in parallel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The lifecycle property.
    pub(crate) property: &'static str,
    /// Its commands.
    pub(crate) commands: Vec<PlannedCommand>,
}

/// A property that will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The property.
    pub(crate) property: &'static str,
    /// A stable reason code.
    pub(crate) reason: &'static str,
}

/// The plan of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Steps in order.
    pub(crate) steps: Vec<Step>,
    /// Properties present but not run.
    pub(crate) skipped: Vec<Skipped>,
}

fn program(c: &Command) -> Program {
    match c {
        Command::Shell(s) => Program::Shell(s.value.clone()),
        Command::Exec(args) => Program::Exec(args.iter().map(|a| a.value.clone()).collect()),
        // A future command form the runner does not know: run its argv as the parser gives it.
        other => Program::Exec(other.argv()),
    }
}

/// Plans `phase` of `dc`.
pub(crate) fn plan(dc: &DevContainer, phase: RunPhase, prebuild: bool) -> Plan {
    let mut out = Plan::default();
    if dc.lifecycle.initialize.is_some() {
        out.skipped.push(Skipped {
            property: Phase::Initialize.property(),
            reason: "runs-on-host-never-by-the-agent",
        });
    }
    for &p in phase.properties() {
        let Some(cmd) = dc.lifecycle.get(p) else {
            continue;
        };
        let property = p.property();
        if prebuild && p == Phase::PostCreate {
            out.skipped.push(Skipped {
                property,
                reason: "prebuild-stops-after-update-content",
            });
            continue;
        }
        let commands = match &cmd.value {
            LifecycleCommand::Single(c) => vec![PlannedCommand {
                name: property.to_owned(),
                property,
                key: None,
                program: program(c),
            }],
            LifecycleCommand::Parallel(entries) => entries
                .iter()
                .map(|e| PlannedCommand {
                    name: format!("{property}.{}", e.name.value),
                    property,
                    key: Some(e.name.value.clone()),
                    program: program(&e.command.value),
                })
                .collect(),
            // A future form (the enum is non-exhaustive): not run rather than guessed at.
            _ => {
                out.skipped.push(Skipped {
                    property,
                    reason: "unknown-command-form",
                });
                continue;
            }
        };
        out.steps.push(Step { property, commands });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dc(text: &str) -> DevContainer {
        codespace_devcontainer::parse_devcontainer(text)
            .model
            .unwrap()
    }

    #[test]
    fn create_runs_three_properties_in_order_with_each_form() {
        let d = dc(r#"{
            "initializeCommand": "rm -rf /",
            "postCreateCommand": {"b": "echo b", "a": ["echo", "a"]},
            "onCreateCommand": "echo one",
            "updateContentCommand": ["npm", "ci"],
            "postStartCommand": "echo start",
        }"#);
        let p = plan(&d, RunPhase::Create, false);
        let props: Vec<_> = p.steps.iter().map(|s| s.property).collect();
        assert_eq!(
            props,
            [
                "onCreateCommand",
                "updateContentCommand",
                "postCreateCommand"
            ]
        );
        assert_eq!(
            p.steps[0].commands[0].program,
            Program::Shell("echo one".into())
        );
        assert_eq!(
            p.steps[0].commands[0].program.argv()[..2],
            ["/bin/sh", "-c"]
        );
        assert_eq!(
            p.steps[1].commands[0].program,
            Program::Exec(vec!["npm".into(), "ci".into()])
        );
        let names: Vec<_> = p.steps[2]
            .commands
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["postCreateCommand.b", "postCreateCommand.a"]);
        assert_eq!(p.skipped[0].property, "initializeCommand");
    }

    #[test]
    fn start_and_attach_have_one_property_each() {
        let d =
            dc(r#"{"postStartCommand": "s", "postAttachCommand": "a", "onCreateCommand": "c"}"#);
        assert_eq!(
            plan(&d, RunPhase::Start, false).steps[0].property,
            "postStartCommand"
        );
        assert_eq!(
            plan(&d, RunPhase::Attach, false).steps[0].property,
            "postAttachCommand"
        );
        assert!(plan(&d, RunPhase::Start, false).skipped.is_empty());
    }

    #[test]
    fn prebuild_skips_post_create() {
        let d = dc(r#"{"onCreateCommand": "c", "postCreateCommand": "p"}"#);
        let p = plan(&d, RunPhase::Create, true);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.skipped[0].reason, "prebuild-stops-after-update-content");
    }

    #[test]
    fn phase_names_round_trip() {
        for p in [RunPhase::Create, RunPhase::Start, RunPhase::Attach] {
            let s = serde_json::to_value(p).unwrap();
            assert_eq!(RunPhase::parse(s.as_str().unwrap()), Some(p));
        }
        assert_eq!(RunPhase::parse("initialize"), None);
    }
}
