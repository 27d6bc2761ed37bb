//! The `lifecycle` section of the agent's configuration.
//!
//! ```jsonc
//! "lifecycle": {
//!   "launcher": "sandbox",             // or "plain": no sandbox (tests, benchmarks only)
//!   "command_timeout_s": 1800,         // per command, unless a request says `timeout_s`
//!   "kill_grace_ms": 2000,             // SIGTERM → SIGKILL at the timeout
//!   "log_head_bytes": 262144,          // the run log keeps this much of the start ...
//!   "log_tail_bytes": 262144,          // ... and this much of the end
//!   "logs_kept": 20,                   // older run logs are removed
//!   "path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
//!   "lang": "C.UTF-8",
//!   "org_policy_file": null,           // organization policy JSON (trust list, extensions)
//!   "extension_installer": ["code", "--install-extension", "{id}"],
//!   "extension_uninstaller": null      // e.g. ["code", "--uninstall-extension", "{id}"]
//! }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default `lifecycle.path` (Debian's root `PATH`, so `sbin` tools resolve).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default `lifecycle.lang`.
pub(crate) const DEFAULT_LANG: &str = "C.UTF-8";

/// Which launcher runs commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LauncherKind {
    /// No sandbox (tests, benchmarks).
    Plain,
    /// The sandbox spawner.
    Sandbox,
}

impl LauncherKind {
    /// The name reports show (`Launcher::name` of the launcher it makes).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Sandbox => "sandbox",
        }
    }
}

/// The section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // documented in the module's example
pub(crate) struct RawLifecycleConfig {
    pub(crate) launcher: Option<LauncherKind>,
    pub(crate) command_timeout_s: Option<u64>,
    pub(crate) kill_grace_ms: Option<u64>,
    pub(crate) log_head_bytes: Option<usize>,
    pub(crate) log_tail_bytes: Option<usize>,
    pub(crate) logs_kept: Option<usize>,
    pub(crate) path: Option<String>,
    pub(crate) lang: Option<String>,
    pub(crate) org_policy_file: Option<PathBuf>,
    pub(crate) extension_installer: Option<Vec<String>>,
    pub(crate) extension_uninstaller: Option<Vec<String>>,
}

/// The typed section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // fields mirror the documented keys
pub struct LifecycleConfig {
    pub(crate) launcher: LauncherKind,
    pub(crate) command_timeout: Duration,
    pub(crate) kill_grace: Duration,
    pub(crate) log_head_bytes: usize,
    pub(crate) log_tail_bytes: usize,
    pub(crate) logs_kept: usize,
    pub(crate) path: String,
    pub(crate) lang: String,
    pub(crate) org_policy_file: Option<PathBuf>,
    pub(crate) extension_installer: Vec<String>,
    pub(crate) extension_uninstaller: Option<Vec<String>>,
}

/// Why the section is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config setting `lifecycle.{key}`: {message}")]
pub(crate) struct SettingsError {
    /// The key.
    pub(crate) key: &'static str,
    /// Why.
    pub(crate) message: String,
}

fn template(key: &'static str, argv: Vec<String>) -> Result<Vec<String>, SettingsError> {
    if argv.is_empty() || argv[0].is_empty() {
        return Err(SettingsError {
            key,
            message: "must be a non-empty argv".into(),
        });
    }
    if !argv.iter().any(|a| a.contains("{id}")) {
        return Err(SettingsError {
            key,
            message: "must contain the placeholder {id}".into(),
        });
    }
    Ok(argv)
}

/// `lifecycle.path`: the `PATH` of every command (plain and sandboxed), a non-empty list of
/// absolute directories.
fn search_path(path: Option<String>) -> Result<String, SettingsError> {
    let path = path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
    if path.is_empty() || path.contains('\0') || !path.split(':').all(|p| p.starts_with('/')) {
        return Err(SettingsError {
            key: "path",
            message: "must be a non-empty list of absolute directories separated by `:`".into(),
        });
    }
    Ok(path)
}

/// `lifecycle.lang`: the `LANG` of every command.
fn locale(lang: Option<String>) -> Result<String, SettingsError> {
    let lang = lang.unwrap_or_else(|| DEFAULT_LANG.to_owned());
    if lang.contains('\0') {
        return Err(SettingsError {
            key: "lang",
            message: "contains a NUL byte".into(),
        });
    }
    Ok(lang)
}

impl LifecycleConfig {
    /// Builds the typed section (defaults for what is not written).
    pub(crate) fn build(raw: RawLifecycleConfig) -> Result<Self, SettingsError> {
        let positive = |key, v: Option<u64>, d| match v {
            Some(0) => Err(SettingsError {
                key,
                message: "must be greater than zero".into(),
            }),
            v => Ok(v.unwrap_or(d)),
        };
        Ok(Self {
            launcher: raw.launcher.unwrap_or(LauncherKind::Sandbox),
            command_timeout: Duration::from_secs(positive(
                "command_timeout_s",
                raw.command_timeout_s,
                1800,
            )?),
            kill_grace: Duration::from_millis(raw.kill_grace_ms.unwrap_or(2000)),
            log_head_bytes: raw.log_head_bytes.unwrap_or(256 << 10),
            log_tail_bytes: raw.log_tail_bytes.unwrap_or(256 << 10),
            logs_kept: raw.logs_kept.unwrap_or(20).max(1),
            path: search_path(raw.path)?,
            lang: locale(raw.lang)?,
            org_policy_file: raw.org_policy_file,
            extension_installer: template(
                "extension_installer",
                raw.extension_installer.unwrap_or_else(|| {
                    vec!["code".into(), "--install-extension".into(), "{id}".into()]
                }),
            )?,
            extension_uninstaller: raw
                .extension_uninstaller
                .map(|t| template("extension_uninstaller", t))
                .transpose()?,
        })
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        // The defaults are valid by construction.
        Self::build(RawLifecycleConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = LifecycleConfig::default();
        assert_eq!(c.command_timeout, Duration::from_secs(1800));
        assert_eq!(c.extension_installer[2], "{id}");
        let raw: RawLifecycleConfig =
            serde_json::from_str(r#"{"extension_installer": ["code"]}"#).unwrap();
        let e = LifecycleConfig::build(raw).unwrap_err();
        assert!(e.to_string().contains("{id}"), "{e}");
        let raw: RawLifecycleConfig = serde_json::from_str(r#"{"command_timeout_s": 0}"#).unwrap();
        assert!(LifecycleConfig::build(raw).is_err());
        assert!(serde_json::from_str::<RawLifecycleConfig>(r#"{"launchr": "plain"}"#).is_err());
    }

    #[test]
    fn the_search_path_and_locale_are_checked() {
        assert_eq!(LifecycleConfig::default().path, DEFAULT_PATH);
        assert_eq!(LifecycleConfig::default().lang, DEFAULT_LANG);
        for (text, key) in [
            (r#"{"path": "bin:/usr/bin"}"#, "lifecycle.path"),
            (r#"{"path": ""}"#, "lifecycle.path"),
            (r#"{"lang": "C\u0000"}"#, "lifecycle.lang"),
        ] {
            let raw: RawLifecycleConfig = serde_json::from_str(text).unwrap();
            let e = LifecycleConfig::build(raw).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
