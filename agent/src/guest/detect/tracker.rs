//! The diff between two scans: which sockets opened, which closed, with owners resolved only for
//! the new ones. Pure apart from the resolver it is handed, so it is tested with a fake one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::owner::Owner;
use super::{DetectOptions, ListeningSocket, PortChange, RawListener};

/// Identity of a socket across scans.
type Key = (IpAddr, u16, u64);

fn key(r: &RawListener) -> Key {
    (r.addr, r.port, r.inode)
}

/// What is known about a socket seen in the previous scan.
#[derive(Debug, Clone)]
enum Known {
    /// Reported to the consumers.
    Reported(ListeningSocket),
    /// Owned by the ignored pid: remembered so it is not resolved again, never reported.
    Ignored,
}

/// The set of listeners as of the last scan.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    known: BTreeMap<Key, Known>,
    ignore_ports: BTreeSet<u16>,
    ignore_pid: Option<u32>,
}

impl Tracker {
    /// An empty tracker applying the options' ignore rules.
    pub(crate) fn new(opts: &DetectOptions) -> Self {
        Self {
            known: BTreeMap::new(),
            ignore_ports: opts.ignore_ports.clone(),
            ignore_pid: opts.ignore_pid,
        }
    }

    /// Takes a fresh scan; returns the changes since the previous one (closings first, then
    /// openings, each in address order). `resolve` is called once, with the new listeners only.
    pub(crate) fn update<F>(&mut self, scan: Vec<RawListener>, resolve: F) -> Vec<PortChange>
    where
        F: FnOnce(&[RawListener]) -> HashMap<u64, Owner>,
    {
        let now: BTreeMap<Key, RawListener> = scan
            .into_iter()
            .filter(|r| !self.ignore_ports.contains(&r.port))
            .map(|r| (key(&r), r))
            .collect();
        let mut changes = Vec::new();
        self.known.retain(|k, known| {
            let keep = now.contains_key(k);
            if let (false, Known::Reported(s)) = (keep, &*known) {
                changes.push(PortChange::Closed(s.clone()));
            }
            keep
        });
        let new: Vec<RawListener> = now
            .iter()
            .filter(|(k, _)| !self.known.contains_key(*k))
            .map(|(_, r)| *r)
            .collect();
        if new.is_empty() {
            return changes;
        }
        let owners = resolve(&new);
        for r in new {
            let owner = owners.get(&r.inode);
            let known = match owner {
                Some(o) if Some(o.pid) == self.ignore_pid => Known::Ignored,
                _ => {
                    let s = ListeningSocket::new(r, owner);
                    changes.push(PortChange::Opened(s.clone()));
                    Known::Reported(s)
                }
            };
            self.known.insert(key(&r), known);
        }
        changes
    }

    /// The reported listeners, in address order.
    pub(crate) fn current(&self) -> Vec<ListeningSocket> {
        self.known
            .values()
            .filter_map(|k| match k {
                Known::Reported(s) => Some(s.clone()),
                Known::Ignored => None,
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(addr: &str, port: u16, inode: u64) -> RawListener {
        RawListener {
            addr: addr.parse().unwrap(),
            port,
            uid: 1000,
            inode,
        }
    }

    /// A resolver that knows fixed inodes and records what it was asked.
    fn owners<'a>(
        table: &[(u64, u32)],
        asked: &'a mut Vec<u64>,
    ) -> impl FnOnce(&[RawListener]) -> HashMap<u64, Owner> + 'a {
        let table: HashMap<u64, u32> = table.iter().copied().collect();
        move |want| {
            asked.extend(want.iter().map(|r| r.inode));
            want.iter()
                .filter_map(|r| {
                    let pid = *table.get(&r.inode)?;
                    Some((
                        r.inode,
                        Owner {
                            pid,
                            process: format!("p{pid}"),
                        },
                    ))
                })
                .collect()
        }
    }

    fn opts() -> DetectOptions {
        DetectOptions {
            ignore_ports: BTreeSet::from([22]),
            ignore_pid: Some(1),
            ..DetectOptions::default()
        }
    }

    #[test]
    fn opened_closed_and_resolved_once() {
        let mut t = Tracker::new(&opts());
        let mut asked = vec![];
        let c = t.update(
            vec![raw("0.0.0.0", 8080, 10), raw("::1", 3000, 11)],
            owners(&[(10, 50)], &mut asked),
        );
        assert_eq!(asked, vec![10, 11]);
        assert_eq!(c.len(), 2);
        assert!(
            matches!(&c[0], PortChange::Opened(s) if s.port == 8080 && s.pid == Some(50)
            && s.process.as_deref() == Some("p50"))
        );
        assert!(matches!(&c[1], PortChange::Opened(s) if s.port == 3000 && s.pid.is_none()));

        // Same set again: nothing changes, nothing is resolved.
        let mut asked = vec![];
        let c = t.update(
            vec![raw("::1", 3000, 11), raw("0.0.0.0", 8080, 10)],
            owners(&[], &mut asked),
        );
        assert!(c.is_empty() && asked.is_empty());

        // 3000 closes; 8080 is reopened with a new inode between polls.
        let mut asked = vec![];
        let c = t.update(
            vec![raw("0.0.0.0", 8080, 12)],
            owners(&[(12, 51)], &mut asked),
        );
        assert_eq!(asked, vec![12]);
        let kinds: Vec<(&str, u16, u64)> = c
            .iter()
            .map(|c| (c.event_name(), c.socket().port, c.socket().inode))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("port_closed", 8080, 10),
                ("port_closed", 3000, 11),
                ("port_opened", 8080, 12)
            ]
        );
        // A closed socket carries what was known when it opened.
        assert_eq!(c[0].socket().pid, Some(50));
        assert_eq!(t.current().len(), 1);
    }

    #[test]
    fn ignored_ports_and_own_sockets_are_never_reported() {
        let mut t = Tracker::new(&opts());
        let mut asked = vec![];
        let c = t.update(
            vec![raw("0.0.0.0", 22, 1), raw("127.0.0.1", 9000, 2)],
            owners(&[(2, 1)], &mut asked),
        );
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(asked, vec![2], "ignored ports are not even resolved");
        assert!(t.current().is_empty());
        // The agent's own socket is remembered: not resolved again, and closing it is silent.
        let mut asked = vec![];
        assert!(t
            .update(vec![raw("127.0.0.1", 9000, 2)], owners(&[], &mut asked))
            .is_empty());
        assert!(asked.is_empty());
        let mut asked = vec![];
        assert!(t.update(vec![], owners(&[], &mut asked)).is_empty());
    }

    #[test]
    fn same_port_on_two_addresses_is_two_sockets() {
        let mut t = Tracker::new(&opts());
        let mut asked = vec![];
        let c = t.update(
            vec![raw("0.0.0.0", 80, 5), raw("::", 80, 6)],
            owners(&[], &mut asked),
        );
        assert_eq!(c.len(), 2);
        let mut asked = vec![];
        let c = t.update(vec![raw("::", 80, 6)], owners(&[], &mut asked));
        assert!(matches!(&c[..], [PortChange::Closed(s)] if s.addr.is_ipv4()));
    }
}
