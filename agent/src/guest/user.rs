//! Resolving the codespace's remote user (`--user NAME`) to the uid and gid that own its
//! environment file.
//!
//! The agent starts before any directory service in a VM, so it reads `/etc/passwd` itself
//! (the image builder creates the remote user there) instead of going through NSS. A numeric
//! `UID` or `UID:GID` is accepted as well.

use std::path::Path;

use super::vault::Owner;

/// Why a user name does not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The passwd file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No such user.
    #[error("user {name:?} not found in {path}")]
    NotFound {
        /// The name.
        name: String,
        /// The file.
        path: String,
    },
}

/// Resolves `name` against the passwd file at `passwd`.
pub fn resolve(name: &str, passwd: &Path) -> Result<Owner, UserError> {
    if let Some(owner) = numeric(name) {
        return Ok(owner);
    }
    let path = passwd.display().to_string();
    let text = std::fs::read_to_string(passwd).map_err(|source| UserError::Read {
        path: path.clone(),
        source,
    })?;
    lookup(&text, name).ok_or(UserError::NotFound {
        name: name.to_owned(),
        path,
    })
}

fn numeric(s: &str) -> Option<Owner> {
    match s.split_once(':') {
        Some((u, g)) => Some(Owner {
            uid: u.parse().ok()?,
            gid: g.parse().ok()?,
        }),
        None => {
            let uid = s.parse().ok()?;
            Some(Owner { uid, gid: uid })
        }
    }
}

/// Finds `name` in passwd-format text (`name:x:uid:gid:...`).
pub fn lookup(passwd: &str, name: &str) -> Option<Owner> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some(Owner {
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_and_numbers() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# comment\nvscode:x:1000:1001::/home/vscode:/bin/bash\nbad:x:y:1::/:/bin/sh\n";
        assert_eq!(
            lookup(text, "vscode"),
            Some(Owner {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(lookup(text, "vs"), None);
        assert_eq!(lookup(text, "bad"), None);
        assert_eq!(
            numeric("1000"),
            Some(Owner {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(numeric("1000:5"), Some(Owner { uid: 1000, gid: 5 }));
        assert_eq!(numeric("vscode"), None);
    }

    #[test]
    fn unknown_users_are_named() {
        let err = resolve("nobody-here-xyz", Path::new("/etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nobody-here-xyz"), "{err}");
    }
}
