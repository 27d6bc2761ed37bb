//! `clone3(2)` with a child function on a stack of its own, for the two flags only `clone3`
//! has: `CLONE_INTO_CGROUP` (the child is born in the run's v2 cgroup, one migration fewer)
//! and `CLONE_CLEAR_SIGHAND` (every handled signal is reset to its default by the kernel, no
//! `sigaction` loop in the child). glibc exports no `clone3` wrapper, and a `CLONE_VM` child
//! cannot return from a plain `syscall()` (it would return on an empty stack), so the call is a
//! few instructions of inline assembly doing what glibc's `clone()` does: in the child
//! (`rax == 0`, `rsp` = the new stack's top) call `f(arg)`, then `exit` with its result.
//! x86-64 only; elsewhere (and on kernels before 5.7) [`super::vfork`] uses glibc's `clone()`.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

/// Reset handled signals to their defaults in the child (Linux 5.5).
pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
/// Start the child in the cgroup `CloneArgs::cgroup` refers to (Linux 5.7).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (version 2, 88 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CloneArgs {
    /// `CLONE_*` flags.
    pub flags: u64,
    /// Where the kernel stores the pidfd (`CLONE_PIDFD`).
    pub pidfd: u64,
    /// Unused here.
    pub child_tid: u64,
    /// Unused here.
    pub parent_tid: u64,
    /// Signal to the parent at exit (`SIGCHLD`).
    pub exit_signal: u64,
    /// Lowest address of the child's stack.
    pub stack: u64,
    /// Its size.
    pub stack_size: u64,
    /// Unused here.
    pub tls: u64,
    /// Unused here.
    pub set_tid: u64,
    /// Unused here.
    pub set_tid_size: u64,
    /// A descriptor of a cgroup2 directory (`CLONE_INTO_CGROUP`).
    pub cgroup: u64,
}

/// Calls `clone3(args)`; the child runs `f(arg)` on `args`' stack and exits with its result.
/// Returns the child's pid, or `-errno`.
///
/// # Safety
///
/// `args.stack`/`stack_size` must describe writable memory that outlives the child's use of
/// it, with `stack + stack_size` 16-byte aligned; with `CLONE_VM`, `f` must follow the rules
/// of a child that shares the caller's memory (see [`super::vfork`]) and should end the
/// process itself.
#[cfg(target_arch = "x86_64")]
pub unsafe fn clone3(
    args: &CloneArgs,
    f: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: see the function's contract. The parent path only runs `syscall` (clobbering
    // rax, rcx, r11); the child path never comes back into this frame.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // The child: rsp is the top of its stack; r12/r13 survived the syscall.
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 60", // SYS_exit
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") f,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_block_is_the_kernels_version_2() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }
}
