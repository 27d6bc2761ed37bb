//! The seccomp filters, compiled once per [`super::Sandbox`] in the parent (never in the
//! child) by `seccompiler` from the rules in [`super::rules`], answering a denied call with
//! `EPERM`:
//!
//! ```text
//!  arch != the build's audit arch ─► KILL_PROCESS   (on x86-64: the i386 `int 0x80` ABI, whose
//!                                                    numbers differ and would slip past the list,
//!                                                    measured in `sandbox-ports.md` §2)
//!  nr in DENIED_SYSCALLS          ─► EPERM
//!  socket/socketpair              ─► EPERM if argument 0, read as the 32-bit int the kernel
//!                                    reads, is a denied family (AF_VSOCK)
//!  restricted only:
//!  unshare/clone/setns            ─► EPERM if the flags argument has CLONE_NEWUSER (setns: or
//!                                    is 0, "any type")
//!  anything else                  ─► ALLOW
//! ```
//!
//! plus, as programs of their own (a `seccompiler` filter has one answer and matches numbers
//! exactly): on x86-64, calls with the x32 bit (x32 ABI: the x86-64 audit arch, other numbers)
//! ─► EPERM, 7 instructions written here; restricted only, `clone3` ─► ENOSYS (its flags are out
//! of reach; libc falls back to `clone`). The kernel runs every installed program and the most
//! severe answer wins.
//!
//! The trusted profile gets no user-namespace gate, so a trusted command keeps user namespaces
//! (rootless containers, browser sandboxes). The tests prove, with a BPF interpreter, that the
//! programs together answer every syscall number of every ABI exactly as the rules say.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::rules::{
    DENIED_SOCKET_FAMILIES, DENIED_SYSCALLS, RESTRICTED_ENOSYS, RESTRICTED_USERNS_GATES,
    X32_SYSCALL_BIT,
};
use super::SandboxProfile;

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

// Classic BPF opcodes (linux/bpf_common.h), for the x32 program.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

/// `CLONE_NEWUSER` (the flag's value is the same on every architecture).
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The programs, ready to install in order: one list per profile.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    /// Trusted: the deny list with the arch check and socket families; the x32 refusal.
    pub(crate) trusted: Vec<Vec<libc::sock_filter>>,
    /// Restricted: the same with the user-namespace gates; `clone3` → `ENOSYS`.
    pub(crate) restricted: Vec<Vec<libc::sock_filter>>,
}

impl Filters {
    /// The programs a run of `profile` installs.
    pub(crate) fn for_profile(&self, profile: SandboxProfile) -> &[Vec<libc::sock_filter>] {
        match profile {
            SandboxProfile::Restricted => &self.restricted,
            SandboxProfile::Trusted => &self.trusted,
        }
    }
}

/// Why the filter could not be compiled (a bug in the rules table, or an unsupported CPU).
#[derive(Debug, Clone, thiserror::Error)]
#[error("seccomp filter: {0}")]
pub struct FilterError(String);

/// `SECCOMP_RET_ERRNO | EPERM`.
pub(crate) fn ret_eperm() -> u32 {
    ret_errno(libc::EPERM)
}

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// x86-64 only: calls with the x32 bit get `EPERM` (this VM's kernel has no x32; distributions
/// may). Any other arch passes (the main program kills it).
fn x32_program() -> Vec<libc::sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        libc::sock_filter {
            code: BPF_JMP_JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(BPF_LD_W_ABS, DATA_NR),
        libc::sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(BPF_RET_K, ret_eperm()),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

fn error(e: impl std::fmt::Display) -> FilterError {
    FilterError(e.to_string())
}

/// `arg`'s low 32 bits (what the kernel reads for an int) compared with `value`.
fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, FilterError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(error)
}

fn rule(condition: SeccompCondition) -> Result<SeccompRule, FilterError> {
    SeccompRule::new(vec![condition]).map_err(error)
}

/// One `seccompiler` program: `rules` answered with `errno`, anything else allowed, another
/// arch killed.
fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<Vec<libc::sock_filter>, FilterError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(error)?;
    let program: BpfProgram = filter.try_into().map_err(error)?;
    Ok(program
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

/// The deny list, the socket families and (restricted) the user-namespace gates.
fn main_program(arch: TargetArch, restricted: bool) -> Result<Vec<libc::sock_filter>, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|s| (s.nr, Vec::new())).collect();
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        let per_family = DENIED_SOCKET_FAMILIES
            .iter()
            .map(|f| rule(cond(0, SeccompCmpOp::Eq, u64::from(f.family))?))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(nr, per_family);
    }
    if restricted {
        for g in RESTRICTED_USERNS_GATES {
            let arg = u8::try_from(g.arg).map_err(error)?;
            let mut any = vec![rule(cond(
                arg,
                SeccompCmpOp::MaskedEq(CLONE_NEWUSER),
                CLONE_NEWUSER,
            )?)?];
            if g.zero_is_any {
                any.push(rule(cond(arg, SeccompCmpOp::Eq, 0)?)?);
            }
            if rules.insert(g.nr, any).is_some() {
                return Err(FilterError(format!(
                    "{} is both denied and gated",
                    g.name()
                )));
            }
        }
    }
    program(rules, libc::EPERM, arch)
}

/// Compiles the programs for the running architecture.
pub(crate) fn compile() -> Result<Filters, FilterError> {
    compile_for(std::env::consts::ARCH)
}

fn compile_for(arch: &str) -> Result<Filters, FilterError> {
    let target = TargetArch::try_from(arch)
        .map_err(|_| FilterError(format!("architecture {arch} is not supported")))?;
    let mut trusted = vec![main_program(target, false)?];
    let mut restricted = vec![main_program(target, true)?];
    if target == TargetArch::x86_64 {
        trusted.push(x32_program());
        restricted.push(x32_program());
    }
    let enosys = RESTRICTED_ENOSYS
        .iter()
        .map(|s| (s.nr, Vec::new()))
        .collect();
    restricted.push(program(enosys, libc::ENOSYS, target)?);
    Ok(Filters {
        trusted,
        restricted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the opcodes this module and seccompiler emit, so the
    /// programs' *meaning* is tested, not their bytes.
    fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => acc &= i.k, // ALU AND K
                0x05 => pc += i.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match i.code {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        0x35 => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                other => panic!("opcode {other:#x} not interpreted"),
            }
        }
    }

    /// The kernel's answer when several filters are installed: the most severe wins
    /// (`KILL_PROCESS` first, then the lower action value).
    fn most_severe(a: u32, b: u32) -> u32 {
        let rank = |v: u32| (v & libc::SECCOMP_RET_ACTION_FULL) as i32;
        if rank(a) <= rank(b) {
            a
        } else {
            b
        }
    }

    /// What the installed programs answer together.
    fn answer(programs: &[Vec<libc::sock_filter>], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        programs
            .iter()
            .map(|p| run(p, arch, nr, args))
            .fold(libc::SECCOMP_RET_ALLOW, most_severe)
    }

    /// What the rules say, for a run of `restricted` on a machine of audit arch `native`.
    fn expected(restricted: bool, native: u32, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let is = |n: i64| i64::from(nr) == n;
        if arch != native {
            return libc::SECCOMP_RET_KILL_PROCESS;
        }
        if native == AUDIT_ARCH_X86_64 && nr >= X32_SYSCALL_BIT {
            return ret_eperm();
        }
        if DENIED_SYSCALLS.iter().any(|s| is(s.nr)) {
            return ret_eperm();
        }
        if (is(libc::SYS_socket) || is(libc::SYS_socketpair))
            && DENIED_SOCKET_FAMILIES
                .iter()
                .any(|f| args[0] as u32 == f.family)
        {
            return ret_eperm();
        }
        if restricted {
            for g in RESTRICTED_USERNS_GATES {
                let flags = args[g.arg as usize] as u32 as u64;
                if is(g.nr) && (flags & CLONE_NEWUSER != 0 || (g.zero_is_any && flags == 0)) {
                    return ret_eperm();
                }
            }
            if RESTRICTED_ENOSYS.iter().any(|s| is(s.nr)) {
                return ret_errno(libc::ENOSYS);
            }
        }
        libc::SECCOMP_RET_ALLOW
    }

    const I386: u32 = 0x4000_0003;
    const AARCH64: u32 = 0xc000_00b7;

    /// Every syscall number (and the x32 range, and odd values) of every ABI, with arguments
    /// that probe the socket families and the namespace flags: the programs answer as the rules.
    #[test]
    fn the_programs_answer_every_call_as_the_rules_say() {
        let f = compile().unwrap();
        let native = match std::env::consts::ARCH {
            "x86_64" => AUDIT_ARCH_X86_64,
            "aarch64" => AARCH64,
            other => panic!("no audit arch for {other} in this test"),
        };
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend((0..1100).map(|n| X32_SYSCALL_BIT | n));
        numbers.extend([u32::MAX, X32_SYSCALL_BIT - 1, 0x8000_0000]);
        let newuser = CLONE_NEWUSER;
        let probes: Vec<u64> = (0..64)
            .chain([
                (7u64 << 32) | 40,
                u64::from(u32::MAX),
                1 << 40,
                newuser,
                newuser | libc::CLONE_NEWNS as u64,
                (1 << 40) | newuser,
                libc::CLONE_NEWNET as u64,
                libc::SIGCHLD as u64,
            ])
            .collect();
        for (restricted, programs) in [(false, &f.trusted), (true, &f.restricted)] {
            for arch in [native, I386, AARCH64, 0] {
                for &nr in &numbers {
                    let probing = nr < 1100;
                    let firsts: &[u64] = if probing { &probes } else { &[0] };
                    for &a0 in firsts {
                        for a1 in [0, newuser, libc::CLONE_NEWNET as u64] {
                            let a = [a0, a1, 0, 0, 0, 0];
                            assert_eq!(
                                answer(programs, arch, nr, a),
                                expected(restricted, native, arch, nr, a),
                                "restricted {restricted} arch {arch:#x} nr {nr:#x} args {a0:#x} {a1:#x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn named_cases() {
        let f = compile().unwrap();
        let native = if cfg!(target_arch = "x86_64") {
            AUDIT_ARCH_X86_64
        } else {
            AARCH64
        };
        let nr = |n: i64| u32::try_from(n).unwrap();
        let vsock = [40, 1, 0, 0, 0, 0];
        let dirty = [(7u64 << 32) | 40, 1, 0, 0, 0, 0];
        for programs in [&f.trusted, &f.restricted] {
            assert_eq!(
                answer(programs, native, nr(libc::SYS_socket), vsock),
                ret_eperm()
            );
            // The kernel reads the family as an int: high garbage bits must not hide it.
            assert_eq!(
                answer(programs, native, nr(libc::SYS_socket), dirty),
                ret_eperm()
            );
            assert_eq!(
                answer(programs, native, nr(libc::SYS_read), [0; 6]),
                libc::SECCOMP_RET_ALLOW
            );
        }
        let newuser = [CLONE_NEWUSER, 0, 0, 0, 0, 0];
        assert_eq!(
            answer(&f.restricted, native, nr(libc::SYS_unshare), newuser),
            ret_eperm()
        );
        assert_eq!(
            answer(&f.trusted, native, nr(libc::SYS_unshare), newuser),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            answer(&f.restricted, native, nr(libc::SYS_clone3), [0; 6]),
            ret_errno(libc::ENOSYS)
        );
        if native == AUDIT_ARCH_X86_64 {
            // Another ABI (i386 via int 0x80) is killed outright; x32 calls are refused.
            assert_eq!(
                answer(&f.trusted, I386, 20, [0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
            assert_eq!(
                answer(&f.trusted, native, X32_SYSCALL_BIT | 41, [0; 6]),
                ret_eperm()
            );
        }
        assert_eq!(f.for_profile(SandboxProfile::Restricted), &f.restricted[..]);
        assert_eq!(f.for_profile(SandboxProfile::Trusted), &f.trusted[..]);
    }

    #[test]
    fn every_architecture_compiles_and_an_unknown_one_is_named() {
        for arch in ["x86_64", "aarch64", "riscv64"] {
            compile_for(arch).unwrap();
        }
        assert!(compile_for("mips")
            .unwrap_err()
            .to_string()
            .contains("mips"));
    }
}
