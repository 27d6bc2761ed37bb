//! Starting the sandboxed child without copying the agent: `clone(CLONE_VM | CLONE_VFORK |
//! CLONE_PIDFD)`, the way `posix_spawn` starts processes, with [`ChildPlan::apply`] run in
//! the child before `execve`. On x86-64 the call is `clone3` ([`super::clone3`]) with
//! `CLONE_INTO_CGROUP` (born in the run's v2 cgroup) and `CLONE_CLEAR_SIGHAND` (the kernel
//! resets the handlers), 30 µs less; glibc's `clone()` otherwise, or when `clone3` refuses.
//!
//! Why not `fork`: std's `Command` must fork when a `pre_exec` hook is set, and forking the
//! agent (a multi-threaded tokio process) copies its page tables, write-protects its memory
//! (every page the agent's threads write afterwards takes a copy-on-write fault) and makes the
//! child's `execve` tear the copy down again: about half a millisecond per spawn here, more than
//! everything else the sandbox does. With `CLONE_VM` the child borrows the agent's memory until
//! `execve` and the spawning thread sleeps until then (`CLONE_VFORK`).
//!
//! What sharing the memory requires of the child, and how it is met:
//!
//! - it must not allocate, lock or touch state other threads use: it runs the same raw-syscall
//!   code as the fork path ([`super::child`]), plus `dup2`, signal resets and `execve` on
//!   arrays the parent built (argv, envp, the `PATH` candidates);
//! - no signal handler of the agent may run on the shared memory: the parent blocks every
//!   signal around `clone`; the child (or the kernel, `CLONE_CLEAR_SIGHAND`) resets each
//!   handled signal to its default, the child resets `SIGPIPE` (which the agent ignores) too,
//!   then unblocks all signals, as std does for a child;
//! - it writes only its own stack (a buffer the parent allocated) and one error slot the
//!   parent reads after `clone` returns (the errno of the step that failed; 0 after `execve`).
//!
//! Identity: the child switches to the run user while it still shares the agent's memory. That
//! memory is non-dumpable (the agent marks itself so at start, `guest::system::protect_memory`,
//! and a credential change would do it anyway), so no process of the run user can read it
//! through the child (ptrace and `/proc/PID/mem` need a dumpable memory). Signals from
//! the run user's other processes cannot reach the child either: it is root until the switch,
//! and by then inside its own Landlock domain (restricted: signal scoping).
//!
//! The exit is read through the pidfd (readable when the process ends) and reaped with
//! `waitid(P_PID, pid)`; holding the unreaped child pins its pid, so it cannot be reused.
//! Kernels without `CLONE_PIDFD` (before 5.2) make [`spawn`] answer [`Unsupported`] and the
//! caller falls back to std's fork path.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;

use super::child::ChildPlan;

/// The child's stack (its frames are a few hundred bytes; generous for safety).
const STACK_BYTES: usize = 64 * 1024;
/// `_NSIG` on Linux: signals are 1..=64.
const NSIG: c_int = 65;
/// execvp's default search path when the environment has no `PATH`.
const DEFAULT_SEARCH: &str = "/bin:/usr/bin";

/// The kernel lacks `CLONE_PIDFD`: use the fork path.
#[derive(Debug)]
pub struct Unsupported;

/// `argv`, `envp` and the paths to try, as the child needs them (no allocation after clone).
#[derive(Debug)]
pub struct ExecPlan {
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    /// `/bin/sh CANDIDATE args...` for a candidate without a recognised format (ENOEXEC), as
    /// execvp does; slot 1 is filled in by the child.
    sh_ptrs: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same struct, which move with it
// (a CString's heap buffer does not move when the CString does).
unsafe impl Send for ExecPlan {}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl ExecPlan {
    /// `program` is looked up like execvp does, in `env`'s `PATH`, when it has no `/`.
    pub fn new(program: &str, args: &[String], env: &[(String, String)]) -> io::Result<Self> {
        let candidates = if program.contains('/') {
            vec![cstring(program)?]
        } else {
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map_or(DEFAULT_SEARCH, |(_, v)| v.as_str());
            path.split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() { "." } else { dir };
                    cstring(&format!("{}/{program}", dir.trim_end_matches('/')))
                })
                .collect::<io::Result<Vec<_>>>()?
        };
        let argv: Vec<CString> = std::iter::once(program)
            .chain(args.iter().map(String::as_str))
            .map(cstring)
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<io::Result<_>>()?;
        let ptrs = |v: &[CString]| -> Vec<*const c_char> {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let argv_ptrs = ptrs(&argv);
        let mut sh_ptrs = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
        sh_ptrs.extend_from_slice(&argv_ptrs[1..]); // the arguments and the final NULL
        Ok(Self {
            candidates,
            envp_ptrs: ptrs(&envp),
            argv_ptrs,
            sh_ptrs,
            _argv: argv,
            _envp: envp,
        })
    }
}

/// What the child reads (through the shared memory) and the one thing it writes.
struct ChildArgs<'a> {
    plan: &'a ChildPlan,
    exec: &'a ExecPlan,
    sh_ptrs: *mut *const c_char,
    stdio: [RawFd; 3],
    /// The kernel reset the handlers (`CLONE_CLEAR_SIGHAND`).
    sighand_cleared: Cell<bool>,
    /// Cgroups the child was born in (`CLONE_INTO_CGROUP`: the v2 one, first in the plan).
    cgroups_joined: Cell<usize>,
    error: AtomicI32,
}

fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// Runs in the child. Returns only the errno of the step that failed.
fn child(a: &ChildArgs<'_>) -> c_int {
    // SAFETY (every block): syscalls on data owned by the suspended parent frame or this
    // stack; no allocation, no lock, no handler of the agent can run (all signals blocked).
    unsafe {
        let first = if a.sighand_cleared.get() {
            libc::SIGPIPE // the only one left to do: ignored signals stay ignored
        } else {
            1
        };
        for sig in first..NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue; // the C library's reserved signals
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || (sig == libc::SIGPIPE && old.sa_sigaction == libc::SIG_IGN) {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                if libc::sigaction(sig, &dfl, std::ptr::null_mut()) != 0 {
                    return errno();
                }
            }
            if a.sighand_cleared.get() {
                break;
            }
        }
        for (target, fd) in (0..).zip(a.stdio) {
            if libc::dup2(fd, target) < 0 {
                return errno();
            }
        }
        if let Err(e) = a.plan.apply_joined(a.cgroups_joined.get()) {
            return e.raw_os_error().unwrap_or(libc::EINVAL);
        }
        let empty: u64 = 0;
        let unblocked = libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        );
        if unblocked < 0 {
            return errno();
        }
        let argv = a.exec.argv_ptrs.as_ptr();
        let envp = a.exec.envp_ptrs.as_ptr();
        let mut denied = false;
        let mut last = libc::ENOENT;
        for candidate in &a.exec.candidates {
            libc::execve(candidate.as_ptr(), argv, envp);
            last = errno();
            match last {
                libc::ENOEXEC => {
                    *a.sh_ptrs.add(1) = candidate.as_ptr();
                    libc::execve(c"/bin/sh".as_ptr(), a.sh_ptrs.cast_const(), envp);
                    return errno();
                }
                libc::EACCES => denied = true,
                libc::ENOENT
                | libc::ENOTDIR
                | libc::ELOOP
                | libc::ENAMETOOLONG
                | libc::ESTALE
                | libc::ENODEV
                | libc::ETIMEDOUT => {}
                _ => return last,
            }
        }
        if denied {
            libc::EACCES
        } else {
            last
        }
    }
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of the parent frame in `spawn`, alive until the child
    // has exec'd or exited (CLONE_VFORK keeps that frame suspended).
    let a = unsafe { &*(arg as *const ChildArgs<'_>) };
    let failed = child(a);
    a.error.store(failed.max(1), Ordering::Relaxed);
    // SAFETY: _exit ends only this process; no destructors or atexit handlers run.
    unsafe { libc::_exit(127) }
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// Its pidfd (readable once it has exited).
    pub pidfd: OwnedFd,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// `fd` moved above the standard descriptors (so the child's `dup2`s cannot overwrite one
/// another's source).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Starts the child, born in the cgroup `into` refers to when given (a cgroup2 directory whose
/// `cgroup.procs` is the first of the plan's). Blocks this thread until the child has exec'd or
/// failed (tens of microseconds to the `execve`).
pub fn spawn(
    exec: &mut ExecPlan,
    plan: &ChildPlan,
    into: Option<BorrowedFd<'_>>,
) -> Result<io::Result<Spawned>, Unsupported> {
    let stdio = (|| -> io::Result<_> {
        let null = std::fs::File::open("/dev/null")?; // O_CLOEXEC
        Ok((above_stdio(null.into())?, pipe()?, pipe()?))
    })();
    let (stdin, (out_r, out_w), (err_r, err_w)) = match stdio {
        Ok(fds) => fds,
        Err(e) => return Ok(Err(e)),
    };
    let mut stack = vec![0u8; STACK_BYTES];
    // SAFETY: one past the end of the buffer, rounded down to 16 bytes (the ABI's alignment);
    // the stack grows down from there inside the buffer.
    let top = unsafe { stack.as_mut_ptr().add(STACK_BYTES) };
    let top = (top as usize & !15) as *mut c_void;
    let sh_ptrs = exec.sh_ptrs.as_mut_ptr();
    let args = ChildArgs {
        plan,
        exec,
        sh_ptrs,
        stdio: [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        sighand_cleared: Cell::new(false),
        cgroups_joined: Cell::new(0),
        error: AtomicI32::new(0),
    };
    let arg = &args as *const ChildArgs<'_> as *mut c_void;
    let mut pidfd: c_int = -1;
    // SAFETY: sigset operations on local sets; clone3/clone run `child_main` on `stack` with
    // `args`, both alive until they return (CLONE_VFORK); the child follows the rules in the
    // module docs. The mask is restored on every path.
    let (pid, clone_error) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut pid = -1;
        #[cfg(target_arch = "x86_64")]
        {
            use super::clone3::{self, CloneArgs, CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP};
            let base = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64;
            let mut flags = base | CLONE_CLEAR_SIGHAND;
            if into.is_some() {
                flags |= CLONE_INTO_CGROUP;
            }
            let c = CloneArgs {
                flags,
                pidfd: &mut pidfd as *mut c_int as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.as_mut_ptr() as u64,
                stack_size: (top as u64) - (stack.as_mut_ptr() as u64),
                cgroup: into.map_or(0, |fd| fd.as_raw_fd() as u64),
                ..CloneArgs::default()
            };
            args.sighand_cleared.set(true);
            args.cgroups_joined.set(usize::from(into.is_some()));
            let ret = clone3::clone3(&c, child_main, arg);
            if ret > 0 {
                pid = ret as c_int;
            } else {
                // Before Linux 5.7, or the cgroup refused: glibc's clone() does it all.
                args.sighand_cleared.set(false);
                args.cgroups_joined.set(0);
            }
        }
        if pid < 0 {
            pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                arg,
                &mut pidfd as *mut c_int,
            );
        }
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (pid, clone_error)
    };
    drop(stack);
    if pid < 0 {
        return match clone_error.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS) => Err(Unsupported),
            _ => Ok(Err(clone_error)),
        };
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor (O_CLOEXEC) that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let failed = args.error.load(Ordering::Relaxed);
    if failed != 0 {
        // It has exited already (_exit after the failed step): reap it.
        let _ = reap(pid, true);
        return Ok(Err(io::Error::from_raw_os_error(failed)));
    }
    Ok(Ok(Spawned {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
    }))
}

/// `waitid(P_PID, pid, WEXITED)`, without blocking unless `block`: `None` while it runs.
fn reap(pid: i32, block: bool) -> io::Result<Option<ExitStatus>> {
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitid fills the zeroed siginfo it is given.
        let (ret, info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let ret = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags);
            (ret, info)
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the union fields are the SIGCHLD ones after a successful waitid.
        let (who, status) = unsafe { (info.si_pid(), info.si_status()) };
        if who == 0 {
            return Ok(None);
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f, // CLD_KILLED
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}

/// A child started by [`spawn`], waited for through its pidfd.
#[derive(Debug)]
pub struct PidfdChild {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl PidfdChild {
    /// Registers the pidfd with the runtime (must be called inside one).
    pub fn new(pid: i32, pidfd: OwnedFd) -> io::Result<Self> {
        // SAFETY: an `OwnedFd` is a valid open descriptor that stays the same until the
        // `AsyncFd` (which owns it) drops it.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)?;
        Ok(Self {
            pid,
            pidfd,
            status: None,
        })
    }

    /// Waits for the exit and reaps. Cancel-safe; returns the same status when called again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            if let Some(status) = reap(self.pid, false)? {
                self.status = Some(status);
                continue;
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Whether it has been reaped.
    pub fn reaped(&self) -> bool {
        self.status.is_some()
    }
}

impl Drop for PidfdChild {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Not reaped: reap it when it ends so no zombie stays (the caller has killed it).
        let pid = self.pid;
        if reap(pid, false).ok().flatten().is_none() {
            std::thread::spawn(move || {
                let _ = reap(pid, true);
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_searched_like_execvp() {
        let env = vec![("PATH".to_owned(), "/usr/bin:/bin/".to_owned())];
        let p = ExecPlan::new("true", &["x".into()], &env).unwrap();
        let c: Vec<_> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/usr/bin/true", "/bin/true"]);
        assert_eq!(p.argv_ptrs.len(), 3);
        assert!(p.argv_ptrs[2].is_null());
        assert_eq!(p.sh_ptrs.len(), 4); // sh, slot, x, NULL
        let p = ExecPlan::new("./run", &[], &[]).unwrap();
        assert_eq!(p.candidates.len(), 1);
        let p = ExecPlan::new("ls", &[], &[]).unwrap();
        assert_eq!(p.candidates.len(), 2); // /bin, /usr/bin
        assert!(ExecPlan::new("a\0b", &[], &[]).is_err());
    }
}
