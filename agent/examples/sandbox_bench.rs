//! Spawn-to-exit latency of `/bin/true`: plain `tokio::process::Command` (unsandboxed), the
//! trusted sandbox and the restricted sandbox, interleaved round by round so that machine noise
//! hits all three alike. Needs root (it switches users and creates cgroups).
//!
//! ```text
//! sandbox_bench [RUNS] [USER]      # default 300 runs, user nobody
//! ```
//!
//! Prints one JSON line per mode: `{"mode":..,"p50_us":..,"p90_us":..,"p99_us":..,"min_us":..,
//! "n":..}`; "spawn" is the time `spawn` took (fork + the child's sandbox setup until `execve`),
//! "total" spawn to reaped exit. The sandbox has the default `sandbox` section, and each handle
//! is dropped (its cgroup removed) after the clock stopped, as the agent drops it off the result
//! path.

// A benchmark tool reports on stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use codespace_agent::guest::sandbox::{
    self, Limits, Program, ResolvedUser, SandboxProfile, SandboxSpec,
};

fn percentiles(mode: &str, what: &str, mut us: Vec<u128>) -> String {
    us.sort_unstable();
    let at = |p: usize| us[(us.len() * p / 100).min(us.len() - 1)];
    format!(
        "{{\"mode\":\"{mode}\",\"what\":\"{what}\",\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"min_us\":{},\"n\":{}}}",
        at(50),
        at(90),
        at(99),
        us[0],
        us.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("sandbox_bench needs root (users, cgroups)");
    }
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(300), |a| a.parse()).context("RUNS")?;
    let user = ResolvedUser::lookup(&args.next().unwrap_or_else(|| "nobody".into()))?;
    let base = PathBuf::from(format!("/tmp/sandbox-bench-{}", std::process::id()));
    let workspace = base.join("ws");
    let state_dir = PathBuf::from(format!("/run/sandbox-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&workspace)?;
    std::fs::create_dir_all(&state_dir)?;
    // The creator's workspace (a uid of its own); the restricted run sees it idmapped.
    std::os::unix::fs::chown(&workspace, Some(64_999), Some(64_999))?;
    let spec = |profile| SandboxSpec {
        profile,
        user: user.clone(),
        env: Vec::new(),
        cwd: PathBuf::from("/"),
        workspace: workspace.clone(),
        state_dir: state_dir.clone(),
        limits: Limits::default(),
        restricted: sandbox::world::WorldConfig {
            root: base.join("restricted"),
            outbound: false,
            ..Default::default()
        },
    };
    let program = Program::Exec(vec!["/bin/true".into()]);
    let sandbox = sandbox::Sandbox::default();
    let modes = ["unsandboxed", "trusted", "restricted"];
    let mut total: Vec<Vec<u128>> = (0..3).map(|_| Vec::with_capacity(runs)).collect();
    let mut spawn: Vec<Vec<u128>> = (0..3).map(|_| Vec::with_capacity(runs)).collect();
    let mut dropped = Vec::with_capacity(1);
    let result: anyhow::Result<()> = async {
        for round in 0..runs + 10 {
            for (i, mode) in modes.iter().enumerate() {
                let start = Instant::now();
                let spawned;
                match *mode {
                    "unsandboxed" => {
                        let mut child = tokio::process::Command::new("/bin/true")
                            .stdin(Stdio::null())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()?;
                        spawned = start.elapsed();
                        child.wait().await?;
                    }
                    _ => {
                        let profile = if *mode == "trusted" {
                            SandboxProfile::Trusted
                        } else {
                            SandboxProfile::Restricted
                        };
                        let mut child = sandbox.spawn(&spec(profile), &program)?;
                        spawned = start.elapsed();
                        let report = child
                            .wait(Duration::from_secs(10), Duration::from_millis(100))
                            .await;
                        if !report.success() {
                            bail!("{mode}: /bin/true failed: {report:?}");
                        }
                        dropped.push(child);
                    }
                }
                let elapsed = start.elapsed();
                dropped.clear();
                if round >= 10 {
                    // the first rounds warm caches (and build the cgroup layout)
                    total[i].push(elapsed.as_micros());
                    spawn[i].push(spawned.as_micros());
                }
            }
        }
        Ok(())
    }
    .await;
    drop(dropped);
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&state_dir);
    result?;
    for (i, mode) in modes.iter().enumerate() {
        println!("{}", percentiles(mode, "total", total[i].clone()));
        println!("{}", percentiles(mode, "spawn", spawn[i].clone()));
    }
    Ok(())
}
