//! The environment file: `NAME='value'` lines that a POSIX shell can source and that
//! `codespace-agent exec` parses back without a shell.
//!
//! ```text
//! # codespace-agent environment: written by the agent, do not edit
//! API_KEY='abc'
//! MULTI='line one
//! it'\''s line two'
//! ```
//!
//! Quoting is the POSIX single-quote rule: everything between single quotes is literal, and a
//! `'` in the value is written as `'\''` (close, escaped quote, reopen). No other byte is special
//! inside single quotes, so `$`, backslashes, newlines and non-UTF-8 bytes survive unchanged. The
//! only byte a value may not hold is NUL, which no environment variable can carry.
//!
//! The lines assign shell variables without `export`; a login-shell snippet sources the file
//! between `set -a` and `set +a` so that the variables are exported. Sourcing evaluates nothing
//! in any POSIX shell, bash, zsh, ksh or mksh as long as two things hold: every value is
//! single-quoted, and no name is one the shell treats specially. The second is the policy's
//! deny list ([`codespace_policy::secrets::DANGEROUS_NAMES`]): assigning `RANDOM`, `OPTIND`,
//! `EUID` and their kind evaluates the value arithmetically (running a `$(..)` inside it) or
//! aborts the file, losing every later line. The vault refuses such names on delivery and
//! [`render`] skips them again. fish cannot source this file at all (it has no bare
//! assignments); a fish loader would need its own `conf.d` snippet that reads the file
//! without evaluating it, which does not exist yet.
//!
//! Writing is atomic: the new content goes to a fresh temporary file in the same directory
//! (created exclusively, mode 0600, handed to the owner with `fchown` on the open descriptor),
//! is flushed with `fsync`, and is renamed over the old file, so a reader sees either the old
//! or the new file, never a half-written one.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use codespace_policy::secrets::dangerous_reason;
use zeroize::Zeroizing;

use crate::seal::SecretValue;

/// First line of every file we write (a comment, skipped by the parser).
pub(crate) const HEADER: &str =
    "# codespace-agent environment: written by the agent, do not edit\n";

/// Largest environment file [`parse`] accepts (the vault's own output stays far below).
pub(crate) const MAX_FILE_BYTES: usize = 32 << 20;

/// Errors about the environment file. Messages never contain values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvFileError {
    /// A line is not `NAME='value'`.
    #[error("{path}: line {line}: {problem}")]
    Syntax {
        /// The file (or `<memory>`).
        path: String,
        /// 1-based line where the entry starts.
        line: usize,
        /// What is wrong (never the value).
        problem: &'static str,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory exists but is not a real directory owned by the agent.
    #[error("{path}: {problem}")]
    UnsafeDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Whether `name` can be a shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends `value` in POSIX single quotes to `out`.
pub(crate) fn quote_into(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'\'');
    for &byte in value {
        if byte == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(byte);
        }
    }
    out.push(b'\'');
}

/// Renders the whole file. Callers pass only valid names, NUL-free values and names off the
/// policy's deny list (the vault checks all three before anything is stored); an entry that
/// breaks a rule is skipped rather than written in a form a shell would misread or act on.
///
/// The deny-list check is repeated here because quoting protects the value, not the name: a
/// line `RANDOM='x[$(id)]'` is perfectly quoted, yet bash evaluates it arithmetically and runs
/// `id`, and `OPTIND='x'` makes dash abandon the rest of the file (issue 16). This writer is
/// the last place that can keep such a line out of every login shell.
pub fn render<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    out.extend_from_slice(HEADER.as_bytes());
    for (name, value) in entries {
        if !is_valid_name(name) || value.contains(&0) || dangerous_reason(name).is_some() {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        quote_into(&mut out, value);
        out.push(b'\n');
    }
    out
}

/// Parses a file written by [`render`]: comment lines (`#`), blank lines and `NAME='...'`
/// entries whose quoted part may span lines and contain `'\''`. Anything else is an error
/// naming the line, because `exec` must not guess what a shell would have made of it.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Vec<(String, SecretValue)>, EnvFileError> {
    let err = |line, problem| EnvFileError::Syntax {
        path: path.to_owned(),
        line,
        problem,
    };
    let mut entries = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        if rest[..line_end].iter().all(|b| *b == b' ' || *b == b'\t') || rest[0] == b'#' {
            pos += line_end + 1;
            line += 1;
            continue;
        }
        let start_line = line;
        let eq = rest[..line_end]
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| err(start_line, "expected NAME='value'"))?;
        let name = std::str::from_utf8(&rest[..eq])
            .ok()
            .filter(|name| is_valid_name(name))
            .ok_or_else(|| err(start_line, "invalid variable name"))?;
        let mut i = eq + 1;
        let mut value = Zeroizing::new(Vec::new());
        // One or more adjacent quoted parts, joined by `\'`.
        loop {
            if rest.get(i) != Some(&b'\'') {
                return Err(err(start_line, "value must be in single quotes"));
            }
            i += 1;
            let close = rest[i..]
                .iter()
                .position(|&b| b == b'\'')
                .ok_or_else(|| err(start_line, "unterminated single quote"))?;
            let part = &rest[i..i + close];
            if part.contains(&0) {
                return Err(err(start_line, "value contains a NUL byte"));
            }
            line += part.iter().filter(|&&b| b == b'\n').count();
            value.extend_from_slice(part);
            i += close + 1;
            if rest[i..].starts_with(b"\\'") {
                value.push(b'\'');
                i += 2;
                continue;
            }
            break;
        }
        match rest.get(i) {
            None => {}
            Some(b'\n') => i += 1,
            Some(_) => return Err(err(line, "unexpected text after the closing quote")),
        }
        line += 1;
        pos += i;
        entries.push((name.to_owned(), SecretValue::from(value)));
    }
    Ok(entries)
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Vec<(String, SecretValue)>, EnvFileError> {
    let shown = path.display().to_string();
    let bytes = Zeroizing::new(fs::read(path).map_err(|source| EnvFileError::Io {
        action: "read",
        path: shown.clone(),
        source,
    })?);
    if bytes.len() > MAX_FILE_BYTES {
        return Err(EnvFileError::TooLarge {
            path: shown,
            max: MAX_FILE_BYTES,
        });
    }
    parse(&shown, &bytes)
}

/// Makes sure `dir` is a real directory (not a symlink) owned by the agent's effective uid with
/// exactly `mode`, creating it (and missing parents) if needed.
pub(crate) fn ensure_private_dir(dir: &Path, mode: u32) -> Result<(), EnvFileError> {
    let shown = || dir.display().to_string();
    let io = |action| {
        move |source| EnvFileError::Io {
            action,
            path: dir.display().to_string(),
            source,
        }
    };
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io("create directory"))?;
        }
        Err(e) => return Err(io("inspect directory")(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io("inspect directory"))?;
    if !meta.file_type().is_dir() {
        return Err(EnvFileError::UnsafeDirectory {
            path: shown(),
            problem: "exists and is not a directory (or is a symlink)",
        });
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(EnvFileError::UnsafeDirectory {
            path: shown(),
            problem: "is owned by another user",
        });
    }
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(io("set permissions of"))?;
    }
    Ok(())
}

/// Who owns the environment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// The agent process's own real uid and gid (development and tests).
    pub fn current() -> Self {
        Self {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }
}

/// Process-wide on purpose: temporary names (`.<name>.<pid>.<n>.tmp`) must differ between every
/// writer of this process, whichever value it belongs to.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Atomically replaces `path` with `contents`, mode 0600, owned by `owner` (changed with
/// `fchown` when the agent runs as root; otherwise `owner` must be the agent's own uid).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], owner: Owner) -> Result<(), EnvFileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp: PathBuf = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |action, path: &Path| {
        let path = path.display().to_string();
        move |source| EnvFileError::Io {
            action,
            path,
            source,
        }
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // O_CREAT|O_EXCL: never follows or reuses an existing entry (symlink or file).
            .mode(0o600)
            .open(&temp)
            .map_err(io("create", &temp))?;
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
                .map_err(io("change owner of", &temp))?;
        }
        file.write_all(contents).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        fs::rename(&temp, path).map_err(io("rename over", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Removes the file if present (used when nothing is left to export).
pub(crate) fn remove(path: &Path) -> Result<(), EnvFileError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EnvFileError::Io {
            action: "remove",
            path: path.display().to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
// A test says on stderr which shell it skipped, so a missing one is visible, not silent.
#[allow(clippy::unwrap_used, clippy::print_stderr)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    fn source_with_sh(file: &Path, name: &str) -> Vec<u8> {
        source_with("/bin/sh", file, name)
    }

    fn source_with(shell: &str, file: &Path, name: &str) -> Vec<u8> {
        let out = Command::new(shell)
            .arg("-c")
            .arg(format!(". \"$1\"; printf %s \"${name}\""))
            .arg("sh")
            .arg(file)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn quoting_examples() {
        let mut out = Vec::new();
        quote_into(&mut out, b"it's $HOME\\");
        assert_eq!(out, b"'it'\\''s $HOME\\'");
    }

    #[test]
    fn tricky_values_survive_sh_and_the_parser() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("environment");
        let values: Vec<(&str, &[u8])> = vec![
            ("A", b""),
            ("B", b"'"),
            ("C", b"''\\'"),
            ("D", b"line1\nline2\n"),
            ("E", b"$(touch /tmp/pwned) `id` ${HOME} $HOME"),
            ("F", "unicode: é ✓ 🦀".as_bytes()),
            ("G", b"back\\slash\\\\n"),
            ("H", b"\xff\xfe non-utf8"),
            ("_I9", b"  spaces  \t tab"),
        ];
        write_atomic(&file, &render(values.iter().copied()), Owner::current()).unwrap();
        let parsed = read(&file).unwrap();
        assert_eq!(parsed.len(), values.len());
        for ((name, value), (pname, pvalue)) in values.iter().zip(&parsed) {
            assert_eq!(name, pname);
            assert_eq!(*value, pvalue.expose());
            assert_eq!(source_with_sh(&file, name), *value, "{name}");
            if Path::new("/bin/bash").exists() {
                assert_eq!(source_with("/bin/bash", &file, name), *value, "bash {name}");
            }
        }
        let mode = fs::metadata(&file).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn render_skips_what_cannot_be_written_safely() {
        let out = render([
            ("OK", &b"1"[..]),
            ("BAD-NAME", b"2"),
            ("NUL", b"a\0b"),
            ("RANDOM", b"x[$(id)]"),
            ("optind", b"1"),
            ("GITHUB_TOKEN", b"ghu_x"),
        ]);
        let parsed = parse("<memory>", &out).unwrap();
        let names: Vec<_> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        // The token's name is reserved for secrets, not dangerous: the vault writes it.
        assert_eq!(names, ["OK", "GITHUB_TOKEN"]);
    }

    #[test]
    fn parser_errors_name_the_line_and_never_the_value() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"A='1'\nB=2\n", 2, "single quotes"),
            (b"A='1'\n\nB='x\nsecretvalue", 3, "unterminated"),
            (b"A='1' ; rm -rf /\n", 1, "after the closing quote"),
            (b"1A='x'\n", 1, "invalid variable name"),
            (b"export A='x'\n", 1, "invalid variable name"),
            (b"A='a\nb'\nnonsense\n", 3, "expected"),
        ];
        for (input, line, problem) in cases {
            let err = parse("f", input).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with(&format!("f: line {line}:")), "{text}");
            assert!(text.contains(problem), "{text}");
            assert!(!text.contains("secretvalue"));
        }
    }

    #[test]
    fn ensure_private_dir_creates_and_fixes_modes_and_refuses_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir, 0o700).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&dir, 0o711).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o711);
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link, 0o700),
            Err(EnvFileError::UnsafeDirectory { .. })
        ));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("environment");
        write_atomic(&file, b"A='1'\n", Owner::current()).unwrap();
        write_atomic(&file, b"A='2'\n", Owner::current()).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"A='2'\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        remove(&file).unwrap();
        remove(&file).unwrap();
    }

    /// The shells that load the file (`set -a; . file`, as the profile.d hook does), by path,
    /// with the arguments that start them. A shell that is not installed is reported and skipped
    /// (`.ci/run` installs them all).
    fn installed_shells() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
        let wanted: [(&str, &str, &[&str]); 6] = [
            ("sh", "/bin/sh", &[]),
            ("bash", "/bin/bash", &[]),
            ("zsh", "/usr/bin/zsh", &[]),
            // Debian's zprofile sources /etc/profile (and so the hook) under `emulate sh`.
            ("zsh --emulate sh", "/usr/bin/zsh", &["--emulate", "sh"]),
            ("ksh", "/usr/bin/ksh", &[]),
            ("mksh", "/usr/bin/mksh", &[]),
        ];
        let mut found = Vec::new();
        for (label, path, args) in wanted {
            if Path::new(path).exists() {
                found.push((label, path, args));
            } else {
                eprintln!("{label} ({path}) is not installed: skipping that shell");
            }
        }
        // fish cannot source `NAME='value'` lines at all (it has no bare assignments), so there
        // is nothing to try; no fish loader exists.
        found
    }

    /// Issue 16: the *name* is the attack. Assigning `RANDOM`, `OPTIND`, `HISTCMD` and similar
    /// evaluates the value arithmetically in some shell, which runs `$(..)` inside an array
    /// subscript; read-only or numeric ones (`EUID` in zsh, `OPTIND` in dash) abort the file, so
    /// every later entry (the token among them) silently goes missing. Written through the real
    /// writer and sourced by every installed shell, such a file must run nothing and still
    /// export the ordinary entries before and after it.
    #[test]
    fn hostile_names_run_nothing_and_lose_nothing_in_any_shell() {
        let hostile = [
            "RANDOM",
            "SRANDOM",
            "HISTCMD",
            "OPTIND",
            "SECONDS",
            "LINENO",
            "EUID",
            "UID",
            "GID",
            "EGID",
            "PPID",
            "SHLVL",
            "COLUMNS",
            "LINES",
            "TMOUT",
            "HISTSIZE",
            "SAVEHIST",
            "MAILCHECK",
            "FUNCNEST",
            "KEYTIMEOUT",
            "BASHPID",
            "KSHUID",
            "status",
            "argv",
            "options",
            "functions",
            "dis_aliases",
        ];
        let shells = installed_shells();
        let mut failures = Vec::new();
        for name in hostile {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("environment");
            let marker = dir.path().join("ran");
            let payload = format!("path[$(touch {})]", marker.display());
            let entries: [(&str, &[u8]); 3] = [
                ("EARLY", b"1"),
                (name, payload.as_bytes()),
                ("LATER", b"ok"),
            ];
            write_atomic(&file, &render(entries), Owner::current()).unwrap();
            for (label, program, args) in &shells {
                let out = Command::new(program)
                    .args(*args)
                    .arg("-c")
                    .arg("set -a; . \"$1\"; set +a; env")
                    .arg("sh")
                    .arg(&file)
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                let env = String::from_utf8_lossy(&out.stdout);
                let exported = |line: &str| env.lines().any(|l| l == line);
                if marker.exists() {
                    failures.push(format!("{label}: {name} ran the payload"));
                    fs::remove_file(&marker).unwrap();
                }
                if !exported("EARLY=1") || !exported("LATER=ok") {
                    failures.push(format!(
                        "{label}: {name} lost entries: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(1u8..=255, 0..64),
            "[ -~\n'\"$`\\\\é🦀]{0,40}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_value_round_trips_through_sh(value in value_strategy()) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("environment");
            write_atomic(&file, &render([("V", value.as_slice())]), Owner::current()).unwrap();
            prop_assert_eq!(source_with_sh(&file, "V"), value.clone());
            let parsed = read(&file).unwrap();
            prop_assert_eq!(parsed[0].1.expose(), value.as_slice());
        }

        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse("fuzz", &bytes);
        }
    }
}
