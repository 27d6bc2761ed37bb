//! `extensions_install`: the policy decides each requested extension, the configured installer
//! runs (through the same launcher, sandbox and redaction as lifecycle commands) for each one
//! allowed, and every entry gets a result: installed, failed, refused (with the policy's
//! reason) or not run (a removal without a configured uninstaller). Nothing is skipped silently.
//!
//! The requested list is the request's `extensions`, or the entries as written in the
//! devcontainer.json (`customizations.vscode.extensions`, then legacy `extensions`), so that
//! the policy sees and reports invalid ids too. Trust follows the lifecycle decision: a trusted
//! profile installs as trusted, anything else (restricted, blocked) as restricted.

use std::path::PathBuf;
use std::time::Duration;

use codespace_policy::extensions::plan as extension_plan;
use serde_json::{json, Map, Value};

use super::env;
use super::launcher::{Program, Trust};
use super::plan::{Plan, PlannedCommand, Step};
use super::redact::Needles;
use super::request::{devcontainer_path, run_id, workspace, Fields, LifecycleError, TrustFacts};
use super::runner::{CommandStatus, RunInput};
use super::service::{load, LifecycleService};
use crate::guest::config::CodespaceIdentity;
use crate::guest::trail::Kind;

/// Name prefix of installer commands in events and results.
const PROPERTY: &str = "extensions";

/// An `extensions_install` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallRequest {
    /// The workspace folder (working directory of the installer).
    pub(crate) workspace: PathBuf,
    /// The devcontainer.json to read the list (and remoteUser) from.
    pub(crate) devcontainer: Option<PathBuf>,
    /// An explicit list (overrides the file's).
    pub(crate) extensions: Option<Vec<String>>,
    /// Trust facts.
    pub(crate) facts: TrustFacts,
    /// Per-install timeout.
    pub(crate) timeout: Option<Duration>,
    /// Event correlation id.
    pub(crate) run_id: String,
}

impl InstallRequest {
    /// Parses the fields of `extensions_install`.
    pub(crate) fn parse(
        fields: Map<String, Value>,
        identity: &CodespaceIdentity,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<Self, LifecycleError> {
        let mut f = Fields::new("extensions_install", fields);
        let workspace = workspace(&mut f)?;
        let devcontainer = f
            .string("devcontainer")?
            .map(|d| devcontainer_path(&workspace, &d));
        let extensions = f.strings("extensions")?;
        if devcontainer.is_none() && extensions.is_none() {
            return Err(LifecycleError::BadRequest(
                "extensions_install: give `devcontainer` or `extensions`".into(),
            ));
        }
        let facts = TrustFacts::read(&mut f, identity)?;
        let timeout = f.positive("timeout_s")?.map(Duration::from_secs);
        let run_id = run_id(&mut f, fresh_id)?;
        f.finish()?;
        Ok(Self {
            workspace,
            devcontainer,
            extensions,
            facts,
            timeout,
            run_id,
        })
    }
}

/// The entries as written in the file.
fn written(tree: &codespace_devcontainer::Node) -> Vec<String> {
    ["/customizations/vscode/extensions", "/extensions"]
        .iter()
        .filter_map(|p| tree.resolve(p))
        .flat_map(|n| match n.to_json_value() {
            Value::Array(items) => items,
            _ => Vec::new(),
        })
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn fill(template: &[String], id: &str) -> Vec<String> {
    template.iter().map(|a| a.replace("{id}", id)).collect()
}

impl LifecycleService {
    /// `extensions_install`.
    pub(crate) async fn install_extensions(
        &self,
        req: InstallRequest,
    ) -> Result<Value, LifecycleError> {
        let parsed = req.devcontainer.as_deref().map(load).transpose()?;
        let model = parsed
            .as_ref()
            .and_then(|p| p.model.clone())
            .unwrap_or_default();
        let requested = match (
            &req.extensions,
            parsed.as_ref().and_then(|p| p.tree.as_ref()),
        ) {
            (Some(list), _) => list.clone(),
            (None, Some(tree)) => written(tree),
            (None, None) => {
                let diags = parsed.map(|p| p.diagnostics()).unwrap_or_default();
                return Err(LifecycleError::InvalidArgument(format!(
                    "devcontainer.json is not usable: {}",
                    super::service::describe(
                        req.devcontainer.as_deref().unwrap_or(&req.workspace),
                        &diags
                    )
                    .join("; ")
                )));
            }
        };
        let decision = codespace_policy::lifecycle::decide(
            &req.facts.policy_facts(),
            self.org_policy.as_ref(),
        );
        let trust = decision.trust().unwrap_or(Trust::Restricted);
        // A blocked lifecycle profile blocks repository commands; the installer is the agent's
        // own configured tool and the extension policy above already chose, as for a
        // restricted repository, what it may install. It runs restricted.
        let profile = decision
            .authorize()
            .unwrap_or_else(|| decision.approved_by_creator());
        let strength = profile.get().trust;
        let policy = self.org_policy.as_ref().and_then(|p| p.extensions.as_ref());
        let decided = extension_plan(policy, trust, &requested);
        let installs = decided.authorize();

        let mut commands = Vec::new();
        for i in installs.iter() {
            let id = match &i.version {
                Some(v) if v != "prerelease" && !i.id.ends_with(".vsix") => format!("{}@{v}", i.id),
                _ => i.id.clone(),
            };
            commands.push((
                i.id.clone(),
                "install",
                fill(&self.config.extension_installer, &id),
            ));
        }
        let mut not_run = Vec::new();
        for r in &decided.remove {
            match &self.config.extension_uninstaller {
                Some(t) => commands.push((r.id.clone(), "remove", fill(t, &r.id))),
                None => not_run.push(json!({"id": r.id, "action": "remove", "status": "not_run",
                    "reason": "no extension_uninstaller is configured"})),
            }
        }
        let plan = Plan {
            steps: commands
                .iter()
                .map(|(id, action, argv)| Step {
                    property: PROPERTY,
                    commands: vec![PlannedCommand {
                        name: format!("{PROPERTY}.{action}.{id}"),
                        property: PROPERTY,
                        key: Some(id.clone()),
                        program: Program::Exec(argv.clone()),
                    }],
                })
                .collect(),
            skipped: Vec::new(),
        };
        let (user, _) = self.run_as(&model, strength)?;
        let values = self.secret_values();
        let needles = Needles::new(values.all_values());
        drop(values);
        let env = env::base_env(&user, &self.config.path, &self.config.lang);
        let spec = self.launch_spec(strength, user, env, &req.workspace, req.timeout, &req.facts);
        let log = self.open_log(&req.run_id);
        let outcome = self
            .runner
            .run_each(
                &plan,
                RunInput {
                    profile,
                    run_id: req.run_id.clone(),
                    spec,
                    needles,
                    log,
                },
            )
            .await;
        let mut results: Vec<Value> = outcome
            .commands
            .iter()
            .zip(&commands)
            .map(|(c, (id, action, _))| {
                let status = match c.status {
                    CommandStatus::Succeeded if *action == "install" => "installed",
                    CommandStatus::Succeeded => "removed",
                    _ => "failed",
                };
                json!({"id": id, "action": action, "status": status, "command": c})
            })
            .collect();
        results.extend(not_run);
        results.extend(decided.refused.iter().map(|r| {
            json!({"id": r.id, "action": "install", "status": "refused",
                   "reason": codespace_policy::ReasonCode::code(&r.reason)})
        }));
        let failed = results.iter().any(|r| r["status"] == "failed");
        let result = json!({
            "run": req.run_id,
            "trust": trust,
            "profile": strength,
            "launcher": self.runner.launcher_name(),
            "status": if failed { "failed" } else { "succeeded" },
            "extensions": results,
        });
        self.finished(Kind::Extension, &result);
        Ok(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_written_entries() {
        let t = vec![
            "code".to_owned(),
            "--install-extension".into(),
            "{id}".into(),
        ];
        assert_eq!(fill(&t, "a.b@1.0")[2], "a.b@1.0");
        let p = codespace_devcontainer::parse_devcontainer(
            r#"{"customizations": {"vscode": {"extensions": ["a.b", "bad id"]}}, "extensions": ["c.d"]}"#,
        );
        assert_eq!(written(p.tree.as_ref().unwrap()), ["a.b", "bad id", "c.d"]);
    }
}
