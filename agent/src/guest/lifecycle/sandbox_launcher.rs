//! The [`Launcher`] the agent uses: the sandbox spawner ([`crate::guest::sandbox`]).
//!
//! The runner's [`LaunchSpec`] maps onto a [`SandboxSpec`] one to one, except the
//! environment: the sandbox sets `PATH`, `HOME`, `USER`, `SHELL` and `LANG` itself from its own
//! rules, so the runner's base entries are left out and only what the runner added on top
//! (remoteEnv, and secrets and the token when the profile allows) is handed over. The sandbox
//! checks those names again (defence in depth).

use serde_json::Value;

use super::env::base_env;
use super::launcher::{LaunchError, LaunchSpec, Launched, Launcher, OutputPipe, Program};
use crate::guest::sandbox::world::WorldConfig;
use crate::guest::sandbox::{self, Limits, ResolvedUser, Sandbox, SandboxConfig, SandboxSpec};

/// Spawns through the sandbox, which it owns.
#[derive(Debug)]
pub(crate) struct SandboxLauncher {
    sandbox: Sandbox,
    limits: Limits,
    restricted: WorldConfig,
    path: String,
    lang: String,
}

impl SandboxLauncher {
    /// A launcher over a sandbox made from `config` (its limits and restricted world too);
    /// `path`/`lang` are the runner's base values (`lifecycle.path`/`lang`): the sandbox sets
    /// them, and the launcher recognises the runner's base entries by them.
    pub(crate) fn new(config: &SandboxConfig, path: String, lang: String) -> Self {
        Self {
            sandbox: Sandbox::new(config, &path, &lang),
            limits: config.limits,
            restricted: config.world.clone(),
            path,
            lang,
        }
    }
}

impl Launcher for SandboxLauncher {
    fn launch(&self, spec: &LaunchSpec, program: &Program) -> Result<Launched, LaunchError> {
        let base = base_env(&spec.user, &self.path, &self.lang);
        let extra: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|entry| !base.contains(entry))
            .cloned()
            .collect();
        let sspec = SandboxSpec {
            profile: spec.strength,
            user: ResolvedUser {
                uid: spec.user.uid,
                gid: spec.user.gid,
                name: spec.user.name.clone(),
                home: spec.user.home.clone(),
                shell: spec.user.shell.clone(),
            },
            env: extra,
            cwd: spec.cwd.clone(),
            workspace: spec.workspace.clone(),
            state_dir: spec.state_dir.clone(),
            limits: self.limits,
            restricted: self.restricted.clone(),
        };
        let mut child = self.sandbox.spawn(&sspec, program).map_err(|e| match e {
            sandbox::SandboxError::Spawn { program, source } => {
                LaunchError::Spawn { program, source }
            }
            other => LaunchError::Sandbox(other.to_string()),
        })?;
        let applied = serde_json::to_value(child.applied()).unwrap_or(Value::Null);
        let degraded = child
            .applied()
            .world
            .as_ref()
            .map(sandbox::world::WorldReport::degraded)
            .unwrap_or_default();
        let stdout = child.take_stdout().map(|p| Box::pin(p) as OutputPipe);
        let stderr = child.take_stderr().map(|p| Box::pin(p) as OutputPipe);
        let limits = spec.limits;
        let exit = Box::pin(async move {
            let r = child.wait(limits.timeout, limits.grace).await;
            // The handle goes away only after the wait (a successful command's background
            // processes keep running in their cgroup). Dropping it removes the run's empty
            // cgroups (rmdir in up to three hierarchies): blocking work, off the runtime.
            tokio::task::spawn_blocking(move || drop(child));
            r
        });
        Ok(Launched {
            stdout,
            stderr,
            exit,
            applied: Some(applied),
            degraded,
        })
    }

    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn kill_restricted(&self) -> usize {
        self.sandbox.kill_restricted()
    }

    fn restricted_sockets(self: std::sync::Arc<Self>) -> sandbox::netns::RestrictedSockets {
        sandbox::netns::RestrictedSockets::new(move |kind, have| {
            self.sandbox.restricted_socket(kind, have)
        })
    }
}
