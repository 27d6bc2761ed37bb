//! Request dispatch: one request in, one result out.
//!
//! | type          | fields                                              | result                        |
//! |---------------|-----------------------------------------------------|-------------------------------|
//! | `ping`        | –                                                   | `{pong: true}`                |
//! | `status`      | –                                                   | see [`Dispatcher::status`]    |
//! | `token_put`   | `token, expires_at (RFC 3339), scope, host?`        | the vault's report            |
//! | `secrets_put` | `secrets: [{name, generation, ephemeral_public, ciphertext}]` | per-name report     |
//! | `session`     | `event: create\|resume\|suspend, codespace?: {owner, organization, repository}` | report |
//! | `ports_list`, `ports_visibility`, `grant_key_put`, `forward_tickets` | see [`super::ports`] | see [`super::ports::service`] |
//!
//! | `lifecycle_run`, `extensions_install`, `config_watch`, `restricted_kill` | see [`super::lifecycle`] | long-running [`Job`]s |
//!
//! Anything else is answered `unsupported`. Every failure is a [`HandlerError`], turned into a
//! wire error by the exhaustive [`HandlerError::wire`]; the connection stays open.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::config::CodespaceIdentity;
use super::health::HealthSampler;
use super::lifecycle::LifecycleService;
use super::ports::forward::ForwardContext;
use super::ports::PortsService;
use super::service::{SecretsService, ServiceError, SessionKind};
use crate::wire::{ErrorCode, Request, WireError};

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
    /// The wire form.
    pub fn wire(&self) -> WireError {
        match self {
            Self::Unsupported(_) => WireError::new(ErrorCode::Unsupported, self.to_string()),
            Self::BadRequest(_) => WireError::new(ErrorCode::BadRequest, self.to_string()),
            Self::NoService(_) => WireError::new(ErrorCode::Unavailable, self.to_string()),
            Self::Service(e) => e.wire(),
        }
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

/// Request types served without the secrets service.
const BASE_CAPABILITIES: &[&str] = &["ping", "status", "events", "heartbeat"];
/// Request types the secrets service adds.
const SERVICE_CAPABILITIES: &[&str] = &["token_put", "secrets_put", "session", "sealed_secrets_v1"];

/// A section of `status` supplied by another part of the agent (port detection, firewall):
/// called on every `status` request, on the blocking pool, so it may take a lock.
pub type StatusSection = Arc<dyn Fn() -> Value + Send + Sync>;
/// A long-running request: its own deadline (not the agent's `request_timeout`) and the work,
/// polled on the connection's task so the connection keeps serving other requests.
pub struct Job {
    /// How long the work may take.
    pub deadline: Duration,
    /// The work.
    pub work: Pin<Box<dyn Future<Output = Result<Value, WireError>> + Send>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job with a deadline.
    pub fn new(
        deadline: Duration,
        work: impl Future<Output = Result<Value, WireError>> + Send + 'static,
    ) -> Self {
        Self {
            deadline,
            work: Box::pin(work),
        }
    }

    /// A job whose result is already known (a field error).
    pub fn ready(result: Result<Value, WireError>) -> Self {
        Self::new(Duration::from_secs(1), std::future::ready(result))
    }
}

/// Routes requests to their handlers.
pub struct Dispatcher {
    facts: AgentFacts,
    service: Option<Arc<dyn SecretsService>>,
    codespace: Mutex<CodespaceIdentity>,
    health: Arc<HealthSampler>,
    ports: Option<Arc<PortsService>>,
    sections: Mutex<Vec<(&'static str, StatusSection)>>,
    lifecycle: Option<Arc<LifecycleService>>,
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
        Self {
            facts,
            service,
            codespace: Mutex::new(codespace),
            health,
            ports: None,
            sections: Mutex::new(Vec::new()),
            lifecycle: None,
        }
    }

    /// Adds the port service (`ports_*` requests, `grant_key_put`, `forward` connections).
    pub fn with_ports(mut self, ports: Arc<PortsService>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// What a `forward` connection needs: the port service and the codespace's identity now.
    pub fn forward_context(&self) -> ForwardContext {
        self.ports
            .as_ref()
            .map(|p| (p.clone(), self.lock_codespace().clone()))
    }

    /// Adds a `status` section named `name`, filled by `section` at each request.
    pub fn add_status_section(&self, name: &'static str, section: StatusSection) {
        lock_ignoring_poison(&self.sections).push((name, section));
    }

    /// Adds the lifecycle service (lifecycle commands, extension installs, config watch).
    pub fn with_lifecycle(mut self, lifecycle: Arc<LifecycleService>) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// A long-running request becomes a [`Job`]; any other is handed back for [`Self::handle`].
    pub fn start_job(&self, req: Request) -> Result<Job, Request> {
        let Some(lifecycle) = &self.lifecycle else {
            return Err(req);
        };
        if !super::lifecycle::CAPABILITIES.contains(&req.kind.as_str()) {
            return Err(req);
        }
        let identity = self.lock_codespace().clone();
        let kind = req.kind;
        Ok(lifecycle
            .job(&kind, req.fields, &identity)
            .unwrap_or_else(|| Job::ready(Err(HandlerError::Unsupported(kind.clone()).wire()))))
    }

    /// The capability list announced in `welcome` and `status`.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = BASE_CAPABILITIES.iter().map(|s| (*s).to_owned()).collect();
        if self.service.is_some() {
            caps.extend(SERVICE_CAPABILITIES.iter().map(|s| (*s).to_owned()));
        }
        if self.ports.is_some() {
            caps.extend(
                super::ports::service::REQUESTS
                    .iter()
                    .map(|s| (*s).to_owned()),
            );
            caps.push("forward".to_owned());
        }
        if self.lifecycle.is_some() {
            caps.extend(
                super::lifecycle::CAPABILITIES
                    .iter()
                    .map(|s| (*s).to_owned()),
            );
        }
        caps
    }

    /// Whether a request type is answered inline on the connection's task: it must be cheap and
    /// never block (no file or `/proc` I/O). Everything else runs on the blocking pool.
    pub fn is_inline(kind: &str) -> bool {
        // `forward_tickets`: random bytes and a set insert; a host refills its tickets between
        // forward connections, so a blocking-pool hop would be latency for nothing.
        kind == "ping" || kind == "forward_tickets"
    }

    /// Handles one request.
    pub fn handle(&self, req: Request) -> Result<Value, HandlerError> {
        match req.kind.as_str() {
            "ping" => Ok(json!({"pong": true})),
            "status" => Ok(self.status()),
            "token_put" => Ok(self.service(&req.kind)?.put_token(req.fields)?),
            "secrets_put" => Ok(self.service(&req.kind)?.put_secrets(req.fields)?),
            "session" => self.session(req.fields),
            "ports_list" | "ports_visibility" | "grant_key_put" | "forward_tickets" => {
                let ports = self
                    .ports
                    .as_ref()
                    .ok_or_else(|| HandlerError::Unsupported(req.kind.clone()))?;
                let codespace = self.lock_codespace().clone();
                Ok(ports.handle(&req.kind, req.fields, &codespace)?)
            }
            other => Err(HandlerError::Unsupported(other.to_owned())),
        }
    }

    fn service(&self, kind: &str) -> Result<&Arc<dyn SecretsService>, HandlerError> {
        self.service
            .as_ref()
            .ok_or_else(|| HandlerError::NoService(kind.to_owned()))
    }

    fn session(&self, mut fields: Map<String, Value>) -> Result<Value, HandlerError> {
        let service = self.service("session")?;
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
        let mut report = service.session(kind)?;
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
        if let Value::Object(m) = &mut report {
            m.insert("codespace".into(), json!(*self.lock_codespace()));
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
    pub fn status(&self) -> Value {
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
        Request {
            id: 1,
            kind: kind.into(),
            timeout_ms: None,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
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
    }

    #[test]
    fn unknown_types_are_unsupported() {
        let e = dispatcher(None)
            .handle(req("reboot", json!({})))
            .unwrap_err();
        assert_eq!(e.wire().code, ErrorCode::Unsupported);
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
