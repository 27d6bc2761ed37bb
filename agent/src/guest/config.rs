//! The daemon's configuration: JSON with comments, every setting optional with a default that
//! suits a production VM.
//!
//! Two layers, as everywhere in this project: [`RawConfig`] mirrors the file as written (all
//! fields optional, unknown keys refused so a typo is not silently ignored), and
//! [`AgentConfig`] is the typed, valid result. Command-line flags override the file.
//!
//! ```jsonc
//! {
//!   "listen": "vsock:any:1023",        // or "unix:/path" (needs key_file)
//!   "allowed_cids": [2],               // vsock peers allowed to connect (2 = the host)
//!   "state_dir": "/run/codespace-agent",
//!   "key_file": null,                  // shared key (>= 32 bytes) for the HMAC handshake
//!   "user": null,                      // the codespace's remote user (owns the env file)
//!   "network_user": "codespace-agent", // identity of the network-facing process (see guest::privsep)
//!   "agent_id": null,                  // default: /etc/machine-id
//!   "workspace_dir": "/workspaces",    // disk metrics are for the file system holding it
//!   "max_frame_bytes": 1048576,
//!   "max_connections": 64,            // past the handshake; beyond: `busy` at once
//!   "max_handshakes": 16,             // still in the handshake; the oldest is evicted (`busy`)
//!   "max_requests_per_connection": 32,
//!   "handshake_timeout_ms": 5000,
//!   "request_timeout_ms": 30000,       // default and upper bound of a request's timeout_ms
//!   "heartbeat_interval_s": 30,
//!   "idle": { "timeout_s": 1800, "warn_s": 300, "terminals": "/dev/pts" }, // see guest::activity
//!   "audit_records": 10000,           // audit records kept for a host that reconnects (guest::trail)
//!   "shutdown_grace_ms": 5000,
//!   "token": { "expiry_lead_s": 600, "export_github_token": true, "host": "github.com" },
//!   "credential_uids": [],             // uids allowed to ask the git credential broker
//!   "docker_config_dir": null,         // the user's Docker config dir (default ~USER/.docker)
//!   "codespace": { "owner": null, "organization": null, "repository": null },
//!   "detect": { "poll_interval_ms": 150, "ignore_ports": [], "method": "auto" }, // see guest::detect
//!   "firewall": { "enabled": false },  // see guest::firewall for every key
//!   "ports": { "owner_only": [22, 2222, 16634], .. }, // see guest::ports::config
//!   "lifecycle": { "launcher": "sandbox", "command_timeout_s": 1800 }, // see lifecycle::settings
//!   "signing": { "wait_s": 10 }        // see guest::signing::config
//! }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::detect::{DetectOptions, RawDetectConfig};
use super::firewall::{FirewallConfig, RawFirewallConfig};
use super::transport::{AddrError, ListenAddr};
use crate::wire::DEFAULT_MAX_FRAME;

/// Default state directory (tmpfs).
pub const DEFAULT_STATE_DIR: &str = "/run/codespace-agent";
/// Default identity of the network-facing process (created by the package: sysusers.d).
pub(crate) const DEFAULT_NETWORK_USER: &str = "codespace-agent";
/// Default listen address.
pub(crate) const DEFAULT_LISTEN: &str = "vsock:any:1023";

/// The config file as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in the module's example
pub(crate) struct RawConfig {
    pub(crate) listen: Option<String>,
    pub(crate) allowed_cids: Option<Vec<u32>>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) network_user: Option<String>,
    pub(crate) agent_id: Option<String>,
    pub(crate) workspace_dir: Option<PathBuf>,
    pub(crate) max_frame_bytes: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_handshakes: Option<usize>,
    pub(crate) max_requests_per_connection: Option<usize>,
    pub(crate) handshake_timeout_ms: Option<u64>,
    pub(crate) request_timeout_ms: Option<u64>,
    pub(crate) heartbeat_interval_s: Option<u64>,
    pub(crate) shutdown_grace_ms: Option<u64>,
    pub(crate) token: Option<RawTokenConfig>,
    pub(crate) idle: Option<RawIdleConfig>,
    pub(crate) audit_records: Option<usize>,
    pub(crate) credential_uids: Option<Vec<u32>>,
    pub(crate) docker_config_dir: Option<PathBuf>,
    pub(crate) codespace: Option<CodespaceIdentity>,
    pub(crate) lifecycle: Option<super::lifecycle::settings::RawLifecycleConfig>,
    pub(crate) sandbox: Option<super::sandbox::RawSandboxConfig>,
    pub(crate) detect: Option<RawDetectConfig>,
    pub(crate) firewall: Option<RawFirewallConfig>,
    pub(crate) ports: Option<super::ports::RawPortsConfig>,
    pub(crate) signing: Option<super::signing::config::RawSigningConfig>,
}

/// The `token` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub(crate) struct RawTokenConfig {
    pub(crate) expiry_lead_s: Option<u64>,
    pub(crate) export_github_token: Option<bool>,
    pub(crate) host: Option<String>,
}

/// The `idle` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub(crate) struct RawIdleConfig {
    pub(crate) timeout_s: Option<u64>,
    pub(crate) warn_s: Option<u64>,
    pub(crate) terminals: Option<PathBuf>,
}

/// When the codespace counts as idle (guest::activity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdleConfig {
    /// No activity for this long is idle (default 30 minutes; an organization's
    /// `idle_timeout_minutes` may shorten it).
    pub(crate) timeout: Duration,
    /// `idle_warning` comes this long before (default 5 minutes).
    pub(crate) warn: Duration,
    /// Where the terminals whose input and output count are (default `/dev/pts`).
    pub(crate) terminals: PathBuf,
}

/// Who the codespace belongs to; reported by `status` under `codespace`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodespaceIdentity {
    /// Creator's login.
    pub owner: Option<String>,
    /// Organization the codespace is billed to.
    pub organization: Option<String>,
    /// Source repository, `OWNER/NAME`.
    pub repository: Option<String>,
    /// The creator's access to the repository (`none` ... `admin`): a lifecycle trust fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_access: Option<String>,
    /// The codespace is for a pull request from a fork: a lifecycle trust fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_from_fork: Option<bool>,
    /// The codespace is a prebuild: a lifecycle trust fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prebuild: Option<bool>,
}

impl CodespaceIdentity {
    /// The lifecycle trust facts (creator access, fork pull request, prebuild): when they
    /// change, what restricted runs left behind is killed.
    pub(crate) fn trust_facts(&self) -> (Option<String>, Option<bool>, Option<bool>) {
        (
            self.creator_access.clone(),
            self.pull_request_from_fork,
            self.prebuild,
        )
    }

    /// Fields set in `other` replace ours.
    pub(crate) fn merge(&mut self, other: &CodespaceIdentity) {
        if other.owner.is_some() {
            self.owner.clone_from(&other.owner);
        }
        if other.organization.is_some() {
            self.organization.clone_from(&other.organization);
        }
        if other.repository.is_some() {
            self.repository.clone_from(&other.repository);
        }
        if other.creator_access.is_some() {
            self.creator_access.clone_from(&other.creator_access);
        }
        if other.pull_request_from_fork.is_some() {
            self.pull_request_from_fork = other.pull_request_from_fork;
        }
        if other.prebuild.is_some() {
            self.prebuild = other.prebuild;
        }
    }
}

/// Token settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// How long before expiry `token_expiring` is pushed.
    pub expiry_lead: Duration,
    /// Whether the token is exported as `GITHUB_TOKEN` in the environment.
    pub export_github_token: bool,
    /// Host the credential broker answers for, unless `token put --host` says otherwise.
    pub host: String,
}

/// The typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // fields mirror the documented keys one to one
pub struct AgentConfig {
    pub(crate) listen: ListenAddr,
    pub(crate) allowed_cids: Vec<u32>,
    pub state_dir: PathBuf,
    pub(crate) key_file: Option<PathBuf>,
    pub user: Option<String>,
    /// The network-facing process's user (name, UID or UID:GID); `None` when privilege
    /// separation is off (`"network_user": "none"`, development only).
    pub network_user: Option<String>,
    pub(crate) agent_id: Option<String>,
    pub(crate) workspace_dir: PathBuf,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_handshakes: usize,
    pub(crate) max_requests_per_connection: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) shutdown_grace: Duration,
    pub token: TokenConfig,
    pub(crate) idle: IdleConfig,
    /// Audit records kept in memory for a host that reconnects (guest::trail).
    pub(crate) audit_records: usize,
    pub credential_uids: Vec<u32>,
    /// Where the agent writes the `credHelpers` entries of delivered registries (absolute;
    /// `None`: the codespace user's `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    pub(crate) codespace: CodespaceIdentity,
    pub(crate) lifecycle: super::lifecycle::settings::LifecycleConfig,
    pub(crate) sandbox: super::sandbox::SandboxConfig,
    pub(crate) detect: DetectOptions,
    pub(crate) firewall: FirewallConfig,
    pub(crate) ports: super::ports::PortsConfig,
    pub signing: super::signing::SigningConfig,
}

/// Everything wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON-with-comments or has unknown/mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message (position included).
        message: String,
    },
    /// A setting has an invalid value.
    #[error("config setting `{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
    /// The listen address is invalid.
    #[error("config setting `listen`: {0}")]
    Listen(#[from] AddrError),
}

/// Overrides from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
    /// `--user`.
    pub user: Option<String>,
}

/// Parses config text (JSON with comments and trailing commas).
pub(crate) fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let opts = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        ..Default::default()
    };
    let value: Option<serde_json::Value> = jsonc_parser::parse_to_serde_value(text, &opts)
        .map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    match value {
        None => Ok(RawConfig::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Reads and parses the config file, if one is given.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<AgentConfig, ConfigError> {
    let raw = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            parse_raw(&text, p)?
        }
        None => RawConfig::default(),
    };
    build(raw, overrides)
}

/// A count or duration setting that must not be zero (`None`: `default`). Every section of the
/// configuration checks its positive settings with this one function.
pub(crate) fn positive<T: Default + PartialEq>(
    key: &'static str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        Some(v) if v == T::default() => Err(ConfigError::Invalid {
            key,
            message: "must be greater than zero".into(),
        }),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// Builds the typed configuration from the raw one and the overrides.
pub(crate) fn build(raw: RawConfig, o: &Overrides) -> Result<AgentConfig, ConfigError> {
    let listen: ListenAddr = o
        .listen
        .as_deref()
        .or(raw.listen.as_deref())
        .unwrap_or(DEFAULT_LISTEN)
        .parse()?;
    let key_file = o.key_file.clone().or(raw.key_file);
    if matches!(listen, ListenAddr::Unix(_)) && key_file.is_none() {
        return Err(ConfigError::Invalid {
            key: "key_file",
            message: "the unix transport has no peer identity; a shared key file is required"
                .into(),
        });
    }
    let max_frame_bytes = positive(
        "max_frame_bytes",
        raw.max_frame_bytes.map(|v| v as u64),
        DEFAULT_MAX_FRAME as u64,
    )?;
    if max_frame_bytes > u64::from(u32::MAX) {
        return Err(ConfigError::Invalid {
            key: "max_frame_bytes",
            message: "must fit in 32 bits".into(),
        });
    }
    let token = raw.token.unwrap_or_default();
    let host = token.host.unwrap_or_else(|| "github.com".into());
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(ConfigError::Invalid {
            key: "token.host",
            message: format!("not a host name: {host:?}"),
        });
    }
    Ok(AgentConfig {
        listen,
        allowed_cids: raw.allowed_cids.unwrap_or_else(|| vec![2]),
        state_dir: o
            .state_dir
            .clone()
            .or(raw.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        key_file,
        user: o.user.clone().or(raw.user),
        network_user: match raw.network_user.as_deref() {
            None => Some(DEFAULT_NETWORK_USER.to_owned()),
            Some("none") => None,
            Some("") => {
                return Err(ConfigError::Invalid {
                    key: "network_user",
                    message: "empty; give a user name, UID:GID, or \"none\"".into(),
                })
            }
            Some(u) => Some(u.to_owned()),
        },
        agent_id: raw.agent_id,
        workspace_dir: raw.workspace_dir.unwrap_or_else(|| "/workspaces".into()),
        max_frame_bytes: max_frame_bytes as usize,
        max_connections: positive("max_connections", raw.max_connections.map(|v| v as u64), 64)?
            as usize,
        max_handshakes: positive("max_handshakes", raw.max_handshakes.map(|v| v as u64), 16)?
            as usize,
        max_requests_per_connection: positive(
            "max_requests_per_connection",
            raw.max_requests_per_connection.map(|v| v as u64),
            32,
        )? as usize,
        handshake_timeout: Duration::from_millis(positive(
            "handshake_timeout_ms",
            raw.handshake_timeout_ms,
            5_000,
        )?),
        request_timeout: Duration::from_millis(positive(
            "request_timeout_ms",
            raw.request_timeout_ms,
            30_000,
        )?),
        heartbeat_interval: Duration::from_secs(positive(
            "heartbeat_interval_s",
            raw.heartbeat_interval_s,
            30,
        )?),
        shutdown_grace: Duration::from_millis(raw.shutdown_grace_ms.unwrap_or(5_000)),
        token: TokenConfig {
            expiry_lead: Duration::from_secs(token.expiry_lead_s.unwrap_or(600)),
            export_github_token: token.export_github_token.unwrap_or(true),
            host,
        },
        idle: {
            let idle = raw.idle.unwrap_or_default();
            IdleConfig {
                timeout: Duration::from_secs(positive("idle.timeout_s", idle.timeout_s, 1800)?),
                warn: Duration::from_secs(idle.warn_s.unwrap_or(300)),
                terminals: idle.terminals.unwrap_or_else(|| "/dev/pts".into()),
            }
        },
        audit_records: positive(
            "audit_records",
            raw.audit_records,
            super::trail::DEFAULT_CAPACITY,
        )?,
        credential_uids: raw.credential_uids.unwrap_or_default(),
        docker_config_dir: match raw.docker_config_dir {
            Some(d) if !d.is_absolute() || d.parent().is_none() => {
                return Err(ConfigError::Invalid {
                    key: "docker_config_dir",
                    message: format!(
                        "must be an absolute directory path below /: {}",
                        d.display()
                    ),
                })
            }
            d => d,
        },
        codespace: raw.codespace.unwrap_or_default(),
        lifecycle: super::lifecycle::settings::LifecycleConfig::build(
            raw.lifecycle.unwrap_or_default(),
        )
        .map_err(|e| ConfigError::Invalid {
            key: e.key,
            message: format!("(in `lifecycle`) {}", e.message),
        })?,
        sandbox: super::sandbox::SandboxConfig::build(raw.sandbox)?,
        detect: DetectOptions::from_raw(raw.detect.unwrap_or_default()).map_err(|e| {
            ConfigError::Invalid {
                key: e.key(),
                message: e.to_string(),
            }
        })?,
        firewall: FirewallConfig::from_raw(raw.firewall.unwrap_or_default()).map_err(|e| {
            ConfigError::Invalid {
                key: e.key(),
                message: e.to_string(),
            }
        })?,
        ports: super::ports::PortsConfig::from_raw(raw.ports)?,
        signing: super::signing::SigningConfig::from_raw(raw.signing)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_production() {
        let c = build(RawConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "vsock:any:1023");
        assert_eq!(c.allowed_cids, vec![2]);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.max_frame_bytes, 1024 * 1024);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.token.expiry_lead, Duration::from_secs(600));
        assert_eq!(c.token.host, "github.com");
    }

    #[test]
    fn comments_trailing_commas_and_overrides() {
        let raw = parse_raw(
            "{ // dev\n \"listen\": \"unix:/tmp/x.sock\", \"key_file\": \"/k\", \"heartbeat_interval_s\": 2, /* c */ }",
            Path::new("c.jsonc"),
        )
        .unwrap();
        let c = build(
            raw,
            &Overrides {
                state_dir: Some("/s".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen, ListenAddr::Unix("/tmp/x.sock".into()));
        assert_eq!(c.state_dir, PathBuf::from("/s"));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = parse_raw("{\"listne\": \"x\"}", Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
        let raw = RawConfig {
            max_connections: Some(0),
            ..Default::default()
        };
        let err = build(raw, &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn detect_and_firewall_sections() {
        let raw = parse_raw(
            r#"{"detect": {"poll_interval_ms": 200, "ignore_ports": [22]},
                "firewall": {"enabled": true, "blocked_ranges": ["10.0.0.0/8"]}}"#,
            Path::new("c.jsonc"),
        )
        .unwrap();
        let c = build(raw, &Overrides::default()).unwrap();
        assert_eq!(c.detect.poll_interval, Duration::from_millis(200));
        assert!(c.firewall.enabled && c.firewall.blocked.len() == 1);
        let raw = parse_raw(
            r#"{"firewall": {"blocked_ranges": ["10.0.0.0/8", "300.1.1.1/8"]}}"#,
            Path::new("c.jsonc"),
        )
        .unwrap();
        let err = build(raw, &Overrides::default()).unwrap_err().to_string();
        assert!(
            err.contains("firewall.blocked_ranges") && err.contains("index 1"),
            "{err}"
        );
    }

    #[test]
    fn unix_needs_a_key() {
        let o = Overrides {
            listen: Some("unix:/tmp/a".into()),
            ..Default::default()
        };
        let err = build(RawConfig::default(), &o).unwrap_err().to_string();
        assert!(err.contains("key"), "{err}");
    }
}
