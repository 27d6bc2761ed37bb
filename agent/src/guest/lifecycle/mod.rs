//! Lifecycle commands, extension installs and the configuration watch (issue 6).
//!
//! | request              | fields                                                        | result |
//! |----------------------|---------------------------------------------------------------|--------|
//! | `lifecycle_run`      | `phase: create\|start\|attach, workspace, devcontainer, creator_access?, pull_request_from_fork?, prebuild?, repository?, timeout_s?, approve?, run_id?` | every command with status, exit code, signal, duration, timeout; skipped properties and why |
//! | `extensions_install` | `workspace, devcontainer? \| extensions?, creator_access?, …, timeout_s?, run_id?` | per extension: installed, failed, refused (reason), not_run |
//! | `config_watch`       | `workspace, stop?`                                            | `{watching, file}` |
//!
//! Events: `lifecycle_command {run, command, state: started|exited|not_started, …}`,
//! `lifecycle_output {run, command, stream: stdout|stderr, data}` (redacted UTF-8 text),
//! `lifecycle_finished {run, status}` (after the run's last output event), and
//! `config_changed {workspace, file, valid, security_relevant, cosmetic, changed,
//! rebuild_required}` or `{…, valid: false, errors}`.
//!
//! Output events go through the agent's bounded event stream: a host that does not keep up
//! loses some (it is told with `events_lost`); the run's log file in the state directory
//! (`lifecycle/<run>.log`, head and tail kept) has the output either way.
//!
//! These requests are long-running: they are not bound by the agent's `request_timeout`; their
//! deadline is derived from their own `timeout_s` (every step at its timeout, plus the kill
//! grace and a margin), and the connection keeps serving other requests meanwhile. A run goes
//! on when the connection that asked for it closes (the host reconnecting after a hiccup must
//! not kill a half-done `postCreateCommand`); its output is still logged and pushed to the
//! connections that remain.
//!
//! Trust facts default to what `session create` recorded (`creator_access`,
//! `pull_request_from_fork`, `prebuild`, `repository`); a missing creator access counts as
//! `none` (restricted). A `blocked` decision runs nothing and answers `status: "blocked"` with
//! the reason, unless the request carries `approve: true`, which the host sends only with the
//! creator's approval; the run is then restricted, never trusted.
//!
//! ```text
//!  request ─► request.rs (typed) ─► service.rs (parse file, policy, user, env)
//!          ─► plan.rs (steps) ─► runner.rs ─► launcher.rs (plain | sandbox)
//!                                   └► redact.rs ─► output.rs (events, bounded log)
//!  config_watch ─► watch.rs (notify, debounce) ─► diff.rs ─► config_changed
//! ```

pub(crate) mod diff;
pub(crate) mod env;
pub(crate) mod extensions;
pub mod launcher;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod redact;
pub(crate) mod request;
pub(crate) mod runlogs;
pub mod runner;
pub(crate) mod sandbox_launcher;
pub mod service;
pub mod settings;
pub(crate) mod watch;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

pub use env::{SecretSource, SecretValues};
pub(crate) use launcher::{Launcher, PlainLauncher};
pub(crate) use request::LifecycleError;
pub use service::LifecycleService;

use crate::guest::config::CodespaceIdentity;
use crate::guest::job::Job;
use crate::guest::request::Named;

/// The requests served here (all long-running: [`Job`]s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleRequest {
    /// `lifecycle_run`.
    Run,
    /// `extensions_install`.
    ExtensionsInstall,
    /// `config_watch`.
    ConfigWatch,
    /// `restricted_kill`.
    RestrictedKill,
}

impl Named for LifecycleRequest {
    const ALL: &'static [Self] = &[
        Self::Run,
        Self::ExtensionsInstall,
        Self::ConfigWatch,
        Self::RestrictedKill,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Run => "lifecycle_run",
            Self::ExtensionsInstall => "extensions_install",
            Self::ConfigWatch => "config_watch",
            Self::RestrictedKill => "restricted_kill",
        }
    }
}

/// How long the watch waits for quiet before it parses again.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The launcher the configuration asks for: the sandbox (default), or `plain` (no sandbox:
/// tests and the unsandboxed benchmark only).
pub fn launcher(c: &crate::guest::config::AgentConfig) -> Arc<dyn Launcher> {
    match c.lifecycle.launcher {
        settings::LauncherKind::Plain => Arc::new(PlainLauncher),
        settings::LauncherKind::Sandbox => Arc::new(sandbox_launcher::SandboxLauncher::new(
            &c.sandbox,
            c.lifecycle.path.clone(),
            c.lifecycle.lang.clone(),
        )),
    }
}

/// Reads the organization policy file the configuration names, if any.
pub fn read_org_policy(
    c: &crate::guest::config::AgentConfig,
) -> Result<Option<codespace_policy::OrgPolicy>, String> {
    let Some(p) = &c.lifecycle.org_policy_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read org_policy_file {}: {e}", p.display()))?;
    codespace_policy::OrgPolicy::parse(&text)
        .map(Some)
        .map_err(|e| format!("org_policy_file {}: {e}", p.display()))
}

/// Builds the service from the agent's configuration and the organization policy
/// ([`read_org_policy`]). Commands start through `launcher` (the privileged side's, when the
/// agent is separated), or the one the configuration asks for.
pub(crate) fn build(
    c: &crate::guest::config::AgentConfig,
    events: crate::guest::service::EventSink,
    secrets: Option<Arc<dyn SecretSource>>,
    launcher: Option<Arc<dyn Launcher>>,
    org_policy: Option<codespace_policy::OrgPolicy>,
) -> Arc<LifecycleService> {
    let launcher = launcher.unwrap_or_else(|| self::launcher(c));
    let runner = runner::Runner::new(launcher, events.clone());
    Arc::new(LifecycleService::new(
        c.lifecycle.clone(),
        runner,
        events,
        c.state_dir.clone(),
        service::Principals {
            configured: c.sandbox.default_user.clone().or_else(|| c.user.clone()),
            trusted: c.sandbox.trusted_users.clone(),
            restricted: c.sandbox.restricted_user.clone(),
        },
        secrets,
        org_policy,
    ))
}

impl SecretSource for crate::guest::vault::Vault {
    fn values(&self) -> SecretValues {
        let (secrets, token) = self.values_for_commands(time::OffsetDateTime::now_utc());
        SecretValues {
            secrets,
            token,
            redact_only: self.registry_secrets(),
        }
    }
}

impl LifecycleService {
    /// Turns a request into a job. Field errors answer at once; the work runs when the job is
    /// polled.
    pub(crate) fn job(
        self: &Arc<Self>,
        request: LifecycleRequest,
        fields: Map<String, Value>,
        identity: &CodespaceIdentity,
    ) -> Job {
        let svc = self.clone();
        let fresh = || self.fresh_id();
        let quick = Duration::from_secs(10);
        match request {
            LifecycleRequest::Run => match request::RunRequest::parse(fields, identity, fresh) {
                Err(e) => Job::ready(Err(e.wire())),
                Ok(req) => Job::new(self.deadline(req.phase, req.timeout), async move {
                    svc.run(req).await.map_err(|e| e.wire())
                }),
            },
            LifecycleRequest::ExtensionsInstall => {
                match extensions::InstallRequest::parse(fields, identity, fresh) {
                    Err(e) => Job::ready(Err(e.wire())),
                    Ok(req) => {
                        // One install per entry at most: the timeout times a generous count.
                        let per = req.timeout.unwrap_or(self.config.command_timeout)
                            + self.config.kill_grace;
                        Job::new(per * 64 + Duration::from_secs(30), async move {
                            svc.install_extensions(req).await.map_err(|e| e.wire())
                        })
                    }
                }
            }
            LifecycleRequest::RestrictedKill => Job::new(quick, async move {
                let killed = svc.kill_restricted("requested").await;
                Ok(json!({"killed": killed}))
            }),
            LifecycleRequest::ConfigWatch => Job::new(quick, async move {
                svc.config_watch(fields).map_err(|e| e.wire())
            }),
        }
    }

    /// `config_watch {workspace, stop?}`: starts (or replaces, or stops) the watch.
    fn config_watch(&self, fields: Map<String, Value>) -> Result<Value, LifecycleError> {
        let mut f = request::Fields::new("config_watch", fields);
        let stop = f.boolean("stop")?.unwrap_or(false);
        if stop {
            f.finish()?;
            return Ok(json!({"stopped": self.watch.clear()}));
        }
        let ws = request::workspace(&mut f)?;
        f.finish()?;
        let handle = watch::start(&ws, self.events.clone(), DEBOUNCE)
            .map_err(|e| LifecycleError::Internal(format!("cannot watch {}: {e}", ws.display())))?;
        self.watch.set(handle);
        Ok(json!({"watching": ws, "file": watch::config_file(&ws)}))
    }
}
