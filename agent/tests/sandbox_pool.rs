//! The cgroup pool with the janitor thread, as the agent runs them (root only). A test binary
//! of its own: once on, the pool is process-wide, and the other sandbox tests expect a dropped
//! handle to remove its cgroup at once. Everything pooled is removed when the pool is turned
//! off, and each test checks that.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use codespace_agent::guest::sandbox::world::WorldConfig;
use std::time::Duration;

use codespace_agent::guest::sandbox::{
    cgroup, cgroup_pool, is_restricted_pid, spawn, Limits, Program, ResolvedUser, SandboxProfile,
    SandboxSpec,
};

#[path = "support/root.rs"]
mod root_gate;
use root_gate::root;

/// One test at a time (the pool is process-wide).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A workspace and a state directory; turns the pool off (removing what it holds) when dropped.
struct Layout {
    _tmp: tempfile::TempDir,
    workspace: PathBuf,
    state: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let workspace = tmp.path().join("ws");
        let state = tmp.path().join("state");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(&state).unwrap();
        // The creator's (a uid of its own): the restricted run (nobody) writes it idmapped.
        std::os::unix::fs::chown(&workspace, Some(64_999), Some(64_999)).unwrap();
        Self {
            _tmp: tmp,
            workspace,
            state,
        }
    }

    fn spec(&self, limits: Limits) -> SandboxSpec {
        SandboxSpec {
            profile: SandboxProfile::Restricted,
            user: ResolvedUser::lookup("nobody").unwrap(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            workspace: self.workspace.clone(),
            state_dir: self.state.clone(),
            limits,
            restricted: WorldConfig {
                root: PathBuf::from("/tmp/codespace-agent-pool-tests/restricted"),
                outbound: false,
                ..WorldConfig::default()
            },
        }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        cgroup_pool::set_size(0);
    }
}

/// Every directory of `names` in every hierarchy is gone.
fn all_removed(names: &[String]) {
    for name in names {
        for p in &cgroup::layout(None).parents {
            for dir in [
                p.dir.join(name),
                p.dir.join(cgroup::RESTRICTED_GROUP).join(name),
            ] {
                assert!(!dir.exists(), "{} left behind", dir.display());
            }
        }
    }
}

#[tokio::test]
async fn pooled_cgroups_carry_the_limits_become_the_runs_and_are_removed_at_shutdown() {
    if !root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cgroups = cgroup::layout(None);
    if cgroups.parents.is_empty() {
        return; // no cgroups on this machine: nothing is pooled
    }
    // Limits no other test uses, so this test's kind is its own (the pool is process-wide).
    let limits = Limits {
        pids_max: 77,
        ..Limits::default()
    };
    let l = Layout::new();
    let spec = l.spec(limits);
    cgroup_pool::set_size(2);
    let wait_for_two = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ready = cgroup_pool::ready(SandboxProfile::Restricted, &limits);
            if ready.len() == 2 || std::time::Instant::now() > deadline {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // The first spawn finds the pool empty and starts the refill.
    let mut first = spawn(&spec, &Program::Exec(vec!["true".into()])).unwrap();
    first.wait(Duration::from_secs(20), Duration::ZERO).await;
    let pooled = wait_for_two().await;
    assert_eq!(pooled.len(), 2, "the pool was not refilled");
    // A pooled cgroup has its limits written and the restricted marker in its name.
    let pids = cgroups
        .parents
        .iter()
        .find(|p| p.kind == cgroup::Kind::V1Pids || p.pids);
    for name in &pooled {
        assert!(
            name.contains(codespace_agent::guest::broker::DEFAULT_RESTRICTED_CGROUP_MARKER),
            "{name}"
        );
        if let Some(p) = pids {
            // Restricted runs live in the restricted principal's group.
            let dir = p.dir.join(cgroup::RESTRICTED_GROUP).join(name);
            let max = std::fs::read_to_string(dir.join("pids.max")).unwrap();
            assert_eq!(max.trim(), "77", "{name}");
        }
    }
    // The next run takes one of them: it is that run's cgroup from then on.
    let mut second = spawn(&spec, &Program::Exec(vec!["sleep".into(), "5".into()])).unwrap();
    let name = second.cgroup_name().unwrap().to_owned();
    assert!(pooled.contains(&name), "{name} not from {pooled:?}");
    assert!(is_restricted_pid(second.pid()));
    // In every hierarchy of the run, the v2 one included (born there: CLONE_INTO_CGROUP).
    let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", second.pid())).unwrap();
    for p in &cgroups.parents {
        let line = membership.lines().find(|l| match p.kind {
            cgroup::Kind::V2 => l.starts_with("0::"),
            cgroup::Kind::V1Memory => l.split(':').nth(1) == Some("memory"),
            cgroup::Kind::V1Pids => l.split(':').nth(1) == Some("pids"),
            cgroup::Kind::V1Cpu => l.split(':').nth(1) == Some("cpu"),
            cgroup::Kind::V1Freezer => false,
        });
        if let Some(line) = line {
            assert!(line.ends_with(&name), "{line} (want {name})");
        }
    }
    second.kill_all();
    second.wait(Duration::from_secs(5), Duration::ZERO).await;
    let refilled = wait_for_two().await;
    // Turning the pool off removes every pooled directory.
    cgroup_pool::set_size(0);
    assert!(cgroup_pool::ready(SandboxProfile::Restricted, &limits).is_empty());
    drop((first, second));
    all_removed(&[refilled, pooled].concat());
}

#[tokio::test]
async fn a_pooled_run_keeps_a_dev_server_after_success_and_loses_a_daemon_at_its_timeout() {
    if !root() {
        return;
    }
    let _serial = SERIAL.lock().await;
    if cgroup::layout(None).parents.is_empty() {
        return;
    }
    let limits = Limits {
        pids_max: 78,
        ..Limits::default()
    };
    let l = Layout::new();
    let spec = l.spec(limits);
    cgroup_pool::set_size(2);
    // Warm the pool: the runs below take pooled cgroups.
    let mut warm = spawn(&spec, &Program::Exec(vec!["true".into()])).unwrap();
    warm.wait(Duration::from_secs(20), Duration::ZERO).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cgroup_pool::ready(SandboxProfile::Restricted, &limits).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool was not refilled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pooled = cgroup_pool::ready(SandboxProfile::Restricted, &limits);
    let pid_file = l.workspace.join("server.pid");
    let server = format!(
        "sleep 30 >/dev/null 2>&1 & echo $! > '{}'",
        pid_file.display()
    );
    let mut ok = spawn(&spec, &Program::Shell(server)).unwrap();
    let report = ok.wait(Duration::from_secs(20), Duration::ZERO).await;
    assert!(report.success(), "{report:?}");
    assert!(pooled.iter().any(|n| Some(n.as_str()) == ok.cgroup_name()));
    let server_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        is_restricted_pid(server_pid),
        "the dev server left its cgroup"
    );
    // A daemon that outlives its command's timeout dies with the cgroup.
    let daemon = "(setsid sleep 30 >/dev/null 2>&1 &); sleep 30";
    let mut late = spawn(&spec, &Program::Shell(daemon.into())).unwrap();
    let report = late
        .wait(Duration::from_millis(300), Duration::from_millis(50))
        .await;
    assert!(report.timed_out);
    assert!(!late.has_live_processes(), "something survived the timeout");
    // The dev server is still running; killing its run ends it.
    assert!(is_restricted_pid(server_pid));
    ok.kill_all();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ok.has_live_processes() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dev server did not die"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let names: Vec<String> = [&warm, &ok, &late]
        .iter()
        .filter_map(|c| c.cgroup_name().map(str::to_owned))
        .chain(cgroup_pool::ready(SandboxProfile::Restricted, &limits))
        .collect();
    drop((warm, ok, late));
    drop(l); // pool off: queued removals done, pooled cgroups removed
    all_removed(&names);
}
