//! Request dispatch: one request in, one result out.
//!
//! | type          | fields                                              | result                        |
//! |---------------|-----------------------------------------------------|-------------------------------|
//! | `ping`        | –                                                   | `{pong: true}`                |
//! | `status`      | –                                                   | see [`Dispatcher::status`]    |
//! | `token_put`   | `token, expires_at (RFC 3339), scope, host?`        | the vault's report            |
//! | `secrets_put` | `secrets: [{name, generation, ephemeral_public, ciphertext}]` | per-name report     |
//! | `session`     | `event: create\|resume\|suspend, codespace?: {owner, organization, repository, prebuild?, ..}` | report (+ `prebuild` when it started or ended) |
//! | `registry_put` | `registry, username, secret: sealed, expires_at, scope?` | the registry and the `docker_config` sync |
//! | `registry_remove` | `registry` | the same |
//! | `trail`       | `since?: seq (0), limit?: n (500)`                  | see [`super::trail::Page`]    |
//! | `ports_list`, `ports_visibility`, `grant_key_put`, `forward_tickets` | see [`super::ports`] | see [`super::ports::service`] |
//!
//! | `lifecycle_run`, `extensions_install`, `config_watch`, `restricted_kill` | see [`super::lifecycle`] | long-running [`Job`]s |
//!
//! | `signature_put`, `signature_refuse` | `signing_id, signature` / `signing_id, reason` (the `id` of its `signing_request` event) | see [`super::signing`] |
//!
//! `session` `create` may carry `signing: {mode, trusted, verified_emails}` (absent: signing
//! off); its report then has the `signing` section of `status`.
//!
//! Requests arrive parsed ([`Request`], [`super::request`]). Anything else is answered
//! `unsupported`. Every failure is a [`HandlerError`], turned into a
//! wire error by the exhaustive [`HandlerError::wire`]; the connection stays open. Every refusal
//! and every session event is an audit record ([`super::trail`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::config::CodespaceIdentity;
use super::health::HealthSampler;
use super::job::Job;
use super::lifecycle::LifecycleService;
use super::ports::forward::ForwardContext;
use super::ports::PortsService;
use super::request::{
    LifecycleRequest, Named, PortsRequest, Request, ServiceRequest, SigningRequest,
};
use super::service::{EventSink, SecretsService, ServiceError, SessionKind};
use super::signing::SigningService;
use super::trail::Kind;
use crate::wire::{ErrorCode, WireError};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Unknown request type.
    #[error("unknown request type `{0}`")]
    Unsupported(String),
    /// A field has the wrong shape.
    #[error("{0}")]
    BadRequest(String),
    /// The secrets service is not configured on this agent.
    #[error("request type `{0}` needs the secrets service, which this agent does not run")]
    NoService(String),
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl HandlerError {
    /// The wire form. Values the host sent are not quoted back
    /// ([`crate::wire::message::without_values`]): a token sent in the wrong field must not
    /// reach the audit trail or a log through an error message.
    pub fn wire(&self) -> WireError {
        match self {
            Self::Unsupported(_) => WireError::new(ErrorCode::Unsupported, self.to_string()),
            Self::BadRequest(_) => WireError::new(ErrorCode::BadRequest, self.to_string()),
            Self::NoService(_) => WireError::new(ErrorCode::Unavailable, self.to_string()),
            Self::Service(e) => e.wire(),
        }
        .without_values()
    }
}

/// Static facts about this agent.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    /// Agent id.
    pub agent_id: String,
    /// Boot id.
    pub boot_id: String,
    /// When the agent started.
    pub started: Instant,
}

/// What every agent announces besides its requests: the event stream and its heartbeat.
const BASE_FEATURES: &[&str] = &["events", "heartbeat"];
/// What the secrets service announces besides its requests: the sealed-secrets format.
const SERVICE_FEATURES: &[&str] = &["sealed_secrets_v1"];
/// What the port service announces besides its requests: `forward` connections.
const PORTS_FEATURES: &[&str] = &["forward"];

/// A section of `status` supplied by another part of the agent (port detection, firewall):
/// called on every `status` request, on the blocking pool, so it may take a lock.
pub(crate) type StatusSection = Arc<dyn Fn() -> Value + Send + Sync>;
/// Routes requests to their handlers.
pub struct Dispatcher {
    facts: AgentFacts,
    service: Option<Arc<dyn SecretsService>>,
    codespace: Mutex<CodespaceIdentity>,
    health: Arc<HealthSampler>,
    ports: Option<Arc<PortsService>>,
    sections: Mutex<Vec<(&'static str, StatusSection)>>,
    lifecycle: Option<Arc<LifecycleService>>,
    activity: Option<Arc<super::activity::Activity>>,
    events: Option<EventSink>,
    signing: Option<Arc<SigningService>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Builds the dispatcher.
    pub fn new(
        facts: AgentFacts,
        service: Option<Arc<dyn SecretsService>>,
        codespace: CodespaceIdentity,
        health: Arc<HealthSampler>,
    ) -> Self {
        // A codespace configured as a prebuild is one from the start.
        if let (Some(service), Some(true)) = (&service, codespace.prebuild) {
            if let Err(e) = service.set_prebuild(true) {
                tracing::error!(error = %e, "cannot start the prebuild");
            }
        }
        Self {
            facts,
            service,
            codespace: Mutex::new(codespace),
            health,
            ports: None,
            sections: Mutex::new(Vec::new()),
            lifecycle: None,
            activity: None,
            events: None,
            signing: None,
        }
    }

    /// Adds the event stream and its audit trail: `trail` requests are answered from it, and
    /// session events and refused requests are recorded in it.
    pub(crate) fn with_events(mut self, events: EventSink) -> Self {
        self.events = Some(events);
        self
    }

    /// Adds the port service (`ports_*` requests, `grant_key_put`, `forward` connections).
    pub fn with_ports(mut self, ports: Arc<PortsService>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// What a `forward` connection needs: the port service and the codespace's identity now.
    pub(crate) fn forward_context(&self) -> ForwardContext {
        self.ports
            .as_ref()
            .map(|p| (p.clone(), self.lock_codespace().clone()))
    }

    /// Adds a `status` section named `name`, filled by `section` at each request.
    pub(crate) fn add_status_section(&self, name: &'static str, section: StatusSection) {
        lock_ignoring_poison(&self.sections).push((name, section));
    }

    /// Adds the lifecycle service (lifecycle commands, extension installs, config watch).
    pub fn with_lifecycle(mut self, lifecycle: Arc<LifecycleService>) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Adds the activity clock: `activity` requests count as activity (the host's), and a
    /// session `create` or `resume` restarts the clock.
    pub(crate) fn with_activity(mut self, activity: Arc<super::activity::Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    /// Adds the signing broker's service (`signature_put`, `signature_refuse`, the session's
    /// `signing` settings, and its `status` section).
    pub fn with_signing(mut self, signing: Arc<SigningService>) -> Self {
        let s = signing.clone();
        self.add_status_section("signing", Arc::new(move || s.status()));
        self.signing = Some(signing);
        self
    }

    /// A long-running request becomes a [`Job`]; any other is handed back for [`Self::handle`].
    pub fn start_job(&self, req: Request) -> Result<Job, Request> {
        match (req, &self.lifecycle) {
            (Request::Lifecycle(kind, fields), Some(lifecycle)) => {
                let identity = self.lock_codespace().clone();
                let mut job = lifecycle.job(kind, fields, &identity);
                if let Some(events) = self.events.clone() {
                    // A refused run (a broken devcontainer.json, a run as a user policy does
                    // not allow, ...) is recorded like any refused request.
                    let work = job.work;
                    job.work = Box::pin(async move {
                        let result = work.await;
                        if let Err(e) = &result {
                            let e = e.clone().without_values();
                            events.audit(Kind::Refusal, refusal_record(kind.name(), &e));
                        }
                        result
                    });
                }
                Ok(job)
            }
            (req, _) => Err(req),
        }
    }

    /// The capability list announced in `welcome` and `status`.
    pub fn capabilities(&self) -> Vec<String> {
        fn names<R: Named>() -> impl Iterator<Item = &'static str> {
            R::ALL.iter().map(|r| r.name())
        }
        let mut caps: Vec<&str> = vec![Request::Ping.name(), Request::Status.name()];
        caps.extend(BASE_FEATURES);
        if self.service.is_some() {
            caps.extend(names::<ServiceRequest>().chain(SERVICE_FEATURES.iter().copied()));
        }
        if self.ports.is_some() {
            caps.extend(names::<PortsRequest>().chain(PORTS_FEATURES.iter().copied()));
        }
        if self.lifecycle.is_some() {
            caps.extend(names::<LifecycleRequest>());
        }
        if self.activity.is_some() {
            caps.push(Request::Activity.name());
        }
        if self.events.is_some() {
            caps.push("trail");
        }
        if self.signing.is_some() {
            caps.extend(names::<SigningRequest>());
        }
        caps.into_iter().map(str::to_owned).collect()
    }

    /// Handles one request; a refusal is recorded in the audit trail.
    pub fn handle(&self, req: Request) -> Result<Value, HandlerError> {
        let name = req.name().to_owned();
        let result = self.answer(req);
        if let Err(e) = &result {
            self.recorded(Kind::Refusal, refusal_record(&name, &e.wire()));
        }
        result
    }

    fn answer(&self, req: Request) -> Result<Value, HandlerError> {
        match req {
            Request::Ping => Ok(json!({"pong": true})),
            Request::Status => Ok(self.status()),
            Request::Activity => {
                let activity = self
                    .activity
                    .as_ref()
                    .ok_or_else(|| HandlerError::Unsupported(Request::Activity.name().into()))?;
                activity.note(super::activity::Source::Host);
                Ok(activity.status())
            }
            Request::Trail(fields) => {
                let events = self
                    .events
                    .as_ref()
                    .ok_or_else(|| HandlerError::Unsupported("trail".into()))?;
                let number = |key: &str, default: u64| match fields.get(key) {
                    None | Some(Value::Null) => Ok(default),
                    Some(v) => v.as_u64().ok_or_else(|| {
                        HandlerError::BadRequest(format!("`{key}` must be a non-negative integer"))
                    }),
                };
                let since = number("since", 0)?;
                let limit = number("limit", super::trail::MAX_PAGE as u64)?;
                let page = events
                    .trail()
                    .page(since, usize::try_from(limit).unwrap_or(usize::MAX));
                Ok(json!(page))
            }
            Request::Service(kind, fields) => {
                let service = self.service(kind.name())?;
                // The service's reports name what was delivered (expiry, scope, secret names)
                // and never a value: they are the records.
                match kind {
                    ServiceRequest::TokenPut => {
                        Ok(self.recorded(Kind::TokenDelivered, service.put_token(fields)?))
                    }
                    ServiceRequest::SecretsPut => {
                        Ok(self.recorded(Kind::SecretsDelivered, service.put_secrets(fields)?))
                    }
                    ServiceRequest::Session => self.session(service, fields),
                    ServiceRequest::RegistryPut => Ok(service.put_registry(fields)?),
                    ServiceRequest::RegistryRemove => Ok(service.remove_registry(fields)?),
                }
            }
            Request::Ports(kind, fields) => {
                let ports = self
                    .ports
                    .as_ref()
                    .ok_or_else(|| HandlerError::Unsupported(kind.name().to_owned()))?;
                let codespace = self.lock_codespace().clone();
                Ok(ports.handle(kind, fields, &codespace)?)
            }
            Request::Signing(kind, fields) => {
                let signing = self
                    .signing
                    .as_ref()
                    .ok_or_else(|| HandlerError::Unsupported(kind.name().to_owned()))?;
                Ok(match kind {
                    SigningRequest::SignaturePut => signing.put_signature(fields)?,
                    SigningRequest::SignatureRefuse => signing.refuse_signature(fields)?,
                })
            }
            // Without the lifecycle service (with it, they are jobs and never arrive here).
            Request::Lifecycle(kind, _) => Err(HandlerError::Unsupported(kind.name().to_owned())),
            Request::Unknown(name) => Err(HandlerError::Unsupported(name)),
        }
    }

    /// Records `report` in the audit trail (when there is one) and hands it back.
    fn recorded(&self, kind: Kind, report: Value) -> Value {
        if let Some(events) = &self.events {
            events.audit(kind, report.clone());
        }
        report
    }

    fn service(&self, kind: &str) -> Result<&Arc<dyn SecretsService>, HandlerError> {
        self.service
            .as_ref()
            .ok_or_else(|| HandlerError::NoService(kind.to_owned()))
    }

    fn session(
        &self,
        service: &Arc<dyn SecretsService>,
        mut fields: Map<String, Value>,
    ) -> Result<Value, HandlerError> {
        let kind = fields
            .get("event")
            .and_then(Value::as_str)
            .and_then(SessionKind::parse)
            .ok_or_else(|| {
                HandlerError::BadRequest("`event` must be one of create, resume, suspend".into())
            })?;
        let identity = match fields.remove("codespace") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<CodespaceIdentity>(v)
                    .map_err(|e| HandlerError::BadRequest(format!("`codespace`: {e}")))?,
            ),
        };
        if identity.is_some() && kind != SessionKind::Create {
            return Err(HandlerError::BadRequest(
                "`codespace` may only be given with `create`".into(),
            ));
        }
        let signing = super::signing::settings_field(fields.remove("signing"))
            .map_err(HandlerError::BadRequest)?;
        if signing.is_some() && kind != SessionKind::Create {
            return Err(HandlerError::BadRequest(
                "`signing` may only be given with `create`".into(),
            ));
        }
        // The prebuild fact reaches the vault before the event: a `create` that starts a
        // prebuild must not land pending secrets first, and one that ends it must wipe the
        // prebuild's token before anything else happens.
        let prebuild = match &identity {
            Some(new) => {
                let before = self.lock_codespace().prebuild.unwrap_or(false);
                let after = new.prebuild.unwrap_or(before);
                (before != after)
                    .then(|| service.set_prebuild(after))
                    .transpose()?
            }
            None => None,
        };
        let mut report = service.session(kind)?;
        // After a resume (or at creation) the idle clock starts again.
        if matches!(kind, SessionKind::Create | SessionKind::Resume) {
            if let Some(activity) = &self.activity {
                activity.note(super::activity::Source::Start);
            }
        }
        if let Some(identity) = identity {
            let mut codespace = self.lock_codespace();
            let before = codespace.trust_facts();
            codespace.merge(&identity);
            // What a restricted run left behind was started under the old facts: a codespace
            // that is now trusted (or untrusted differently) starts without it.
            if codespace.trust_facts() != before {
                if let Some(lifecycle) = &self.lifecycle {
                    let lifecycle = lifecycle.clone();
                    tokio::spawn(async move {
                        lifecycle.kill_restricted("trust facts changed").await;
                    });
                }
            }
        }
        // A new session starts with its own signing settings, off unless given; the record
        // and the report say what signing is now.
        let signing_status = self.signing.as_ref().map(|service| {
            let settings = (kind == SessionKind::Create).then(|| signing.unwrap_or_default());
            service.update(settings, &self.lock_codespace().clone());
            service.status()
        });
        let codespace = json!(*self.lock_codespace());
        // A prebuild that started or ended says what it wiped (counts, never values).
        let mut recorded = json!({"event": kind.as_str(), "codespace": codespace});
        if let Some(prebuild) = &prebuild {
            recorded["prebuild"] = prebuild.clone();
        }
        if let Some(status) = &signing_status {
            recorded["signing"] = status.clone();
        }
        self.recorded(Kind::Session, recorded);
        if let Value::Object(m) = &mut report {
            m.insert("codespace".into(), codespace);
            if let Some(prebuild) = prebuild {
                m.insert("prebuild".into(), prebuild);
            }
            if let Some(signing) = signing_status {
                m.insert("signing".into(), signing);
            }
        }
        Ok(report)
    }

    fn lock_codespace(&self) -> std::sync::MutexGuard<'_, CodespaceIdentity> {
        match self.codespace.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The `status` object: version, identity, uptime, capabilities, codespace, health, and the
    /// service's token/secrets section.
    pub(crate) fn status(&self) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        m.insert(
            "protocol_versions".into(),
            json!(crate::wire::message::SUPPORTED_VERSIONS),
        );
        m.insert("agent_id".into(), self.facts.agent_id.clone().into());
        m.insert("boot_id".into(), self.facts.boot_id.clone().into());
        m.insert(
            "uptime_s".into(),
            self.facts.started.elapsed().as_secs().into(),
        );
        m.insert("capabilities".into(), json!(self.capabilities()));
        m.insert("codespace".into(), json!(*self.lock_codespace()));
        m.insert("health".into(), json!(self.health.sample()));
        let sections = lock_ignoring_poison(&self.sections).clone();
        for (name, section) in sections {
            m.insert(name.into(), section());
        }
        if let Some(s) = &self.service {
            if let Value::Object(extra) = s.status() {
                for (k, v) in extra {
                    m.entry(k).or_insert(v);
                }
            }
        }
        Value::Object(m)
    }
}

/// The audit record of a refused request.
fn refusal_record(request: &str, error: &WireError) -> Value {
    json!({"what": "request", "request": request, "code": error.code, "reason": error.message})
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dispatcher(service: Option<Arc<dyn SecretsService>>) -> Dispatcher {
        Dispatcher::new(
            AgentFacts {
                agent_id: "a".into(),
                boot_id: "b".into(),
                started: Instant::now(),
            },
            service,
            CodespaceIdentity {
                owner: Some("octo".into()),
                ..Default::default()
            },
            Arc::new(HealthSampler::new(Path::new("/"))),
        )
    }

    fn req(kind: &str, fields: Value) -> Request {
        Request::from_frame(kind.into(), fields.as_object().cloned().unwrap_or_default())
    }

    /// A service that records what reached it, to check the dispatcher's routing.
    struct Recorder(Mutex<Vec<String>>);
    impl SecretsService for Recorder {
        fn public_key(&self) -> [u8; 32] {
            [1; 32]
        }
        fn put_token(&self, _: Map<String, Value>) -> Result<Value, ServiceError> {
            Err(ServiceError::InvalidArgument("expired".into()))
        }
        fn put_secrets(&self, f: Map<String, Value>) -> Result<Value, ServiceError> {
            self.0.lock().unwrap().push(format!("secrets {}", f.len()));
            Ok(json!({}))
        }
        fn session(&self, k: SessionKind) -> Result<Value, ServiceError> {
            self.0.lock().unwrap().push(k.as_str().into());
            Ok(json!({"event": k.as_str()}))
        }
        fn status(&self) -> Value {
            json!({"token": null, "secrets": {"current": [], "pending": []}})
        }
        fn set_prebuild(&self, on: bool) -> Result<Value, ServiceError> {
            self.0.lock().unwrap().push(format!("prebuild {on}"));
            Ok(json!({"prebuild": on}))
        }
        fn put_registry(&self, _: Map<String, Value>) -> Result<Value, ServiceError> {
            self.0.lock().unwrap().push("registry_put".into());
            Ok(json!({}))
        }
        fn remove_registry(&self, _: Map<String, Value>) -> Result<Value, ServiceError> {
            self.0.lock().unwrap().push("registry_remove".into());
            Ok(json!({}))
        }
    }

    #[test]
    fn unknown_types_are_unsupported() {
        let e = dispatcher(None)
            .handle(req("reboot", json!({})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::Unsupported);
    }

    #[test]
    fn capabilities_are_announced_in_their_documented_order() {
        assert_eq!(
            dispatcher(None).capabilities(),
            ["ping", "status", "events", "heartbeat"]
        );
        let rec: Arc<dyn SecretsService> = Arc::new(Recorder(Mutex::new(vec![])));
        assert_eq!(
            dispatcher(Some(rec)).capabilities(),
            [
                "ping",
                "status",
                "events",
                "heartbeat",
                "token_put",
                "secrets_put",
                "session",
                "registry_put",
                "registry_remove",
                "sealed_secrets_v1"
            ]
        );
    }

    #[test]
    fn requests_without_their_service_are_unsupported_by_name() {
        let d = dispatcher(None);
        for kind in [
            "ports_list",
            "forward_tickets",
            "lifecycle_run",
            "config_watch",
        ] {
            let e = d.handle(req(kind, json!({}))).unwrap_err();
            assert_eq!(e, HandlerError::Unsupported(kind.into()));
        }
    }

    #[test]
    fn service_requests_without_a_service_are_unavailable() {
        let e = dispatcher(None)
            .handle(req("token_put", json!({})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::Unavailable);
    }

    #[test]
    fn status_has_the_documented_keys() {
        let rec: Arc<dyn SecretsService> = Arc::new(Recorder(Mutex::new(vec![])));
        let s = dispatcher(Some(rec))
            .handle(req("status", json!({})))
            .unwrap();
        for k in [
            "version",
            "agent_id",
            "boot_id",
            "uptime_s",
            "capabilities",
            "codespace",
            "health",
            "token",
            "secrets",
        ] {
            assert!(s.get(k).is_some(), "missing {k} in {s}");
        }
        assert_eq!(s["codespace"]["owner"], "octo");
    }

    #[test]
    fn added_sections_appear_in_status() {
        let d = dispatcher(None);
        d.add_status_section("detection", Arc::new(|| json!({"method": "sock_diag"})));
        assert_eq!(d.status()["detection"]["method"], "sock_diag");
    }

    #[test]
    fn session_create_records_the_identity() {
        let rec = Arc::new(Recorder(Mutex::new(vec![])));
        let d = dispatcher(Some(rec.clone()));
        let r = d
            .handle(req(
                "session",
                json!({"event": "create", "codespace": {"repository": "o/r"}}),
            ))
            .unwrap();
        assert_eq!(
            r["codespace"],
            json!({"owner": "octo", "organization": null, "repository": "o/r"})
        );
        assert_eq!(*rec.0.lock().unwrap(), vec!["create".to_owned()]);
        let e = d
            .handle(req("session", json!({"event": "resume", "codespace": {}})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::BadRequest);
        let e = d
            .handle(req("session", json!({"event": "reboot"})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::BadRequest);
    }

    #[test]
    fn the_prebuild_fact_reaches_the_service_before_the_event_and_only_when_it_changes() {
        let rec = Arc::new(Recorder(Mutex::new(vec![])));
        let d = dispatcher(Some(rec.clone()));
        let create = |codespace: Value| {
            d.handle(req(
                "session",
                json!({"event": "create", "codespace": codespace}),
            ))
            .unwrap()
        };
        let r = create(json!({"prebuild": true}));
        assert_eq!(r["prebuild"], json!({"prebuild": true}));
        // Unchanged, or not given (the earlier fact stays): nothing to tell.
        assert!(create(json!({"prebuild": true})).get("prebuild").is_none());
        assert!(create(json!({"repository": "o/r"}))
            .get("prebuild")
            .is_none());
        let r = create(json!({"prebuild": false}));
        assert_eq!(r["prebuild"], json!({"prebuild": false}));
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "prebuild true",
                "create",
                "create",
                "create",
                "prebuild false",
                "create"
            ]
        );
        // A codespace configured as a prebuild starts as one.
        let rec = Arc::new(Recorder(Mutex::new(vec![])));
        let service: Arc<dyn SecretsService> = rec.clone();
        let _ = Dispatcher::new(
            AgentFacts {
                agent_id: "a".into(),
                boot_id: "b".into(),
                started: Instant::now(),
            },
            Some(service),
            CodespaceIdentity {
                prebuild: Some(true),
                ..Default::default()
            },
            Arc::new(HealthSampler::new(Path::new("/"))),
        );
        assert_eq!(*rec.0.lock().unwrap(), ["prebuild true"]);
    }

    #[test]
    fn session_create_sets_signing_and_nothing_else_may() {
        let rec: Arc<dyn SecretsService> = Arc::new(Recorder(Mutex::new(vec![])));
        let (sink, _events) = EventSink::channel(8);
        let signing = SigningService::new(
            super::super::signing::SigningConfig::default(),
            sink,
            Arc::new(|_| Ok(())),
        );
        let d = dispatcher(Some(rec)).with_signing(signing);
        assert!(d.capabilities().contains(&"signature_put".to_owned()));
        let create = |signing: Value| {
            d.handle(req(
                "session",
                json!({"event": "create", "codespace": {"repository": "octo/app"}, "signing": signing}),
            ))
        };
        let on = json!({"mode": "ssh", "trusted": ["octo/*"], "verified_emails": ["m@x"]});
        assert_eq!(create(on.clone()).unwrap()["signing"]["enabled"], true);
        // Bad settings are refused before anything changes.
        let e = create(json!({"mode": "ssh", "trusted": ["no-slash"]})).unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::BadRequest);
        assert!(e.to_string().contains("signing.trusted[0]"), "{e}");
        assert_eq!(d.status()["signing"]["enabled"], true);
        // A new session without settings has signing off.
        assert_eq!(
            create(Value::Null).unwrap()["signing"]["reason"],
            "signing-off"
        );
        // Only a create carries settings; a resume keeps them.
        create(on.clone()).unwrap();
        let e = d
            .handle(req("session", json!({"event": "resume", "signing": on})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::BadRequest);
        let r = d
            .handle(req("session", json!({"event": "resume"})))
            .unwrap();
        assert_eq!(r["signing"]["enabled"], true);
    }

    #[test]
    fn service_errors_keep_their_code() {
        let rec: Arc<dyn SecretsService> = Arc::new(Recorder(Mutex::new(vec![])));
        let e = dispatcher(Some(rec))
            .handle(req("token_put", json!({})))
            .unwrap_err();
        assert_eq!(
            e.wire(),
            WireError::new(ErrorCode::InvalidArgument, "expired")
        );
    }
}
