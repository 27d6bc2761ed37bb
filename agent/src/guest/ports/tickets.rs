//! The agent's store of outstanding forward tickets ([`crate::wire::ticket`]).
//!
//! ```text
//! forward_tickets {count} (control connection) ─▶ issue: count × 32 random bytes ─▶ store
//! ticket hello, proof verified ─▶ redeem: remove from the store ─▶ present? go on : ticket-unknown
//! ```
//!
//! Invariants: a ticket is redeemed at most once (removal and the answer are one step under the
//! lock); at most [`MAX_OUTSTANDING`] tickets are outstanding, issuing more forgets the oldest
//! first (a host that lost its tickets is never locked out, and memory stays bounded); one
//! request asks for at most [`MAX_BATCH`]. The store lives in memory only, so an agent restart
//! forgets every ticket and a host holding old ones falls back to the full handshake.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use ring::rand::{SecureRandom, SystemRandom};

use crate::wire::ticket::{ForwardTicket, TICKET_LEN};

/// Most tickets outstanding at once, per agent.
pub(crate) const MAX_OUTSTANDING: usize = 1024;
/// Most tickets one `forward_tickets` request may ask for.
pub(crate) const MAX_BATCH: usize = 256;

/// Why tickets could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// `count` is 0 or more than [`MAX_BATCH`].
    #[error("forward_tickets: `count` must be between 1 and {MAX_BATCH}, not {0}")]
    BadCount(u64),
    /// The system random number generator failed.
    #[error("forward_tickets: the random number generator failed")]
    Random,
}

#[derive(Default)]
struct Inner {
    /// Outstanding tickets.
    live: HashSet<[u8; TICKET_LEN]>,
    /// Issue order, oldest first; may still hold redeemed tickets (skipped when evicting).
    order: VecDeque<[u8; TICKET_LEN]>,
}

/// Outstanding tickets, shared by the control connections (issue) and the forwarder (redeem).
pub struct TicketStore {
    inner: Mutex<Inner>,
    rng: SystemRandom,
}

impl std::fmt::Debug for TicketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStore")
            .field("outstanding", &self.outstanding())
            .finish_non_exhaustive()
    }
}

impl Default for TicketStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            rng: SystemRandom::new(),
        }
    }
}

impl TicketStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Issues `count` fresh tickets, forgetting the oldest outstanding ones beyond
    /// [`MAX_OUTSTANDING`].
    pub fn issue(&self, count: u64) -> Result<Vec<ForwardTicket>, TicketError> {
        let n = usize::try_from(count)
            .ok()
            .filter(|n| (1..=MAX_BATCH).contains(n))
            .ok_or(TicketError::BadCount(count))?;
        let mut fresh = Vec::with_capacity(n);
        for _ in 0..n {
            let mut bytes = [0u8; TICKET_LEN];
            self.rng.fill(&mut bytes).map_err(|_| TicketError::Random)?;
            fresh.push(bytes);
        }
        let mut st = self.lock();
        for bytes in &fresh {
            // 256 random bits do not collide; `insert` keeps the set exact even if they did.
            if st.live.insert(*bytes) {
                st.order.push_back(*bytes);
            }
        }
        while st.live.len() > MAX_OUTSTANDING {
            match st.order.pop_front() {
                Some(old) => {
                    st.live.remove(&old);
                }
                None => break,
            }
        }
        // Redeemed tickets linger in `order`; drop them once they outnumber the live ones.
        if st.order.len() > 2 * MAX_OUTSTANDING {
            let Inner { live, order } = &mut *st;
            order.retain(|t| live.contains(t));
        }
        Ok(fresh.into_iter().map(ForwardTicket::from_bytes).collect())
    }

    /// Takes `ticket` out of the store: `true` the first time for an issued ticket, `false`
    /// for an unknown, forgotten or already used one.
    pub(crate) fn redeem(&self, ticket: &ForwardTicket) -> bool {
        self.lock().live.remove(ticket.as_bytes())
    }

    /// How many tickets are outstanding.
    pub(crate) fn outstanding(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_good_once() {
        let s = TicketStore::default();
        let t = s.issue(2).unwrap();
        assert_eq!(s.outstanding(), 2);
        assert_ne!(t[0], t[1]);
        assert!(s.redeem(&t[0]));
        assert!(!s.redeem(&t[0]), "a replayed ticket must be refused");
        assert!(s.redeem(&t[1]));
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn tickets_of_another_store_are_unknown() {
        // An agent restart starts from an empty store.
        let before = TicketStore::default().issue(1).unwrap();
        let after = TicketStore::default();
        after.issue(1).unwrap();
        assert!(!after.redeem(&before[0]));
    }

    #[test]
    fn outstanding_tickets_are_bounded_and_the_oldest_go_first() {
        let s = TicketStore::default();
        let first = s.issue(MAX_BATCH as u64).unwrap();
        let mut last = Vec::new();
        for _ in 0..(MAX_OUTSTANDING / MAX_BATCH) {
            last = s.issue(MAX_BATCH as u64).unwrap();
        }
        assert_eq!(s.outstanding(), MAX_OUTSTANDING);
        assert!(
            first.iter().all(|t| !s.redeem(t)),
            "the oldest batch is forgotten"
        );
        assert!(last.iter().all(|t| s.redeem(t)));
    }

    #[test]
    fn redeemed_tickets_do_not_make_the_issue_order_grow_without_bound() {
        let s = TicketStore::default();
        for _ in 0..40 {
            for t in s.issue(MAX_BATCH as u64).unwrap() {
                assert!(s.redeem(&t));
            }
        }
        assert_eq!(s.outstanding(), 0);
        assert!(s.lock().order.len() <= 2 * MAX_OUTSTANDING + MAX_BATCH);
    }

    #[test]
    fn batch_sizes_are_bounded() {
        let s = TicketStore::default();
        assert_eq!(s.issue(0).unwrap_err(), TicketError::BadCount(0));
        assert_eq!(
            s.issue(MAX_BATCH as u64 + 1).unwrap_err(),
            TicketError::BadCount(MAX_BATCH as u64 + 1)
        );
        assert_eq!(s.issue(MAX_BATCH as u64).unwrap().len(), MAX_BATCH);
    }
}
