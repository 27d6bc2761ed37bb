//! `vmtest-guest`: the guest-side checker of the VM end-to-end test (`tests/vm/run.sh`).
//!
//! Runs INSIDE the nested test VM only, next to the real `codespace-agent`, and answers the host's
//! questions about what the agent did, over its own vsock port (5000, host-initiated through the
//! hybrid socket). One request line, one answer line (`OK ...` or `ERR ...`); `ENV` answers
//! several `VAR` lines and `END`.
//!
//! ```text
//! ENV <file>               VAR <name> <sha256 of the value> ... END   (values never leave the VM)
//! SHELL <user> <name>      OK <sha256 of $name in USER's login shell: the /etc/profile.d hook>
//! STAT <path>              OK <octal mode> <uid> <gid>
//! CONNECT_LOCAL <cid> <p>  OK connected | ERR <why>   (a guest process dialing the agent)
//! PROBE <cid> <port>       OK refused (connected, then closed by the agent at once)
//!                          | ERR <why> (no connection, or the agent kept it open for 3 s)
//! INSMOD <file>            OK | ERR <why>   (loads a module: the loopback transport, late)
//! GREP <file> <text>       OK found | ERR not found
//! MODULES                  OK <loaded modules whose name contains "vsock">
//! LISTEN <port>            OK <pid>: a TCP echo listener on 127.0.0.1:<port> in this process
//!                          (a dev server; the host reaches it only through the agent's forwarder)
//! RUN <secs> <base64>      OK <exit status> <JSON string>: the base64-encoded script run by
//!                          /bin/sh as root, stdout and stderr together (at most 64 KiB, the
//!                          rest cut); killed with its process group after <secs> (exit 124)
//! RUN_HASH <secs> <base64> OK <exit status> <sha256 of stdout, trailing newlines removed>
//!                          <JSON string: stderr>: for scripts whose output holds a secret
//! POWEROFF                 OK bye, then exit 0 (the init script, or systemd's
//!                          SuccessAction=poweroff, powers the VM off)
//! ```
//!
//! `RUN` is what the systemd-booted guest's checks are written in (`tests/vm/systemd.sh`): the
//! host sends shell scripts, so a check is readable next to the others; scripts that touch a
//! secret print names or hashes only, or go through `RUN_HASH`. The checker answers only the
//! host (peer CID 2): no other process in the VM gets a root shell from it.
//!
//! Besides, vsock port 5001 echoes every connection's bytes: the raw-vsock baseline the host
//! compares the agent's forward throughput with (same path, no agent, no TCP).
//!
//! `vmtest-guest serve PORT` is a dev server instead: a TCP echo listener on 127.0.0.1:PORT until
//! it is killed (a `postStartCommand` starts it in the systemd-booted guest).
//!
//! Safety: refuses to run unless the kernel command line carries `codespace.vmtest=1`, which only
//! the test VM's has, so it can never open AF_VSOCK on a development or CI machine.

// A test program reports on its standard streams (the VM's serial console).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io;
use std::path::Path;
use std::time::Duration;

use codespace_agent::guest::vault::envfile;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY};

/// The checker's own vsock port.
const PORT: u32 = 5000;
/// The raw-vsock echo port (throughput baseline).
const ECHO_PORT: u32 = 5001;
/// The host's CID: the only peer the checker answers.
const HOST_CID: u32 = 2;
/// `RUN` output kept (the rest is cut).
const RUN_OUTPUT_MAX: usize = 64 * 1024;
/// The kernel command line word that marks the test VM.
const MARKER: &str = "codespace.vmtest=1";

fn in_test_vm() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .map(|c| c.split_whitespace().any(|w| w == MARKER))
        .unwrap_or(false)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn env_answer(path: &str) -> String {
    match envfile::read(Path::new(path)) {
        Ok(entries) => {
            let mut out = String::new();
            for (name, value) in entries {
                out.push_str(&format!("VAR {name} {}\n", sha256_hex(value.expose())));
            }
            out.push_str("END");
            out
        }
        Err(e) => format!("ERR {e}"),
    }
}

fn shell_answer(user: &str, name: &str) -> String {
    if !envfile::is_valid_name(name) {
        return format!("ERR not a variable name: {name:?}");
    }
    if !user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return format!("ERR not a user name: {user:?}");
    }
    // `su -l` starts USER's login shell, which reads /etc/profile, which sources
    // /etc/profile.d/*.sh (we run as root, so no password is asked).
    match std::process::Command::new("/bin/busybox")
        .args([
            "su",
            "-l",
            user,
            "-c",
            &format!("printf %s \"${{{name}}}\""),
        ])
        .output()
    {
        Ok(o) if o.status.success() => format!("OK {}", sha256_hex(&o.stdout)),
        Ok(o) => format!("ERR login shell exited with {}", o.status),
        Err(e) => format!("ERR cannot run the login shell: {e}"),
    }
}

fn stat_answer(path: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(path) {
        Ok(m) => format!("OK {:o} {} {}", m.mode() & 0o7777, m.uid(), m.gid()),
        Err(e) => format!("ERR {e}"),
    }
}

async fn connect_local(cid: &str, port: &str) -> String {
    let (Ok(cid), Ok(port)) = (cid.parse::<u32>(), port.parse::<u32>()) else {
        return "ERR usage: CONNECT_LOCAL CID PORT".into();
    };
    let dial = VsockStream::connect(VsockAddr::new(cid, port));
    match tokio::time::timeout(Duration::from_secs(3), dial).await {
        Ok(Ok(_)) => "OK connected".into(),
        Ok(Err(e)) => format!("ERR {e}"),
        Err(_) => "ERR timed out".into(),
    }
}

/// Connects and waits for the peer to close: an agent that refuses the peer CID closes before
/// reading anything, one that accepted it waits for the host's `hello`.
async fn probe(cid: &str, port: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let (Ok(cid), Ok(port)) = (cid.parse::<u32>(), port.parse::<u32>()) else {
        return "ERR usage: PROBE CID PORT".into();
    };
    let dial = VsockStream::connect(VsockAddr::new(cid, port));
    let mut stream = match tokio::time::timeout(Duration::from_secs(3), dial).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("ERR cannot connect: {e}"),
        Err(_) => return "ERR connect timed out".into(),
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
        Ok(Ok(0)) => "OK refused".into(),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => "OK refused".into(),
        Ok(Ok(n)) => format!("ERR the agent sent {n} bytes"),
        Ok(Err(e)) => format!("ERR {e}"),
        Err(_) => "ERR the agent kept the connection open".into(),
    }
}

fn insmod_answer(file: &str) -> String {
    match std::process::Command::new("/bin/busybox")
        .args(["insmod", file])
        .output()
    {
        Ok(o) if o.status.success() => "OK".into(),
        Ok(o) => format!("ERR insmod: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("ERR cannot run insmod: {e}"),
    }
}

fn grep_answer(file: &str, text: &str) -> String {
    match std::fs::read_to_string(file) {
        Ok(s) if s.contains(text) => "OK found".into(),
        Ok(_) => "ERR not found".into(),
        Err(e) => format!("ERR {e}"),
    }
}

fn modules_answer() -> String {
    let list = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.contains("vsock"))
        .collect();
    format!("OK {}", names.join(","))
}

/// Copies everything read back to the writer, then half-closes: an echo that streams (large
/// payloads flow both ways at once instead of being buffered).
async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static>(s: S) {
    let (mut rd, mut wr) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut rd, &mut wr).await;
    let _ = wr.shutdown().await;
}

/// Binds 127.0.0.1:PORT and echoes every connection, for the rest of the checker's life.
async fn listen_answer(port: &str) -> String {
    let Ok(port) = port.parse::<u16>() else {
        return "ERR usage: LISTEN PORT".into();
    };
    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => {
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(echo(s));
                }
            });
            format!("OK {}", std::process::id())
        }
        Err(e) => format!("ERR {e}"),
    }
}

/// Runs a base64-encoded script with /bin/sh as root, in a process group of its own that is
/// killed after `secs`. Returns (exit status, stdout, stderr), or an error line.
async fn run_script(
    secs: &str,
    b64: &str,
    merge_stderr: bool,
) -> Result<(i32, Vec<u8>, Vec<u8>), String> {
    use base64::Engine as _;
    let secs: u64 = secs
        .parse()
        .map_err(|_| "ERR usage: RUN SECS BASE64".to_string())?;
    let script = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("ERR bad base64: {e}"))?;
    let mut text =
        String::from_utf8(script).map_err(|_| "ERR the script is not UTF-8".to_string())?;
    if merge_stderr {
        text.insert_str(0, "exec 2>&1\n");
    }
    let child = tokio::process::Command::new("/bin/sh")
        .args(["-c", &text])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("ERR cannot run /bin/sh: {e}"))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    match tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output()).await {
        Ok(Ok(o)) => Ok((o.status.code().unwrap_or(128), o.stdout, o.stderr)),
        Ok(Err(e)) => Err(format!("ERR {e}")),
        Err(_) => {
            // The whole process group the script leads (process_group(0) above), through the
            // shell's kill builtin (no unsafe code here).
            if let Some(pgid) = pgid {
                let _ = std::process::Command::new("/bin/sh")
                    .args(["-c", &format!("kill -KILL -- -{pgid}")])
                    .status();
            }
            Ok((
                124,
                Vec::new(),
                format!("timed out after {secs} s").into_bytes(),
            ))
        }
    }
}

fn json_string(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(RUN_OUTPUT_MAX)];
    serde_json::Value::String(String::from_utf8_lossy(cut).into_owned()).to_string()
}

async fn run_answer(secs: &str, b64: &str) -> String {
    match run_script(secs, b64, true).await {
        Ok((rc, out, _)) => format!("OK {rc} {}", json_string(&out)),
        Err(line) => line,
    }
}

async fn run_hash_answer(secs: &str, b64: &str) -> String {
    match run_script(secs, b64, false).await {
        Ok((rc, out, err)) => {
            let end = out.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
            format!("OK {rc} {} {}", sha256_hex(&out[..end]), json_string(&err))
        }
        Err(line) => line,
    }
}

/// `vmtest-guest serve PORT`: a dev server (TCP echo on 127.0.0.1:PORT) until killed.
async fn serve_dev(port: &str) -> io::Result<()> {
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: vmtest-guest serve PORT",
        )
    })?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "vmtest-guest: dev server on 127.0.0.1:{port}, pid {}",
        std::process::id()
    );
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(echo(s));
    }
}

/// Serves one host connection; returns true when the host asked to power off.
async fn serve(stream: VsockStream) -> io::Result<bool> {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut lines = BufReader::new(rd).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["ENV", path] => env_answer(path),
            ["SHELL", user, name] => shell_answer(user, name),
            ["STAT", path] => stat_answer(path),
            ["CONNECT_LOCAL", cid, port] => connect_local(cid, port).await,
            ["PROBE", cid, port] => probe(cid, port).await,
            ["INSMOD", file] => insmod_answer(file),
            ["GREP", file, text @ ..] if !text.is_empty() => grep_answer(file, &text.join(" ")),
            ["MODULES"] => modules_answer(),
            ["LISTEN", port] => listen_answer(port).await,
            ["RUN", secs, b64] => run_answer(secs, b64).await,
            ["RUN_HASH", secs, b64] => run_hash_answer(secs, b64).await,
            ["POWEROFF"] => {
                wr.write_all(b"OK bye\n").await?;
                wr.flush().await?;
                return Ok(true);
            }
            _ => format!("ERR unknown request: {line:?}"),
        };
        eprintln!("vmtest-guest: {} -> {}", line, answer.lines().count());
        wr.write_all(answer.as_bytes()).await?;
        wr.write_all(b"\n").await?;
        wr.flush().await?;
    }
    Ok(false)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    if !in_test_vm() {
        eprintln!("vmtest-guest: refusing to run: not inside the test VM ({MARKER} is not on /proc/cmdline)");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [serve, port] = args.as_slice() {
        if serve == "serve" {
            return serve_dev(port).await;
        }
    }
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, PORT))?;
    let echo_listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, ECHO_PORT))?;
    tokio::spawn(async move {
        while let Ok((s, _)) = echo_listener.accept().await {
            tokio::spawn(echo(s));
        }
    });
    eprintln!("vmtest-guest: listening on vsock ports {PORT} and {ECHO_PORT} (echo)");
    loop {
        let (stream, peer) = listener.accept().await?;
        if peer.cid() != HOST_CID {
            eprintln!("vmtest-guest: refused a connection from {peer:?} (not the host)");
            continue;
        }
        eprintln!("vmtest-guest: connection from {peer:?}");
        match serve(stream).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => eprintln!("vmtest-guest: connection error: {e}"),
        }
    }
}
