//! The host's supply of forward tickets, and opening forward connections with them.
//!
//! ```text
//! TicketPool ◀── refill: forward_tickets {count} on the control connection ── agent
//!     │ take
//!     ▼
//! open_ticketed ─ ticket? ─ yes ─▶ open_with(.., Some(ticket), early)   one round trip
//!                      │                  └ refused ticket-unknown (agent restarted) ─┐
//!                      └ none (old agent, no key) ────────────────────────────────────┴▶ full handshake
//! ```
//!
//! A ticket is used once, whatever the outcome: it is taken out of the pool before the
//! connection is dialled. Tickets are only asked for on an authenticated control connection
//! (an agent without a shared key could not check their proofs anyway).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use super::client::{Client, ClientError, ConnectOptions};
use super::forward::{open_with, Accepted, ForwardError, ForwardStream};
use crate::wire::grant::SignedGrant;
use crate::wire::ticket::ForwardTicket;

/// Tickets asked for per refill.
pub const DEFAULT_BATCH: u32 = 64;
const REFILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Tickets fetched from one agent, not used yet.
#[derive(Debug)]
pub struct TicketPool {
    tickets: Mutex<VecDeque<ForwardTicket>>,
    batch: u32,
    /// One refill at a time: many connections finding the pool empty at once share a batch
    /// instead of each asking for one (the agent would forget the oldest beyond its bound).
    refilling: tokio::sync::Mutex<()>,
}

impl Default for TicketPool {
    fn default() -> Self {
        Self::new(DEFAULT_BATCH)
    }
}

impl TicketPool {
    /// An empty pool that refills `batch` tickets at a time (1 to 256, the agent's bound).
    pub fn new(batch: u32) -> Self {
        Self {
            tickets: Mutex::new(VecDeque::new()),
            batch: batch.clamp(1, 256),
            refilling: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<ForwardTicket>> {
        match self.tickets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Takes one ticket, if any is left.
    pub fn take(&self) -> Option<ForwardTicket> {
        self.lock().pop_front()
    }

    /// How many tickets are left.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no ticket is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every ticket (the agent restarted: they are all unknown to it now).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Takes a ticket, refilling the pool over `control` first when it is empty.
    pub async fn take_or_refill(&self, control: &Client) -> Result<ForwardTicket, ClientError> {
        if let Some(t) = self.take() {
            return Ok(t);
        }
        let _one_at_a_time = self.refilling.lock().await;
        if let Some(t) = self.take() {
            return Ok(t);
        }
        self.refill(control).await?;
        self.take().ok_or(ClientError::Disconnected)
    }

    /// Asks the agent for a batch over `control`; returns how many arrived. An agent that
    /// does not issue tickets answers `unsupported` (an error here).
    pub async fn refill(&self, control: &Client) -> Result<usize, ClientError> {
        let mut fields = Map::new();
        fields.insert("count".into(), self.batch.into());
        let answer = control
            .request("forward_tickets", fields, REFILL_TIMEOUT)
            .await?;
        let fresh: Vec<ForwardTicket> = answer
            .get("tickets")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|t| ForwardTicket::from_base64(t).ok())
                    .collect()
            })
            .unwrap_or_default();
        let n = fresh.len();
        self.lock().extend(fresh);
        Ok(n)
    }
}

/// Opens a forward connection with a ticket from `pool` (refilled over `control` when empty),
/// sending `early_data` with the first flight. Falls back to the full handshake when no
/// ticket can be had (the agent does not issue them, the control connection is not
/// authenticated) or when the agent no longer knows the ticket (it restarted; the pool is
/// then emptied).
pub async fn open_ticketed(
    opts: &ConnectOptions,
    control: &Client,
    pool: &TicketPool,
    port: u16,
    grant: &SignedGrant,
    early_data: &[u8],
) -> Result<(ForwardStream, Accepted), ForwardError> {
    let ticket = if opts.key.is_some() && control.info().authenticated {
        match pool.take_or_refill(control).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::debug!(error = %e, "no forward tickets; full handshake");
                None
            }
        }
    } else {
        None
    };
    match open_with(opts, port, grant, ticket.as_ref(), early_data).await {
        Err(e) if ticket.is_some() && e.reason() == Some("ticket-unknown") => {
            pool.clear();
            open_with(opts, port, grant, None, early_data).await
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_taken_oldest_first_and_once() {
        let pool = TicketPool::new(1000);
        assert_eq!(pool.batch, 256, "the agent's bound");
        pool.lock().extend([
            ForwardTicket::from_bytes([1; 32]),
            ForwardTicket::from_bytes([2; 32]),
        ]);
        assert_eq!(pool.take().unwrap().as_bytes(), &[1; 32]);
        assert_eq!(pool.len(), 1);
        pool.clear();
        assert!(pool.is_empty());
        assert!(pool.take().is_none());
    }
}
