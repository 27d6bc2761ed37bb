//! What spawns reuse from earlier ones (root only): the cached Landlock ruleset is used again
//! only while it still describes the file system, so a workspace replaced between two commands
//! is writable in the second.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

const ROOT_MESSAGE: &str =
    "needs root (run .ci/run as root, or set CODESPACE_SKIP_ROOT_TESTS=1 to skip)";

fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CODESPACE_SKIP_ROOT_TESTS").is_some() {
        eprintln!("skipped: {ROOT_MESSAGE}");
        return false;
    }
    panic!("{ROOT_MESSAGE}");
}

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
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

fn places<'a>(l: &'a Layout, home: &'a Path) -> landlock::Places<'a> {
    landlock::Places {
        state_dir: &l.state,
        workspace: &l.workspace,
        home,
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
