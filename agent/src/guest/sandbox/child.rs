//! The code that runs in a child between `fork` and `execve` (std's `pre_exec` hook): system
//! calls on data prepared in the parent, nothing else. All of it sits behind one sealed trait,
//! [`PreExec`], and one `pre_exec` ([`install`]).
//!
//! Only the forking thread exists in the child; a lock another thread held stays locked forever
//! and the allocator may be mid-update, so this module must not allocate, lock, log or touch
//! `std::env` (measured: a `pre_exec` that took a logger mutex deadlocked 25 of 40 spawns,
//! `sandbox-ports.md` "Tokio and fork"). Every step is one system call through a safe,
//! allocation-free wrapper (rustix's, the `landlock` crate's `restrict_self`, or
//! [`super::syscalls`] where neither has one) on fields of the plan; a failure returns the errno
//! as an `io::Error` (no allocation), which the parent gets as the spawn error, and the program
//! is never executed.
//!
//! Three plans exist: [`ChildPlan`], a sandboxed command (below); [`JoinNetwork`], `ip` run
//! inside the restricted network namespace ([`super::netns`]); [`HoldUserNamespace`], a child
//! that only holds a new user namespace while the parent maps it ([`super::world`]).
//!
//! [`ChildPlan`]'s order, and why:
//!
//! 1. `setsid`: its own session and process group (pgid = pid), so a timeout can signal the
//!    whole group, and no controlling terminal;
//! 2. join the run's cgroups (write `"0"` to each pre-opened `cgroup.procs`, v1 `tasks`, see
//!    [`super::cgroup::RunCgroup::procs_fds`]): as root, before
//!    anything runs, so there is no window in which the command is outside its limits;
//! 3. rlimits `NOFILE`, `CORE`=0, `NPROC` (hard = soft, so the command cannot raise them);
//! 4. mark every inherited descriptor above 2 close-on-exec (`close_range`), so a descriptor
//!    some other thread opened without `O_CLOEXEC` does not leak into repository code;
//! 5. restricted only: enter the restricted principal's world ([`super::world`]: mount and
//!    IPC namespaces, private `/tmp`, idmapped workspace, read-only `.git` config and hooks,
//!    the state directory covered), still as root and before Landlock, which forbids mounts;
//!    then `no_new_privs` (restricted, or whenever the agent is not root): setuid binaries and file
//!    capabilities no longer raise privileges;
//! 6. Landlock, then 7. seccomp: both *before* dropping root, because installing them needs
//!    either `no_new_privs` or `CAP_SYS_ADMIN`, and the trusted profile must not get
//!    `no_new_privs` (the creator may use sudo there). Neither layer affects the identity switch
//!    that follows (no denied syscall and no file access is involved), and both are inherited
//!    across `execve` and cannot be removed, sudo or not;
//! 8. `setgroups([])`, `setresgid`, `setresuid` (groups and gid first: after `setresuid` the
//!    process no longer has `CAP_SETGID`), then prove the switch is final: `setresuid(0, 0, 0)`
//!    must fail for a non-root user;
//! 9. `chdir` as the run user (its own permissions decide).
//!
//! std then installs the prepared environment and calls `execve`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};

use landlock::{RulesetCreated, RulesetError, RulesetStatus};
use rustix::process::{Gid, Resource, Rlimit, Uid};

use super::syscalls;

/// Everything the child does, prepared by the parent.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// Open `cgroup.procs` of each hierarchy of the run (`O_WRONLY | O_CLOEXEC`).
    pub(crate) cgroup_procs: Vec<OwnedFd>,
    /// `RLIMIT_NOFILE`.
    pub(crate) nofile: u64,
    /// `RLIMIT_NPROC`.
    pub(crate) nproc: u64,
    /// Set `no_new_privs`.
    pub(crate) no_new_privs: bool,
    /// The Landlock ruleset, if the kernel has Landlock (made with the crate's own
    /// `no_new_privs` off: step 5 decides that). Taken by the one call of [`PreExec::apply`].
    pub(crate) landlock: Option<RulesetCreated>,
    /// Seccomp programs, installed in order.
    pub(crate) seccomp: Vec<Vec<libc::sock_filter>>,
    /// Run user.
    pub(crate) uid: u32,
    /// Run group.
    pub(crate) gid: u32,
    /// Working directory.
    pub(crate) cwd: CString,
    /// Restricted only: the restricted principal's world to enter ([`super::world`]).
    pub(crate) world: Option<super::world::WorldPlan>,
}

/// Soft and hard limit `value` (the command cannot raise it again).
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    Ok(rustix::process::setrlimit(resource, limit)?)
}

/// The errno of a failed `landlock_restrict_self`, without allocating (`EPERM` when the crate
/// reports a failure that carries none).
fn landlock_errno(e: &RulesetError) -> io::Error {
    use landlock::RestrictSelfError;
    match e {
        RulesetError::RestrictSelf(RestrictSelfError::RestrictSelfCall { source, .. })
        | RulesetError::RestrictSelf(RestrictSelfError::SetNoNewPrivsCall { source, .. }) => {
            source.raw_os_error().map_or_else(
                || io::Error::from_raw_os_error(libc::EPERM),
                io::Error::from_raw_os_error,
            )
        }
        _ => io::Error::from_raw_os_error(libc::EPERM),
    }
}

/// Work a child does between `fork` and `execve`, prepared by the parent.
///
/// Sealed: only the plans of this module implement it, and each one's `apply` calls nothing
/// but async-signal-safe system call wrappers (rustix's, [`syscalls`], std's `io::Error` from
/// an errno) on data it owns: no allocation, no lock, no logging. That is what makes the one
/// `pre_exec` in [`install`] sound, whichever plan it runs.
pub(crate) trait PreExec: sealed::Sealed + Send + Sync + 'static {
    /// Runs in the child. An error aborts the spawn: std sends the errno to the parent, whose
    /// `spawn` returns it, and the program is never executed.
    fn apply(&mut self) -> io::Result<()>;
}

mod sealed {
    /// Implemented only in this module (see [`super::PreExec`]).
    pub trait Sealed {}
    impl Sealed for super::ChildPlan {}
    impl Sealed for super::JoinNetwork {}
    impl Sealed for super::HoldUserNamespace {}
}

impl PreExec for ChildPlan {
    /// Runs steps 1–9 of the module docs.
    fn apply(&mut self) -> io::Result<()> {
        rustix::process::setsid()?;
        for fd in &self.cgroup_procs {
            if rustix::io::write(fd, b"0")? != 1 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        set_limit(Resource::Nofile, self.nofile)?;
        set_limit(Resource::Core, 0)?;
        set_limit(Resource::Nproc, self.nproc)?;
        match syscalls::cloexec_from(3) {
            // Before Linux 5.11; every descriptor the agent opens is close-on-exec anyway.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            other => other?,
        }
        if let Some(world) = &self.world {
            world.enter()?;
        }
        if self.no_new_privs {
            rustix::thread::set_no_new_privs(true)?;
        }
        if let Some(ruleset) = self.landlock.take() {
            let status = ruleset.restrict_self().map_err(|e| landlock_errno(&e))?;
            if status.ruleset == RulesetStatus::NotEnforced {
                // The parent reported it enforced: never run with less than the report says.
                return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
            }
        }
        for program in &self.seccomp {
            syscalls::install_seccomp_filter(program)?;
        }
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        if !uid.is_root()
            && rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok()
        {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        rustix::process::chdir(self.cwd.as_c_str())?;
        Ok(())
    }
}

/// A child that runs a tool (`ip`) inside a network namespace: `setns` to it, then exec.
#[derive(Debug)]
pub(crate) struct JoinNetwork(pub std::sync::Arc<OwnedFd>);

impl PreExec for JoinNetwork {
    fn apply(&mut self) -> io::Result<()> {
        rustix::thread::move_into_link_name_space(
            self.0.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }
}

/// A child that never executes anything: it enters a new user namespace, writes its pid on
/// `ready` (4 bytes, native order: the parent's `spawn` has not returned it yet), and waits for
/// one byte (or end of file) on `hold` (the parent has written the namespace's maps and opened
/// it: [`super::world`]'s idmapping), then ends the spawn with [`HoldUserNamespace::RELEASED`].
/// std's fork makes the child single-threaded, as the kernel requires of a process entering a
/// user namespace.
#[derive(Debug)]
pub(crate) struct HoldUserNamespace {
    /// Gets the child's pid once the namespace exists.
    pub(crate) ready: OwnedFd,
    /// Read once: the release.
    pub(crate) hold: OwnedFd,
}

impl HoldUserNamespace {
    /// The errno the spawn fails with when the holder ended as planned.
    pub(crate) const RELEASED: i32 = libc::ECANCELED;
}

impl PreExec for HoldUserNamespace {
    fn apply(&mut self) -> io::Result<()> {
        syscalls::unshare(rustix::thread::UnshareFlags::NEWUSER)?;
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        rustix::io::write(&self.ready, &pid.to_ne_bytes())?;
        let mut byte = [0u8; 1];
        rustix::io::read(&self.hold, &mut byte)?;
        Err(io::Error::from_raw_os_error(Self::RELEASED))
    }
}

/// Makes `command` run `plan` between fork and exec: the crate's one `pre_exec`.
#[allow(unsafe_code)] // std's `pre_exec` is `unsafe`; see SAFETY.
pub(crate) fn install(command: &mut std::process::Command, mut plan: impl PreExec) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `PreExec` is sealed to the plans above, whose `apply` only makes raw system calls
    // through async-signal-safe wrappers on data the plan owns: no allocation, no locks, no
    // logging (see the trait). The plan moves into the closure, so its descriptors stay open
    // until the command is dropped after the fork.
    unsafe {
        command.pre_exec(move || plan.apply());
    }
}
