//! The restricted principal's world: what makes a restricted run a *different principal* rather
//! than a filtered copy of the creator. Prepared in the parent for every restricted run, entered
//! by the child as root before any other restriction (mounts are impossible after Landlock and
//! seccomp).
//!
//! ```text
//!  parent (agent, root)                          child (root until step 8 of child.rs)
//!  ─────────────────────                         ─────────────────────────────────────
//!  ensure <restricted_root>/{tmp,var-tmp}        unshare(NEWNS | NEWIPC)
//!         and the identity's home               [setns(net): the codespace's restricted netns]
//!  workspace owner ≠ run uid, else refuse        mount --make-rslave /
//!  detached clones of <root>/tmp, <root>/var-tmp  move_mount them → /tmp, /var/tmp
//!  and of the workspace, idmapped            ──► move_mount(clone → workspace)
//!   (on-disk creator ⇄ restricted identity)
//!  .git/{config,hooks,info} (+ modules/*)        bind each .git path onto itself, remount ro
//!                                                tmpfs (mode 000, ro) over the state directory
//! ```
//!
//! | threat (tried as a hostile repository) | what stops it here |
//! |---|---|
//! | the creator's tmux or ssh-agent socket in `/tmp` | private `/tmp`, and another uid (the creator's `0700` socket directories) |
//! | SysV shared memory, semaphores, message queues of the creator | a new IPC namespace per run |
//! | `.git/config` (`core.fsmonitor`), `.git/hooks/*`, `.git/info/*` that the creator's `git` later runs | read-only bind mounts over them (objects and refs stay writable for `git fetch`) |
//! | the agent's state directory, the env file, the broker's socket | an empty `mode=000` tmpfs over the state directory (Landlock denies it too) |
//! | the creator's home, ptys, other users' files | the restricted identity is another uid: plain file permissions |
//!
//! **The workspace stays usable by both.** A restricted run writes the workspace through an
//! *idmapped* bind mount (Linux ≥ 5.12; ext4, xfs, btrfs, and tmpfs from 6.3): files the creator
//! owns on disk appear as the restricted identity's, and what the run creates lands on disk owned
//! by the creator. Nothing on disk changes owner or mode, no tree walk, no ACL mask surprises, and
//! afterwards the creator edits and deletes everything as before. Chosen over ACLs (a tree walk
//! that races with a hostile dev server renaming directories under it, and default ACLs that a
//! `0644` create mode masks away) and over a shared group (every existing file would need
//! `g+w`). The clone is `nosuid,nodev`: a set-uid file created through it would be owned by the
//! creator on disk. Root's files stay root's (mapped to themselves) and other users' appear as
//! `nobody`; both are reached through their "other" permission bits only. A workspace the kernel cannot idmap (an old
//! tmpfs, or a workspace owned by root, which is never mapped) is a refusal by default, or under
//! `restricted_fallback: "degrade"` the workspace as file permissions allow, reported.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::SandboxError;
use crate::guest::user::Account;

use super::child::{self, HoldUserNamespace};
use super::syscalls;

/// Paths under `.git` whose contents the creator's `git` executes or obeys later: read-only to
/// restricted runs. `objects/`, `refs/`, `HEAD`, `index`, `FETCH_HEAD` stay writable, so
/// `git fetch`, `git checkout` and `git submodule update` keep working.
pub(crate) const GIT_PROTECTED: &[(&str, &str)] = &[
    (
        "config",
        "core.fsmonitor, core.hooksPath, core.pager, alias.*, filter.*: programs git runs",
    ),
    ("hooks", "hooks git runs on commit, checkout, merge, push"),
    (
        "info",
        "info/attributes selects filters; info/exclude hides planted files from git status",
    ),
];

/// Default `sandbox.restricted_pids_max`: as many processes as can each hold `nofile`
/// descriptors and together take at most half of the system-wide file table
/// (`/proc/sys/fs/file-max`), between 256 and 4,096. So leftovers cannot exhaust the table
/// (140 processes × 17k descriptors did, before the limits). 301 on a 24 GiB VM.
pub(crate) fn default_group_pids(nofile: u64) -> u64 {
    let file_max = std::fs::read_to_string("/proc/sys/fs/file-max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    (file_max / 2 / nofile.max(1)).clamp(256, 4096)
}

/// What to do when a layer of the restricted world is not available on this machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Refuse the restricted run (the default: a weaker sandbox is not silently accepted).
    #[default]
    Refuse,
    /// Run without the missing layer, and say so in the run's report.
    Degrade,
}

/// Where the restricted principal's world lives and how strict it is (from the `sandbox`
/// config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldConfig {
    /// Root-owned directory holding the restricted identity's per-codespace `tmp` and
    /// `var-tmp` (bound over `/tmp` and `/var/tmp` in every restricted run).
    pub root: PathBuf,
    /// When a layer is missing.
    pub fallback: Fallback,
    /// `RLIMIT_NOFILE` of restricted runs, at most (140 processes × 65,536 descriptors would
    /// exhaust the system-wide file table).
    pub nofile: u64,
    /// Internet access from the restricted network namespace ([`super::netns`]).
    pub outbound: bool,
    /// The limits of everything restricted runs leave behind, together
    /// ([`super::cgroup::RESTRICTED_GROUP`]).
    pub group: super::cgroup::GroupLimits,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from(super::config::DEFAULT_RESTRICTED_ROOT),
            fallback: Fallback::Refuse,
            nofile: super::config::DEFAULT_RESTRICTED_NOFILE,
            outbound: true,
            group: super::cgroup::GroupLimits {
                cpu_millis: 1000,
                memory_max_bytes: 4 << 30,
                pids_max: default_group_pids(super::config::DEFAULT_RESTRICTED_NOFILE),
            },
        }
    }
}

/// How the workspace appears to a restricted run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub(crate) enum WorkspaceView {
    /// An idmapped clone: the creator's files are the run's own, new files land as the
    /// creator's.
    Idmapped {
        /// The on-disk owner mapped to the restricted identity.
        creator_uid: u32,
    },
    /// As file permissions allow (degraded), with the reason.
    AsPermitted {
        /// Why no idmapped view.
        reason: String,
    },
}

/// What the restricted world gave a run (part of the run's `applied` report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WorldReport {
    /// `/tmp` of the restricted identity (per codespace).
    pub(crate) private_tmp: PathBuf,
    /// `/var/tmp` of the restricted identity (per codespace).
    pub(crate) private_var_tmp: PathBuf,
    /// A new IPC namespace.
    pub(crate) ipc_namespace: bool,
    /// The shared per-codespace network namespace (a loopback of its own), or `None` when this
    /// run degraded to the agent's network (`restricted_fallback: "degrade"`).
    pub(crate) network: Option<super::netns::NetReport>,
    /// How the workspace appears.
    pub(crate) workspace: WorkspaceView,
    /// `.git` paths made read-only.
    pub(crate) git_read_only: Vec<PathBuf>,
    /// The state directory is covered by an empty tmpfs.
    pub(crate) state_dir_hidden: bool,
}

impl WorldReport {
    /// The layers this run went without, each with why (empty when the world is complete):
    /// what `restricted_fallback: "degrade"` let through, and an outbound network that could
    /// not be set up.
    pub(crate) fn degraded(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let WorkspaceView::AsPermitted { reason } = &self.workspace {
            out.push(format!("workspace: {reason}"));
        }
        match &self.network {
            None => out.push("network: the agent's own (no restricted namespace)".into()),
            Some(n) if n.outbound.starts_with("unavailable") => {
                out.push(format!("outbound: {}", n.outbound));
            }
            Some(_) => {}
        }
        out
    }
}

/// One bind mount, prepared for the child.
#[derive(Debug)]
pub(crate) struct Bind {
    source: CString,
    target: CString,
    read_only: bool,
}

/// Everything the child does to enter the restricted world (no allocation in the child).
#[derive(Debug)]
pub(crate) struct WorldPlan {
    /// Detached clones and where they go, in order: the private `/tmp` and `/var/tmp`, then
    /// the (idmapped) workspace, which may lie beneath them.
    trees: Vec<(OwnedFd, CString)>,
    /// The codespace's restricted network namespace, if configured.
    netns: Option<std::sync::Arc<OwnedFd>>,
    /// Read-only self-binds of the `.git` paths (resolved in the new namespace, through the
    /// workspace's clone).
    binds: Vec<Bind>,
    hide: CString,
}

fn cstring(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidProgram("NUL byte in a path"))
}

fn world_error(path: &Path, action: &'static str, source: io::Error) -> SandboxError {
    SandboxError::World {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Creates `dir` if missing and makes sure it is a real directory (not a symlink) owned by
/// `uid:gid` with `mode`. The parents are root's (checked by the caller for the root).
fn ensure_dir(dir: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), SandboxError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => {
            return Err(world_error(
                dir,
                "use",
                io::Error::other("exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(|e| world_error(dir, "create", e))?;
        }
        Err(e) => return Err(world_error(dir, "inspect", e)),
    }
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
        .map_err(|e| world_error(dir, "chown", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| world_error(dir, "chmod", e))
}

/// The per-codespace directories of the restricted identity: `<root>` (root's, `0755`; created
/// with its parents), `<root>/tmp` and `<root>/var-tmp` (the identity's, `1777` like the real
/// ones) and, when it is missing and lies in `<root>`, the identity's home (`0700`). Returns
/// `(tmp, var_tmp)`.
pub(crate) fn ensure_dirs(
    config: &WorldConfig,
    user: &Account,
) -> Result<(PathBuf, PathBuf), SandboxError> {
    let root = &config.root;
    if !root.is_absolute() || root.parent().is_none() {
        return Err(world_error(
            root,
            "use",
            io::Error::other("not an absolute directory below /"),
        ));
    }
    std::fs::create_dir_all(root).map_err(|e| world_error(root, "create", e))?;
    // Every component must be root's and not writable by others (unless sticky, like /tmp, where
    // others cannot rename root's entries): otherwise another local user could swap a directory
    // for a symlink and choose what becomes the restricted `/tmp`.
    let mut at = PathBuf::new();
    for part in root.components() {
        at.push(part);
        let m = std::fs::symlink_metadata(&at).map_err(|e| world_error(&at, "inspect", e))?;
        // `/` is skipped: some VMs give it odd owners, and nothing can swap it.
        let sticky = m.mode() & 0o1000 != 0;
        if at == Path::new("/") {
            continue;
        }
        if !m.file_type().is_dir() || m.uid() != 0 || (m.mode() & 0o022 != 0 && !sticky) {
            return Err(world_error(
                &at,
                "trust",
                io::Error::other("must be a directory owned by root and writable only by root"),
            ));
        }
    }
    let tmp = root.join("tmp");
    let var_tmp = root.join("var-tmp");
    ensure_dir(&tmp, user.uid, user.gid, 0o1777)?;
    ensure_dir(&var_tmp, user.uid, user.gid, 0o1777)?;
    // The home is created when it is missing and belongs in the restricted root (the package's
    // layout). An existing home is never changed: a passwd entry may name `/` or a system
    // directory as a home, and chown-ing that would hand it to the restricted principal.
    if user.home.starts_with(root)
        && user.home != *root
        && std::fs::symlink_metadata(&user.home).is_err()
    {
        if let Some(parent) = user.home.parent() {
            std::fs::create_dir_all(parent).map_err(|e| world_error(parent, "create", e))?;
        }
        ensure_dir(&user.home, user.uid, user.gid, 0o700)?;
    }
    Ok((tmp, var_tmp))
}

/// The `.git` paths of `workspace` to make read-only: [`GIT_PROTECTED`] of `.git` and of every
/// submodule's git directory under `.git/modules` (nested too). A missing `hooks` or `info`
/// directory is created (owned like `.git`) so that a restricted run cannot create it.
pub(crate) fn git_paths(workspace: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let git = workspace.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&git) else {
        return out;
    };
    if !meta.file_type().is_dir() {
        return out; // a gitfile (worktree, submodule checkout): its git dir is elsewhere
    }
    let mut dirs = vec![git];
    while let Some(dir) = dirs.pop() {
        let Ok(owner) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        for (name, _why) in GIT_PROTECTED {
            let path = dir.join(name);
            if std::fs::symlink_metadata(&path).is_err()
                && *name != "config"
                && std::fs::create_dir(&path).is_ok()
            {
                let _ = std::os::unix::fs::lchown(&path, Some(owner.uid()), Some(owner.gid()));
            }
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_symlink()) {
                out.push(path);
            }
        }
        // Submodules' git directories: `.git/modules/<name>[/modules/<name>…]`.
        if let Ok(entries) = std::fs::read_dir(dir.join("modules")) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
    }
    out
}

/// A user namespace mapping `inside ⇄ outside` (and root to itself) for the uid and the gid:
/// the idmapping an idmapped mount takes. Made by a child that unshares its user namespace and
/// waits, without ever executing anything ([`HoldUserNamespace`]), while the parent writes its
/// maps and opens the namespace. std's `spawn` returns only once that child is done, so it runs
/// on a thread of its own.
///
/// Neither side waits for end of file: every child forked meanwhile (another run's holder, which
/// never executes) inherits copies of both pipes. The child's pid (or, from the spawning thread
/// once the child is gone, a 0) arrives on `ready`; a byte on `hold` releases the child.
fn idmap_userns(inside: (u32, u32), outside: (u32, u32)) -> io::Result<OwnedFd> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (hold_r, hold_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let gone = ready_w.try_clone()?;
    // Never executed: the plan always ends the spawn before `execve`.
    let mut holder = std::process::Command::new("/");
    child::install(
        &mut holder,
        HoldUserNamespace {
            ready: ready_w,
            hold: hold_r,
        },
    );
    std::thread::scope(|scope| {
        let spawned = scope.spawn(move || {
            let ended = holder.spawn().map(drop);
            // Pid 0: the child is gone (it never wrote its pid, or it was already read).
            let _ = rustix::io::write(&gone, &0i32.to_ne_bytes());
            ended
        });
        let result = map_userns(&ready_r, inside, outside);
        let _ = rustix::io::write(&hold_w, &[1]); // releases the child
        let ended = spawned
            .join()
            .map_err(|_| io::Error::other("the user-namespace thread panicked"))?;
        match ended {
            Err(e) if e.raw_os_error() == Some(HoldUserNamespace::RELEASED) => result,
            Err(e) => Err(e),
            Ok(()) => Err(io::Error::other(
                "the user-namespace child executed a program",
            )),
        }
    })
}

/// The parent's half of [`idmap_userns`]: waits for the child's pid on `ready`, writes its maps
/// and opens its user namespace.
fn map_userns(ready: &OwnedFd, inside: (u32, u32), outside: (u32, u32)) -> io::Result<OwnedFd> {
    let mut pid = [0u8; 4];
    // Both writers send 4 bytes at once (atomic on a pipe).
    if rustix::io::read(ready, &mut pid)? != pid.len() {
        return Err(io::Error::other("short read from the user-namespace child"));
    }
    let pid = i32::from_ne_bytes(pid);
    if pid <= 0 {
        return Err(io::Error::other(
            "the user-namespace child ended before its namespace existed",
        ));
    }
    // Root stays root: root's files in the workspace (a `sudo npm install -g` of a trusted
    // run) are still reached through their "other" bits, as everyone else's would be.
    // Without a mapping, the kernel refuses to execute them at all.
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("0 0 1\n{} {} 1\n", inside.0, outside.0),
    )?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("0 0 1\n{} {} 1\n", inside.1, outside.1),
    )?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
    Ok(OwnedFd::from(ns))
}

/// The user namespaces of the workspace's idmapping, as the sandbox keeps them: one for the
/// (creator, restricted identity) pair of the codespace, made by its first restricted run and
/// reused by every later one (a namespace's maps never change, and nothing runs in it).
/// Another pair (the workspace changed owner) replaces it.
#[derive(Debug, Default)]
pub(crate) struct Idmaps {
    held: std::sync::Mutex<Option<(IdPair, std::sync::Arc<OwnedFd>)>>,
}

/// `((creator uid, gid), (restricted uid, gid))`: on-disk owner and the identity it appears as.
type IdPair = ((u32, u32), (u32, u32));

impl Idmaps {
    /// The user namespace mapping `creator` on disk to `user` (and root to itself).
    fn get(&self, creator: (u32, u32), user: (u32, u32)) -> io::Result<std::sync::Arc<OwnedFd>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((pair, ns)) = held.as_ref() {
            if *pair == (creator, user) {
                return Ok(ns.clone());
            }
        }
        let ns = std::sync::Arc::new(idmap_userns(creator, user)?);
        *held = Some(((creator, user), ns.clone()));
        Ok(ns)
    }
}

/// A detached clone of `workspace`, `nosuid,nodev`; with the idmapping of `userns` (see
/// [`Idmaps`]) its files owned by the creator appear owned by the restricted identity, and what
/// that identity creates lands as the creator's.
fn clone_tree(workspace: &Path, userns: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    use rustix::mount::{MountAttrFlags, OpenTreeFlags};
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        workspace,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let mut set = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    if userns.is_some() {
        set |= MountAttrFlags::MOUNT_ATTR_IDMAP;
    }
    syscalls::set_mount_attributes(tree.as_fd(), set, userns.map(|u| u.as_fd()))?;
    Ok(tree)
}

/// Prepares the restricted world of one run of `user` in `workspace`, hiding `state_dir`.
/// `net` is the codespace's restricted network namespace; `idmaps` the sandbox's idmapping.
pub(crate) fn prepare(
    config: &WorldConfig,
    user: &Account,
    workspace: &Path,
    state_dir: &Path,
    net: Option<&super::netns::RestrictedNet>,
    idmaps: &Idmaps,
) -> Result<(WorldPlan, WorldReport), SandboxError> {
    let (tmp, var_tmp) = ensure_dirs(config, user)?;
    let meta = std::fs::metadata(workspace).map_err(|e| world_error(workspace, "inspect", e))?;
    let creator = (meta.uid(), meta.gid());
    if creator.0 == user.uid {
        return Err(SandboxError::SharedIdentity {
            name: user.name.clone(),
            uid: user.uid,
        });
    }
    let view = if creator.0 == 0 {
        WorkspaceView::AsPermitted {
            reason: "the workspace is owned by root, which is never mapped".into(),
        }
    } else {
        WorkspaceView::Idmapped {
            creator_uid: creator.0,
        }
    };
    let idmap = matches!(view, WorkspaceView::Idmapped { .. });
    let cloned = if idmap {
        idmaps
            .get(creator, (user.uid, user.gid))
            .and_then(|userns| clone_tree(workspace, Some(&userns)))
    } else {
        clone_tree(workspace, None)
    };
    let (tree, view) = match cloned {
        Ok(tree) => (tree, view),
        Err(e) if idmap => (
            clone_tree(workspace, None).map_err(|e| world_error(workspace, "clone", e))?,
            WorkspaceView::AsPermitted {
                reason: format!("this kernel or file system cannot idmap the workspace: {e}"),
            },
        ),
        Err(e) => return Err(world_error(workspace, "clone", e)),
    };
    if let (WorkspaceView::AsPermitted { reason }, Fallback::Refuse) = (&view, config.fallback) {
        return Err(SandboxError::Unisolated {
            layer: "workspace",
            reason: reason.clone(),
        });
    }
    // A workspace under /tmp or /var/tmp would be covered by the private ones: its mount point
    // is made inside the private directory (root's, so the run cannot remove it).
    for (real, private) in [("/tmp", &tmp), ("/var/tmp", &var_tmp)] {
        if let Ok(rel) = workspace.strip_prefix(real) {
            let point = private.join(rel);
            std::fs::create_dir_all(&point).map_err(|e| world_error(&point, "create", e))?;
        }
    }
    let git = git_paths(workspace);
    let binds = git
        .iter()
        .map(|path| {
            let c = cstring(path)?;
            Ok(Bind {
                source: c.clone(),
                target: c,
                read_only: true,
            })
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    // Detached clones made here, moved in the child: the child resolves no source path after
    // it has replaced /tmp (a restricted root under /tmp would be gone by then).
    let clone = |dir: &Path| clone_tree(dir, None).map_err(|e| world_error(dir, "clone", e));
    // A target the image lacks (a minimal root without /var/tmp or /etc/resolv.conf) is not
    // covered: there is nothing there for the run to reach, and nothing it could create.
    let mut trees = Vec::new();
    for (source, target) in [(&tmp, "/tmp"), (&var_tmp, "/var/tmp")] {
        if Path::new(target).is_dir() {
            trees.push((clone(source)?, cstring(Path::new(target))?));
        }
    }
    trees.push((tree, cstring(workspace)?));
    if let Some(resolv) = net.and_then(|n| n.report.resolv_conf.as_deref()) {
        if Path::new("/etc/resolv.conf").exists() {
            trees.push((clone(resolv)?, c"/etc/resolv.conf".to_owned()));
        }
    }
    let report = WorldReport {
        private_tmp: tmp,
        private_var_tmp: var_tmp,
        ipc_namespace: true,
        network: net.map(|n| n.report.clone()),
        workspace: view,
        git_read_only: git,
        state_dir_hidden: true,
    };
    Ok((
        WorldPlan {
            trees,
            netns: net.map(|n| n.fd.clone()),
            binds,
            hide: cstring(state_dir)?,
        },
        report,
    ))
}

impl WorldPlan {
    /// Enters the world (in the child, as root, before Landlock and seccomp). Async-signal-safe:
    /// system calls (rustix's and [`syscalls::unshare`]) on data prepared in the parent.
    pub(crate) fn enter(&self) -> io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        use rustix::thread::UnshareFlags;
        syscalls::unshare(UnshareFlags::NEWNS | UnshareFlags::NEWIPC)?;
        if let Some(net) = &self.netns {
            rustix::thread::move_into_link_name_space(
                net.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
        }
        // Nothing mounted here propagates back to the agent's namespace; mounts made outside
        // later (a USB disk, a new workspace mount) still show up here.
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )?;
        for (tree, target) in &self.trees {
            rustix::mount::move_mount(
                tree,
                c"",
                rustix::fs::CWD,
                target.as_c_str(),
                rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
        }
        for bind in &self.binds {
            bind.apply()?;
        }
        let hidden = rustix::mount::mount(
            c"tmpfs",
            self.hide.as_c_str(),
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
            c"size=4k,mode=000",
        );
        match hidden {
            // A state directory under /tmp or /var/tmp (tests, development) is not in this
            // namespace at all: the private directories replaced them.
            Err(rustix::io::Errno::NOENT) => Ok(()),
            other => Ok(other?),
        }
    }
}

impl Bind {
    fn apply(&self) -> io::Result<()> {
        use rustix::mount::MountFlags;
        rustix::mount::mount_bind(self.source.as_c_str(), self.target.as_c_str())?;
        if self.read_only {
            // A bind remount changes the flags of this mount alone; it parses no data.
            rustix::mount::mount_remount(
                self.target.as_c_str(),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                c"",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_home_is_never_changed_and_root_is_never_the_root() {
        if !rustix::process::geteuid().is_root() {
            return; // chown needs root; the root tests in CI run this
        }
        let base = std::env::temp_dir().join(format!("world-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let system = base.join("system-home");
        std::fs::create_dir(&system).unwrap();
        std::fs::set_permissions(&system, std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = |home: PathBuf| Account {
            uid: 64_998,
            gid: 64_998,
            name: "r".into(),
            home,
            shell: "/bin/sh".into(),
        };
        let config = WorldConfig {
            root: base.join("restricted"),
            ..WorldConfig::default()
        };
        // A passwd home of `/` or a system directory stays as it is.
        for home in [PathBuf::from("/"), system.clone()] {
            let before = std::fs::metadata(&home).unwrap();
            ensure_dirs(&config, &user(home.clone())).unwrap();
            let after = std::fs::metadata(&home).unwrap();
            assert_eq!(
                (before.uid(), before.mode()),
                (after.uid(), after.mode()),
                "{}",
                home.display()
            );
        }
        // A missing home in the restricted root is made, the principal's and private.
        let own = base.join("restricted/home");
        ensure_dirs(&config, &user(own.clone())).unwrap();
        let m = std::fs::metadata(&own).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (64_998, 0o700));
        let tmp = std::fs::metadata(base.join("restricted/tmp")).unwrap();
        assert_eq!((tmp.uid(), tmp.mode() & 0o7777), (64_998, 0o1777));
        let slash = WorldConfig {
            root: PathBuf::from("/"),
            ..WorldConfig::default()
        };
        assert!(ensure_dirs(&slash, &user(own)).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_idmapping_namespace_is_made_once_per_pair() {
        if !rustix::process::geteuid().is_root() {
            return; // mapping ids of other users needs root; the root tests in CI run this
        }
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let idmaps = Idmaps::default();
        let first = idmaps.get((64_999, 64_999), (64_998, 64_998)).unwrap();
        let again = idmaps.get((64_999, 64_999), (64_998, 64_998)).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        // Another owner: another namespace (the maps of one never change).
        let other = idmaps.get((64_997, 64_997), (64_998, 64_998)).unwrap();
        assert_ne!(ino(&first), ino(&other));
        // Concurrent first uses each get a namespace, and no holder is left waiting (each is
        // released by a byte, whatever copies of its pipes the others inherited).
        std::thread::scope(|s| {
            let made: Vec<_> = (0..4)
                .map(|i| {
                    s.spawn(move || {
                        Idmaps::default().get((64_990 + i, 64_990 + i), (64_998, 64_998))
                    })
                })
                .collect();
            for m in made {
                m.join().unwrap().unwrap();
            }
        });
    }

    #[test]
    fn a_degraded_world_says_which_layers_are_missing() {
        let net = |outbound: &str| super::super::netns::NetReport {
            inode: 1,
            outbound: outbound.into(),
            resolv_conf: None,
        };
        let mut r = WorldReport {
            private_tmp: "/x/tmp".into(),
            private_var_tmp: "/x/var-tmp".into(),
            ipc_namespace: true,
            network: Some(net("nat")),
            workspace: WorkspaceView::Idmapped { creator_uid: 1000 },
            git_read_only: Vec::new(),
            state_dir_hidden: true,
        };
        assert!(r.degraded().is_empty());
        r.network = Some(net("off"));
        assert!(
            r.degraded().is_empty(),
            "outbound off is configured, not degraded"
        );
        r.workspace = WorkspaceView::AsPermitted {
            reason: "tmpfs".into(),
        };
        r.network = Some(net("unavailable: nft: not found"));
        assert_eq!(
            r.degraded(),
            ["workspace: tmpfs", "outbound: unavailable: nft: not found"]
        );
        r.network = None;
        assert!(r.degraded()[1].starts_with("network:"));
    }

    #[test]
    fn git_paths_cover_config_hooks_info_and_submodules() {
        let dir = std::env::temp_dir().join(format!("world-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".git/modules/lib/modules/inner")).unwrap();
        std::fs::write(dir.join(".git/config"), "").unwrap();
        std::fs::write(dir.join(".git/modules/lib/config"), "").unwrap();
        let mut got = git_paths(&dir);
        got.sort();
        let rel: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                ".git/config",
                ".git/hooks",
                ".git/info",
                ".git/modules/lib/config",
                ".git/modules/lib/hooks",
                ".git/modules/lib/info",
                ".git/modules/lib/modules/inner/hooks",
                ".git/modules/lib/modules/inner/info",
            ]
        );
        // No .git, or a gitfile: nothing to protect here.
        std::fs::remove_dir_all(dir.join(".git")).unwrap();
        assert!(git_paths(&dir).is_empty());
        std::fs::write(dir.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(git_paths(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
