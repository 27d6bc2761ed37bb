//! The seam between the runner and whatever starts a process: [`Launcher`].
//!
//! The runner decides *what* runs (a [`Program`] with a [`LaunchSpec`]: profile, user, env,
//! folders, limits); a launcher decides *how*. Two implementations exist:
//! - [`PlainLauncher`] (this file): `tokio::process` in its own process group, the timeout
//!   enforced by `SIGTERM` to the group, then `SIGKILL` after a grace period. No sandbox: used by
//!   tests and by the `unsandboxed` benchmark, and wired only when the config says
//!   `"launcher": "plain"`. It runs every command as the agent's own user (the spec's user only
//!   shapes `HOME`/`USER`/`SHELL` in the environment the runner builds).
//! - [`super::sandbox_launcher::SandboxLauncher`], which hands the same spec to the sandbox
//!   spawner (user switch, Landlock, seccomp, cgroup): the agent's default.
//!
//! Background processes a successful command leaves behind keep running (a dev server started
//! by `postStartCommand`); on a timeout the whole group is signalled.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;

use crate::guest::sandbox::netns::RestrictedSockets;
use crate::guest::user::Account;

/// What to run, and how it ended: the sandbox's types, which every launcher shares.
pub use crate::guest::sandbox::{ExitReport, Program};

/// The sandbox strength: the policy's trust (never "blocked": a blocked run never reaches a
/// launcher).
pub(crate) use codespace_policy::lifecycle::Trust;

/// Resource limits handed to the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaunchLimits {
    /// Wall-clock timeout of the command.
    pub(crate) timeout: Duration,
    /// Time between `SIGTERM` and `SIGKILL` at the timeout.
    pub(crate) grace: Duration,
}

/// Everything about how one command runs, except the command.
#[derive(Clone)]
pub struct LaunchSpec {
    /// Sandbox strength.
    pub(crate) strength: Trust,
    /// User.
    pub(crate) user: Account,
    /// The complete environment (may hold secrets: no `Debug`).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub(crate) cwd: PathBuf,
    /// The workspace folder (writable in the restricted profile).
    pub(crate) workspace: PathBuf,
    /// The agent's state directory (hidden from the command).
    pub(crate) state_dir: PathBuf,
    /// Limits.
    pub(crate) limits: LaunchLimits,
    /// The trust facts the run's profile was decided from (the privileged side decides again
    /// before it starts a trusted command: [`crate::guest::privsep::monitor`]).
    pub(crate) facts: Option<codespace_policy::lifecycle::LifecycleFacts>,
}

impl std::fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("strength", &self.strength)
            .field("user", &self.user)
            .field("env", &crate::guest::sandbox::env::EnvNames(&self.env))
            .field("cwd", &self.cwd)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The program could not be executed (not found, not executable...).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The sandbox could not be set up.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// An empty argv.
    #[error("empty command")]
    Empty,
}

/// An output pipe of a started command.
pub(crate) type OutputPipe = Pin<Box<dyn AsyncRead + Send>>;
/// A future that resolves to how the command ended.
pub(crate) type ExitFuture = Pin<Box<dyn std::future::Future<Output = ExitReport> + Send>>;

/// A started command.
pub struct Launched {
    /// Its standard output.
    pub stdout: Option<OutputPipe>,
    /// Its standard error.
    pub stderr: Option<OutputPipe>,
    /// Resolves when it exited or was killed at its timeout.
    pub exit: ExitFuture,
    /// What the sandbox applied (user, Landlock ABI, seccomp, cgroup...), if sandboxed.
    pub applied: Option<serde_json::Value>,
    /// Layers of the sandbox this machine could not give the command, each with its reason
    /// (`restricted_fallback: "degrade"`); the runner reports them as `sandbox_degraded`.
    pub degraded: Vec<String>,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched").finish_non_exhaustive()
    }
}

/// Starts commands.
pub trait Launcher: Send + Sync + 'static {
    /// Starts `program`; the returned exit future enforces `spec.limits`.
    fn launch(&self, spec: &LaunchSpec, program: &Program) -> Result<Launched, LaunchError>;
    /// A short name for reports (`plain`, `sandbox`).
    fn name(&self) -> &'static str;
    /// Kills everything restricted runs left behind in this codespace; how many processes.
    /// Blocks until they are dead (call it off the runtime thread). A launcher that never
    /// starts restricted runs has none to kill.
    fn kill_restricted(&self) -> usize {
        0
    }
    /// Where sockets inside the codespace's restricted network namespace come from: the
    /// sandbox behind this launcher owns the namespace, and port detection and forwarding reach
    /// its listeners through these. A launcher that never starts restricted runs has none.
    fn restricted_sockets(self: std::sync::Arc<Self>) -> RestrictedSockets {
        RestrictedSockets::none()
    }
}

/// `tokio::process` with a process group and the timeout; no sandbox.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PlainLauncher;

impl Launcher for PlainLauncher {
    fn launch(&self, spec: &LaunchSpec, program: &Program) -> Result<Launched, LaunchError> {
        use std::process::Stdio;
        let argv = program.argv();
        let (exe, args) = argv.split_first().ok_or(LaunchError::Empty)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            program: exe.clone(),
            source,
        })?;
        let stdout = child.stdout.take().map(|p| Box::pin(p) as OutputPipe);
        let stderr = child.stderr.take().map(|p| Box::pin(p) as OutputPipe);
        let pgid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        let limits = spec.limits;
        let exit = Box::pin(async move {
            let status = match tokio::time::timeout(limits.timeout, child.wait()).await {
                Ok(s) => (s.ok(), false),
                Err(_) => {
                    signal_group(pgid, rustix::process::Signal::TERM);
                    let s = match tokio::time::timeout(limits.grace, child.wait()).await {
                        Ok(s) => s.ok(),
                        Err(_) => {
                            signal_group(pgid, rustix::process::Signal::KILL);
                            child.wait().await.ok()
                        }
                    };
                    // Whatever else is left in the group goes too.
                    signal_group(pgid, rustix::process::Signal::KILL);
                    (s, true)
                }
            };
            report(status.0, status.1, start.elapsed())
        });
        Ok(Launched {
            stdout,
            stderr,
            exit,
            applied: None,
            degraded: Vec::new(),
        })
    }

    fn name(&self) -> &'static str {
        "plain"
    }
}

fn signal_group(pgid: Option<rustix::process::Pid>, sig: rustix::process::Signal) {
    if let Some(p) = pgid {
        // ESRCH (the group is gone) is the expected outcome once everything exited.
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

fn report(
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
    duration: Duration,
) -> ExitReport {
    use std::os::unix::process::ExitStatusExt as _;
    ExitReport {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        duration,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn spec(dir: &std::path::Path, timeout: Duration) -> LaunchSpec {
        LaunchSpec {
            strength: Trust::Restricted,
            user: Account {
                name: "me".into(),
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
                home: dir.to_owned(),
                shell: "/bin/sh".into(),
            },
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("X".into(), "1".into()),
            ],
            cwd: dir.to_owned(),
            workspace: dir.to_owned(),
            state_dir: dir.join("state"),
            limits: LaunchLimits {
                timeout,
                grace: Duration::from_millis(200),
            },
            facts: None,
        }
    }

    #[test]
    fn a_spec_debugs_names_never_values() {
        let mut spec = spec(std::path::Path::new("/w"), Duration::from_secs(1));
        spec.env.push(("API_KEY".into(), "s3cr3t-value".into()));
        let text = format!("{spec:?} {spec:#?}");
        assert!(text.contains("API_KEY"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[tokio::test]
    async fn runs_with_exactly_the_given_env_and_reports_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = PlainLauncher
            .launch(
                &spec(dir.path(), Duration::from_secs(10)),
                &Program::Shell("env | sort; pwd; exit 3".into()),
            )
            .unwrap();
        let mut out = String::new();
        l.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let r = l.exit.await;
        assert_eq!(r.code, Some(3));
        assert!(!r.success());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"X=1"), "{out}");
        assert!(!out.contains("HOME="), "env not cleared: {out}");
        assert!(lines.contains(&dir.path().to_str().unwrap()), "{out}");
    }

    #[tokio::test]
    async fn the_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        let script = format!(
            "(trap '' TERM; sleep 1; touch {}) & sleep 30",
            marker.display()
        );
        let l = PlainLauncher
            .launch(
                &spec(dir.path(), Duration::from_millis(200)),
                &Program::Shell(script),
            )
            .unwrap();
        let r = l.exit.await;
        assert!(r.timed_out);
        assert!(r.signal.is_some(), "{r:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "a TERM-ignoring child outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = PlainLauncher
            .launch(
                &spec(dir.path(), Duration::from_secs(1)),
                &Program::Exec(vec!["/nonexistent/prog".into()]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/prog"), "{e}");
    }
}
