//! `codespace-agent exec -- CMD [ARGS…]`: runs a command with the codespace's environment file
//! applied on top of the inherited environment.
//!
//! The file ([`crate::guest::vault::envfile`]) is parsed, not sourced by a shell, so nothing in
//! it is ever executed. An inherited `GITHUB_TOKEN` is removed first: when the file has no token
//! (it expired, or export is off), a stale one from a long-lived shell must not leak through.
//! On Unix the command replaces the current process (`execvp`), so signals and the exit status
//! are the command's own.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::Command;

use crate::guest::vault::envfile::{self, EnvFileError};
use crate::guest::vault::{environment_path, TOKEN_VARIABLE};

/// Errors of `exec`. None contains a value from the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// No command was given.
    #[error("no command given (usage: codespace-agent exec -- CMD [ARGS...])")]
    NoCommand,
    /// The environment file could not be read or parsed.
    #[error("environment file: {0}")]
    EnvFile(#[from] EnvFileError),
    /// The command could not be started.
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Builds the command `argv` with the environment file of `state_dir` applied.
pub fn command(state_dir: &Path, argv: &[OsString]) -> Result<Command, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::NoCommand)?;
    let entries = envfile::read(&environment_path(state_dir))?;
    let mut command = Command::new(program);
    command.args(args).env_remove(TOKEN_VARIABLE);
    for (name, value) in &entries {
        command.env(name, OsStr::from_bytes(value.expose()));
    }
    Ok(command)
}

/// Replaces the current process with `argv` run with the environment file applied. Returns only
/// on error.
pub fn run(state_dir: &Path, argv: &[OsString]) -> ExecError {
    use std::os::unix::process::CommandExt as _;
    let mut command = match command(state_dir, argv) {
        Ok(command) => command,
        Err(err) => return err,
    };
    let source = command.exec();
    ExecError::Spawn {
        program: argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guest::vault::Owner;

    fn state_with(entries: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = environment_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        envfile::write_atomic(
            &path,
            &envfile::render(entries.iter().copied()),
            Owner::current(),
        )
        .unwrap();
        dir
    }

    fn argv(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_sees_the_file_values_exactly() {
        let value: &[u8] = b"it's $HOME\nline2 \\ \xc3\xa9";
        let dir = state_with(&[("SECRET_A", value), ("GITHUB_TOKEN", b"ghu_file")]);
        let out = command(
            dir.path(),
            &argv(&[
                "/bin/sh",
                "-c",
                "printf %s \"$SECRET_A\"; printf '|%s' \"$GITHUB_TOKEN\"",
            ]),
        )
        .unwrap()
        .output()
        .unwrap();
        assert!(out.status.success());
        let mut expected = value.to_vec();
        expected.extend_from_slice(b"|ghu_file");
        assert_eq!(out.stdout, expected);
    }

    #[test]
    fn an_inherited_token_does_not_survive_when_the_file_has_none() {
        let dir = state_with(&[("OTHER", b"1")]);
        let cmd = command(dir.path(), &argv(&["true"])).unwrap();
        let token = cmd
            .get_envs()
            .find(|(name, _)| *name == OsStr::new(TOKEN_VARIABLE))
            .map(|(_, value)| value);
        // `Some(None)`: explicitly removed from the inherited environment.
        assert_eq!(token, Some(None));
    }

    #[test]
    fn errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            command(dir.path(), &[]),
            Err(ExecError::NoCommand)
        ));
        let err = command(dir.path(), &argv(&["true"])).unwrap_err();
        assert!(err.to_string().contains("environment"), "{err}");
        let dir = state_with(&[]);
        let err = run(dir.path(), &argv(&["/nonexistent/program"]));
        assert!(matches!(err, ExecError::Spawn { .. }));
    }
}
