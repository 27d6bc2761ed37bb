//! User accounts: the one passwd reader of the agent and the one type for "who a process runs
//! as or a file belongs to" ([`Account`]).
//!
//! The agent starts before any directory service in a VM and must not load NSS modules, so it
//! reads `/etc/passwd` itself (the image builder creates the users there). Every user the
//! agent meets goes through here: its own `--user`, the network side's user, the run user of a
//! lifecycle command (trusted or restricted) and the privileged side's check of that user.
//!
//! The rules, one set for all of them:
//! - an entry is a line of exactly seven `:`-separated fields `name:password:uid:gid:gecos:home:shell`
//!   with a non-empty name and numeric uid and gid; anything else (a comment, a blank or
//!   truncated line, NIS `+`/`-` lines, an uid that is not a number) is no entry, never a
//!   partial one;
//! - an empty home is `/` and an empty shell `/bin/sh` (what login(1) does);
//! - a name of digits only is a uid (`useradd` refuses such names): the first entry with that
//!   uid; otherwise the first entry with exactly that name;
//! - [`Account::lookup_in`] also accepts `UID` or `UID:GID` that passwd does not know (an
//!   account without a name: home `/`, shell `/bin/sh`, gid the uid unless given).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::vault::Owner;

/// Where the agent reads accounts from.
pub(crate) const PASSWD: &str = "/etc/passwd";

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

/// A user account as passwd describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Login name (`USER`); the number itself for an account passwd does not know.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (`HOME`; writable in the restricted sandbox).
    pub home: PathBuf,
    /// Login shell (`SHELL`).
    pub shell: PathBuf,
}

impl Account {
    /// Resolves `who` through `/etc/passwd` (see [`Self::lookup_in`]).
    pub fn lookup(who: &str) -> Result<Self, UserError> {
        Self::lookup_in(who, Path::new(PASSWD))
    }

    /// Resolves `who` (a name, a uid, or `UID:GID`) through the passwd file at `passwd`; a
    /// `UID` or `UID:GID` that the file does not know (or a file that cannot be read) gives an
    /// account without a name.
    pub(crate) fn lookup_in(who: &str, passwd: &Path) -> Result<Self, UserError> {
        let path = passwd.display().to_string();
        let text = match std::fs::read_to_string(passwd) {
            Ok(text) => text,
            Err(source) => return Self::numeric(who).ok_or(UserError::Read { path, source }),
        };
        find(&text, who)
            .or_else(|| Self::numeric(who))
            .ok_or(UserError::NotFound {
                name: who.to_owned(),
                path,
            })
    }

    /// `UID` or `UID:GID` as an account without a passwd entry.
    pub(crate) fn numeric(who: &str) -> Option<Self> {
        let (uid, gid) = match who.split_once(':') {
            Some((u, g)) => (digits(u)?, digits(g)?),
            None => (digits(who)?, digits(who)?),
        };
        Some(Self::unnamed(uid, gid))
    }

    /// An account passwd does not know: named by its uid, home `/`, shell `/bin/sh`.
    pub(crate) fn unnamed(uid: u32, gid: u32) -> Self {
        Self {
            name: uid.to_string(),
            uid,
            gid,
            home: PathBuf::from("/"),
            shell: PathBuf::from("/bin/sh"),
        }
    }

    /// Whether this is the superuser.
    pub(crate) fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The uid and gid, as the owner of a file.
    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// A number of ASCII digits only (`str::parse` would also take a `+`).
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One passwd line as an entry, if it is one.
fn entry(line: &str) -> Option<Account> {
    let f: Vec<&str> = line.strip_suffix('\r').unwrap_or(line).split(':').collect();
    let [name, _password, uid, gid, _gecos, home, shell] = f[..] else {
        return None;
    };
    if name.is_empty() || name.starts_with(['#', '+', '-']) {
        return None;
    }
    Some(Account {
        name: name.to_owned(),
        uid: digits(uid)?,
        gid: digits(gid)?,
        home: PathBuf::from(if home.is_empty() { "/" } else { home }),
        shell: PathBuf::from(if shell.is_empty() { "/bin/sh" } else { shell }),
    })
}

/// Finds `who` in passwd-format text: by uid when it is all digits, else by name.
pub(crate) fn find(passwd: &str, who: &str) -> Option<Account> {
    let by_uid = digits(who);
    passwd.lines().filter_map(entry).find(|a| match by_uid {
        Some(uid) => a.uid == uid,
        None => a.name == who,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          # vscode:x:1:1::/evil:/bin/sh\n\
                          \n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                          vscode:x:1000:1001::/home/vscode:\n\
                          vscode:x:1002:1002::/second:/bin/sh\n\
                          nogid:x:1003::::/bin/sh\n\
                          badnum:x:+4:4::/:/bin/sh\n\
                          short:x:5:5\n\
                          long:x:6:6::/:/bin/sh:extra\n\
                          +nis::::::\n\
                          -blocked::7:7::/:/bin/sh\n\
                          2000:x:2001:2001::/home/digits:/bin/sh\n\
                          crlf:x:8:8::/home/crlf:/bin/sh\r\n\
                          blank:x:9:9:::\n";

    fn names(who: &str) -> Option<(String, u32, u32)> {
        find(PASSWD, who).map(|a| (a.name, a.uid, a.gid))
    }

    #[test]
    fn entries_by_name_with_defaults_for_empty_fields() {
        let v = find(PASSWD, "vscode").unwrap();
        assert_eq!((v.uid, v.gid), (1000, 1001), "the first entry wins");
        assert_eq!(v.home, PathBuf::from("/home/vscode"));
        assert_eq!(v.shell, PathBuf::from("/bin/sh"));
        let b = find(PASSWD, "blank").unwrap();
        assert_eq!((b.home, b.shell), ("/".into(), "/bin/sh".into()));
        assert_eq!(
            find(PASSWD, "crlf").unwrap().shell,
            PathBuf::from("/bin/sh")
        );
        assert!(find(PASSWD, "root").unwrap().is_root());
        assert_eq!(names("vs"), None, "names match exactly");
        assert_eq!(names("VSCODE"), None);
    }

    #[test]
    fn malformed_lines_and_comments_are_no_entries() {
        for who in [
            "nogid", "badnum", "short", "long", "+nis", "-blocked", "#", "", "# vscode",
        ] {
            assert_eq!(names(who), None, "{who:?}");
        }
        // The commented-out line's uid is not found either.
        assert_eq!(names("1"), None);
    }

    #[test]
    fn numbers_are_uids() {
        assert_eq!(names("65534"), Some(("nobody".into(), 65534, 65534)));
        // A digits-only name is never matched by name: "2000" is uid 2000, which has no entry.
        assert_eq!(names("2000"), None);
        assert_eq!(names("2001"), Some(("2000".into(), 2001, 2001)));
        assert_eq!(names("+0"), None);
        assert_eq!(
            Account::numeric("1000:5").map(|a| a.owner()),
            Some(Owner { uid: 1000, gid: 5 })
        );
        assert_eq!(Account::numeric("77").unwrap(), Account::unnamed(77, 77));
        for bad in ["vscode", "1:", ":1", "1:2:3", "-1", "+1", "99999999999"] {
            assert_eq!(Account::numeric(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_line_is_read_whole() {
        let gecos = "g".repeat(200_000);
        let text = format!("{PASSWD}big:x:4000:4000:{gecos}:/home/big:/bin/zsh\n");
        let a = find(&text, "big").unwrap();
        assert_eq!((a.uid, a.shell), (4000, PathBuf::from("/bin/zsh")));
    }

    #[test]
    fn lookup_in_a_file_falls_back_to_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        std::fs::write(&file, PASSWD).unwrap();
        assert_eq!(Account::lookup_in("vscode", &file).unwrap().uid, 1000);
        assert_eq!(Account::lookup_in("65534", &file).unwrap().name, "nobody");
        assert_eq!(
            Account::lookup_in("4242:7", &file).unwrap(),
            Account::unnamed(4242, 7)
        );
        let err = Account::lookup_in("nobody-here-xyz", &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nobody-here-xyz"), "{err}");
        let missing = dir.path().join("none");
        assert!(matches!(
            Account::lookup_in("vscode", &missing),
            Err(UserError::Read { .. })
        ));
        assert_eq!(Account::lookup_in("5", &missing).unwrap().uid, 5);
    }
}
