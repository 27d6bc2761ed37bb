//! The expiry driver: a task that wakes at the vault's next deadline, polls it and forwards the
//! resulting events.
//!
//! It wakes at whichever comes first: the deadline, a change in the vault (a new token, a wipe,
//! a failed write), shutdown, or [`MAX_SLEEP`]. The cap matters on a VM: a monotonic timer does
//! not advance while the VM is suspended, so after a resume the wall clock may already be past a
//! deadline; waking at least every [`MAX_SLEEP`] bounds how late the wipe can be.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Vault, VaultEvent};

/// Longest the driver sleeps without looking at the clock again.
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs until `shutdown` completes or `events` is closed. `clock` is the wall clock
/// (`OffsetDateTime::now_utc` in the daemon; a test clock in tests).
pub(crate) async fn run_expiry<C, S>(
    vault: Vault,
    clock: C,
    events: mpsc::Sender<VaultEvent>,
    shutdown: S,
) where
    C: Fn() -> OffsetDateTime,
    S: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        // Registered before the deadline is read, so a change in between is not missed
        // (`notify_one` also stores a permit when nobody waits).
        let changed = vault.changed().notified();
        let wait = match vault.next_deadline() {
            Some(deadline) => {
                let until = deadline - clock();
                Duration::try_from(until)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP)
            }
            None => MAX_SLEEP,
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
        }
        for event in vault.poll_expiry(clock()) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}
