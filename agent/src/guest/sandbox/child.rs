//! The code that runs in the child between `fork` and `execve` (std's `pre_exec` hook): raw
//! syscalls on data prepared in the parent, nothing else.
//!
//! Only the forking thread exists in the child; a lock another thread held stays locked forever
//! and the allocator may be mid-update, so this module must not allocate, lock, log or touch
//! `std::env` (measured: a `pre_exec` that took a logger mutex deadlocked 25 of 40 spawns,
//! `sandbox-ports.md` "Tokio and fork"). Every step is one syscall (rustix's, or `libc::syscall`
//! where rustix has none) on fields of [`ChildPlan`]; a failure returns `io::Error::last_os_error()` (no allocation), which the
//! parent gets as the spawn error, and the command is never executed.
//!
//! Order, and why:
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

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};

use rustix::process::{Gid, Resource, Rlimit, Uid};

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;

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
    /// The Landlock ruleset, if the kernel has Landlock.
    pub(crate) landlock: Option<OwnedFd>,
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

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Soft and hard limit `value` (the command cannot raise it again).
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    Ok(rustix::process::setrlimit(resource, limit)?)
}

impl ChildPlan {
    /// Runs steps 1–9 of the module docs. Async-signal-safe: no allocation, no locks (rustix
    /// calls are raw syscalls; its errors convert to `io::Error` without allocating).
    pub(crate) fn apply(&self) -> io::Result<()> {
        rustix::process::setsid()?;
        for fd in &self.cgroup_procs {
            if rustix::io::write(fd, b"0")? != 1 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        set_limit(Resource::Nofile, self.nofile)?;
        set_limit(Resource::Core, 0)?;
        set_limit(Resource::Nproc, self.nproc)?;
        // SAFETY: close_range(3, ~0, CLOSE_RANGE_CLOEXEC) takes no pointers and only marks
        // descriptors close-on-exec; it closes none, so no `OwnedFd` is invalidated.
        let closed = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if closed < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return Err(io::Error::last_os_error());
        }
        if let Some(world) = &self.world {
            world.enter()?;
        }
        if self.no_new_privs {
            rustix::thread::set_no_new_privs(true)?;
        }
        if let Some(ruleset) = &self.landlock {
            // SAFETY: landlock_restrict_self(fd, 0) takes a descriptor the plan owns (open for
            // the duration of the call) and no pointers.
            check(unsafe {
                libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    ruleset.as_raw_fd(),
                    0 as libc::c_uint,
                )
            })?;
        }
        for program in &self.seccomp {
            let prog = libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr().cast_mut(),
            };
            // SAFETY: seccomp(SET_MODE_FILTER, 0, &prog): `prog` points to `program`'s
            // `len` instructions, owned by the plan and alive for the call; the kernel copies
            // them and writes nothing.
            check(unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &prog as *const libc::sock_fprog,
                )
            })?;
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

/// Makes `command` run `plan` between fork and exec.
pub(crate) fn install(command: &mut tokio::process::Command, plan: ChildPlan) {
    // SAFETY: `ChildPlan::apply` is async-signal-safe: raw syscalls on data owned by the plan,
    // no allocation, no locks (see the module docs). The plan moves into the closure, so its
    // descriptors stay open until the command is dropped after the fork.
    unsafe {
        command.pre_exec(move || plan.apply());
    }
}

/// The kernel's Landlock ABI version (`Err(ENOSYS)` without Landlock, `EOPNOTSUPP` when it
/// is disabled at boot).
pub(crate) fn landlock_abi() -> io::Result<u32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) reads no memory and returns a number.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    })?;
    u32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn landlock_abi_is_a_version_or_a_clear_errno() {
        match landlock_abi() {
            Ok(abi) => assert!(abi >= 1),
            Err(e) => assert!(matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EOPNOTSUPP)
            )),
        }
    }
}
