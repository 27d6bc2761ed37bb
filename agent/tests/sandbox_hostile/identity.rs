//! Containment by identity (issue 13): every attack here worked while restricted runs ran as
//! the creator's own uid in the creator's IPC, tmp and tty world. Each test first shows the
//! attack working for the creator (the control: the same probe, unsandboxed, as the creator),
//! then that a restricted run cannot do it.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use codespace_agent::guest::sandbox::{Limits, Program, SandboxProfile};

use super::fixture::{fixture, root, small_limits, Fixture};

const RESTRICTED: SandboxProfile = SandboxProfile::Restricted;
const TRUSTED: SandboxProfile = SandboxProfile::Trusted;

/// A process of the creator's, killed (by PID) and reaped on drop.
struct CreatorProcess(Child);

impl Drop for CreatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chown_to(path: &Path, fx: &Fixture, mode: u32) {
    std::os::unix::fs::chown(path, Some(fx.user.user.uid), Some(fx.user.user.gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Starts the probe's tmux-like server as the creator on `socket`, telling clients `secret`.
fn serve_unix(fx: &Fixture, socket: &Path, secret: &str) -> CreatorProcess {
    listening(
        Command::new(&fx.probe)
            .arg("serve-unix")
            .arg(socket)
            .arg(secret)
            .uid(fx.user.user.uid)
            .gid(fx.user.user.gid),
    )
}

/// Starts a probe server and waits for its "listening" line.
fn listening(command: &mut Command) -> CreatorProcess {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    CreatorProcess(child)
}

#[tokio::test]
async fn the_creators_same_uid_sockets_are_out_of_reach() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let uid = fx.user.user.uid;
    // tmux's default socket, ssh-agent's socket, and a socket under a 0700 runtime directory
    // outside /tmp (XDG_RUNTIME_DIR-like).
    let tmux_dir = Path::new("/tmp").join(format!("tmux-{uid}"));
    let agent_dir = Path::new("/tmp").join(format!("ssh-hostile{uid}"));
    let runtime_dir = fx.scratch.join("run-user");
    let mut servers = Vec::new();
    let mut sockets = Vec::new();
    for dir in [&tmux_dir, &agent_dir, &runtime_dir] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir(dir).unwrap();
        chown_to(dir, &fx, 0o700);
        let socket = dir.join("default");
        servers.push(serve_unix(&fx, &socket, "the-creators-secret"));
        sockets.push(socket.display().to_string());
    }
    for socket in &sockets {
        // Control: what a hostile repository got when it ran as the creator.
        assert_eq!(
            fx.unsandboxed(&["connect-unix", socket]),
            "ok the-creators-secret"
        );
        let (out, _) = fx.probe(RESTRICTED, &["connect-unix", socket]).await;
        assert!(
            out == "ENOENT" || out == "EACCES",
            "{socket}: a restricted run got {out:?}"
        );
        // The creator's own trusted runs keep their sockets (tmux, ssh-agent work there).
        assert_eq!(
            fx.probe(TRUSTED, &["connect-unix", socket]).await.0,
            "ok the-creators-secret"
        );
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&tmux_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}

#[tokio::test]
async fn the_creators_sysv_shared_memory_is_out_of_reach() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let key = (0x5EED_0000 | (std::process::id() & 0xFFFF)).to_string();
    assert!(fx
        .unsandboxed(&["shm-create", &key, "shm-secret"])
        .starts_with("ok "));
    // Control: another process of the creator's attaches the 0600 segment.
    assert_eq!(fx.unsandboxed(&["shm-attach", &key]), "ok shm-secret");
    let (out, _) = fx.probe(RESTRICTED, &["shm-attach", &key]).await;
    assert_eq!(out, "ENOENT", "a new IPC namespace has no such key");
    let _ = Command::new("ipcrm").args(["-M", &key]).status();
}

#[tokio::test]
async fn the_creators_terminal_is_out_of_reach() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    // A pty of the creator's login, as sshd or the editor's terminal sets it up (owner the
    // user, group tty, 0620).
    let master =
        rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let slave = rustix::pty::ptsname(&master, Vec::new())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let tty_gid = std::fs::metadata(&slave).unwrap().gid();
    std::os::unix::fs::chown(&slave, Some(fx.user.user.uid), Some(tty_gid)).unwrap();
    std::fs::set_permissions(&slave, std::fs::Permissions::from_mode(0o620)).unwrap();
    assert_eq!(fx.unsandboxed(&["open-ro", &slave]), "ok");
    assert_eq!(fx.probe(RESTRICTED, &["open-ro", &slave]).await.0, "EACCES");
    drop(master);
}

#[tokio::test]
async fn git_config_hooks_and_info_are_read_only_while_objects_stay_writable() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let git = fx.workspace.join(".git");
    for dir in ["", "hooks", "info", "objects", "refs"] {
        std::fs::create_dir_all(git.join(dir)).unwrap();
        chown_to(&git.join(dir), &fx, 0o755);
    }
    std::fs::write(git.join("config"), "[core]\n\tbare = false\n").unwrap();
    chown_to(&git.join("config"), &fx, 0o644);
    let planted = [
        git.join("config"),
        git.join("hooks/post-checkout"),
        git.join("info/attributes"),
    ];
    for path in &planted {
        let path = path.display().to_string();
        assert_eq!(
            fx.probe(RESTRICTED, &["write", &path]).await.0,
            "EROFS",
            "{path}"
        );
    }
    // A planted `core.fsmonitor` through git itself fails too; fetching objects does not.
    let (_, err, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(
                "echo '[core] fsmonitor = touch /tmp/pwned' >> .git/config; \
                 mkdir -p .git/objects/ab && echo blob > .git/objects/ab/cd && \
                 echo ref > .git/refs/fetched"
                    .into(),
            ),
            Duration::from_secs(10),
        )
        .await;
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(report.success(), "{err}");
    assert!(!std::fs::read_to_string(git.join("config"))
        .unwrap()
        .contains("fsmonitor"));
    assert!(git.join("objects/ab/cd").exists() && git.join("refs/fetched").exists());
    // Control: as the creator (what restricted runs were until now), a repository's code
    // plants them all; and the trusted creator keeps full control of its repository.
    for path in &planted {
        let path = path.display().to_string();
        assert_eq!(fx.unsandboxed(&["write", &path]), "ok", "{path}");
    }
    let config = git.join("config").display().to_string();
    assert_eq!(fx.probe(TRUSTED, &["write", &config]).await.0, "ok");
}

#[tokio::test]
async fn the_creators_startup_files_cannot_be_planted() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    for file in [".bashrc", ".profile", ".gitconfig"] {
        let path = fx.home.join(file).display().to_string();
        assert_eq!(fx.unsandboxed(&["write", &path]), "ok", "control {file}");
        assert_eq!(
            fx.probe(RESTRICTED, &["write", &path]).await.0,
            "EACCES",
            "{file}"
        );
    }
    let local_bin = fx.home.join(".local/bin");
    std::fs::create_dir_all(&local_bin).unwrap();
    chown_to(&fx.home.join(".local"), &fx, 0o755);
    chown_to(&local_bin, &fx, 0o755);
    let ls = local_bin.join("ls").display().to_string();
    assert_eq!(fx.probe(RESTRICTED, &["write", &ls]).await.0, "EACCES");
    // Its own home is where caches go (npm, pip).
    let (_, err, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell("mkdir -p ~/.npm/_cacache && echo x > ~/.npm/_cacache/y".into()),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success(), "{err}");
    assert!(fx.restricted.user.home.join(".npm/_cacache/y").exists());
}

#[tokio::test]
async fn the_workspace_stays_shared_between_the_creator_and_the_restricted_run() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let mine = fx.workspace.join("creators.txt");
    std::fs::write(&mine, "v1\n").unwrap();
    chown_to(&mine, &fx, 0o644);
    let (_, err, report, child) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(
                "echo v2 >> creators.txt && mkdir -p build/out && echo bin > build/out/a.o && \
                 id -u > whoami"
                    .into(),
            ),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success(), "{err}");
    let world = serde_json::to_value(child.applied()).unwrap()["world"].clone();
    assert_eq!(world["workspace"]["mode"], "idmapped", "{world}");
    // It ran as the restricted principal...
    assert_eq!(
        std::fs::read_to_string(fx.workspace.join("whoami"))
            .unwrap()
            .trim(),
        fx.restricted.user.uid.to_string()
    );
    // ...changed the creator's file, and what it made is the creator's on disk.
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "v1\nv2\n");
    for made in ["build", "build/out", "build/out/a.o", "whoami"] {
        let m = std::fs::metadata(fx.workspace.join(made)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (fx.user.user.uid, fx.user.user.gid),
            "{made}"
        );
    }
    // The creator changes and deletes it afterwards.
    let out = Command::new("sh")
        .args(["-c", "echo v3 >> build/out/a.o && rm -r build whoami"])
        .current_dir(&fx.workspace)
        .uid(fx.user.user.uid)
        .gid(fx.user.user.gid)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // A set-uid file made through the view would be the creator's: the view is nosuid.
    let (_, _, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell("cp /usr/bin/id ./id-suid && chmod u+s ./id-suid".into()),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.code.is_some());
    let suid = fx.workspace.join("id-suid");
    if let Ok(m) = std::fs::metadata(&suid) {
        assert_eq!(m.uid(), fx.user.user.uid);
        let (out, _, _, _) = fx
            .run(
                RESTRICTED,
                small_limits(),
                Program::Exec(vec![suid.display().to_string(), "-u".into()]),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(out.trim(), fx.restricted.user.uid.to_string());
    }
}

#[tokio::test]
async fn restricted_runs_get_few_descriptors_whatever_the_limits_say() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    let limits = Limits {
        nofile: 65_536,
        ..small_limits()
    };
    for (profile, most) in [(RESTRICTED, 4096u64), (TRUSTED, 65_536)] {
        let (out, _, _, _) = fx
            .run(
                profile,
                limits,
                Program::Exec(fx.probe_argv(&["nofile"])),
                Duration::from_secs(10),
            )
            .await;
        let soft: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
        assert!(soft <= most, "{profile:?}: {out}");
        if profile == RESTRICTED {
            assert_eq!(soft, 4096, "{out}");
        }
    }
}

#[tokio::test]
async fn loopback_services_of_other_principals_are_unreachable() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    // The creator's (or any other principal's) service on the VM's loopback.
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port().to_string();
    assert_eq!(fx.unsandboxed(&["connect-tcp", &port]), "ok");
    assert_eq!(
        fx.probe(RESTRICTED, &["connect-tcp", &port]).await.0,
        "ECONNREFUSED",
        "a restricted run reached a loopback service of another principal"
    );
    // Trusted runs are the creator: they reach it.
    assert_eq!(fx.probe(TRUSTED, &["connect-tcp", &port]).await.0, "ok");
    // Its own loopback servers work (a test suite's server and client).
    let (out, report) = fx.probe(RESTRICTED, &["serve-tcp"]).await;
    assert_eq!(out, "ok", "{report:?}");
}

#[tokio::test]
async fn owner_only_ports_cannot_be_taken_over() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    // The SSH port, unless this machine runs something there: then any free port stands in.
    let port = match std::net::TcpListener::bind("127.0.0.1:2222") {
        Ok(_) => 2222,
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    };
    // A restricted dev server binds the owner-only port before sshd does...
    let (_, err, report, child) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(format!(
                "({} serve-tcp-port {port} >/dev/null 2>&1 &); sleep 0.3",
                fx.probe.display()
            )),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success(), "{err}");
    // ...in its own network: the VM's port is still free for the owner's sshd.
    let sshd = std::net::TcpListener::bind(("127.0.0.1", port));
    assert!(sshd.is_ok(), "port {port} was taken: {sshd:?}");
    let world = serde_json::to_value(child.applied()).unwrap()["world"].clone();
    assert!(world["network"]["inode"].as_u64().is_some(), "{world}");
    child.kill_all();
}

/// A test "internet": a network namespace of the test's own with a host at 203.0.113.1
/// (TEST-NET-3) and one at 10.254.0.1 (an internal range), each answering "hello" on port 8080,
/// routed from the agent's namespace through a veth pair. Removed on drop.
struct Internet {
    name: String,
    servers: Vec<CreatorProcess>,
}

impl Internet {
    fn new(fx: &Fixture) -> Self {
        let name = format!("csinet{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", "csinet-h"])
            .output();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", "csinet-h", "type", "veth", "peer", "name", "csinet-n", "netns", &name,
        ]);
        ip(&["addr", "add", "203.0.113.254/24", "dev", "csinet-h"]);
        ip(&["link", "set", "csinet-h", "up"]);
        ip(&["route", "add", "10.254.0.0/24", "dev", "csinet-h"]);
        for args in [
            vec!["addr", "add", "203.0.113.1/24", "dev", "csinet-n"],
            vec!["addr", "add", "10.254.0.1/24", "dev", "csinet-n"],
            vec!["link", "set", "csinet-n", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "dev", "csinet-n"],
        ] {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend(args);
            ip(&all);
        }
        let mut servers = Vec::new();
        for addr in ["203.0.113.1", "10.254.0.1"] {
            servers.push(listening(
                Command::new("ip")
                    .args(["netns", "exec", &name])
                    .arg(&fx.probe)
                    .args(["serve-ip", addr, "8080", "hello"]),
            ));
        }
        Self { name, servers }
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = Command::new("ip")
            .args(["link", "del", "csinet-h"])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[tokio::test]
async fn restricted_runs_reach_the_internet_but_not_the_vm_nor_internal_ranges() {
    if !root() {
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft (package nftables) is needed for the restricted network's NAT");
    }
    let fx = fixture().await;
    let internet = Internet::new(&fx);
    // Control: from the VM itself both answer.
    assert_eq!(
        fx.unsandboxed(&["connect-ip", "203.0.113.1", "8080"]),
        "ok hello"
    );
    assert_eq!(
        fx.unsandboxed(&["connect-ip", "10.254.0.1", "8080"]),
        "ok hello"
    );
    let (out, report) = fx
        .probe(RESTRICTED, &["connect-ip", "203.0.113.1", "8080"])
        .await;
    assert_eq!(out, "ok hello", "the internet through NAT: {report:?}");
    assert_eq!(
        fx.probe(RESTRICTED, &["connect-ip", "10.254.0.1", "8080"])
            .await
            .0,
        "ETIMEDOUT",
        "an internal range"
    );
    // The VM itself, through the gateway address: a service of another principal listening on
    // every interface.
    let service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = service.local_addr().unwrap().port().to_string();
    assert_eq!(
        fx.probe(RESTRICTED, &["connect-ip", "169.254.117.1", &port])
            .await
            .0,
        "ETIMEDOUT",
        "the VM's own services through the veth"
    );
    drop(internet);
}

/// CPU seconds `pid` has used (utime + stime of `/proc/PID/stat`), if it still runs (a zombie
/// waiting for its reaper does not).
fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(") ").next()?.split(' ').collect();
    if matches!(fields.first(), Some(&("Z" | "X"))) {
        return None;
    }
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[tokio::test]
async fn leftovers_share_one_cpu_and_die_when_the_trust_changes() {
    if !root() {
        return;
    }
    let fx = fixture().await;
    // A successful run that leaves two busy loops behind (a miner that looks like a dev server).
    let (_, err, report, child) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell(
                "(sh -c 'while :; do :; done' >/dev/null 2>&1 &); \
                 (sh -c 'while :; do :; done' >/dev/null 2>&1 &); sleep 0.2"
                    .into(),
            ),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success(), "{err}");
    let group = serde_json::to_value(child.applied()).unwrap()["restricted_group"].clone();
    let v2 = child
        .applied()
        .cgroup_paths
        .first()
        .cloned()
        .expect("a cgroup");
    let loops: Vec<i32> = std::fs::read_to_string(v2.join("cgroup.procs"))
        .unwrap()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(loops.len(), 2, "{loops:?}");
    if group["cpu"] == true {
        let before: f64 = loops.iter().filter_map(|p| cpu_seconds(*p)).sum();
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used: f64 = loops.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>() - before;
        let share = used / started.elapsed().as_secs_f64();
        // Two busy loops would take both CPUs of this machine; together they get one.
        assert!(share <= 1.2, "the leftovers used {share:.2} CPUs");
        eprintln!("two leftover busy loops used {share:.2} CPUs together");
    } else {
        eprintln!("no CPU controller here: {group}");
    }
    // A change of trust (or the host's request) kills everything restricted left behind.
    let killed = fx.sandbox.kill_restricted();
    assert!(killed >= 2, "{killed}");
    for pid in loops {
        assert!(cpu_seconds(pid).is_none(), "{pid} survived");
    }
    // The next restricted run starts and finishes normally after the kill (a cgroup made
    // before it must not take the new run down with it).
    let (_, err, report, _) = fx
        .run(
            RESTRICTED,
            small_limits(),
            Program::Shell("echo alive".into()),
            Duration::from_secs(10),
        )
        .await;
    assert!(report.success(), "{report:?} {err}");
}
