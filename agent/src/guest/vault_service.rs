//! The vault behind the dispatcher's [`SecretsService`] boundary, and the task that turns the
//! vault's expiry events into wire events.
//!
//! Request fields are parsed into the vault's own typed deliveries here ([`TokenPut`],
//! [`SealedSecret`]); a parse failure is an `invalid_argument` naming the field, never echoing a
//! value. Vault errors map onto service errors by one exhaustive `match`.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::service::{EventSink, SecretsService, ServiceError, SessionKind};
use super::vault::{run_expiry, SessionEvent, TokenPut, Vault, VaultError, VaultEvent};
use crate::seal::SealedSecret;
use crate::wire::Event;

/// The vault as a [`SecretsService`]; the clock is the wall clock.
#[derive(Debug, Clone)]
pub struct VaultService {
    vault: Vault,
}

impl VaultService {
    /// Wraps a vault.
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }
}

fn map_vault_error(e: &VaultError) -> ServiceError {
    match e {
        VaultError::Token(t) => ServiceError::InvalidArgument(t.to_string()),
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
        }
        Ok(v)
    }

    fn status(&self) -> Value {
        serde_json::to_value(self.vault.status()).unwrap_or(Value::Null)
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
