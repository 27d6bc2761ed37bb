//! The four Linux calls the sandbox needs that neither std nor `rustix` offers as safe
//! functions, each wrapped once here so that every caller (the parent's preparation, the child
//! between fork and exec) is safe code.
//!
//! | call | why there is no safe wrapper to reuse | what this module guarantees |
//! |---|---|---|
//! | `unshare` | rustix's is `unshare_unsafe`: with `CLONE_FILES` a thread would lose descriptors that other code owns | `CLONE_FILES` is refused (`EINVAL`) |
//! | `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)` | not in rustix (closing descriptors others own is unsound; marking them close-on-exec is not) | only the close-on-exec form exists |
//! | `mount_setattr` | not in rustix | borrowed descriptors in, `struct mount_attr` built here |
//! | `seccomp(SECCOMP_SET_MODE_FILTER)` | not in rustix; `seccompiler::apply_filter` also sets `no_new_privs`, which trusted runs must not get (sudo) | the program is a slice borrowed for the call |
//!
//! Each is one raw system call with no allocation, so it is async-signal-safe: the forked child
//! ([`super::child`]) calls three of them. A failure is the call's errno as an `io::Error`
//! (made without allocating).

// The module that holds four of the crate's `unsafe` blocks, one per call, each with its reason.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use rustix::mount::MountAttrFlags;
use rustix::thread::UnshareFlags;

/// `struct mount_attr` (linux/mount.h, `MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling thread into the new namespaces `flags` names (`unshare(2)`). A thread may
/// take a network namespace of its own; mount and IPC namespaces are taken by the
/// single-threaded child; a user namespace only by a single-threaded process (the kernel says
/// `EINVAL` otherwise). `CLONE_FILES` is refused with `EINVAL`: it would unshare the descriptor
/// table, after which descriptors other threads opened (and own) are gone from this thread's.
pub(crate) fn unshare(flags: UnshareFlags) -> io::Result<()> {
    if flags.contains(UnshareFlags::FILES) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: rustix's one soundness condition for `unshare` is `CLONE_FILES` (a thread must
    // never observe descriptors from an unshared table), and `flags` does not contain it.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Marks every descriptor from `first` up close-on-exec (`close_range(first, ~0U,
/// CLOSE_RANGE_CLOEXEC)`, Linux 5.11). Closes nothing, so every `OwnedFd` stays valid.
/// `ENOSYS` on older kernels.
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: with CLOSE_RANGE_CLOEXEC the call only sets a flag on descriptors ≥ `first`; it
    // closes none (no owner loses its descriptor) and takes no pointers.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
}

/// Sets `set` on the detached mount `tree` (`mount_setattr(tree, "", AT_EMPTY_PATH, ..)`,
/// Linux 5.12), with the idmapping of the user namespace `userns` when `set` contains
/// `MOUNT_ATTR_IDMAP`.
pub(crate) fn set_mount_attributes(
    tree: BorrowedFd<'_>,
    set: MountAttrFlags,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: u64::from(set.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    // SAFETY: the kernel reads `size_of::<MountAttr>()` bytes of `attr` (a `repr(C)` copy of
    // `struct mount_attr`, alive for the call) and the empty C string; both descriptors are
    // borrowed, so they stay open for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Installs the classic BPF `program` as a seccomp filter of the calling thread
/// (`seccomp(SECCOMP_SET_MODE_FILTER, 0, ..)`). Needs `no_new_privs` or `CAP_SYS_ADMIN`; sets
/// neither. `EINVAL` for a program of more than 65,535 instructions.
pub(crate) fn install_seccomp_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len = libc::c_ushort::try_from(program.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` instructions of `program`, borrowed for the call; the
    // kernel copies them and writes nothing.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unsharing_the_descriptor_table_is_refused() {
        // Refused before any system call, so this thread's table stays shared.
        let e = unshare(UnshareFlags::FILES | UnshareFlags::NEWNET).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = unshare(UnshareFlags::FILES).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn an_oversized_seccomp_program_is_refused_before_the_kernel() {
        let huge = vec![
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            };
            70_000
        ];
        let e = install_seccomp_filter(&huge).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
