//! What the host accepts from an agent after the handshake, and what it keeps of it.
//!
//! The guest is untrusted from the host's side: a compromised VM holds the shared key and can
//! send any frame the codec admits (up to the frame limit, 1 MiB by default). A supervisor
//! manages many VMs, so one of them must never make it panic, hang or grow without bound.
//!
//! ```text
//!  frame payload ─▶ Envelope (type, event, id, ok?, error?: nothing else is built)
//!     type "error"     ─▶ fatal: the agent's error frame, or a violation if malformed
//!     event "name"     ─▶ EventQueue: raw bytes, within EVENT_QUEUE_BYTES, else dropped
//!     id + ok | error  ─▶ a request waits for it? parse it in full : drop it
//!     anything else    ─▶ dropped
//!     not a JSON object ─▶ protocol violation, the connection closes
//! ```
//!
//! Why bytes and not values: a JSON value in memory can be sixteen times its text (`[0,0,…]`
//! is two bytes per element on the wire, a 32-byte `Value` in memory), so the classification
//! skips every member it does not need without allocating, and an event is parsed only when a
//! reader takes it. Only the answer to a request the host sent is built in full.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::wire::Event;

/// Bytes of event payloads kept for a client that does not read its events (4 MiB).
pub(crate) const EVENT_QUEUE_BYTES: usize = 4 << 20;
/// Events kept for a client that does not read them, whatever their size.
pub(crate) const EVENT_QUEUE_LEN: usize = 1024;

/// What a frame from the agent is, read without building any of its values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// `{"type": "error", ..}`: the agent ends the connection.
    Fatal,
    /// `{"event": "name", ..}`.
    Event,
    /// `{"id": N, "ok" | "error": ..}`: the answer to request `N`.
    Response(u64),
    /// Any other object (a response without a usable id, a member this version ignores).
    Other(Option<Cow<'a, str>>),
}

/// Classifies a payload; an error says why it is no message at all (the caller reports it as
/// a protocol violation by the agent).
pub(crate) fn classify(payload: &[u8]) -> Result<Inbound<'_>, String> {
    // serde reads a struct from an array too: only an object is a message.
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err("frame payload is JSON but not an object".into());
    }
    let env: Envelope<'_> = serde_json::from_slice(payload).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("frame payload is not valid JSON: {e}")
        }
        _ => format!("frame payload is not a message object: {e}"),
    })?;
    Ok(match (env.kind, env.event, env.id) {
        (Loose::Str(k), _, _) if k == "error" => Inbound::Fatal,
        (_, Loose::Str(_), _) => Inbound::Event,
        (_, _, Loose::Number(id)) if env.ok.0 || env.error.0 => Inbound::Response(id),
        (Loose::Str(k), _, _) => Inbound::Other(Some(k)),
        _ => Inbound::Other(None),
    })
}

/// The members that route a frame; serde skips the others without allocating.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Loose<'a>,
    #[serde(borrow, default)]
    event: Loose<'a>,
    #[serde(borrow, default)]
    id: Loose<'a>,
    #[serde(default)]
    ok: Present,
    #[serde(default)]
    error: Present,
}

/// A member's value, kept only when it is a string or an unsigned integer: any other value is
/// skipped (not allocated) and routes nowhere.
#[derive(Debug, Default, PartialEq, Eq)]
enum Loose<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Number(u64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // An escaped string cannot be borrowed; names are short.
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::Number(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Whether a member is there, whatever its value (skipped, not allocated).
#[derive(Debug, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// Events received and not read yet, as their payload bytes: at most [`EVENT_QUEUE_LEN`] of
/// them and [`EVENT_QUEUE_BYTES`] in all. An event beyond either bound is dropped (a host that
/// does not read its events loses the newest ones, never its answers) and counted.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: u64,
    closed: bool,
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps an event's payload if it fits; returns whether it was kept.
    pub(crate) fn push(&self, payload: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.frames.len() >= EVENT_QUEUE_LEN || s.bytes + payload.len() > EVENT_QUEUE_BYTES {
            s.dropped += 1;
            return false;
        }
        s.bytes += payload.len();
        s.frames.push_back(payload);
        drop(s);
        self.arrived.notify_one();
        true
    }

    /// No more events will come: readers get what is left, then `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// How many events were dropped because nobody read them in time.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The next event; `None` once the queue is closed and empty. An event that is no longer
    /// an event when parsed in full (it was one when classified) is skipped.
    pub(crate) async fn next(&self) -> Option<Event> {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut s = self.lock();
                if let Some(payload) = s.frames.pop_front() {
                    s.bytes -= payload.len();
                    drop(s);
                    if let Some(ev) = crate::wire::frame::parse_payload(&payload)
                        .ok()
                        .and_then(|o| Event::from_object(&o))
                    {
                        return Some(ev);
                    }
                    continue;
                }
                if s.closed {
                    return None;
                }
            }
            arrived.await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_routed_by_their_envelope() {
        let cases: [(&str, Inbound<'_>); 9] = [
            (r#"{"type":"error","error":{}}"#, Inbound::Fatal),
            (r#"{"event":"heartbeat","uptime_s":3}"#, Inbound::Event),
            (r#"{"id":7,"ok":null}"#, Inbound::Response(7)),
            (r#"{"id":7,"error":{"code":"busy"}}"#, Inbound::Response(7)),
            (r#"{"id":-1,"ok":1}"#, Inbound::Other(None)),
            (r#"{"id":7}"#, Inbound::Other(None)),
            (
                r#"{"event":5,"id":[1,2],"ok":{"a":[]}}"#,
                Inbound::Other(None),
            ),
            (
                r#"{"type":"forward_ok"}"#,
                Inbound::Other(Some("forward_ok".into())),
            ),
            (r#"{"ev\u0065nt":"x"}"#, Inbound::Event),
        ];
        for (json, want) in cases {
            assert_eq!(classify(json.as_bytes()).unwrap(), want, "{json}");
        }
        for bad in ["[1]", "42", "{", "{\"a\":}", "\u{feff}{}"] {
            assert!(classify(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_queue_keeps_what_fits_and_counts_the_rest() {
        let q = EventQueue::default();
        let big = format!(r#"{{"event":"x","pad":"{}"}}"#, "p".repeat(1 << 20));
        let kept = (0..10).filter(|_| q.push(big.clone().into_bytes())).count();
        assert_eq!(kept, 3);
        assert_eq!(q.dropped(), 7);
        q.close();
        let mut read = 0;
        while let Some(ev) = q.next().await {
            assert_eq!(ev.name, "x");
            read += 1;
        }
        assert_eq!(read, 3);
        // Room again once read.
        assert!(q.push(big.into_bytes()));
    }
}
