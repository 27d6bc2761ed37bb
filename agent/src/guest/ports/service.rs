//! The port service: the visibility registry, the detected listeners, the grant key and the
//! live forwarded connections, behind one lock.
//!
//! Every decision is the `policy` crate's: [`PortRegistry`] for visibilities and epochs,
//! [`authorize_forward`] / [`port_access`] for who may connect. This file only feeds them facts
//! (listeners, grants, the codespace's identity, the clock) and acts on their answers.
//!
//! A port's identity is its set of listeners with their owners ([`ListenerOwner`]: the uid
//! that made the socket, the network it listens in). The first listener's owner is the port's
//! owner until its last listener goes:
//!
//! ```text
//!   first listener (owner O) ──▶ registry.add: private, new epoch; port owner := O
//!   listener of O, or of an owner already listening ──▶ one more socket, nothing changes
//!                                                      (IPv4 + IPv6 of one server are one port)
//!   listener of an owner none of the port's sockets has ──▶ registry.remove + add: private,
//!                 new epoch (outstanding grants stale), every live connection cut,
//!                 `port_identity_changed`
//!   last listener closed ──▶ registry.remove: visibility and owner forgotten, connections cut
//! ```
//!
//! Invariant: the forwarder reaches only listeners of the port's owner ([`ForwardTarget`]);
//! a visibility the owner set never carries over to another uid's server, whether it binds
//! next to the owner's or stays after the owner's has gone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use codespace_policy::ports::{
    authorize_forward, effective_visibility, port_access, CodespaceIdentity as PolicyIdentity,
    ForwardDenyReason, ForwardGrant, Principal, Visibility, AUTHENTICATION_LIFETIME,
};
use codespace_policy::registry::{port_number, PortEventRejection, PortRegistry};
use codespace_policy::repo::same_login;
use codespace_policy::{Authorized, ReasonCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::config::PortsConfig;
use super::live::LiveTable;
use super::page::{listener_fits, page_answer, port_entry, PageRequest, PortFacts, ServiceFacts};
use super::refusal::ForwardRefusal;
use super::tickets::{TicketError, TicketStore};
use crate::guest::activity::{Activity, ConnectionWatch};
use crate::guest::config::CodespaceIdentity;
use crate::guest::detect::{BindScope, ListeningSocket, Network, PortChange};
use crate::guest::request::Named;
use crate::guest::sandbox::netns::RestrictedSockets;
use crate::guest::service::{EventSink, ServiceError};
use crate::guest::trail::Kind;
use crate::relay::Meter;
use crate::wire::grant::{parse_grant, GrantKey};
use crate::wire::message::ForwardHello;
use crate::wire::Event;

/// The requests this service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortsRequest {
    /// `ports_list`.
    List,
    /// `ports_visibility`.
    Visibility,
    /// `grant_key_put`.
    GrantKeyPut,
    /// `forward_tickets`.
    ForwardTickets,
}

impl Named for PortsRequest {
    const ALL: &'static [Self] = &[
        Self::List,
        Self::Visibility,
        Self::GrantKeyPut,
        Self::ForwardTickets,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::List => "ports_list",
            Self::Visibility => "ports_visibility",
            Self::GrantKeyPut => "grant_key_put",
            Self::ForwardTickets => "forward_tickets",
        }
    }
}

struct State {
    registry: PortRegistry,
    /// Detected ports, each with its owner and listening sockets.
    listeners: BTreeMap<u16, Port>,
    live: LiveTable,
}

/// Who a listening socket belongs to: the uid that made it (`None` for the internal API,
/// which knows no socket) and the network namespace it listens in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerOwner {
    /// The socket's uid.
    pub(crate) uid: Option<u32>,
    /// Where it listens.
    pub(crate) network: Network,
}

/// One listening socket of a port, as the service keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listener {
    /// Its owner.
    pub(crate) owner: ListenerOwner,
    /// Its bound address (`None` for the internal API: loopback, either family).
    pub(crate) addr: Option<IpAddr>,
}

impl Listener {
    /// A listener of the internal API: no socket, no uid, in the agent's network.
    pub(crate) const UNKNOWN: Self = Self {
        owner: ListenerOwner {
            uid: None,
            network: Network::Agent,
        },
        addr: None,
    };

    /// What detection reported.
    pub(crate) fn of(s: &ListeningSocket) -> Self {
        Self {
            owner: ListenerOwner {
                uid: Some(s.uid),
                network: s.network,
            },
            addr: Some(s.addr),
        }
    }

    /// The loopback address the forwarder connects to for this listener: its own when bound
    /// to a loopback address, the family's loopback when bound to every interface, none when
    /// bound to one other address (the forwarder only ever connects on loopback).
    fn loopback_target(self) -> Vec<IpAddr> {
        let Some(addr) = self.addr else {
            return vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        };
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (BindScope::of(addr), addr) {
            (BindScope::Loopback, a) => vec![a],
            (BindScope::AllInterfaces, IpAddr::V4(_)) => vec![Ipv4Addr::LOCALHOST.into()],
            (BindScope::AllInterfaces, IpAddr::V6(_)) => vec![Ipv6Addr::LOCALHOST.into()],
            _ => Vec::new(),
        }
    }
}

/// A detected port: the owner its first listener gave it, and its listening sockets keyed by
/// socket (inode; 0 for the internal API).
struct Port {
    owner: ListenerOwner,
    sockets: BTreeMap<u64, (Listener, Value)>,
}

/// Where the forwarder connects for a port: the owner's listeners' loopback addresses, in the
/// owner's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardTarget {
    /// The namespace to connect in.
    pub(crate) network: Network,
    /// The addresses to try, in order (IPv4 first); empty when the owner listens no more.
    pub(crate) addrs: Vec<IpAddr>,
}

/// The port service (one per agent).
pub struct PortsService {
    config: PortsConfig,
    state: Mutex<State>,
    grant_key: RwLock<Option<GrantKey>>,
    tickets: TicketStore,
    events: Option<EventSink>,
    /// The activity clock, which bytes on owner-only connections keep running (set once at
    /// start; unit tests run without one).
    activity: OnceLock<Arc<Activity>>,
    /// Where sockets inside the restricted network namespace come from (forwards to its
    /// listeners).
    restricted: RestrictedSockets,
}

impl std::fmt::Debug for PortsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortsService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A forward connection the policy allowed, registered in the live table.
#[derive(Debug)]
pub struct Admission {
    /// The policy's proof (port, effective visibility, epoch).
    pub(crate) grant: Authorized<ForwardGrant>,
    /// When the principal's authentication expires ([`AUTHENTICATION_LIFETIME`] after it was
    /// made): the policy would refuse this principal from then on, so the connection ends then
    /// too. `None` for a public port's anonymous connection, which no authentication admitted.
    pub(crate) authenticated_until: Option<OffsetDateTime>,
    /// Resolves when the connection is revoked.
    pub(crate) revoked: oneshot::Receiver<()>,
    /// Keeps the table entry; dropping it forgets the connection.
    pub(crate) ticket: LiveTicket,
    /// The principal's login (`None`: a public port's anonymous visitor), for the audit record.
    pub(crate) principal: Option<String>,
    /// Whether the port is owner-only (its bytes are the creator's activity).
    pub(crate) owner_only: bool,
}

/// A live connection's place in the table; removed on drop.
#[derive(Debug)]
pub(crate) struct LiveTicket {
    service: Arc<PortsService>,
    id: u64,
}

impl Drop for LiveTicket {
    fn drop(&mut self) {
        self.service.lock().live.remove(self.id);
    }
}

/// The policy's view of the codespace (an unknown owner matches no login).
pub(crate) fn policy_identity(c: &CodespaceIdentity) -> PolicyIdentity {
    PolicyIdentity {
        owner: c.owner.clone().unwrap_or_default(),
        organization: c.organization.clone(),
    }
}

fn is_owner(principal: Option<&Principal>, codespace: &PolicyIdentity) -> bool {
    principal.is_some_and(|p| !codespace.owner.is_empty() && same_login(&p.login, &codespace.owner))
}

fn rejection(e: PortEventRejection, port: i64) -> ServiceError {
    let detail = match e {
        PortEventRejection::InvalidPort => format!("{port} is not a port (1-65535)"),
        PortEventRejection::UnknownPort => format!("nothing listens on port {port}"),
        PortEventRejection::VisibilityNotAllowed => {
            "the organization policy does not allow that visibility".to_owned()
        }
        _ => "refused".to_owned(),
    };
    ServiceError::InvalidArgument(format!("{}: {detail}", e.code()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VisibilityRequest {
    port: i64,
    visibility: Visibility,
}

impl PortsService {
    /// A service with an empty registry: at agent start nothing is public.
    pub fn new(config: PortsConfig, events: Option<EventSink>) -> Arc<Self> {
        Self::with_restricted_network(config, events, RestrictedSockets::none())
    }

    /// [`PortsService::new`], with the codespace's restricted network: forwards to its
    /// listeners connect through sockets from `restricted`.
    pub fn with_restricted_network(
        config: PortsConfig,
        events: Option<EventSink>,
        restricted: RestrictedSockets,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                registry: PortRegistry::new(config.allowed),
                listeners: BTreeMap::new(),
                live: LiveTable::default(),
            }),
            config,
            grant_key: RwLock::new(None),
            tickets: TicketStore::default(),
            events,
            activity: OnceLock::new(),
            restricted,
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &PortsConfig {
        &self.config
    }

    /// Where sockets inside the restricted network namespace come from.
    pub fn restricted_sockets(&self) -> &RestrictedSockets {
        &self.restricted
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn emit(&self, name: &str, fields: Value) {
        if let Some(sink) = &self.events {
            let _ = sink.send(Event::new(name, fields));
        }
    }

    /// Records `fields` in the audit trail.
    pub(crate) fn audit(&self, kind: Kind, fields: Value) {
        if let Some(sink) = &self.events {
            sink.audit(kind, fields);
        }
    }

    /// Lets bytes on owner-only connections count as activity on `activity` (once, at start).
    pub(crate) fn count_activity_on(&self, activity: Arc<Activity>) {
        let _ = self.activity.set(activity);
    }

    /// Starts counting a connection's bytes as activity, when it goes to an owner-only port and
    /// an activity clock is set; the watch ends when dropped.
    pub(crate) fn watch_activity(
        &self,
        admission: &Admission,
        meter: &Arc<Meter>,
    ) -> Option<ConnectionWatch> {
        let activity = self.activity.get().filter(|_| admission.owner_only)?;
        Some(activity.watch_connection(meter))
    }

    /// A listening socket appeared on `port` (`key` tells sockets of one port apart, e.g. the
    /// IPv4 and IPv6 ones), of unknown owner (the internal API and unit tests); see
    /// [`PortsService::socket_opened`].
    pub fn listener_opened(&self, port: u16, key: u64, details: Value) {
        self.opened(port, key, Listener::UNKNOWN, details);
    }

    /// A listening socket detection reported. Returns how many live connections a new port
    /// identity cut.
    pub(crate) fn socket_opened(&self, s: &ListeningSocket) -> usize {
        let details = serde_json::to_value(s).unwrap_or(Value::Null);
        self.opened(s.port, s.inode, Listener::of(s), details)
    }

    /// The first socket of a port adds it to the registry, private, and makes its owner the
    /// port's. A socket of an owner (uid, network) none of the port's sockets has is a new
    /// identity for the port: it is removed and added again (a new epoch, private, outstanding
    /// grants stale) and its live connections are cut, so that nothing the owner made public
    /// carries over to another uid's server. Details over [`super::page::MAX_LISTENER_BYTES`]
    /// serialized (none that detection reports) are recorded as `{"details_omitted": true}`,
    /// so that a page of `ports_list` stays bounded.
    fn opened(&self, port: u16, key: u64, listener: Listener, details: Value) -> usize {
        if port == 0 {
            return 0;
        }
        let details = if listener_fits(&details) {
            details
        } else {
            json!({"details_omitted": true})
        };
        let mut st = self.lock();
        let Some(known) = st.listeners.get_mut(&port) else {
            let sockets = BTreeMap::from([(key, (listener, details))]);
            st.listeners.insert(
                port,
                Port {
                    owner: listener.owner,
                    sockets,
                },
            );
            // A port can only be rejected for being 0, excluded above.
            let _ = st.registry.add(port);
            return 0;
        };
        let stranger = !known
            .sockets
            .values()
            .any(|(l, _)| l.owner == listener.owner);
        known.sockets.insert(key, (listener, details));
        if !stranger {
            return 0;
        }
        let _ = st.registry.remove(port);
        let _ = st.registry.add(port);
        let revoked = st.live.revoke(port, |_| false);
        let epoch = st.registry.get(port).map_or(0, |s| s.epoch);
        drop(st);
        tracing::warn!(
            port,
            uid = listener.owner.uid,
            epoch,
            revoked,
            "another owner listens on the port: private again, under a new epoch"
        );
        let report = json!({
            "port": port,
            "uid": listener.owner.uid,
            "network": listener.owner.network,
            "visibility": Visibility::Private,
            "epoch": epoch,
            "revoked": revoked,
        });
        self.emit("port_identity_changed", report.clone());
        let mut record = report;
        record["reason"] = "another-owner-listens".into();
        self.audit(Kind::Visibility, record);
        revoked
    }

    /// Where the forwarder connects for `port`: only to the listeners of the port's owner (the
    /// uid and network of its first listener), at their own loopback addresses, never to
    /// another uid's. `None` for an unknown port.
    pub(crate) fn target_of(&self, port: u16) -> Option<ForwardTarget> {
        let st = self.lock();
        let p = st.listeners.get(&port)?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for (l, _) in p.sockets.values().filter(|(l, _)| l.owner == p.owner) {
            for a in l.loopback_target() {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
        }
        addrs.sort_by_key(IpAddr::is_ipv6);
        Some(ForwardTarget {
            network: p.owner.network,
            addrs,
        })
    }

    /// A listening socket went away; when it was the port's last one, the port is removed
    /// (forgetting its visibility and owner) and its live connections are cut. Returns how
    /// many were.
    pub(crate) fn listener_closed(&self, port: u16, key: u64) -> usize {
        let mut st = self.lock();
        let Some(p) = st.listeners.get_mut(&port) else {
            return 0;
        };
        p.sockets.remove(&key);
        if !p.sockets.is_empty() {
            return 0;
        }
        st.listeners.remove(&port);
        self.remove_locked(&mut st, port)
    }

    fn remove_locked(&self, st: &mut State, port: u16) -> usize {
        let _ = st.registry.remove(port);
        let revoked = st.live.revoke(port, |_| false);
        if revoked > 0 {
            tracing::info!(port, revoked, "port removed: live connections cut");
            self.emit(
                "port_connections_revoked",
                json!({"port": port, "revoked": revoked, "reason": "port-removed"}),
            );
        }
        revoked
    }

    /// Internal API: a listener on `port` (no socket details).
    #[cfg(test)]
    pub(crate) fn port_opened(&self, port: u16) {
        self.listener_opened(port, 0, json!({}));
    }

    /// Internal API: every listener on `port` is gone. Returns the connections cut.
    #[cfg(test)]
    pub(crate) fn port_closed(&self, port: u16) -> usize {
        let mut st = self.lock();
        if st.listeners.remove(&port).is_none() {
            return 0;
        }
        self.remove_locked(&mut st, port)
    }

    /// Installs (or replaces) the grant key. The key is never logged or echoed.
    pub fn put_grant_key(&self, mut fields: Map<String, Value>) -> Result<Value, ServiceError> {
        let Some(Value::String(text)) = fields.remove("key") else {
            return Err(ServiceError::InvalidArgument(
                "grant_key_put: `key` must be a base64 string".into(),
            ));
        };
        if let Some(k) = fields.keys().next() {
            return Err(ServiceError::InvalidArgument(format!(
                "grant_key_put: unknown field `{k}`"
            )));
        }
        let text = zeroize::Zeroizing::new(text);
        let key = GrantKey::from_base64(&text)
            .map_err(|e| ServiceError::InvalidArgument(format!("grant_key_put: {e}")))?;
        match self.grant_key.write() {
            Ok(mut g) => *g = Some(key),
            Err(p) => *p.into_inner() = Some(key),
        }
        tracing::info!("grant key installed");
        Ok(json!({"grant_key": "installed"}))
    }

    /// The outstanding forward tickets ([`crate::wire::ticket`]).
    pub fn tickets(&self) -> &TicketStore {
        &self.tickets
    }

    /// `forward_tickets {count}`: fresh single-use tickets for one-round-trip forward
    /// connections, `{"tickets": [base64, ..]}`.
    pub(crate) fn issue_tickets(&self, fields: &Map<String, Value>) -> Result<Value, ServiceError> {
        if let Some(k) = fields.keys().find(|k| k.as_str() != "count") {
            return Err(ServiceError::InvalidArgument(format!(
                "forward_tickets: unknown field `{k}`"
            )));
        }
        let count = fields.get("count").and_then(Value::as_u64).ok_or_else(|| {
            ServiceError::InvalidArgument(
                "forward_tickets: `count` must be a positive integer".into(),
            )
        })?;
        let tickets = self.tickets.issue(count).map_err(|e| match e {
            TicketError::BadCount(_) => ServiceError::InvalidArgument(e.to_string()),
            _ => ServiceError::Internal(e.to_string()),
        })?;
        let tickets: Vec<String> = tickets.iter().map(|t| t.to_base64()).collect();
        Ok(json!({ "tickets": tickets }))
    }

    fn grant_key(&self) -> Option<GrantKey> {
        match self.grant_key.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Answers one of its requests.
    pub(crate) fn handle(
        &self,
        request: PortsRequest,
        fields: Map<String, Value>,
        codespace: &CodespaceIdentity,
    ) -> Result<Value, ServiceError> {
        match request {
            PortsRequest::List => Ok(self.list(codespace, PageRequest::from_fields(&fields)?)),
            PortsRequest::Visibility => {
                let req: VisibilityRequest = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| ServiceError::InvalidArgument(format!("ports_visibility: {e}")))?;
                self.set_visibility(
                    req.port,
                    req.visibility,
                    codespace,
                    OffsetDateTime::now_utc(),
                )
            }
            PortsRequest::GrantKeyPut => self.put_grant_key(fields),
            PortsRequest::ForwardTickets => self.issue_tickets(&fields),
        }
    }

    /// `ports_list`: one page of the detected ports, in port order, each with its visibility,
    /// epoch and listeners, and the facts about the whole service (see [`super::page`]).
    pub(crate) fn list(&self, codespace: &CodespaceIdentity, page: PageRequest) -> Value {
        let identity = policy_identity(codespace);
        let st = self.lock();
        let allowed = st.registry.allowed();
        let start = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut listed = st
            .listeners
            .range((start, Bound::Unbounded))
            .filter_map(|(port, p)| Some((*port, p, st.registry.get(*port)?)));
        let mut ports = Vec::new();
        let mut last = None;
        for (port, p, state) in listed.by_ref().take(page.limit) {
            let listeners: Vec<&Value> = p.sockets.values().map(|(_, d)| d).collect();
            ports.push(port_entry(&PortFacts {
                port,
                visibility: state.visibility,
                effective_visibility: effective_visibility(&identity, state.visibility, allowed),
                epoch: state.epoch,
                owner_only: self.config.owner_only.contains(&port),
                connections: st.live.on_port(port),
                listeners: &listeners,
            }));
            last = Some(port);
        }
        let next_after = if listed.next().is_some() { last } else { None };
        let facts = ServiceFacts {
            allowed_visibilities: Visibility::ALL
                .into_iter()
                .filter(|v| allowed.allows(*v))
                .map(Visibility::as_str)
                .collect(),
            grant_key: self.grant_key().is_some(),
            connections: st.live.total(),
            forward_tickets: self.tickets.outstanding(),
        };
        page_answer(ports, next_after, &facts)
    }

    /// The `ports` section of `status`: how many ports and live forwarded connections, whether
    /// the host delivered a grant key, and how many forward tickets are outstanding.
    pub(crate) fn status(&self) -> Value {
        let st = self.lock();
        json!({
            "ports": st.listeners.len(),
            "connections": st.live.total(),
            "grant_key": self.grant_key().is_some(),
            "forward_tickets": self.tickets.outstanding(),
        })
    }

    /// `ports_visibility`: sets a port's visibility (policy-checked), bumps its epoch and cuts
    /// the live connections the new visibility no longer admits.
    pub(crate) fn set_visibility(
        &self,
        raw_port: i64,
        visibility: Visibility,
        codespace: &CodespaceIdentity,
        now: OffsetDateTime,
    ) -> Result<Value, ServiceError> {
        let port = port_number(raw_port).map_err(|e| rejection(e, raw_port))?;
        let owner_only = self.config.owner_only.contains(&port);
        if owner_only && visibility != Visibility::Private {
            return Err(ServiceError::InvalidArgument(format!(
                "owner-only: port {port} carries connections to the codespace itself and stays private"
            )));
        }
        let identity = policy_identity(codespace);
        let mut st = self.lock();
        st.registry
            .set_visibility(port, visibility)
            .map_err(|e| rejection(e, raw_port))?;
        let allowed = st.registry.allowed();
        let epoch = st.registry.get(port).map_or(0, |s| s.epoch);
        let revoked = st.live.revoke(port, |p| {
            port_access(&identity, visibility, p, now, allowed)
                .decision
                .is_allow()
                && (!owner_only || is_owner(p, &identity))
        });
        drop(st);
        let effective = effective_visibility(&identity, visibility, allowed);
        tracing::info!(
            port,
            visibility = visibility.as_str(),
            epoch,
            revoked,
            "port visibility set"
        );
        let report = json!({
            "port": port,
            "visibility": visibility,
            "effective_visibility": effective,
            "epoch": epoch,
            "revoked": revoked,
        });
        self.emit("port_visibility_changed", report.clone());
        self.audit(Kind::Visibility, report.clone());
        Ok(report)
    }

    /// Checks a `forward` hello: grant signature, port, expiry, epoch, owner-only, the policy's
    /// access decision and the connection limits, in that order; on success the connection is
    /// in the live table.
    pub(crate) fn admit(
        self: &Arc<Self>,
        hello: Option<&ForwardHello>,
        codespace: &CodespaceIdentity,
        now: OffsetDateTime,
    ) -> Result<Admission, ForwardRefusal> {
        let forward = hello.ok_or(ForwardRefusal::Malformed(
            "a forward hello must carry `forward: {port, grant}`",
        ))?;
        let key = self.grant_key().ok_or(ForwardRefusal::NoGrantKey)?;
        let grant =
            parse_grant(forward.grant.clone()).map_err(|_| ForwardRefusal::MalformedGrant)?;
        let claims = key.verify(grant).map_err(|_| ForwardRefusal::Forged)?;
        let port = forward.port;
        if claims.port != port {
            return Err(ForwardRefusal::WrongPort {
                grant: claims.port,
                asked: port,
            });
        }
        let now_s = now.unix_timestamp();
        if claims.expires_at <= now_s {
            return Err(ForwardRefusal::Expired);
        }
        let base = claims
            .principal
            .as_ref()
            .map_or(now_s, |p| p.authenticated_at);
        if claims.expires_at > base.saturating_add(AUTHENTICATION_LIFETIME.whole_seconds()) {
            return Err(ForwardRefusal::LifetimeTooLong);
        }
        if self.config.never_forward.contains(&port) {
            return Err(ForwardRefusal::PortDenied(port));
        }
        let principal = match claims.principal {
            None => None,
            Some(p) => Some(Principal {
                authenticated_at: OffsetDateTime::from_unix_timestamp(p.authenticated_at)
                    .map_err(|_| ForwardRefusal::MalformedGrant)?,
                login: p.login,
                organizations: p.organizations,
            }),
        };
        let identity = policy_identity(codespace);
        let mut st = self.lock();
        let state = st
            .registry
            .get(port)
            .ok_or(ForwardRefusal::NoSuchPort(port))?;
        if state.epoch != claims.epoch {
            return Err(ForwardRefusal::StaleEpoch {
                grant: claims.epoch,
                current: state.epoch,
            });
        }
        let owner_only = self.config.owner_only.contains(&port);
        if owner_only && !is_owner(principal.as_ref(), &identity) {
            return Err(ForwardRefusal::OwnerOnly(port));
        }
        let grant = authorize_forward(&st.registry, port, &identity, principal.as_ref(), now)
            .map_err(|e| match e {
                ForwardDenyReason::Access(r) => ForwardRefusal::Access(r),
                _ => ForwardRefusal::NoSuchPort(port),
            })?;
        let per_port = self.config.max_connections_per_port;
        if st.live.on_port(port) >= per_port {
            return Err(ForwardRefusal::TooManyConnections {
                scope: "port",
                limit: per_port,
            });
        }
        let total = self.config.max_connections_total;
        if st.live.total() >= total {
            return Err(ForwardRefusal::TooManyConnections {
                scope: "total",
                limit: total,
            });
        }
        let authenticated_until = principal
            .as_ref()
            .map(|p| p.authenticated_at + AUTHENTICATION_LIFETIME);
        let login = principal.as_ref().map(|p| p.login.clone());
        let (id, revoked) = st.live.insert(port, principal);
        drop(st);
        Ok(Admission {
            principal: login,
            owner_only,
            grant,
            authenticated_until,
            revoked,
            ticket: LiveTicket {
                service: self.clone(),
                id,
            },
        })
    }
}

/// Feeds the port detector's changes into the registry until the detector stops. Sockets are
/// told apart by inode, so a port stays while any of its sockets (IPv4, IPv6) listens.
pub(crate) async fn follow(ports: Arc<PortsService>, mut changes: mpsc::Receiver<PortChange>) {
    while let Some(change) = changes.recv().await {
        match change {
            PortChange::Opened(s) => {
                ports.socket_opened(&s);
            }
            PortChange::Closed(s) => {
                ports.listener_closed(s.port, s.inode);
            }
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
