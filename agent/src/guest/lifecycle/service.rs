//! [`LifecycleService`]: from a `lifecycle_run` request to a result, through the policy.
//!
//! ```text
//!  request ─► RunRequest (typed) ─► read + parse devcontainer.json (errors: line:column)
//!     ─► policy::lifecycle::decide(facts, org policy)
//!          blocked and not approved ─► result "blocked" (nothing runs)
//!          otherwise ─► Authorized<RunProfile> ─► user, env (secrets/token only if allowed)
//!     ─► plan(phase) ─► Runner (launcher, redaction, events, bounded log) ─► result
//! ```
//!
//! The only way to a [`Runner`] call is through an `Authorized<RunProfile>`, which only the
//! policy crate constructs: `authorize()` for trusted/restricted, `approved_by_creator()` for a
//! blocked profile the creator approved (which then runs restricted, never trusted).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codespace_devcontainer::{DevContainer, Diagnostic, Parsed, SubstitutionContext};
use codespace_policy::lifecycle::{Profile, RunProfile, TokenAccess};
use codespace_policy::{Authorized, OrgPolicy};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::env::{self, SecretSource, SecretValues};
use super::launcher::{LaunchLimits, LaunchSpec, Trust};
use super::output::BoundedLog;
use super::plan::{plan, RunPhase};
use super::redact::Needles;
use super::request::{LifecycleError, RunRequest};
use super::runlogs::RunLogs;
use super::runner::{CommandResult, RunInput, RunOutcome, Runner};
use super::settings::LifecycleConfig;
use crate::guest::service::EventSink;
use crate::guest::trail::Kind;
use crate::guest::user::{self, Account};
use crate::guest::vault::TOKEN_VARIABLE;
use crate::wire::Event;

/// Largest devcontainer.json read.
const MAX_FILE: u64 = 4 << 20;

/// Who lifecycle commands may run as (the `user` and `sandbox` config sections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    /// The configured (remote) user: `sandbox.default_user`, else the agent's `user`; `None`
    /// means the agent's own user.
    pub configured: Option<String>,
    /// Other users a trusted repository may name (`sandbox.trusted_users`).
    pub trusted: Vec<String>,
    /// The restricted identity (`sandbox.restricted_user`).
    pub restricted: String,
}

/// A `remoteUser`/`containerUser` that was not honoured, and why (in the run's result and the
/// `lifecycle_user_ignored` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct IgnoredUser {
    /// The name the repository gave.
    pub(crate) name: String,
    /// Why it was not used.
    pub(crate) reason: &'static str,
}

/// Everything the lifecycle requests need; one per agent.
pub struct LifecycleService {
    pub(crate) config: LifecycleConfig,
    pub(crate) runner: Runner,
    pub(crate) events: EventSink,
    pub(crate) state_dir: PathBuf,
    pub(crate) principals: Principals,
    pub(crate) secrets: Option<Arc<dyn SecretSource>>,
    pub(crate) org_policy: Option<OrgPolicy>,
    pub(crate) passwd: PathBuf,
    pub(crate) watch: super::watch::WatchSlot,
    logs: RunLogs,
    counter: AtomicU64,
}

impl std::fmt::Debug for LifecycleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleService")
            .field("config", &self.config)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

/// Formats diagnostics as `PATH:LINE:COLUMN: POINTER: MESSAGE`.
pub(crate) fn describe(path: &Path, d: &[Diagnostic]) -> Vec<String> {
    d.iter()
        .map(|d| {
            format!(
                "{}:{}:{}: {}: {}",
                path.display(),
                d.line,
                d.column,
                if d.pointer.is_empty() {
                    "/"
                } else {
                    &d.pointer
                },
                d.message
            )
        })
        .collect()
}

/// Properties whose errors make a run refuse the file (the rest are warnings).
const RUN_RELEVANT: &[&str] = &[
    "/onCreateCommand",
    "/updateContentCommand",
    "/postCreateCommand",
    "/postStartCommand",
    "/postAttachCommand",
    "/remoteEnv",
    "/remoteUser",
    "/containerUser",
];

/// Reads and parses `path`; syntax errors, and errors in what a run uses, are refused.
pub(crate) fn load(path: &Path) -> Result<Parsed<DevContainer>, LifecycleError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| {
        LifecycleError::InvalidArgument(format!("cannot read {}: {e}", path.display()))
    })?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            LifecycleError::InvalidArgument(format!("cannot read {}: {e}", path.display()))
        })?;
    if text.len() as u64 > MAX_FILE {
        return Err(LifecycleError::InvalidArgument(format!(
            "{} is larger than {MAX_FILE} bytes",
            path.display()
        )));
    }
    Ok(codespace_devcontainer::parse_devcontainer(&text))
}

fn refuse_if_broken(
    path: &Path,
    parsed: &Parsed<DevContainer>,
) -> Result<Vec<String>, LifecycleError> {
    let diags = parsed.diagnostics();
    let (fatal, rest): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| {
        parsed.syntax_error.is_some()
            || RUN_RELEVANT
                .iter()
                .any(|p| d.pointer == *p || d.pointer.starts_with(&format!("{p}/")))
    });
    if !fatal.is_empty() {
        return Err(LifecycleError::InvalidArgument(format!(
            "devcontainer.json is not usable: {}",
            describe(path, &fatal).join("; ")
        )));
    }
    Ok(describe(path, &rest))
}

impl LifecycleService {
    /// Builds the service.
    #[allow(clippy::too_many_arguments)] // one constructor, called once by `build`
    pub fn new(
        config: LifecycleConfig,
        runner: Runner,
        events: EventSink,
        state_dir: PathBuf,
        principals: Principals,
        secrets: Option<Arc<dyn SecretSource>>,
        org_policy: Option<OrgPolicy>,
    ) -> Self {
        let logs = RunLogs::new(state_dir.join("lifecycle"), config.logs_kept);
        Self {
            logs,
            config,
            runner,
            events,
            state_dir,
            principals,
            secrets,
            org_policy,
            passwd: PathBuf::from("/etc/passwd"),
            watch: super::watch::WatchSlot::default(),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn fresh_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("run-{}-{n}", std::process::id())
    }

    /// The longest a run of `phase` with `timeout` per command can take (for the request's
    /// deadline): every step at its timeout plus the kill grace, and a margin.
    pub(crate) fn deadline(&self, phase: RunPhase, timeout: Option<Duration>) -> Duration {
        let per = timeout.unwrap_or(self.config.command_timeout) + self.config.kill_grace;
        per * phase.max_steps() + Duration::from_secs(30)
    }

    pub(crate) fn secret_values(&self) -> SecretValues {
        self.secrets
            .as_ref()
            .map(|s| s.values())
            .unwrap_or_default()
    }

    /// Resolves who commands run as, and what of the repository's wish was not honoured.
    ///
    /// - restricted: always [`Principals::restricted`], whatever `remoteUser`/`containerUser`
    ///   say (a repository must not pick the uid its code runs as: another user's files, a
    ///   service account with peer authentication);
    /// - trusted: the named user only if it is the configured user or in
    ///   [`Principals::trusted`]; otherwise the configured user (the agent's own user when
    ///   none is configured).
    pub(crate) fn run_as(
        &self,
        model: &DevContainer,
        strength: Trust,
    ) -> Result<(Account, Option<IgnoredUser>), LifecycleError> {
        let passwd = std::fs::read_to_string(&self.passwd).unwrap_or_default();
        let named = model
            .remote_user
            .as_ref()
            .or(model.container_user.as_ref())
            .map(|l| l.value.clone());
        let resolve = |who: &str| {
            user::find(&passwd, who).ok_or_else(|| {
                LifecycleError::InvalidArgument(format!(
                    "user {who:?} does not exist in {}",
                    self.passwd.display()
                ))
            })
        };
        let configured = || match &self.principals.configured {
            Some(who) => resolve(who),
            None => {
                let uid = crate::guest::privsep::agent_uid();
                Ok(user::find(&passwd, &uid.to_string())
                    .unwrap_or_else(|| Account::unnamed(uid, uid)))
            }
        };
        let ignored = |reason: &'static str| {
            named.as_ref().map(|name| IgnoredUser {
                name: name.clone(),
                reason,
            })
        };
        match strength {
            Trust::Restricted => {
                let user = resolve(&self.principals.restricted).map_err(|_| {
                    LifecycleError::InvalidArgument(format!(
                        "the restricted identity {:?} (sandbox.restricted_user) does not exist \
                         in {}; the package creates it (sysusers.d)",
                        self.principals.restricted,
                        self.passwd.display()
                    ))
                })?;
                Ok((
                    user,
                    ignored("restricted runs always run as the restricted identity"),
                ))
            }
            Trust::Trusted => {
                let Some(name) = &named else {
                    return Ok((configured()?, None));
                };
                let allowed = self.principals.configured.as_ref() == Some(name)
                    || self.principals.trusted.iter().any(|t| t == name);
                if allowed {
                    Ok((resolve(name)?, None))
                } else {
                    Ok((
                        configured()?,
                        ignored("not the configured user nor in sandbox.trusted_users"),
                    ))
                }
            }
        }
    }

    /// Substitutes variables: workspace folders, and `${containerEnv:…}` against the base env.
    pub(crate) fn substitute(
        parsed: &Parsed<DevContainer>,
        workspace: &Path,
        base: &[(String, String)],
    ) -> DevContainer {
        let ws = workspace.display().to_string();
        let ctx = SubstitutionContext {
            local_workspace_folder: Some(ws.clone()),
            container_workspace_folder: Some(ws),
            container_env: Some(base.iter().cloned().collect()),
            ..Default::default()
        };
        codespace_devcontainer::substitute(parsed, &ctx)
            .model
            .or_else(|| parsed.model.clone())
            .unwrap_or_default()
    }

    /// How a request's commands are launched: in its workspace, hidden from the state
    /// directory, with the request's timeout (the configured one by default) and kill grace.
    pub(crate) fn launch_spec(
        &self,
        strength: Trust,
        user: Account,
        env: Vec<(String, String)>,
        workspace: &Path,
        timeout: Option<Duration>,
        facts: &super::request::TrustFacts,
    ) -> LaunchSpec {
        LaunchSpec {
            strength,
            user,
            env,
            cwd: workspace.to_owned(),
            workspace: workspace.to_owned(),
            state_dir: self.state_dir.clone(),
            limits: LaunchLimits {
                timeout: timeout.unwrap_or(self.config.command_timeout),
                grace: self.config.kill_grace,
            },
            facts: Some(facts.policy_facts()),
        }
    }

    pub(crate) fn open_log(&self, run_id: &str) -> Option<BoundedLog> {
        match self.logs.open(
            run_id,
            self.config.log_head_bytes,
            self.config.log_tail_bytes,
        ) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle log could not be created");
                None
            }
        }
    }

    /// `lifecycle_run`.
    pub(crate) async fn run(&self, req: RunRequest) -> Result<Value, LifecycleError> {
        let parsed = load(&req.devcontainer)?;
        let warnings = refuse_if_broken(&req.devcontainer, &parsed)?;
        let raw_model = parsed.model.clone().unwrap_or_default();
        let decision = codespace_policy::lifecycle::decide(
            &req.facts.policy_facts(),
            self.org_policy.as_ref(),
        );
        let reason = decision
            .reason
            .map(|r| codespace_policy::ReasonCode::code(&r));
        let authorized: Option<Authorized<RunProfile>> = if req.approve {
            Some(decision.approved_by_creator())
        } else {
            decision.authorize()
        };
        let mut result = json!({
            "run": req.run_id,
            "phase": req.phase,
            "decision": {"profile": decision.profile, "reason": reason},
            "approved": req.approve && decision.profile == Profile::Blocked,
            "warnings": warnings,
        });
        let Some(profile) = authorized else {
            let preview = plan(&raw_model, req.phase, req.facts.prebuild);
            let needles = Needles::default();
            let why = format!(
                "blocked: the organization runs only trusted lifecycle commands and this run is \
                 not trusted ({}); it needs the creator's approval (`approve: true`)",
                reason.unwrap_or("untrusted")
            );
            let commands: Vec<CommandResult> = preview
                .steps
                .iter()
                .flat_map(|s| &s.commands)
                .map(|c| CommandResult::skipped(c, &needles, why.clone()))
                .collect();
            merge(
                &mut result,
                json!({
                    "status": "blocked",
                    "profile": "blocked",
                    "reason": why,
                    "commands": commands,
                    "skipped": preview.skipped,
                }),
            );
            self.finished(Kind::Lifecycle, &result);
            return Ok(result);
        };
        let strength = profile.get().trust;
        let (user, ignored_user) = self.run_as(&raw_model, strength)?;
        if let Some(ignored) = &ignored_user {
            let _ = self.events.send(Event::new(
                "lifecycle_user_ignored",
                json!({"run": req.run_id, "name": ignored.name, "reason": ignored.reason,
                       "runs_as": user.name}),
            ));
        }
        let mut environment = env::base_env(&user, &self.config.path, &self.config.lang);
        let model = Self::substitute(&parsed, &req.workspace, &environment);
        let remote: Vec<(String, Option<String>)> = model
            .remote_env
            .iter()
            .map(|v| (v.name.value.clone(), v.value.value.clone()))
            .collect();
        let mut refused = env::apply_remote_env(&mut environment, &remote);
        let values = self.secret_values();
        let token = profile.token == TokenAccess::Full;
        refused.extend(env::apply_secrets(
            &mut environment,
            &values,
            profile.secrets,
            token,
            TOKEN_VARIABLE,
        ));
        let needles = Needles::new(values.all_values());
        drop(values);
        let the_plan = plan(&model, req.phase, req.facts.prebuild);
        let log = self.open_log(&req.run_id);
        let log_path = log.as_ref().map(|l| l.path().display().to_string());
        let spec = self.launch_spec(
            strength,
            user.clone(),
            environment,
            &req.workspace,
            req.timeout,
            &req.facts,
        );
        let outcome: RunOutcome = self
            .runner
            .run(
                &the_plan,
                RunInput {
                    profile: profile.clone(),
                    run_id: req.run_id.clone(),
                    spec,
                    needles,
                    log,
                },
            )
            .await;
        let status = if outcome.first_failure.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        merge(
            &mut result,
            json!({
                "status": status,
                "profile": strength,
                "secrets_injected": profile.secrets,
                "token_injected": token,
                "launcher": self.runner.launcher_name(),
                "user": {"name": user.name, "uid": user.uid, "gid": user.gid,
                         "ignored": ignored_user},
                "env_refused": refused,
                "commands": outcome.commands,
                "skipped": the_plan.skipped,
                "first_failure": outcome.first_failure,
                "log": log_path,
                "log_dropped_bytes": outcome.log_dropped_bytes,
            }),
        );
        self.finished(Kind::Lifecycle, &result);
        Ok(result)
    }

    /// Kills everything restricted runs left behind in this codespace (on the blocking pool:
    /// it waits for the processes to die), then pushes `restricted_killed` with `reason` and how
    /// many processes there were. For a change of the trust facts and the host's
    /// `restricted_kill`.
    pub(crate) async fn kill_restricted(&self, reason: &'static str) -> usize {
        let launcher = self.runner.launcher();
        let killed = tokio::task::spawn_blocking(move || launcher.kill_restricted())
            .await
            .unwrap_or(0);
        tracing::info!(reason, processes = killed, "restricted leftovers killed");
        let report = json!({"reason": reason, "processes": killed});
        let _ = self
            .events
            .send(Event::new("restricted_killed", report.clone()));
        let mut record = report;
        record["action"] = "restricted_killed".into();
        self.events.audit(Kind::Lifecycle, record);
        killed
    }

    /// Pushes `lifecycle_finished`: after every output event of the run, so a host that reads
    /// events until it sees this one has all the output. Then records the run (`kind`
    /// lifecycle or extension) in the audit trail, from its `result`: what was decided and why,
    /// who it ran as, how each command ended (names and exit statuses; no output).
    pub(crate) fn finished(&self, kind: Kind, result: &Value) {
        let _ = self.events.send(Event::new(
            "lifecycle_finished",
            json!({"run": result["run"], "status": result["status"]}),
        ));
        self.events.audit(kind, audit_summary(result));
    }
}

/// The audit record of a lifecycle run or an extension install: the result without output,
/// argv or warnings (those stay in the answer and the log).
fn audit_summary(result: &Value) -> Value {
    let mut record = Map::new();
    for key in [
        "run",
        "phase",
        "decision",
        "approved",
        "status",
        "reason",
        "trust",
        "profile",
        "launcher",
        "secrets_injected",
        "token_injected",
        "env_refused",
        "first_failure",
    ] {
        if let Some(v) = result.get(key).filter(|v| !v.is_null()) {
            record.insert(key.into(), v.clone());
        }
    }
    if let Some(user) = result.get("user") {
        record.insert(
            "user".into(),
            json!({"name": user["name"], "uid": user["uid"]}),
        );
    }
    let exit = |c: &Value| {
        json!({"name": c["name"], "status": c["status"], "exit_code": c["exit_code"],
               "signal": c["signal"], "timed_out": c["timed_out"], "reason": c["reason"]})
    };
    if let Some(commands) = result.get("commands").and_then(Value::as_array) {
        record.insert("commands".into(), commands.iter().map(exit).collect());
    }
    if let Some(extensions) = result.get("extensions").and_then(Value::as_array) {
        let decisions: Vec<Value> = extensions
            .iter()
            .map(|e| {
                json!({"id": e["id"], "action": e["action"], "status": e["status"],
                       "reason": e["reason"], "exit_code": e["command"]["exit_code"]})
            })
            .collect();
        record.insert("extensions".into(), decisions.into());
    }
    Value::Object(record)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guest::lifecycle::launcher::PlainLauncher;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        codespace:x:1000:1000::/home/codespace:/bin/bash\n\
        victim:x:1001:1001::/home/victim:/bin/bash\n\
        postgres:x:110:118::/var/lib/postgresql:/bin/bash\n\
        node:x:1002:1002::/home/node:/bin/bash\n\
        codespace-restricted:x:998:998::/var/lib/codespace-agent/restricted/home:/bin/sh\n";

    fn service(dir: &Path) -> LifecycleService {
        let (events, _) = crate::guest::service::EventSink::channel(8);
        let mut s = LifecycleService::new(
            LifecycleConfig::default(),
            Runner::new(Arc::new(PlainLauncher), events.clone()),
            events,
            dir.join("state"),
            Principals {
                configured: Some("codespace".into()),
                trusted: vec!["node".into()],
                restricted: "codespace-restricted".into(),
            },
            None,
            None,
        );
        s.passwd = dir.join("passwd");
        std::fs::write(&s.passwd, PASSWD).unwrap();
        s
    }

    fn model(json: &str) -> DevContainer {
        codespace_devcontainer::parse_devcontainer(json)
            .model
            .unwrap()
    }

    #[test]
    fn a_repository_never_picks_the_uid_of_a_restricted_run() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        for (json, named) in [
            (r#"{}"#, None),
            (r#"{"remoteUser": "victim"}"#, Some("victim")),
            (r#"{"containerUser": "postgres"}"#, Some("postgres")),
            (r#"{"remoteUser": "root"}"#, Some("root")),
            (r#"{"remoteUser": "codespace"}"#, Some("codespace")),
        ] {
            let (user, ignored) = s.run_as(&model(json), Trust::Restricted).unwrap();
            assert_eq!(
                (user.name.as_str(), user.uid),
                ("codespace-restricted", 998)
            );
            assert_eq!(ignored.as_ref().map(|i| i.name.as_str()), named, "{json}");
        }
    }

    #[test]
    fn trusted_runs_honour_only_the_configured_and_allowed_users() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        for (json, runs_as, ignored) in [
            (r#"{}"#, "codespace", None),
            (r#"{"remoteUser": "codespace"}"#, "codespace", None),
            (r#"{"remoteUser": "node"}"#, "node", None),
            (r#"{"remoteUser": "victim"}"#, "codespace", Some("victim")),
            (
                r#"{"containerUser": "postgres"}"#,
                "codespace",
                Some("postgres"),
            ),
            (r#"{"remoteUser": "root"}"#, "codespace", Some("root")),
        ] {
            let (user, got) = s.run_as(&model(json), Trust::Trusted).unwrap();
            assert_eq!(user.name, runs_as, "{json}");
            assert_eq!(got.as_ref().map(|i| i.name.as_str()), ignored, "{json}");
        }
    }

    #[test]
    fn a_missing_restricted_identity_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = service(dir.path());
        s.principals.restricted = "nope".into();
        let err = s
            .run_as(&model("{}"), Trust::Restricted)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sandbox.restricted_user"), "{err}");
    }
}
