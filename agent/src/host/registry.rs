//! Delivering container registry credentials (`registry_put`, `registry_remove`): the secret is
//! sealed on this side to the agent's boot key, exactly like an environment secret, under the
//! name `registry:<host>` that binds it to its registry (see
//! [`crate::guest::vault::registry`] for what the agent checks and answers).
//!
//! ```no_run
//! # async fn demo(client: &codespace_agent::host::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use codespace_agent::host::registry::{put, RegistryDelivery};
//! let expires_at = time::OffsetDateTime::now_utc() + time::Duration::hours(8);
//! let delivery = RegistryDelivery {
//!     registry: "ghcr.io",
//!     username: "octocat",
//!     secret: b"ghp_example",
//!     expires_at,
//!     scope: Some("octo-org"),
//! };
//! let answer = put(client, &delivery, std::time::Duration::from_secs(10)).await?;
//! println!("{answer}"); // {"registry": {...}, "docker_config": {...}}, never the secret
//! # Ok(()) }
//! ```

use std::time::Duration;

use codespace_policy::container_registry::{RegistryHost, RegistryHostError};
use serde_json::{Map, Value};

use super::{Client, ClientError};
use crate::guest::vault::registry::seal_name;
use crate::seal::{seal, SealError};

/// One registry credential to deliver: the policy's [`Delivery`] (the registry in any form
/// Docker takes, the username, the secret, sealed here and never sent in the clear, the expiry,
/// the owner it reaches), whose `Debug` never shows the secret.
pub use codespace_policy::container_registry::Delivery as RegistryDelivery;

/// Why a delivery could not be sent (nothing was).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryDeliveryError {
    /// The registry names no registry.
    #[error("registry {registry:?}: {reason}")]
    InvalidRegistry {
        /// As given.
        registry: String,
        /// Why.
        reason: RegistryHostError,
    },
    /// The secret could not be sealed.
    #[error("cannot seal the secret: {0}")]
    Seal(#[from] SealError),
    /// The expiry cannot be written as RFC 3339.
    #[error("expires_at: {0}")]
    Time(String),
    /// The agent refused it, or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The `registry_put` fields for `delivery`, sealed to `agent_public` with `generation` (which
/// must grow from one delivery of a registry to the next: [`crate::seal::generation_now`]).
pub fn put_fields(
    agent_public: &[u8; 32],
    delivery: &RegistryDelivery<'_>,
    generation: u64,
) -> Result<Map<String, Value>, RegistryDeliveryError> {
    let host = RegistryHost::parse(delivery.registry).map_err(|reason| {
        RegistryDeliveryError::InvalidRegistry {
            registry: delivery.registry.to_owned(),
            reason,
        }
    })?;
    let sealed = seal(agent_public, &seal_name(&host), generation, delivery.secret)?;
    let expires_at = delivery
        .expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| RegistryDeliveryError::Time(e.to_string()))?;
    let mut m = Map::new();
    m.insert("registry".into(), host.as_str().into());
    m.insert("username".into(), delivery.username.into());
    // Strings and a number: encoding cannot fail.
    m.insert(
        "secret".into(),
        serde_json::to_value(sealed).unwrap_or_default(),
    );
    m.insert("expires_at".into(), expires_at.into());
    if let Some(scope) = delivery.scope {
        m.insert("scope".into(), scope.into());
    }
    Ok(m)
}

/// Delivers `delivery` over `control`; the agent's answer (the registry's status and what the
/// Docker configuration sync did).
pub async fn put(
    control: &Client,
    delivery: &RegistryDelivery<'_>,
    timeout: Duration,
) -> Result<Value, RegistryDeliveryError> {
    let fields = put_fields(
        &control.info().public_key,
        delivery,
        crate::seal::generation_now(),
    )?;
    Ok(control.request("registry_put", fields, timeout).await?)
}

/// Makes the agent forget the credential of `registry`.
pub async fn remove(
    control: &Client,
    registry: &str,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mut fields = Map::new();
    fields.insert("registry".into(), registry.into());
    control.request("registry_remove", fields, timeout).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::seal::AgentKeyPair;

    #[test]
    fn the_secret_is_sealed_under_its_registrys_name_and_never_in_the_clear() {
        let agent = AgentKeyPair::generate().unwrap();
        let delivery = RegistryDelivery {
            registry: "https://GHCR.io/v2/",
            username: "octocat",
            secret: b"ghp_never_in_clear",
            expires_at: time::macros::datetime!(2026-11-26 03:00 UTC),
            scope: None,
        };
        let fields = put_fields(&agent.public_key(), &delivery, 7).unwrap();
        let text = serde_json::to_string(&fields).unwrap();
        assert!(!text.contains("ghp_never_in_clear"), "{text}");
        assert!(!format!("{delivery:?}").contains("ghp_never"));
        assert_eq!(fields["registry"], "ghcr.io");
        assert_eq!(fields["expires_at"], "2026-11-26T03:00:00Z");
        let sealed: crate::seal::SealedSecret =
            serde_json::from_value(fields["secret"].clone()).unwrap();
        assert_eq!(sealed.name, "registry:ghcr.io");
        assert_eq!(agent.open(&sealed).unwrap().expose(), b"ghp_never_in_clear");
        let bad = RegistryDelivery {
            registry: "ghcr.io@evil.com",
            ..delivery
        };
        assert!(matches!(
            put_fields(&agent.public_key(), &bad, 1),
            Err(RegistryDeliveryError::InvalidRegistry { .. })
        ));
    }
}
