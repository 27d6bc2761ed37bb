//! The seccomp filter, compiled once in the parent (never in the child).
//!
//! One classic-BPF program, built here from [`super::rules::DENIED_SYSCALLS`] and
//! [`super::rules::DENIED_SOCKET_FAMILIES`], answering a denied call with `EPERM`:
//!
//! ```text
//!  arch != the build's audit arch ─► KILL_PROCESS   (on x86-64: the i386 `int 0x80` ABI, whose
//!                                                    numbers differ and would slip past the list,
//!                                                    measured in `sandbox-ports.md` §2)
//!  nr has bit 30 (x86-64 only)    ─► EPERM          (x32 calls: x86-64 audit arch, other numbers;
//!                                                    this VM's kernel has no x32, distributions may)
//!  nr in the deny list            ─► EPERM          (a binary search over the sorted numbers)
//!  socket/socketpair              ─► EPERM if argument 0, read as the 32-bit int the kernel
//!                                    reads, is a denied family (AF_VSOCK); else ALLOW
//!  restricted only:
//!  unshare/clone/setns            ─► EPERM if the flags argument has CLONE_NEWUSER (setns: or
//!                                    is 0, "any type"); else ALLOW
//!  clone3                         ─► ENOSYS (flags out of reach; libc falls back to clone)
//!  anything else                  ─► ALLOW
//! ```
//!
//! Two programs come out, one per profile ([`Filters::for_profile`]): the trusted one without
//! the restricted-only branches, so a trusted command keeps user namespaces (rootless
//! containers, browser sandboxes) and pays for no check it does not get.
//!
//! Why hand-built and searched: the kernel JIT-compiles a filter and, to fill its per-syscall
//! "always allowed" cache, emulates it once for every syscall number of every ABI at install
//! time, in each child. The earlier pair of programs (169 instructions from `seccompiler`, a
//! linear chain, plus a 7-instruction x32 filter) cost 0.14 ms per spawn; this one is about a
//! third of the size and an allowed call passes ~13 instructions. Its meaning is tested against
//! that pair (the tests keep `seccompiler` as the oracle). The program is a plain
//! `Vec<libc::sock_filter>`; the child installs it with the raw `seccomp(2)` syscall (see
//! [`super::child`]).

use super::rules::{
    DENIED_SOCKET_FAMILIES, DENIED_SYSCALLS, RESTRICTED_ENOSYS, RESTRICTED_USERNS_GATES,
    X32_SYSCALL_BIT,
};
use super::SandboxProfile;

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_AARCH64`.
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_RISCV64`.
const AUDIT_ARCH_RISCV64: u32 = 0xc000_00f3;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of `args[0]` (a `u64` at offset 16).
const DATA_ARG0_LOW: u32 = if cfg!(target_endian = "little") {
    16
} else {
    20
};

// Classic BPF opcodes (linux/bpf_common.h): BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20), ...
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// Leaves of the search tree compare this many numbers one by one.
const LEAF: usize = 4;

/// `CLONE_NEWUSER` (the flag's value is the same on every architecture).
const CLONE_NEWUSER: u32 = 0x1000_0000;

/// The programs, ready to install: one per profile.
#[derive(Debug, Clone)]
pub struct Filters {
    /// Trusted: arch check, x32 refusal, deny list, socket families.
    pub program: Vec<libc::sock_filter>,
    /// Restricted: the same, plus the user-namespace gates and `clone3` → `ENOSYS`.
    pub restricted: Vec<libc::sock_filter>,
}

impl Filters {
    /// The program a run of `profile` installs.
    pub fn for_profile(&self, profile: SandboxProfile) -> &[libc::sock_filter] {
        match profile {
            SandboxProfile::Restricted => &self.restricted,
            SandboxProfile::Trusted => &self.program,
        }
    }
}

/// Why the filter could not be compiled (a bug in the rules table, or an unsupported CPU).
#[derive(Debug, Clone, thiserror::Error)]
#[error("seccomp filter: {0}")]
pub struct FilterError(String);

/// `SECCOMP_RET_ERRNO | EPERM`.
pub fn ret_eperm() -> u32 {
    ret_errno(libc::EPERM)
}

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// Offset of the low 32 bits of argument `n` in `struct seccomp_data` (flags and namespace
/// types are ints, or longs whose meaningful bits are all in the low word).
const fn arg_low(n: u32) -> u32 {
    DATA_ARG0_LOW + 8 * n
}

fn audit_arch(arch: &str) -> Result<u32, FilterError> {
    match arch {
        "x86_64" => Ok(AUDIT_ARCH_X86_64),
        "aarch64" => Ok(AUDIT_ARCH_AARCH64),
        "riscv64" => Ok(AUDIT_ARCH_RISCV64),
        other => Err(FilterError(format!(
            "architecture {other} is not supported"
        ))),
    }
}

/// Where a jump goes: a fixed label, or the instruction that starts a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Allow,
    Eperm,
    Socket,
    Block(usize),
}

/// An instruction whose jump targets are still symbolic.
#[derive(Debug, Clone, Copy)]
enum Op {
    Load(u32),
    Ret(u32),
    Jump(Target),
    If {
        code: u16,
        k: u32,
        yes: Target,
        no: Target,
    },
    /// Marks where block `n` starts (no instruction).
    Start(usize),
}

/// What a listed syscall number leads to.
#[derive(Debug, Clone, Copy)]
struct Listed {
    nr: u32,
    to: Target,
}

/// Emits a binary search over `list` (sorted): every listed number jumps to its target,
/// any other to `Allow`.
fn search(list: &[Listed], ops: &mut Vec<Op>, blocks: &mut usize) {
    if list.len() <= LEAF {
        for l in list {
            ops.push(Op::If {
                code: BPF_JMP_JEQ_K,
                k: l.nr,
                yes: l.to,
                no: Target::Next,
            });
        }
        ops.push(Op::Jump(Target::Allow));
        return;
    }
    let (low, high) = list.split_at(list.len() / 2);
    let block = *blocks;
    *blocks += 1;
    ops.push(Op::If {
        code: BPF_JMP_JGE_K,
        k: high[0].nr,
        yes: Target::Block(block),
        no: Target::Next,
    });
    search(low, ops, blocks);
    ops.push(Op::Start(block));
    search(high, ops, blocks);
}

/// Resolves the labels into forward offsets.
fn assemble(
    ops: &[Op],
    labels: [(Target, usize); 3],
) -> Result<Vec<libc::sock_filter>, FilterError> {
    // Index of each op once the `Start` markers are removed.
    let mut at = Vec::with_capacity(ops.len());
    let mut n = 0usize;
    let mut blocks = std::collections::HashMap::new();
    for op in ops {
        at.push(n);
        match op {
            Op::Start(b) => {
                blocks.insert(*b, n);
            }
            _ => n += 1,
        }
    }
    let resolve = |t: Target, from: usize| -> Result<usize, FilterError> {
        let to = match t {
            Target::Next => from + 1,
            Target::Block(b) => *blocks
                .get(&b)
                .ok_or_else(|| FilterError(format!("block {b} missing")))?,
            label => labels
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, i)| *i)
                .ok_or_else(|| FilterError(format!("label {label:?} missing")))?,
        };
        to.checked_sub(from + 1)
            .ok_or_else(|| FilterError("backward jump".into()))
    };
    let short = |off: usize| u8::try_from(off).map_err(|_| FilterError("jump too far".into()));
    let mut out = Vec::with_capacity(n);
    for (op, &i) in ops.iter().zip(&at) {
        let ins = match *op {
            Op::Start(_) => continue,
            Op::Load(offset) => stmt(BPF_LD_W_ABS, offset),
            Op::Ret(k) => stmt(BPF_RET_K, k),
            Op::Jump(t) => stmt(
                BPF_JMP_JA,
                u32::try_from(resolve(t, i)?).map_err(|_| FilterError("jump too far".into()))?,
            ),
            Op::If { code, k, yes, no } => libc::sock_filter {
                code,
                jt: short(resolve(yes, i)?)?,
                jf: short(resolve(no, i)?)?,
                k,
            },
        };
        out.push(ins);
    }
    Ok(out)
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Compiles the programs for the running architecture.
pub fn compile() -> Result<Filters, FilterError> {
    compile_for(std::env::consts::ARCH)
}

fn compile_for(arch: &str) -> Result<Filters, FilterError> {
    Ok(Filters {
        program: build(arch, false)?,
        restricted: build(arch, true)?,
    })
}

/// Number of real instructions in `ops` (the `Start` markers take no room).
fn here(ops: &[Op]) -> usize {
    ops.iter().filter(|o| !matches!(o, Op::Start(_))).count()
}

fn build(arch: &str, restricted: bool) -> Result<Vec<libc::sock_filter>, FilterError> {
    let audit = audit_arch(arch)?;
    let number = |nr: i64, what: &str| {
        u32::try_from(nr).map_err(|_| FilterError(format!("{what}: syscall number {nr}")))
    };
    let mut list = DENIED_SYSCALLS
        .iter()
        .map(|s| {
            Ok(Listed {
                nr: number(s.nr, s.name())?,
                to: Target::Eperm,
            })
        })
        .collect::<Result<Vec<_>, FilterError>>()?;
    for (nr, name) in [
        (libc::SYS_socket, "socket"),
        (libc::SYS_socketpair, "socketpair"),
    ] {
        list.push(Listed {
            nr: number(nr, name)?,
            to: Target::Socket,
        });
    }
    // Restricted-only branches get blocks of their own, numbered after the search's.
    const FIRST_EXTRA_BLOCK: usize = 1000;
    let gates = if restricted {
        RESTRICTED_USERNS_GATES
    } else {
        &[]
    };
    let enosys = if restricted { RESTRICTED_ENOSYS } else { &[] };
    for (i, g) in gates.iter().enumerate() {
        list.push(Listed {
            nr: number(g.nr, g.name())?,
            to: Target::Block(FIRST_EXTRA_BLOCK + i),
        });
    }
    for s in enosys {
        list.push(Listed {
            nr: number(s.nr, s.name())?,
            to: Target::Block(FIRST_EXTRA_BLOCK + gates.len()),
        });
    }
    list.sort_by_key(|l| l.nr);
    if list.windows(2).any(|w| w[0].nr == w[1].nr) {
        return Err(FilterError("a syscall is listed twice".into()));
    }
    let mut ops = vec![
        Op::Load(DATA_ARCH),
        Op::If {
            code: BPF_JMP_JEQ_K,
            k: audit,
            yes: Target::Block(0),
            no: Target::Next,
        },
        Op::Ret(libc::SECCOMP_RET_KILL_PROCESS),
        Op::Start(0),
        Op::Load(DATA_NR),
    ];
    if audit == AUDIT_ARCH_X86_64 {
        ops.push(Op::If {
            code: BPF_JMP_JGE_K,
            k: X32_SYSCALL_BIT,
            yes: Target::Eperm,
            no: Target::Next,
        });
    }
    let mut blocks = 1;
    search(&list, &mut ops, &mut blocks);
    if blocks >= FIRST_EXTRA_BLOCK {
        return Err(FilterError(
            "deny list too long for the block numbering".into(),
        ));
    }
    // Each branch ends in an answer or a jump to one: no block falls into the next.
    for (i, g) in gates.iter().enumerate() {
        ops.push(Op::Start(FIRST_EXTRA_BLOCK + i));
        ops.push(Op::Load(arg_low(g.arg)));
        if g.zero_is_any {
            ops.push(Op::If {
                code: BPF_JMP_JEQ_K,
                k: 0,
                yes: Target::Eperm,
                no: Target::Next,
            });
        }
        ops.push(Op::If {
            code: BPF_JMP_JSET_K,
            k: CLONE_NEWUSER,
            yes: Target::Eperm,
            no: Target::Allow,
        });
    }
    if !enosys.is_empty() {
        ops.push(Op::Start(FIRST_EXTRA_BLOCK + gates.len()));
        ops.push(Op::Ret(ret_errno(libc::ENOSYS)));
    }
    // The labels: socket family check, then the two answers.
    let socket_at = here(&ops);
    ops.push(Op::Load(DATA_ARG0_LOW));
    for f in DENIED_SOCKET_FAMILIES {
        ops.push(Op::If {
            code: BPF_JMP_JEQ_K,
            k: f.family,
            yes: Target::Eperm,
            no: Target::Next,
        });
    }
    let allow_at = socket_at + 1 + DENIED_SOCKET_FAMILIES.len();
    ops.push(Op::Ret(libc::SECCOMP_RET_ALLOW));
    ops.push(Op::Ret(ret_eperm()));
    assemble(
        &ops,
        [
            (Target::Socket, socket_at),
            (Target::Allow, allow_at),
            (Target::Eperm, allow_at + 1),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

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

    /// The pair of programs this module installed before (seccompiler's deny list with its
    /// arch check, plus the x32 filter): the oracle for the single program.
    fn previous_pair(arch: &str) -> (Vec<libc::sock_filter>, Vec<libc::sock_filter>) {
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
                    .unwrap();
                    SeccompRule::new(vec![cond]).unwrap()
                })
                .collect();
            rules.insert(nr, per_family);
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            TargetArch::try_from(arch).unwrap(),
        )
        .unwrap();
        let program: BpfProgram = filter.try_into().unwrap();
        let main = program
            .into_iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let x32 = vec![
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
        ];
        (main, x32)
    }

    const X86_64: u32 = AUDIT_ARCH_X86_64;
    const I386: u32 = 0x4000_0003;

    #[test]
    fn the_program_answers_exactly_as_the_previous_pair_did() {
        let arch = std::env::consts::ARCH;
        let native = audit_arch(arch).unwrap();
        let new = compile().unwrap().program;
        let (main, x32) = previous_pair(arch);
        assert!(
            new.len() * 2 < main.len(),
            "{} vs {}",
            new.len(),
            main.len()
        );
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend((0..1100).map(|n| X32_SYSCALL_BIT | n));
        numbers.extend([u32::MAX, X32_SYSCALL_BIT - 1, 0x8000_0000]);
        let families: Vec<u64> = (0..64)
            .chain([(7u64 << 32) | 40, u64::from(u32::MAX), 1 << 40])
            .collect();
        for arch in [native, I386, AUDIT_ARCH_AARCH64, 0] {
            for &nr in &numbers {
                let socket = [libc::SYS_socket, libc::SYS_socketpair]
                    .iter()
                    .any(|s| u32::try_from(*s).unwrap() == nr);
                let args: &[u64] = if socket { &families } else { &[0] };
                for &a0 in args {
                    let a = [a0, 1, 0, 0, 0, 0];
                    let old = most_severe(run(&main, arch, nr, a), run(&x32, arch, nr, a));
                    assert_eq!(
                        run(&new, arch, nr, a),
                        old,
                        "arch {arch:#x} nr {nr:#x} arg0 {a0:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_program_denies_the_list_and_only_vsock_sockets() {
        let f = compile().unwrap().program;
        let nr = |n: i64| u32::try_from(n).unwrap();
        let native = audit_arch(std::env::consts::ARCH).unwrap();
        for s in DENIED_SYSCALLS {
            assert_eq!(
                run(&f, native, nr(s.nr), [0; 6]),
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
                run(&f, native, nr(allowed), [0; 6]),
                libc::SECCOMP_RET_ALLOW
            );
        }
        for call in [libc::SYS_socket, libc::SYS_socketpair] {
            let vsock = [40, 1, 0, 0, 0, 0];
            assert_eq!(run(&f, native, nr(call), vsock), ret_eperm());
            // The kernel reads the family as an int: high garbage bits must not hide it.
            let dirty = [(7u64 << 32) | 40, 1, 0, 0, 0, 0];
            assert_eq!(run(&f, native, nr(call), dirty), ret_eperm());
            for family in [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ] {
                let args = [u64::try_from(family).unwrap(), 1, 0, 0, 0, 0];
                assert_eq!(run(&f, native, nr(call), args), libc::SECCOMP_RET_ALLOW);
            }
        }
        if native == X86_64 {
            // Another ABI (i386 via int 0x80) is killed outright; x32 calls are refused.
            assert_eq!(run(&f, I386, 20, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
            assert_eq!(run(&f, X86_64, X32_SYSCALL_BIT | 41, [0; 6]), ret_eperm());
            assert_eq!(run(&f, X86_64, 41, [0; 6]), libc::SECCOMP_RET_ALLOW);
        }
    }

    #[test]
    fn restricted_gates_user_namespaces_and_otherwise_answers_like_trusted() {
        let f = compile().unwrap();
        let (trusted, restricted) = (&f.program, &f.restricted);
        let native = audit_arch(std::env::consts::ARCH).unwrap();
        let nr = |n: i64| u32::try_from(n).unwrap();
        let newuser = u64::from(CLONE_NEWUSER);
        let newns = libc::CLONE_NEWNS as u64;
        let newnet = libc::CLONE_NEWNET as u64;
        let sigchld = libc::SIGCHLD as u64;
        // (call, args, restricted answer); trusted allows every one of them.
        let cases: &[(i64, [u64; 6], u32)] = &[
            (libc::SYS_unshare, [newuser, 0, 0, 0, 0, 0], ret_eperm()),
            (
                libc::SYS_unshare,
                [newuser | newns, 0, 0, 0, 0, 0],
                ret_eperm(),
            ),
            (
                libc::SYS_unshare,
                [(1 << 40) | newuser, 0, 0, 0, 0, 0],
                ret_eperm(),
            ),
            (
                libc::SYS_unshare,
                [newns, 0, 0, 0, 0, 0],
                libc::SECCOMP_RET_ALLOW,
            ),
            (libc::SYS_unshare, [0; 6], libc::SECCOMP_RET_ALLOW),
            (
                libc::SYS_clone,
                [sigchld, 0, 0, 0, 0, 0],
                libc::SECCOMP_RET_ALLOW,
            ),
            (
                libc::SYS_clone,
                [newuser | sigchld, 0, 0, 0, 0, 0],
                ret_eperm(),
            ),
            (libc::SYS_setns, [3, 0, 0, 0, 0, 0], ret_eperm()),
            (libc::SYS_setns, [3, newuser, 0, 0, 0, 0], ret_eperm()),
            (
                libc::SYS_setns,
                [3, newnet, 0, 0, 0, 0],
                libc::SECCOMP_RET_ALLOW,
            ),
            (libc::SYS_clone3, [0; 6], ret_errno(libc::ENOSYS)),
        ];
        for (call, args, want) in cases {
            let n = nr(*call);
            assert_eq!(run(restricted, native, n, *args), *want, "{call} {args:?}");
            assert_eq!(
                run(trusted, native, n, *args),
                libc::SECCOMP_RET_ALLOW,
                "trusted {call}"
            );
        }
        // Every other call (and every call of another ABI) gets the trusted program's answer.
        let gated: Vec<u32> = RESTRICTED_USERNS_GATES
            .iter()
            .map(|g| g.nr)
            .chain(RESTRICTED_ENOSYS.iter().map(|s| s.nr))
            .map(nr)
            .collect();
        for arch in [native, I386, 0] {
            for n in (0..1100).chain((0..1100).map(|n| X32_SYSCALL_BIT | n)) {
                if arch == native && gated.contains(&n) {
                    continue;
                }
                for a0 in [0u64, 40, newuser] {
                    let a = [a0, newuser, 0, 0, 0, 0];
                    assert_eq!(
                        run(restricted, arch, n, a),
                        run(trusted, arch, n, a),
                        "arch {arch:#x} nr {n} arg0 {a0:#x}"
                    );
                }
            }
        }
        assert_eq!(f.for_profile(SandboxProfile::Restricted), &restricted[..]);
        assert_eq!(f.for_profile(SandboxProfile::Trusted), &trusted[..]);
    }

    #[test]
    fn every_architecture_compiles_and_an_unknown_one_is_named() {
        for arch in ["x86_64", "aarch64", "riscv64"] {
            let f = compile_for(arch).unwrap();
            assert!(f.program.len() < 80, "{arch}: {}", f.program.len());
            assert!(f.restricted.len() < 100, "{arch}: {}", f.restricted.len());
        }
        assert!(compile_for("mips")
            .unwrap_err()
            .to_string()
            .contains("mips"));
    }
}
