//! Activity and idle (issue 18): whether someone is using the codespace, and when to tell the
//! host that nobody has for `idle.timeout_s`.
//!
//! What counts, as in Codespaces (typing, terminal input and output; not forwarded traffic, not
//! background processes):
//!
//! - **Terminal**: the kernel's timestamps of the VM's ptys (`/dev/pts/N`), as `w` and `who -u`
//!   read them: reading input sets the access time, output the modification time (the kernel
//!   moves them in steps of 8 s). A change of owner or mode (a login taking the pty) sets the
//!   change time too, so only a stamp later than the change time counts. Only the pty's owner
//!   (and root) can set its stamps by hand (`touch`: it owns the device, mode 0620 `tty`), so
//!   another user or a restricted run cannot fake activity; the owner can, as a loop printing in
//!   its terminal can in Codespaces.
//! - **Host**: the host says the web editor is in use (`activity` request).
//! - **Connection**: bytes through the agent on a connection to an owner-only port
//!   (`ports.owner_only`: SSH, the editor's server), which only the codespace's creator can
//!   open ([`super::ports`]). The relay stamps the time of each transfer in the connection's
//!   [`Meter`]; the clock reads the stamps of the live connections when it looks, and a
//!   connection's last stamp when it closes. Bytes to every other forwarded port (a dev server
//!   serving requests, public or not) do not count: that is traffic, not someone working.
//!
//! Nothing polls: the watcher sleeps until the next deadline (the warning, then the timeout),
//! looks at the ptys and the owner-only connections once when it wakes, and sleeps again until
//! the new deadline if someone was active meanwhile. Its cost when nothing happens is one wakeup
//! per timeout period.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::service::EventSink;
use super::trail::Kind;
use crate::relay::Meter;
use crate::wire::Event;

/// Where the activity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Source {
    /// The agent started (or the codespace resumed): the clock starts here.
    Start,
    /// Input or output on a terminal of the VM.
    Terminal,
    /// The host said so (the web editor is in use).
    Host,
    /// Bytes on a connection to an owner-only port (SSH, the editor's server).
    Connection,
}

/// The idle settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdleSettings {
    /// No activity for this long is idle.
    pub(crate) timeout: Duration,
    /// The warning comes this long before the timeout.
    pub(crate) warn: Duration,
}

impl IdleSettings {
    /// The configured settings, with an organization's `idle_timeout_minutes` applied (the
    /// shortest timeout wins); a warning longer than the timeout comes at once.
    pub(crate) fn effective(timeout: Duration, warn: Duration, org_minutes: Option<u16>) -> Self {
        let timeout = match org_minutes {
            Some(m) => timeout.min(Duration::from_secs(u64::from(m) * 60)),
            None => timeout,
        };
        Self {
            timeout,
            warn: warn.min(timeout),
        }
    }
}

#[derive(Debug)]
struct State {
    last: SystemTime,
    source: Source,
    warned: bool,
    idle: bool,
}

/// The codespace's activity clock.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    settings: IdleSettings,
    pts: PathBuf,
    /// The live connections to owner-only ports.
    connections: Mutex<Vec<Weak<Meter>>>,
}

/// Keeps a connection's bytes counting as activity while it lives; when dropped (the
/// connection ended), its last transfer is taken in.
#[derive(Debug)]
pub(crate) struct ConnectionWatch {
    activity: Arc<Activity>,
    meter: Arc<Meter>,
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        if let Some(at) = self.meter.last_transfer() {
            self.activity.note_at(Source::Connection, at);
        }
    }
}

impl Activity {
    /// A clock that starts now; ptys are read from `pts` (`/dev/pts`).
    pub(crate) fn new(settings: IdleSettings, pts: &Path) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                last: SystemTime::now(),
                source: Source::Start,
                warned: false,
                idle: false,
            }),
            changed: Notify::new(),
            settings,
            pts: pts.to_owned(),
            connections: Mutex::new(Vec::new()),
        })
    }

    /// Counts the bytes of a connection to an owner-only port as activity, until the returned
    /// watch is dropped.
    pub(crate) fn watch_connection(self: &Arc<Self>, meter: &Arc<Meter>) -> ConnectionWatch {
        let mut live = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|m| m.strong_count() > 0);
        live.push(Arc::downgrade(meter));
        ConnectionWatch {
            activity: self.clone(),
            meter: meter.clone(),
        }
    }

    /// The last transfer on any live owner-only connection.
    fn latest_connection_activity(&self) -> Option<SystemTime> {
        let mut live = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|m| m.strong_count() > 0);
        live.iter()
            .filter_map(Weak::upgrade)
            .filter_map(|m| m.last_transfer())
            .max()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Someone is active now (`Start` restarts the clock: after a resume).
    pub(crate) fn note(&self, source: Source) {
        self.note_at(source, SystemTime::now());
    }

    fn note_at(&self, source: Source, at: SystemTime) {
        let mut st = self.lock();
        if at > st.last || source == Source::Start {
            st.last = at;
            st.source = source;
            st.warned = false;
            st.idle = false;
            drop(st);
            self.changed.notify_one();
        }
    }

    /// Takes in what the ptys say (asked of the privileged side when the agent is separated:
    /// the network side's unit has a private `/dev`).
    fn refresh(&self) {
        let latest = match crate::guest::privsep::client() {
            Some(c) => c.terminal_activity().unwrap_or_else(|e| {
                tracing::debug!(error = %e, "terminal activity unknown");
                None
            }),
            None => latest_terminal_activity(&self.pts, SystemTime::now()),
        };
        if let Some(at) = latest {
            self.note_at(Source::Terminal, at);
        }
        if let Some(at) = self.latest_connection_activity() {
            self.note_at(Source::Connection, at);
        }
    }

    /// The `activity` section of `status`: the last activity, its source, the idle seconds.
    pub(crate) fn status(&self) -> Value {
        self.refresh();
        let st = self.lock();
        let idle = SystemTime::now()
            .duration_since(st.last)
            .unwrap_or_default();
        json!({
            "last_activity": rfc3339(st.last),
            "source": st.source,
            "idle_seconds": idle.as_secs(),
            "timeout_s": self.settings.timeout.as_secs(),
            "idle": st.idle,
        })
    }
}

/// A time as RFC 3339 (UTC), as the agent writes times in events and records.
pub(crate) fn rfc3339(t: impl Into<time::OffsetDateTime>) -> String {
    t.into()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The newest genuine pty stamp under `pts` (not after `now`): access or modification time later
/// than the change time. `None` when no pty shows any.
pub(crate) fn latest_terminal_activity(pts: &Path, now: SystemTime) -> Option<SystemTime> {
    std::fs::read_dir(pts)
        .ok()?
        .flatten()
        // ptmx and anything else that is not a numbered terminal
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| e.metadata().ok())
        .filter_map(|meta| terminal_stamp(&meta, now))
        .max()
}

/// A pty's last input or output time, if it is more than a second later than its last change of
/// owner or mode (which a login, or a `touch`, moves along with it) and not in the future.
pub(crate) fn terminal_stamp(meta: &std::fs::Metadata, now: SystemTime) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt as _;
    let at = |secs: i64, nanos: i64| {
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok()?;
        Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
    };
    let changed = at(meta.ctime(), meta.ctime_nsec())?;
    [
        at(meta.atime(), meta.atime_nsec()),
        at(meta.mtime(), meta.mtime_nsec()),
    ]
    .into_iter()
    .flatten()
    // A second of slack: a `touch` stamps the modification time from the fine clock and the
    // change time from the kernel's coarse one, a few milliseconds apart.
    .filter(|stamp| *stamp > changed + Duration::from_secs(1) && *stamp <= now)
    .max()
}

/// Sends `idle_warning` and `idle` to the host at their deadlines, sleeping in between.
pub(crate) async fn watch(activity: Arc<Activity>, events: EventSink) {
    let settings = activity.settings;
    loop {
        activity.refresh();
        let now = SystemTime::now();
        let (last, source, warned, idle) = {
            let st = activity.lock();
            (st.last, st.source, st.warned, st.idle)
        };
        let idle_at = last + settings.timeout;
        let warn_at = idle_at - settings.warn;
        let fields = |kind: &str| {
            json!({
                "last_activity": rfc3339(last),
                "source": source,
                "idle_seconds": now.duration_since(last).unwrap_or_default().as_secs(),
                "timeout_s": settings.timeout.as_secs(),
                "kind": kind,
            })
        };
        let next = if !idle && now >= idle_at {
            activity.lock().idle = true;
            tracing::info!(source = ?source, "idle: no activity for the timeout");
            let _ = events.send(Event::new("idle", fields("idle")));
            events.audit(Kind::Idle, fields("idle"));
            None
        } else if !warned && !idle && now >= warn_at {
            activity.lock().warned = true;
            let _ = events.send(Event::new("idle_warning", fields("idle_warning")));
            Some(idle_at)
        } else if idle {
            None
        } else if warned {
            Some(idle_at)
        } else {
            Some(warn_at)
        };
        match next {
            Some(at) => {
                let wait = at.duration_since(now).unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = activity.changed.notified() => {}
                }
            }
            // Idle: nothing to do until someone is active again (a pty is read at the next
            // `status`, or the host says so).
            None => activity.changed.notified().await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_organization_can_only_shorten_the_timeout() {
        let min = |m: u64| Duration::from_secs(60 * m);
        let s = IdleSettings::effective(min(30), min(5), Some(10));
        assert_eq!((s.timeout, s.warn), (min(10), min(5)));
        let s = IdleSettings::effective(min(30), min(5), Some(240));
        assert_eq!(s.timeout, min(30));
        let s = IdleSettings::effective(min(30), min(5), Some(5));
        assert_eq!((s.timeout, s.warn), (min(5), min(5)));
    }

    #[test]
    fn a_touched_or_future_pty_stamp_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("3");
        std::fs::write(&f, "").unwrap();
        // Set by hand: the change time moves with it, so it is not activity.
        let now = SystemTime::now();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(now)
            .unwrap();
        assert_eq!(
            latest_terminal_activity(dir.path(), SystemTime::now()),
            None
        );
        // A stamp in the future (set by hand) is not activity either.
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(now + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            latest_terminal_activity(dir.path(), SystemTime::now()),
            None
        );
        // Non-numeric names (ptmx) are not terminals.
        std::fs::write(dir.path().join("ptmx"), "").unwrap();
        assert_eq!(
            latest_terminal_activity(dir.path(), SystemTime::now()),
            None
        );
    }

    /// A real pty with keystrokes and output: its stamps move (the kernel moves them in 8 s
    /// steps, so this waits for up to two steps) and count as terminal activity.
    #[test]
    fn keystrokes_and_output_on_a_pty_are_activity() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let path = std::path::PathBuf::from(name.to_string_lossy().into_owned());
        let slave = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let start = SystemTime::now();
        let quiet = terminal_stamp(&std::fs::metadata(&path).unwrap(), SystemTime::now());
        assert_eq!(quiet, None, "a fresh pty is not activity");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 64];
        loop {
            // A keystroke (the master writes, the slave reads) and some output.
            rustix::io::write(&master, b"x\n").unwrap();
            let _ = rustix::io::read(&slave, &mut buf);
            rustix::io::write(&slave, b"out\n").unwrap();
            let _ = rustix::io::read(&master, &mut buf);
            let now = SystemTime::now();
            if let Some(t) = terminal_stamp(&std::fs::metadata(&path).unwrap(), now) {
                assert!(
                    t + Duration::from_secs(1) >= start,
                    "{t:?} before {start:?}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no activity on {} after 20 s of I/O",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A second local user (or a restricted run: its own uid) cannot move the stamps of someone
    /// else's pty to fake activity: setting them needs ownership, or write access to a device of
    /// mode 0620 group tty. And the owner's own `touch` moves the change time too.
    #[test]
    fn another_user_cannot_fake_activity_on_a_pty() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        use std::os::unix::process::CommandExt as _;
        if !crate::guest::sandbox::root_gate::root() {
            return;
        }
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let path = std::path::PathBuf::from(name.to_string_lossy().into_owned());
        for (uid, what) in [(64999, "another user"), (0, "the owner")] {
            let out = std::process::Command::new("touch")
                .arg(&path)
                .uid(uid)
                .gid(uid)
                .output()
                .unwrap();
            if uid != 0 {
                assert!(!out.status.success(), "{what} touched {}", path.display());
            }
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                terminal_stamp(&meta, SystemTime::now() + Duration::from_secs(5)),
                None,
                "{what}'s touch counted as activity"
            );
        }
    }

    #[tokio::test]
    async fn idle_warns_then_fires_at_its_deadline_and_activity_restarts_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let settings = IdleSettings {
            timeout: Duration::from_millis(1500),
            warn: Duration::from_millis(700),
        };
        let activity = Activity::new(settings, dir.path());
        let (events, mut rx) = crate::guest::service::EventSink::channel(16);
        let start = std::time::Instant::now();
        let w = tokio::spawn(watch(activity.clone(), events));
        let e = rx.recv().await.unwrap();
        assert_eq!(e.name, "idle_warning");
        let warned = start.elapsed();
        assert!(warned >= Duration::from_millis(750), "{warned:?}");
        let e = rx.recv().await.unwrap();
        assert_eq!(e.name, "idle");
        let idled = start.elapsed();
        // And the audit record of it.
        let record = rx.recv().await.unwrap();
        assert_eq!(
            (record.name.as_str(), &record.fields["kind"]),
            ("audit", &json!("idle"))
        );
        assert_eq!(record.fields["source"], "start");
        assert!(
            idled >= Duration::from_millis(1450) && idled < Duration::from_millis(2500),
            "idle {idled:?} after the start, timeout 1.5 s"
        );
        assert_eq!(activity.status()["idle"], true);
        // The host says someone is there: the clock restarts, and idle comes again later.
        activity.note(Source::Host);
        assert_eq!(activity.status()["source"], "host");
        assert_eq!(activity.status()["idle"], false);
        let again = std::time::Instant::now();
        assert_eq!(rx.recv().await.unwrap().name, "idle_warning");
        assert_eq!(rx.recv().await.unwrap().name, "idle");
        assert!(again.elapsed() >= Duration::from_millis(1450));
        w.abort();
    }
}
