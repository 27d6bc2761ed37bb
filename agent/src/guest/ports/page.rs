//! `ports_list` pages: the answer never outgrows a frame, however many ports the VM listens on.
//!
//! A process in the VM may open as many listening sockets as its descriptor limit allows (15,000
//! sockets made a 3.6 MB answer once, far over the 1 MiB frame). So the list is paged by port
//! number, which orders ports stably:
//!
//! ```text
//!  host                                          agent
//!  ports_list {}                      ──▶  ports 1.. (at most `limit`, default MAX_PAGE_PORTS)
//!                                     ◀──  {ports: [..], more: true, next_after: 4711, ..}
//!  ports_list {after: 4711}           ──▶  ports 4712..
//!                                     ◀──  {ports: [..], more: false, next_after: null, ..}
//! ```
//!
//! Request fields, both optional: `after` (a port number, 0-65535: list the ports above it; the
//! previous page's `next_after`) and `limit` (ports per page, at least 1; more than
//! [`MAX_PAGE_PORTS`] is served as [`MAX_PAGE_PORTS`]). An old host that sends neither gets the
//! first page; it was the whole list as long as fewer than [`MAX_PAGE_PORTS`] ports existed.
//!
//! Each port lists at most [`MAX_LISTENERS_PER_PORT`] of its listening sockets (one port may
//! have many, with `SO_REUSEPORT`) and counts the rest in `listeners_omitted`.
//!
//! Invariants:
//! - a page's worst case (every port with every field at its longest) fits in
//!   [`PAGE_BUDGET`], half the protocol's default frame; the bounds below are computed from
//!   [`DEFAULT_MAX_FRAME`] and checked by serializing that worst case in the tests;
//! - pages are not a snapshot: a port opened below the cursor while a host walks the pages is
//!   not in this walk (the `port_opened` event tells of it), one that closed is simply absent.

use serde_json::{json, Map, Value};

use crate::guest::service::ServiceError;
use crate::wire::DEFAULT_MAX_FRAME;

/// The most listeners listed for one port; the rest are counted in `listeners_omitted`.
pub(crate) const MAX_LISTENERS_PER_PORT: usize = 8;
/// The most bytes one listener's details take serialized. A detected socket's details
/// (`ListeningSocket`: an IPv6 address, ids, a command name of at most 15 bytes, its network)
/// take at most ~280; details over this are replaced when the listener is recorded.
pub(crate) const MAX_LISTENER_BYTES: usize = 320;
/// The most bytes a port's entry takes besides its listeners (every number at its maximum).
pub(crate) const MAX_PORT_FIELDS_BYTES: usize = 256;
/// The most bytes a page takes besides its ports, the response envelope (`id`, `ok`) included.
pub(crate) const MAX_PAGE_FIELDS_BYTES: usize = 512;
/// The most bytes a page may take: half a frame, so that a field added later cannot quietly
/// push a worst-case page over the limit.
pub(crate) const PAGE_BUDGET: usize = DEFAULT_MAX_FRAME / 2;
/// The most bytes a port's entry takes, listeners and separating comma included.
pub(crate) const MAX_PORT_ENTRY_BYTES: usize =
    MAX_PORT_FIELDS_BYTES + MAX_LISTENERS_PER_PORT * (MAX_LISTENER_BYTES + 1) + 1;
/// The most ports on one page, and the default: as many worst-case entries as fit in
/// [`PAGE_BUDGET`] (185 with a 1 MiB frame).
pub const MAX_PAGE_PORTS: usize = (PAGE_BUDGET - MAX_PAGE_FIELDS_BYTES) / MAX_PORT_ENTRY_BYTES;

// A page too small would make a host walk thousands of them.
const _: () = assert!(MAX_PAGE_PORTS >= 100);

/// Which page a `ports_list` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// List the ports above this one (`None`: from the first).
    pub(crate) after: Option<u16>,
    /// At most this many ports, 1 to [`MAX_PAGE_PORTS`].
    pub(crate) limit: usize,
}

impl Default for PageRequest {
    /// The first page, as long as allowed.
    fn default() -> Self {
        Self {
            after: None,
            limit: MAX_PAGE_PORTS,
        }
    }
}

fn bad(message: &str) -> ServiceError {
    ServiceError::InvalidArgument(format!("ports_list: {message}"))
}

impl PageRequest {
    /// Reads the request's fields; an error names the field at fault.
    pub(crate) fn from_fields(fields: &Map<String, Value>) -> Result<Self, ServiceError> {
        if let Some(k) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "after" | "limit"))
        {
            return Err(bad(&format!("unknown field `{k}`")));
        }
        let after = match fields.get("after") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| bad("`after` must be a port number from 0 to 65535"))?,
            ),
        };
        let limit = match fields.get("limit") {
            None | Some(Value::Null) => MAX_PAGE_PORTS,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => {
                    usize::try_from(n).map_or(MAX_PAGE_PORTS, |n| n.min(MAX_PAGE_PORTS))
                }
                _ => return Err(bad("`limit` must be a positive integer")),
            },
        };
        Ok(Self { after, limit })
    }
}

/// One port's facts, as a page lists them.
#[derive(Debug)]
pub(crate) struct PortFacts<'a, V> {
    /// The port.
    pub(crate) port: u16,
    /// Its visibility as set.
    pub(crate) visibility: V,
    /// What the organization policy makes of it.
    pub(crate) effective_visibility: V,
    /// Its epoch.
    pub(crate) epoch: u64,
    /// Whether only the creator may be forwarded to it.
    pub(crate) owner_only: bool,
    /// Its live forwarded connections.
    pub(crate) connections: usize,
    /// Its listeners' details (at most [`MAX_LISTENER_BYTES`] each), all of them.
    pub(crate) listeners: &'a [&'a Value],
}

/// A port's entry: its facts, its first [`MAX_LISTENERS_PER_PORT`] listeners and how many
/// more there are.
pub(crate) fn port_entry<V: serde::Serialize>(f: &PortFacts<'_, V>) -> Value {
    let shown = &f.listeners[..f.listeners.len().min(MAX_LISTENERS_PER_PORT)];
    json!({
        "port": f.port,
        "visibility": f.visibility,
        "effective_visibility": f.effective_visibility,
        "epoch": f.epoch,
        "owner_only": f.owner_only,
        "connections": f.connections,
        "listeners": shown,
        "listeners_omitted": f.listeners.len() - shown.len(),
    })
}

/// What every page says about the whole service, besides its ports.
#[derive(Debug)]
pub(crate) struct ServiceFacts<'a> {
    /// The visibilities the organization policy allows.
    pub(crate) allowed_visibilities: Vec<&'a str>,
    /// Whether the host delivered a grant key.
    pub(crate) grant_key: bool,
    /// Live forwarded connections, all ports together.
    pub(crate) connections: usize,
    /// Forward tickets outstanding.
    pub(crate) forward_tickets: usize,
}

/// A page: `ports` (entries from [`port_entry`]), whether `more` follow and the cursor to ask
/// for them (`next_after`: the last port listed, `null` when none follow), and the service's
/// facts.
pub(crate) fn page_answer(
    ports: Vec<Value>,
    next_after: Option<u16>,
    facts: &ServiceFacts<'_>,
) -> Value {
    json!({
        "ports": ports,
        "more": next_after.is_some(),
        "next_after": next_after,
        "allowed_visibilities": facts.allowed_visibilities,
        "grant_key": facts.grant_key,
        "connections": facts.connections,
        "forward_tickets": facts.forward_tickets,
    })
}

/// Whether `details` may be recorded as a listener's as they are (see [`MAX_LISTENER_BYTES`]).
pub(crate) fn listener_fits(details: &Value) -> bool {
    serde_json::to_vec(details).is_ok_and(|b| b.len() <= MAX_LISTENER_BYTES)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::guest::detect::{BindScope, ListeningSocket};
    use crate::wire::{FrameCodec, Response};

    /// A detected socket with every field at its longest: a full IPv6 address, the largest
    /// ids, and a 15-byte command name (the kernel's limit) of control characters, each
    /// escaped to six bytes in JSON.
    fn worst_listener() -> Value {
        serde_json::to_value(ListeningSocket {
            port: u16::MAX,
            addr: IpAddr::V6(Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            scope: BindScope::Loopback,
            uid: u32::MAX,
            inode: u64::MAX,
            pid: Some(u32::MAX),
            process: Some("\u{1}".repeat(15)),
            network: crate::guest::detect::Network::Restricted,
        })
        .unwrap()
    }

    fn len(v: &Value) -> usize {
        serde_json::to_vec(v).unwrap().len()
    }

    fn worst_entry(listeners: &[&Value]) -> Value {
        port_entry(&PortFacts {
            port: u16::MAX,
            visibility: "private",
            effective_visibility: "private",
            epoch: u64::MAX,
            owner_only: false,
            connections: usize::MAX,
            listeners,
        })
    }

    /// The page answer around `ports`, every other field at its longest, in its response
    /// frame with the largest id.
    fn worst_frame(ports: Vec<Value>) -> Vec<u8> {
        let facts = ServiceFacts {
            allowed_visibilities: vec!["private", "org", "public"],
            grant_key: false,
            connections: usize::MAX,
            forward_tickets: usize::MAX,
        };
        let page = page_answer(ports, Some(u16::MAX), &facts);
        let response = Response {
            id: Some(u64::MAX),
            result: Ok(page),
        };
        FrameCodec::default().encode(&response.to_object()).unwrap()
    }

    #[test]
    fn each_part_of_a_page_stays_within_its_bound() {
        let l = worst_listener();
        assert!(len(&l) <= MAX_LISTENER_BYTES, "{} bytes: {l}", len(&l));
        assert!(listener_fits(&l));
        assert!(!listener_fits(
            &json!({"process": "x".repeat(MAX_LISTENER_BYTES)})
        ));
        let bare = worst_entry(&[]);
        assert!(len(&bare) <= MAX_PORT_FIELDS_BYTES, "{} bytes", len(&bare));
        let empty_page = worst_frame(Vec::new());
        assert!(
            empty_page.len() <= MAX_PAGE_FIELDS_BYTES,
            "{}",
            empty_page.len()
        );
    }

    #[test]
    fn a_worst_case_page_fits_in_half_a_frame() {
        let l = worst_listener();
        let many: Vec<&Value> = std::iter::repeat_n(&l, 1000).collect();
        let entry = worst_entry(&many);
        assert_eq!(
            entry["listeners"].as_array().unwrap().len(),
            MAX_LISTENERS_PER_PORT
        );
        assert_eq!(entry["listeners_omitted"], 1000 - MAX_LISTENERS_PER_PORT);
        assert!(len(&entry) < MAX_PORT_ENTRY_BYTES, "{} bytes", len(&entry));
        let frame = worst_frame(vec![entry; MAX_PAGE_PORTS]);
        // 493,805 bytes with a 1 MiB frame.
        assert!(
            frame.len() <= PAGE_BUDGET,
            "{MAX_PAGE_PORTS} ports: {} bytes",
            frame.len()
        );
    }

    #[test]
    fn requests_name_the_field_at_fault() {
        let req = |v: Value| PageRequest::from_fields(v.as_object().unwrap());
        assert_eq!(req(json!({})).unwrap(), PageRequest::default());
        assert_eq!(
            req(json!({"after": 3000, "limit": 5})).unwrap(),
            PageRequest {
                after: Some(3000),
                limit: 5
            }
        );
        assert_eq!(
            req(json!({"after": null, "limit": 1_000_000_000_000u64})).unwrap(),
            PageRequest::default(),
            "a larger limit is served as the largest"
        );
        for (bad, field) in [
            (json!({"after": "3000"}), "`after`"),
            (json!({"after": -1}), "`after`"),
            (json!({"after": 65536}), "`after`"),
            (json!({"after": 1.5}), "`after`"),
            (json!({"limit": 0}), "`limit`"),
            (json!({"limit": "10"}), "`limit`"),
            (json!({"limit": -3}), "`limit`"),
            (json!({"limit": [1]}), "`limit`"),
            (json!({"cursor": 1}), "`cursor`"),
        ] {
            let e = req(bad.clone()).unwrap_err();
            assert!(
                matches!(&e, ServiceError::InvalidArgument(m) if m.starts_with("ports_list: ") && m.contains(field)),
                "{bad}: {e}"
            );
        }
    }
}
