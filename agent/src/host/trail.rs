//! The agent's audit trail from the host's side: catch up on what was recorded after the last
//! record the host has, in pages, then follow the `audit` events, each record once.
//!
//! ```no_run
//! # async fn demo(client: &codespace_agent::host::Client) -> Result<(), codespace_agent::host::ClientError> {
//! use codespace_agent::host::trail::TrailReader;
//! let mut reader = TrailReader::new(0); // or the last `seq` the host stored
//! let caught_up = reader
//!     .catch_up(client, std::time::Duration::from_secs(5), |record| {
//!         println!("{record}");
//!         true
//!     })
//!     .await?;
//! if caught_up.missed > 0 { /* the agent's ring turned over: a gap */ }
//! while let Some(event) = client.next_event().await {
//!     if let Some(record) = reader.take_event(&event) {
//!         println!("{record}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The agent is not trusted to be well behaved: a page must bring records with increasing
//! sequence numbers above the last one seen, or it is an [`ClientError::UnexpectedAnswer`];
//! an agent cannot keep a reader paging forever by answering `more` with nothing new.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Client, ClientError};
use crate::wire::Event;

/// What [`TrailReader::catch_up`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaughtUp {
    /// Records handed over.
    pub records: u64,
    /// Records after the starting point the agent no longer held (its ring turned over).
    pub missed: u64,
    /// Whether the callback asked to stop before the end.
    pub stopped: bool,
}

/// Reads the trail after a sequence number, each record once, in order.
#[derive(Debug, Clone)]
pub struct TrailReader {
    last: u64,
}

fn unexpected(reason: String) -> ClientError {
    ClientError::UnexpectedAnswer {
        request: "trail",
        reason,
    }
}

impl TrailReader {
    /// A reader that starts after record `since` (0: from the oldest the agent holds).
    pub fn new(since: u64) -> Self {
        Self { last: since }
    }

    /// The sequence number of the last record handed over (or the starting point).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Asks for pages (`timeout` each) until the agent has nothing newer, handing each new
    /// record to `each`; `each` returning false stops early.
    pub async fn catch_up(
        &mut self,
        client: &Client,
        timeout: Duration,
        mut each: impl FnMut(&Value) -> bool,
    ) -> Result<CaughtUp, ClientError> {
        let mut done = CaughtUp::default();
        loop {
            let mut fields = Map::new();
            fields.insert("since".into(), json!(self.last));
            let page = client.request("trail", fields, timeout).await?;
            done.missed += page["missed"].as_u64().unwrap_or(0);
            let Some(records) = page["records"].as_array() else {
                return Err(unexpected("a page without `records`".into()));
            };
            for record in records {
                let seq = record["seq"]
                    .as_u64()
                    .ok_or_else(|| unexpected("a record without a numeric `seq`".into()))?;
                if seq <= self.last {
                    return Err(unexpected(format!(
                        "record {seq} is not after {}",
                        self.last
                    )));
                }
                self.last = seq;
                done.records += 1;
                if !each(record) {
                    done.stopped = true;
                    return Ok(done);
                }
            }
            if records.is_empty() || page["more"] != json!(true) {
                return Ok(done);
            }
        }
    }

    /// The record an `audit` event carries, if it is newer than the last one handed over
    /// (events and pages overlap while catching up); moves the reader past it.
    pub fn take_event(&mut self, event: &Event) -> Option<Value> {
        if event.name != "audit" {
            return None;
        }
        let seq = event.fields.get("seq")?.as_u64()?;
        if seq <= self.last {
            return None;
        }
        self.last = seq;
        Some(Value::Object(event.fields.clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_are_taken_once_and_in_order() {
        let mut r = TrailReader::new(5);
        let ev = |seq: u64| Event::new("audit", json!({"seq": seq, "kind": "idle"}));
        assert_eq!(r.take_event(&ev(4)), None);
        assert_eq!(r.take_event(&ev(5)), None);
        assert_eq!(r.take_event(&ev(6)).unwrap()["seq"], 6);
        assert_eq!(r.take_event(&ev(6)), None);
        assert_eq!(
            r.take_event(&Event::new("heartbeat", json!({"seq": 9}))),
            None
        );
        assert_eq!(
            r.take_event(&Event::new("audit", json!({"seq": "9"}))),
            None
        );
        assert_eq!(r.last(), 6);
    }
}
