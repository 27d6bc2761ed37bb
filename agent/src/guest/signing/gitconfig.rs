//! The git configuration that turns signing on: a file the agent writes while signing is on
//! for the codespace and removes when it is off, included from `/etc/gitconfig`.
//!
//! ```ini
//! # /etc/gitconfig (the package's block)        # /run/codespace-agent-git/signing.gitconfig
//! [include]                                      [gpg]
//!     path = /run/codespace-agent-git/...            format = ssh
//!                                                [gpg "ssh"]
//!                                                    program = /usr/bin/codespace-git-sign
//!                                                [user]
//!                                                    signingKey = codespace-host-key
//!                                                [commit]
//!                                                    gpgSign = true
//!                                                [tag]
//!                                                    gpgSign = true
//! ```
//!
//! Why a file and not a flag: git cannot ask a program whether to sign, and the decision
//! changes during the codespace's life (a `session create` turns it on; a prebuild never).
//! Git reads the file at every command, so a change applies to the next `git commit`, in
//! shells that were open before. A missing include is ignored by git; an unreadable one is
//! fatal, so the file is world-readable and lives **outside** the state directory (which
//! lifecycle sandboxes make unreachable, EACCES), in a directory that exists from boot on
//! (tmpfiles.d: a sandbox's Landlock rules bind to the inodes that exist when a run starts).
//! The user's own `~/.gitconfig` and repository config come later and win, as they should.
//!
//! The file is written by the privileged side from this fixed template: the network side
//! only says which format (or none), never any text, so a compromised network side cannot put
//! `core.pager` or `core.fsmonitor` into every git command of the user. SSH format needs
//! `user.signingKey` set; the value is a placeholder the helper ignores (the host holds the
//! key; git passes it as `-f`).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use codespace_policy::signing::SigningFormat;

/// Where the file is written by default.
pub(crate) const DEFAULT_PATH: &str = "/run/codespace-agent-git/signing.gitconfig";

/// The `user.signingKey` written for SSH signing (git needs one; the helper ignores it).
pub(crate) const PLACEHOLDER_KEY: &str = "codespace-host-key";

/// The file's contents for `format`, naming `program` as git's signing program.
pub(crate) fn render(format: SigningFormat, program: &Path) -> String {
    let program = quote(&program.display().to_string());
    let mut out = format!(
        "# Written by codespace-agent: commit signing is on for this codespace ({format}).\n\
         # Signatures are made on the host; the key never enters the VM.\n"
    );
    match format {
        SigningFormat::Ssh => out.push_str(&format!(
            "[gpg]\n\tformat = ssh\n[gpg \"ssh\"]\n\tprogram = {program}\n\
             [user]\n\tsigningKey = {PLACEHOLDER_KEY}\n"
        )),
        SigningFormat::OpenPgp => out.push_str(&format!(
            "[gpg]\n\tformat = openpgp\n[gpg \"openpgp\"]\n\tprogram = {program}\n"
        )),
    }
    out.push_str("[commit]\n\tgpgSign = true\n[tag]\n\tgpgSign = true\n");
    out
}

/// A git config value in double quotes (backslash and quote escaped; the configuration
/// refuses paths with line breaks before they get here).
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Makes sure the file's directory exists (mode 0755, a real directory, not a link). The
/// package creates it at boot (tmpfiles.d), before any lifecycle run, so sandboxes see what
/// is written there later; this covers an installation without it.
pub(crate) fn prepare_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the signing git config path has no directory"))?;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o755).create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        }
        Err(e) => Err(e),
    }
}

/// Writes the file for `format` (atomically, mode 0644; its directory is made if missing), or
/// removes it for `None` (creating nothing).
pub(crate) fn apply(
    path: &Path,
    format: Option<SigningFormat>,
    program: &Path,
) -> std::io::Result<()> {
    let Some(format) = format else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    prepare_dir(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(".signing.gitconfig.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        // O_EXCL: never writes through a link planted where the temporary file goes.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(render(format, program).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_file_appears_and_goes_with_signing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("git/signing.gitconfig");
        let program = Path::new("/opt/my \"tools\"/codespace-git-sign");
        apply(&path, Some(SigningFormat::Ssh), program).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\tformat = ssh\n"), "{text}");
        assert!(
            text.contains("program = \"/opt/my \\\"tools\\\"/codespace-git-sign\""),
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        apply(&path, Some(SigningFormat::OpenPgp), program).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[gpg \"openpgp\"]") && !text.contains("signingKey"));
        apply(&path, None, program).unwrap();
        assert!(!path.exists());
        apply(&path, None, program).unwrap();
        // Removing creates nothing.
        let elsewhere = dir.path().join("never/signing.gitconfig");
        apply(&elsewhere, None, program).unwrap();
        assert!(!dir.path().join("never").exists());
        // Nothing else was left in the directory.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            0
        );
    }

    #[test]
    fn git_reads_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.gitconfig");
        apply(
            &path,
            Some(SigningFormat::Ssh),
            Path::new("/usr/bin/codespace-git-sign"),
        )
        .unwrap();
        let out = std::process::Command::new("git")
            .args(["config", "--file"])
            .arg(&path)
            .arg("--list")
            .output();
        let Ok(out) = out else {
            return; // git is not installed here; the integration tests need it anyway
        };
        let list = String::from_utf8_lossy(&out.stdout);
        for line in [
            "gpg.format=ssh",
            "gpg.ssh.program=/usr/bin/codespace-git-sign",
            "user.signingkey=codespace-host-key",
            "commit.gpgsign=true",
            "tag.gpgsign=true",
        ] {
            assert!(list.lines().any(|l| l == line), "{line} in {list}");
        }
    }
}
