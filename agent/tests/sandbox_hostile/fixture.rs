//! The hostile suite's fixture: root check, a test user, scratch and state directories, the
//! vault's env file, the in-process broker, the compiled probe, and run helpers.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use codespace_agent::guest::broker::{Broker, BrokerConfig, Outcome};
use codespace_agent::guest::sandbox::world::WorldConfig;
use codespace_agent::guest::sandbox::{
    ExitReport, Limits, Program, ResolvedUser, Sandbox, SandboxProfile, SandboxSpec, SandboxedChild,
};
use codespace_agent::guest::vault::{environment_path, Owner, TokenPut, Vault, VaultConfig};
use codespace_agent::seal::{AgentKeyPair, TokenValue};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{mpsc, oneshot};

pub const TOKEN: &str = "ghu_hostile_suite_token_value";
const PROBE_C: &str = include_str!("probe.c");

#[path = "../support/root.rs"]
mod root_gate;
pub use root_gate::root;

/// One test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A directory removed on drop.
pub struct Dir(pub PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A user created for the test and deleted on drop.
pub struct TestUser {
    name: String,
    pub user: ResolvedUser,
}

impl TestUser {
    fn create(name: &str, home: &Path) -> Self {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/bin/sh",
            ])
            .arg("--home-dir")
            .arg(home)
            .arg(name)
            .status()
            .expect("useradd (package passwd) is needed");
        assert!(status.success(), "useradd {name} failed");
        let user = ResolvedUser::lookup(name).unwrap();
        Self {
            name: name.to_owned(),
            user,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        // userdel removes the user's own group; this is for systems where it does not.
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

pub struct Fixture {
    pub broker_stop: Option<oneshot::Sender<()>>,
    pub outcomes: mpsc::Receiver<Outcome>,
    pub state: Dir,
    pub probe: PathBuf,
    pub workspace: PathBuf,
    pub home: PathBuf,
    /// Owned by the test user but outside every writable root: only Landlock keeps it clean.
    pub outside: PathBuf,
    pub scratch: PathBuf,
    /// The creator: owns the workspace, its home and the env file; the broker answers it.
    pub user: TestUser,
    /// The restricted principal every restricted run runs as (its home: `restricted_home`).
    pub restricted: TestUser,
    /// The restricted principal's per-codespace world (`sandbox.restricted_root`).
    pub restricted_root: PathBuf,
    /// The sandbox the runs start in, with the agent's default settings.
    pub sandbox: Sandbox,
    _scratch: Dir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.broker_stop.take() {
            let _ = stop.send(());
        }
        // The restricted network (veth, nft table) too; every restricted process is dead by
        // now (their users are removed next).
        self.sandbox.remove_restricted_network();
    }
}

fn chown(path: &Path, user: &ResolvedUser) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
}

pub async fn fixture() -> Fixture {
    static N: AtomicU32 = AtomicU32::new(0);
    let serial = SERIAL.lock().await;
    let id = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let scratch_path = PathBuf::from(format!("/srv/codespace-sandbox-hostile-{id}"));
    let _ = std::fs::remove_dir_all(&scratch_path);
    std::fs::create_dir(&scratch_path).unwrap();
    let scratch = Dir(scratch_path.clone());
    std::fs::set_permissions(&scratch_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = scratch_path.join("home");
    let user = TestUser::create(&format!("csbx{}", id.replace('-', "x")), &home);
    let restricted = TestUser::create(
        &format!("csbr{}", id.replace('-', "x")),
        &scratch_path.join("restricted/home"),
    );
    let restricted_root = scratch_path.join("restricted");
    let workspace = scratch_path.join("workspace");
    let outside = scratch_path.join("outside");
    for dir in [&home, &workspace, &outside] {
        std::fs::create_dir(dir).unwrap();
        chown(dir, &user.user);
    }
    let probe = scratch_path.join("probe");
    let source = scratch_path.join("probe.c");
    std::fs::write(&source, PROBE_C).unwrap();
    let cc = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&probe)
        .arg(&source)
        .output()
        .expect("a C compiler (cc, package build-essential) is needed");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );

    let state_path = PathBuf::from(format!("/run/codespace-agent-hostile-{id}"));
    let _ = std::fs::remove_dir_all(&state_path);
    let state = Dir(state_path.clone());
    let owner = Owner {
        uid: user.user.uid,
        gid: user.user.gid,
    };
    let vault = Vault::new(
        VaultConfig::new(&state_path, owner),
        AgentKeyPair::generate().unwrap(),
    )
    .unwrap();
    let now = OffsetDateTime::now_utc();
    vault
        .put_token(
            TokenPut {
                value: TokenValue::new(TOKEN.into()).unwrap(),
                expires_at: now + time::Duration::hours(8),
                scope: serde_json::from_str(
                    r#"{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
                )
                .unwrap(),
                host: None,
            },
            now,
        )
        .unwrap();
    let env_file = environment_path(&state_path);
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(TOKEN));

    let (tx, outcomes) = mpsc::channel(16);
    let broker = Broker::bind(BrokerConfig::new(&state_path, vec![user.user.uid]), vault)
        .unwrap()
        .with_outcomes(tx);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = broker
            .serve(async {
                let _ = stopped.await;
            })
            .await;
    });
    Fixture {
        broker_stop: Some(stop),
        outcomes,
        state,
        probe,
        workspace,
        home,
        outside,
        scratch: scratch_path,
        user,
        restricted,
        restricted_root,
        sandbox: Sandbox::default(),
        _scratch: scratch,
        _serial: serial,
    }
}

impl Fixture {
    pub fn state_dir(&self) -> &Path {
        &self.state.0
    }

    /// Who a run of `profile` runs as: the creator when trusted, the restricted principal
    /// otherwise (as the lifecycle service chooses).
    pub fn run_user(&self, profile: SandboxProfile) -> &ResolvedUser {
        match profile {
            SandboxProfile::Trusted => &self.user.user,
            _ => &self.restricted.user,
        }
    }

    pub fn spec(&self, profile: SandboxProfile, limits: Limits) -> SandboxSpec {
        SandboxSpec {
            profile,
            user: self.run_user(profile).clone(),
            env: Vec::new(),
            cwd: self.workspace.clone(),
            workspace: self.workspace.clone(),
            state_dir: self.state_dir().to_owned(),
            limits,
            // The restricted world in the scratch directory.
            restricted: WorldConfig {
                root: self.restricted_root.clone(),
                ..WorldConfig::default()
            },
        }
    }

    pub fn probe_argv(&self, args: &[&str]) -> Vec<String> {
        std::iter::once(self.probe.display().to_string())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect()
    }

    /// Runs the probe in the sandbox; returns its stdout and the report.
    pub async fn probe(&self, profile: SandboxProfile, args: &[&str]) -> (String, ExitReport) {
        let (out, _err, report, _) = self
            .run(
                profile,
                small_limits(),
                Program::Exec(self.probe_argv(args)),
                Duration::from_secs(20),
            )
            .await;
        (out.trim().to_owned(), report)
    }

    /// The probe *without* the sandbox, as the same user (a control).
    pub fn unsandboxed(&self, args: &[&str]) -> String {
        let out = Command::new(&self.probe)
            .args(args)
            .uid(self.user.user.uid)
            .gid(self.user.user.gid)
            .current_dir(&self.workspace)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub async fn run(
        &self,
        profile: SandboxProfile,
        limits: Limits,
        program: Program,
        timeout: Duration,
    ) -> (String, String, ExitReport, SandboxedChild) {
        let mut child = self
            .sandbox
            .spawn(&self.spec(profile, limits), &program)
            .unwrap();
        let mut out = child.take_stdout().unwrap();
        let mut err = child.take_stderr().unwrap();
        let reading = tokio::spawn(async move {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let _ = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            (o, e)
        });
        let report = child.wait(timeout, Duration::from_millis(200)).await;
        // Everything is dead (or, after success, done writing): the pipes close.
        let (o, e) = tokio::time::timeout(Duration::from_secs(10), reading)
            .await
            .unwrap()
            .unwrap();
        (
            String::from_utf8_lossy(&o).into_owned(),
            String::from_utf8_lossy(&e).into_owned(),
            report,
            child,
        )
    }
}

pub fn small_limits() -> Limits {
    Limits {
        nproc: 4096,
        nofile: 1024,
        memory_max_bytes: 256 << 20,
        pids_max: 128,
    }
}
