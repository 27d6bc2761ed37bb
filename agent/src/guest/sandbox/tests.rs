//! The spawner's semantics on the real kernel (root only: users, cgroups, Landlock): output,
//! environment, exit and timeout reports, background processes after success and failure, the
//! restricted cgroup mark. The hostile-repository suite is `agent/tests/sandbox_hostile.rs`.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::*;

use super::root_gate::root;

/// Starts `program` in a sandbox with the default settings.
fn spawn(spec: &SandboxSpec, program: &Program) -> Result<SandboxedChild, SandboxError> {
    Sandbox::default().spawn(spec, program)
}

/// The uid owning test workspaces: the creator, never the run user.
pub(super) const CREATOR: u32 = 64_999;

/// The restricted world of the unit tests: one directory per machine, reused by every run.
pub(super) fn test_world() -> super::world::WorldConfig {
    super::world::WorldConfig {
        root: std::path::PathBuf::from("/tmp/codespace-agent-unit-tests/restricted"),
        // No NAT to the outside from unit tests (the hostile suite tests it and cleans up).
        outbound: false,
        ..Default::default()
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    workspace: std::path::PathBuf,
    state: std::path::PathBuf,
}

fn dirs() -> Dirs {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    // The run user must be able to reach its workspace through the temporary directory.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let workspace = tmp.path().join("ws");
    let state = tmp.path().join("state");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::create_dir(&state).unwrap();
    // The creator's workspace (a uid of its own): trusted runs (as nobody here) write it through
    // its mode, restricted ones (nobody too) through their idmapped view.
    std::os::unix::fs::chown(&workspace, Some(CREATOR), Some(CREATOR)).unwrap();
    std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o777)).unwrap();
    Dirs {
        _tmp: tmp,
        workspace,
        state,
    }
}

fn spec(profile: SandboxProfile, d: &Dirs) -> SandboxSpec {
    SandboxSpec {
        profile,
        user: ResolvedUser::lookup("nobody").unwrap(),
        env: vec![("GREETING".into(), "hi there".into())],
        cwd: d.workspace.clone(),
        workspace: d.workspace.clone(),
        state_dir: d.state.clone(),
        limits: Limits {
            pids_max: 64,
            memory_max_bytes: 256 << 20,
            ..Limits::default()
        },
        restricted: test_world(),
    }
}

async fn output(child: &mut SandboxedChild) -> (String, String, ExitReport) {
    let mut out = child.take_stdout().unwrap();
    let mut err = child.take_stderr().unwrap();
    let (mut o, mut e) = (String::new(), String::new());
    let (r1, r2) = tokio::join!(out.read_to_string(&mut o), err.read_to_string(&mut e));
    r1.unwrap();
    r2.unwrap();
    let report = child
        .wait(Duration::from_secs(20), Duration::from_millis(100))
        .await;
    (o, e, report)
}

fn alive(pid: u32) -> bool {
    // A zombie waits for init to reap it; it is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
        .unwrap_or(false)
}

/// Compile-time: the runner moves handles between tasks.
#[allow(dead_code)]
fn handles_move_between_tasks() {
    fn send<T: Send + Sync>() {}
    send::<SandboxedChild>();
    send::<SandboxSpec>();
    send::<SandboxError>();
}

/// A descriptor some thread of the agent opened without `O_CLOEXEC` (a library's `open`, a
/// socket made without the flag) never reaches repository code: the child marks every
/// inherited descriptor close-on-exec before it executes anything.
#[tokio::test]
async fn a_descriptor_opened_without_cloexec_does_not_reach_the_command() {
    if !root() {
        return;
    }
    use rustix::fs::{Mode, OFlags};
    // rustix adds no flag of its own: this one is inherited by every plain fork and exec.
    let leaked = rustix::fs::open("/etc/passwd", OFlags::RDONLY, Mode::empty()).unwrap();
    let flags = rustix::io::fcntl_getfd(&leaked).unwrap();
    assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC));
    for profile in [SandboxProfile::Trusted, SandboxProfile::Restricted] {
        let d = dirs();
        // The shell's own descriptors (`$$` is the sandboxed process itself).
        let mut child = spawn(
            &spec(profile, &d),
            &Program::Shell("ls -l /proc/$$/fd".into()),
        )
        .unwrap();
        let (out, err, report) = output(&mut child).await;
        assert!(report.success(), "{profile:?}: {err}");
        assert!(out.contains("pipe:"), "{profile:?}: no listing: {out}");
        assert!(!out.contains("/etc/passwd"), "{profile:?}: leaked: {out}");
    }
    drop(leaked);
}

#[tokio::test]
async fn runs_as_the_user_with_exactly_the_built_environment() {
    if !root() {
        return;
    }
    for profile in [SandboxProfile::Trusted, SandboxProfile::Restricted] {
        let d = dirs();
        let mut child = spawn(&spec(profile, &d), &Program::Exec(vec!["env".into()])).unwrap();
        let (out, err, report) = output(&mut child).await;
        assert_eq!(report.code, Some(0), "{profile:?}: {err}");
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "GREETING=hi there",
                "HOME=/nonexistent",
                "LANG=C.UTF-8",
                &format!("PATH={}", crate::guest::lifecycle::settings::DEFAULT_PATH),
                "SHELL=/usr/sbin/nologin",
                "USER=nobody",
            ]
        );
        let mut child = spawn(
            &spec(profile, &d),
            &Program::Shell(
                "id -u; id -G; pwd; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status".into(),
            ),
        )
        .unwrap();
        let (out, err, report) = output(&mut child).await;
        assert!(report.success(), "{err}");
        let nnp = u8::from(profile == SandboxProfile::Restricted);
        assert_eq!(
            out,
            format!(
                "65534\n65534\n{}\nNoNewPrivs:\t{nnp}\nSeccomp:\t2\n",
                d.workspace.display()
            )
        );
        let applied = child.applied();
        // x86-64: the main program and the x32 one; restricted also the clone3 one.
        let programs = seccomp::compile().unwrap().for_profile(profile).len();
        assert_eq!(applied.seccomp_filters, programs);
        assert!(programs >= 1);
        assert!(!applied.cgroup_paths.is_empty(), "{applied:?}");
    }
}

#[tokio::test]
async fn background_processes_stay_after_success_and_die_after_failure() {
    if !root() {
        return;
    }
    let d = dirs();
    let s = spec(SandboxProfile::Restricted, &d);
    let mut child = spawn(
        &s,
        &Program::Shell("sleep 30 >/dev/null 2>&1 & echo $!".into()),
    )
    .unwrap();
    let (out, _, report) = output(&mut child).await;
    assert!(report.success());
    let daemon: u32 = out.trim().parse().unwrap();
    assert!(alive(daemon), "a dev server must survive a successful run");
    assert!(child.has_live_processes());
    assert!(is_restricted_pid(daemon));
    child.kill_all();
    for _ in 0..200 {
        if !child.has_live_processes() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!alive(daemon));

    let mut child = spawn(
        &s,
        &Program::Shell("sleep 30 >/dev/null 2>&1 & echo $!; exit 3".into()),
    )
    .unwrap();
    let (out, _, report) = output(&mut child).await;
    assert_eq!((report.code, report.timed_out), (Some(3), false));
    let leftover: u32 = out.trim().parse().unwrap();
    assert!(!alive(leftover), "a failed run leaves nothing behind");
    assert!(!child.has_live_processes());
}

#[tokio::test]
async fn a_timeout_terms_then_kills_the_group() {
    if !root() {
        return;
    }
    let d = dirs();
    let mut child = spawn(
        &spec(SandboxProfile::Trusted, &d),
        &Program::Shell("trap '' TERM; sleep 30".into()),
    )
    .unwrap();
    let report = child
        .wait(Duration::from_millis(300), Duration::from_millis(100))
        .await;
    assert!(report.timed_out);
    assert_eq!(report.signal, Some(libc::SIGKILL), "{report:?}");
    assert!(report.duration >= Duration::from_millis(400));
    assert!(!child.has_live_processes());
    // A second wait returns the same report.
    assert_eq!(child.wait(Duration::ZERO, Duration::ZERO).await, report);

    let mut child = spawn(
        &spec(SandboxProfile::Trusted, &d),
        &Program::Exec(vec!["sleep".into(), "30".into()]),
    )
    .unwrap();
    let report = child
        .wait(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    assert_eq!(
        (report.timed_out, report.signal),
        (true, Some(libc::SIGTERM))
    );
}

#[tokio::test]
async fn trusted_and_restricted_runs_are_told_apart_by_cgroup() {
    if !root() {
        return;
    }
    let d = dirs();
    for (profile, restricted) in [
        (SandboxProfile::Restricted, true),
        (SandboxProfile::Trusted, false),
    ] {
        let mut child = spawn(
            &spec(profile, &d),
            &Program::Exec(vec!["sleep".into(), "10".into()]),
        )
        .unwrap();
        assert_eq!(is_restricted_pid(child.pid()), restricted);
        let name = child.cgroup_name().unwrap().to_owned();
        assert_eq!(
            name.contains(crate::guest::broker::DEFAULT_RESTRICTED_CGROUP_MARKER),
            restricted
        );
        child.kill_all();
        let report = child.wait(Duration::from_secs(5), Duration::ZERO).await;
        assert_eq!(report.signal, Some(libc::SIGKILL));
        let dirs: Vec<_> = child.applied().cgroup_paths.clone();
        drop(child);
        for dir in dirs {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
    assert!(!is_restricted_pid(std::process::id()));
}

#[tokio::test]
async fn bad_specs_are_refused_before_anything_runs() {
    if !root() {
        return;
    }
    let d = dirs();
    let mut s = spec(SandboxProfile::Restricted, &d);
    s.user = ResolvedUser::lookup("root").unwrap();
    assert!(matches!(
        spawn(&s, &Program::Shell("true".into())),
        Err(SandboxError::RootNotAllowed { .. })
    ));
    let mut s = spec(SandboxProfile::Restricted, &d);
    s.env.push(("LD_PRELOAD".into(), "/tmp/x.so".into()));
    assert!(matches!(
        spawn(&s, &Program::Shell("true".into())),
        Err(SandboxError::DangerousEnvName { .. })
    ));
    let s = spec(SandboxProfile::Restricted, &d);
    assert!(matches!(
        spawn(&s, &Program::Exec(vec![])),
        Err(SandboxError::InvalidProgram(_))
    ));
    let err = spawn(&s, &Program::Exec(vec!["/no/such/program".into()])).unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err}");
    let mut s = spec(SandboxProfile::Restricted, &d);
    s.cwd = Path::new("/no/such/dir").to_owned();
    let err = spawn(&s, &Program::Shell("true".into())).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}

#[tokio::test]
async fn the_state_directory_stays_closed_inside_a_writable_root_and_through_symlinks() {
    if !root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    // Here the state directory sits in /tmp (writable in restricted), next to the workspace,
    // with a world-readable file in it (so only Landlock can refuse) and a symlink beside it.
    let d = dirs();
    std::fs::set_permissions(&d.state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = d.state.join("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let alias = d.workspace.parent().unwrap().join("alias");
    std::os::unix::fs::symlink(&d.state, &alias).unwrap();
    for profile in [SandboxProfile::Trusted, SandboxProfile::Restricted] {
        let script = format!(
            "cat {s}; cat {a}/secret; echo x > {a}/planted; echo ok > built-{p} && cat built-{p}",
            s = secret.display(),
            a = alias.display(),
            p = format!("{profile:?}")
        );
        let mut child = spawn(&spec(profile, &d), &Program::Shell(script)).unwrap();
        let (out, err, report) = output(&mut child).await;
        assert!(report.success(), "{profile:?}: {err}");
        assert_eq!(out, "ok\n", "{profile:?}");
        // Trusted: Landlock refuses. Restricted: the state directory lies under /tmp here,
        // and the restricted principal's /tmp is its own, where none of this exists.
        let refused = match profile {
            SandboxProfile::Trusted => err.matches("Permission denied").count(),
            _ => err.matches("No such file").count() + err.matches("nonexistent").count(),
        };
        assert_eq!(refused, 3, "{profile:?}: {err}");
        assert!(!d.state.join("planted").exists());
    }
}

#[tokio::test]
async fn a_system_home_does_not_become_writable() {
    if !root() {
        return;
    }
    let d = dirs();
    let mut s = spec(SandboxProfile::Restricted, &d);
    s.user.home = "/".into();
    let mut child = spawn(
        &s,
        &Program::Shell("echo x > /srv/codespace-sandbox-probe".into()),
    )
    .unwrap();
    let (_, err, report) = output(&mut child).await;
    assert_eq!(report.code, Some(2), "{err}");
    match &child.applied().landlock {
        LandlockApplied::Enforced { refused, .. } => assert_eq!(refused, &[PathBuf::from("/")]),
        other => panic!("landlock is expected on the test machines: {other:?}"),
    }
    assert!(!Path::new("/srv/codespace-sandbox-probe").exists());
}

/// The kill fallbacks for kernels without `cgroup.kill`: the v1 freezer, and the kill loop.
#[test]
fn freezer_and_kill_loop_fallbacks_kill_a_forking_tree() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::cgroup::{detect, Kind, Layout, Runs};
    if !root() {
        return;
    }
    let all = detect(None);
    let pick = |kinds: &[Kind]| -> Vec<_> {
        all.parents
            .iter()
            .filter(|p| kinds.contains(&p.kind))
            .cloned()
            .collect()
    };
    for (kinds, method) in [
        (&[Kind::V1Pids, Kind::V1Freezer][..], "freezer"),
        (&[Kind::V1Pids][..], "kill-loop"),
    ] {
        let parents = pick(kinds);
        if parents.len() != kinds.len() {
            eprintln!("skipped {method}: no v1 {kinds:?} hierarchies on this machine");
            continue;
        }
        let only = Layout {
            mode: "v1",
            parents,
            note: None,
        };
        let mut run = Runs::new()
            .create(&only, SandboxProfile::Trusted, &Limits::default())
            .unwrap();
        // The shell joins the cgroup, then (on a line from us) forks a little tree.
        let mut sh = Command::new("/bin/sh")
            .args(["-c", "read go; sleep 60 & (sleep 60 &) ; sleep 60"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        for dir in run.dirs() {
            std::fs::write(dir.join("cgroup.procs"), sh.id().to_string()).unwrap();
        }
        sh.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while run.dirs().next().is_some_and(|d| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap()
                .lines()
                .count()
                < 4
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the tree did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(run.populated());
        assert_eq!(run.kill(), method);
        let status = sh.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while run.populated() {
            assert!(
                std::time::Instant::now() < deadline,
                "{method} left processes"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(run.remove_if_empty());
    }
}

/// The sandbox's state is its own: a run cgroup belongs to the sandbox that made it (another
/// sandbox of the same process never sweeps it, even once it is empty), and a handle dropped
/// while the run still has a process leaves its directories to its own sandbox's next sweep
/// after that process is gone.
#[test]
fn run_cgroups_belong_to_their_sandbox_and_leftovers_go_once_empty() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::cgroup::{detect, Kind, Runs};
    if !root() {
        return;
    }
    let layout = detect(None);
    if layout.parents.is_empty() {
        eprintln!("skipped: no cgroup hierarchy to make runs in");
        return;
    }
    // A shell in the run's directories, waiting for a line; `release` ends and reaps it.
    let held_in = |dirs: &[PathBuf]| {
        let sh = Command::new("/bin/sh")
            .args(["-c", "read go"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        for dir in dirs {
            std::fs::write(dir.join("cgroup.procs"), sh.id().to_string()).unwrap();
        }
        sh
    };
    let release = |mut sh: std::process::Child| {
        sh.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        sh.wait().unwrap();
    };
    let (mine, other) = (Runs::new(), Runs::new());
    let run = mine
        .create(&layout, SandboxProfile::Trusted, &Limits::default())
        .unwrap();
    let dirs: Vec<PathBuf> = run.dirs().map(Path::to_owned).collect();
    let all_exist = || dirs.iter().all(|d| d.exists());
    other.sweep(&layout);
    assert!(all_exist(), "another sandbox swept a live run");
    let sh = held_in(&dirs);
    drop(run);
    mine.sweep(&layout);
    assert!(all_exist(), "a populated run was removed");
    release(sh);
    // v2 reports the run empty a moment after its last process exited.
    let v2 = layout.parents.iter().any(|p| p.kind == Kind::V2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    other.sweep(&layout);
    assert!(
        all_exist(),
        "another sandbox swept an empty leftover of this one"
    );
    while dirs.iter().any(|d| d.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "leftover never removed (v2: {v2})"
        );
        mine.sweep(&layout);
        std::thread::sleep(Duration::from_millis(10));
    }
    // A sandbox that goes takes its empty leftovers with it (no later spawn sweeps them).
    let run = mine
        .create(&layout, SandboxProfile::Trusted, &Limits::default())
        .unwrap();
    let dirs: Vec<PathBuf> = run.dirs().map(Path::to_owned).collect();
    let sh = held_in(&dirs);
    drop(run);
    release(sh);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let populated = |d: &PathBuf| {
        std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
            || std::fs::read_to_string(d.join("cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
    };
    while dirs.iter().any(populated) {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never emptied"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        dirs.iter().all(|d| d.exists()),
        "removed before the sandbox went"
    );
    drop(mine);
    assert!(
        dirs.iter().all(|d| !d.exists()),
        "a dropped sandbox left its empty run cgroups: {dirs:?}"
    );
}

/// The restricted network namespace is a field of the sandbox that made it: another sandbox of
/// the same process has none, and hands out no socket into it.
#[test]
fn the_restricted_network_belongs_to_its_sandbox() {
    use crate::guest::privsep::proto::SocketKind;
    if !root() {
        return;
    }
    let (mine, other) = (Sandbox::default(), Sandbox::default());
    // A uid with no process, so nothing is adopted: a namespace of its own, no outbound.
    let root = tempfile::tempdir().unwrap();
    let net = mine.net.get_or_create(64_996, false, root.path()).unwrap();
    let got = mine.restricted_socket(SocketKind::SockDiag, None).unwrap();
    assert!(
        matches!(got, Some(netns::NetSocket::New(_, inode)) if inode == net.report.inode),
        "{got:?}"
    );
    assert!(other
        .restricted_socket(SocketKind::SockDiag, None)
        .unwrap()
        .is_none());
    // Dropping the sandbox drops the namespace with it (no process is in it).
    drop(mine);
}
