//! End to end through the library, over a real Unix socket: the host seals secrets and delivers
//! a token, the vault lands them, `exec` sees them, and git's credential helper asks the broker.
//! Most call the library's functions; the flood tests (root: they connect as a second uid) run
//! the real `git-credential` helper binary while another uid holds hundreds of connections.

#![allow(clippy::unwrap_used)]
// The flood tests print what they measured, so a run shows the numbers and not only a verdict.
#![allow(clippy::print_stderr)]

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codespace_agent::credential_helper;
use codespace_agent::docker_credential;
use codespace_agent::exec;
use codespace_agent::guest::broker::admission::REFUSALS_REPORTED_PER_WINDOW;
use codespace_agent::guest::broker::{Broker, BrokerConfig, Clock, Outcome, Silence};
use codespace_agent::guest::registry::{AccessResult, RegistryAccess};
use codespace_agent::guest::vault::{
    Owner, RegistryPut, SessionEvent, TokenPut, Vault, VaultConfig,
};
use codespace_agent::seal::{seal, AgentKeyPair, TokenValue};
use codespace_policy::container_registry::RegistryRefusal;
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);
const EXPIRES: OffsetDateTime = datetime!(2026-11-26 03:00 UTC);

struct Setup {
    _dir: tempfile::TempDir,
    state: PathBuf,
    vault: Vault,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let vault = Vault::new(
        VaultConfig::new(&state, Owner::current()),
        AgentKeyPair::generate().unwrap(),
    )
    .unwrap();
    let scope = serde_json::from_str(
        r#"{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
    )
    .unwrap();
    vault
        .put_token(
            TokenPut {
                value: TokenValue::new("ghu_e2e_token".into()).unwrap(),
                expires_at: EXPIRES,
                scope,
                host: None,
            },
            NOW,
        )
        .unwrap();
    Setup {
        _dir: dir,
        state,
        vault,
    }
}

struct Running {
    outcomes: mpsc::Receiver<Outcome>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(setup: &Setup, config: BrokerConfig, clock: Clock) -> Running {
    start_with_room(setup, config, clock, 16)
}

/// [`start`] with room for `outcomes` unread outcomes.
fn start_with_room(setup: &Setup, config: BrokerConfig, clock: Clock, outcomes: usize) -> Running {
    let (tx, outcomes) = mpsc::channel(outcomes);
    let broker = Broker::bind(config, setup.vault.clone())
        .unwrap()
        .with_clock(clock)
        .with_outcomes(tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broker
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        outcomes,
        stop,
        task,
    }
}

async fn ask(state: &Path, request: &'static str) -> String {
    let state = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        credential_helper::run(&state, "get", request.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    })
    .await
    .unwrap()
}

fn own_uid() -> u32 {
    Owner::current().uid
}

const IN_SCOPE: &str = "protocol=https\nhost=github.com\npath=Octo/App.git\n\n";

#[tokio::test]
async fn answers_in_scope_and_is_silent_out_of_scope() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let mut running = start(&setup, config, Arc::new(|| NOW));

    let socket = setup.state.join("git-credential.sock");
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);

    let answer = ask(&setup.state, IN_SCOPE).await;
    assert_eq!(
        answer,
        format!(
            "username=x-access-token\npassword=ghu_e2e_token\npassword_expiry_utc={}\n",
            EXPIRES.unix_timestamp()
        )
    );
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Answered {
            uid: own_uid(),
            repository: Some("octo/app".into())
        }
    );

    for (request, reason, repository) in [
        (
            "protocol=https\nhost=github.com\npath=octo/secret.git\n\n",
            Silence::OutOfScope,
            "octo/secret",
        ),
        (
            "protocol=http\nhost=github.com\npath=octo/app.git\n\n",
            Silence::NotHttps,
            "octo/app",
        ),
        (
            "protocol=https\nhost=example.com\npath=octo/app.git\n\n",
            Silence::WrongHost,
            "octo/app",
        ),
    ] {
        assert_eq!(ask(&setup.state, request).await, "", "{request:?}");
        let outcome = running.outcomes.recv().await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Silent {
                uid: Some(own_uid()),
                reason,
                repository: Some(repository.into()),
            }
        );
    }

    running.stop.send(()).unwrap();
    running.task.await.unwrap();
    assert!(!socket.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn a_uid_outside_the_allow_list_gets_nothing() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid().wrapping_add(4242)]);
    let mut running = start(&setup, config, Arc::new(|| NOW));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::UidNotAllowed,
            repository: None,
        }
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn a_uid_over_its_share_is_closed_at_once_not_queued() {
    let setup = setup();
    let mut config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    config.max_connections_per_uid = 2;
    // Long enough that a queued request would outlast the helper's own timeout and fail it.
    config.io_timeout = std::time::Duration::from_secs(60);
    let socket = config.socket_path.clone();
    let mut running = start(&setup, config, Arc::new(|| NOW));
    // Two idle connections take the uid's whole share (accepted first: the backlog is FIFO).
    let held = [
        tokio::net::UnixStream::connect(&socket).await.unwrap(),
        tokio::net::UnixStream::connect(&socket).await.unwrap(),
    ];
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::UidBusy,
            repository: None,
        }
    );
    // Once the idle ones leave (their outcomes say their slots are free), the uid is served.
    drop(held);
    for _ in 0..2 {
        assert!(matches!(
            running.outcomes.recv().await.unwrap(),
            Outcome::Silent {
                reason: Silence::MalformedRequest,
                ..
            }
        ));
    }
    assert!(ask(&setup.state, IN_SCOPE).await.contains("password="));
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

/// A fake /proc where this process's cgroup is the restricted sandbox's, in `phase`'s run.
fn restricted_proc_root(phase: &str) -> tempfile::TempDir {
    let proc_root = tempfile::tempdir().unwrap();
    let own = proc_root.path().join(std::process::id().to_string());
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("cgroup"),
        format!("0::/codespace-lifecycle-restricted/{phase}\n"),
    )
    .unwrap();
    proc_root
}

#[tokio::test]
async fn a_caller_in_the_restricted_sandbox_gets_nothing() {
    let setup = setup();
    let proc_root = restricted_proc_root("postCreate");
    let mut config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    config.proc_root = proc_root.path().to_path_buf();
    let mut running = start(&setup, config, Arc::new(|| NOW));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::RestrictedSandbox,
            repository: None,
        }
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn silent_after_expiry_even_before_the_wipe() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let mut running = start(&setup, config, Arc::new(|| EXPIRES));
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    assert!(matches!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            reason: Silence::NoToken,
            ..
        }
    ));
    // And after the expiry driver wiped it.
    setup.vault.poll_expiry(EXPIRES);
    assert_eq!(ask(&setup.state, IN_SCOPE).await, "");
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn bind_replaces_a_stale_socket_but_nothing_else() {
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let first = start(&setup, config.clone(), Arc::new(|| NOW));
    // Simulate a crash: the task ends without removing the socket file.
    first.task.abort();
    let _ = first.task.await;
    drop(first.stop);
    let mut second = start(&setup, config.clone(), Arc::new(|| NOW));
    assert!(ask(&setup.state, IN_SCOPE).await.contains("password="));
    assert!(second.outcomes.recv().await.is_some());
    second.stop.send(()).unwrap();
    second.task.await.unwrap();

    std::fs::write(&config.socket_path, b"not a socket").unwrap();
    let err = Broker::bind(config, setup.vault.clone()).unwrap_err();
    assert!(err.to_string().contains("not a socket"));
}

#[test]
fn sealed_secrets_reach_exec_at_create() {
    let setup = setup();
    let pk = setup.vault.public_key();
    let report = setup.vault.put_secrets(vec![
        seal(&pk, "DB_PASSWORD", 1, b"p@ss 'word' $x").unwrap(),
        seal(&pk, "BASH_ENV", 1, b"/tmp/evil").unwrap(),
    ]);
    assert_eq!(report.accepted, ["DB_PASSWORD"]);
    let argv: Vec<OsString> = [
        "/bin/sh",
        "-c",
        "printf '%s|%s' \"${DB_PASSWORD-unset}\" \"$GITHUB_TOKEN\"",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let before = exec::command(&setup.state, &argv)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(before.stdout, b"unset|ghu_e2e_token");
    setup.vault.session(SessionEvent::Create, NOW).unwrap();
    let after = exec::command(&setup.state, &argv)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(after.stdout, b"p@ss 'word' $x|ghu_e2e_token");
}

// ---------------------------------------------------------------------------------------------
// Registry credentials: the Docker helper on the same socket, with the same admission; every
// request past admission is recorded with its registry and caller (guest::registry::record).

const REGISTRY_SECRET: &str = "ghp_registry_library_s3cret";

fn put_registry(setup: &Setup, registry: &str, expires_at: OffsetDateTime) {
    let sealed_as = format!(
        "registry:{}",
        codespace_policy::container_registry::RegistryHost::parse(registry).unwrap()
    );
    setup
        .vault
        .put_registry(
            RegistryPut {
                registry: registry.into(),
                username: "octocat".into(),
                secret: seal(
                    &setup.vault.public_key(),
                    &sealed_as,
                    codespace_agent::seal::generation_now(),
                    REGISTRY_SECRET.as_bytes(),
                )
                .unwrap(),
                expires_at,
                scope: None,
            },
            NOW,
        )
        .unwrap();
}

/// Runs the Docker helper's `get` for `url`: (status, stdout).
async fn docker_get(state: &Path, url: &'static str) -> (docker_credential::Status, String) {
    let state = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let status = docker_credential::run(&state, "get", url.as_bytes(), &mut out, Vec::new());
        (status, String::from_utf8(out).unwrap())
    })
    .await
    .unwrap()
}

fn registry_outcome(outcome: Outcome) -> RegistryAccess {
    match outcome {
        Outcome::Registry(access) => access,
        other => panic!("not a registry request: {other:?}"),
    }
}

#[tokio::test]
async fn registry_answers_are_recorded_with_the_caller_and_refused_after_expiry() {
    let setup = setup();
    put_registry(&setup, "ghcr.io", EXPIRES);
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    let mut running = start(&setup, config.clone(), Arc::new(|| NOW));
    let (status, out) = docker_get(&setup.state, "https://ghcr.io/").await;
    assert_eq!(status, docker_credential::Status::Success);
    assert!(out.contains(REGISTRY_SECRET), "{out}");
    let access = registry_outcome(running.outcomes.recv().await.unwrap());
    assert_eq!(access.result, AccessResult::Answered);
    assert_eq!(access.registry.as_deref(), Some("ghcr.io"));
    assert_eq!(access.uid, own_uid());
    assert_eq!(access.caller["pid"], std::process::id());
    assert!(access.caller["exe"].is_string(), "{access:?}");
    // A lookalike: refused, recorded with the host it names.
    let (status, out) = docker_get(&setup.state, "ghcr.io.evil.com").await;
    assert_eq!(status, docker_credential::Status::Failure);
    assert_eq!(out, "credentials not found in native keychain\n");
    let access = registry_outcome(running.outcomes.recv().await.unwrap());
    assert_eq!(
        access.result,
        AccessResult::Refused(RegistryRefusal::UnknownRegistry)
    );
    assert_eq!(access.registry.as_deref(), Some("ghcr.io.evil.com"));
    assert!(!format!("{access:?}").contains(REGISTRY_SECRET));
    running.stop.send(()).unwrap();
    running.task.await.unwrap();

    // The same credential at its expiry (before the expiry driver wipes it): refused.
    let mut running = start(&setup, config, Arc::new(|| EXPIRES));
    let (status, _) = docker_get(&setup.state, "ghcr.io").await;
    assert_eq!(status, docker_credential::Status::Failure);
    let access = registry_outcome(running.outcomes.recv().await.unwrap());
    assert_eq!(
        access.result,
        AccessResult::Refused(RegistryRefusal::Expired)
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn a_registry_request_from_the_restricted_sandbox_is_refused_at_accept() {
    let setup = setup();
    put_registry(&setup, "ghcr.io", EXPIRES);
    let proc_root = restricted_proc_root("onCreate");
    let mut config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    config.proc_root = proc_root.path().to_path_buf();
    let mut running = start(&setup, config, Arc::new(|| NOW));
    let (status, out) = docker_get(&setup.state, "ghcr.io").await;
    assert_eq!(status, docker_credential::Status::Failure);
    assert_eq!(out, "credentials not found in native keychain\n");
    // Closed before a byte was read: refused as any caller from the sandbox is.
    assert_eq!(
        running.outcomes.recv().await.unwrap(),
        Outcome::Silent {
            uid: Some(own_uid()),
            reason: Silence::RestrictedSandbox,
            repository: None
        }
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Floods: another uid, or another allowed uid, holding many idle connections must not keep the
// codespace user's `git credential get` waiting. These need root (a second uid to connect as).

#[path = "support/root.rs"]
mod root_gate;
use root_gate::root;

use codespace_agent::guest::sandbox::ResolvedUser;
use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Connections each flood holds: far more than the broker's slots (64), so that before per-uid
/// admission the codespace user's request queued behind them until its helper gave up (10 s).
const FLOOD: usize = 600;

/// What the codespace user's request may take while a flood is held. Without admission at
/// accept it took the helper's whole timeout (10 s) and failed.
const PROMPT: Duration = Duration::from_secs(1);

/// A system user created for one test and deleted on drop.
struct TempUser {
    name: String,
    user: ResolvedUser,
}

impl TempUser {
    fn create(tag: &str) -> Self {
        let name = format!("csbrk{tag}{}", std::process::id());
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .status()
            .expect("useradd (package passwd) is needed");
        assert!(status.success(), "useradd {name} failed");
        let user = ResolvedUser::lookup(&name).unwrap();
        Self { name, user }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        // userdel removes the user's own group; this is for systems where it does not.
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

/// Opens argv[2] connections to the socket argv[1], says so on stdout, and holds them, sending
/// nothing, until stdin closes. The alarm ends it if a broken test forgets it.
const FLOOD_PY: &str = r#"
import signal, socket, sys
signal.alarm(120)
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    held.append(s)
sys.stdout.write("holding %d\n" % len(held))
sys.stdout.flush()
sys.stdin.read()
"#;

/// A process running as another uid that holds [`FLOOD`] connections to the broker; it lets
/// them go (and is reaped) on drop.
struct Flood {
    child: Child,
}

impl Flood {
    /// Starts the flood and returns once every connection is made (the child's own report, not
    /// a sleep).
    fn hold(socket: &Path, user: &ResolvedUser) -> Self {
        // The system interpreter: a version manager's shim in root's home is out of the
        // flooder's reach.
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(FLOOD_PY)
            .arg(socket)
            .arg(FLOOD.to_string())
            .uid(user.uid)
            .gid(user.gid)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line,
            format!("holding {FLOOD}\n"),
            "the flood did not connect"
        );
        Self { child }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Runs the real helper binary (`git-credential get`, as this process's uid) and times it.
fn timed_ask(state: &Path) -> (Duration, std::process::Output) {
    use std::io::Write as _;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
        .arg("git-credential")
        .arg("--state-dir")
        .arg(state)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(IN_SCOPE.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (started.elapsed(), output)
}

/// Floods the broker as `flooder` and asks as this process's (allowed) uid while it holds.
async fn ask_during_flood(setup: &Setup, flooder: &ResolvedUser) -> (Duration, String) {
    // The flooder must reach the socket: the temp dir is 0700, the state dir 0711.
    let top = setup.state.parent().unwrap();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = setup.state.join("git-credential.sock");
    let flooder = flooder.clone();
    let flood = tokio::task::spawn_blocking(move || Flood::hold(&socket, &flooder))
        .await
        .unwrap();
    let state = setup.state.clone();
    let (elapsed, output) = tokio::task::spawn_blocking(move || timed_ask(&state))
        .await
        .unwrap();
    drop(flood);
    let answer = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "answered in {elapsed:?} while {FLOOD} connections were held (status {}, stderr {:?})",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_holding_connections_does_not_delay_the_allowed_uid() {
    if !root() {
        return;
    }
    let hostile = TempUser::create("h");
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid()]);
    // Room for a report per flooding connection, so that only the broker's rate limit can
    // keep the reports few.
    let mut running = start_with_room(&setup, config, Arc::new(|| NOW), 2 * FLOOD);
    let (elapsed, answer) = ask_during_flood(&setup, &hostile.user).await;
    assert!(answer.contains("password=ghu_e2e_token\n"), "{answer:?}");
    assert!(elapsed < PROMPT, "took {elapsed:?}");

    // The flood was accepted (and refused) before the request, so its reports come first.
    let mut refusals_reported = 0;
    loop {
        match running.outcomes.recv().await.unwrap() {
            Outcome::Answered { uid, .. } if uid == own_uid() => break,
            Outcome::Silent {
                uid,
                reason: Silence::UidNotAllowed,
                ..
            } if uid == Some(hostile.user.uid) => refusals_reported += 1,
            Outcome::Unreported { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // A few per second, not one per connection: connecting 600 takes well under the 5 s
    // this allows.
    eprintln!("{refusals_reported} of {FLOOD} refusals reported one by one");
    assert!(
        refusals_reported <= 5 * REFUSALS_REPORTED_PER_WINDOW,
        "{refusals_reported} refusals reported"
    );
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_uid_flooding_does_not_delay_another_allowed_uid() {
    if !root() {
        return;
    }
    let greedy = TempUser::create("g");
    let setup = setup();
    let config = BrokerConfig::new(&setup.state, vec![own_uid(), greedy.user.uid]);
    let running = start(&setup, config, Arc::new(|| NOW));
    let (elapsed, answer) = ask_during_flood(&setup, &greedy.user).await;
    assert!(answer.contains("password=ghu_e2e_token\n"), "{answer:?}");
    assert!(elapsed < PROMPT, "took {elapsed:?}");
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}
