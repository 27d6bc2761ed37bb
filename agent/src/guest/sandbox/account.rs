//! The run user: a name from the devcontainer (`remoteUser`/`containerUser`) resolved through
//! `/etc/passwd` to everything a command's identity and environment need.
//!
//! Like [`crate::guest::user`], the agent reads the passwd file itself instead of going through
//! NSS (it starts before any directory service, and NSS modules must not run in the agent); this
//! module keeps the fields that module drops (home, shell). A numeric `UID` is looked up by uid.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::SandboxError;
use crate::guest::user::UserError;

/// A user as the sandbox runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Login name (`USER`).
    pub name: String,
    /// Home directory (`HOME`, writable in the restricted profile).
    pub home: PathBuf,
    /// Login shell (`SHELL`; `/bin/sh` when the entry has none).
    pub shell: PathBuf,
}

impl ResolvedUser {
    /// Resolves `name` (or a numeric uid) through `/etc/passwd`.
    pub fn lookup(name: &str) -> Result<Self, SandboxError> {
        Self::lookup_in(name, Path::new("/etc/passwd"))
    }

    /// Resolves `name` through the passwd file at `passwd`.
    pub fn lookup_in(name: &str, passwd: &Path) -> Result<Self, SandboxError> {
        let path = passwd.display().to_string();
        let text = std::fs::read_to_string(passwd).map_err(|source| {
            SandboxError::User(UserError::Read {
                path: path.clone(),
                source,
            })
        })?;
        parse_entry(&text, name).ok_or(SandboxError::User(UserError::NotFound {
            name: name.to_owned(),
            path,
        }))
    }

    /// Whether this is the superuser.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Finds `name` (or, when `name` is all digits, that uid) in passwd-format text
/// (`name:x:uid:gid:gecos:home:shell`).
pub fn parse_entry(passwd: &str, name: &str) -> Option<ResolvedUser> {
    let by_uid: Option<u32> = name.parse().ok();
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let gid: u32 = f[3].parse().ok()?;
        let matches = f[0] == name || by_uid == Some(uid);
        if !matches {
            return None;
        }
        let home = if f[5].is_empty() { "/" } else { f[5] };
        let shell = if f[6].is_empty() { "/bin/sh" } else { f[6] };
        Some(ResolvedUser {
            uid,
            gid,
            name: f[0].to_owned(),
            home: PathBuf::from(home),
            shell: PathBuf::from(shell),
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# c\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nvscode:x:1000:1001::/home/vscode:\nbad:x:y:1::/:/bin/sh\nshort:x:5\n";

    #[test]
    fn entries_resolve_with_home_and_shell() {
        let v = parse_entry(PASSWD, "vscode").unwrap();
        assert_eq!((v.uid, v.gid, v.name.as_str()), (1000, 1001, "vscode"));
        assert_eq!(v.home, PathBuf::from("/home/vscode"));
        assert_eq!(v.shell, PathBuf::from("/bin/sh"));
        assert!(parse_entry(PASSWD, "root").unwrap().is_root());
        assert_eq!(parse_entry(PASSWD, "65534").unwrap().name, "nobody");
        assert_eq!(parse_entry(PASSWD, "bad"), None);
        assert_eq!(parse_entry(PASSWD, "short"), None);
        assert_eq!(parse_entry(PASSWD, "vs"), None);
    }

    #[test]
    fn unknown_users_are_named() {
        let err = ResolvedUser::lookup("no-such-user-xyz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-user-xyz"), "{err}");
    }
}
