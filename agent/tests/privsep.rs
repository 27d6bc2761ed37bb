//! Privilege separation (issue 14), through the real agent started as root, as systemd or an
//! init script starts it:
//!
//! - the process that parses host frames (`csa-network`) holds none of the dangerous
//!   capabilities, has `no_new_privs` and a seccomp filter, and runs as a uid of its own;
//! - confined that way, a process cannot exec, fork, change its identity or open a socket of a
//!   family it does not use (`confine_probe.rs`: it needs a single-threaded process);
//! - a trusted repository's lifecycle command uses sudo (passwordless, as devcontainer base
//!   images grant it) and writes under `/usr/local` through it; a restricted one cannot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{json_out, stderr, stdout, Agent};

/// Capability numbers (linux/capability.h) the network side must not hold.
const DANGEROUS: &[(u32, &str)] = &[
    (1, "CAP_DAC_OVERRIDE"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
];

fn status_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn cap_mask(status: &str, name: &str) -> u64 {
    u64::from_str_radix(field(status, name), 16).unwrap()
}

/// The network side: the agent's child named `csa-network`.
fn network_pid(agent: &Agent) -> u32 {
    let parent = agent.child.as_ref().unwrap().id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
        for pid in children
            .split_whitespace()
            .map(|p| p.parse::<u32>().unwrap())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "csa-network" {
                return pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no csa-network child of {parent}: {children:?}\n{}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_network_side_holds_no_dangerous_privilege() {
    if !support::root::root() {
        return;
    }
    let agent = Agent::start("");
    // It answers, and says how it is split.
    let status = json_out(&agent.ctl(&["status"]));
    let pid = network_pid(&agent);
    assert_eq!(status["privsep"]["mode"], "forked", "{status}");
    assert_eq!(status["privsep"]["network_pid"], pid, "{status}");
    assert_eq!(status["privsep"]["no_new_privs"], true, "{status}");
    let st = status_of(pid);
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        let mask = cap_mask(&st, set);
        for (bit, name) in DANGEROUS {
            assert_eq!(mask & (1 << bit), 0, "{set} has {name}:\n{st}");
        }
    }
    assert_eq!(
        cap_mask(&st, "CapEff"),
        1 << 2,
        "only CAP_DAC_READ_SEARCH:\n{st}"
    );
    assert_eq!(field(&st, "NoNewPrivs"), "1", "{st}");
    assert_eq!(field(&st, "Seccomp"), "2", "{st}");
    let uids: Vec<&str> = field(&st, "Uid").split_whitespace().collect();
    assert_eq!(uids, ["64990"; 4], "{st}");
    assert_eq!(field(&st, "Groups"), "", "{st}");
    // The privileged side stays root and is what the unit (or init script) started.
    let parent = agent.child.as_ref().unwrap().id();
    assert_eq!(
        field(&status_of(parent), "Uid").split_whitespace().next(),
        Some("0")
    );
}

/// A user with passwordless sudo, deleted (with its sudoers file) on drop.
struct SudoUser {
    name: String,
    sudoers: PathBuf,
    home: tempfile::TempDir,
}

impl SudoUser {
    fn create() -> Self {
        let name = format!("csasudo{}", std::process::id() % 100_000);
        let home = tempfile::tempdir().unwrap();
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--shell",
                "/bin/sh",
                "--home-dir",
            ])
            .arg(home.path())
            .arg(&name)
            .status()
            .expect("useradd (package passwd) is needed");
        assert!(ok.success(), "useradd {name}");
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/codespace-agent-test-{name}"));
        std::fs::write(&sudoers, format!("{name} ALL=(ALL) NOPASSWD:ALL\n")).unwrap();
        std::os::unix::fs::chown(home.path(), Some(uid_of(&name)), None).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
        Self {
            name,
            sudoers,
            home,
        }
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("userdel").arg(&self.name).status();
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    stdout(&out).trim().parse().unwrap()
}

#[test]
fn trusted_runs_use_sudo_and_restricted_runs_cannot() {
    if !support::root::root() {
        return;
    }
    assert!(
        Command::new("sudo").arg("-V").output().is_ok(),
        "sudo is needed (.ci/run installs it)"
    );
    let user = SudoUser::create();
    let agent = Agent::start(&format!(r#""user": "{}""#, user.name));
    let ws = user.home.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let marker = PathBuf::from(format!("/usr/local/codespace-agent-test-{}", user.name));
    std::fs::write(
        ws.join(".devcontainer.json"),
        format!(
            r#"{{"postCreateCommand": "id -un; sudo -n true && echo SUDO-OK; sudo -n sh -c 'echo x > {m}' && echo WROTE-OK; sudo -n rm -f {m}; true"}}"#,
            m = marker.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&ws, Some(uid_of(&user.name)), None).unwrap();
    std::os::unix::fs::chown(
        ws.join(".devcontainer.json"),
        Some(uid_of(&user.name)),
        None,
    )
    .unwrap();
    let run = |access: &str| -> serde_json::Value {
        let out = agent.ctl(&[
            "lifecycle",
            "run",
            "--devcontainer",
            ".devcontainer.json",
            "--workspace",
            ws.to_str().unwrap(),
            "--phase",
            "create",
            "--repository",
            "octo/app",
            "--creator-access",
            access,
            "--json",
        ]);
        serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{e}: {} {}\n{}", stdout(&out), stderr(&out), agent.log()))
    };
    let log_of = |r: &serde_json::Value| {
        std::fs::read_to_string(r["log"].as_str().unwrap_or_else(|| panic!("{r}"))).unwrap()
    };
    let r = run("write");
    assert_eq!(r["profile"], "trusted", "{r}");
    let log = log_of(&r);
    assert!(log.contains(&user.name), "not the configured user: {log}");
    assert!(
        log.contains("SUDO-OK"),
        "sudo failed in a trusted run: {log}\n{r}"
    );
    assert!(
        log.contains("WROTE-OK"),
        "/usr/local not writable through sudo: {log}"
    );
    assert!(!marker.exists());

    let r = run("read");
    assert_eq!(r["profile"], "restricted", "{r}");
    let log = log_of(&r);
    assert!(
        !log.contains("SUDO-OK"),
        "sudo worked in a restricted run: {log}"
    );
    assert!(!log.contains("WROTE-OK"), "{log}");
    assert!(
        !marker.exists(),
        "a restricted run wrote {}",
        marker.display()
    );
    assert!(!Path::new(&marker).exists());
}

/// The two-unit install (`codespace-agent-privileged.service` + `codespace-agent.service`),
/// without systemd: the privileged side listens on its socket, the network side is started as
/// its own user and connects. A peer that is not the network user is closed unanswered; the
/// network side restarted gets the same control listener; the privileged side stopped removes
/// its socket.
#[test]
fn a_split_install_serves_through_the_privileged_socket_and_survives_a_network_restart() {
    use std::os::unix::process::CommandExt as _;
    if !support::root::root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    // The network side reads the config and the key as its own user here (the unit gives it
    // CAP_DAC_READ_SEARCH for a 0600 key; a test cannot hand out ambient capabilities).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::write(dir.path().join("key"), support::KEY).unwrap();
    std::os::unix::fs::chown(dir.path().join("key"), Some(64990), Some(64990)).unwrap();
    std::fs::write(
        dir.path().join("config.jsonc"),
        format!(
            r#"{{ {} "sandbox": {{"restricted_user": "nobody", "restricted_outbound": false,
                  "restricted_root": "{}"}}, "workspace_dir": "{}" }}"#,
            support::NETWORK_USER_CONFIG,
            dir.path().join("restricted").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let socket = dir.path().join("state/privileged.sock");
    let side = |sub: &str, log: &str| {
        let mut c = support::agent_command(dir.path(), sub, log);
        c.arg("--privileged-socket").arg(&socket);
        c
    };
    let mut privileged = side("privileged", "privileged.log").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "no privileged socket");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Root is not the network user: its connection is closed before anything is read.
    {
        use std::io::{Read as _, Write as _};
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let _ = s.write_all(&[0u8; 8]);
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "a root peer was answered");
    }
    // Another local user (the codespace's, a restricted run's) cannot even connect: the socket
    // is the network user's, mode 0600.
    let other = Command::new("python3")
        .args([
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); \
             s.sendall(b'\\0'*8); print('ANSWER', s.recv(1))",
        ])
        .arg(&socket)
        .uid(64999)
        .gid(64999)
        .output()
        .unwrap();
    assert!(!other.status.success(), "{}", stdout(&other));
    assert!(
        stderr(&other).contains("PermissionError"),
        "{}",
        stderr(&other)
    );
    // The network side is its unit's main process: it tells systemd it is ready itself, after
    // it confined itself (its filter refuses new Unix sockets).
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    std::os::unix::fs::chown(&notify_path, Some(64990), Some(64990)).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    for round in 0..2 {
        let network = side("run", &format!("network{round}.log"))
            .env("NOTIFY_SOCKET", &notify_path)
            .uid(64990)
            .gid(64990)
            .spawn()
            .unwrap();
        let mut buf = [0u8; 256];
        let n = notify
            .recv(&mut buf)
            .expect("no READY=1 from the network side");
        let said = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(said.contains("READY=1"), "{said}");
        let agent = Agent {
            dir: tempfile::TempDir::new_in(dir.path()).unwrap(),
            child: Some(network),
        };
        // The control socket is the privileged side's, in `dir`, not the helper's own dir.
        let ctl = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
                .arg("--connect")
                .arg(format!("unix:{}", dir.path().join("agent.sock").display()))
                .arg("--key-file")
                .arg(dir.path().join("key"))
                .arg("--connect-timeout")
                .arg("10")
                .args(args)
                .output()
                .unwrap()
        };
        let out = ctl(&["status"]);
        let log = || {
            std::fs::read_to_string(dir.path().join(format!("network{round}.log")))
                .unwrap_or_default()
        };
        assert!(out.status.success(), "{}\n{}", stderr(&out), log());
        let pid = agent.child.as_ref().unwrap().id();
        let st = status_of(pid);
        assert_eq!(field(&st, "NoNewPrivs"), "1", "{st}");
        assert_eq!(field(&st, "Seccomp"), "2", "{st}");
        assert_eq!(cap_mask(&st, "CapEff"), 0, "{st}");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "csa-network");
        drop(agent); // SIGKILL: the privileged side must take the next one
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(privileged.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = privileged.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the privileged socket was left behind");
}
