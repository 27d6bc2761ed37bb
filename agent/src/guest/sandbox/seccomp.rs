//! The seccomp filters, compiled once in the parent (never after fork).
//!
//! Two classic-BPF programs are installed, both answering a denied call with `EPERM`:
//!
//! 1. **main** (built by `seccompiler` from [`super::rules::DENIED_SYSCALLS`] and
//!    [`super::rules::DENIED_SOCKET_FAMILIES`]): an architecture check that *kills* the process on any
//!    call from another ABI (on x86-64 that is the i386 `int 0x80` ABI, whose numbers differ and
//!    would slip past the list — measured in `sandbox-ports.md` §2), then the deny list, with
//!    `socket`/`socketpair` denied only when argument 0 (as a 32-bit value, as the kernel reads
//!    it) is a denied family;
//! 2. **x32** (hand-written, x86-64 only): x32 calls carry the x86-64 audit arch but set bit 30
//!    of the number, so the main filter's arch check lets them through with numbers it does not
//!    list; this filter refuses every call with that bit set. (This VM's kernel has no x32; a
//!    distribution kernel may.)
//!
//! The kernel runs every installed filter and the most severe answer wins, so the order of the
//! two does not matter. The programs are plain `Vec<libc::sock_filter>`; the child installs them
//! with the raw `seccomp(2)` syscall (see [`super::child`]).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::rules::{DENIED_SOCKET_FAMILIES, DENIED_SYSCALLS, X32_SYSCALL_BIT};

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

// Classic BPF opcodes (linux/bpf_common.h): BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20), ...
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

/// Both programs, ready to install.
#[derive(Debug, Clone)]
pub struct Filters {
    /// The deny list with its arch check.
    pub main: Vec<libc::sock_filter>,
    /// The x32 refusal (`None` off x86-64).
    pub x32: Option<Vec<libc::sock_filter>>,
}

/// Why the filter could not be compiled (a bug in the rules table, or an unsupported CPU).
#[derive(Debug, Clone, thiserror::Error)]
#[error("seccomp filter: {0}")]
pub struct FilterError(String);

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// `SECCOMP_RET_ERRNO | EPERM`.
pub fn ret_eperm() -> u32 {
    libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA)
}

/// Compiles both programs for the running architecture.
pub fn compile() -> Result<Filters, FilterError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| FilterError(format!("architecture {}: {e}", std::env::consts::ARCH)))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|s| (s.nr, Vec::new())).collect();
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        let per_family = DENIED_SOCKET_FAMILIES
            .iter()
            .map(|f| {
                let cond = SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    u64::from(f.family),
                )
                .map_err(|e| FilterError(format!("{}: {e}", f.name)))?;
                SeccompRule::new(vec![cond]).map_err(|e| FilterError(format!("{}: {e}", f.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(nr, per_family);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| FilterError(e.to_string()))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| FilterError(e.to_string()))?;
    let main = program
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let x32 = (std::env::consts::ARCH == "x86_64").then(x32_program);
    Ok(Filters { main, x32 })
}

/// `if arch == x86_64 && nr >= X32_SYSCALL_BIT { EPERM } else { ALLOW }`.
fn x32_program() -> Vec<libc::sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, ret_eperm()),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the opcodes seccompiler and [`x32_program`] emit, so the
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

    const X86_64: u32 = AUDIT_ARCH_X86_64;
    const I386: u32 = 0x4000_0003;

    #[test]
    fn main_program_denies_the_list_and_only_vsock_sockets() {
        let f = compile().unwrap();
        let nr = |n: i64| u32::try_from(n).unwrap();
        for s in DENIED_SYSCALLS {
            assert_eq!(
                run(&f.main, X86_64, nr(s.nr), [0; 6]),
                ret_eperm(),
                "{}",
                s.name()
            );
        }
        for allowed in [
            libc::SYS_read,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_setresuid,
        ] {
            assert_eq!(
                run(&f.main, X86_64, nr(allowed), [0; 6]),
                libc::SECCOMP_RET_ALLOW
            );
        }
        for call in [libc::SYS_socket, libc::SYS_socketpair] {
            let vsock = [40, 1, 0, 0, 0, 0];
            assert_eq!(run(&f.main, X86_64, nr(call), vsock), ret_eperm());
            // The kernel reads the family as an int: high garbage bits must not hide it.
            let dirty = [(7u64 << 32) | 40, 1, 0, 0, 0, 0];
            assert_eq!(run(&f.main, X86_64, nr(call), dirty), ret_eperm());
            for family in [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ] {
                let args = [u64::try_from(family).unwrap(), 1, 0, 0, 0, 0];
                assert_eq!(
                    run(&f.main, X86_64, nr(call), args),
                    libc::SECCOMP_RET_ALLOW
                );
            }
        }
        // Another ABI (i386 via int 0x80) is killed outright.
        assert_eq!(
            run(&f.main, I386, 20, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn x32_program_refuses_the_x32_bit_only() {
        let f = compile().unwrap();
        let Some(x32) = f.x32 else {
            return; // not x86-64: nothing to check
        };
        assert_eq!(run(&x32, X86_64, X32_SYSCALL_BIT | 41, [0; 6]), ret_eperm());
        assert_eq!(run(&x32, X86_64, 41, [0; 6]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&x32, I386, X32_SYSCALL_BIT | 1, [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
    }
}
