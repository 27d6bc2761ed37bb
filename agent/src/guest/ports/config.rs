//! The `ports` section of the agent's configuration.
//!
//! ```jsonc
//! "ports": {
//!   // Ports that carry connections to the codespace itself: never org or public, forwarded
//!   // only for the creator. 22 = sshd, 2222 = the devcontainer `sshd` feature's port,
//!   // 16634 = the IDE server (set it to your image's IDE server port).
//!   "owner_only": [22, 2222, 16634],
//!   // The organization policy: which visibilities may be chosen (private always may).
//!   "allowed_visibilities": ["private", "org", "public"],
//!   "never_forward": [],              // ports the agent refuses to forward at all
//!   "max_connections_total": 4096,    // live forwarded connections, all ports together
//!   "max_connections_per_port": 1024,
//!   "connect_timeout_ms": 2000        // connecting to 127.0.0.1:PORT / [::1]:PORT
//! }
//! ```
//!
//! The organization policy comes from this file only (the host writes it when it provisions
//! the VM); a change takes effect at the next agent start, which is a codespace restart.

use std::collections::BTreeSet;
use std::time::Duration;

use codespace_policy::ports::{AllowedVisibilities, Visibility};
use serde::Deserialize;

use crate::guest::config::{positive, ConfigError};

/// Default owner-only ports (see the module docs).
pub(crate) const DEFAULT_OWNER_ONLY: [u16; 3] = [22, 2222, 16634];

/// The section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in the module's example
pub struct RawPortsConfig {
    pub(crate) owner_only: Option<Vec<u16>>,
    pub(crate) allowed_visibilities: Option<Vec<Visibility>>,
    pub(crate) never_forward: Option<Vec<u16>>,
    pub(crate) max_connections_total: Option<usize>,
    pub(crate) max_connections_per_port: Option<usize>,
    pub(crate) connect_timeout_ms: Option<u64>,
}

/// The typed section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortsConfig {
    /// Owner-only ports.
    pub(crate) owner_only: BTreeSet<u16>,
    /// The organization's allowed visibilities.
    pub(crate) allowed: AllowedVisibilities,
    /// Ports never forwarded.
    pub(crate) never_forward: BTreeSet<u16>,
    /// Live forwarded connections in total.
    pub(crate) max_connections_total: usize,
    /// Live forwarded connections per port.
    pub(crate) max_connections_per_port: usize,
    /// Deadline for connecting to the local listener.
    pub(crate) connect_timeout: Duration,
}

impl Default for PortsConfig {
    fn default() -> Self {
        Self {
            owner_only: DEFAULT_OWNER_ONLY.into_iter().collect(),
            allowed: AllowedVisibilities::ALL,
            never_forward: BTreeSet::new(),
            max_connections_total: 4096,
            max_connections_per_port: 1024,
            connect_timeout: Duration::from_millis(2000),
        }
    }
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.to_owned(),
    }
}

impl PortsConfig {
    /// Builds the typed section; a missing section is all defaults.
    pub(crate) fn from_raw(raw: Option<RawPortsConfig>) -> Result<Self, ConfigError> {
        let raw = raw.unwrap_or_default();
        let d = Self::default();
        let ports = |key: &'static str, list: Option<Vec<u16>>, default: BTreeSet<u16>| match list {
            None => Ok(default),
            Some(l) if l.contains(&0) => Err(invalid(key, "port 0 is not a port")),
            Some(l) => Ok(l.into_iter().collect()),
        };
        Ok(Self {
            owner_only: ports("ports.owner_only", raw.owner_only, d.owner_only)?,
            allowed: raw
                .allowed_visibilities
                .map_or(d.allowed, |l| AllowedVisibilities::from_list(&l)),
            never_forward: ports("ports.never_forward", raw.never_forward, d.never_forward)?,
            max_connections_total: positive(
                "ports.max_connections_total",
                raw.max_connections_total,
                d.max_connections_total,
            )?,
            max_connections_per_port: positive(
                "ports.max_connections_per_port",
                raw.max_connections_per_port,
                d.max_connections_per_port,
            )?,
            connect_timeout: match raw.connect_timeout_ms {
                Some(0) => {
                    return Err(invalid(
                        "ports.connect_timeout_ms",
                        "must be greater than zero",
                    ))
                }
                Some(ms) => Duration::from_millis(ms),
                None => d.connect_timeout,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let d = PortsConfig::from_raw(None).unwrap();
        assert!(d.owner_only.contains(&22) && d.owner_only.contains(&16634));
        assert!(d.allowed.allows(Visibility::Public));
        let raw: RawPortsConfig = serde_json::from_value(serde_json::json!({
            "owner_only": [2200],
            "allowed_visibilities": ["private", "org"],
            "max_connections_per_port": 3
        }))
        .unwrap();
        let c = PortsConfig::from_raw(Some(raw)).unwrap();
        assert_eq!(c.owner_only, [2200].into_iter().collect());
        assert!(c.allowed.allows(Visibility::Org) && !c.allowed.allows(Visibility::Public));
        assert_eq!(c.max_connections_per_port, 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (raw, key) in [
            (serde_json::json!({"owner_only": [0]}), "ports.owner_only"),
            (
                serde_json::json!({"max_connections_total": 0}),
                "ports.max_connections_total",
            ),
            (
                serde_json::json!({"connect_timeout_ms": 0}),
                "ports.connect_timeout_ms",
            ),
        ] {
            let raw: RawPortsConfig = serde_json::from_value(raw).unwrap();
            let err = PortsConfig::from_raw(Some(raw)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        assert!(
            serde_json::from_value::<RawPortsConfig>(serde_json::json!({"ownr_only": []})).is_err()
        );
        assert!(serde_json::from_value::<RawPortsConfig>(
            serde_json::json!({"allowed_visibilities": ["secret"]})
        )
        .is_err());
    }
}
