//! Which process owns a socket: socket inode → pid, by reading `/proc/PID/fd/*` links of the
//! form `socket:[INODE]`.
//!
//! Neither sock_diag nor `/proc/net/tcp` reports a pid, only the socket's uid and inode. A full
//! scan of every fd of every process costs ~2.6 µs per fd (55 ms with 21,000 sockets open), so:
//!
//! - only listeners that are new in this poll are resolved (the caller's job);
//! - processes are visited in the order most likely to hold the socket: pids that owned a
//!   listener recently, then processes whose uid equals a wanted socket's uid, newest (highest
//!   pid) first, then everyone else; within a process, fds are read highest first (a new socket
//!   usually gets the top fd of a busy process);
//! - the scan stops as soon as every wanted inode is found.
//!
//! A socket whose process cannot be found (it exited, or lives in another PID namespace, or we
//! may not read its fds) has no owner; that is reported, not guessed.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::RawListener;

/// How many recently seen owner pids are tried first.
const RECENT: usize = 32;

/// The process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`, at most 15 bytes).
    pub(crate) process: String,
}

/// The inode of a `/proc/PID/fd/N` link target, if it is a socket.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Resolves socket inodes to processes, remembering which pids owned listeners recently.
#[derive(Debug, Clone)]
pub struct OwnerResolver {
    proc_root: PathBuf,
    recent: Vec<u32>,
}

impl OwnerResolver {
    /// A resolver reading `proc_root` (normally `/proc`).
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_owned(),
            recent: Vec::new(),
        }
    }

    /// Owners of as many of `want` as can be found, by inode.
    pub fn resolve(&mut self, want: &[RawListener]) -> HashMap<u64, Owner> {
        // Separated, the network side may not read other users' fds: the privileged side does.
        if let Some(c) = crate::guest::privsep::client() {
            return if want.is_empty() {
                HashMap::new()
            } else {
                c.socket_owners(want)
            };
        }
        let mut missing: HashSet<u64> = want.iter().map(|l| l.inode).collect();
        let uids: HashSet<u32> = want.iter().map(|l| l.uid).collect();
        let mut found = HashMap::new();
        if missing.is_empty() {
            return found;
        }
        let mut seen = HashSet::new();
        for pid in self.recent.clone() {
            seen.insert(pid);
            self.scan_pid(pid, &mut missing, &mut found);
            if missing.is_empty() {
                return found;
            }
        }
        let mut pids = self.pids_by_uid();
        pids.retain(|(pid, _)| !seen.contains(pid));
        // Same uid first, newest first: a new listener usually belongs to a recent process.
        pids.sort_unstable_by_key(|&(pid, uid)| (!uids.contains(&uid), std::cmp::Reverse(pid)));
        for (pid, _) in pids {
            self.scan_pid(pid, &mut missing, &mut found);
            if missing.is_empty() {
                break;
            }
        }
        found
    }

    /// `(pid, owner uid)` of every process (threads are not listed in `/proc`).
    fn pids_by_uid(&self) -> Vec<(u32, u32)> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let uid = e.metadata().ok()?.uid();
                Some((pid, uid))
            })
            .collect()
    }

    fn scan_pid(&mut self, pid: u32, missing: &mut HashSet<u64>, found: &mut HashMap<u64, Owner>) {
        use rustix::fs::{Mode, OFlags};
        let base = self.proc_root.join(pid.to_string());
        // The process may exit or forbid reading its fds: both just mean "not here". The fd
        // directory is opened once and each link read relative to it (`readlinkat`), which
        // avoids a full path walk per fd: with 10,000+ fds in one process this is the cost.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(dirfd) = rustix::fs::open(base.join("fd"), flags, Mode::empty()) else {
            return;
        };
        let Ok(mut dir) = rustix::fs::Dir::read_from(&dirfd) else {
            return;
        };
        // Highest fd first: a new socket takes the lowest *free* fd, which in a long-running
        // process with densely used fds (the expensive case: a server holding thousands of
        // connections) is at the top; the scan then stops after a few links instead of all.
        let mut fds: Vec<u32> = Vec::new();
        while let Some(Ok(entry)) = dir.read() {
            if let Some(fd) = entry.file_name().to_str().ok().and_then(|n| n.parse().ok()) {
                fds.push(fd);
            }
        }
        fds.sort_unstable_by(|a, b| b.cmp(a));
        let mut buf: Vec<u8> = Vec::with_capacity(64);
        let mut name = String::new();
        let mut hit = false;
        for fd in fds {
            use std::fmt::Write as _;
            name.clear();
            let _ = write!(name, "{fd}");
            let Ok(target) =
                rustix::fs::readlinkat(&dirfd, name.as_str(), std::mem::take(&mut buf))
            else {
                continue;
            };
            let inode = std::str::from_utf8(target.as_bytes())
                .ok()
                .and_then(socket_inode);
            buf = target.into_bytes();
            buf.clear();
            let Some(inode) = inode else {
                continue;
            };
            if missing.remove(&inode) {
                hit = true;
                let process = std::fs::read_to_string(base.join("comm"))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_default();
                found.insert(inode, Owner { pid, process });
                if missing.is_empty() {
                    break;
                }
            }
        }
        if hit {
            self.recent.retain(|p| *p != pid);
            self.recent.insert(0, pid);
            self.recent.truncate(RECENT);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn raw(inode: u64, uid: u32) -> RawListener {
        RawListener {
            addr: IpAddr::from([0, 0, 0, 0]),
            port: 1,
            uid,
            inode,
        }
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("socket:[12"), None);
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[-1]"), None);
    }

    /// A fake `/proc` with processes holding the given socket inodes.
    fn fake_proc(procs: &[(u32, &str, &[u64])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, inodes) in procs {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            std::os::unix::fs::symlink("/dev/null", p.join("fd/0")).unwrap();
            for (i, inode) in inodes.iter().enumerate() {
                std::os::unix::fs::symlink(
                    format!("socket:[{inode}]"),
                    p.join(format!("fd/{}", i + 3)),
                )
                .unwrap();
            }
        }
        std::fs::create_dir(dir.path().join("self")).unwrap();
        dir
    }

    #[test]
    fn finds_owners_and_reports_the_unknown() {
        let proc_ = fake_proc(&[
            (10, "sshd", &[100]),
            (20, "node", &[200, 201]),
            (30, "x", &[]),
        ]);
        let mut r = OwnerResolver::new(proc_.path());
        let got = r.resolve(&[raw(200, 0), raw(100, 0), raw(999, 0)]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[&200],
            Owner {
                pid: 20,
                process: "node".into()
            }
        );
        assert_eq!(
            got[&100],
            Owner {
                pid: 10,
                process: "sshd".into()
            }
        );
        assert!(!got.contains_key(&999));
        // Recently seen owners are remembered and tried first.
        assert!(r.recent.contains(&20) && r.recent.contains(&10));
        assert_eq!(r.resolve(&[raw(201, 0)])[&201].pid, 20);
        assert!(r.resolve(&[]).is_empty());
    }

    #[test]
    fn a_missing_proc_root_finds_nothing() {
        let mut r = OwnerResolver::new(Path::new("/nonexistent/proc"));
        assert!(r.resolve(&[raw(1, 0)]).is_empty());
    }

    #[test]
    fn resolves_a_real_socket_of_this_process() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let mut r = OwnerResolver::new(Path::new("/proc"));
        let got = r.resolve(&[raw(inode, rustix::process::geteuid().as_raw())]);
        assert_eq!(got[&inode].pid, std::process::id());
        assert!(!got[&inode].process.is_empty());
    }
}
