//! Reuse of built Landlock rulesets across spawns, with a cheap proof before each reuse that a
//! fresh build would produce the same rules.
//!
//! Building a ruleset costs 0.3–1 ms (a listing of every directory on the state directory's
//! path, an `O_PATH` open and a `landlock_add_rule` per entry; more when the state directory sits
//! under `/dev`), most of a sandboxed spawn. A ruleset's file descriptor can be applied by any
//! number of children (`landlock_restrict_self` only reads it), so one build per
//! (profile, state directory, workspace, home) is enough **as long as the rules still name the
//! same files**. Rules bind to the inodes that existed at build time, so the ruleset is stale when
//!
//! - an entry of a listed directory (`/`, `/run`, ...: the state directory's ancestors) was
//!   added, removed, renamed or replaced: the directory's modification time (or its inode)
//!   changed;
//! - a path the build resolved on its own (`/`, the workspace, the home, `/tmp`, the devices,
//!   the state directory, each symlink found in a listing) resolves to another inode, or
//!   appeared, or vanished;
//! - anything was mounted or unmounted in the agent's mount namespace (a mount can put another
//!   file system under a granted name without changing any directory): `/proc/self/mountinfo`
//!   polls `POLLPRI` after a change.
//!
//! [`Witness`] records these facts while the ruleset is built (stamps taken *before* a
//! listing); [`Witness::holds`] re-checks them with one `statx` per recorded path (about 20 in
//! the default layout) and one `poll`, and a ruleset is reused only when all of them hold;
//! otherwise it is rebuilt. Stale rules would only ever grant *less* than a fresh build (a
//! rule on a replaced inode no longer covers the name; nothing new can gain a rule), so the
//! check preserves usability, not confinement; the state directory is never covered either way.
//!
//! **Racy timestamps.** The stamps are compared for equality, so a change is missed only if
//! it got the very timestamp already recorded: it happened within one tick of the timestamp
//! clock (coarse: 4 ms at `HZ=250`, 10 ms at `HZ=100`) of the previous change. A directory whose
//! modification time is less than [`QUIET`] old when it is stamped ([`QUIET_COARSE`] when the
//! time has no sub-second part: file systems with whole-second timestamps) therefore makes the
//! build usable once but not cached; the next spawn builds again (the trick git uses for its
//! index).

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::landlock::{self, LandlockApplied, Places};
use super::{SandboxError, SandboxProfile};

/// How long a listed directory must have been unmodified for its stamp to be trusted (ten
/// ticks of a 100 Hz kernel's timestamp clock).
pub const QUIET: Duration = Duration::from_millis(100);
/// The same for timestamps without nanoseconds (whole-second file systems).
pub const QUIET_COARSE: Duration = Duration::from_secs(2);
/// Most rulesets kept (one per profile × workspace × home × state directory in use).
const CAPACITY: usize = 16;

/// Which inode a path resolves to (`None`: it does not resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

/// `statx` asking for the inode and the modification time only, never syncing with a remote
/// file system (a quarter cheaper than `std::fs::metadata` here: ~1.3 µs per path).
fn statx(path: &Path) -> Option<rustix::fs::Statx> {
    use rustix::fs::{AtFlags, StatxFlags};
    rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::INO | StatxFlags::MTIME,
    )
    .ok()
}

fn identity_of(s: &rustix::fs::Statx) -> Identity {
    Identity {
        dev: (u64::from(s.stx_dev_major) << 32) | u64::from(s.stx_dev_minor),
        ino: s.stx_ino,
    }
}

fn identity(path: &Path) -> Option<Identity> {
    statx(path).as_ref().map(identity_of)
}

/// A listed directory: which inode, and when its entries last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    id: Identity,
    mtime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    statx(path).map(|s| Stamp {
        id: identity_of(&s),
        mtime: (s.stx_mtime.tv_sec, i64::from(s.stx_mtime.tv_nsec)),
    })
}

/// What a ruleset was built from (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Witness {
    listed: Vec<(PathBuf, Option<Stamp>)>,
    targets: Vec<(PathBuf, Option<Identity>)>,
    /// A listed directory changed too recently to trust its stamp.
    racy: bool,
}

impl Witness {
    /// Records the directory about to be listed.
    pub fn listed(&mut self, dir: &Path) {
        let stamp = stamp(dir);
        if let Some(s) = stamp {
            let modified = UNIX_EPOCH
                + Duration::new(
                    u64::try_from(s.mtime.0).unwrap_or(0),
                    u32::try_from(s.mtime.1).unwrap_or(0),
                );
            let needed = if s.mtime.1 == 0 { QUIET_COARSE } else { QUIET };
            let quiet = SystemTime::now()
                .duration_since(modified)
                .is_ok_and(|age| age >= needed);
            self.racy |= !quiet;
        }
        self.listed.push((dir.to_owned(), stamp));
    }

    /// Records what `path` resolves to (following symlinks) now.
    pub fn target(&mut self, path: &Path) {
        self.targets.push((path.to_owned(), identity(path)));
    }

    /// Whether a fresh build would see the same file system: every listed directory unchanged,
    /// every recorded path resolving to the same inode (or still to none).
    pub fn holds(&self) -> bool {
        let changed = self
            .listed
            .iter()
            .find(|(p, s)| stamp(p) != *s)
            .map(|(p, _)| p)
            .or_else(|| {
                self.targets
                    .iter()
                    .find(|(p, id)| identity(p) != *id)
                    .map(|(p, _)| p)
            });
        if let Some(path) = changed {
            tracing::debug!(path = %path.display(), "landlock ruleset stale");
        }
        changed.is_none()
    }

    /// Whether the stamps can be trusted later (no racy timestamps).
    pub fn cacheable(&self) -> bool {
        !self.racy
    }

    /// Paths it checks, for tests and logs.
    pub fn len(&self) -> usize {
        self.listed.len() + self.targets.len()
    }

    /// Whether it checks nothing (Landlock unsupported).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches the agent's mount table: `POLLPRI` on an open `/proc/self/mountinfo` after any
/// mount or unmount (proc(5)); each poll consumes the event.
#[derive(Debug)]
struct MountWatch {
    file: File,
}

impl MountWatch {
    fn open() -> Option<Self> {
        File::open("/proc/self/mountinfo")
            .ok()
            .map(|file| Self { file })
    }

    /// Whether the mount table changed since the last call (or the open).
    fn changed(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd owned by this frame, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        // An error counts as a change: rebuilding is always correct.
        n != 0 && (n < 0 || pfd.revents & (libc::POLLPRI | libc::POLLERR) != 0)
    }
}

/// A ruleset ready to apply.
#[derive(Debug, Clone)]
pub struct Ruleset {
    /// The ruleset's descriptor (`None` when Landlock is unsupported).
    pub fd: Option<Arc<OwnedFd>>,
    /// The report.
    pub applied: LandlockApplied,
    /// Whether it came from the cache.
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    profile: SandboxProfile,
    state_dir: PathBuf,
    workspace: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    var_tmp: PathBuf,
}

#[derive(Debug)]
struct Entry {
    fd: Option<Arc<OwnedFd>>,
    applied: LandlockApplied,
    witness: Witness,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, Arc<Entry>>,
    mounts: Option<MountWatch>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            entries: HashMap::new(),
            mounts: MountWatch::open(),
        })
    })
}

/// The ruleset for `profile` and `places`: the cached one when its witness still holds,
/// otherwise a fresh build (cached when its stamps can be trusted).
pub fn prepare(profile: SandboxProfile, places: Places<'_>) -> Result<Ruleset, SandboxError> {
    let key = Key {
        profile,
        state_dir: places.state_dir.to_owned(),
        workspace: places.workspace.to_owned(),
        home: places.home.to_owned(),
        tmp: places.tmp.to_owned(),
        var_tmp: places.var_tmp.to_owned(),
    };
    let cached = match cache().lock() {
        Ok(mut c) => {
            let mounts_changed = c.mounts.as_ref().is_none_or(MountWatch::changed);
            if mounts_changed && !c.entries.is_empty() {
                tracing::debug!("mount table changed: landlock rulesets dropped");
                c.entries.clear();
            }
            c.entries.get(&key).cloned()
        }
        Err(_) => None,
    };
    if let Some(entry) = cached {
        if entry.witness.holds() {
            return Ok(Ruleset {
                fd: entry.fd.clone(),
                applied: entry.applied.clone(),
                reused: true,
            });
        }
    }
    let started = std::time::Instant::now();
    let built = landlock::prepare(profile, places)?;
    tracing::debug!(
        profile = ?profile,
        rules_from = built.witness.len(),
        cacheable = built.witness.cacheable(),
        build_us = started.elapsed().as_micros() as u64,
        "landlock ruleset built"
    );
    let entry = Entry {
        fd: built.fd.map(Arc::new),
        applied: built.applied,
        witness: built.witness,
    };
    let ruleset = Ruleset {
        fd: entry.fd.clone(),
        applied: entry.applied.clone(),
        reused: false,
    };
    if let Ok(mut c) = cache().lock() {
        if entry.witness.cacheable() {
            if c.entries.len() >= CAPACITY && !c.entries.contains_key(&key) {
                c.entries.clear(); // rare (many workspaces): start over rather than track age
            }
            c.entries.insert(key, Arc::new(entry));
        } else {
            c.entries.remove(&key);
        }
    }
    Ok(ruleset)
}

/// Forgets every cached ruleset (the next spawns build again).
pub fn clear() {
    if let Ok(mut c) = cache().lock() {
        c.entries.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn old(path: &Path) {
        // Backdate so the stamp is trusted.
        let t = SystemTime::now() - Duration::from_secs(60);
        File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_witness_notices_new_entries_replaced_targets_and_symlink_retargets() {
        let dir = tempfile::tempdir().unwrap();
        let listed = dir.path().join("listed");
        std::fs::create_dir(&listed).unwrap();
        std::fs::create_dir(listed.join("a")).unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ws, &link).unwrap();
        let missing = dir.path().join("missing");
        old(&listed);

        let witness = || {
            let mut w = Witness::default();
            w.listed(&listed);
            w.target(&ws);
            w.target(&link);
            w.target(&missing);
            w
        };
        let w = witness();
        assert!(w.cacheable());
        assert_eq!(w.len(), 4);
        assert!(w.holds());

        // A new entry in a listed directory.
        std::fs::create_dir(listed.join("b")).unwrap();
        assert!(!w.holds());
        std::fs::remove_dir(listed.join("b")).unwrap();
        old(&listed);
        let w = witness();
        assert!(w.holds());

        // The workspace replaced by another directory of the same name.
        std::fs::rename(&ws, dir.path().join("ws-old")).unwrap();
        std::fs::create_dir(&ws).unwrap();
        assert!(!w.holds());

        // A path that was missing appears.
        let mut w = Witness::default();
        w.target(&missing);
        assert!(w.holds());
        std::fs::create_dir(&missing).unwrap();
        assert!(!w.holds());

        // A symlink pointed elsewhere.
        let mut w = Witness::default();
        w.target(&link);
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        assert!(!w.holds());
    }

    #[test]
    fn a_directory_changed_just_now_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fresh")).unwrap(); // dir's mtime is now
        let mut w = Witness::default();
        w.listed(dir.path());
        assert!(!w.cacheable());
        assert!(w.holds());
    }
}
