//! Container registry credentials in the vault: delivered sealed by the host, answered to the
//! Docker credential helper through the broker, never written to a file.
//!
//! ```text
//!  host ── registry_put {registry, username, secret: sealed, expires_at, scope?} ──┐
//!          open: the seal's name must be "registry:<host>" (binding), replay guard  │
//!          policy: check_delivery (prebuild, registry, username, secret, expiry)    ▼
//!                                                                    Registries { host → credential }
//!  docker ─► docker-credential-codespace get ─► broker ─► answer(server_url) ──┘
//!            policy::decide (prebuild, exact host, expiry) ─► {"ServerURL","Username","Secret"}
//! ```
//!
//! The secret is sealed exactly like an environment secret ([`crate::seal`]), under the name
//! [`seal_name`] of its registry: a ciphertext the host sealed for `ghcr.io` does not open as a
//! delivery for any other registry, and the vault's replay guard (shared with the secrets, in a
//! namespace of its own since `:` is never part of a secret's name) refuses a replayed one.
//! One credential per registry (Docker asks by host only, so two could not be told apart); a new
//! delivery for a registry replaces the old one. Expired credentials are never answered and are
//! wiped at the vault's next expiry poll.
//!
//! Values leave only in [`Registries::answer`], into a zeroizing buffer the broker writes to the
//! helper; reports and status carry the registry, username, expiry and scope.

use std::collections::BTreeMap;

use codespace_policy::container_registry::{
    self as policy, Delivery, DeliveryRefusal, Held, RegistryHost, RegistryRefusal,
};
use codespace_policy::ReasonCode as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::seal::{AgentKeyPair, ReplayGuard, SealError, SealedSecret, SecretValue};

/// Prefix of the name a registry secret is sealed under (see [`seal_name`]).
pub(crate) const SEAL_PREFIX: &str = "registry:";

/// The name the host seals a registry's secret under, and the vault expects: `registry:<host>`
/// with the host as [`RegistryHost::parse`] spells it.
pub(crate) fn seal_name(host: &RegistryHost) -> String {
    format!("{SEAL_PREFIX}{host}")
}

/// A `registry_put` as it arrives on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryPut {
    /// The registry (`ghcr.io`, `https://ghcr.io`, ...).
    pub registry: String,
    /// The username Docker gets.
    pub username: String,
    /// The secret, sealed under [`seal_name`] of the registry.
    pub secret: SealedSecret,
    /// When it stops being answered (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The owner whose packages it reaches (informational: Docker asks by host only, so the
    /// registry that issued the credential for that owner is what enforces it).
    #[serde(default)]
    pub scope: Option<String>,
}

/// Why a registry delivery or removal is refused. No secret inside.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The policy refused the delivery.
    #[error("registry_put: {0}")]
    Refused(#[from] DeliveryRefusal),
    /// The sealed secret did not open (tampered, another agent's key, replayed).
    #[error("registry_put: {0}")]
    Seal(#[from] SealError),
    /// The secret was sealed for another registry's name.
    #[error("registry_put: the secret is sealed as {sealed:?}, not as {expected:?}")]
    Misbound {
        /// The name it was sealed under.
        sealed: String,
        /// The name this registry's secret must be sealed under.
        expected: String,
    },
    /// `registry_remove` of a registry the vault does not hold.
    #[error("registry_remove: no credential for {0:?}")]
    NotHeld(String),
}

impl RegistryError {
    /// Stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.code(),
            Self::Seal(e) => e.code(),
            Self::Misbound { .. } => "misbound",
            Self::NotHeld(_) => "not-held",
        }
    }
}

/// One held credential.
struct Credential {
    username: String,
    secret: SecretValue,
    expires_at: OffsetDateTime,
    scope: Option<String>,
}

/// One registry in `status` and in a delivery's answer: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryStatus {
    /// The registry's host.
    pub registry: RegistryHost,
    /// The username Docker gets.
    pub username: String,
    /// When it stops being answered (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The owner whose packages it reaches, if the host said.
    pub scope: Option<String>,
}

/// The credentials the vault holds, by registry.
#[derive(Default)]
pub(crate) struct Registries {
    held: BTreeMap<RegistryHost, Credential>,
}

impl Registries {
    /// Opens and checks a delivery, then holds it (replacing the registry's earlier one).
    pub(crate) fn put(
        &mut self,
        put: RegistryPut,
        keys: &AgentKeyPair,
        replay: &mut ReplayGuard,
        prebuild: bool,
        now: OffsetDateTime,
    ) -> Result<RegistryStatus, RegistryError> {
        // A prebuild is refused before anything is opened.
        if prebuild {
            return Err(DeliveryRefusal::Prebuild.into());
        }
        let host = RegistryHost::parse(&put.registry).map_err(|reason| {
            DeliveryRefusal::InvalidRegistry {
                registry: put.registry.clone(),
                reason,
            }
        })?;
        let expected = seal_name(&host);
        if put.secret.name != expected {
            return Err(RegistryError::Misbound {
                sealed: put.secret.name.clone(),
                expected,
            });
        }
        replay.check(&put.secret)?;
        replay.record_ephemeral(&put.secret);
        let secret = keys.open(&put.secret)?;
        let delivery = Delivery {
            registry: &put.registry,
            username: &put.username,
            secret: secret.expose(),
            expires_at: put.expires_at,
            scope: put.scope.as_deref(),
        };
        let host = policy::check_delivery(&delivery, prebuild, self.held.keys(), now)?.into_inner();
        replay.record(&put.secret);
        let credential = Credential {
            username: put.username,
            secret,
            expires_at: put.expires_at,
            scope: put.scope,
        };
        let status = status_of(&host, &credential);
        self.held.insert(host, credential);
        Ok(status)
    }

    /// Forgets the credential of `registry` (any form [`RegistryHost::parse`] takes).
    pub(crate) fn remove(&mut self, registry: &str) -> Result<RegistryHost, RegistryError> {
        let not_held = || RegistryError::NotHeld(registry.to_owned());
        let host = RegistryHost::parse(registry).map_err(|_| not_held())?;
        self.held.remove(&host).map(|_| host).ok_or_else(not_held)
    }

    /// Forgets everything; how many credentials were held.
    pub(crate) fn clear(&mut self) -> usize {
        std::mem::take(&mut self.held).len()
    }

    /// The registries answered at `now`: the ones Docker should ask this helper about.
    pub(crate) fn live_hosts(&self, now: OffsetDateTime) -> Vec<RegistryHost> {
        self.held
            .iter()
            .filter(|(_, c)| now < c.expires_at)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Every held credential, without its secret.
    pub(crate) fn status(&self) -> Vec<RegistryStatus> {
        self.held.iter().map(|(h, c)| status_of(h, c)).collect()
    }

    /// The helper's `get`: the JSON answer Docker expects, for exactly the registry
    /// `server_url` names, or why not. The answer echoes `server_url` as Docker sent it
    /// (trimmed), as Docker's own helpers do.
    pub(crate) fn answer(
        &self,
        server_url: &str,
        prebuild: bool,
        now: OffsetDateTime,
    ) -> Result<(RegistryHost, Zeroizing<Vec<u8>>), RegistryRefusal> {
        let held = self.held.iter().map(|(host, c)| Held {
            host,
            expires_at: c.expires_at,
        });
        let host = policy::decide(server_url, prebuild, held, now)?;
        let credential = self
            .held
            .get(host.get())
            .ok_or(RegistryRefusal::UnknownRegistry)?;
        let secret = std::str::from_utf8(credential.secret.expose())
            .map_err(|_| RegistryRefusal::UnknownRegistry)?;
        // Room for the worst case of JSON escaping (6 bytes a character), so the buffer never
        // grows and leaves a copy of the secret behind in freed memory.
        let capacity = 64 + 6 * (server_url.len() + credential.username.len() + secret.len());
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer<'a> {
            #[serde(rename = "ServerURL")]
            server_url: &'a str,
            username: &'a str,
            secret: &'a str,
        }
        let answer = Answer {
            server_url: server_url.trim(),
            username: &credential.username,
            secret,
        };
        serde_json::to_writer(&mut *out, &answer).map_err(|_| RegistryRefusal::UnknownRegistry)?;
        out.push(b'\n');
        Ok((host.into_inner(), out))
    }

    /// The helper's `list`: Docker's key of every live registry → its username (no secret;
    /// nothing in a prebuild).
    pub(crate) fn list(&self, prebuild: bool, now: OffsetDateTime) -> Vec<u8> {
        let map: BTreeMap<&str, &str> = if prebuild {
            BTreeMap::new()
        } else {
            self.held
                .iter()
                .filter(|(_, c)| now < c.expires_at)
                .map(|(h, c)| (h.config_key(), c.username.as_str()))
                .collect()
        };
        let mut out = serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }

    /// Copies of every held secret, for redaction from lifecycle output.
    pub(crate) fn secrets(&self) -> Vec<Zeroizing<Vec<u8>>> {
        self.held
            .values()
            .map(|c| Zeroizing::new(c.secret.expose().to_vec()))
            .collect()
    }

    /// The earliest expiry still to come.
    pub(crate) fn next_deadline(&self) -> Option<OffsetDateTime> {
        self.held.values().map(|c| c.expires_at).min()
    }

    /// Wipes the credentials expired at `now`; their registries.
    pub(crate) fn expire(&mut self, now: OffsetDateTime) -> Vec<RegistryHost> {
        let expired: Vec<RegistryHost> = self
            .held
            .iter()
            .filter(|(_, c)| now >= c.expires_at)
            .map(|(h, _)| h.clone())
            .collect();
        for host in &expired {
            self.held.remove(host);
        }
        expired
    }
}

fn status_of(host: &RegistryHost, c: &Credential) -> RegistryStatus {
    RegistryStatus {
        registry: host.clone(),
        username: c.username.clone(),
        expires_at: c.expires_at,
        scope: c.scope.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::seal::seal;

    const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);
    const LATER: OffsetDateTime = datetime!(2026-11-26 03:00 UTC);

    fn put_for(keys: &AgentKeyPair, registry: &str, sealed_as: &str, secret: &str) -> RegistryPut {
        RegistryPut {
            registry: registry.into(),
            username: "octocat".into(),
            secret: seal(&keys.public_key(), sealed_as, 1, secret.as_bytes()).unwrap(),
            expires_at: LATER,
            scope: Some("octo".into()),
        }
    }

    #[test]
    fn a_delivery_opens_only_under_its_own_registry_and_only_once() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let mut r = Registries::default();
        // Sealed for ghcr.io, delivered as evil.com: refused, nothing held.
        let misbound = put_for(&keys, "evil.com", "registry:ghcr.io", "ghp_s");
        let err = r.put(misbound, &keys, &mut replay, false, NOW).unwrap_err();
        assert_eq!(err.code(), "misbound");
        assert!(r.status().is_empty());
        let put = put_for(&keys, "https://ghcr.io/", "registry:ghcr.io", "ghp_s");
        let status = r.put(put.clone(), &keys, &mut replay, false, NOW).unwrap();
        assert_eq!(status.registry.as_str(), "ghcr.io");
        assert_eq!(status.scope.as_deref(), Some("octo"));
        // The same ciphertext again is a replay.
        let err = r.put(put, &keys, &mut replay, false, NOW).unwrap_err();
        assert_eq!(err.code(), "replayed");
        // Nothing delivered in a prebuild, and the refusal never shows the secret.
        let err = r
            .put(
                put_for(&keys, "ghcr.io", "registry:ghcr.io", "ghp_s"),
                &keys,
                &mut replay,
                true,
                NOW,
            )
            .unwrap_err();
        assert_eq!(err.code(), "prebuild");
        assert!(!format!("{err} {err:?}").contains("ghp_s"));
    }

    #[test]
    fn answers_are_docker_json_for_the_exact_registry_and_list_has_no_secret() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let mut r = Registries::default();
        let put = put_for(&keys, "ghcr.io", "registry:ghcr.io", "ghp_\"quoted\"");
        r.put(put, &keys, &mut replay, false, NOW).unwrap();
        let (host, answer) = r.answer("https://ghcr.io\n", false, NOW).unwrap();
        assert_eq!(host.as_str(), "ghcr.io");
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ServerURL": "https://ghcr.io", "Username": "octocat", "Secret": "ghp_\"quoted\""})
        );
        assert_eq!(
            r.answer("ghcr.io.evil.com", false, NOW).unwrap_err(),
            RegistryRefusal::UnknownRegistry
        );
        assert_eq!(
            r.answer("ghcr.io", true, NOW).unwrap_err(),
            RegistryRefusal::Prebuild
        );
        let list = String::from_utf8(r.list(false, NOW)).unwrap();
        assert_eq!(list, "{\"ghcr.io\":\"octocat\"}\n");
        assert_eq!(r.list(true, NOW), b"{}\n");
        assert_eq!(String::from_utf8(r.list(false, LATER)).unwrap(), "{}\n");
    }

    #[test]
    fn expiry_wipes_and_removal_forgets() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let mut r = Registries::default();
        r.put(
            put_for(&keys, "ghcr.io", "registry:ghcr.io", "a"),
            &keys,
            &mut replay,
            false,
            NOW,
        )
        .unwrap();
        assert_eq!(r.next_deadline(), Some(LATER));
        assert_eq!(r.live_hosts(NOW).len(), 1);
        assert!(r.expire(NOW).is_empty());
        assert_eq!(
            r.answer("ghcr.io", false, LATER).unwrap_err(),
            RegistryRefusal::Expired
        );
        assert_eq!(r.expire(LATER)[0].as_str(), "ghcr.io");
        assert!(r.status().is_empty());
        assert_eq!(r.remove("ghcr.io").unwrap_err().code(), "not-held");
        r.put(
            RegistryPut {
                secret: seal(&keys.public_key(), "registry:ghcr.io", 2, b"b").unwrap(),
                ..put_for(&keys, "ghcr.io", "registry:ghcr.io", "b")
            },
            &keys,
            &mut replay,
            false,
            NOW,
        )
        .unwrap();
        assert_eq!(r.remove("https://GHCR.io/").unwrap().as_str(), "ghcr.io");
        assert!(r.live_hosts(NOW).is_empty());
    }
}
