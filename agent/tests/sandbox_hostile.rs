//! The hostile-repository suite (issue 6): what a malicious lifecycle command would try, run
//! through the real spawner in the restricted profile, each attempt asserting *how* it was
//! refused or contained (EPERM from seccomp, EACCES from Landlock, SIGKILL from the OOM killer,
//! SIGSYS for the 32-bit ABI, a silent broker, a dead daemon).
//!
//! Setup per test (root only; everything is removed by Drop guards, also on failure): a test
//! user created with `useradd` and deleted after; a state directory under `/run` with the env
//! file written by the real vault (owned by the test user, as in production, so only the
//! sandbox stands between the user's lifecycle command and its own token); the real credential
//! broker listening in-process; a probe program (`sandbox_hostile/probe.c`) compiled with the
//! system C compiler. Controls run the same probe *without* the sandbox as the same user to show
//! the refusal comes from the sandbox, not from file permissions. Tests run one at a time (they
//! share the CPU with fork bombs and create users).
//!
//! Safety: the vsock probe only creates a socket (never connects), and only inside the sandbox.
//! Printing a secret is the lifecycle runner's redaction, tested there.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "sandbox_hostile/fixture.rs"]
mod fixture;
#[path = "sandbox_hostile/identity.rs"]
mod identity;

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use codespace_agent::guest::broker::Outcome;
use codespace_agent::guest::sandbox::{self, LandlockApplied, Limits, Program, SandboxProfile};
use codespace_agent::guest::vault::environment_path;
use fixture::{fixture, root, small_limits, TOKEN};

const BOTH: [SandboxProfile; 2] = [SandboxProfile::Restricted, SandboxProfile::Trusted];
const RESTRICTED: SandboxProfile = SandboxProfile::Restricted;
const TRUSTED: SandboxProfile = SandboxProfile::Trusted;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn the_state_directory_and_env_file_are_out_of_reach() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let env_file = environment_path(fx.state_dir()).display().to_string();
    let state = fx.state_dir().display().to_string();
    // Control: the user owns its env file, so without the sandbox it can read it.
    assert_eq!(fx.unsandboxed(&["read", &env_file]), "ok");
    for profile in BOTH {
        assert_eq!(
            fx.probe(profile, &["read", &env_file]).await.0,
            "EACCES",
            "{profile:?}"
        );
        assert_eq!(
            fx.probe(profile, &["list", &state]).await.0,
            "EACCES",
            "{profile:?}"
        );
        assert_eq!(
            fx.probe(profile, &["list", "/run"]).await.0,
            "EACCES",
            "{profile:?}"
        );
        assert_eq!(
            fx.probe(profile, &["write", &format!("{state}/planted")])
                .await
                .0,
            "EACCES"
        );
        let (out, err, report, _) = fx
            .run(
                profile,
                small_limits(),
                Program::Shell(format!("cat {env_file}; cat /proc/$PPID/environ; ls /run")),
                Duration::from_secs(10),
            )
            .await;
        assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
        assert!(err.contains("Permission denied"), "{err}");
        assert_ne!(report.code, Some(0));
    }
    // The rest of /run stays usable.
    assert_eq!(fx.probe(RESTRICTED, &["list", "/run/lock"]).await.0, "ok");
}

#[tokio::test]
async fn the_credential_broker_answers_nothing_to_a_restricted_run() {
    if !root() {
        return;
    }
    let mut fx = fixture().await;
    let ask = format!(
        "printf 'protocol=https\\nhost=github.com\\npath=octo/app.git\\n\\n' | {} git-credential --state-dir {} get",
        env!("CARGO_BIN_EXE_codespace-agent"),
        fx.state_dir().display()
    );
    let (out, _, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(ask.clone()),
            Duration::from_secs(20),
        )
        .await;
    assert!(!out.contains(TOKEN), "{out}");
    assert!(!out.contains("password"), "{out}");
    assert!(report.code.is_some());
    // The restricted principal does not even reach the socket: the state directory is covered
    // in its mount namespace (and it is another uid, which the broker refuses too).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fx.outcomes.recv())
            .await
            .is_err(),
        "the broker heard from a restricted run"
    );
    // Control: the creator in a trusted run is answered.
    let (out, _, report, _) = fx
        .run(
            SandboxProfile::Trusted,
            small_limits(),
            Program::Shell(ask),
            Duration::from_secs(20),
        )
        .await;
    assert!(report.success());
    assert!(out.contains(&format!("password={TOKEN}")), "{out}");
    let outcome = fx.outcomes.recv().await.unwrap();
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
}

#[tokio::test]
async fn vsock_sockets_cannot_be_created_directly_or_through_io_uring() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    for profile in BOTH {
        // Never connected: creating the socket is what must fail.
        assert_eq!(
            fx.probe(profile, &["vsock"]).await.0,
            "EPERM",
            "{profile:?}"
        );
        assert_eq!(
            fx.probe(profile, &["vsock-pair"]).await.0,
            "EPERM",
            "{profile:?}"
        );
        // io_uring would create it without socket(2): refused at setup.
        assert_eq!(
            fx.probe(profile, &["io_uring"]).await.0,
            "EPERM",
            "{profile:?}"
        );
    }
    // Control: io_uring itself works for this user outside the sandbox.
    assert_eq!(fx.unsandboxed(&["io_uring"]), "ok");
}

#[tokio::test]
async fn the_agent_cannot_be_traced_or_read() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let agent = std::process::id().to_string();
    for profile in BOTH {
        assert_eq!(fx.probe(profile, &["ptrace", &agent]).await.0, "EPERM");
        assert_eq!(fx.probe(profile, &["vm-read", &agent]).await.0, "EPERM");
        // Even its own child and its own memory: the syscalls are gone, not just checked.
        assert_eq!(fx.probe(profile, &["ptrace-child"]).await.0, "EPERM");
        assert_eq!(fx.probe(profile, &["vm-read"]).await.0, "EPERM");
    }
    assert_eq!(fx.unsandboxed(&["ptrace-child"]), "ok");
    assert_eq!(fx.unsandboxed(&["vm-read"]), "ok");
}

#[tokio::test]
async fn the_kernel_attack_surface_is_refused_and_the_32_bit_abi_kills() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    for call in [
        "bpf",
        "keyctl",
        "add_key",
        "userfaultfd",
        "perf_event_open",
        "mount",
        "umount2",
        "kexec_load",
        "init_module",
    ] {
        assert_eq!(
            fx.probe(RESTRICTED, &["syscall", call]).await.0,
            "EPERM",
            "{call}"
        );
    }
    if cfg!(target_arch = "x86_64") {
        let (out, report) = fx.probe(RESTRICTED, &["int80"]).await;
        assert_eq!(report.signal, Some(libc::SIGSYS), "{out} {report:?}");
        assert!(out.is_empty());
        assert!(fx.unsandboxed(&["int80"]).starts_with("int80 getpid "));
    }
}

#[tokio::test]
async fn restricted_runs_cannot_make_or_enter_user_namespaces() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    for call in ["unshare-user", "clone-user", "setns-any"] {
        assert_eq!(
            fx.probe(RESTRICTED, &["syscall", call]).await.0,
            "EPERM",
            "{call}"
        );
    }
    // clone3's flags are out of the filter's reach: ENOSYS, and the C library falls back.
    assert_eq!(
        fx.probe(RESTRICTED, &["syscall", "clone3"]).await.0,
        "ENOSYS"
    );
    assert_eq!(
        fx.probe(RESTRICTED, &["syscall", "posix_spawn"]).await.0,
        "ok"
    );
    // Controls: the same user outside the sandbox, and the trusted profile, keep them (where
    // the kernel allows unprivileged user namespaces at all).
    let userns_allowed = fx.unsandboxed(&["syscall", "unshare-user"]) == "ok";
    for call in ["unshare-user", "clone-user"] {
        let trusted = fx.probe(TRUSTED, &["syscall", call]).await.0;
        if userns_allowed {
            assert_eq!(trusted, "ok", "trusted {call}");
        }
    }
    assert_ne!(fx.probe(TRUSTED, &["syscall", "clone3"]).await.0, "ENOSYS");
}

#[tokio::test]
async fn privileges_cannot_be_raised_with_setuid_binaries() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let id = fx.scratch.join("id-setuid");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let id = id.display().to_string();
    // Control: the setuid bit works on this file system.
    let control = Command::new(&id)
        .arg("-u")
        .uid(fx.user.user.uid)
        .gid(fx.user.user.gid)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&control.stdout).trim(), "0");

    let uid = fx.restricted.user.uid.to_string();
    let (out, _, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Exec(vec![id.clone(), "-u".into()]),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success());
    assert_eq!(out.trim(), uid, "no_new_privs keeps the euid");
    assert_eq!(fx.probe(RESTRICTED, &["setuid0"]).await.0, "EPERM");
    let sudo = Path::new("/usr/bin/sudo");
    if sudo.exists() {
        let (out, _, report, _) = fx
            .run(
                RESTRICTED,
                small_limits(),
                Program::Shell("sudo -n id -u".into()),
                Duration::from_secs(10),
            )
            .await;
        assert!(!report.success() && out.trim() != "0", "{out}");
    }
    // The trusted profile keeps the user's abilities: sudo-like elevation works there.
    let (out, _, _, _) = fx
        .run(
            SandboxProfile::Trusted,
            small_limits(),
            Program::Exec(vec![id, "-u".into()]),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(out.trim(), "0");
}

#[tokio::test]
async fn a_fork_bomb_is_contained_by_pids_max_and_killed_at_the_timeout() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let limits = Limits {
        pids_max: 48,
        ..small_limits()
    };
    let (_, _, report, child) = fx
        .run(
            RESTRICTED,
            limits,
            Program::Shell("b(){ b | b & }; b; exec sleep 300".into()),
            Duration::from_secs(2),
        )
        .await;
    assert!(report.timed_out, "{report:?}");
    assert!(
        child.limit_events().pids_max_hits > 0,
        "{:?}",
        child.limit_events()
    );
    assert!(!child.has_live_processes(), "the whole tree is dead");
    eprintln!(
        "applied: {}",
        serde_json::to_string(child.applied()).unwrap()
    );
}

#[tokio::test]
async fn memory_past_the_limit_is_oom_killed() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let limits = Limits {
        memory_max_bytes: 64 << 20,
        ..small_limits()
    };
    let (out, _, report, child) = fx
        .run(
            RESTRICTED,
            limits,
            Program::Exec(fx.probe_argv(&["alloc", "512"])),
            Duration::from_secs(30),
        )
        .await;
    assert!(!out.contains("survived"));
    assert_eq!(
        (report.signal, report.timed_out),
        (Some(libc::SIGKILL), false)
    );
    assert!(
        child.limit_events().oom_kills >= 1,
        "{:?}",
        child.limit_events()
    );
}

#[tokio::test]
async fn a_double_forked_daemon_does_not_outlive_the_timeout() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let pid_file = fx.workspace.join("daemon.pid");
    let script =
        "(setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' >/dev/null 2>&1 &); exec sleep 300";
    let mut child = fx
        .sandbox
        .spawn(
            &fx.spec(RESTRICTED, small_limits()),
            &Program::Shell(script.into()),
        )
        .unwrap();
    let mut daemon = None;
    for _ in 0..500 {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            daemon = Some(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let daemon = daemon.expect("the daemon started");
    // It left the command's session and process group: a group kill cannot reach it.
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    assert_ne!(fields[2], child.pid().to_string(), "own process group");
    assert!(sandbox::is_restricted_pid(daemon));
    let report = child
        .wait(Duration::from_millis(300), Duration::from_millis(100))
        .await;
    assert!(report.timed_out);
    assert!(!alive(daemon), "the daemon died with the run");
    assert!(!child.has_live_processes());
}

#[tokio::test]
async fn writes_land_only_in_the_allowed_places() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let outside = fx.outside.join("x").display().to_string();
    // Control: the user may write its own directory outside the sandbox.
    assert_eq!(fx.unsandboxed(&["write", &outside]), "ok");
    for denied in [
        "/etc/codespace-probe".to_owned(),
        "/usr/codespace-probe".to_owned(),
        "/root/codespace-probe".to_owned(),
        outside.clone(),
    ] {
        assert_eq!(
            fx.probe(RESTRICTED, &["write", &denied]).await.0,
            "EACCES",
            "{denied}"
        );
    }
    // The creator's home is another user's now.
    assert_eq!(
        fx.probe(
            RESTRICTED,
            &["write", &fx.home.join("x").display().to_string()]
        )
        .await
        .0,
        "EACCES"
    );
    for allowed in [
        fx.workspace.join("x").display().to_string(),
        fx.restricted.user.home.join("x").display().to_string(),
        format!("/tmp/codespace-probe-{}", std::process::id()),
        format!("/var/tmp/codespace-probe-{}", std::process::id()),
        "/dev/null".to_owned(),
    ] {
        assert_eq!(
            fx.probe(RESTRICTED, &["write", &allowed]).await.0,
            "ok",
            "{allowed}"
        );
    }
    // Trusted keeps the user's normal abilities outside the state directory.
    assert_eq!(
        fx.probe(SandboxProfile::Trusted, &["write", &outside])
            .await
            .0,
        "ok"
    );
    let probe_tmp = format!("codespace-probe-{}", std::process::id());
    let (_, _, report, child) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(format!(
                "echo built > artifact && cat artifact >/dev/null && echo t > /tmp/{probe_tmp}"
            )),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success());
    assert!(fx.workspace.join("artifact").exists());
    // The private /tmp is the restricted principal's own directory, not the real /tmp.
    assert!(fx.restricted_root.join("tmp").join(&probe_tmp).exists());
    assert!(!Path::new("/tmp").join(&probe_tmp).exists());
    match &child.applied().landlock {
        LandlockApplied::Enforced { kernel_abi, .. } => assert!(*kernel_abi >= 1),
        other => eprintln!("landlock not available here: {other:?}"),
    }
}

#[tokio::test]
async fn the_creators_other_processes_cannot_be_read() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    // The creator's shell (same uid, unsandboxed) has the token in its environment.
    let mut shell = Command::new("sleep")
        .arg("60")
        .env("GITHUB_TOKEN", TOKEN)
        .uid(fx.user.user.uid)
        .gid(fx.user.user.gid)
        .spawn()
        .unwrap();
    let pid = shell.id();
    let environ = format!("/proc/{pid}/environ");
    // Control: the same user can read it without the sandbox.
    assert_eq!(fx.unsandboxed(&["read", &environ]), "ok");
    for profile in BOTH {
        let (out, err, _, _) = fx
            .run(
                profile,
                small_limits(),
                Program::Shell(format!(
                    "cat {environ}; cat /proc/{pid}/cmdline >/dev/null && echo cmdline-ok"
                )),
                Duration::from_secs(10),
            )
            .await;
        assert!(
            !out.contains(TOKEN),
            "{profile:?}: token read from {environ}"
        );
        assert!(err.contains("Permission denied"), "{profile:?}: {err}");
        assert_eq!(fx.probe(profile, &["read", &environ]).await.0, "EACCES");
        assert_eq!(
            fx.probe(profile, &["ptrace", &pid.to_string()]).await.0,
            "EPERM"
        );
    }
    // Signals: the restricted profile is scoped (Landlock ABI 6), the trusted one is not.
    let signal = Program::Shell(format!("kill -0 {pid}"));
    let (_, err, report, child) = fx
        .run(
            RESTRICTED,
            small_limits(),
            signal.clone(),
            Duration::from_secs(10),
        )
        .await;
    if matches!(
        child.applied().landlock,
        LandlockApplied::Enforced { scoped: true, .. }
    ) {
        assert_ne!(report.code, Some(0));
        assert!(err.contains("Operation not permitted"), "{err}");
    }
    let (_, _, report, _) = fx
        .run(
            SandboxProfile::Trusted,
            small_limits(),
            signal,
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success());
    let _ = shell.kill();
    let _ = shell.wait();
}
