//! The in-VM firewall (defence in depth behind the host's isolation): an nftables table owned by
//! the agent that drops new inbound connections on every interface except loopback and drops
//! outbound traffic to internal address ranges, so codespaces cannot reach each other while
//! outbound internet stays open. What each rule does and why: [`ruleset`].
//!
//! ```text
//!  Agent::run ── Firewall::apply(config) ── nft -f -  (one transaction: replace table inet T)
//!      │             └─ status {enabled, applied, table, error?} ─▶ `status` request
//!      └ after the server drained ── Firewall::remove ── nft delete table inet T
//! ```
//!
//! Failure policy: if `nft` is missing or refuses the ruleset, the agent **still starts**, logs a
//! warning and reports `applied: false` with the reason in `status`. The firewall is a second
//! layer; refusing to start would take away the control channel (token, secrets, forwarding)
//! over a missing package, and the host, which reads `status`, is the party that can act on it.
//! A host that requires the firewall checks `firewall.applied`.
//!
//! ```jsonc
//! "firewall": {
//!   "enabled": false,
//!   "table": "codespace_agent",          // nft table `inet <table>`, owned by the agent
//!   "blocked_ranges": [ ... ],           // replaces DEFAULT_BLOCKED_RANGES when given
//!   "allowed_ranges": [],                // exceptions inside blocked ranges
//!   "internal_interfaces": ["docker0", "br-*", "podman*", "cni*"], // bridges inside the VM
//!   "allow_resolvers": true,             // DNS (port 53) to the nameservers of resolv.conf
//!   "nft": "nft"                         // the nft binary (PATH is searched)
//! }
//! ```

pub(crate) mod cidr;
pub mod ruleset;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::cidr::{Cidr, CidrError, IfacePattern};
use self::ruleset::Plan;

/// Internal ranges blocked by default, with why:
///
/// | range | what |
/// |---|---|
/// | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` | RFC 1918 private networks: other VMs, the provider's internal services |
/// | `100.64.0.0/10` | RFC 6598 shared address space: carrier-grade NAT, some clouds' internal networks, Tailscale |
/// | `169.254.0.0/16` | link-local, including cloud metadata services (`169.254.169.254`): the workload has no business with the host cloud's credentials; the agent gets what it needs over vsock |
/// | `fc00::/7` | IPv6 unique local addresses (the IPv6 RFC 1918) |
/// | `fe80::/10` | IPv6 link-local (neighbour discovery stays allowed by its own rule) |
///
/// What must stay reachable is handled by rules, not by holes in this list: the VM's own
/// addresses (they leave through `lo`), DHCP, IPv6 neighbour discovery, DNS to the resolvers of
/// `/etc/resolv.conf` (`allow_resolvers`) and container bridges inside the VM
/// (`internal_interfaces`; Docker's default `172.17.0.0/16` is inside `172.16.0.0/12`).
/// Anything else the VM needs inside these ranges goes into `allowed_ranges`.
pub(crate) const DEFAULT_BLOCKED_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];
/// Container bridges that stay inside the VM (Docker, Docker networks, Podman, CNI).
pub(crate) const DEFAULT_INTERNAL_INTERFACES: &[&str] = &["docker0", "br-*", "podman*", "cni*"];
/// Default table name.
pub(crate) const DEFAULT_TABLE: &str = "codespace_agent";
/// Where nameservers are read for `allow_resolvers` (systemd-resolved's upstream list too: its
/// stub at 127.0.0.53 forwards there).
const RESOLV_CONF: &[&str] = &["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];
/// `nft` never takes this long; the bound keeps a hung binary from holding up start or stop.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `firewall` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in the module's example
pub struct RawFirewallConfig {
    pub enabled: Option<bool>,
    pub table: Option<String>,
    pub blocked_ranges: Option<Vec<String>>,
    pub allowed_ranges: Option<Vec<String>>,
    pub internal_interfaces: Option<Vec<String>>,
    pub allow_resolvers: Option<bool>,
    pub nft: Option<PathBuf>,
}

/// The typed, valid firewall configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Whether the agent installs the table.
    pub(crate) enabled: bool,
    /// Table name (letters, digits, `_`; starts with a letter; at most 64).
    pub(crate) table: String,
    /// Outbound destinations dropped.
    pub(crate) blocked: Vec<Cidr>,
    /// Exceptions inside the blocked ranges.
    pub(crate) allowed: Vec<Cidr>,
    /// Output interfaces never blocked.
    pub(crate) internal_interfaces: Vec<IfacePattern>,
    /// DNS to resolv.conf's nameservers stays allowed.
    pub(crate) allow_resolvers: bool,
    /// The nft binary.
    pub(crate) nft: PathBuf,
}

/// A firewall setting with an invalid value; names the key and, for lists, the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallConfigError {
    /// A list entry is not a valid range or interface name.
    #[error("index {index}: {source}")]
    Entry {
        /// `firewall.blocked_ranges`, `firewall.allowed_ranges` or `firewall.internal_interfaces`.
        key: &'static str,
        /// Position in the list.
        index: usize,
        /// Why.
        source: CidrError,
    },
    /// The table name could be read as nft syntax.
    #[error("`{0}` is not a table name (a letter, then letters, digits or _; at most 64)")]
    Table(String),
}

impl FirewallConfigError {
    /// The config key the error is about.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Self::Entry { key, .. } => key,
            Self::Table(_) => "firewall.table",
        }
    }
}

fn parse_list<T: std::str::FromStr<Err = CidrError>>(
    key: &'static str,
    items: Vec<String>,
) -> Result<Vec<T>, FirewallConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(index, s)| {
            s.trim()
                .parse()
                .map_err(|source| FirewallConfigError::Entry { key, index, source })
        })
        .collect()
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl FirewallConfig {
    /// Validates the raw section (absent = defaults, disabled).
    pub fn from_raw(raw: RawFirewallConfig) -> Result<Self, FirewallConfigError> {
        let table = raw.table.unwrap_or_else(|| DEFAULT_TABLE.into());
        let valid_table = table.len() <= 64
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_table {
            return Err(FirewallConfigError::Table(table));
        }
        Ok(Self {
            enabled: raw.enabled.unwrap_or(false),
            table,
            blocked: parse_list(
                "firewall.blocked_ranges",
                raw.blocked_ranges
                    .unwrap_or_else(|| owned(DEFAULT_BLOCKED_RANGES)),
            )?,
            allowed: parse_list(
                "firewall.allowed_ranges",
                raw.allowed_ranges.unwrap_or_default(),
            )?,
            internal_interfaces: parse_list(
                "firewall.internal_interfaces",
                raw.internal_interfaces
                    .unwrap_or_else(|| owned(DEFAULT_INTERNAL_INTERFACES)),
            )?,
            allow_resolvers: raw.allow_resolvers.unwrap_or(true),
            nft: raw.nft.unwrap_or_else(|| "nft".into()),
        })
    }

    /// The plan for [`ruleset::ruleset`], given the nameservers found on this machine. Only
    /// resolvers inside a blocked range need (and get) an exception.
    pub fn plan(&self, nameservers: &[IpAddr]) -> Plan {
        let mut resolvers: Vec<IpAddr> = if self.allow_resolvers {
            nameservers
                .iter()
                .copied()
                .filter(|ip| self.blocked.iter().any(|c| c.contains(*ip)))
                .collect()
        } else {
            Vec::new()
        };
        resolvers.sort_unstable();
        resolvers.dedup();
        Plan {
            table: self.table.clone(),
            blocked: self.blocked.clone(),
            allowed: self.allowed.clone(),
            resolvers,
            internal_interfaces: self.internal_interfaces.clone(),
        }
    }
}

/// The `nameserver` addresses of a resolv.conf (zone suffixes like `%eth0` dropped; other lines
/// and malformed addresses ignored, as the C resolver does).
pub(crate) fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let a = w.next()?;
            a.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The `firewall` section of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FirewallStatus {
    /// Configured on.
    pub(crate) enabled: bool,
    /// The table is loaded.
    pub(crate) applied: bool,
    /// Its name (`inet <table>`).
    pub(crate) table: String,
    /// Why it is not applied, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Why `nft` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum NftError {
    /// The binary could not be started (not installed?).
    #[error("cannot run {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{path} failed ({status}): {stderr}")]
    Failed {
        /// The binary.
        path: PathBuf,
        /// Exit status.
        status: String,
        /// What it said (trimmed, bounded).
        stderr: String,
    },
    /// It did not finish in time and was killed.
    #[error("{path} did not finish within {timeout:?}")]
    Timeout {
        /// The binary.
        path: PathBuf,
        /// The bound.
        timeout: Duration,
    },
}

/// Runs `nft ARGS`, feeding `stdin`; bounded by [`NFT_TIMEOUT`].
fn nft(path: &Path, args: &[&str], stdin: &str) -> Result<(), NftError> {
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn {
            path: path.to_owned(),
            source,
        })?;
    if let Some(mut input) = child.stdin.take() {
        // A write error shows up as nft's own failure below.
        let _ = input.write_all(stdin.as_bytes());
    }
    let deadline = Instant::now() + NFT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NftError::Timeout {
                    path: path.to_owned(),
                    timeout: NFT_TIMEOUT,
                });
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let mut stderr = stderr.trim().to_owned();
    if stderr.len() > 2000 {
        let cut = (0..=2000)
            .rev()
            .find(|i| stderr.is_char_boundary(*i))
            .unwrap_or(0);
        stderr.truncate(cut);
        stderr.push('…');
    }
    Err(NftError::Failed {
        path: path.to_owned(),
        status: status.to_string(),
        stderr,
    })
}

/// The agent's table while it is loaded; removed by [`Firewall::remove`] or, as a last resort,
/// on drop (an early error return from `Agent::run` must not leave the VM firewalled by a dead
/// agent).
#[derive(Debug)]
pub(crate) struct Firewall {
    config: FirewallConfig,
    status: FirewallStatus,
}

impl Firewall {
    /// Installs the table if enabled. Never fails: a failure is logged and kept in the status.
    pub(crate) fn apply(config: &FirewallConfig) -> Self {
        let mut status = FirewallStatus {
            enabled: config.enabled,
            applied: false,
            table: config.table.clone(),
            error: None,
        };
        if config.enabled {
            let found: Vec<IpAddr> = RESOLV_CONF
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .flat_map(|t| nameservers(&t))
                .collect();
            let text = ruleset::ruleset(&config.plan(&found));
            match nft(&config.nft, &["-f", "-"], &text) {
                Ok(()) => {
                    status.applied = true;
                    tracing::info!(table = %config.table, blocked = config.blocked.len(), "firewall applied");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "firewall NOT applied; the agent runs without it");
                    status.error = Some(e.to_string());
                }
            }
        }
        Self {
            config: config.clone(),
            status,
        }
    }

    /// The `firewall` section of `status`.
    pub(crate) fn status(&self) -> FirewallStatus {
        self.status.clone()
    }

    /// Deletes the table (if this agent applied it).
    pub(crate) fn remove(&mut self) {
        if !self.status.applied {
            return;
        }
        let table = self.config.table.as_str();
        match nft(&self.config.nft, &["delete", "table", "inet", table], "") {
            Ok(()) => tracing::info!(table, "firewall removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove the firewall table"),
        }
        self.status.applied = false;
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_disabled_and_valid() {
        let c = FirewallConfig::from_raw(RawFirewallConfig::default()).unwrap();
        assert!(!c.enabled);
        assert_eq!(c.table, "codespace_agent");
        assert_eq!(c.blocked.len(), DEFAULT_BLOCKED_RANGES.len());
        assert_eq!(c.internal_interfaces.len(), 4);
        assert!(c.allow_resolvers);
        // The default list has no host bits, no duplicates.
        let mut b = c.blocked.clone();
        b.dedup();
        assert_eq!(b.len(), c.blocked.len());
    }

    #[test]
    fn errors_name_key_and_index() {
        let raw: RawFirewallConfig = serde_json::from_str(
            r#"{"enabled": true, "blocked_ranges": ["10.0.0.0/8", "fc00::/7", "10.1.2.3/16"]}"#,
        )
        .unwrap();
        let e = FirewallConfig::from_raw(raw).unwrap_err();
        assert_eq!(e.key(), "firewall.blocked_ranges");
        let msg = e.to_string();
        assert!(
            msg.contains("index 2") && msg.contains("10.1.0.0/16"),
            "{msg}"
        );
        let e = FirewallConfig::from_raw(RawFirewallConfig {
            allowed_ranges: Some(vec!["nope".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            (e.key(), e.to_string().contains("index 0")),
            ("firewall.allowed_ranges", true)
        );
        let e = FirewallConfig::from_raw(RawFirewallConfig {
            internal_interfaces: Some(vec!["docker0".into(), "a b".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key(), "firewall.internal_interfaces");
        for bad in ["", "1abc", "x; flush ruleset", "a-b", &"a".repeat(65)] {
            let e = FirewallConfig::from_raw(RawFirewallConfig {
                table: Some(bad.into()),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(e.key(), "firewall.table", "{bad}");
        }
        assert!(serde_json::from_str::<RawFirewallConfig>(r#"{"enable": true}"#).is_err());
    }

    #[test]
    fn resolvers_get_an_exception_only_inside_blocked_ranges() {
        let text = "# comment\nnameserver 10.0.0.2\nnameserver 1.1.1.1\nnameserver fe80::1%eth0\n\
                    nameserver bogus\nsearch example.com\nnameserver 10.0.0.2\n";
        let ns = nameservers(text);
        assert_eq!(ns.len(), 4);
        let c = FirewallConfig::from_raw(RawFirewallConfig::default()).unwrap();
        let p = c.plan(&ns);
        let want: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fe80::1".parse().unwrap()];
        assert_eq!(p.resolvers, want);
        let off = FirewallConfig {
            allow_resolvers: false,
            ..c
        };
        assert!(off.plan(&ns).resolvers.is_empty());
    }

    #[test]
    fn a_missing_nft_is_reported_not_fatal() {
        let c = FirewallConfig {
            enabled: true,
            nft: "/nonexistent/nft".into(),
            ..FirewallConfig::from_raw(RawFirewallConfig::default()).unwrap()
        };
        let mut f = Firewall::apply(&c);
        let s = f.status();
        assert!(s.enabled && !s.applied);
        assert!(
            s.error.as_deref().unwrap().contains("/nonexistent/nft"),
            "{s:?}"
        );
        f.remove(); // nothing applied: nothing to do, no error
        let off = Firewall::apply(&FirewallConfig {
            enabled: false,
            ..c
        });
        assert_eq!(off.status().error, None);
        assert_eq!(
            serde_json::to_value(off.status()).unwrap(),
            serde_json::json!({"enabled": false, "applied": false, "table": "codespace_agent"})
        );
    }

    #[test]
    fn a_failing_nft_reports_its_stderr() {
        // A stand-in that fails like nft does (no executable written: avoids ETXTBSY races).
        let e = nft(
            Path::new("/bin/sh"),
            &[
                "-c",
                "cat >/dev/null; echo 'Error: Could not process rule' >&2; exit 1",
            ],
            "table inet x {}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("Could not process rule"), "{e}");
    }
}
