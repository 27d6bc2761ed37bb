//! The Landlock ruleset of a run, built in the parent with the `landlock` crate; the child only
//! calls the crate's `restrict_self` on it ([`super::child`]).
//!
//! Landlock can only *grant* (per file hierarchy, and the union of all grants applies), so "all
//! of the file system except the agent's state directory" is spelled as a **decomposition**: for
//! every directory on the path from `/` down to the state directory, grant each of its entries
//! except the one leading to the state directory. With the state directory at
//! `/run/codespace-agent`:
//!
//! ```text
//!  /        no rule on "/" itself (a grant there would cover everything below, state dir too)
//!  ├ bin usr etc home proc dev tmp var …   granted (read+exec, or full in trusted)
//!  └ run    no rule on "/run" itself
//!    ├ lock user systemd …               granted
//!    └ codespace-agent                   nothing: EACCES on open, listing, exec
//! ```
//!
//! Consequences, all intended: `ls /` and `ls /run` fail with EACCES (listing `/` would need a
//! rule on `/`); an entry created in `/` or `/run` after the run started is not reachable from
//! it (rules bind to existing inodes); a symlink that resolves to an ancestor of the state
//! directory or into it (Debian's `/var/run -> /run`) is skipped, because following it would
//! grant the whole of `/run`. A writable root that contains the state directory (only in tests
//! or a misconfiguration: the state directory belongs on its own tmpfs) is decomposed the same
//! way, so its own top level is then not writable. Bind mounts that alias the state directory
//! elsewhere are not detected; keep the directory `0700`/`0711` root so DAC stays the first layer.
//!
//! Profiles (rights are the best the kernel offers; the crate degrades unknown ones away):
//! - **trusted**: every right on every granted path: the user's normal abilities, minus the
//!   state directory;
//! - **restricted**: read, list, execute (and, from ABI 9, connect to pathname Unix sockets)
//!   on granted paths; every write right only beneath the workspace, the user's home and
//!   [`super::rules::RESTRICTED_WRITABLE`]; write+ioctl on [`super::rules::RESTRICTED_DEVICES`]; plus the
//!   ABI 6 scopes: no signals to processes outside the sandbox (the agent), no connections to
//!   abstract Unix sockets created outside it.

use std::path::{Component, Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, RestrictSelf, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope, ABI,
};
use serde::Serialize;

use super::rules::{WritableRoot, NEVER_WRITABLE, RESTRICTED_DEVICES, RESTRICTED_WRITABLE};
use super::{SandboxError, SandboxProfile};

/// What Landlock does for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LandlockApplied {
    /// A ruleset is enforced.
    Enforced {
        /// The kernel's Landlock ABI.
        kernel_abi: u32,
        /// The ABI whose rights the ruleset uses: min(kernel, newest this build knows).
        effective_abi: u32,
        /// Signal and abstract-socket scopes (restricted profile, ABI ≥ 6).
        scoped: bool,
        /// Paths that were to be granted but do not exist (e.g. a home of `/nonexistent`).
        missing: Vec<PathBuf>,
        /// Workspace or home paths refused write access ([`NEVER_WRITABLE`], e.g. a system
        /// user's home of `/` or `/usr/sbin`).
        refused: Vec<PathBuf>,
    },
    /// The kernel has no usable Landlock; the run proceeds with the other layers.
    Unsupported {
        /// Why (`not built in`, `disabled at boot`).
        reason: String,
    },
}

/// A prepared ruleset.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The ruleset (`None` when unsupported), its `no_new_privs` left to the child's plan.
    pub(crate) ruleset: Option<RulesetCreated>,
    /// The report.
    pub(crate) applied: LandlockApplied,
}

/// The places a run's ruleset depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Places<'a> {
    /// The agent's state directory: no access at all.
    pub(crate) state_dir: &'a Path,
    /// The workspace folder.
    pub(crate) workspace: &'a Path,
    /// The run user's home.
    pub(crate) home: &'a Path,
    /// What `/tmp` is in the run (the private one in the restricted world).
    pub(crate) tmp: &'a Path,
    /// What `/var/tmp` is in the run.
    pub(crate) var_tmp: &'a Path,
}

fn error(what: impl std::fmt::Display) -> SandboxError {
    SandboxError::Landlock {
        message: what.to_string(),
    }
}

/// The kernel's Landlock support: the ABI this build uses (the kernel's, or the crate's newest
/// when the kernel is newer) and the kernel's own ABI number, or why there is none.
///
/// The crate keeps its kernel probe private and reports it only in the status of a
/// restriction. A [`RestrictSelf`] with no flags and `no_new_privs` off restricts nothing (it
/// makes no `landlock_restrict_self` call, and no `prctl`): its status is the probe alone.
pub(crate) fn kernel_support() -> Result<(ABI, u32), String> {
    let status = RestrictSelf::default()
        .no_new_privs(false)
        .apply()
        .map_err(|e| e.to_string())?;
    match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => {
            let number = kernel_abi.map_or(effective_abi as i32, |k| k);
            Ok((effective_abi, u32::try_from(number).unwrap_or(0)))
        }
        LandlockStatus::NotImplemented => Err("not built into this kernel".to_owned()),
        LandlockStatus::NotEnabled => Err("disabled (not in the lsm= list)".to_owned()),
    }
}

/// Builds the ruleset for `profile` (reading the directories on the state directory's path).
pub(crate) fn prepare(
    profile: SandboxProfile,
    places: Places<'_>,
) -> Result<Prepared, SandboxError> {
    let (abi, kernel_abi) = match kernel_support() {
        Ok(support) => support,
        Err(reason) => {
            return Ok(Prepared {
                ruleset: None,
                applied: LandlockApplied::Unsupported { reason },
            });
        }
    };
    let all = AccessFs::from_all(abi);
    let restricted = profile == SandboxProfile::Restricted;
    let mut ruleset = Ruleset::default().handle_access(all).map_err(error)?;
    let scoped = restricted && !Scope::from_all(abi).is_empty();
    if scoped {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(error)?;
    }
    // `no_new_privs` is the child plan's decision (trusted runs go without it where the agent
    // has CAP_SYS_ADMIN), not the crate's default.
    let mut created = ruleset.create().map_err(error)?.no_new_privs(false);
    let state_dir = absolute(places.state_dir);
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    let read = if restricted {
        AccessFs::from_read(abi) | (all & AccessFs::ResolveUnix)
    } else {
        all
    };
    let mut grant = Grant {
        ruleset: &mut created,
        excluded: &state_dir,
        abi,
        missing: &mut missing,
    };
    grant.except(Path::new("/"), read)?;
    if restricted {
        let write = AccessFs::from_write(abi);
        for w in RESTRICTED_WRITABLE {
            let root = match w.root {
                WritableRoot::Workspace => places.workspace,
                WritableRoot::Home => places.home,
                WritableRoot::Tmp => places.tmp,
                WritableRoot::VarTmp => places.var_tmp,
                WritableRoot::Path(p) => Path::new(p),
            };
            let variable = matches!(w.root, WritableRoot::Workspace | WritableRoot::Home);
            if variable && never_writable(root) {
                refused.push(root.to_owned());
                continue;
            }
            // Read rights too: in the restricted world the private /tmp and the workspace are
            // mounts whose path walk no longer passes the real parents that the read grant
            // above covered (Landlock follows the mount, not the real location).
            grant.except(root, write | read)?;
        }
        let device = all & (AccessFs::WriteFile | AccessFs::IoctlDev | AccessFs::Truncate);
        for d in RESTRICTED_DEVICES {
            grant.except(Path::new(d.path), device)?;
        }
    }
    // With the kernel's support found above, `create` made a real ruleset (or failed); the
    // child refuses to run should it restrict nothing after all.
    Ok(Prepared {
        applied: LandlockApplied::Enforced {
            kernel_abi,
            effective_abi: abi as u32,
            scoped,
            missing,
            refused,
        },
        ruleset: Some(created),
    })
}

/// Whether `path` (canonical when it exists) is or lies beneath a [`NEVER_WRITABLE`] entry.
fn never_writable(path: &Path) -> bool {
    let path = absolute(path);
    NEVER_WRITABLE.iter().any(|(n, _)| {
        let n = Path::new(n);
        path == n || (n != Path::new("/") && path.starts_with(n))
    })
}

/// `path` made absolute and canonical when it exists (lexically cleaned otherwise).
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        let mut out = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::Normal(part) => out.push(part),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    })
}

/// The state of one ruleset build: where rules go, what is excluded, what was found missing.
struct Grant<'a> {
    ruleset: &'a mut RulesetCreated,
    excluded: &'a Path,
    abi: ABI,
    missing: &'a mut Vec<PathBuf>,
}

impl Grant<'_> {
    /// Grants `access` beneath `root`, except beneath the excluded path (see the module docs).
    fn except(&mut self, root: &Path, access: BitFlags<AccessFs>) -> Result<(), SandboxError> {
        let Ok(root) = std::fs::canonicalize(root) else {
            self.missing.push(root.to_owned());
            return Ok(());
        };
        let excluded = self.excluded;
        if root.starts_with(excluded) {
            return Ok(()); // entirely inside the state directory
        }
        if !excluded.starts_with(&root) {
            let is_dir = root.is_dir();
            return add(self.ruleset, &root, is_dir, access, self.abi);
        }
        let mut dir = root;
        while dir != excluded {
            let Some(step) = excluded
                .strip_prefix(&dir)
                .ok()
                .and_then(|rest| rest.components().next())
            else {
                break;
            };
            let next = dir.join(step);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => return Err(error(format!("cannot list {}: {e}", dir.display()))),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path == next {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue; // vanished
                };
                let is_dir = if kind.is_symlink() {
                    // Follow it to where it leads; skip any that lead onto the excluded path
                    // (Debian's /var/run -> /run would otherwise grant all of /run).
                    let Ok(target) = std::fs::canonicalize(&path) else {
                        continue; // dangling
                    };
                    if excluded.starts_with(&target) || target.starts_with(excluded) {
                        continue;
                    }
                    target.is_dir()
                } else {
                    kind.is_dir()
                };
                add(self.ruleset, &path, is_dir, access, self.abi)?;
            }
            dir = next;
        }
        Ok(())
    }
}

fn add(
    ruleset: &mut RulesetCreated,
    path: &Path,
    is_dir: bool,
    access: BitFlags<AccessFs>,
    abi: ABI,
) -> Result<(), SandboxError> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        // A file that vanished between listing and opening is not worth failing the run.
        Err(_) if !path.exists() => return Ok(()),
        Err(e) => return Err(error(e)),
    };
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    if access.is_empty() {
        return Ok(());
    }
    // `&mut RulesetCreated` implements the builder trait, so the ruleset is not moved.
    (&mut *ruleset)
        .add_rule(PathBeneath::new(fd, access))
        .map_err(error)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_cleaned() {
        assert_eq!(
            absolute(Path::new("/no/such/../dir/x")),
            PathBuf::from("/no/dir/x")
        );
        assert_eq!(
            absolute(Path::new("/tmp")),
            std::fs::canonicalize("/tmp").unwrap()
        );
    }

    #[test]
    fn system_directories_are_never_writable_homes() {
        for p in [
            "/",
            "/usr/sbin",
            "/bin",
            "/dev",
            "/var/lib/postgresql",
            "/run/user/1000",
        ] {
            assert!(never_writable(Path::new(p)), "{p}");
        }
        for p in [
            "/home/vscode",
            "/workspaces/app",
            "/tmp",
            "/var/tmp",
            "/root",
            "/nonexistent",
        ] {
            assert!(!never_writable(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn the_kernel_probe_restricts_nothing() {
        let before = rustix::thread::no_new_privs().unwrap();
        let support = kernel_support();
        assert_eq!(rustix::thread::no_new_privs().unwrap(), before);
        // Still unrestricted: a file no ruleset would grant by default is readable.
        std::fs::read_to_string("/proc/self/status").unwrap();
        if let Ok((abi, kernel)) = support {
            assert!(
                abi != ABI::Unsupported && abi as u32 <= kernel,
                "{abi:?} {kernel}"
            );
        }
    }
}
