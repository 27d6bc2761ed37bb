//! The port visibility registry: each forwarded port's visibility and epoch.
//!
//! ```text
//!   add ──► private (new epoch)        set_visibility ──► checked against the policy
//!   remove ──► forgotten                 restart ──► public → private, disallowed → private,
//!   policy ──► pending until restart                 pending policy applied, every epoch bumped
//! ```
//!
//! Rules and sources:
//! - New ports are private (DESIGN.md §1 "All ports are private by default").
//! - A removed port forgets its visibility, so a re-added public port comes back private; a
//!   restart makes every public port private (DESIGN.md §1, workspace-agents.md §2.1).
//! - A new organization policy reaches a running codespace at its next start (§2.1: "to
//!   existing codespaces the next time they are started"); at that restart every port whose
//!   visibility the policy no longer allows becomes private (issue 3).
//! - `set_visibility` needs a known port (`unknown-port`) and a visibility the current policy
//!   allows (`visibility-not-allowed`); ports outside 1–65535 are `invalid-port` (issue 3).
//!   Removing an unknown port is also `unknown-port` (chosen so that nothing is ignored
//!   silently).
//! - Epochs (DESIGN.md §2): a single counter that only grows; a port's epoch is the counter's
//!   value at its last change (add, visibility change, restart). A forward grant carries the
//!   epoch it was made at, so any change invalidates outstanding grants, and a re-added port
//!   never reuses an old epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::ReasonCode;
use crate::ports::{AllowedVisibilities, Visibility};

/// Why a registry operation was refused (stable kebab-case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PortEventRejection {
    /// Port outside 1–65535.
    #[error("invalid-port")]
    InvalidPort,
    /// The port is not in the registry.
    #[error("unknown-port")]
    UnknownPort,
    /// The current organization policy does not allow that visibility.
    #[error("visibility-not-allowed")]
    VisibilityNotAllowed,
}

impl ReasonCode for PortEventRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidPort => "invalid-port",
            Self::UnknownPort => "unknown-port",
            Self::VisibilityNotAllowed => "visibility-not-allowed",
        }
    }
}

/// A valid TCP port number (1–65535).
pub fn port_number(raw: i64) -> Result<u16, PortEventRejection> {
    match u16::try_from(raw) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PortEventRejection::InvalidPort),
    }
}

/// One port's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortState {
    /// Its visibility as set (the effective one is clamped by [`crate::ports`]).
    pub visibility: Visibility,
    /// The registry epoch of its last change.
    pub epoch: u64,
}

/// The ports of one codespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRegistry {
    ports: BTreeMap<u16, PortState>,
    epoch: u64,
    allowed: AllowedVisibilities,
    pending: Option<AllowedVisibilities>,
}

impl PortRegistry {
    /// An empty registry under `allowed`.
    pub fn new(allowed: AllowedVisibilities) -> Self {
        Self {
            ports: BTreeMap::new(),
            epoch: 0,
            allowed,
            pending: None,
        }
    }

    /// The current epoch (grows on every change).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The policy in force.
    pub fn allowed(&self) -> AllowedVisibilities {
        self.allowed
    }

    /// One port's state.
    pub fn get(&self, port: u16) -> Option<PortState> {
        self.ports.get(&port).copied()
    }

    /// Every known port and its visibility, by port number.
    pub fn visibilities(&self) -> BTreeMap<u16, Visibility> {
        self.ports
            .iter()
            .map(|(port, state)| (*port, state.visibility))
            .collect()
    }

    fn bump(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// A port was detected; a new port is private, a known one is left as it is.
    pub fn add(&mut self, port: u16) -> Result<(), PortEventRejection> {
        if port == 0 {
            return Err(PortEventRejection::InvalidPort);
        }
        if !self.ports.contains_key(&port) {
            let epoch = self.bump();
            self.ports.insert(
                port,
                PortState {
                    visibility: Visibility::Private,
                    epoch,
                },
            );
        }
        Ok(())
    }

    /// A port went away; its visibility is forgotten.
    pub fn remove(&mut self, port: u16) -> Result<(), PortEventRejection> {
        if port == 0 {
            return Err(PortEventRejection::InvalidPort);
        }
        if self.ports.remove(&port).is_none() {
            return Err(PortEventRejection::UnknownPort);
        }
        self.bump();
        Ok(())
    }

    /// The creator changed a port's visibility.
    pub fn set_visibility(
        &mut self,
        port: u16,
        visibility: Visibility,
    ) -> Result<(), PortEventRejection> {
        if port == 0 {
            return Err(PortEventRejection::InvalidPort);
        }
        let current = self
            .ports
            .get(&port)
            .ok_or(PortEventRejection::UnknownPort)?
            .visibility;
        if !self.allowed.allows(visibility) {
            return Err(PortEventRejection::VisibilityNotAllowed);
        }
        if current != visibility {
            let epoch = self.bump();
            self.ports.insert(port, PortState { visibility, epoch });
        }
        Ok(())
    }

    /// A new organization policy; it takes effect at the next [`PortRegistry::restart`].
    pub fn set_policy(&mut self, allowed: AllowedVisibilities) {
        self.pending = Some(allowed);
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &PortEvent) -> Result<(), PortEventRejection> {
        match event {
            PortEvent::Add(raw) => port_number(*raw).and_then(|p| self.add(p)),
            PortEvent::Remove(raw) => port_number(*raw).and_then(|p| self.remove(p)),
            PortEvent::SetVisibility(raw, vis) => {
                port_number(*raw).and_then(|p| self.set_visibility(p, *vis))
            }
            PortEvent::Restart => {
                self.restart();
                Ok(())
            }
            PortEvent::Policy(next) => {
                self.set_policy(*next);
                Ok(())
            }
        }
    }

    /// The codespace restarted.
    pub fn restart(&mut self) {
        if let Some(allowed) = self.pending.take() {
            self.allowed = allowed;
        }
        let epoch = self.bump();
        let allowed = self.allowed;
        for state in self.ports.values_mut() {
            if state.visibility == Visibility::Public || !allowed.allows(state.visibility) {
                state.visibility = Visibility::Private;
            }
            state.epoch = epoch;
        }
    }
}

/// One event of a replay (the `policy port-replay` input).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortEvent {
    /// A port was detected (raw number, checked for 1–65535).
    Add(i64),
    /// A port went away.
    Remove(i64),
    /// The creator set a visibility.
    SetVisibility(i64, Visibility),
    /// The codespace restarted.
    Restart,
    /// A new organization policy (effective at the next restart).
    Policy(AllowedVisibilities),
}

/// Applies `events` in order to a fresh registry; returns it and the refused events (index and
/// reason).
pub fn replay(
    allowed: AllowedVisibilities,
    events: &[PortEvent],
) -> (PortRegistry, Vec<(usize, PortEventRejection)>) {
    let mut registry = PortRegistry::new(allowed);
    let mut rejected = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let Err(reason) = registry.apply(event) {
            rejected.push((index, reason));
        }
    }
    (registry, rejected)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use PortEvent::*;
    use Visibility::*;

    #[test]
    fn table_of_replays() {
        let only_org = AllowedVisibilities::from_list(&[Org]);
        type Case = (
            Vec<PortEvent>,
            Vec<(u16, Visibility)>,
            Vec<(usize, PortEventRejection)>,
        );
        let table: Vec<Case> = vec![
            (vec![Add(3000)], vec![(3000, Private)], vec![]),
            (
                vec![Add(3000), SetVisibility(3000, Public)],
                vec![(3000, Public)],
                vec![],
            ),
            (
                vec![Add(3000), SetVisibility(3000, Public), Restart],
                vec![(3000, Private)],
                vec![],
            ),
            (
                vec![Add(3000), SetVisibility(3000, Org), Restart],
                vec![(3000, Org)],
                vec![],
            ),
            (
                vec![
                    Add(3000),
                    SetVisibility(3000, Public),
                    Remove(3000),
                    Add(3000),
                ],
                vec![(3000, Private)],
                vec![],
            ),
            (
                vec![SetVisibility(1, Org), Remove(2)],
                vec![],
                vec![
                    (0, PortEventRejection::UnknownPort),
                    (1, PortEventRejection::UnknownPort),
                ],
            ),
            (
                vec![
                    Add(0),
                    Add(65536),
                    Add(-1),
                    Add(65535),
                    SetVisibility(0, Org),
                ],
                vec![(65535, Private)],
                vec![
                    (0, PortEventRejection::InvalidPort),
                    (1, PortEventRejection::InvalidPort),
                    (2, PortEventRejection::InvalidPort),
                    (4, PortEventRejection::InvalidPort),
                ],
            ),
            (
                vec![
                    Add(8080),
                    SetVisibility(8080, Org),
                    Policy(AllowedVisibilities::PRIVATE_ONLY),
                    SetVisibility(8080, Public),
                ],
                vec![(8080, Public)],
                vec![],
            ),
            (
                vec![
                    Add(8080),
                    SetVisibility(8080, Org),
                    Policy(AllowedVisibilities::PRIVATE_ONLY),
                    Restart,
                    SetVisibility(8080, Org),
                ],
                vec![(8080, Private)],
                vec![(4, PortEventRejection::VisibilityNotAllowed)],
            ),
            (
                vec![
                    Policy(only_org),
                    Restart,
                    Add(1),
                    SetVisibility(1, Public),
                    SetVisibility(1, Org),
                    SetVisibility(1, Private),
                ],
                vec![(1, Private)],
                vec![(3, PortEventRejection::VisibilityNotAllowed)],
            ),
        ];
        for (events, want_ports, want_rejected) in table {
            let (registry, rejected) = replay(AllowedVisibilities::ALL, &events);
            let ports: Vec<(u16, Visibility)> = registry.visibilities().into_iter().collect();
            assert_eq!(ports, want_ports, "{events:?}");
            assert_eq!(rejected, want_rejected, "{events:?}");
        }
    }

    #[test]
    fn epochs_grow_on_every_change_and_never_repeat() {
        let mut r = PortRegistry::new(AllowedVisibilities::ALL);
        r.add(3000).unwrap();
        let first = r.get(3000).unwrap().epoch;
        r.add(3000).unwrap();
        assert_eq!(
            r.get(3000).unwrap().epoch,
            first,
            "re-detecting a known port changes nothing"
        );
        r.set_visibility(3000, Private).unwrap();
        assert_eq!(
            r.get(3000).unwrap().epoch,
            first,
            "setting the same visibility changes nothing"
        );
        r.set_visibility(3000, Public).unwrap();
        let second = r.get(3000).unwrap().epoch;
        assert!(second > first);
        r.remove(3000).unwrap();
        r.add(3000).unwrap();
        let third = r.get(3000).unwrap().epoch;
        assert!(third > second);
        r.restart();
        assert!(r.get(3000).unwrap().epoch > third);
        assert_eq!(r.epoch(), r.get(3000).unwrap().epoch);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn event() -> impl Strategy<Value = PortEvent> {
            let vis = prop::sample::select(Visibility::ALL.to_vec());
            let allowed = (any::<bool>(), any::<bool>()).prop_map(|(org, public)| {
                let mut list = Vec::new();
                if org {
                    list.push(Org);
                }
                if public {
                    list.push(Public);
                }
                AllowedVisibilities::from_list(&list)
            });
            // A few ports, plus out-of-range numbers, so events collide often.
            let port = prop_oneof![8 => 1i64..5, 1 => Just(0i64), 1 => Just(65_536i64)];
            prop_oneof![
                port.clone().prop_map(Add),
                port.clone().prop_map(Remove),
                (port, vis).prop_map(|(p, v)| SetVisibility(p, v)),
                Just(Restart),
                allowed.prop_map(Policy),
            ]
        }

        proptest! {
            /// A public port never survives a restart, and after a restart every port's
            /// visibility is one the policy in force allows.
            #[test]
            fn restart_clears_public(events in prop::collection::vec(event(), 0..40)) {
                let (mut registry, _) = replay(AllowedVisibilities::ALL, &events);
                registry.restart();
                for (_, vis) in registry.visibilities() {
                    prop_assert_ne!(vis, Public);
                    prop_assert!(registry.allowed().allows(vis));
                }
            }

            /// A removed port forgets its visibility: re-added, it is private with a new epoch.
            #[test]
            fn removal_forgets(events in prop::collection::vec(event(), 0..40), port in 1u16..5) {
                let (mut registry, _) = replay(AllowedVisibilities::ALL, &events);
                let before = registry.epoch();
                if registry.get(port).is_some() {
                    registry.remove(port).unwrap();
                    prop_assert!(registry.get(port).is_none());
                }
                registry.add(port).unwrap();
                let state = registry.get(port).unwrap();
                prop_assert_eq!(state.visibility, Private);
                prop_assert!(state.epoch > before);
            }

            /// Epochs only grow, and the visibility only changes when the epoch does.
            #[test]
            fn epochs_are_monotonic(events in prop::collection::vec(event(), 0..40)) {
                let mut registry = PortRegistry::new(AllowedVisibilities::ALL);
                for event in &events {
                    let before = registry.clone();
                    let _ = registry.apply(event);
                    prop_assert!(registry.epoch() >= before.epoch());
                    for (port, state) in before.ports.iter() {
                        if let Some(now) = registry.get(*port) {
                            prop_assert!(now.epoch >= state.epoch);
                            if now.visibility != state.visibility {
                                prop_assert!(now.epoch > state.epoch);
                            }
                        }
                    }
                }
            }
        }
    }
}
