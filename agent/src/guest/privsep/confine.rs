//! How the network-facing process gives up what it must not have, right after the fork and
//! before it reads a byte from anyone.
//!
//! Order matters, each step needs what the previous one leaves:
//!
//! 1. **Bounding set**: every capability but `CAP_DAC_READ_SEARCH` leaves it (needs
//!    `CAP_SETPCAP`, so while still root). Nothing this process or a thread of it does can get
//!    another one back.
//! 2. **Identity**: supplementary groups cleared, then gid and uid (real, effective, saved) set to
//!    the network user (`network_user`, default `codespace-agent`), with `PR_SET_KEEPCAPS` so
//!    the permitted set survives the uid change long enough for step 3.
//! 3. **Capabilities**: permitted and effective = `CAP_DAC_READ_SEARCH` only, inheritable and
//!    ambient empty. It reads the creator's workspace (devcontainer.json in a 0700 folder) and
//!    nothing is ever written with it; it is not one of the capabilities that change an
//!    identity, mount, trace or override a write permission.
//! 4. **`PR_SET_DUMPABLE` 0** (no core, no ptrace by the same uid) and **`no_new_privs`**.
//! 5. **seccomp**: the sandbox's trusted filter (the kernel attack surface, the foreign ABIs,
//!    `AF_VSOCK` sockets) and the network side's own ([`network_filter`]): no `execve`, no new
//!    process (threads only), no identity or capability change, no mount or namespace calls,
//!    no ptrace, and sockets only of the families it uses (IPv4, IPv6, netlink).
//! 6. **Name** `csa-network` (what `ps`, the VM test and an operator look for); forked by the
//!    privileged side, the parent's death as `SIGTERM` (set last: a credential change clears it).
//!
//! A network side that a unit started unprivileged (`User=`, an empty bounding set) does steps
//! 3 to 6 only ([`confine_started_unprivileged`]).

use std::collections::BTreeMap;

use rustix::thread::{CapabilitySet, CapabilitySets};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

use crate::guest::vault::envfile::Owner;

/// The process name the network side takes.
pub(crate) const NETWORK_NAME: &str = "csa-network";

/// Why confinement failed (the process must then exit: it never runs unconfined).
#[derive(Debug, thiserror::Error)]
#[error("cannot confine the network side: {step}: {source}")]
pub struct ConfineError {
    step: &'static str,
    source: std::io::Error,
}

fn step(step: &'static str) -> impl FnOnce(rustix::io::Errno) -> ConfineError {
    move |e| ConfineError {
        step,
        source: e.into(),
    }
}

/// Confines the calling process (single-threaded, still root, just forked by the privileged
/// side, whose pid is `parent`) to `user`.
pub fn confine(user: Owner, parent: rustix::process::Pid) -> Result<(), ConfineError> {
    assume_identity(user)?;
    restrict()?;
    // Last: a credential change clears it.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .map_err(step("PR_SET_PDEATHSIG"))?;
    if rustix::process::getppid() != Some(parent) {
        return Err(ConfineError {
            step: "parent check",
            source: std::io::Error::other("the privileged side exited during start"),
        });
    }
    Ok(())
}

/// Confines a network side that was started unprivileged (by a unit with `User=`, which also
/// emptied the bounding set): of its capabilities at most `CAP_DAC_READ_SEARCH` stays, then
/// steps 4 to 6. Refuses to run as root.
pub(crate) fn confine_started_unprivileged() -> Result<(), ConfineError> {
    use rustix::thread as t;
    if rustix::process::geteuid().is_root() {
        return Err(ConfineError {
            step: "identity",
            source: std::io::Error::other(
                "started as root: the network side must run as its own user (User= in the unit)",
            ),
        });
    }
    let have = t::capabilities(None).map_err(step("capget"))?;
    let kept = have.permitted & CapabilitySet::DAC_READ_SEARCH;
    // The unit's filter refuses capset (@privileged); it is needed only to drop something. (An
    // inheritable bit, which AmbientCapabilities= sets, gives nothing once the ambient set is
    // empty: this process cannot exec.)
    if have.permitted != kept || have.effective != kept {
        set_only(kept)?;
    } else {
        t::clear_ambient_capability_set().map_err(step("clear the ambient set"))?;
    }
    restrict()
}

/// Permitted and effective = `kept`; inheritable and ambient empty.
fn set_only(kept: CapabilitySet) -> Result<(), ConfineError> {
    use rustix::thread as t;
    t::set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(step("capset"))?;
    t::clear_ambient_capability_set().map_err(step("clear the ambient set"))
}

/// Steps 1 to 3 (root only).
fn assume_identity(user: Owner) -> Result<(), ConfineError> {
    use rustix::process::{Gid, Uid};
    use rustix::thread as t;
    // 1. Every capability except DAC_READ_SEARCH leaves the bounding set (one this kernel does
    //    not know is not there to leave).
    for cap in CapabilitySet::all().iter() {
        if cap == CapabilitySet::DAC_READ_SEARCH {
            continue;
        }
        match t::remove_capability_from_bounding_set(cap) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(step("drop the bounding set")(e)),
        }
    }
    // 2. Identity.
    t::set_keep_capabilities(true).map_err(step("PR_SET_KEEPCAPS"))?;
    t::set_thread_groups(&[]).map_err(step("setgroups"))?;
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    t::set_thread_res_gid(gid, gid, gid).map_err(step("setresgid"))?;
    t::set_thread_res_uid(uid, uid, uid).map_err(step("setresuid"))?;
    t::set_keep_capabilities(false).map_err(step("PR_SET_KEEPCAPS"))?;
    // 3. Capabilities.
    set_only(CapabilitySet::DAC_READ_SEARCH)
}

/// Steps 4 to 6: no dumps, no new privileges, the filters, the name.
fn restrict() -> Result<(), ConfineError> {
    use rustix::thread as t;
    // 4. No dumps, no new privileges.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(step("PR_SET_DUMPABLE"))?;
    t::set_no_new_privs(true).map_err(step("PR_SET_NO_NEW_PRIVS"))?;
    // 5. seccomp: the sandbox's trusted program, then this side's own.
    let trusted = crate::guest::sandbox::seccomp::compile().map_err(|e| ConfineError {
        step: "compile the seccomp filter",
        source: std::io::Error::other(e.to_string()),
    })?;
    let sandbox = trusted.trusted.iter().map(|program| {
        let program: Vec<seccompiler::sock_filter> = program
            .iter()
            .map(|i| seccompiler::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        ("the trusted filter", program)
    });
    let own = [
        ("the network filter", network_filter()?),
        ("the thread filter", clone3_filter()?),
    ];
    for (what, program) in sandbox.chain(own) {
        seccompiler::apply_filter(&program).map_err(|e| ConfineError {
            step: what,
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    // 6. Name.
    let name = std::ffi::CString::new(NETWORK_NAME).unwrap_or_default();
    t::set_name(&name).map_err(step("PR_SET_NAME"))
}

/// Calls the network side never makes, answered `EPERM`.
fn denied() -> Vec<i64> {
    vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_setuid,
        libc::SYS_setgid,
        libc::SYS_setreuid,
        libc::SYS_setregid,
        libc::SYS_setresuid,
        libc::SYS_setresgid,
        libc::SYS_setgroups,
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_capset,
        libc::SYS_mknod,
        libc::SYS_mknodat,
        libc::SYS_chown,
        libc::SYS_fchown,
        libc::SYS_lchown,
        libc::SYS_fchownat,
    ]
}

fn compile(filter: SeccompFilter) -> Result<seccompiler::BpfProgram, ConfineError> {
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| ConfineError {
            step: "compile the network filter",
            source: std::io::Error::other(e.to_string()),
        })
}

fn arch() -> Result<seccompiler::TargetArch, ConfineError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| ConfineError {
            step: "seccomp architecture",
            source: std::io::Error::other(e.to_string()),
        })
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| ConfineError {
        step: "seccomp condition",
        source: std::io::Error::other(e.to_string()),
    })
}

/// The network side's own filter: [`denied`], `clone` without `CLONE_THREAD` (a new process;
/// threads are fine), and `socket` of any family but `AF_INET`, `AF_INET6`, `AF_NETLINK`.
pub(crate) fn network_filter() -> Result<seccompiler::BpfProgram, ConfineError> {
    let rule = |conds: Vec<SeccompCondition>| {
        SeccompRule::new(conds).map_err(|e| ConfineError {
            step: "seccomp rule",
            source: std::io::Error::other(e.to_string()),
        })
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|nr| (nr, Vec::new())).collect();
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )?])?],
    );
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
            cond(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
            cond(0, SeccompCmpOp::Ne, libc::AF_NETLINK as u64)?,
        ])?],
    );
    filter(rules, libc::EPERM, "build the network filter")
}

/// `clone3` answers `ENOSYS`: its flags are in memory a filter cannot read, and glibc then
/// creates threads with `clone`, which [`network_filter`] checks.
fn clone3_filter() -> Result<seccompiler::BpfProgram, ConfineError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    filter(rules, libc::ENOSYS, "build the thread filter")
}

/// A program answering `errno` to the calls `rules` match and allowing everything else.
fn filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    step: &'static str,
) -> Result<seccompiler::BpfProgram, ConfineError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch()?,
    )
    .map_err(|e| ConfineError {
        step,
        source: std::io::Error::other(e.to_string()),
    })?;
    compile(filter)
}
