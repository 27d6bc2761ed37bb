//! Executes a [`Plan`]: steps one after another, the commands of a step together, output
//! streamed and redacted, every command accounted for in the result.
//!
//! ```text
//!  for step in plan:                     (a failed step ⇒ the remaining ones are "skipped")
//!     launch every command of the step ──► per command: stdout pump ┐
//!     await all of them (allSettled)                      stderr pump ┼─► Redactor ─► events
//!                                                         exit future ┘            └► log
//! ```
//!
//! As in the reference CLI, an object-form step runs all its entries to completion even when
//! one fails, and exit status 130 (or SIGINT) counts as "interrupted", not as a failure. Output
//! that a background process writes after its command exited keeps streaming as events while
//! the pipe stays open (the process is not cut off), but the run's result does not wait for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use codespace_policy::lifecycle::RunProfile;
use codespace_policy::Authorized;

use super::launcher::{ExitReport, LaunchError, LaunchSpec, Launcher, OutputPipe, Program};
use super::output::{BoundedLog, Utf8Carry};
use super::plan::{Plan, PlannedCommand};
use super::redact::{Needles, Redactor};
use crate::guest::service::EventSink;
use crate::wire::Event;

/// How long the result waits for a command's pipes to close after it exited.
const DRAIN: Duration = Duration::from_millis(300);
/// Read size of the output pumps.
const READ_CHUNK: usize = 16 * 1024;

/// The outcome of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CommandStatus {
    /// Exited 0.
    Succeeded,
    /// Exited non-zero or was killed by a signal.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Exit 130 / SIGINT: reported, not a failure (reference CLI semantics).
    Interrupted,
    /// Could not be started.
    NotStarted,
    /// Not run: an earlier step failed, or the run was blocked.
    Skipped,
}

impl CommandStatus {
    fn stops_the_run(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::NotStarted)
    }
}

/// One command in the result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CommandResult {
    /// `property` or `property.key`.
    pub(crate) name: String,
    /// The lifecycle property.
    pub(crate) property: &'static str,
    /// The object form's key.
    pub(crate) key: Option<String>,
    /// `shell` or `exec`.
    pub(crate) form: &'static str,
    /// What was (or would have been) exec'd; secret values redacted.
    pub(crate) argv: Vec<String>,
    /// The outcome.
    pub(crate) status: CommandStatus,
    /// Exit code.
    pub(crate) exit_code: Option<i32>,
    /// Terminating signal.
    pub(crate) signal: Option<i32>,
    /// Killed at the timeout.
    pub(crate) timed_out: bool,
    /// Milliseconds from start to exit.
    pub(crate) duration_ms: Option<f64>,
    /// Why it did not start, or why it was skipped.
    pub(crate) reason: Option<String>,
    /// What the sandbox applied, when it ran sandboxed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sandbox: Option<serde_json::Value>,
}

impl CommandResult {
    /// A command that will not run.
    pub(crate) fn skipped(c: &PlannedCommand, needles: &Needles, reason: String) -> Self {
        Self {
            name: c.name.clone(),
            property: c.property,
            key: c.key.clone(),
            form: c.program.form(),
            argv: redact_argv(&c.program, needles),
            status: CommandStatus::Skipped,
            exit_code: None,
            signal: None,
            timed_out: false,
            duration_ms: None,
            reason: Some(reason),
            sandbox: None,
        }
    }

    fn finished(c: &PlannedCommand, needles: &Needles, exit: ExitReport) -> Self {
        let status = if exit.timed_out {
            CommandStatus::TimedOut
        } else if exit.code == Some(0) {
            CommandStatus::Succeeded
        } else if exit.code == Some(130) || exit.signal == Some(libc::SIGINT) {
            CommandStatus::Interrupted
        } else {
            CommandStatus::Failed
        };
        Self {
            status,
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            duration_ms: Some(exit.duration.as_secs_f64() * 1000.0),
            reason: None,
            ..Self::skipped(c, needles, String::new())
        }
    }
}

fn redact_argv(p: &Program, needles: &Needles) -> Vec<String> {
    p.argv()
        .into_iter()
        .map(|a| String::from_utf8_lossy(&needles.redact_all(a.as_bytes())).into_owned())
        .collect()
}

/// The log of a run, shared by every pump; `None` once closed.
#[derive(Debug)]
struct SharedLog {
    log: Option<BoundedLog>,
    last: Option<(String, &'static str)>,
}

/// What a run needs besides its plan.
pub(crate) struct RunInput {
    /// The policy's permission to run, and at which strength (only the policy crate makes
    /// one, so no command runs without a decision).
    pub(crate) profile: Authorized<RunProfile>,
    /// The run's id (in every event).
    pub(crate) run_id: String,
    /// How each command runs (user, env, limits...).
    pub(crate) spec: LaunchSpec,
    /// Values to redact.
    pub(crate) needles: Needles,
    /// The bounded log file, if one could be created.
    pub(crate) log: Option<BoundedLog>,
}

impl std::fmt::Debug for RunInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunInput")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunOutcome {
    /// Every command, in plan order.
    pub(crate) commands: Vec<CommandResult>,
    /// The first command that stopped the run.
    pub(crate) first_failure: Option<String>,
    /// Output bytes the log dropped between its head and tail.
    pub(crate) log_dropped_bytes: u64,
}

/// Runs plans through a launcher, pushing output events.
#[derive(Clone)]
pub struct Runner {
    launcher: Arc<dyn Launcher>,
    events: EventSink,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("launcher", &self.launcher.name())
            .finish()
    }
}

#[derive(Clone)]
struct Ctx {
    run_id: Arc<str>,
    needles: Needles,
    events: EventSink,
    log: Arc<Mutex<SharedLog>>,
}

impl Ctx {
    fn event(&self, name: &str, fields: serde_json::Value) {
        // No receiver (no host connected) is fine: the log still has the output.
        let _ = self.events.send(Event::new(name, fields));
    }

    fn log(&self) -> std::sync::MutexGuard<'_, SharedLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Runner {
    /// A runner over `launcher`.
    pub fn new(launcher: Arc<dyn Launcher>, events: EventSink) -> Self {
        Self { launcher, events }
    }

    /// The launcher.
    pub(crate) fn launcher(&self) -> Arc<dyn Launcher> {
        self.launcher.clone()
    }

    /// The launcher's name.
    pub(crate) fn launcher_name(&self) -> &'static str {
        self.launcher.name()
    }

    /// Runs every step of `plan`; a failed step stops the later ones (see the module docs).
    pub(crate) async fn run(&self, plan: &Plan, input: RunInput) -> RunOutcome {
        self.run_with(plan, input, true).await
    }

    /// Runs every step of `plan`, whatever happens to the others (extension installs).
    pub(crate) async fn run_each(&self, plan: &Plan, input: RunInput) -> RunOutcome {
        self.run_with(plan, input, false).await
    }

    async fn run_with(&self, plan: &Plan, input: RunInput, stop_on_failure: bool) -> RunOutcome {
        let ctx = Ctx {
            run_id: input.run_id.into(),
            needles: input.needles,
            events: self.events.clone(),
            log: Arc::new(Mutex::new(SharedLog {
                log: input.log,
                last: None,
            })),
        };
        let mut spec = input.spec;
        spec.strength = input.profile.get().trust;
        let spec = Arc::new(spec);
        let mut commands = Vec::new();
        let mut first_failure: Option<String> = None;
        for step in &plan.steps {
            if let Some(failed) = first_failure.as_ref().filter(|_| stop_on_failure) {
                for c in &step.commands {
                    let why = format!("an earlier command failed: {failed}");
                    commands.push(CommandResult::skipped(c, &ctx.needles, why));
                }
                continue;
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, c) in step.commands.iter().enumerate() {
                let (runner, ctx, spec, c) = (self.clone(), ctx.clone(), spec.clone(), c.clone());
                set.spawn(async move { (i, runner.one(&ctx, &spec, &c).await) });
            }
            let mut results: Vec<Option<CommandResult>> = vec![None; step.commands.len()];
            while let Some(joined) = set.join_next().await {
                if let Ok((i, r)) = joined {
                    results[i] = Some(r);
                }
            }
            for (c, r) in step.commands.iter().zip(results) {
                let r = r.unwrap_or_else(|| CommandResult {
                    status: CommandStatus::NotStarted,
                    reason: Some("the runner task failed; see the agent log".into()),
                    ..CommandResult::skipped(c, &ctx.needles, String::new())
                });
                if r.status.stops_the_run() && first_failure.is_none() {
                    first_failure = Some(r.name.clone());
                }
                commands.push(r);
            }
        }
        let log = ctx.log().log.take();
        let log_dropped_bytes = log.as_ref().map_or(0, BoundedLog::dropped);
        if let Some(log) = log {
            if let Err(e) = log.close() {
                tracing::warn!(error = %e, "lifecycle log could not be completed");
            }
        }
        RunOutcome {
            commands,
            first_failure,
            log_dropped_bytes,
        }
    }

    async fn one(&self, ctx: &Ctx, spec: &LaunchSpec, c: &PlannedCommand) -> CommandResult {
        let t0 = std::time::Instant::now();
        // Starting a command blocks its thread (the privileged side's answer, or the sandbox's
        // set-up): never the runtime's, which serves pings and forwards meanwhile.
        let (launcher, launch_spec, program) =
            (self.launcher.clone(), spec.clone(), c.program.clone());
        let started =
            tokio::task::spawn_blocking(move || launcher.launch(&launch_spec, &program)).await;
        let launched = match started
            .unwrap_or_else(|e| Err(LaunchError::Sandbox(format!("the launch task failed: {e}"))))
        {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                ctx.event(
                    "lifecycle_command",
                    json!({"run": &*ctx.run_id, "command": c.name, "state": "not_started", "reason": msg}),
                );
                return CommandResult {
                    status: CommandStatus::NotStarted,
                    reason: Some(msg),
                    ..CommandResult::skipped(c, &ctx.needles, String::new())
                };
            }
        };
        ctx.event(
            "lifecycle_command",
            json!({"run": &*ctx.run_id, "command": c.name, "state": "started",
                   "form": c.program.form()}),
        );
        let applied = launched.applied;
        if !launched.degraded.is_empty() {
            tracing::warn!(command = %c.name, layers = ?launched.degraded, "sandbox degraded");
            ctx.event(
                "sandbox_degraded",
                json!({"run": &*ctx.run_id, "command": c.name, "layers": launched.degraded}),
            );
        }
        let mut pumps = Vec::new();
        for (pipe, stream) in [(launched.stdout, "stdout"), (launched.stderr, "stderr")] {
            if let Some(pipe) = pipe {
                pumps.push(tokio::spawn(pump(
                    pipe,
                    ctx.clone(),
                    c.name.clone(),
                    stream,
                )));
            }
        }
        let spawned = t0.elapsed();
        let exit = launched.exit.await;
        let exited = t0.elapsed();
        // Pipes close when the command and everything it started are gone; a background
        // process may hold them open, so wait only briefly and let its pump run on.
        let _ = tokio::time::timeout(DRAIN, async {
            for p in &mut pumps {
                let _ = p.await;
            }
        })
        .await;
        tracing::debug!(
            command = %c.name,
            spawn_us = spawned.as_micros() as u64,
            exit_us = exited.as_micros() as u64,
            drained_us = t0.elapsed().as_micros() as u64,
            "lifecycle command timing"
        );
        let r = CommandResult {
            sandbox: applied,
            ..CommandResult::finished(c, &ctx.needles, exit)
        };
        ctx.event(
            "lifecycle_command",
            json!({"run": &*ctx.run_id, "command": c.name, "state": "exited",
                   "status": r.status, "exit_code": r.exit_code, "signal": r.signal,
                   "timed_out": r.timed_out, "duration_ms": r.duration_ms}),
        );
        r
    }
}

async fn pump(mut pipe: OutputPipe, ctx: Ctx, command: String, stream: &'static str) {
    let mut redactor = Redactor::new(ctx.needles.clone());
    let mut text = Utf8Carry::default();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let shown = redactor.push(&buf[..n]);
        deliver(&ctx, &command, stream, &shown, &mut text);
    }
    let shown = redactor.finish();
    deliver(&ctx, &command, stream, &shown, &mut text);
    let rest = text.finish();
    if !rest.is_empty() {
        send_output(&ctx, &command, stream, rest);
    }
}

fn deliver(ctx: &Ctx, command: &str, stream: &'static str, bytes: &[u8], text: &mut Utf8Carry) {
    if bytes.is_empty() {
        return;
    }
    {
        let mut shared = ctx.log();
        let label = (command.to_owned(), stream);
        let relabel = shared.last.as_ref() != Some(&label);
        if let Some(log) = shared.log.as_mut() {
            if relabel {
                log.write(format!("\n--- {command} ({stream}) ---\n").as_bytes());
            }
            log.write(bytes);
        }
        if relabel {
            shared.last = Some(label);
        }
    }
    let t = text.push(bytes);
    if !t.is_empty() {
        send_output(ctx, command, stream, t);
    }
}

fn send_output(ctx: &Ctx, command: &str, stream: &str, data: String) {
    ctx.event(
        "lifecycle_output",
        json!({"run": &*ctx.run_id, "command": command, "stream": stream, "data": data}),
    );
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
