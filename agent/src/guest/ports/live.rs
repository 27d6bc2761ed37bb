//! The table of live forwarded connections, for limits and revocation.
//!
//! ```text
//! admit ──▶ LiveTable::insert(port, principal) ──▶ (id, cancel receiver)
//!              │                                       │ the relay selects on it
//! visibility change / port removal                     │
//!   ──▶ revoke(port, still_allowed) ── drops senders ──┘ ─▶ relay ends, sockets close
//! relay ends on its own ──▶ LiveTicket dropped ──▶ entry removed
//! ```
//!
//! Each entry holds the sending half of a oneshot channel; revoking removes the entry and
//! fires it, so a revoked connection ends within one scheduler turn. The table lives inside
//! the port service's lock, so admission (check + insert) and revocation are atomic with
//! respect to registry changes: a connection is either admitted before a change (and then
//! re-evaluated by it) or checked against the changed state.

use std::collections::HashMap;

use codespace_policy::ports::Principal;
use tokio::sync::oneshot;

struct Entry {
    port: u16,
    principal: Option<Principal>,
    cancel: oneshot::Sender<()>,
}

/// Live connections by id.
#[derive(Default)]
pub(crate) struct LiveTable {
    entries: HashMap<u64, Entry>,
    next_id: u64,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("connections", &self.entries.len())
            .finish()
    }
}

impl LiveTable {
    /// Number of live connections.
    pub(crate) fn total(&self) -> usize {
        self.entries.len()
    }

    /// Number of live connections on `port`.
    pub(crate) fn on_port(&self, port: u16) -> usize {
        self.entries.values().filter(|e| e.port == port).count()
    }

    /// Registers a connection; the receiver resolves when it is revoked.
    pub(crate) fn insert(
        &mut self,
        port: u16,
        principal: Option<Principal>,
    ) -> (u64, oneshot::Receiver<()>) {
        let (cancel, rx) = oneshot::channel();
        self.next_id += 1;
        let id = self.next_id;
        self.entries.insert(
            id,
            Entry {
                port,
                principal,
                cancel,
            },
        );
        (id, rx)
    }

    /// Forgets a connection that ended on its own.
    pub(crate) fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// Revokes every connection on `port` whose principal `still_allowed` rejects; returns how
    /// many.
    pub(crate) fn revoke(
        &mut self,
        port: u16,
        mut still_allowed: impl FnMut(Option<&Principal>) -> bool,
    ) -> usize {
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.port == port && !still_allowed(e.principal.as_ref()))
            .map(|(id, _)| *id)
            .collect();
        for id in &doomed {
            if let Some(e) = self.entries.remove(id) {
                let _ = e.cancel.send(());
            }
        }
        doomed.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn who(login: &str) -> Option<Principal> {
        Some(Principal {
            login: login.into(),
            organizations: vec![],
            authenticated_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn revoke_fires_only_the_rejected_connections_of_the_port() {
        let mut t = LiveTable::default();
        let (_, mut mona) = t.insert(3000, who("mona"));
        let (_, mut hubot) = t.insert(3000, who("hubot"));
        let (_, mut other_port) = t.insert(4000, who("hubot"));
        let (anon_id, _anon) = t.insert(3000, None);
        assert_eq!((t.total(), t.on_port(3000)), (4, 3));
        let n = t.revoke(3000, |p| p.is_some_and(|p| p.login == "mona"));
        assert_eq!(n, 2);
        assert!(hubot.try_recv().is_ok());
        assert!(mona.try_recv().is_err());
        assert!(other_port.try_recv().is_err());
        t.remove(anon_id);
        assert_eq!(t.total(), 2);
    }
}
