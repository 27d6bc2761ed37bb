//! The network side's confinement attacked from inside (issue 14): this test binary confines
//! itself exactly as the agent's network side is confined (`privsep::confine`) and tries what a
//! compromised frame parser would try first: start a program, become root again, open a vsock,
//! Unix or packet socket, switch namespaces, write a root-owned file. Everything it does use
//! (threads, TCP on loopback, netlink) must still work.
//!
//! `harness = false`: confinement is per process, irreversible, and assumes one thread, which a
//! libtest binary never is. Run by `cargo test`, it starts a copy of itself to be the victim.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::Command;

#[path = "support/root.rs"]
mod root;

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    if std::env::var_os("CSA_CONFINE_PROBE").is_some() {
        confined_probe();
        return;
    }
    // `cargo test -- FILTER` passes a filter; run only when it names this probe or is absent.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "confine_probe".contains(f.as_str())) {
        return;
    }
    if !root::root() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env("CSA_CONFINE_PROBE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PROBE DONE"), "{text}");
    println!("test confine_probe ... ok");
}

fn confined_probe() {
    use codespace_agent::guest::privsep::confine;
    use codespace_agent::guest::vault::Owner;
    let threads = field(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "Threads",
    );
    assert_eq!(threads, "1", "the probe must be single-threaded");
    let parent = rustix::process::getppid().unwrap();
    confine::confine(
        Owner {
            uid: 64990,
            gid: 64990,
        },
        parent,
    )
    .unwrap();
    let eperm = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{what}: {e}");
    };
    // No program runs from here (std spawns with clone3/vfork/fork, then execve).
    assert!(
        Command::new("/bin/true").status().is_err(),
        "a confined process started a program"
    );
    // No identity change, even to its own uid's neighbours.
    eperm(
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
        )
        .map_err(Into::into),
        "setresuid(0)",
    );
    // Only the socket families it uses.
    for family in [
        rustix::net::AddressFamily::UNIX,
        rustix::net::AddressFamily::VSOCK,
        rustix::net::AddressFamily::PACKET,
    ] {
        eperm(
            rustix::net::socket(family, rustix::net::SocketType::STREAM, None)
                .map(drop)
                .map_err(Into::into),
            "socket of a family the network side does not use",
        );
    }
    // No namespace switch (mount, unshare and setns are all refused).
    let own = std::fs::File::open("/proc/self/ns/net").unwrap();
    eperm(
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&own),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(Into::into),
        "setns",
    );
    // What it does use still works: threads, TCP on loopback, netlink.
    std::thread::spawn(|| ()).join().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    rustix::net::socket(
        rustix::net::AddressFamily::NETLINK,
        rustix::net::SocketType::DGRAM,
        Some(rustix::net::netlink::SOCK_DIAG),
    )
    .unwrap();
    // Root's files are not its own any more.
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/passwd")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    println!("PROBE DONE");
}
