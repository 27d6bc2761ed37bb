//! The polling loop: scan every `poll_interval`, diff, publish.
//!
//! ```text
//!  tokio task ── interval tick ──▶ spawn_blocking(Engine::poll) ──▶ changes
//!                                   (dump + owner resolution:         │
//!                                    /proc I/O stays off the runtime)  ├─▶ shared.current / status
//!                                                                     ├─▶ EventSink (port_opened/closed)
//!                                                                     └─▶ mpsc::Sender<PortChange>
//! ```
//!
//! The first poll reports every listener already open as `Opened`, so a consumer starting with
//! the watcher sees the complete set. The channel is bounded: a consumer that stops reading
//! stalls the watcher (and with it the events), which is preferred to losing a `Closed` the
//! registry must see; a consumer that drops the receiver just stops getting changes. A failed
//! scan is logged (once per kind of error), counted in `status`, and retried at the next tick;
//! the previous set stays current meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::owner::OwnerResolver;
use super::{DetectError, DetectOptions, ListeningSocket, PortChange, Source, Tracker};
use crate::guest::service::EventSink;

/// Room in the change channel: a burst (a dev server opening a dozen ports, or the first poll
/// of a busy VM) fits without waiting for the consumer.
const CHANNEL: usize = 1024;

/// The `detection` section of `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectionStatus {
    /// `sock_diag`, `procnet`, or `none` before the first poll or when no source could be opened.
    pub method: String,
    /// Reported listeners.
    pub listeners: usize,
    /// Wall time of the last poll (dump, diff and owner resolution), microseconds.
    pub last_scan_us: u64,
    /// Polls done.
    pub scans: u64,
    /// Polls that failed.
    pub errors: u64,
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
    tracker: Tracker,
    resolver: OwnerResolver,
    opts: DetectOptions,
}

impl Engine {
    fn poll(&mut self) -> Result<Vec<PortChange>, DetectError> {
        let source = match &mut self.source {
            Some(s) => s,
            None => self.source.insert(Source::open(&self.opts)?),
        };
        let raw = source.listeners()?;
        let resolver = &mut self.resolver;
        Ok(self.tracker.update(raw, |want| resolver.resolve(want)))
    }
}

/// A running port watcher. Dropping it stops the polling.
#[derive(Debug)]
pub struct PortWatcher {
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl PortWatcher {
    /// Starts polling (on the current tokio runtime). Changes go to the returned receiver and,
    /// as `port_opened` / `port_closed` events, to `events`.
    pub fn spawn(opts: &DetectOptions, events: EventSink) -> (Self, mpsc::Receiver<PortChange>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let shared = Arc::new(Mutex::new(Shared::default()));
        lock(&shared).status.method = "none".into();
        let engine = Engine {
            source: None,
            tracker: Tracker::new(opts),
            resolver: OwnerResolver::new(&opts.proc_root),
            opts: opts.clone(),
        };
        let task = tokio::spawn(run(engine, shared.clone(), events, tx));
        (Self { shared, task }, rx)
    }

    /// The listeners as of the last poll.
    pub fn current(&self) -> Vec<ListeningSocket> {
        lock(&self.shared).current.clone()
    }

    /// The `detection` section of `status`.
    pub fn status(&self) -> DetectionStatus {
        lock(&self.shared).status.clone()
    }

    /// Stops polling.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PortWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    match m.lock() {
        Ok(g) => g,
        // Only plain data lives behind the lock; a panic elsewhere leaves it usable.
        Err(p) => p.into_inner(),
    }
}

async fn run(
    mut engine: Engine,
    shared: Arc<Mutex<Shared>>,
    events: EventSink,
    tx: mpsc::Sender<PortChange>,
) {
    let mut tick = tokio::time::interval(engine.opts.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_logged: Option<String> = None;
    loop {
        tick.tick().await;
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let r = engine.poll();
            (engine, r)
        })
        .await;
        let result;
        (engine, result) = match joined {
            Ok(pair) => pair,
            // The poll panicked (a bug): the engine is gone with it; stop rather than spin.
            Err(e) => {
                tracing::error!(error = %e, "port detection stopped");
                lock(&shared).status.last_error = Some("detection stopped after a panic".into());
                return;
            }
        };
        let elapsed = started.elapsed();
        let changes = {
            let mut s = lock(&shared);
            s.status.scans += 1;
            s.status.last_scan_us = elapsed.as_micros().try_into().unwrap_or(u64::MAX);
            s.status.method = engine
                .source
                .as_ref()
                .map_or("none", Source::name)
                .to_owned();
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
            let _ = tx.send(change).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn reports_an_opened_and_closed_listener_and_status() {
        let (events, mut ev_rx) = tokio::sync::broadcast::channel(64);
        let opts = DetectOptions {
            poll_interval: Duration::from_millis(20),
            ignore_pid: None,
            ..DetectOptions::default()
        };
        let (w, mut rx) = PortWatcher::spawn(&opts, events);
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
