//! The polling loop: scan every `poll_interval`, diff, publish.
//!
//! ```text
//!  thread "port-watcher": sleep until the next tick ─▶ Engine::poll ─▶ changes
//!                          (dump + diff + owner resolution)               │
//!                                                                         ├─▶ shared.current / status
//!                                                                         ├─▶ EventSink (port_opened/closed)
//!                                                                         └─▶ mpsc::Sender<PortChange>
//! ```
//!
//! A dedicated thread rather than a tokio task: the poll does blocking netlink and `/proc` I/O
//! (owner resolution can take tens of milliseconds in a process with 10,000 sockets), which must
//! not stall the agent's single-threaded runtime, and one thread that wakes once per tick costs
//! less than a task handing each poll to the blocking pool and back. When nothing changed (the
//! usual case) a poll is one dump and one comparison with the previous dump.
//!
//! The first poll reports every listener already open as `Opened`, so a consumer starting with
//! the watcher sees the complete set. The channel is bounded: a consumer that stops reading
//! stalls the watcher (and with it the events), which is preferred to losing a `Closed` the
//! registry must see; a consumer that drops the receiver just stops getting changes. A failed
//! scan is logged (once per kind of error), counted in `status`, and retried at the next tick;
//! the previous set stays current meanwhile. Dropping the [`PortWatcher`] stops the thread at its
//! next tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use super::RawListener;

use super::owner::OwnerResolver;
use super::{DetectError, DetectOptions, ListeningSocket, PortChange, Source, Tracker};
use crate::guest::sandbox::netns::RestrictedSockets;
use crate::guest::service::EventSink;

/// How often the restricted network namespace is looked up again (it appears with the first
/// restricted run, and changes only when a trust change kills that run).
const RESTRICTED_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Room in the change channel: a burst (a dev server opening a dozen ports, or the first poll
/// of a busy VM) fits without waiting for the consumer.
const CHANNEL: usize = 1024;

/// The `detection` section of `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectionStatus {
    /// `sock_diag`, `procnet`, or `none` before the first poll or when no source could be opened.
    pub method: String,
    /// Reported listeners.
    pub(crate) listeners: usize,
    /// Wall time of the last poll (dump, diff and owner resolution), microseconds.
    pub(crate) last_scan_us: u64,
    /// Polls done.
    pub(crate) scans: u64,
    /// Polls that failed.
    pub(crate) errors: u64,
    /// The last failure, if the last poll failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    current: Vec<ListeningSocket>,
    status: DetectionStatus,
}

/// Everything a poll needs; moved into the blocking pool and back each tick.
struct Engine {
    source: Option<Source>,
    /// A `sock_diag` socket made inside the codespace's restricted network namespace, with the
    /// namespace's inode (a new namespace after a trust change gets a new socket).
    restricted: Option<(u64, Option<super::sock_diag::SockDiag>)>,
    /// Inodes of the listeners that the restricted dump found.
    restricted_inodes: std::collections::HashSet<u64>,
    /// A failed restricted scan was logged (once per namespace).
    restricted_warned: bool,
    /// When the namespace was last asked about.
    restricted_checked: Option<std::time::Instant>,
    /// Where sockets inside the namespace come from.
    restricted_sockets: RestrictedSockets,
    tracker: Tracker,
    resolver: OwnerResolver,
    opts: DetectOptions,
    /// The previous dump, unsorted: equal to the new one means nothing changed (a reordered
    /// but equal dump just costs one diff that finds nothing).
    last: Vec<RawListener>,
}

impl Engine {
    fn poll(&mut self) -> Result<Vec<PortChange>, DetectError> {
        let source = match &mut self.source {
            Some(s) => s,
            None => self.source.insert(Source::open(&self.opts)?),
        };
        let mut raw = source.listeners()?;
        raw.extend(self.restricted_listeners());
        if raw == self.last {
            return Ok(Vec::new());
        }
        self.last.clone_from(&raw);
        let resolver = &mut self.resolver;
        let mut changes = self.tracker.update(raw, |want| resolver.resolve(want));
        for change in &mut changes {
            let (socket, closed) = match change {
                PortChange::Opened(s) => (s, false),
                PortChange::Closed(s) => (s, true),
            };
            // A closed socket's inode is forgotten once reported, so the set stays as large
            // as the restricted listeners are many.
            let restricted = if closed {
                self.restricted_inodes.remove(&socket.inode)
            } else {
                self.restricted_inodes.contains(&socket.inode)
            };
            if restricted {
                socket.network = super::Network::Restricted;
            }
        }
        Ok(changes)
    }

    /// The listeners of the restricted network namespace, when the codespace has one: a
    /// `sock_diag` socket made inside it (by the privileged side when the agent is separated),
    /// asked for again only when the namespace changed. Failing to dump it is logged and leaves
    /// the agent's own listeners reported.
    fn restricted_listeners(&mut self) -> Vec<RawListener> {
        use crate::guest::privsep::proto::SocketKind;
        use crate::guest::sandbox::netns::NetSocket;
        let have = self.restricted.as_ref().map(|(inode, _)| *inode);
        // Whether the namespace is there, or still the same, is asked at most once a second
        // (from the privileged side, when separated: a round trip per poll was most of what an
        // idle agent costs); in between, the socket at hand is dumped.
        let fresh = self
            .restricted_checked
            .is_some_and(|at| at.elapsed() < RESTRICTED_RECHECK);
        let asked = if fresh {
            Ok(have.map(NetSocket::Unchanged))
        } else {
            self.restricted_checked = Some(std::time::Instant::now());
            self.restricted_sockets.socket(SocketKind::SockDiag, have)
        };
        let found = match asked {
            Ok(None) => {
                self.restricted = None;
                return Vec::new();
            }
            Ok(Some(NetSocket::Unchanged(_))) => match &mut self.restricted {
                Some((_, Some(diag))) => diag.dump(),
                _ => return Vec::new(),
            },
            Ok(Some(NetSocket::New(fd, inode))) => {
                self.restricted_warned = false;
                let diag = super::sock_diag::SockDiag::from_fd(fd);
                let diag = self.restricted.insert((inode, diag.ok()));
                match &mut diag.1 {
                    Some(diag) => diag.dump(),
                    None => return Vec::new(),
                }
            }
            Err(e) => Err(DetectError::SockDiagIo {
                op: "socket in the restricted network",
                source: e,
            }),
        };
        match found {
            Ok(found) => {
                self.restricted_inodes.extend(found.iter().map(|l| l.inode));
                found
            }
            Err(e) => {
                // Once per namespace: a kernel that cannot do it fails every poll the same way.
                if !self.restricted_warned {
                    self.restricted_warned = true;
                    tracing::warn!(error = %e, "restricted network scan failed");
                }
                Vec::new()
            }
        }
    }
}

/// A running port watcher. Dropping it stops the polling.
#[derive(Debug)]
pub struct PortWatcher {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl PortWatcher {
    /// Starts polling on its own thread. Changes go to the returned receiver and, as
    /// `port_opened` / `port_closed` events, to `events`. Listeners of the codespace's
    /// restricted network namespace are dumped through a socket from `restricted`.
    pub fn spawn(
        opts: &DetectOptions,
        events: EventSink,
        restricted: RestrictedSockets,
    ) -> (Self, mpsc::Receiver<PortChange>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let shared = Arc::new(Mutex::new(Shared::default()));
        lock(&shared).status.method = "none".into();
        let stop = Arc::new(AtomicBool::new(false));
        let engine = Engine {
            source: None,
            restricted: None,
            restricted_inodes: std::collections::HashSet::new(),
            restricted_warned: false,
            restricted_checked: None,
            restricted_sockets: restricted,
            tracker: Tracker::new(opts),
            resolver: OwnerResolver::new(&opts.proc_root),
            opts: opts.clone(),
            last: Vec::new(),
        };
        let (sh, st) = (shared.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("port-watcher".into())
            .stack_size(256 * 1024)
            .spawn(move || run(engine, &sh, &events, &tx, &st));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the port watcher thread");
            lock(&shared).status.last_error = Some(format!("cannot start: {e}"));
        }
        (Self { shared, stop }, rx)
    }

    /// The listeners as of the last poll.
    #[cfg(test)]
    pub(crate) fn current(&self) -> Vec<ListeningSocket> {
        lock(&self.shared).current.clone()
    }

    /// The `detection` section of `status`.
    pub fn status(&self) -> DetectionStatus {
        lock(&self.shared).status.clone()
    }

    /// Stops polling (the thread exits at its next tick).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for PortWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    match m.lock() {
        Ok(g) => g,
        // Only plain data lives behind the lock; a panic elsewhere leaves it usable.
        Err(p) => p.into_inner(),
    }
}

fn run(
    mut engine: Engine,
    shared: &Mutex<Shared>,
    events: &EventSink,
    tx: &mpsc::Sender<PortChange>,
    stop: &AtomicBool,
) {
    let interval = engine.opts.poll_interval;
    let mut next = Instant::now();
    let mut last_logged: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = engine.poll();
        let elapsed = started.elapsed();
        let changes = {
            let mut s = lock(shared);
            s.status.scans += 1;
            s.status.last_scan_us = elapsed.as_micros().try_into().unwrap_or(u64::MAX);
            if let Some(src) = &engine.source {
                if s.status.method != src.name() {
                    s.status.method = src.name().to_owned();
                }
            }
            match result {
                Ok(changes) => {
                    s.status.last_error = None;
                    last_logged = None;
                    if !changes.is_empty() {
                        s.current = engine.tracker.current();
                        s.status.listeners = s.current.len();
                    }
                    changes
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_logged.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(error = %msg, "port scan failed; retrying");
                        last_logged = Some(msg.clone());
                    }
                    s.status.errors += 1;
                    s.status.last_error = Some(msg);
                    Vec::new()
                }
            }
        };
        for change in changes {
            tracing::debug!(event = change.event_name(), port = change.socket().port,
                addr = %change.socket().addr, pid = ?change.socket().pid, "port change");
            // No control connection: nobody to tell; the registry still learns below.
            let _ = events.send(change.to_event());
            // A dropped receiver means nobody consumes changes; keep serving events.
            let _ = tx.blocking_send(change);
        }
        // Fixed-rate ticks; after an overrun, start afresh rather than bursting to catch up.
        next += interval;
        let now = Instant::now();
        if next <= now {
            next = now + interval;
        }
        std::thread::sleep(next - now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn reports_an_opened_and_closed_listener_and_status() {
        let (events, mut ev_rx) = crate::guest::service::EventSink::channel(64);
        let opts = DetectOptions {
            poll_interval: Duration::from_millis(20),
            ignore_pid: None,
            ..DetectOptions::default()
        };
        let (w, mut rx) = PortWatcher::spawn(&opts, events, RestrictedSockets::none());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        async fn wait(rx: &mut mpsc::Receiver<PortChange>, port: u16, opened: bool) -> PortChange {
            let fut = async {
                loop {
                    let c = rx.recv().await.unwrap();
                    if c.socket().port == port && matches!(c, PortChange::Opened(_)) == opened {
                        return c;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), fut)
                .await
                .unwrap()
        }
        let c = wait(&mut rx, port, true).await;
        assert_eq!(c.socket().pid, Some(std::process::id()));
        assert!(w.current().iter().any(|s| s.port == port));
        let st = w.status();
        assert!(st.scans >= 1 && st.listeners >= 1, "{st:?}");
        assert!(st.method == "sock_diag" || st.method == "procnet");
        drop(l);
        let c = wait(&mut rx, port, false).await;
        assert_eq!(c.socket().port, port);
        assert!(!w.current().iter().any(|s| s.port == port));
        // The same changes went out as events.
        let mut names = vec![];
        while let Ok(e) = ev_rx.try_recv() {
            if e.fields["port"] == port {
                names.push(e.name);
            }
        }
        assert_eq!(names, vec!["port_opened", "port_closed"]);
    }
}
