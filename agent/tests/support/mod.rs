//! Helpers for the integration tests: a real `codespace-agent run` on a Unix socket in a temp
//! dir, `codespace-agentctl` runs, and raw frame access for protocol abuse.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use codespace_agent::host::{Backoff, Client, ConnectAddr, ConnectOptions};
use codespace_agent::wire::handshake::host_start;
use codespace_agent::wire::io::{read_frame, write_object, write_payload, RawFrame};
use codespace_agent::wire::{FrameCodec, Role, SharedKey};
use serde_json::{Map, Value};
use tokio::net::UnixStream;

pub mod forwarding;
pub mod root;

/// Runs `cmd` with `input` on its stdin and its output captured, whatever its status.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `cmd` with `input` on its stdin and its output captured; asserts it succeeded (its
/// stderr and the input in the message otherwise) and returns its stdout.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> String {
    let out = output_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{:?}: {}\n(input)\n{}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(input)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub const KEY: &[u8] = b"integration-test-shared-key-0123456789";
pub const SCOPE: &str = r#"{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}"#;

/// The network side's identity in tests (a uid that owns nothing; the package creates
/// `codespace-agent`), as a config member.
pub const NETWORK_USER_CONFIG: &str = r#""network_user": "64990:64990","#;

/// `codespace-agent SUB` with the files of a test directory `dir`: `config.jsonc`, `key`, the
/// control socket `agent.sock`, the state directory `state`; debug logs to `dir/LOG`.
pub fn agent_command(dir: &Path, sub: &str, log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codespace-agent"));
    cmd.arg(sub)
        .arg("--config")
        .arg(dir.join("config.jsonc"))
        .arg("--listen")
        .arg(format!("unix:{}", dir.join("agent.sock").display()))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--key-file")
        .arg(dir.join("key"))
        .env("CODESPACE_AGENT_LOG", "debug")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap());
    cmd
}

/// A running agent; killed (by PID) on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Agent {
    /// Starts an agent with extra config JSON members (e.g. `"heartbeat_interval_s": 1`).
    pub fn start(extra_config: &str) -> Self {
        Self::start_with_env(extra_config, &[])
    }

    pub fn start_with_env(extra_config: &str, env: &[(&str, &Path)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), KEY).unwrap();
        let sep = if extra_config.trim().is_empty() {
            ""
        } else {
            ","
        };
        // Restricted runs need an identity of their own (the package creates
        // `codespace-restricted`, a test machine has `nobody`), their world stays in the test's
        // directory, and they get no NAT to the outside (the hostile suite tests that, and
        // cleans it up).
        let sandbox = if extra_config.contains("\"sandbox\"") {
            String::new()
        } else {
            format!(
                "\"sandbox\": {{\"restricted_user\": \"nobody\", \"restricted_root\": \"{}\", \"restricted_outbound\": false}},",
                dir.path().join("restricted").display()
            )
        };
        // Started as root (CI), the agent separates its network side; it runs as a uid of its
        // own that owns nothing (the package creates `codespace-agent`).
        let network_user = if extra_config.contains("\"network_user\"") {
            ""
        } else {
            NETWORK_USER_CONFIG
        };
        let config = format!(
            "{{ // integration test\n {sandbox} {network_user} \"workspace_dir\": \"{}\"{sep} {extra_config} }}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.jsonc"), config).unwrap();
        let mut cmd = agent_command(dir.path(), "run", "agent.log");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let agent = Self {
            dir,
            child: Some(child),
        };
        agent.wait_listening();
        agent
    }

    /// Waits until the socket takes connections: the file appears at `bind`, a moment before
    /// `listen`, and a connection in between is refused (seen on a loaded machine).
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "agent did not listen; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.path().join("state/env/environment")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Delivers `token` with `codespace-agentctl token put`, scoped to [`SCOPE`], expiring at
    /// `expires_at` (RFC 3339, see [`rfc3339_in`]; anything else is passed on as written).
    pub fn put_token(&self, token: &str, expires_at: &str) -> Output {
        let tok = self.write("tok", token);
        let scope = self.write("scope.json", SCOPE);
        self.ctl(&[
            "token",
            "put",
            "--token-file",
            tok.to_str().unwrap(),
            "--expires-at",
            expires_at,
            "--scope-file",
            scope.to_str().unwrap(),
        ])
    }

    /// `session create` for `octo/app` by a creator with write access, plus `extra` flags; the
    /// agent's report.
    pub fn session_create_with_write_access(&self, extra: &[&str]) -> Value {
        let mut args = vec![
            "session",
            "create",
            "--repository",
            "octo/app",
            "--creator-access",
            "write",
        ];
        args.extend_from_slice(extra);
        json_out(&self.ctl(&args))
    }

    /// `lifecycle run --json` of `phase` from `devcontainer` in `workspace`, plus `extra` flags:
    /// the run's report and its log file's text.
    /// Runs `codespace-agent git-credential get` with git's request lines on stdin (as this
    /// process's uid) and returns what the helper printed.
    pub fn git_credential(&self, request: &str) -> String {
        run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
                .args(["git-credential", "--state-dir"])
                .arg(self.dir.path().join("state"))
                .arg("get"),
            request.as_bytes(),
        )
    }

    pub fn lifecycle_run_json(
        &self,
        devcontainer: &str,
        workspace: &str,
        phase: &str,
        extra: &[&str],
    ) -> (Value, String) {
        let mut args = vec![
            "lifecycle",
            "run",
            "--devcontainer",
            devcontainer,
            "--workspace",
            workspace,
            "--phase",
            phase,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.ctl(&args);
        let report: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{e}: {} {}\n{}", stdout(&out), stderr(&out), self.log()));
        let log = report["log"]
            .as_str()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        (report, log)
    }

    /// Runs `codespace-agentctl --connect ADDR --key-file KEY ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with_key(&self.key_file(), args)
    }

    pub fn ctl_with_key(&self, key: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
            .arg("--connect")
            .arg(self.addr())
            .arg("--key-file")
            .arg(key)
            .arg("--connect-timeout")
            .arg("10")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A library client.
    pub async fn client(&self) -> Client {
        Client::connect(&self.options()).await.unwrap()
    }

    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new(
            self.addr().parse::<ConnectAddr>().unwrap(),
            Some(SharedKey::new(KEY).unwrap()),
        );
        o.backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
            deadline: Some(Duration::from_secs(20)),
        };
        o
    }

    /// Sends SIGTERM (via kill(1), by PID) and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not stop after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The time `secs` seconds from now (negative: in the past) in RFC 3339, as `token put` wants.
pub fn rfc3339_in(secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json_out(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "ctl failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    serde_json::from_str(&stdout(o)).unwrap()
}

/// A raw connection for speaking (and breaking) the protocol by hand.
pub struct Raw {
    pub stream: UnixStream,
    pub codec: FrameCodec,
}

impl Raw {
    pub async fn connect(agent: &Agent) -> Self {
        Self {
            stream: UnixStream::connect(agent.socket()).await.unwrap(),
            codec: FrameCodec::new(1 << 20),
        }
    }

    /// Completes the handshake with the test key.
    pub async fn handshake(agent: &Agent) -> Self {
        let mut raw = Self::connect(agent).await;
        let (state, hello) = host_start(Role::Control, Some(SharedKey::new(KEY).unwrap()), [7; 32]);
        write_payload(&mut raw.stream, &raw.codec, &hello)
            .await
            .unwrap();
        let welcome = raw.next().await.unwrap();
        let (state, auth) = state.handle(&welcome.payload).unwrap();
        write_payload(&mut raw.stream, &raw.codec, &auth.unwrap())
            .await
            .unwrap();
        let ok = raw.next().await.unwrap();
        state.handle(&ok.payload).unwrap();
        raw
    }

    pub async fn send(&mut self, v: Value) {
        let m: Map<String, Value> = v.as_object().cloned().unwrap();
        write_object(&mut self.stream, &FrameCodec::new(64 << 20), &m)
            .await
            .unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(b).await.unwrap();
    }

    /// The next frame, or `None` at end of stream (bounded wait).
    pub async fn next(&mut self) -> Option<RawFrame> {
        tokio::time::timeout(
            Duration::from_secs(10),
            read_frame(&mut self.stream, &self.codec),
        )
        .await
        .unwrap()
        .ok()
        .flatten()
    }

    /// The next frame that is not an event.
    pub async fn next_non_event(&mut self) -> Option<RawFrame> {
        loop {
            let f = self.next().await?;
            if !f.object.contains_key("event") {
                return Some(f);
            }
        }
    }
}
