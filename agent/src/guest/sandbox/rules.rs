//! The sandbox's rules as data: every syscall it denies, every place a restricted command may
//! write, every device it may use, each with the reason it is there.
//!
//! The code in the sibling modules only *interprets* these tables ([`super::seccomp`] compiles
//! [`DENIED_SYSCALLS`] and [`DENIED_SOCKET_FAMILIES`]; [`super::landlock`] turns
//! [`RESTRICTED_WRITABLE`] and [`RESTRICTED_DEVICES`] into Landlock rules), so a review of what
//! the sandbox allows is a review of this file. A unit test checks every entry is unique and has
//! a reason.

/// A syscall the seccomp filter answers with `EPERM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeniedSyscall {
    /// The `libc` constant (`SYS_ptrace`).
    pub(crate) constant: &'static str,
    /// Number on the build's architecture.
    pub(crate) nr: i64,
    /// Why repository code must not have it.
    pub(crate) reason: &'static str,
}

impl DeniedSyscall {
    /// Name as in `man 2` (`ptrace`).
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'static str {
        self.constant.trim_start_matches("SYS_")
    }
}

/// `deny!(SYS_name, "reason")`: the number comes from the same `libc` constant the name does.
macro_rules! deny {
    ($constant:ident, $reason:expr) => {
        DeniedSyscall {
            constant: stringify!($constant),
            nr: libc::$constant,
            reason: $reason,
        }
    };
}

/// Syscalls denied in both profiles (the kernel-attack and host-reach surface; DESIGN.md §2,
/// issue 6 "The sandbox"). The trusted profile keeps the user's normal abilities, and none of
/// these is a normal ability of a development command.
pub(crate) const DENIED_SYSCALLS: &[DeniedSyscall] = &[
    deny!(SYS_ptrace, "attaching to the agent or another process reads its memory (tokens, keys)"),
    deny!(SYS_process_vm_readv, "reads another process's memory without ptrace"),
    deny!(SYS_process_vm_writev, "writes another process's memory"),
    deny!(SYS_mount, "mounting could hide, shadow or expose the agent's state directory"),
    deny!(SYS_umount2, "unmounting could expose what a mount hides"),
    deny!(SYS_pivot_root, "changes the root file system under the agent"),
    deny!(SYS_fsopen, "new mount API: same as mount"),
    deny!(SYS_fsconfig, "new mount API: same as mount"),
    deny!(SYS_fsmount, "new mount API: same as mount"),
    deny!(SYS_fspick, "new mount API: same as mount"),
    deny!(SYS_move_mount, "new mount API: same as mount"),
    deny!(SYS_open_tree, "new mount API: clones mounts, same as mount"),
    deny!(SYS_mount_setattr, "new mount API: changes mount flags"),
    deny!(SYS_bpf, "loads programs into the kernel"),
    deny!(SYS_kexec_load, "replaces the running kernel"),
    deny!(SYS_kexec_file_load, "replaces the running kernel"),
    deny!(SYS_init_module, "loads kernel code"),
    deny!(SYS_finit_module, "loads kernel code"),
    deny!(SYS_delete_module, "unloads kernel code"),
    deny!(SYS_keyctl, "the kernel keyring can hold credentials of other sessions"),
    deny!(SYS_add_key, "kernel keyring"),
    deny!(SYS_request_key, "kernel keyring"),
    deny!(SYS_perf_event_open, "observes other processes and is a frequent kernel-exploit vector"),
    deny!(SYS_userfaultfd, "stalls kernel page faults at will, a common exploit primitive"),
    deny!(
        SYS_io_uring_setup,
        "io_uring performs socket() and open() without those syscalls, bypassing every argument filter here (measured: IORING_OP_SOCKET creates AF_VSOCK)"
    ),
    deny!(SYS_io_uring_enter, "io_uring: see io_uring_setup"),
    deny!(SYS_io_uring_register, "io_uring: see io_uring_setup"),
    deny!(SYS_open_by_handle_at, "opens files by handle, skipping path-based checks (Landlock)"),
    deny!(SYS_pidfd_getfd, "copies a descriptor out of another process (ptrace-class access)"),
    deny!(SYS_process_madvise, "acts on another process's memory (ptrace-class access)"),
];

/// A socket address family `socket(2)` and `socketpair(2)` refuse with `EPERM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeniedFamily {
    /// Name of the constant.
    pub(crate) name: &'static str,
    /// Its value (the first argument of `socket`).
    pub(crate) family: u32,
    /// Why.
    pub(crate) reason: &'static str,
}

/// Socket families denied in both profiles.
pub(crate) const DENIED_SOCKET_FAMILIES: &[DeniedFamily] = &[DeniedFamily {
    name: "AF_VSOCK",
    family: libc::AF_VSOCK as u32,
    reason: "vsock reaches the hypervisor host (CID 2) directly; repository code must never talk to the host",
}];

/// A call that can create or enter a user namespace, and which of its arguments says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsernsGate {
    /// The `libc` constant (`SYS_unshare`).
    pub(crate) constant: &'static str,
    /// Number on the build's architecture.
    pub(crate) nr: i64,
    /// Index of the argument holding the `CLONE_NEW*` flags.
    pub(crate) arg: u32,
    /// Whether 0 in that argument also means a user namespace (`setns`: 0 accepts any type).
    pub(crate) zero_is_any: bool,
    /// Why the restricted profile refuses it.
    pub(crate) reason: &'static str,
}

impl UsernsGate {
    /// Name as in `man 2`.
    pub(crate) fn name(&self) -> &'static str {
        self.constant.trim_start_matches("SYS_")
    }
}

/// `gate!(SYS_name, arg, zero_is_any, "reason")`.
macro_rules! gate {
    ($constant:ident, $arg:expr, $zero:expr, $reason:expr) => {
        UsernsGate {
            constant: stringify!($constant),
            nr: libc::$constant,
            arg: $arg,
            zero_is_any: $zero,
            reason: $reason,
        }
    };
}

/// Restricted profile only: these calls get `EPERM` when they would create or enter a user
/// namespace (`CLONE_NEWUSER` in the flags). The trusted profile keeps them: rootless
/// containers and browser sandboxes in a trusted repository's tests need them.
pub(crate) const RESTRICTED_USERNS_GATES: &[UsernsGate] = &[
    gate!(
        SYS_unshare,
        0,
        false,
        "a user namespace gives repository code every capability inside it, and with them mount, network and other namespace code of the kernel that an unprivileged process cannot otherwise reach (a common local-privilege-escalation path)"
    ),
    gate!(SYS_clone, 0, false, "the same user namespace, made by clone(CLONE_NEWUSER)"),
    gate!(
        SYS_setns,
        1,
        true,
        "entering a user namespace that another process of the same user made grants the same capabilities"
    ),
];

/// Restricted profile only: answered with `ENOSYS`. `clone3` passes its flags in a structure
/// the filter cannot read, so it cannot be gated like `clone`; `ENOSYS` makes the C library
/// (glibc since 2.34 tries `clone3` first) fall back to `clone`, whose flags the gate checks.
/// Docker's default seccomp profile answers `clone3` the same way.
pub(crate) const RESTRICTED_ENOSYS: &[DeniedSyscall] = &[deny!(
    SYS_clone3,
    "its flags (CLONE_NEWUSER) are out of the filter's reach; ENOSYS sends callers to clone"
)];

/// The lowest syscall number of the x32 ABI (`__X32_SYSCALL_BIT`): calls with this bit set come
/// from the x32 ABI, which has the x86-64 audit arch but other numbers, and would slip past a
/// deny-list keyed on x86-64 numbers. Refused with `EPERM` by a separate small filter.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Where a restricted command may write, besides its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritableRoot {
    /// The workspace folder of the run.
    Workspace,
    /// The run user's home directory.
    Home,
    /// The restricted identity's per-codespace `/tmp` (bound over `/tmp` in the run, so the
    /// rule names the directory it really is: Landlock rules follow inodes, not paths).
    Tmp,
    /// The restricted identity's per-codespace `/var/tmp`, likewise.
    VarTmp,
    /// A fixed path.
    Path(&'static str),
}

/// A writable place with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Writable {
    /// The place.
    pub(crate) root: WritableRoot,
    /// Why a lifecycle command needs to write there.
    pub(crate) reason: &'static str,
}

/// Directory trees a restricted command may write (full write rights beneath them). Everything
/// else it may only read and execute, and the agent's state directory not even that.
pub(crate) const RESTRICTED_WRITABLE: &[Writable] = &[
    Writable {
        root: WritableRoot::Workspace,
        reason: "lifecycle commands build and install dependencies in the repository",
    },
    Writable {
        root: WritableRoot::Home,
        reason: "package managers cache in ~/.cache, ~/.npm, ~/.cargo",
    },
    Writable {
        root: WritableRoot::Tmp,
        reason: "temporary files (mktemp), in the restricted identity's private /tmp",
    },
    Writable {
        root: WritableRoot::VarTmp,
        reason: "temporary files that survive a reboot, in its private /var/tmp",
    },
    Writable {
        root: WritableRoot::Path("/dev/shm"),
        reason: "POSIX shared memory (python multiprocessing, chromium)",
    },
];

/// Directories a restricted command never gets write access to through the workspace or the
/// run user's home. System users have homes like `/`, `/bin`, `/usr/sbin` or `/dev`, and such a
/// home would otherwise lift the write restriction for a whole system tree. Matched on the
/// canonical path: the directory itself and everything beneath it (`/` only itself). The fixed
/// [`RESTRICTED_WRITABLE`] entries are reviewed in this file and may lie beneath (`/dev/shm`).
pub(crate) const NEVER_WRITABLE: &[(&str, &str)] = &[
    (
        "/",
        "a home or workspace of `/` would make everything writable",
    ),
    ("/bin", "system programs"),
    ("/sbin", "system programs"),
    ("/usr", "system programs and libraries"),
    ("/lib", "system libraries"),
    ("/lib32", "system libraries"),
    ("/lib64", "system libraries"),
    ("/libx32", "system libraries"),
    ("/etc", "system configuration"),
    ("/boot", "the kernel and boot loader"),
    ("/proc", "kernel and process state"),
    ("/sys", "kernel state, cgroups"),
    (
        "/dev",
        "devices (the few safe ones are in RESTRICTED_DEVICES)",
    ),
    ("/run", "runtime state of system services and the agent"),
    ("/var/lib", "state of system services"),
];

/// A device a restricted command may open for writing and use `ioctl` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Device {
    /// Path.
    pub(crate) path: &'static str,
    /// Why.
    pub(crate) reason: &'static str,
}

/// Devices writable in the restricted profile (Landlock would otherwise refuse `> /dev/null`).
pub(crate) const RESTRICTED_DEVICES: &[Device] = &[
    Device {
        path: "/dev/null",
        reason: "`cmd >/dev/null` is everywhere in scripts",
    },
    Device {
        path: "/dev/zero",
        reason: "read/write sink used by dd and mmap",
    },
    Device {
        path: "/dev/full",
        reason: "tests of write errors",
    },
    Device {
        path: "/dev/tty",
        reason: "programs that open the controlling terminal (none in the agent, but harmless)",
    },
    Device {
        path: "/dev/ptmx",
        reason: "pseudo-terminals (script, expect, test runners)",
    },
    Device {
        path: "/dev/pts",
        reason: "pseudo-terminal slaves",
    },
];

/// The variables every sandboxed command starts with, in this order; the caller's variables
/// follow. A caller variable may replace `LANG`, never `PATH` or `SHELL` (dangerous names).
pub(crate) const BASE_ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "the configured search path, never the caller's"),
    ("HOME", "the run user's home directory from /etc/passwd"),
    ("USER", "the run user's name"),
    ("SHELL", "the run user's login shell from /etc/passwd"),
    ("LANG", "the configured locale"),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_entry_is_unique_and_has_a_reason() {
        let mut names = HashSet::new();
        let mut numbers = HashSet::new();
        for s in DENIED_SYSCALLS {
            assert!(names.insert(s.name()), "{} twice", s.name());
            assert!(numbers.insert(s.nr), "{} shares a number", s.name());
            assert!(s.reason.len() > 10, "{} needs a reason", s.name());
        }
        // The restricted-only calls are numbers of their own too: one syscall, one answer.
        for g in RESTRICTED_USERNS_GATES {
            assert!(names.insert(g.name()), "{} twice", g.name());
            assert!(numbers.insert(g.nr), "{} shares a number", g.name());
            assert!(g.reason.len() > 10 && g.arg < 6, "{}", g.name());
        }
        for s in RESTRICTED_ENOSYS {
            assert!(names.insert(s.name()), "{} twice", s.name());
            assert!(numbers.insert(s.nr), "{} shares a number", s.name());
            assert!(s.reason.len() > 10, "{} needs a reason", s.name());
        }
        for f in DENIED_SOCKET_FAMILIES {
            assert!(!f.reason.is_empty());
        }
        assert_eq!(DENIED_SOCKET_FAMILIES[0].family, 40);
        let mut devices = HashSet::new();
        for d in RESTRICTED_DEVICES {
            assert!(devices.insert(d.path) && d.path.starts_with("/dev/"));
            assert!(!d.reason.is_empty());
        }
        for w in RESTRICTED_WRITABLE {
            assert!(!w.reason.is_empty());
            if let WritableRoot::Path(p) = w.root {
                assert!(p.starts_with('/') && p.len() > 1, "{p}");
            }
        }
    }

    #[test]
    fn the_issue_list_is_covered() {
        let required = [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "mount",
            "umount2",
            "pivot_root",
            "bpf",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "keyctl",
            "add_key",
            "request_key",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ];
        for name in required {
            assert!(
                DENIED_SYSCALLS.iter().any(|s| s.name() == name),
                "{name} missing"
            );
        }
    }
}
