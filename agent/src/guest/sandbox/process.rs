//! A started sandboxed command: its pipes, its cgroup, what applied, and the wait that enforces
//! the timeout.
//!
//! Kill order at a timeout: TERM to the process group (the command can clean up), KILL to the
//! group after the grace period, then the cgroup as a whole (`cgroup.kill`, or the freezer),
//! which also reaches double-forked daemons and fork-bomb children that left the group
//! (measured: `kill(-pgid)` left 4 of them alive, `cgroup.kill` none). The process group is
//! only signalled while the main process is unreaped, so its id cannot have been reused.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::Serialize;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::cgroup::{LimitEvents, RunCgroup};
use super::child::{self, ChildPlan};
use super::{AppliedReport, SandboxError};

/// How long the main process may take to die after SIGKILL before the wait gives up on it.
const REAP_LIMIT: Duration = Duration::from_secs(5);
/// How long to wait for a killed cgroup to empty.
const EMPTY_LIMIT: Duration = Duration::from_secs(2);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitReport {
    /// Exit code, when the main process exited normally.
    pub code: Option<i32>,
    /// Signal number, when it was killed by a signal.
    pub signal: Option<i32>,
    /// The timeout was reached (the whole run was then killed).
    pub timed_out: bool,
    /// From spawn to the main process's end.
    pub duration: Duration,
}

impl ExitReport {
    /// Exit code 0 and not timed out.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// A running (or finished) sandboxed command.
#[derive(Debug)]
pub struct SandboxedChild {
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    pid: u32,
    cgroup: Option<RunCgroup>,
    applied: AppliedReport,
    started: Instant,
    /// The main process has been reaped (its pid, and so its process group id, may be reused).
    reaped: bool,
    report: Option<ExitReport>,
}

/// Starts `program` with `plan` applied in the child between fork and exec (std's `pre_exec`
/// hook: [`super::child`]). Blocks its thread until the child has exec'd (or failed to).
pub(super) fn start(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    plan: ChildPlan,
    cgroup: Option<RunCgroup>,
    applied: AppliedReport,
) -> Result<SandboxedChild, SandboxError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    child::install(command.as_std_mut(), plan);
    let started = Instant::now();
    let spawned = command.spawn();
    drop(command); // closes the parent's copies of the cgroup and Landlock descriptors
    let mut child = spawned.map_err(|source| SandboxError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| SandboxError::Spawn {
        program: program.to_owned(),
        source: std::io::Error::other("the child exited before its pid was read"),
    })?;
    Ok(SandboxedChild {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pid,
        cgroup,
        applied,
        started,
        reaped: false,
        report: None,
    })
}

fn report(status: Option<ExitStatus>, timed_out: bool, duration: Duration) -> ExitReport {
    ExitReport {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        duration,
    }
}

impl SandboxedChild {
    /// The main process's pid (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What applied to this run.
    pub fn applied(&self) -> &AppliedReport {
        &self.applied
    }

    /// The main process's stdout (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The main process's stderr (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// The run's cgroup name (`None` without cgroups).
    #[cfg(test)]
    pub(crate) fn cgroup_name(&self) -> Option<&str> {
        self.cgroup.as_ref().map(RunCgroup::name)
    }

    /// OOM kills and `pids.max` refusals so far.
    pub fn limit_events(&self) -> LimitEvents {
        self.cgroup
            .as_ref()
            .map(RunCgroup::limit_events)
            .unwrap_or_default()
    }

    /// Whether any process of the run (the main one or one it left behind) is alive.
    pub fn has_live_processes(&self) -> bool {
        match &self.cgroup {
            Some(c) => c.populated(),
            None => self.report.is_none(),
        }
    }

    fn signal_group(&self, signal: Signal) {
        if !self.reaped {
            if let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process_group(pid, signal);
            }
        }
    }

    /// Kills everything in the run now: the process group (while the main process is unreaped)
    /// and the whole cgroup. Does not wait; [`Self::wait`] reaps.
    pub fn kill_all(&self) {
        self.signal_group(Signal::KILL);
        if let Some(c) = &self.cgroup {
            c.kill();
        }
    }

    async fn kill_tree(&mut self) {
        self.kill_all();
        if let Some(c) = &self.cgroup {
            let deadline = Instant::now() + EMPTY_LIMIT;
            while c.populated() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Waits for the main process, at most `timeout`; then TERM to the group, KILL after
    /// `grace`, and the whole cgroup killed. After a successful exit, processes the command
    /// left running stay (and keep the cgroup); after a failed one the cgroup is killed, so
    /// nothing of a failed command lingers. Calling it again returns the same report.
    pub async fn wait(&mut self, timeout: Duration, grace: Duration) -> ExitReport {
        if let Some(report) = self.report {
            return report;
        }
        let result = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                self.reaped = true;
                let result = report(status.ok(), false, self.started.elapsed());
                self.report = Some(result);
                if !result.success() {
                    self.kill_tree().await;
                }
                result
            }
            Err(_) => {
                self.signal_group(Signal::TERM);
                let mut status = match tokio::time::timeout(grace, self.child.wait()).await {
                    Ok(status) => {
                        self.reaped = true;
                        status.ok()
                    }
                    Err(_) => None,
                };
                self.kill_all();
                if !self.reaped {
                    if let Ok(waited) = tokio::time::timeout(REAP_LIMIT, self.child.wait()).await {
                        self.reaped = true;
                        status = waited.ok();
                    }
                }
                let result = report(status, true, self.started.elapsed());
                self.report = Some(result);
                self.kill_tree().await;
                result
            }
        };
        // The run's empty cgroup is removed when the handle is dropped.
        result
    }
}

impl Drop for SandboxedChild {
    fn drop(&mut self) {
        if !self.reaped {
            // Abandoned without a wait: nothing of it may outlive the handle. The main process
            // is reaped in the background (by tokio, or by `PidfdChild`'s drop).
            self.kill_all();
        }
        // The run's cgroup goes with the handle (removed if empty: `RunCgroup`'s drop).
    }
}
