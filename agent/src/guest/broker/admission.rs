//! Admission at `accept`: which connections get one of the broker's slots, and how refusals are
//! reported without a flood of them turning into a flood of reports.
//!
//! ```text
//! accept ─► SO_PEERCRED ─► check_peer ─► uid's slot ─► global slot ─► spawn (slot held
//!              │              │              │              │            until it ends)
//!              └──────────────┴──────────────┴──────────────┴─► close now, RefusalReports
//! ```
//!
//! Every refusal is decided from the kernel's credentials alone, before the broker reads a byte,
//! so a refused peer costs one `accept`, one `getsockopt` and (for an allowed uid) one read of
//! `/proc/<pid>/cgroup`, and never a slot or a wait. Slots exist only for allowed uids, and each
//! allowed uid has its own bounded share (`Slots`): an allowed uid is turned away only when it
//! is over its own share, or when the allowed uids together hold every global slot (with the
//! defaults, that takes four of them at their full share). Nobody queues: a connection that
//! gets no slot is closed at once, so the accept loop is never held by anyone.
//!
//! Invariants: nothing here waits on a peer or a lock (`try_acquire` only; the cgroup read is
//! procfs, answered from kernel memory); memory is bounded by the allow list (one semaphore per
//! allowed uid) and by constants (`RefusalReports`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{check_peer, BrokerConfig, Outcome, Silence};

/// Refusals reported one by one per [`REFUSAL_WINDOW`]; more are only counted.
pub const REFUSALS_REPORTED_PER_WINDOW: u32 = 8;

/// The window [`REFUSALS_REPORTED_PER_WINDOW`] counts over.
pub(crate) const REFUSAL_WINDOW: Duration = Duration::from_secs(1);

/// The broker's connection slots: a share per allowed uid, within a global cap.
#[derive(Debug)]
pub(crate) struct Slots {
    global: Arc<Semaphore>,
    per_uid: HashMap<u32, Arc<Semaphore>>,
}

/// One connection's slot; both shares are given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _uid: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Slots {
    /// Slots for `config`'s allowed uids (a limit of 0 counts as 1, so an allowed uid is never
    /// locked out by a typo).
    pub(crate) fn new(config: &BrokerConfig) -> Self {
        let share = config.max_connections_per_uid.max(1);
        Self {
            global: Arc::new(Semaphore::new(config.max_connections.max(1))),
            per_uid: config
                .allowed_uids
                .iter()
                .map(|uid| (*uid, Arc::new(Semaphore::new(share))))
                .collect(),
        }
    }

    /// Takes a slot for `uid` now, or says why not. The uid's own share is tried first, so a
    /// uid over its share never holds a global slot, not even for an instant.
    pub(crate) fn take(&self, uid: u32) -> Result<Slot, Silence> {
        // Callers check the allow list first; this keeps a uid without a share out regardless.
        let share = self.per_uid.get(&uid).ok_or(Silence::UidNotAllowed)?;
        let own = Arc::clone(share)
            .try_acquire_owned()
            .map_err(|_| Silence::UidBusy)?;
        let global = Arc::clone(&self.global)
            .try_acquire_owned()
            .map_err(|_| Silence::Busy)?;
        Ok(Slot {
            _uid: own,
            _global: global,
        })
    }
}

/// Decides at accept, from the kernel's credentials only, whether `stream` is served, and takes
/// its slot. Reads nothing from the peer and never waits (the cgroup read is procfs, in memory).
pub(crate) fn admit(
    stream: &UnixStream,
    config: &BrokerConfig,
    slots: &Slots,
) -> Result<(u32, Slot), Outcome> {
    let (uid, pid) = match stream.peer_cred() {
        Ok(cred) => (cred.uid(), cred.pid()),
        Err(_) => {
            return Err(Outcome::Silent {
                uid: None,
                reason: Silence::UnknownPeer,
                repository: None,
            })
        }
    };
    let refused = |reason| Outcome::Silent {
        uid: Some(uid),
        reason,
        repository: None,
    };
    check_peer(uid, pid, config).map_err(refused)?;
    let slot = slots.take(uid).map_err(refused)?;
    Ok((uid, slot))
}

/// The accept loop of a broker socket (the credential broker's and the signing broker's):
/// until `shutdown`, each connection is admitted ([`admit`]) and handed to `admitted` with its
/// uid, pid and slot, or handed to `refused` with its [`Outcome`] and pid while its end is
/// still open (so its `/proc` entry is still there for the report), then closed. Never waits
/// on a peer: `admitted` is expected to spawn.
pub(crate) async fn accept_loop<S, A, R>(
    listener: &UnixListener,
    config: &BrokerConfig,
    shutdown: S,
    mut admitted: A,
    mut refused: R,
) where
    S: std::future::Future<Output = ()>,
    A: FnMut(UnixStream, u32, Option<i32>, Slot),
    R: FnMut(Outcome, Option<i32>),
{
    tokio::pin!(shutdown);
    let slots = Slots::new(config);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Per-connection accept errors (e.g. the peer already left) are not fatal.
                Err(_) => continue,
            },
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        match admit(&stream, config, &slots) {
            Ok((uid, slot)) => admitted(stream, uid, pid, slot),
            Err(refusal) => {
                refused(refusal, pid);
                // Closed before reading anything: see the broker's module docs for why.
                drop(stream);
            }
        }
    }
}

/// What to do with one refusal, as [`RefusalReports::admit`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Report it; `unreported` refusals were counted, not reported, since the last report.
    Send {
        /// Refusals counted and not reported before this one.
        unreported: u64,
    },
    /// Only count it: the window's reports are used up.
    Count,
}

/// A rate limit on refusal reports: at most [`REFUSALS_REPORTED_PER_WINDOW`] per
/// [`REFUSAL_WINDOW`]; the rest are counted and the count goes out with the next report. A
/// flood of refused connections therefore costs a counter, not a report (or a log line) each.
/// Pure: time is passed in.
#[derive(Debug, Default)]
pub(crate) struct RefusalReports {
    window_start: Option<Instant>,
    reported: u32,
    unreported: u64,
}

impl RefusalReports {
    /// Decides whether the refusal seen at `now` is reported.
    pub(crate) fn admit(&mut self, now: Instant) -> Report {
        let window_over = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= REFUSAL_WINDOW);
        if window_over {
            self.window_start = Some(now);
            self.reported = 0;
        }
        if self.reported < REFUSALS_REPORTED_PER_WINDOW {
            self.reported += 1;
            Report::Send {
                unreported: std::mem::take(&mut self.unreported),
            }
        } else {
            self.unreported = self.unreported.saturating_add(1);
            Report::Count
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn config(uids: Vec<u32>, global: usize, per_uid: usize) -> BrokerConfig {
        let mut config = BrokerConfig::new(Path::new("/nonexistent"), uids);
        config.max_connections = global;
        config.max_connections_per_uid = per_uid;
        config
    }

    #[test]
    fn each_uid_has_its_own_share() {
        let slots = Slots::new(&config(vec![1000, 1001], 64, 2));
        let held: Vec<Slot> = (0..2).map(|_| slots.take(1000).unwrap()).collect();
        assert_eq!(slots.take(1000).unwrap_err(), Silence::UidBusy);
        // The other uid is not affected by the first one's use of its share.
        let other = slots.take(1001).unwrap();
        drop(held);
        let again = slots.take(1000).unwrap();
        drop((other, again));
        assert_eq!(slots.take(4242).unwrap_err(), Silence::UidNotAllowed);
    }

    #[test]
    fn the_global_cap_holds_and_a_refusal_keeps_no_share() {
        let slots = Slots::new(&config(vec![1000, 1001], 3, 2));
        let a = (slots.take(1000).unwrap(), slots.take(1000).unwrap());
        let b = slots.take(1001).unwrap();
        assert_eq!(slots.take(1001).unwrap_err(), Silence::Busy);
        // The refused attempt gave its uid share back: one global slot frees, 1001 gets it.
        drop(a.0);
        let b2 = slots.take(1001).unwrap();
        assert_eq!(slots.take(1001).unwrap_err(), Silence::UidBusy);
        drop((a.1, b, b2));
    }

    #[test]
    fn zero_limits_still_serve_one_at_a_time() {
        let slots = Slots::new(&config(vec![1000], 0, 0));
        let one = slots.take(1000).unwrap();
        assert!(slots.take(1000).is_err());
        drop(one);
        assert!(slots.take(1000).is_ok());
    }

    #[test]
    fn refusal_reports_are_limited_per_window_and_counted() {
        let t0 = Instant::now();
        let mut reports = RefusalReports::default();
        for _ in 0..REFUSALS_REPORTED_PER_WINDOW {
            assert_eq!(reports.admit(t0), Report::Send { unreported: 0 });
        }
        for _ in 0..1000 {
            assert_eq!(reports.admit(t0 + REFUSAL_WINDOW / 2), Report::Count);
        }
        // The next window's first report carries the count; the one after starts from zero.
        assert_eq!(
            reports.admit(t0 + REFUSAL_WINDOW),
            Report::Send { unreported: 1000 }
        );
        assert_eq!(
            reports.admit(t0 + REFUSAL_WINDOW),
            Report::Send { unreported: 0 }
        );
        // A clock that goes backwards (it cannot, for Instant, but defensively) is not a new
        // window.
        let mut fresh = RefusalReports::default();
        assert_eq!(
            fresh.admit(t0 + REFUSAL_WINDOW),
            Report::Send { unreported: 0 }
        );
        for _ in 1..REFUSALS_REPORTED_PER_WINDOW {
            fresh.admit(t0);
        }
        assert_eq!(fresh.admit(t0), Report::Count);
    }
}
