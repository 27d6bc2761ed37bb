//! `codespace-agent git-sign`: git's signing program inside the VM, a thin client of the
//! signing broker ([`crate::guest::signing`]). The key stays on the host.
//!
//! Git runs its signing program with fixed arguments (`gpg-interface.c`), and this helper
//! accepts exactly those (the package installs `/usr/bin/codespace-git-sign`, a two-line
//! wrapper, because git runs `gpg.program` without a shell and so cannot pass `git-sign`):
//!
//! ```text
//! gpg.format=ssh:     PROGRAM -Y sign -n git -f KEY [-U] FILE   → FILE.sig, exit 0
//! gpg.format=openpgp: PROGRAM --status-fd=2 -bsau KEY           stdin → armored signature on
//!                                                               stdout, [GNUPG:] SIG_CREATED on 2
//! anything else that signs (-n file, -Y sign of stdin, ...)    → refused, exit 2
//! verification (git verify-commit, log --show-signature):
//!   PROGRAM -Y find-principals|check-novalidate|verify ...    → exec the real ssh-keygen
//!   PROGRAM [--keyid-format=long] --status-fd=1 --verify ...  → exec the real gpg
//! codespace-agent git-sign --enabled                           → exit 0 (prints the format)
//!                                                               or 1 (prints why not)
//! ```
//!
//! Verification needs no key and no broker: git calls the same program for it, so the helper
//! hands those calls, arguments untouched, to the real `ssh-keygen` or `gpg` found on `PATH`
//! (never itself), and `git verify-commit` works with the user's `gpg.ssh.allowedSignersFile`
//! or keyring as it would without the agent.
//!
//! A refusal is printed on stderr, where git shows it (`error: ...` for SSH, `gpg failed to
//! sign the data: ...` for OpenPGP), with the broker's reason and its code; the message never
//! contains `usage:` (git takes that word for an outdated ssh-keygen). Everything is bounded:
//! the payload ([`MAX_PAYLOAD`]), the answer and the time on the socket.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codespace_policy::signing::SigningFormat;

use crate::guest::signing::armor;
use crate::guest::signing::config::MAX_WAIT;
use crate::guest::signing::protocol::{
    BrokerAnswer, HelperRequest, Reason, MAX_ANSWER, MAX_PAYLOAD, REFUSED_AT_ACCEPT, SOCKET_NAME,
};

/// How long the helper waits for the broker's answer: the longest wait the agent may be
/// configured with, plus its time to read and to write.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(MAX_WAIT.as_secs() + 15);

/// What git (or a script) asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `--enabled`: is signing on?
    Enabled,
    /// `-Y sign -n git -f KEY [-U] FILE`.
    SshSign {
        /// The file git wrote the payload to; the signature goes to `FILE.sig`.
        file: PathBuf,
    },
    /// `--status-fd=2 -bsau KEY`: payload on stdin.
    GpgSign {
        /// Whether to write gpg's status lines (on stderr).
        status: bool,
    },
    /// A verification call, handed to the real program.
    Verify {
        /// `ssh-keygen` or `gpg`.
        program: &'static str,
        /// Its arguments, untouched.
        args: Vec<OsString>,
    },
}

/// Why the helper did not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitSignError {
    /// Arguments that are not one of git's calls (exit 2).
    #[error("unsupported arguments: {0}")]
    Unsupported(String),
    /// The broker (or the host) refused.
    #[error("not signed: {} ({})", .0.message, .0.code)]
    Refused(Reason),
    /// The broker closed without an answer: how it refuses a caller.
    #[error("not signed: {REFUSED_AT_ACCEPT}")]
    RefusedAtAccept,
    /// Signing is off (`--enabled`).
    #[error("signing is off: {} ({})", .0.message, .0.code)]
    Disabled(Reason),
    /// The payload is larger than the broker takes.
    #[error("the data to sign is larger than {MAX_PAYLOAD} bytes")]
    TooLarge,
    /// A local file or stream failed.
    #[error("{action} {what}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker socket could not be used.
    #[error("signing broker at {path}: {action}: {source}")]
    Broker {
        /// The socket.
        path: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker's answer is not the protocol's, or not what was asked.
    #[error("signing broker at {path} sent an invalid answer")]
    InvalidAnswer {
        /// The socket.
        path: String,
    },
    /// The real verification program is not installed.
    #[error("{0} is not installed: git's signature verification needs it (only signing goes through the agent)")]
    NoVerifier(&'static str),
}

impl GitSignError {
    /// The exit code: 2 for arguments that are not git's, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unsupported(_) => 2,
            _ => 1,
        }
    }
}

/// Parses the arguments after `git-sign` (and an optional `--state-dir DIR` before them).
pub fn parse(
    args: &[OsString],
    default_state: &Path,
) -> Result<(PathBuf, Invocation), GitSignError> {
    let mut state = default_state.to_owned();
    let mut rest = args;
    if let Some(first) = rest.first().and_then(|a| a.to_str()) {
        if let Some(dir) = first.strip_prefix("--state-dir=") {
            state = dir.into();
            rest = &rest[1..];
        } else if first == "--state-dir" {
            state = rest
                .get(1)
                .ok_or_else(|| unsupported("--state-dir needs a directory"))?
                .into();
            rest = &rest[2..];
        }
    }
    let words: Vec<&str> = rest
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| unsupported("arguments that are not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let invocation = match words.as_slice() {
        ["--enabled"] => Invocation::Enabled,
        ["-Y", "sign", options @ ..] => ssh_sign(options)?,
        ["-Y", "find-principals" | "check-novalidate" | "verify" | "match-principals", ..] => {
            Invocation::Verify {
                program: "ssh-keygen",
                args: rest.to_vec(),
            }
        }
        ["-Y", verb, ..] => {
            return Err(unsupported(&format!(
                "ssh-keygen -Y {verb} is not git's signing call"
            )))
        }
        w if w.contains(&"--verify") => Invocation::Verify {
            program: "gpg",
            args: rest.to_vec(),
        },
        w => gpg_sign(w)?,
    };
    Ok((state, invocation))
}

fn unsupported(why: &str) -> GitSignError {
    GitSignError::Unsupported(format!(
        "{why}; only git's signing calls are brokered (ssh-keygen -Y sign -n git -f KEY FILE, gpg --status-fd=2 -bsau KEY)"
    ))
}

/// `-n git -f KEY [-U] FILE`, options in any order, one file.
fn ssh_sign(options: &[&str]) -> Result<Invocation, GitSignError> {
    let mut namespace = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            "-n" | "-f" => {
                let value = options
                    .get(i + 1)
                    .ok_or_else(|| unsupported(&format!("{} needs a value", options[i])))?;
                if options[i] == "-n" {
                    namespace = Some(*value);
                }
                i += 2;
                continue;
            }
            "-U" => {}
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(unsupported(&format!("ssh-keygen -Y sign option {o}")));
            }
            file => files.push(file),
        }
        i += 1;
    }
    match namespace {
        Some("git") => {}
        Some(other) => {
            return Err(unsupported(&format!(
                "signatures for namespace {other:?} (only \"git\")"
            )))
        }
        None => return Err(unsupported("-Y sign without -n git")),
    }
    match files.as_slice() {
        [file] if *file != "-" => Ok(Invocation::SshSign { file: file.into() }),
        _ => Err(unsupported("-Y sign needs exactly one file")),
    }
}

/// `--status-fd=2 -bsau KEY` and its long spellings; detach, sign and armor are required.
fn gpg_sign(words: &[&str]) -> Result<Invocation, GitSignError> {
    let (mut detach, mut sign, mut armor, mut status) = (false, false, false, false);
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        match w {
            "--status-fd=2" => status = true,
            "--status-fd" if words.get(i + 1) == Some(&"2") => {
                status = true;
                i += 1;
            }
            "--detach-sign" => {
                detach = true;
                sign = true;
            }
            "--sign" => sign = true,
            "--armor" => armor = true,
            "--local-user" | "-u" => i += 1,
            _ if w.starts_with("--local-user=") => {}
            _ if w.starts_with('-') && !w.starts_with("--") && w.len() > 1 => {
                // Bundled short options: b, s, a, and u (which takes the next argument).
                for c in w[1..].chars() {
                    match c {
                        'b' => detach = true,
                        's' => sign = true,
                        'a' => armor = true,
                        'u' => i += 1,
                        _ => return Err(unsupported(&format!("gpg option -{c}"))),
                    }
                }
            }
            other => return Err(unsupported(&format!("gpg argument {other:?}"))),
        }
        i += 1;
    }
    if !(detach && sign && armor) {
        return Err(unsupported(
            "a gpg call that is not a detached, armored signature",
        ));
    }
    Ok(Invocation::GpgSign { status })
}

/// Runs `invocation`: reads the payload from `FILE` or `stdin`, writes the signature to
/// `FILE.sig` or `stdout`, status lines and nothing else to `status_out`. For
/// [`Invocation::Verify`] this returns only if the real program could not be started.
pub fn run(
    state_dir: &Path,
    invocation: Invocation,
    stdin: impl Read,
    mut stdout: impl Write,
    mut status_out: impl Write,
) -> Result<(), GitSignError> {
    match invocation {
        Invocation::Enabled => match ask(state_dir, &HelperRequest::Enabled)? {
            BrokerAnswer::Enabled(format) => {
                write_all(&mut stdout, format!("{format}\n").as_bytes(), "stdout")
            }
            BrokerAnswer::Disabled(reason) => Err(GitSignError::Disabled(reason)),
            _ => Err(invalid_answer(state_dir)),
        },
        Invocation::SshSign { file } => {
            let payload = read_bounded(
                std::fs::File::open(&file).map_err(io("open", &file))?,
                &file.display().to_string(),
            )?;
            let signature = sign(state_dir, SigningFormat::Ssh, payload)?;
            write_sig_file(&file, &signature)
        }
        Invocation::GpgSign { status } => {
            let payload = read_bounded(stdin, "stdin")?;
            let signature = sign(state_dir, SigningFormat::OpenPgp, payload)?;
            let info = armor::check_openpgp(&signature).map_err(|_| invalid_answer(state_dir))?;
            write_all(&mut stdout, signature.as_bytes(), "stdout")?;
            if status {
                let lines = format!(
                    "[GNUPG:] BEGIN_SIGNING H{}\n{}\n",
                    info.hash_algo,
                    info.status_line()
                );
                write_all(&mut status_out, lines.as_bytes(), "the status stream")?;
            }
            Ok(())
        }
        Invocation::Verify { program, args } => Err(exec_verifier(program, &args)),
    }
}

/// Asks the broker to sign `payload`; the armored signature.
fn sign(state_dir: &Path, format: SigningFormat, payload: Vec<u8>) -> Result<String, GitSignError> {
    match ask(state_dir, &HelperRequest::Sign { format, payload })? {
        BrokerAnswer::Signature(armored) => {
            armor::check(format, &armored).map_err(|_| invalid_answer(state_dir))?;
            Ok(armored)
        }
        BrokerAnswer::Refused(reason) => Err(GitSignError::Refused(reason)),
        _ => Err(invalid_answer(state_dir)),
    }
}

fn socket(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

fn invalid_answer(state_dir: &Path) -> GitSignError {
    GitSignError::InvalidAnswer {
        path: socket(state_dir).display().to_string(),
    }
}

fn io<'a>(
    action: &'static str,
    what: &'a Path,
) -> impl FnOnce(std::io::Error) -> GitSignError + 'a {
    move |source| GitSignError::Io {
        action,
        what: what.display().to_string(),
        source,
    }
}

fn write_all(out: &mut impl Write, bytes: &[u8], what: &str) -> Result<(), GitSignError> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| GitSignError::Io {
            action: "write to",
            what: what.to_owned(),
            source,
        })
}

/// Reads at most [`MAX_PAYLOAD`] bytes; more is an error, never a truncated signature.
fn read_bounded(input: impl Read, what: &str) -> Result<Vec<u8>, GitSignError> {
    let mut payload = Vec::new();
    input
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|source| GitSignError::Io {
            action: "read",
            what: what.to_owned(),
            source,
        })?;
    if payload.len() > MAX_PAYLOAD {
        return Err(GitSignError::TooLarge);
    }
    Ok(payload)
}

/// One request, one answer. A connection the broker closes without an answer is its refusal
/// at accept (see [`crate::credential_helper`] for why that reads as a broken pipe or a reset).
fn ask(state_dir: &Path, request: &HelperRequest) -> Result<BrokerAnswer, GitSignError> {
    let path = socket(state_dir);
    let shown = path.display().to_string();
    let answer = crate::credential_helper::exchange(
        &path,
        &request.encode(),
        Duration::from_secs(10),
        ANSWER_TIMEOUT,
        MAX_ANSWER,
    )
    .map_err(|e| GitSignError::Broker {
        path: shown.clone(),
        action: e.action,
        source: e.source,
    })?;
    match answer {
        Some(answer) if !answer.is_empty() => {
            BrokerAnswer::decode(&answer).map_err(|_| GitSignError::InvalidAnswer { path: shown })
        }
        _ => Err(GitSignError::RefusedAtAccept),
    }
}

/// Writes `FILE.sig` as ssh-keygen does, without following a link planted at that name: a
/// stale entry is removed, then the file is created exclusively.
fn write_sig_file(file: &Path, signature: &str) -> Result<(), GitSignError> {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    let sig = PathBuf::from(name);
    match std::fs::remove_file(&sig) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &sig)(e)),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&sig)
        .map_err(io("create", &sig))?;
    out.write_all(signature.as_bytes())
        .map_err(io("write", &sig))
}

/// The real `program` on `PATH`, skipping this executable (an image might link `ssh-keygen`
/// to the helper by mistake: it must not call itself).
pub fn find_verifier(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .filter(|candidate| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .find(|candidate| candidate.canonicalize().ok() != me)
}

/// Replaces this process with the real verification program; returns only on failure.
fn exec_verifier(program: &'static str, args: &[OsString]) -> GitSignError {
    use std::os::unix::process::CommandExt as _;
    let Some(real) = find_verifier(program, std::env::var_os("PATH").as_deref()) else {
        return GitSignError::NoVerifier(program);
    };
    let error = std::process::Command::new(&real).args(args).exec();
    GitSignError::Io {
        action: "run",
        what: real.display().to_string(),
        source: error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parsed(words: &[&str]) -> Result<Invocation, GitSignError> {
        parse(&args(words), Path::new("/run/x")).map(|(_, i)| i)
    }

    #[test]
    fn gits_calls_are_recognised() {
        assert_eq!(parsed(&["--enabled"]).unwrap(), Invocation::Enabled);
        let file = Invocation::SshSign {
            file: "/tmp/.git_signing_buffer_tmpAbC".into(),
        };
        assert_eq!(
            parsed(&[
                "-Y",
                "sign",
                "-n",
                "git",
                "-f",
                "/home/u/.ssh/id",
                "/tmp/.git_signing_buffer_tmpAbC"
            ])
            .unwrap(),
            file
        );
        assert_eq!(
            parsed(&[
                "-Y",
                "sign",
                "-n",
                "git",
                "-f",
                "/tmp/.git_signing_key_tmpX",
                "-U",
                "/tmp/.git_signing_buffer_tmpAbC"
            ])
            .unwrap(),
            file
        );
        assert_eq!(
            parsed(&["--status-fd=2", "-bsau", "Mona <mona@example.com>"]).unwrap(),
            Invocation::GpgSign { status: true }
        );
        assert_eq!(
            parsed(&["--detach-sign", "--armor", "--local-user", "ABCD"]).unwrap(),
            Invocation::GpgSign { status: false }
        );
        assert!(matches!(
            parsed(&["-Y", "find-principals", "-f", "allowed", "-s", "sig"]).unwrap(),
            Invocation::Verify {
                program: "ssh-keygen",
                ..
            }
        ));
        assert!(matches!(
            parsed(&[
                "--keyid-format=long",
                "--status-fd=1",
                "--verify",
                "/tmp/s",
                "-"
            ])
            .unwrap(),
            Invocation::Verify { program: "gpg", .. }
        ));
        let (state, _) =
            parse(&args(&["--state-dir", "/s", "--enabled"]), Path::new("/d")).unwrap();
        assert_eq!(state, PathBuf::from("/s"));
    }

    #[test]
    fn other_signing_calls_are_refused_with_a_clear_message() {
        for words in [
            &["-Y", "sign", "-n", "file", "-f", "k", "f"][..],
            &["-Y", "sign", "-f", "k", "f"],
            &["-Y", "sign", "-n", "git", "-f", "k"],
            &["-Y", "sign", "-n", "git", "-f", "k", "-"],
            &["-Y", "sign", "-n", "git", "-f", "k", "a", "b"],
            &["-Y", "sign", "-n", "git", "-O", "hashalg=sha1", "f"],
            &["-Y", "gen-key"],
            &["--status-fd=2", "-bsau"][..1],
            &["--clearsign"],
            &["--status-fd=2", "-sau", "k"],
            &["-bsaue", "k"],
            &["--export-secret-keys"],
            &[],
        ] {
            let err = parsed(words).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{words:?}");
            let text = err.to_string();
            assert!(!text.contains("usage:"), "{text}");
        }
    }

    #[test]
    fn the_sig_file_replaces_a_stale_one_and_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("buffer");
        write_sig_file(&file, "sig-1").unwrap();
        write_sig_file(&file, "sig-2").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("buffer.sig")).unwrap(),
            "sig-2"
        );
        // A link where the signature goes is removed, its target untouched.
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(dir.path().join("buffer.sig")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("buffer.sig")).unwrap();
        write_sig_file(&file, "sig-3").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("buffer.sig")).unwrap(),
            "sig-3"
        );
    }

    #[test]
    fn the_verifier_is_never_this_program() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        std::os::unix::fs::symlink(&me, dir.path().join("ssh-keygen")).unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_verifier("ssh-keygen", Some(&path)), None);
        let other = tempfile::tempdir().unwrap();
        let real = other.path().join("ssh-keygen");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([dir.path(), other.path()]).unwrap();
        assert_eq!(find_verifier("ssh-keygen", Some(&path)), Some(real));
    }

    #[test]
    fn a_missing_broker_and_a_closing_one_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = ask(dir.path(), &HelperRequest::Enabled).unwrap_err();
        assert!(
            err.to_string().contains("git-sign.sock") && err.to_string().contains("connect"),
            "{err}"
        );
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET_NAME)).unwrap();
        let refuser = std::thread::spawn(move || drop(listener.accept().unwrap()));
        let err = ask(dir.path(), &HelperRequest::Enabled).unwrap_err();
        assert!(matches!(err, GitSignError::RefusedAtAccept), "{err}");
        refuser.join().unwrap();
    }
}
