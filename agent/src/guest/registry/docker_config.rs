//! `credHelpers` entries in the codespace user's Docker configuration (`~/.docker/config.json`):
//! Docker then asks `docker-credential-codespace` for exactly the registries the host delivered,
//! and the file never holds a secret (unlike `docker login`, which writes the password, base64
//! encoded, under `auths`).
//!
//! ```text
//!  delivered registries ─► sync(dir, owner, hosts)
//!    open <parent of dir>             (trusted: root's passwd names the home, or the config)
//!    openat ".docker"    O_NOFOLLOW   create 0700 + fchown if missing; must be owner's dir
//!    openat "config.json" O_NOFOLLOW|O_NONBLOCK; must be a regular file of the owner, ≤ 1 MiB
//!    merge (pure) ─► unchanged: nothing written
//!               └─► temp file O_CREAT|O_EXCL in the same dir, fchown, fsync, renameat, fsync dir
//! ```
//!
//! The writer may be root (the privileged side writes into a home the network side may not
//! touch), and the directory is the user's, so every step is built so the user cannot turn it
//! against another file:
//! - no path under the home is followed: a `~/.docker` or `config.json` that is a symbolic link
//!   is refused with an error saying so (a hostile `config.json -> /etc/shadow` is neither read
//!   nor written); names are opened relative to directory descriptors, so a directory swapped
//!   after a check is not followed either;
//! - the file read must be a regular file owned by the user: a hard link to a file of root's is
//!   refused unread, and a FIFO cannot block the writer (`O_NONBLOCK`, then the type check);
//! - the new content goes to a fresh file created exclusively and renamed over the old name, so
//!   whatever the old name pointed to (an inode shared by a hard link) is never written.
//!
//! **Merging** ([`merge`]) keeps every key of the file and every entry the user made: for each
//! delivered registry, `credHelpers[key] = "codespace"` is added unless the user already named
//! a helper of their own for it (their choice wins, and the report says so); entries that say
//! `"codespace"` for a registry no longer delivered are removed (they are the agent's). An empty
//! file counts as `{}`, as Docker reads it; a file that is not a JSON object, or whose
//! `credHelpers` is not an object, is refused with an error and left as it is. Key order is
//! kept; the file is written the way Docker writes it (tab-indented).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use codespace_policy::container_registry::RegistryHost;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::guest::vault::Owner;

/// The helper's name as Docker spells it in `credHelpers` (it runs `docker-credential-<name>`).
pub(crate) const HELPER_NAME: &str = "codespace";

/// The file in the Docker configuration directory.
pub(crate) const CONFIG_FILE: &str = "config.json";

/// Largest `config.json` read (Docker's own files are a few KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What a sync did (for the host's answer and `status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfigReport {
    /// The file.
    pub path: PathBuf,
    /// Whether the file was rewritten.
    pub written: bool,
    /// `credHelpers` keys added.
    pub added: Vec<String>,
    /// `credHelpers` keys removed (the agent's, for registries no longer delivered).
    pub removed: Vec<String>,
    /// Delivered registries whose `credHelpers` entry names the user's own helper: kept, so
    /// Docker does not use the delivered credential there.
    pub kept_users_helper: Vec<String>,
}

/// Why the configuration was not updated. Messages name the file and the problem, never a
/// value from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerConfigError {
    /// The file is not valid JSON: left as it is.
    #[error("{path}: not valid JSON (line {line}, column {column}); left unchanged: fix or remove it and deliver again")]
    InvalidJson {
        /// The file.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The file, or its `credHelpers`, is JSON but not an object.
    #[error("{path}: {what} is not a JSON object; left unchanged")]
    NotAnObject {
        /// The file.
        path: String,
        /// `the file` or `credHelpers`.
        what: &'static str,
    },
    /// A path that must be a real file or directory of the user is not.
    #[error("{path}: {problem}; the agent does not write there")]
    Unsafe {
        /// The path.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The user has no home directory to put `.docker` in.
    #[error("the codespace user (uid {uid}) has no home directory; set docker_config_dir")]
    NoHome {
        /// The user.
        uid: u32,
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
}

/// The result of [`merge`]: the new file, if anything changed, and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The new contents (`None`: the file stays as it is).
    pub contents: Option<Vec<u8>>,
    /// What changed (without the path).
    pub report: DockerConfigReport,
}

/// Merges the `credHelpers` entries for `hosts` into `existing` (`None`: no file). Pure.
pub fn merge(
    shown: &str,
    existing: Option<&[u8]>,
    hosts: &[RegistryHost],
) -> Result<Merged, DockerConfigError> {
    let blank = existing.is_none_or(|b| b.iter().all(u8::is_ascii_whitespace));
    let mut doc: Value = if blank {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(existing.unwrap_or_default()).map_err(|e| {
            DockerConfigError::InvalidJson {
                path: shown.to_owned(),
                line: e.line(),
                column: e.column(),
            }
        })?
    };
    let not_object = |what| DockerConfigError::NotAnObject {
        path: shown.to_owned(),
        what,
    };
    let top = doc.as_object_mut().ok_or_else(|| not_object("the file"))?;
    let had_helpers = top.contains_key("credHelpers");
    let mut helpers = match top.get("credHelpers") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(not_object("credHelpers")),
    };
    let mut report = DockerConfigReport::default();
    let wanted: Vec<&str> = hosts.iter().map(RegistryHost::config_key).collect();
    let ours = |v: &Value| v.as_str() == Some(HELPER_NAME);
    helpers.retain(|key, v| {
        let stale = ours(v) && !wanted.contains(&key.as_str());
        if stale {
            report.removed.push(key.clone());
        }
        !stale
    });
    for key in wanted {
        match helpers.get(key) {
            None => {
                helpers.insert(key.to_owned(), Value::from(HELPER_NAME));
                report.added.push(key.to_owned());
            }
            Some(v) if ours(v) => {}
            Some(_) => report.kept_users_helper.push(key.to_owned()),
        }
    }
    if report.added.is_empty() && report.removed.is_empty() {
        return Ok(Merged {
            contents: None,
            report,
        });
    }
    if helpers.is_empty() && !had_helpers {
        top.remove("credHelpers");
    } else {
        top.insert("credHelpers".into(), Value::Object(helpers));
    }
    let mut out = Vec::with_capacity(existing.map_or(64, |b| b.len() + 64));
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    doc.serialize(&mut ser).map_err(|e| DockerConfigError::Io {
        action: "encode",
        path: shown.to_owned(),
        source: std::io::Error::other(e),
    })?;
    out.push(b'\n');
    report.written = true;
    Ok(Merged {
        contents: Some(out),
        report,
    })
}

/// The Docker configuration directory of the codespace user: `configured` (the config's
/// `docker_config_dir`) or `<home>/.docker`, home from passwd text `passwd` by the owner's uid.
pub(crate) fn config_dir(
    configured: Option<&Path>,
    passwd: &str,
    owner: Owner,
) -> Result<PathBuf, DockerConfigError> {
    if let Some(dir) = configured {
        return Ok(dir.to_owned());
    }
    crate::guest::user::find(passwd, &owner.uid.to_string())
        .map(|a| a.home)
        .filter(|home| home.is_absolute() && home != Path::new("/"))
        .map(|home| home.join(".docker"))
        .ok_or(DockerConfigError::NoHome { uid: owner.uid })
}

/// Brings `dir/config.json` in line with `hosts` for `owner` (see the module docs for every
/// step and why). Writes nothing when nothing changes; with no registries and no directory,
/// creates nothing.
pub(crate) fn sync(
    dir: &Path,
    owner: Owner,
    hosts: &[RegistryHost],
) -> Result<DockerConfigReport, DockerConfigError> {
    let shown_dir = dir.display().to_string();
    let path = dir.join(CONFIG_FILE);
    let shown = path.display().to_string();
    let io = |action: &'static str, p: &str| {
        let p = p.to_owned();
        move |e: Errno| DockerConfigError::Io {
            action,
            path: p,
            source: e.into(),
        }
    };
    let unsafe_path = |p: &str, problem| DockerConfigError::Unsafe {
        path: p.to_owned(),
        problem,
    };
    let (parent, name) = match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) if dir.is_absolute() => (p, n),
        _ => return Err(unsafe_path(&shown_dir, "is not an absolute directory path")),
    };
    // The parent is trusted (passwd or the configuration name it): followed as any path.
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("open", &parent.display().to_string()))?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let not_dir = |e: Errno| match e {
        Errno::LOOP | Errno::NOTDIR => {
            unsafe_path(&shown_dir, "is a symbolic link or not a directory")
        }
        e => io("open", &shown_dir)(e),
    };
    let dir_fd = match rustix::fs::openat(&parent_fd, name, dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if hosts.is_empty() => {
            return Ok(DockerConfigReport {
                path,
                ..Default::default()
            })
        }
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io("create directory", &shown_dir)(e)),
            }
            let fd =
                rustix::fs::openat(&parent_fd, name, dir_flags, Mode::empty()).map_err(not_dir)?;
            give_to_owner_if_root(&fd, owner, &shown_dir)?;
            fd
        }
        Err(e) => return Err(not_dir(e)),
    };
    check_owned(&dir_fd, owner, FileType::Directory, &shown_dir)?;
    let existing = read_existing(&dir_fd, owner, &shown)?;
    let existed = existing.as_ref().map(|(_, mode)| *mode);
    let merged = merge(&shown, existing.as_ref().map(|(b, _)| b.as_slice()), hosts)?;
    let mut report = merged.report;
    report.path = path;
    if let Some(contents) = merged.contents {
        replace(&dir_fd, owner, &contents, existed.unwrap_or(0o600), &shown)?;
    }
    Ok(report)
}

/// Reads `config.json` in `dir_fd` if there is one: its bytes and permission bits.
fn read_existing(
    dir_fd: &OwnedFd,
    owner: Owner,
    shown: &str,
) -> Result<Option<(Vec<u8>, u32)>, DockerConfigError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir_fd, CONFIG_FILE, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(DockerConfigError::Unsafe {
                path: shown.to_owned(),
                problem: "is a symbolic link",
            })
        }
        Err(e) => {
            return Err(DockerConfigError::Io {
                action: "open",
                path: shown.to_owned(),
                source: e.into(),
            })
        }
    };
    let stat = check_owned(&fd, owner, FileType::RegularFile, shown)?;
    if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
        return Err(DockerConfigError::Unsafe {
            path: shown.to_owned(),
            problem: "is larger than 1 MiB",
        });
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| DockerConfigError::Io {
            action: "read",
            path: shown.to_owned(),
            source,
        })?;
    Ok(Some((bytes, stat.st_mode & 0o777)))
}

/// The descriptor's status, if it is a `kind` owned by `owner`.
fn check_owned(
    fd: &OwnedFd,
    owner: Owner,
    kind: FileType,
    shown: &str,
) -> Result<rustix::fs::Stat, DockerConfigError> {
    let stat = rustix::fs::fstat(fd).map_err(|e| DockerConfigError::Io {
        action: "inspect",
        path: shown.to_owned(),
        source: e.into(),
    })?;
    let problem = if FileType::from_raw_mode(stat.st_mode) != kind {
        Some(match kind {
            FileType::Directory => "is not a directory",
            _ => "is not a regular file",
        })
    } else if stat.st_uid != owner.uid {
        Some("is not owned by the codespace user")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(DockerConfigError::Unsafe {
            path: shown.to_owned(),
            problem,
        }),
        None => Ok(stat),
    }
}

/// Gives a file the agent just created to `owner` (only root can, and only root needs to).
fn give_to_owner_if_root(
    fd: &impl AsFd,
    owner: Owner,
    shown: &str,
) -> Result<(), DockerConfigError> {
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::fchown(fd, Some(owner.uid), Some(owner.gid)).map_err(|source| {
            DockerConfigError::Io {
                action: "change owner of",
                path: shown.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to a fresh file in `dir_fd` and renames it over `config.json`.
fn replace(
    dir_fd: &OwnedFd,
    owner: Owner,
    contents: &[u8],
    mode: u32,
    shown: &str,
) -> Result<(), DockerConfigError> {
    let temp = format!(
        ".{CONFIG_FILE}.codespace-agent.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let io = |action: &'static str| {
        move |source: std::io::Error| DockerConfigError::Io {
            action,
            path: shown.to_owned(),
            source,
        }
    };
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir_fd, &temp, flags, Mode::from_raw_mode(mode & 0o666))
        .map_err(|e| io("create a temporary file beside")(e.into()))?;
    let written = (|| {
        give_to_owner_if_root(&fd, owner, shown)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        rustix::fs::renameat(dir_fd, &temp, dir_fd, CONFIG_FILE)
            .map_err(|e| io("rename over")(e.into()))?;
        rustix::fs::fsync(dir_fd).map_err(|e| io("sync the directory of")(e.into()))
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir_fd, &temp, AtFlags::empty());
    }
    written
}

#[cfg(test)]
#[path = "docker_config_tests.rs"]
mod tests;
