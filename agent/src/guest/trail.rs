//! The audit trail (issue 18): every security-relevant decision and action the agent takes, as
//! a numbered record the host keeps.
//!
//! ```text
//!  vault_service ─ token/secrets delivered ─┐
//!  dispatcher ──── session, refused request ─┤
//!  broker ──────── credential answer/refusal ┤   EventSink::audit(kind, fields)
//!  signing ─────── signing decision ─────────┤
//!  runner ──────── lifecycle run, extension ─┼──▶ Trail: seq += 1, time ──▶ ring (last N)
//!  ports ───────── visibility, forward ──────┤                         └──▶ `audit` event
//!  server ──────── handshake refusal ────────┤                              (every control
//!  activity ────── idle ─────────────────────┘                               connection)
//!
//!  host reconnects: `trail {since: S}` ──▶ records with seq > S (a page at a time),
//!                                          `missed` = how many fell out of the ring
//! ```
//!
//! Records are pushed and sent under one lock, so every control connection sees them in
//! sequence order and a host that reads a page and then follows the events misses nothing:
//! it asks for what came after the last sequence number it printed.
//!
//! **Nothing secret goes into a record.** Callers pass names (secret names, repository names,
//! login names), numbers and reasons, never values; the test `no_secret_reaches_the_trail`
//! (in `agent/tests/audit_trail.rs`) drives known secret values through every path that
//! records and searches the whole trail for them.
//!
//! The ring holds the last [`DEFAULT_CAPACITY`] records (`audit_records` in the config); a host
//! away for longer learns how many it missed rather than getting a silent gap.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// Records kept by default.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;
/// Most records one `trail` answer carries (a page stays far below the frame limit).
pub(crate) const MAX_PAGE: usize = 500;

/// What a record is about: the `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// The repository token was delivered (expiry and scope, never the value).
    TokenDelivered,
    /// Secrets were delivered (names only).
    SecretsDelivered,
    /// A session event (create, resume, suspend) with the trust facts.
    Session,
    /// The git credential broker answered or refused a caller.
    Credential,
    /// The Docker credential helper's request was answered or refused (registry, caller uid,
    /// pid, executable, reason; guest::registry).
    Registry,
    /// A lifecycle command ran (or was refused): phase, profile, reason, exit.
    Lifecycle,
    /// An extension was allowed, refused or installed.
    Extension,
    /// A port's visibility changed.
    Visibility,
    /// A forwarded connection ended (principal, port, visibility, start, end, bytes), or was
    /// refused.
    Forward,
    /// A connection or request was refused (handshake, request, peer).
    Refusal,
    /// The codespace went idle.
    Idle,
    /// A commit signing request was allowed, refused (with the reason), signed, refused by
    /// the host or timed out (guest::signing).
    Signing,
}

/// One page of the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Page {
    /// Records with a sequence number above `since`, oldest first, at most the page size.
    pub(crate) records: Vec<Value>,
    /// Sequence number of the oldest record still kept (the next one when none is kept).
    pub(crate) first_seq: u64,
    /// Sequence number the next record will get.
    pub(crate) next_seq: u64,
    /// Records after `since` that fell out of the ring before this request.
    pub(crate) missed: u64,
    /// Whether more records follow this page (ask again with `since` = the last one's).
    pub(crate) more: bool,
}

#[derive(Debug)]
struct Ring {
    next: u64,
    records: VecDeque<(u64, Value)>,
    capacity: usize,
}

/// The agent's audit trail: the last records, in order.
#[derive(Debug)]
pub(crate) struct Trail {
    ring: Mutex<Ring>,
}

impl Trail {
    /// An empty trail that keeps the last `capacity` records (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                next: 1,
                records: VecDeque::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Appends a record of `kind` with `fields` (an object; anything else goes under `data`)
    /// and hands the finished record to `publish` while the trail is still locked, so records
    /// are published in sequence order. Returns the record.
    pub(crate) fn push(&self, kind: Kind, fields: Value, publish: impl FnOnce(&Value)) -> Value {
        let now = OffsetDateTime::now_utc();
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.next;
        ring.next += 1;
        let mut record = Map::new();
        record.insert("seq".into(), seq.into());
        record.insert("time".into(), crate::guest::activity::rfc3339(now).into());
        record.insert("kind".into(), json!(kind));
        match fields {
            Value::Object(m) => {
                for (k, v) in m {
                    record.entry(k).or_insert(v);
                }
            }
            Value::Null => {}
            other => {
                record.insert("data".into(), other);
            }
        }
        let record = Value::Object(record);
        if ring.records.len() == ring.capacity {
            ring.records.pop_front();
        }
        ring.records.push_back((seq, record.clone()));
        publish(&record);
        record
    }

    /// The records after `since`, at most `limit` (capped at [`MAX_PAGE`]).
    pub(crate) fn page(&self, since: u64, limit: usize) -> Page {
        let limit = limit.clamp(1, MAX_PAGE);
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let first_seq = ring.records.front().map_or(ring.next, |(s, _)| *s);
        // Sequence numbers are consecutive, so the first wanted record's index is arithmetic.
        let start = since.saturating_add(1).max(first_seq);
        let skip = usize::try_from(start - first_seq).unwrap_or(usize::MAX);
        let records: Vec<Value> = ring
            .records
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect();
        let last = records
            .last()
            .and_then(|r| r["seq"].as_u64())
            .unwrap_or(since);
        Page {
            more: last.saturating_add(1) < ring.next && !records.is_empty(),
            missed: first_seq.saturating_sub(since.saturating_add(1)),
            records,
            first_seq,
            next_seq: ring.next,
        }
    }

    /// How many records are kept now and the sequence number of the next one (for `status`).
    pub(crate) fn summary(&self) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "records": ring.records.len(),
            "capacity": ring.capacity,
            "next_seq": ring.next,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seqs(page: &Page) -> Vec<u64> {
        page.records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn records_are_numbered_timed_and_published_in_order() {
        let trail = Trail::new(10);
        let mut published = Vec::new();
        for i in 0..3 {
            trail.push(Kind::Idle, json!({"n": i}), |r| published.push(r.clone()));
        }
        let page = trail.page(0, 100);
        assert_eq!(seqs(&page), [1, 2, 3]);
        assert_eq!(page.records, published);
        assert_eq!(page.records[0]["kind"], "idle");
        assert_eq!(page.records[2]["n"], 2);
        assert!(page.records[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!((page.first_seq, page.next_seq, page.missed), (1, 4, 0));
        assert!(!page.more);
    }

    #[test]
    fn fields_cannot_overwrite_the_sequence_number_or_kind() {
        let trail = Trail::new(10);
        let r = trail.push(Kind::Session, json!({"seq": 99, "kind": "x"}), |_| {});
        assert_eq!(
            (r["seq"].as_u64(), r["kind"].as_str()),
            (Some(1), Some("session"))
        );
    }

    #[test]
    fn a_host_that_was_away_too_long_learns_how_many_it_missed() {
        let trail = Trail::new(5);
        for _ in 0..12 {
            trail.push(Kind::Forward, Value::Null, |_| {});
        }
        // Kept: 8..=12. A host that had seen 3 missed 4..=7.
        let page = trail.page(3, 100);
        assert_eq!(seqs(&page), [8, 9, 10, 11, 12]);
        assert_eq!((page.first_seq, page.missed), (8, 4));
        // One that had seen 9 missed nothing.
        let page = trail.page(9, 100);
        assert_eq!(seqs(&page), [10, 11, 12]);
        assert_eq!(page.missed, 0);
        // Up to date: nothing, nothing missed.
        let page = trail.page(12, 100);
        assert!(page.records.is_empty() && page.missed == 0 && !page.more);
        assert_eq!(page.next_seq, 13);
    }

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let trail = Trail::new(DEFAULT_CAPACITY);
        for _ in 0..1234 {
            trail.push(Kind::Refusal, Value::Null, |_| {});
        }
        let mut since = 0;
        let mut all = Vec::new();
        loop {
            let page = trail.page(since, MAX_PAGE * 10);
            assert!(page.records.len() <= MAX_PAGE);
            all.extend(seqs(&page));
            since = *all.last().unwrap();
            if !page.more {
                break;
            }
        }
        assert_eq!(all, (1..=1234).collect::<Vec<_>>());
    }
}
