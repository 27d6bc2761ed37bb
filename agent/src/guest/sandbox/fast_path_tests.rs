//! The fast spawn path (root only): the cached Landlock ruleset is used again only while it
//! still describes the file system, so a workspace replaced between two commands is writable in
//! the second; the `CLONE_VM` child finds programs like execvp and starts them with std's signal
//! state. (The cgroup pool, process-wide once on, has its own test binary:
//! `agent/tests/sandbox_pool.rs`.)

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

use super::root_gate::root;

/// Sets a directory's modification time a minute back, so its stamp is trusted.
fn backdate(path: &Path) {
    let t = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// A state directory and a workspace in two separate temporary directories (so replacing the
/// workspace does not touch a directory the ruleset lists).
struct Layout {
    _state_tmp: tempfile::TempDir,
    _ws_tmp: tempfile::TempDir,
    state: PathBuf,
    workspace: PathBuf,
}

fn layout() -> Layout {
    let state_tmp = tempfile::tempdir().unwrap();
    let ws_tmp = tempfile::tempdir().unwrap();
    for d in [state_tmp.path(), ws_tmp.path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state = state_tmp.path().join("state");
    let workspace = ws_tmp.path().join("ws");
    std::fs::create_dir(&state).unwrap();
    make_workspace(&workspace);
    backdate(state_tmp.path());
    Layout {
        _state_tmp: state_tmp,
        _ws_tmp: ws_tmp,
        state,
        workspace,
    }
}

fn make_workspace(path: &Path) {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(
        path,
        Some(super::tests::CREATOR),
        Some(super::tests::CREATOR),
    )
    .unwrap();
}

fn places<'a>(l: &'a Layout, home: &'a Path) -> landlock::Places<'a> {
    landlock::Places {
        state_dir: &l.state,
        workspace: &l.workspace,
        home,
        tmp: Path::new("/tmp"),
        var_tmp: Path::new("/var/tmp"),
    }
}

#[test]
fn a_cached_ruleset_is_reused_until_the_workspace_is_replaced() {
    if !root() || child::landlock_abi().is_err() {
        return;
    }
    let l = layout();
    let home = Path::new("/nonexistent");
    // The listed directories (`/`, `/tmp`, ...) must have been quiet for a moment; other tests
    // create temporary directories all the time, so try for a while.
    let mut reused = false;
    for _ in 0..50 {
        let r = landlock_cache::prepare(SandboxProfile::Restricted, places(&l, home)).unwrap();
        assert!(r.fd.is_some());
        if r.reused {
            reused = true;
            break;
        }
        std::thread::sleep(landlock_cache::QUIET + Duration::from_millis(20));
    }
    assert!(reused, "the ruleset was never reused");
    std::fs::rename(&l.workspace, l.workspace.with_extension("old")).unwrap();
    make_workspace(&l.workspace);
    let r = landlock_cache::prepare(SandboxProfile::Restricted, places(&l, home)).unwrap();
    assert!(!r.reused, "a replaced workspace must rebuild the ruleset");
}

#[tokio::test]
async fn a_workspace_replaced_between_runs_is_writable_in_the_next() {
    if !root() {
        return;
    }
    let l = layout();
    let spec = SandboxSpec {
        profile: SandboxProfile::Restricted,
        user: ResolvedUser::lookup("nobody").unwrap(),
        env: Vec::new(),
        cwd: PathBuf::from("/"),
        workspace: l.workspace.clone(),
        state_dir: l.state.clone(),
        limits: Limits::default(),
        restricted: super::tests::test_world(),
    };
    let write = |n: &str| {
        let file = l.workspace.join("f");
        Program::Shell(format!("echo {n} > '{}'", file.display()))
    };
    for (round, n) in ["one", "two"].into_iter().enumerate() {
        if round == 1 {
            std::fs::rename(&l.workspace, l.workspace.with_extension("old")).unwrap();
            make_workspace(&l.workspace);
        }
        let mut child = spawn(&spec, &write(n)).unwrap();
        let report = child
            .wait(Duration::from_secs(20), Duration::from_millis(100))
            .await;
        assert!(report.success(), "round {round}: {report:?}");
        assert_eq!(
            std::fs::read_to_string(l.workspace.join("f")).unwrap(),
            format!("{n}\n")
        );
    }
}

/// Runs `program` restricted in a fresh layout; (exit report, stdout) or the spawn error.
async fn run(
    program: Program,
    prepare: impl FnOnce(&Path),
) -> Result<(ExitReport, String), SandboxError> {
    use tokio::io::AsyncReadExt as _;
    let l = layout();
    prepare(&l.workspace);
    let spec = SandboxSpec {
        profile: SandboxProfile::Restricted,
        user: ResolvedUser::lookup("nobody").unwrap(),
        env: Vec::new(),
        cwd: l.workspace.clone(),
        workspace: l.workspace.clone(),
        state_dir: l.state.clone(),
        limits: Limits::default(),
        restricted: super::tests::test_world(),
    };
    let mut child = spawn(&spec, &program)?;
    let mut out = String::new();
    child
        .take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let report = child
        .wait(Duration::from_secs(20), Duration::from_millis(100))
        .await;
    Ok((report, out))
}

#[tokio::test]
async fn programs_are_found_and_started_like_execvp() {
    if !root() {
        return;
    }
    // Searched in the sandbox's PATH.
    let (report, out) = run(Program::Exec(vec!["echo".into(), "found".into()]), |_| {})
        .await
        .unwrap();
    assert!(report.success());
    assert_eq!(out, "found\n");
    // Not found: the spawn fails with ENOENT, nothing runs.
    let err = run(Program::Exec(vec!["no-such-program-x".into()]), |_| {})
        .await
        .unwrap_err();
    match err {
        SandboxError::Spawn { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other}"),
    }
    // A script without `#!` runs through /bin/sh (ENOEXEC), with its arguments.
    let script = |ws: &Path| {
        let p = ws.join("script");
        std::fs::write(&p, "echo \"script $1\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let (report, out) = run(Program::Exec(vec!["./script".into(), "arg".into()]), script)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    assert_eq!(out, "script arg\n");
    // Not executable: EACCES.
    let plain = |ws: &Path| std::fs::write(ws.join("plain"), "true\n").unwrap();
    let err = run(Program::Exec(vec!["./plain".into()]), plain)
        .await
        .unwrap_err();
    match err {
        SandboxError::Spawn { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn commands_start_with_no_blocked_signals_and_default_sigpipe() {
    if !root() {
        return;
    }
    // The agent (like every Rust program) ignores SIGPIPE, and the spawn blocks every signal
    // around the clone; neither may reach the command.
    let (report, out) = run(
        Program::Shell("grep -E '^Sig(Blk|Ign)' /proc/self/status".into()),
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.success(), "{report:?}");
    let field = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0, "{out}");
    assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
}
