//! Fuzz the parsing of what the kernel answers about listening sockets: a `sock_diag` dump
//! datagram, `/proc/net/tcp{,6}` text, `/proc/PID/fd` link targets, and the owner lookup of
//! the parsed listeners in a fake `/proc` (made once, processes holding socket inodes 1-8).
//! Any bytes must parse to listeners, a skipped line or an error, never a panic: every
//! listener comes from a message long enough to hold it, every skipped line exists, and an
//! owner is only reported for an inode that was asked for and is held in the fake `/proc`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use codespace_agent::guest::detect::owner::{socket_inode, OwnerResolver};
use codespace_agent::guest::detect::procnet::{self, Family};
use codespace_agent::guest::detect::sock_diag;
use codespace_fuzz::scratch;
use libfuzzer_sys::fuzz_target;

/// A fake `/proc`: pid 100 holds sockets 1-4, pid 200 sockets 5-8 and a pipe.
fn fake_proc() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let root = scratch().join("proc");
        for (pid, comm, inodes) in [(100, "node", 1..5), (200, "python3", 5..9)] {
            let fd = root.join(pid.to_string()).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            std::fs::write(root.join(pid.to_string()).join("comm"), format!("{comm}\n")).unwrap();
            for (n, inode) in inodes.enumerate() {
                let _ =
                    std::os::unix::fs::symlink(format!("socket:[{inode}]"), fd.join(n.to_string()));
            }
            let _ = std::os::unix::fs::symlink("pipe:[77]", fd.join("9"));
        }
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&seq, rest)) = data.split_first() else {
        return;
    };
    let mut found = Vec::new();
    if let Ok(parsed) = sock_diag::parse(rest, u32::from(seq)) {
        // A listener needs a 16-byte header and a 72-byte message.
        assert!(parsed.listeners.len() * 88 <= rest.len());
        found.extend(parsed.listeners);
    }
    let text = String::from_utf8_lossy(rest);
    let line_count = text.lines().count();
    for family in [Family::V4, Family::V6] {
        let table = procnet::parse(&text, family);
        for s in &table.skipped {
            assert!(s.line >= 1 && s.line <= line_count, "{s:?}");
        }
        assert!(table.listeners.len() + table.skipped.len() <= line_count);
        found.extend(table.listeners);
    }
    for line in text.lines() {
        if let Some(inode) = socket_inode(line) {
            assert!(line.contains(&inode.to_string()));
        }
    }
    found.truncate(64);
    let owners = OwnerResolver::new(fake_proc()).resolve(&found);
    for (inode, owner) in &owners {
        assert!(found.iter().any(|l| l.inode == *inode));
        assert!((1..9).contains(inode), "inode {inode} is held by nobody");
        assert!(owner.pid == 100 || owner.pid == 200);
    }
});
