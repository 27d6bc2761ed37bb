//! Commit signing end to end with real git (issue 17): a real agent on a Unix socket, the real
//! helper as git's signing program (through a `codespace-git-sign` wrapper, as the package
//! installs it), the real `codespace-agentctl signing serve` on the host side with a key this
//! test generates outside the agent's state directory, and `git verify-commit` at the end.
//!
//! Git reads a system configuration that includes the file the agent writes while signing is
//! on (what `/etc/gitconfig` does in the package), so `git commit` signs only when the agent
//! says so. Refusals are checked where the user sees them: in git's error output.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{json_out, stderr, stdout, Agent};

const EMAIL: &str = "mona@example.com";

/// A codespace with signing: the agent, a work directory outside its state directory (keys,
/// the wrapper, the repository, git's configuration), and the host's signer while it runs.
struct Codespace {
    agent: Agent,
    work: tempfile::TempDir,
    host: Option<Child>,
}

impl Codespace {
    /// Starts an agent whose signing configuration points into a fresh work directory.
    fn start(wait_s: u64) -> Self {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let config = format!(
            r#""signing": {{"wait_s": {wait_s}, "program": "{}", "git_config": "{}"}}"#,
            w.join("codespace-git-sign").display(),
            w.join("git/signing.gitconfig").display()
        );
        let agent = Agent::start(&config);
        let state = agent.dir.path().join("state");
        // The package's wrapper, with the test's state directory.
        let wrapper = w.join("codespace-git-sign");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} git-sign --state-dir {} \"$@\"\n",
                env!("CARGO_BIN_EXE_codespace-agent"),
                state.display()
            ),
        )
        .unwrap();
        chmod(&wrapper, 0o755);
        // git's configuration: the system file includes the agent's (the package's block).
        std::fs::write(
            w.join("system.gitconfig"),
            format!(
                "[include]\n\tpath = {}\n",
                w.join("git/signing.gitconfig").display()
            ),
        )
        .unwrap();
        std::fs::write(
            w.join("global.gitconfig"),
            format!(
                "[user]\n\tname = Mona\n\temail = {EMAIL}\n[gpg \"ssh\"]\n\tallowedSignersFile = {}\n[init]\n\tdefaultBranch = main\n",
                w.join("allowed_signers").display()
            ),
        )
        .unwrap();
        let cs = Self {
            agent,
            work,
            host: None,
        };
        let init = cs.git(&["init", "-q", "repo"], cs.work.path());
        assert!(init.status.success(), "{}", stderr(&init));
        cs
    }

    fn w(&self) -> &Path {
        self.work.path()
    }

    fn repo(&self) -> PathBuf {
        self.w().join("repo")
    }

    fn state(&self) -> PathBuf {
        self.agent.dir.path().join("state")
    }

    fn include(&self) -> PathBuf {
        self.w().join("git/signing.gitconfig")
    }

    /// `codespace-agentctl session create` for `repository` with `extra` flags.
    fn session(&self, repository: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["session", "create", "--repository", repository];
        args.extend_from_slice(extra);
        json_out(&self.agent.ctl(&args))
    }

    /// Signing on for `repository`, trusted `octo/*`, [`EMAIL`] verified.
    fn session_ssh(&self, repository: &str) -> serde_json::Value {
        self.session(
            repository,
            &[
                "--signing",
                "ssh",
                "--signing-trusted",
                "octo/*,tools/lint",
                "--verified-emails",
                EMAIL,
            ],
        )
    }

    /// git in `dir` with only this test's configuration.
    fn git(&self, args: &[&str], dir: &Path) -> Output {
        self.git_command(args, dir).output().unwrap()
    }

    fn git_command(&self, args: &[&str], dir: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(dir)
            .env("HOME", self.w())
            .env("GIT_CONFIG_SYSTEM", self.w().join("system.gitconfig"))
            .env("GIT_CONFIG_GLOBAL", self.w().join("global.gitconfig"))
            .env_remove("GIT_CONFIG_NOSYSTEM")
            .env_remove("GNUPGHOME")
            .stdin(Stdio::null());
        cmd
    }

    /// A new commit (with `-S` and the signing configuration on the command line when
    /// `explicit`, as a user who set it up by hand would).
    fn commit(&self, message: &str, explicit: bool) -> Output {
        std::fs::write(self.repo().join("file"), message).unwrap();
        assert!(self.git(&["add", "file"], &self.repo()).status.success());
        let program = format!(
            "gpg.ssh.program={}",
            self.w().join("codespace-git-sign").display()
        );
        let mut args = Vec::new();
        if explicit {
            args.extend([
                "-c",
                "gpg.format=ssh",
                "-c",
                &program,
                "-c",
                "user.signingKey=placeholder",
            ]);
        }
        args.extend(["commit", "-q", "-m", message]);
        if explicit {
            args.push("-S");
        }
        self.git(&args, &self.repo())
    }

    /// An SSH key for the host, outside the state directory; `allowed_signers` lists it.
    fn ssh_key(&self) -> PathBuf {
        let key = self.w().join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(
            self.w().join("allowed_signers"),
            format!("{EMAIL} namespaces=\"git\" {public}"),
        )
        .unwrap();
        key
    }

    /// `codespace-agentctl signing serve ARGS` as the host, until the test ends (killed by
    /// PID); waits until it is connected (a `status` shows two control connections).
    fn serve(&mut self, args: &[&str], env: &[(&str, &Path)]) {
        let log = std::fs::File::create(self.w().join("serve.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"));
        cmd.arg("--connect")
            .arg(self.agent.addr())
            .arg("--key-file")
            .arg(self.agent.key_file())
            .args(["signing", "serve"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.host = Some(cmd.spawn().unwrap());
        self.wait_for_listeners(1);
    }

    /// A host connection that hears events and never answers (`codespace-agentctl events`).
    fn silent_host(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_codespace-agentctl"))
            .arg("--connect")
            .arg(self.agent.addr())
            .arg("--key-file")
            .arg(self.agent.key_file())
            .arg("events")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.w().join("events.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.host = Some(child);
        self.wait_for_listeners(1);
    }

    /// Waits until `n` control connections besides the `status` asking are up.
    fn wait_for_listeners(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = json_out(&self.agent.ctl(&["status"]));
            let conns = status["signing"]["listeners"].as_u64().unwrap_or(0);
            if conns > n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not connect: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The signing records of the agent's audit trail (`codespace-agentctl trail`).
    fn trail_signing(&self) -> Vec<serde_json::Value> {
        let out = self.agent.ctl(&["trail"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["kind"] == "signing")
            .collect()
    }

    /// The events the silent host printed, once one of them contains `needle`.
    fn wait_for_event(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = std::fs::read_to_string(self.w().join("events.log")).unwrap_or_default();
            if events.contains(needle) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no event with {needle}: {events}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `codespace-git-sign ARGS` run directly (as git would), with `input` on stdin.
    fn helper(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(self.w().join("codespace-git-sign"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }
}

impl Drop for Codespace {
    fn drop(&mut self) {
        if let Some(mut host) = self.host.take() {
            let _ = host.kill();
            let _ = host.wait();
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The bytes of a commit object as git would sign it, committed by `email`.
fn commit_payload(email: &str) -> String {
    format!(
        "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Mona <{email}> 1700000000 +0000\n\
         committer Mona <{email}> 1700000000 +0000\n\nby hand\n"
    )
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_commit_in_scope_is_signed_on_the_host_and_verifies() {
    let mut cs = Codespace::start(10);
    // Before the session: off, and git does not sign.
    let off = cs.helper(&["--enabled"], b"");
    assert_eq!(off.status.code(), Some(1), "{}", stderr(&off));
    assert!(stderr(&off).contains("signing is off"), "{}", stderr(&off));
    assert!(!cs.include().exists());

    let report = cs.session_ssh("octo/app");
    assert_eq!(report["signing"]["enabled"], true, "{report}");
    let on = cs.helper(&["--enabled"], b"");
    assert_eq!(
        (on.status.code(), stdout(&on).as_str()),
        (Some(0), "ssh\n"),
        "{}",
        stderr(&on)
    );
    let include = std::fs::read_to_string(cs.include()).unwrap();
    assert!(include.contains("gpgSign = true"), "{include}");

    let key = cs.ssh_key();
    cs.serve(
        &[
            "--ssh-key",
            key.to_str().unwrap(),
            "--verified-emails",
            EMAIL,
        ],
        &[],
    );
    // A plain `git commit`: the agent's configuration turned signing on.
    let start = Instant::now();
    let out = cs.commit("signed by the host", false);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "git commit: {}\nagent log:\n{}",
        stderr(&out),
        cs.agent.log()
    );
    eprintln!("git commit with a host signature took {took:?}");
    let verify = cs.git(&["verify-commit", "HEAD"], &cs.repo());
    assert!(
        verify.status.success(),
        "verify-commit: {}",
        stderr(&verify)
    );
    assert!(
        stderr(&verify).contains(&format!("Good \"git\" signature for {EMAIL}")),
        "{}",
        stderr(&verify)
    );
    // git log --show-signature goes through the same verification (the helper hands it to
    // ssh-keygen).
    let log = cs.git(&["log", "--show-signature", "-1"], &cs.repo());
    assert!(
        stdout(&log).contains("Good \"git\" signature"),
        "{}",
        stdout(&log)
    );
    // A signed tag too.
    let tag = cs.git(&["tag", "-s", "-m", "v1", "v1"], &cs.repo());
    assert!(tag.status.success(), "git tag -s: {}", stderr(&tag));
    let verify = cs.git(&["verify-tag", "v1"], &cs.repo());
    assert!(verify.status.success(), "verify-tag: {}", stderr(&verify));

    // The private key never appears under the agent's state directory.
    let private = std::fs::read(&key).unwrap();
    let needle = &private[40..100];
    for file in files_under(&cs.state()).into_iter().chain([cs.include()]) {
        let contents = std::fs::read(&file).unwrap_or_default();
        assert!(
            !contents.windows(needle.len()).any(|w| w == needle),
            "key material in {}",
            file.display()
        );
    }
    // Status counts the signatures; every decision is in the audit trail, the payload never.
    let status = json_out(&cs.agent.ctl(&["status"]));
    assert_eq!(status["signing"]["signed_last_minute"], 2, "{status}");
    let signing = cs.trail_signing();
    let decisions: Vec<&str> = signing
        .iter()
        .filter_map(|r| r["decision"].as_str())
        .collect();
    assert_eq!(
        decisions,
        ["allowed", "signed", "allowed", "signed"],
        "{signing:?}"
    );
    assert!(signing.iter().all(|r| r.get("payload").is_none()));
    assert_eq!(signing[0]["signer"], EMAIL);
    assert_eq!(signing[0]["repository"], "octo/app");
}

#[test]
fn refusals_are_shown_by_git_with_their_reason() {
    let mut cs = Codespace::start(10);
    let key = cs.ssh_key();
    cs.serve(&["--ssh-key", key.to_str().unwrap()], &[]);

    // Signing off (a session without --signing): explicit `commit -S` is refused.
    cs.session("octo/app", &[]);
    assert!(!cs.include().exists());
    let out = cs.commit("off", true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("commit signing is off for this codespace (signing-off)"),
        "{}",
        stderr(&out)
    );

    // A repository out of the trusted list: off for git, refused when asked anyway.
    let report = cs.session_ssh("octo-corp/app");
    assert_eq!(
        report["signing"]["reason"], "repository-not-trusted",
        "{report}"
    );
    assert!(!cs.include().exists());
    let enabled = cs.helper(&["--enabled"], b"");
    assert_eq!(enabled.status.code(), Some(1));
    assert!(
        stderr(&enabled).contains("octo-corp/app is not in your trusted repositories"),
        "{}",
        stderr(&enabled)
    );
    let out = cs.commit("untrusted", true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "repository octo-corp/app is not in your trusted repositories for commit signing"
        ),
        "{}",
        stderr(&out)
    );

    // In scope, but committed as an email that is not verified.
    cs.session_ssh("tools/lint");
    assert!(cs.include().exists());
    let other = cs.git(
        &["config", "user.email", "mallory@evil.example"],
        &cs.repo(),
    );
    assert!(other.status.success());
    let out = cs.commit("as someone else", false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the committer email <mallory@evil.example> is not one of your verified emails (unverified-email)"),
        "{}",
        stderr(&out)
    );
    assert!(cs
        .git(&["config", "--unset", "user.email"], &cs.repo())
        .status
        .success());

    // Not a commit: a blob handed to the helper as git hands it a buffer, and the same over
    // the OpenPGP calling convention.
    let blob = cs.w().join("blob");
    std::fs::write(&blob, "an arbitrary file to sign\n").unwrap();
    let out = cs.helper(
        &["-Y", "sign", "-n", "git", "-f", "k", blob.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only git commits and tags are signed"),
        "{}",
        stderr(&out)
    );
    assert!(!cs.w().join("blob.sig").exists());
    // Another namespace (an SSH challenge for something else) never reaches the agent.
    let out = cs.helper(
        &[
            "-Y",
            "sign",
            "-n",
            "file",
            "-f",
            "k",
            blob.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("namespace \"file\""),
        "{}",
        stderr(&out)
    );
    // The OpenPGP convention in an SSH session: the wrong format.
    let out = cs.helper(
        &["--status-fd=2", "-bsau", "k"],
        commit_payload(EMAIL).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(wrong-format)"), "{}", stderr(&out));

    // The host's own decision: a host told only about another email refuses even what the
    // agent allowed (and git shows the host's reason).
    drop(cs.host.take().map(|mut h| {
        let _ = h.kill();
        h.wait()
    }));
    cs.serve(
        &[
            "--ssh-key",
            key.to_str().unwrap(),
            "--verified-emails",
            "someone@else.example",
        ],
        &[],
    );
    let out = cs.commit("host says no", false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the host refused to sign"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prebuilds_never_sign() {
    let mut cs = Codespace::start(10);
    let key = cs.ssh_key();
    cs.serve(&["--ssh-key", key.to_str().unwrap()], &[]);
    let report = cs.session(
        "octo/app",
        &[
            "--prebuild",
            "--signing",
            "ssh",
            "--signing-trusted",
            "octo/app",
            "--verified-emails",
            EMAIL,
        ],
    );
    assert_eq!(report["signing"]["reason"], "prebuild", "{report}");
    assert!(!cs.include().exists());
    let enabled = cs.helper(&["--enabled"], b"");
    assert_eq!(enabled.status.code(), Some(1));
    assert!(stderr(&enabled).contains("off in prebuilds"));
    let out = cs.commit("in a prebuild", true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("commit signing is off in prebuilds (prebuild)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_host_that_never_answers_times_out_and_one_that_refuses_is_heard() {
    let mut cs = Codespace::start(2);
    cs.session_ssh("octo/app");
    // Nobody connected: refused at once.
    let out = cs.commit("nobody there", false);
    assert!(
        stderr(&out).contains("no host is connected to sign"),
        "{}",
        stderr(&out)
    );
    // Connected but silent: the agent's wait (2 s here) ends it.
    cs.silent_host();
    let start = Instant::now();
    let out = cs.commit("silent host", false);
    let took = start.elapsed();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the host did not answer within 2 s (timeout)"),
        "{}",
        stderr(&out)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The silent host saw the request and the decisions since it connected; it answers one by
    // hand now.
    let events = cs.wait_for_event("\"decision\":\"timed_out\"");
    assert!(events.contains("\"event\":\"signing_request\""), "{events}");
    assert!(events.contains("\"decision\":\"allowed\""), "{events}");

    let repo = cs.repo();
    std::fs::write(repo.join("file"), "refused by hand").unwrap();
    assert!(cs.git(&["add", "file"], &repo).status.success());
    let git = cs
        .git_command(&["commit", "-q", "-m", "refused by hand"], &repo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = std::fs::read_to_string(cs.w().join("events.log")).unwrap();
            let ids: Vec<String> = events
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["event"] == "signing_request")
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect();
            if ids.len() == 2 {
                break ids[1].clone();
            }
            assert!(Instant::now() < deadline, "no second request: {events}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let answer =
        json_out(
            &cs.agent
                .ctl(&["signature", "refuse", &id, "--reason", "the key is locked"]),
        );
    assert_eq!(answer["delivered"], true);
    let out = git.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the host refused to sign: the key is locked (host-refused)"),
        "{}",
        stderr(&out)
    );
    // Answering it again (or an unknown id) is an error the host sees.
    let again = cs.agent.ctl(&["signature", "refuse", &id, "--reason", "x"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("is waiting"), "{}", stderr(&again));
}

#[test]
fn at_most_sixty_signatures_a_minute() {
    let mut cs = Codespace::start(10);
    cs.session_ssh("octo/app");
    let key = cs.ssh_key();
    cs.serve(&["--ssh-key", key.to_str().unwrap()], &[]);
    let buffer = cs.w().join("buffer");
    std::fs::write(&buffer, commit_payload(EMAIL)).unwrap();
    let sign = |cs: &Codespace| {
        cs.helper(
            &[
                "-Y",
                "sign",
                "-n",
                "git",
                "-f",
                "k",
                buffer.to_str().unwrap(),
            ],
            b"",
        )
    };
    let start = Instant::now();
    for i in 0..60 {
        let out = sign(&cs);
        assert!(out.status.success(), "signature {i}: {}", stderr(&out));
    }
    let took = start.elapsed();
    eprintln!("60 signatures through the agent and the host: {took:?}");
    let out = sign(&cs);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("more than 60 signing requests in the last minute"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("(rate-limited)"));
    let sig = std::fs::read_to_string(cs.w().join("buffer.sig")).unwrap();
    assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"));
}

/// A process in a cgroup carrying the restricted runs' marker: a restricted lifecycle run, as
/// the broker recognises it.
#[test]
fn a_restricted_run_cannot_sign() {
    if !support::root::root() {
        return;
    }
    let mut cs = Codespace::start(10);
    cs.session_ssh("octo/app");
    let key = cs.ssh_key();
    cs.serve(&["--ssh-key", key.to_str().unwrap()], &[]);
    let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists())
        .or_else(|| Some(PathBuf::from("/sys/fs/cgroup/pids")).filter(|p| p.exists()))
        .expect("a cgroup hierarchy");
    let cgroup = Cgroup(base.join(format!(
        "codespace-lifecycle-restricted.signing-test.{}",
        std::process::id()
    )));
    std::fs::create_dir(&cgroup.0).unwrap();
    std::fs::write(cs.repo().join("file"), "from a restricted run").unwrap();
    assert!(cs.git(&["add", "file"], &cs.repo()).status.success());
    let procs = cgroup.0.join("cgroup.procs");
    let out = cs
        .git_command(&["commit", "-q", "-m", "restricted"], &cs.repo())
        .env("CGROUP_PROCS", &procs)
        .env("GIT", "git")
        .arg0_shell()
        .output()
        .unwrap();
    drop(cgroup);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the signing broker refused this caller"),
        "{}\nagent log:\n{}",
        stderr(&out),
        cs.agent.log()
    );
    // Outside the cgroup the same commit is signed.
    let out = cs.commit("unrestricted", false);
    assert!(out.status.success(), "{}", stderr(&out));
    // Both decisions are in the audit trail, with who asked.
    let signing = cs.trail_signing();
    let refused = signing
        .iter()
        .find(|r| r["code"] == "restricted-sandbox")
        .unwrap_or_else(|| panic!("no restricted-sandbox refusal in {signing:?}"));
    assert_eq!(refused["decision"], "refused");
    assert!(refused["pid"].as_u64().is_some(), "{refused}");
    assert!(
        signing
            .iter()
            .any(|r| r["decision"] == "signed" && r["uid"] == 0),
        "{signing:?}"
    );
}

/// A cgroup this test made; removed when dropped (also after a failed assertion). A cgroup
/// whose last process just exited may still count it for a moment: removal is retried.
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.0).is_err() && self.0.exists() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.0.exists() {
            eprintln!("could not remove the test cgroup {}", self.0.display());
        }
    }
}

/// Runs the command through `sh`, which first moves itself into `$CGROUP_PROCS`.
trait InCgroup {
    fn arg0_shell(&mut self) -> &mut Command;
}

impl InCgroup for Command {
    fn arg0_shell(&mut self) -> &mut Command {
        let program = self.get_program().to_owned();
        let args: Vec<_> = self.get_args().map(ToOwned::to_owned).collect();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("echo $$ > \"$CGROUP_PROCS\" && exec \"$@\"")
            .arg("sh")
            .arg(program)
            .args(args);
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        if let Some(dir) = self.get_current_dir() {
            sh.current_dir(dir);
        }
        *self = sh;
        self
    }
}

#[test]
fn openpgp_commits_are_signed_with_gpg_on_the_host() {
    if Command::new("gpg").arg("--version").output().is_err() {
        eprintln!("skipped: gpg is not installed (.ci/run installs gnupg)");
        return;
    }
    let mut cs = Codespace::start(10);
    let gnupg = cs.w().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    chmod(&gnupg, 0o700);
    let generated = Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("Mona <{EMAIL}>"),
            "ed25519",
            "sign",
            "never",
        ])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let report = cs.session(
        "octo/app",
        &[
            "--signing",
            "openpgp",
            "--signing-trusted",
            "octo/app",
            "--verified-emails",
            EMAIL,
        ],
    );
    assert_eq!(report["signing"]["enabled"], true, "{report}");
    cs.serve(&["--gpg-key-id", EMAIL], &[("GNUPGHOME", &gnupg)]);
    let out = cs.commit("signed with gpg on the host", false);
    assert!(
        out.status.success(),
        "git commit: {}\nserve log:\n{}",
        stderr(&out),
        std::fs::read_to_string(cs.w().join("serve.log")).unwrap_or_default()
    );
    let cat = cs.git(&["cat-file", "commit", "HEAD"], &cs.repo());
    assert!(
        stdout(&cat).contains("gpgsig -----BEGIN PGP SIGNATURE-----"),
        "{}",
        stdout(&cat)
    );
    // Verification: the helper hands `--verify` to the real gpg, which knows the public key.
    let verify = cs
        .git_command(&["verify-commit", "HEAD"], &cs.repo())
        .env("GNUPGHOME", &gnupg)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify-commit: {}",
        stderr(&verify)
    );
    assert!(
        stderr(&verify).contains(&format!("Good signature from \"Mona <{EMAIL}>\"")),
        "{}",
        stderr(&verify)
    );
    // The key stays in the host's keyring: nothing under the state directory names it.
    for file in files_under(&cs.state()) {
        let contents = std::fs::read(&file).unwrap_or_default();
        assert!(
            !contents.windows(9).any(|w| w == b"PRIVATE K"),
            "{}",
            file.display()
        );
    }
}
