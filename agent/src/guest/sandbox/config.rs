//! The `sandbox` section of the agent's configuration: default limits, default user, and the
//! restricted principal's world. (The search path and locale of every command are
//! `lifecycle.path` and `lifecycle.lang`.)
//!
//! ```jsonc
//! "sandbox": {
//!   "default_user": null,               // run user when the devcontainer names none
//!   "nproc": 4096,                      // RLIMIT_NPROC (per uid, system-wide: a backstop)
//!   "nofile": 65536,                    // RLIMIT_NOFILE
//!   "memory_max_bytes": 4294967296,     // cgroup memory.max (v1 memory.limit_in_bytes)
//!   "pids_max": 2048,                   // cgroup pids.max: the real fork-bomb limit
//!   "cgroup_parent": null,              // pure cgroup v2: the delegated parent (default: auto)
//!   "restricted_user": "codespace-restricted", // the restricted principal (never the creator, never root)
//!   "trusted_users": [],                // users a trusted repository's remoteUser/containerUser may name,
//!                                       // besides the configured user
//!   "restricted_root": "/var/lib/codespace-agent/restricted", // its per-codespace /tmp and /var/tmp
//!   "restricted_fallback": "refuse",    // "degrade": run without a layer this machine lacks, reported
//!   "restricted_nofile": 4096,          // RLIMIT_NOFILE of restricted runs (at most `nofile`)
//!   "restricted_outbound": true,        // internet from the restricted network namespace (NAT)
//!   "restricted_cpus": 1,               // CPU ceiling of everything restricted, together
//!   "restricted_memory_max_bytes": 4294967296, // ... its memory
//!   "restricted_pids_max": null         // ... its processes (default: half the file table
//!                                       // over restricted_nofile, 256..4096)
//! }
//! ```
//!
//! Accepted and ignored, with a warning (older configurations): `kill_grace_ms` (the grace
//! period is `lifecycle.kill_grace_ms`), `path` and `lang` (`lifecycle.path`, `lifecycle.lang`)
//! and `cgroup_pool` (run cgroups are made per run).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cgroup::GroupLimits;
use super::world::{Fallback, WorldConfig};

/// `sandbox.restricted_cpus` (CPUs, fractions allowed) in thousandths of a CPU.
fn cpu_millis(cpus: Option<f64>, default: u64) -> Result<u64, ConfigError> {
    match cpus {
        None => Ok(default),
        Some(c) if c.is_finite() && (0.01..=1024.0).contains(&c) => Ok((c * 1000.0).round() as u64),
        Some(_) => Err(ConfigError::Invalid {
            key: "sandbox.restricted_cpus",
            message: "must be a number of CPUs between 0.01 and 1024".into(),
        }),
    }
}
use super::Limits;
use crate::guest::config::{positive, ConfigError};

/// The section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // documented in the module's example
pub(crate) struct RawSandboxConfig {
    pub(crate) default_user: Option<String>,
    pub(crate) nproc: Option<u64>,
    pub(crate) nofile: Option<u64>,
    pub(crate) memory_max_bytes: Option<u64>,
    pub(crate) pids_max: Option<u64>,
    /// Deprecated: `lifecycle.path` is the one search path.
    pub(crate) path: Option<serde_json::Value>,
    /// Deprecated: `lifecycle.lang` is the one locale.
    pub(crate) lang: Option<serde_json::Value>,
    /// Deprecated: never read (the grace period is `lifecycle.kill_grace_ms`).
    pub(crate) kill_grace_ms: Option<serde_json::Value>,
    pub(crate) cgroup_parent: Option<PathBuf>,
    /// Deprecated: there is no cgroup pool any more.
    pub(crate) cgroup_pool: Option<serde_json::Value>,
    pub(crate) restricted_user: Option<String>,
    pub(crate) trusted_users: Option<Vec<String>>,
    pub(crate) restricted_root: Option<PathBuf>,
    pub(crate) restricted_fallback: Option<Fallback>,
    pub(crate) restricted_nofile: Option<u64>,
    pub(crate) restricted_outbound: Option<bool>,
    pub(crate) restricted_cpus: Option<f64>,
    pub(crate) restricted_memory_max_bytes: Option<u64>,
    pub(crate) restricted_pids_max: Option<u64>,
}

/// The typed section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxConfig {
    /// Run user when the devcontainer names none (`remoteUser`/`containerUser`).
    pub(crate) default_user: Option<String>,
    /// Default limits of a run.
    pub(crate) limits: Limits,
    /// Pure cgroup v2 only: the parent cgroup (absolute path under the cgroup2 mount) with
    /// `memory` and `pids` enabled in its `cgroup.subtree_control`; `None` chooses one.
    pub(crate) cgroup_parent: Option<PathBuf>,
    /// The restricted principal: the user every restricted run runs as, whatever the
    /// repository names. Never root, never the creator (the workspace's owner).
    pub(crate) restricted_user: String,
    /// Users a trusted repository's `remoteUser`/`containerUser` may name besides the
    /// configured user; any other name is ignored (reported) and the configured user runs.
    pub(crate) trusted_users: Vec<String>,
    /// Where the restricted principal's world lives, what happens when a layer is missing,
    /// and its descriptor limit.
    pub(crate) world: WorldConfig,
}

/// Default [`SandboxConfig::restricted_user`] (created by the package's `sysusers.d` entry
/// and by `install.sh --root`).
pub(crate) const DEFAULT_RESTRICTED_USER: &str = "codespace-restricted";
/// Default [`WorldConfig::root`].
pub(crate) const DEFAULT_RESTRICTED_ROOT: &str = "/var/lib/codespace-agent/restricted";
/// Default [`WorldConfig::nofile`].
pub(crate) const DEFAULT_RESTRICTED_NOFILE: u64 = 4096;

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            default_user: None,
            limits: Limits::default(),
            cgroup_parent: None,
            restricted_user: DEFAULT_RESTRICTED_USER.to_owned(),
            trusted_users: Vec::new(),
            world: WorldConfig::default(),
        }
    }
}

impl SandboxConfig {
    /// Builds the typed section (`None`: all defaults).
    pub(crate) fn build(raw: Option<RawSandboxConfig>) -> Result<Self, ConfigError> {
        let raw = raw.unwrap_or_default();
        let d = Self::default();
        for (key, set, instead) in [
            (
                "sandbox.kill_grace_ms",
                raw.kill_grace_ms.is_some(),
                "set lifecycle.kill_grace_ms",
            ),
            ("sandbox.path", raw.path.is_some(), "set lifecycle.path"),
            ("sandbox.lang", raw.lang.is_some(), "set lifecycle.lang"),
            (
                "sandbox.cgroup_pool",
                raw.cgroup_pool.is_some(),
                "run cgroups are made per run",
            ),
        ] {
            if set {
                tracing::warn!("{key} is deprecated and ignored: {instead}");
            }
        }
        if let Some(p) = &raw.cgroup_parent {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid {
                    key: "sandbox.cgroup_parent",
                    message: format!("{} is not an absolute path", p.display()),
                });
            }
        }
        let restricted_nofile = positive(
            "sandbox.restricted_nofile",
            raw.restricted_nofile,
            d.world.nofile,
        )?;
        let restricted_user = raw.restricted_user.unwrap_or(d.restricted_user);
        if restricted_user.is_empty() || restricted_user == "root" || restricted_user == "0" {
            return Err(ConfigError::Invalid {
                key: "sandbox.restricted_user",
                message: "must name an unprivileged user of its own (not root)".into(),
            });
        }
        let root = raw.restricted_root.unwrap_or(d.world.root);
        if !root.is_absolute() || root == Path::new("/") {
            return Err(ConfigError::Invalid {
                key: "sandbox.restricted_root",
                message: format!("{} is not an absolute directory below /", root.display()),
            });
        }
        Ok(Self {
            restricted_user,
            trusted_users: raw.trusted_users.unwrap_or_default(),
            world: WorldConfig {
                root,
                fallback: raw.restricted_fallback.unwrap_or_default(),
                nofile: restricted_nofile,
                outbound: raw.restricted_outbound.unwrap_or(d.world.outbound),
                group: GroupLimits {
                    cpu_millis: cpu_millis(raw.restricted_cpus, d.world.group.cpu_millis)?,
                    memory_max_bytes: positive(
                        "sandbox.restricted_memory_max_bytes",
                        raw.restricted_memory_max_bytes,
                        d.world.group.memory_max_bytes,
                    )?,
                    pids_max: positive(
                        "sandbox.restricted_pids_max",
                        raw.restricted_pids_max,
                        super::world::default_group_pids(restricted_nofile),
                    )?,
                },
            },
            default_user: raw.default_user,
            limits: Limits {
                nproc: positive("sandbox.nproc", raw.nproc, d.limits.nproc)?,
                nofile: positive("sandbox.nofile", raw.nofile, d.limits.nofile)?,
                memory_max_bytes: positive(
                    "sandbox.memory_max_bytes",
                    raw.memory_max_bytes,
                    d.limits.memory_max_bytes,
                )?,
                pids_max: positive("sandbox.pids_max", raw.pids_max, d.limits.pids_max)?,
            },
            cgroup_parent: raw.cgroup_parent,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = SandboxConfig::build(None).unwrap();
        assert_eq!(c, SandboxConfig::default());
        assert_eq!(c.limits.pids_max, 2048);
        let raw: RawSandboxConfig = serde_json::from_str(r#"{"pids_max": 64}"#).unwrap();
        let c = SandboxConfig::build(Some(raw)).unwrap();
        assert_eq!(c.limits.pids_max, 64);
    }

    #[test]
    fn removed_keys_are_still_accepted() {
        // Configurations written for older agents keep loading (an unknown key is an error).
        let raw: RawSandboxConfig = serde_json::from_str(
            r#"{"kill_grace_ms": 10, "cgroup_pool": 2, "path": "/bin", "lang": "C"}"#,
        )
        .unwrap();
        assert_eq!(
            SandboxConfig::build(Some(raw)).unwrap(),
            SandboxConfig::default()
        );
    }

    #[test]
    fn the_restricted_group_cannot_fill_the_file_table_by_default() {
        let c = SandboxConfig::build(None).unwrap();
        let pids = c.world.group.pids_max;
        assert!((256..=4096).contains(&pids), "{pids}");
        if let Some(file_max) = std::fs::read_to_string("/proc/sys/fs/file-max")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            assert!(pids * c.world.nofile <= file_max / 2 || pids == 256);
        }
        let raw: RawSandboxConfig =
            serde_json::from_str(r#"{"restricted_pids_max": 9000, "restricted_cpus": 0.5}"#)
                .unwrap();
        let c = SandboxConfig::build(Some(raw)).unwrap();
        assert_eq!(
            (c.world.group.pids_max, c.world.group.cpu_millis),
            (9000, 500)
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            (r#"{"pids_max": 0}"#, "sandbox.pids_max"),
            (r#"{"cgroup_parent": "rel"}"#, "sandbox.cgroup_parent"),
            (r#"{"restricted_user": "root"}"#, "sandbox.restricted_user"),
            (r#"{"restricted_root": "/"}"#, "sandbox.restricted_root"),
            (r#"{"restricted_nofile": 0}"#, "sandbox.restricted_nofile"),
            (r#"{"restricted_cpus": 0}"#, "sandbox.restricted_cpus"),
            (
                r#"{"restricted_pids_max": 0}"#,
                "sandbox.restricted_pids_max",
            ),
        ] {
            let raw: RawSandboxConfig = serde_json::from_str(text).unwrap();
            let err = SandboxConfig::build(Some(raw)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        assert!(serde_json::from_str::<RawSandboxConfig>(r#"{"pid_max": 1}"#).is_err());
    }
}
