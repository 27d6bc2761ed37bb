//! The vault behind the dispatcher's [`SecretsService`] boundary, and the task that turns the
//! vault's expiry events into wire events.
//!
//! Request fields are parsed into the vault's own typed deliveries here ([`TokenPut`],
//! [`SealedSecret`], [`RegistryPut`]); a parse failure is an `invalid_argument` naming the
//! field, never echoing a value. Vault errors map onto service errors by one exhaustive `match`.
//!
//! After every change to the registries held (a delivery, a removal, a suspend, a prebuild
//! starting or ending) the codespace user's Docker configuration is brought in line
//! ([`DockerConfigSync`]); the answer carries what that did under `docker_config`, and so does
//! `status` (the last sync): a refused `config.json` is reported there, never clobbered.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::registry::DockerConfigSync;
use super::service::{EventSink, SecretsService, ServiceError, SessionKind};
use super::vault::{
    run_expiry, RegistryPut, SessionEvent, TokenPut, Vault, VaultError, VaultEvent,
};
use crate::seal::SealedSecret;
use crate::wire::Event;

/// The vault as a [`SecretsService`]; the clock is the wall clock.
#[derive(Debug, Clone)]
pub struct VaultService {
    vault: Vault,
    docker: DockerConfigSync,
    /// What the last Docker configuration sync did (`status`).
    last_docker: Arc<Mutex<Value>>,
}

impl VaultService {
    /// Wraps a vault (without a Docker configuration to keep: see [`Self::with_docker_config`]).
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            docker: DockerConfigSync::Off,
            last_docker: Arc::new(Mutex::new(Value::Null)),
        }
    }

    /// Keeps the codespace user's `credHelpers` in line through `docker`.
    pub fn with_docker_config(mut self, docker: DockerConfigSync) -> Self {
        self.docker = docker;
        self
    }

    /// Brings the Docker configuration in line with the registries held now; what it did (or
    /// why it did not), for the answer and `status`.
    fn sync_docker(&self) -> Value {
        let hosts = self.vault.registry_hosts(OffsetDateTime::now_utc());
        let report = match self.docker.sync(&hosts) {
            Ok(None) => Value::Null,
            Ok(Some(report)) => serde_json::to_value(report).unwrap_or(Value::Null),
            Err(e) => {
                tracing::warn!(error = %e, "the Docker configuration was not updated");
                json!({"error": e.to_string()})
            }
        };
        if let Ok(mut last) = self.last_docker.lock() {
            last.clone_from(&report);
        }
        report
    }
}

fn map_vault_error(e: &VaultError) -> ServiceError {
    match e {
        VaultError::Token(t) => ServiceError::InvalidArgument(t.to_string()),
        VaultError::Registry(r) if r.code() == "prebuild" => {
            ServiceError::Unavailable(r.to_string())
        }
        VaultError::Registry(r) => ServiceError::InvalidArgument(r.to_string()),
        VaultError::EnvFile(_) | VaultError::OwnerMismatch { .. } => {
            tracing::error!(error = %e, "vault operation failed");
            ServiceError::Internal(format!("the agent could not update the environment: {e}"))
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ServiceError> {
    serde_json::to_value(v)
        .map_err(|e| ServiceError::Internal(format!("cannot encode the result: {e}")))
}

/// serde's messages name the field and the expected type; strip anything after a value quote to
/// be sure no token fragment is echoed.
fn field_error(what: &str, e: &serde_json::Error) -> ServiceError {
    let msg = e.to_string();
    let msg = msg.split(": \"").next().unwrap_or(&msg).to_owned();
    ServiceError::InvalidArgument(format!("{what}: {msg}"))
}

impl SecretsService for VaultService {
    fn public_key(&self) -> [u8; 32] {
        self.vault.public_key()
    }

    fn put_token(&self, fields: Map<String, Value>) -> Result<Value, ServiceError> {
        let put: TokenPut = serde_json::from_value(Value::Object(fields))
            .map_err(|e| field_error("token_put", &e))?;
        let status = self
            .vault
            .put_token(put, OffsetDateTime::now_utc())
            .map_err(|e| map_vault_error(&e))?;
        to_json(&status)
    }

    fn put_secrets(&self, mut fields: Map<String, Value>) -> Result<Value, ServiceError> {
        let secrets = fields.remove("secrets").ok_or_else(|| {
            ServiceError::InvalidArgument("secrets_put: missing `secrets`".into())
        })?;
        if let Some(k) = fields.keys().next() {
            return Err(ServiceError::InvalidArgument(format!(
                "secrets_put: unknown field `{k}`"
            )));
        }
        let delivery: Vec<SealedSecret> =
            serde_json::from_value(secrets).map_err(|e| field_error("secrets_put", &e))?;
        to_json(&self.vault.put_secrets(delivery))
    }

    fn session(&self, kind: SessionKind) -> Result<Value, ServiceError> {
        let event = match kind {
            SessionKind::Create => SessionEvent::Create,
            SessionKind::Resume => SessionEvent::Resume,
            SessionKind::Suspend => SessionEvent::Suspend,
        };
        let report = self
            .vault
            .session(event, OffsetDateTime::now_utc())
            .map_err(|e| map_vault_error(&e))?;
        let mut v = to_json(&report)?;
        if let Value::Object(m) = &mut v {
            m.insert("event".into(), kind.as_str().into());
            if kind == SessionKind::Suspend {
                m.insert("docker_config".into(), self.sync_docker());
            }
        }
        Ok(v)
    }

    fn set_prebuild(&self, prebuild: bool) -> Result<Value, ServiceError> {
        let report = self
            .vault
            .set_prebuild(prebuild, OffsetDateTime::now_utc())
            .map_err(|e| map_vault_error(&e))?;
        let mut v = to_json(&report)?;
        if let Value::Object(m) = &mut v {
            m.insert("docker_config".into(), self.sync_docker());
        }
        Ok(v)
    }

    fn put_registry(&self, fields: Map<String, Value>) -> Result<Value, ServiceError> {
        let put: RegistryPut = serde_json::from_value(Value::Object(fields))
            .map_err(|e| field_error("registry_put", &e))?;
        let status = self
            .vault
            .put_registry(put, OffsetDateTime::now_utc())
            .map_err(|e| map_vault_error(&e))?;
        Ok(json!({"registry": status, "docker_config": self.sync_docker()}))
    }

    fn remove_registry(&self, mut fields: Map<String, Value>) -> Result<Value, ServiceError> {
        let registry = match fields.remove("registry") {
            Some(Value::String(r)) => r,
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "registry_remove: `registry` must be a string".into(),
                ))
            }
        };
        if let Some(k) = fields.keys().next() {
            return Err(ServiceError::InvalidArgument(format!(
                "registry_remove: unknown field `{k}`"
            )));
        }
        let host = self
            .vault
            .remove_registry(&registry)
            .map_err(|e| map_vault_error(&e))?;
        Ok(json!({"removed": host, "docker_config": self.sync_docker()}))
    }

    fn status(&self) -> Value {
        let mut v = serde_json::to_value(self.vault.status()).unwrap_or(Value::Null);
        if let (Value::Object(m), Ok(last)) = (&mut v, self.last_docker.lock()) {
            m.insert("docker_config".into(), last.clone());
        }
        v
    }
}

/// Runs the vault's expiry driver and pushes its events (`token_expiring`, `token_expired`, ...)
/// to every control connection, until `shutdown`.
pub async fn forward_expiry(
    vault: Vault,
    sink: EventSink,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let (tx, mut rx) = mpsc::channel::<VaultEvent>(16);
    let forward = async move {
        while let Some(ev) = rx.recv().await {
            match serde_json::to_value(&ev) {
                Ok(Value::Object(obj)) => {
                    if let Some(event) = Event::from_object(&obj) {
                        tracing::info!(event = %event.name, "vault event");
                        let _ = sink.send(event);
                    }
                }
                _ => tracing::warn!("vault event could not be encoded"),
            }
        }
    };
    tokio::join!(
        run_expiry(vault, OffsetDateTime::now_utc, tx, shutdown),
        forward
    );
}
