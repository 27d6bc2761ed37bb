//! The lifecycle sandbox: runs one repository command (a lifecycle command or an extension
//! install) as an unprivileged user, with a cleared environment, `no_new_privs`, Landlock,
//! seccomp, rlimits and a cgroup of its own, and kills the whole tree at a timeout.
//!
//! ```text
//!  Sandbox::spawn(spec, program)          (blocks its thread: never call it on a runtime thread)
//!   parent: check spec ─ env::build ─ landlock::prepare (built for this run) ─ seccomp
//!           (compiled when the Sandbox was made) ─ Runs::create (directories + limits)
//!           ─ open cgroup.procs fds ─ std Command::spawn (fork; pre_exec hook)
//!   child:  setsid ─ join cgroups ─ rlimits ─ close_range ─ [world] ─ [nnp] ─ landlock ─ seccomp
//!           ─ setgroups/setresgid/setresuid ─ chdir ─ execve   (child.rs: system calls only)
//!  SandboxedChild::wait(timeout, grace)
//!   exit 0  ─► background processes stay (dev server), cgroup kept until empty
//!   failure ─► cgroup killed (nothing of a failed command lingers)
//!   timeout ─► TERM process group ─ grace ─ KILL process group ─ kill cgroup ─ reap
//! ```
//!
//! Profiles ([`SandboxProfile`]: the policy's `Trust`):
//!
//! | layer | trusted | restricted |
//! |---|---|---|
//! | user | the configured user (the creator; may be root) | the restricted principal (`sandbox.restricted_user`): never root, never the workspace's owner (errors) |
//! | world | the creator's | [`world`]: mount + IPC namespaces, private `/tmp` and `/var/tmp`, idmapped workspace, read-only `.git` config/hooks/info, state directory covered; [`netns`]: the codespace's restricted network |
//! | environment | cleared + base + caller's (secrets, token if the caller passes them) | same; the caller passes neither |
//! | `no_new_privs` | no (sudo works) | yes |
//! | Landlock | everything except the state directory | read/exec except the state directory; writes only workspace, home, its tmp dirs, devices; no signals/abstract sockets outside (ABI 6) |
//! | seccomp | [`rules::DENIED_SYSCALLS`], AF_VSOCK, other ABIs | same, and user namespaces |
//! | rlimits, cgroup | [`Limits`] | [`Limits`], `RLIMIT_NOFILE` at most `restricted_nofile`, inside [`cgroup::RESTRICTED_GROUP`] (one CPU, memory, pids for everything restricted together) |
//!
//! Every rule is data in [`rules`]. What actually applied on this kernel is in
//! [`SandboxedChild::applied`] (e.g. Landlock ABI 7, cgroup mode `hybrid`).
//!
//! `unsafe`: the one `pre_exec` ([`child::install`]) and the four system calls that neither std
//! nor rustix wraps safely ([`syscalls`]); everything else here is safe code.
//!
//! A [`Sandbox`] is a value made from the `sandbox` config section and owned by whoever starts
//! commands (the lifecycle's sandbox launcher, on the privileged side when the agent is
//! separated); nothing of it is process-wide. Output: [`SandboxedChild::take_stdout`] /
//! [`SandboxedChild::take_stderr`] (stdin is `/dev/null`). A background process inherits the
//! pipes, so read them until the main process has exited and then only with a deadline.
//! [`Sandbox::spawn`] blocks its thread until the child has exec'd (the Landlock ruleset, the
//! cgroup's directories, the fork): call it from a blocking thread.
//!
//! Known limits, each covered by another layer:
//! - before Landlock ABI 9 (Linux 7.1), `connect` to a pathname Unix socket is not a Landlock
//!   right, so a trusted run reaches the broker's socket in the state directory (it is the
//!   creator, whom the broker answers anyway); restricted runs do not see the state directory
//!   at all ([`world`]), and the broker also refuses them by uid and cgroup
//!   ([`is_restricted_pid`]);
//! - restricted runs cannot make or enter user namespaces: `clone`/`unshare`/`setns` are gated
//!   on their flags and `clone3` answers `ENOSYS` (its flags are out of seccomp's reach), so the C
//!   library falls back to `clone`;
//! - 32-bit (i386) programs cannot run at all in the sandbox: the arch check kills them;
//! - what a restricted run changes in the workspace (a `Makefile`, a test) runs later wherever
//!   the creator runs it; the startup files and `.git` configuration and hooks are out of its
//!   reach ([`world`]).

pub(crate) mod cgroup;
pub(crate) mod cgroup_layout;
pub(crate) mod child;
pub(crate) mod config;
pub(crate) mod env;
pub(crate) mod landlock;
pub(crate) mod link;
pub mod netns;
pub(crate) mod process;
pub(crate) mod rules;
pub(crate) mod seccomp;
pub(crate) mod syscalls;
pub mod world;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

pub(crate) use self::config::{RawSandboxConfig, SandboxConfig};
pub use self::landlock::LandlockApplied;
pub use self::process::ExitReport;
pub use self::process::SandboxedChild;
use crate::guest::broker::DEFAULT_RESTRICTED_CGROUP_MARKER;

/// The run user: the agent's one account type, under the sandbox's name.
pub use crate::guest::user::Account as ResolvedUser;
use crate::guest::user::Account;

/// What to run: the one command type of the runner, the launchers, the privileged side's wire
/// (`{"form": "shell"|"exec", "argv": ..}`) and the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "form", content = "argv", rename_all = "snake_case")]
pub enum Program {
    /// A devcontainer string command: `/bin/sh -c STRING`.
    Shell(String),
    /// A devcontainer array command: executed directly, no shell (`argv[0]` is looked up in the
    /// sandbox's `PATH` when it has no `/`).
    Exec(Vec<String>),
}

impl Program {
    /// The argv that is exec'd.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Self::Exec(a) => a.clone(),
        }
    }

    /// `shell` or `exec`, as reported.
    pub(crate) fn form(&self) -> &'static str {
        match self {
            Self::Shell(_) => "shell",
            Self::Exec(_) => "exec",
        }
    }
}

/// The sandbox strength: the policy's [`Trust`](codespace_policy::lifecycle::Trust) under the
/// sandbox's name (`Blocked` never reaches a run).
pub use codespace_policy::lifecycle::Trust as SandboxProfile;

/// Resource limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Limits {
    /// `RLIMIT_NPROC` (counts every process of the uid system-wide: a backstop only).
    pub nproc: u64,
    /// `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// cgroup memory limit in bytes (OOM kill above).
    pub memory_max_bytes: u64,
    /// cgroup `pids.max` (the real fork-bomb limit).
    pub pids_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            nproc: 4096,
            nofile: 65_536,
            memory_max_bytes: 4 << 30,
            pids_max: 2048,
        }
    }
}

/// Everything a run needs. Its `Debug` shows the environment's names only (values may be
/// secrets).
#[derive(Clone)]
pub struct SandboxSpec {
    /// Trusted or restricted.
    pub profile: SandboxProfile,
    /// The user the command runs as (root is refused for restricted).
    pub user: Account,
    /// Caller variables after the base ones (remoteEnv after substitution; secrets and the
    /// token only when the profile allows). Dangerous names are refused.
    pub env: Vec<(String, String)>,
    /// Working directory (entered as the run user).
    pub cwd: PathBuf,
    /// The workspace folder (writable in restricted).
    pub workspace: PathBuf,
    /// The agent's state directory: no access at all.
    pub state_dir: PathBuf,
    /// Limits.
    pub limits: Limits,
    /// Restricted runs: where the restricted principal's world lives and how strict it is.
    pub restricted: world::WorldConfig,
}

impl std::fmt::Debug for SandboxSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxSpec")
            .field("profile", &self.profile)
            .field("user", &self.user)
            .field("env", &env::EnvNames(&self.env))
            .field("cwd", &self.cwd)
            .field("workspace", &self.workspace)
            .field("state_dir", &self.state_dir)
            .field("limits", &self.limits)
            .field("restricted", &self.restricted)
            .finish()
    }
}

/// Why a command could not be started. Never contains an environment value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The restricted profile never runs as root.
    #[error("the restricted sandbox does not run commands as root (user {name:?}, uid 0)")]
    RootNotAllowed {
        /// The user name.
        name: String,
    },
    /// A caller variable hijacks execution.
    #[error("environment variable {name:?} is refused: it can hijack execution (LD_*, BASH_ENV, PATH, GIT_*, ...)")]
    DangerousEnvName {
        /// The name.
        name: String,
    },
    /// A caller variable's name is not a variable name.
    #[error("environment variable name {name:?} is invalid (empty, or contains `=` or NUL)")]
    InvalidEnvName {
        /// The name.
        name: String,
    },
    /// A caller variable's value contains NUL.
    #[error("environment variable {name:?} has a NUL byte in its value")]
    InvalidEnvValue {
        /// The name.
        name: String,
    },
    /// An empty `Exec` argv, or NUL in the program or a path.
    #[error("invalid command: {0}")]
    InvalidProgram(&'static str),
    /// The Landlock ruleset could not be built.
    #[error("landlock: {message}")]
    Landlock {
        /// Why.
        message: String,
    },
    /// The seccomp filter could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] seccomp::FilterError),
    /// A restricted run would share its identity with the workspace's owner (the creator).
    #[error("the restricted sandbox never runs as the workspace's owner (user {name:?}, uid {uid}): restricted runs need their own identity (sandbox.restricted_user)")]
    SharedIdentity {
        /// The user name.
        name: String,
        /// Its uid.
        uid: u32,
    },
    /// A step of building the restricted world failed.
    #[error("restricted world: cannot {action} {path}: {source}")]
    World {
        /// The file or directory.
        path: PathBuf,
        /// What was done.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A layer of the restricted world is missing on this machine and the config refuses to run
    /// without it (`sandbox.restricted_fallback`).
    #[error("the restricted sandbox is incomplete here ({layer}): {reason}; refusing to run (set sandbox.restricted_fallback to \"degrade\" to run without it)")]
    Unisolated {
        /// The layer (`workspace`, `network`).
        layer: &'static str,
        /// Why it is missing.
        reason: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {action} {path}: {source}")]
    Cgroup {
        /// The file or directory.
        path: PathBuf,
        /// What was done.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// fork/exec or a sandbox step in the child failed (the command did not run).
    #[error("cannot start {program:?} in the sandbox: {source}")]
    Spawn {
        /// `argv[0]` or `/bin/sh`.
        program: String,
        /// The errno of the failing step or of execve.
        #[source]
        source: std::io::Error,
    },
}

/// What applied to a run, for the run's result and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedReport {
    /// The profile.
    pub(crate) profile: SandboxProfile,
    /// Run uid.
    pub(crate) uid: u32,
    /// Run gid.
    pub(crate) gid: u32,
    /// `no_new_privs` was set.
    pub(crate) no_new_privs: bool,
    /// Landlock.
    pub landlock: LandlockApplied,
    /// Seccomp programs installed (see [`seccomp`]).
    pub(crate) seccomp_filters: usize,
    /// cgroup mode (`v2`, `hybrid`, `v1`, `none`).
    pub(crate) cgroup_mode: &'static str,
    /// The run's cgroup directories.
    pub cgroup_paths: Vec<PathBuf>,
    /// A limit the cgroups could not enforce, if any.
    pub(crate) cgroup_note: Option<String>,
    /// The limits asked for.
    pub(crate) limits: Limits,
    /// The rlimits set (soft = hard): the ones asked for, lowered to the agent's own hard
    /// limits where those are lower.
    pub(crate) rlimits: AppliedRlimits,
    /// Restricted only: the world of the restricted principal ([`world`]).
    pub(crate) world: Option<world::WorldReport>,
    /// Restricted only: the codespace-wide cgroup every restricted run lives in, and which of
    /// its limits this machine enforces ([`cgroup::RESTRICTED_GROUP`]).
    pub(crate) restricted_group: Option<cgroup::GroupReport>,
}

/// The rlimits a run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct AppliedRlimits {
    /// `RLIMIT_NOFILE`.
    pub(crate) nofile: u64,
    /// `RLIMIT_NPROC`.
    pub(crate) nproc: u64,
    /// `RLIMIT_CORE` (always 0: no core dumps with secrets in them).
    pub(crate) core: u64,
}

/// `wanted`, or the agent's own hard limit if that is lower (raising a hard limit needs
/// `CAP_SYS_RESOURCE`, which root lacks on this VM; lower is the safe side anyway).
fn rlimit_within_hard(resource: rustix::process::Resource, wanted: u64) -> u64 {
    match rustix::process::getrlimit(resource).maximum {
        Some(hard) => hard.min(wanted),
        None => wanted,
    }
}

/// The sandbox: the settings every run shares (`PATH` and `LANG`, from the `lifecycle` section,
/// and the `sandbox` section's cgroup parent), the seccomp programs, compiled once when it is
/// made, and the state its runs share: their cgroups' names and leftovers, and the codespace's
/// restricted network. All of it lives here, in the value its launcher owns; nothing is
/// process-wide, so two sandboxes in one process (tests) never see each other's state.
#[derive(Debug)]
pub struct Sandbox {
    path: String,
    lang: String,
    cgroup_parent: Option<PathBuf>,
    /// The cgroup hierarchies runs use, detected at the first spawn (a mount the agent's life
    /// does not change).
    layout: OnceLock<cgroup::Layout>,
    /// The run cgroups this sandbox made.
    runs: cgroup::Runs,
    /// The restricted network namespace of the codespace, once a restricted run made it.
    net: netns::RestrictedNetwork,
    /// The user namespace of the workspace's idmapping, once a restricted run made it.
    idmaps: world::Idmaps,
    filters: Result<seccomp::Filters, seccomp::FilterError>,
}

impl Default for Sandbox {
    /// The default settings of both sections.
    fn default() -> Self {
        use crate::guest::lifecycle::settings::{DEFAULT_LANG, DEFAULT_PATH};
        Self::new(&SandboxConfig::default(), DEFAULT_PATH, DEFAULT_LANG)
    }
}

/// Whether the calling thread holds `CAP_SYS_ADMIN` in its effective set (one `capget`, asked
/// at every spawn: capabilities can be dropped while the agent runs).
fn has_cap_sys_admin() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|caps| {
        caps.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    })
}

fn cstring(bytes: &[u8], what: &'static str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::InvalidProgram(what))
}

impl Sandbox {
    /// The sandbox for the agent's `sandbox` config section; `path` and `lang` are the
    /// `PATH` and `LANG` of every command (`lifecycle.path`, `lifecycle.lang`).
    pub(crate) fn new(config: &SandboxConfig, path: &str, lang: &str) -> Self {
        Self {
            path: path.to_owned(),
            lang: lang.to_owned(),
            cgroup_parent: config.cgroup_parent.clone(),
            layout: OnceLock::new(),
            runs: cgroup::Runs::new(),
            net: netns::RestrictedNetwork::default(),
            idmaps: world::Idmaps::default(),
            filters: seccomp::compile(),
        }
    }

    fn layout(&self) -> &cgroup::Layout {
        self.layout
            .get_or_init(|| cgroup::detect(self.cgroup_parent.as_deref()))
    }

    /// Starts `program` in the sandbox described by `spec`. Must be called inside a tokio
    /// runtime; blocks its thread until the child has exec'd.
    pub fn spawn(
        &self,
        spec: &SandboxSpec,
        program: &Program,
    ) -> Result<SandboxedChild, SandboxError> {
        if spec.profile == SandboxProfile::Restricted && spec.user.is_root() {
            return Err(SandboxError::RootNotAllowed {
                name: spec.user.name.clone(),
            });
        }
        let (path, lang) = (&self.path, &self.lang);
        let restricted = spec.profile == SandboxProfile::Restricted;
        let environment = env::build(&spec.user, path, lang, &spec.env)?;
        let (program_name, args): (String, Vec<String>) = match program {
            Program::Shell(script) => ("/bin/sh".into(), vec!["-c".into(), script.clone()]),
            Program::Exec(argv) => match argv.split_first() {
                Some((first, rest)) if !first.is_empty() => (first.clone(), rest.to_vec()),
                _ => return Err(SandboxError::InvalidProgram("empty argv")),
            },
        };
        if program_name.contains('\0') || args.iter().any(|a| a.contains('\0')) {
            return Err(SandboxError::InvalidProgram("NUL byte in an argument"));
        }
        let cwd = cstring(spec.cwd.as_os_str().as_bytes(), "NUL byte in cwd")?;
        let filters = self
            .filters
            .as_ref()
            .map_err(|e| SandboxError::Seccomp(e.clone()))?;
        let (world, world_report) = if restricted {
            let net = match self.net.get_or_create(
                spec.user.uid,
                spec.restricted.outbound,
                &spec.restricted.root,
            ) {
                Ok(net) => Some(net),
                Err(e) => match spec.restricted.fallback {
                    world::Fallback::Refuse => {
                        return Err(SandboxError::Unisolated {
                            layer: "network",
                            reason: format!("no network namespace of its own: {e}"),
                        })
                    }
                    world::Fallback::Degrade => None,
                },
            };
            let (plan, report) = world::prepare(
                &spec.restricted,
                &spec.user,
                &spec.workspace,
                &spec.state_dir,
                net.as_ref(),
                &self.idmaps,
            )?;
            (Some(plan), Some(report))
        } else {
            (None, None)
        };
        let (tmp, var_tmp) = match &world_report {
            Some(r) => (r.private_tmp.clone(), r.private_var_tmp.clone()),
            None => (PathBuf::from("/tmp"), PathBuf::from("/var/tmp")),
        };
        let prepared = landlock::prepare(
            spec.profile,
            landlock::Places {
                state_dir: &spec.state_dir,
                workspace: &spec.workspace,
                home: &spec.user.home,
                tmp: &tmp,
                var_tmp: &var_tmp,
            },
        )?;
        let layout = self.layout();
        // Empty run cgroups left behind (a dev server that has since exited, an agent that
        // died): a directory listing per hierarchy.
        self.runs.sweep(layout);
        let restricted_group = if restricted && !layout.parents.is_empty() {
            Some(cgroup::ensure_restricted_group(
                layout,
                &spec.restricted.group,
            )?)
        } else {
            None
        };
        let run_cgroup = if layout.parents.is_empty() {
            None
        } else {
            Some(self.runs.create(layout, spec.profile, &spec.limits)?)
        };
        let cgroup_procs = match &run_cgroup {
            Some(c) => c.procs_fds()?,
            None => Vec::new(),
        };
        // Landlock and seccomp need `no_new_privs` or CAP_SYS_ADMIN; trusted runs go without the
        // former only when the agent has the latter.
        let no_new_privs = restricted || !has_cap_sys_admin();
        let nofile = if restricted {
            spec.limits.nofile.min(spec.restricted.nofile)
        } else {
            spec.limits.nofile
        };
        let rlimits = AppliedRlimits {
            nofile: rlimit_within_hard(rustix::process::Resource::Nofile, nofile),
            nproc: rlimit_within_hard(rustix::process::Resource::Nproc, spec.limits.nproc),
            core: 0,
        };
        let seccomp_programs = filters.for_profile(spec.profile).to_vec();
        let applied = AppliedReport {
            profile: spec.profile,
            uid: spec.user.uid,
            gid: spec.user.gid,
            no_new_privs,
            landlock: prepared.applied,
            seccomp_filters: seccomp_programs.len(),
            cgroup_mode: layout.mode,
            cgroup_paths: run_cgroup
                .as_ref()
                .map(|c| c.dirs().map(Path::to_owned).collect())
                .unwrap_or_default(),
            cgroup_note: layout.note.clone(),
            limits: spec.limits,
            rlimits,
            world: world_report,
            restricted_group,
        };
        let plan = child::ChildPlan {
            cgroup_procs,
            nofile: rlimits.nofile,
            nproc: rlimits.nproc,
            no_new_privs,
            landlock: prepared.ruleset,
            seccomp: seccomp_programs,
            uid: spec.user.uid,
            gid: spec.user.gid,
            cwd,
            world,
        };
        process::start(
            &program_name,
            &args,
            &environment,
            plan,
            run_cgroup,
            applied,
        )
    }

    /// Kills everything restricted runs left behind in this codespace (the restricted
    /// principal's cgroup, [`cgroup::RESTRICTED_GROUP`]) and forgets its network namespace,
    /// which dies with its last process (a later restricted run gets a new one). For a change
    /// of the trust facts and on request. Blocks until the processes are dead. Returns how many
    /// processes were killed.
    pub fn kill_restricted(&self) -> usize {
        let killed = cgroup::kill_restricted_group(self.layout());
        // Their runs' cgroups, emptied now, go at once rather than at the next spawn.
        self.runs.sweep(self.layout());
        if self.net.current().is_some() {
            self.net.teardown();
        }
        killed
    }

    /// A socket inside the codespace's restricted network namespace, for port detection and
    /// forwarding ([`netns::RestrictedNetwork::socket_in`]); `None` before a restricted run
    /// made the namespace.
    pub(crate) fn restricted_socket(
        &self,
        kind: crate::guest::privsep::proto::SocketKind,
        have: Option<u64>,
    ) -> std::io::Result<Option<netns::NetSocket>> {
        self.net.socket_in(kind, have)
    }

    /// Removes the restricted network's outside half (the veth pair, the nft table, forwarding
    /// if this sandbox turned it on) and forgets the namespace: for agent shutdown and tests,
    /// once no restricted process is left.
    pub fn remove_restricted_network(&self) {
        self.net.teardown();
    }
}

/// Whether process `pid` runs inside a restricted run's cgroup (any hierarchy's path carries
/// the restricted marker). A process that is gone is not restricted.
pub fn is_restricted_pid(pid: u32) -> bool {
    cgroup::is_restricted_pid_in(Path::new("/proc"), pid, DEFAULT_RESTRICTED_CGROUP_MARKER)
        .unwrap_or(false)
}

/// The root-test gate shared with the integration tests (one file: `agent/tests/support/root.rs`).
#[cfg(test)]
#[path = "../../../tests/support/root.rs"]
pub(crate) mod root_gate;

#[cfg(test)]
mod tests;
