//! Facts and hooks from the operating system: boot id, machine id, `sd_notify`, keeping the
//! agent's memory private ([`protect_memory`]) and giving freed memory back
//! ([`release_free_memory`]).
//!
//! `sd_notify` is a single datagram to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name when it starts with `@`); writing it ourselves avoids a dependency for twelve
//! lines of code.

use std::path::Path;

/// The kernel's boot id (changes at every boot), or `unknown`.
pub(crate) fn boot_id() -> String {
    read_trimmed(Path::new("/proc/sys/kernel/random/boot_id")).unwrap_or_else(|| "unknown".into())
}

/// The configured agent id, else `/etc/machine-id`, else the host name, else `unknown`.
pub(crate) fn agent_id(configured: Option<&str>) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| read_trimmed(Path::new("/etc/machine-id")))
        .or_else(|| read_trimmed(Path::new("/proc/sys/kernel/hostname")))
        .unwrap_or_else(|| "unknown".into())
}

/// Gives the heap's free pages back to the kernel. glibc returns memory on its own only from
/// the top of the heap, so after a burst (a request flood) one live allocation high up keeps
/// megabytes of freed memory resident; `malloc_trim` releases the free pages wherever they are.
/// It walks the heap (about a millisecond at tens of megabytes): call it on the blocking pool,
/// now and then (the heartbeat's tick), not per request. A no-op on other C libraries.
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)] // a libc call; see SAFETY.
    // SAFETY: `malloc_trim` takes a padding size and only releases pages that the allocator
    // holds free; it is thread-safe (it takes each arena's lock) and touches no Rust object.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the agent's memory, which holds the token, the secrets and the keys, out of core dumps
/// and away from other processes of its user: `RLIMIT_CORE` 0 (no core file; systemd-coredump
/// and apport honour it for piped patterns too) and the process marked non-dumpable (no core
/// even where `fs.suid_dumpable` is 2, and `ptrace`, `/proc/PID/mem`, `environ` and `fd` need
/// `CAP_SYS_PTRACE`). The agent's release build aborts on panic, so without this a crash would
/// write every secret it holds to disk. Called first thing by `codespace-agent run`. Children
/// get a dumpable memory again at `execve`; their core limit stays 0, as the sandbox sets it
/// for lifecycle commands anyway. Returns what could not be set (nothing, on Linux).
pub fn protect_memory() -> Vec<(&'static str, std::io::Error)> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let mut failed = Vec::new();
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, no_core) {
        failed.push(("RLIMIT_CORE", e.into()));
    }
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        failed.push(("PR_SET_DUMPABLE", e.into()));
    }
    failed
}

fn read_trimmed(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Outcome of a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Notified {
    /// Not running under a service manager that asked for it.
    NotRequested,
    /// Sent.
    Sent,
}

/// Sends `state` (e.g. `READY=1`) to the service manager if `$NOTIFY_SOCKET` is set.
pub fn sd_notify(state: &str) -> std::io::Result<Notified> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(Notified::NotRequested);
    };
    notify_to(&target.to_string_lossy(), state)?;
    Ok(Notified::Sent)
}

/// The datagram socket notifications leave from, made before the network side confines itself
/// (its filter refuses new Unix sockets): see [`prepare_notify`]. Process-wide on purpose: the
/// service manager talks to the process, and the socket must exist before confinement.
static NOTIFY: std::sync::OnceLock<std::os::unix::net::UnixDatagram> = std::sync::OnceLock::new();

/// Makes the notification socket now, while this process may still create Unix sockets.
pub(crate) fn prepare_notify() -> std::io::Result<()> {
    if NOTIFY.get().is_none() {
        let _ = NOTIFY.set(std::os::unix::net::UnixDatagram::unbound()?);
    }
    Ok(())
}

/// Sends one notification datagram to `target`.
pub(crate) fn notify_to(target: &str, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let made;
    let sock = match NOTIFY.get() {
        Some(s) => s,
        None => {
            made = UnixDatagram::unbound()?;
            &made
        }
    };
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), target)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_empty() {
        assert!(!boot_id().is_empty());
        assert_eq!(agent_id(Some("vm-7")), "vm-7");
        assert!(!agent_id(None).is_empty());
    }

    #[test]
    fn notification_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        notify_to(p.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
