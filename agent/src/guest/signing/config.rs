//! The `signing` section of the agent's configuration.
//!
//! ```jsonc
//! "signing": {
//!   "wait_s": 10,        // how long a signing request waits for the host's answer (1..=60)
//!   // git's signing program, as the agent's git configuration names it (the package installs
//!   // this wrapper around `codespace-agent git-sign`)
//!   "program": "/usr/bin/codespace-git-sign",
//!   // the git configuration the agent writes while signing is on (/etc/gitconfig includes it)
//!   "git_config": "/run/codespace-agent-git/signing.gitconfig"
//! }
//! ```
//!
//! Whether signing is on is not configuration: the host says it per session (`session create
//! --signing ...`), and it is off until then.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::guest::config::ConfigError;

/// Default wait for the host's answer.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Longest wait the configuration accepts (the helper gives up a little after it).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default signing program written into the git configuration.
pub(crate) const DEFAULT_PROGRAM: &str = "/usr/bin/codespace-git-sign";

/// The section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in the module's example
pub(crate) struct RawSigningConfig {
    pub(crate) wait_s: Option<u64>,
    pub(crate) program: Option<PathBuf>,
    pub(crate) git_config: Option<PathBuf>,
}

/// The typed section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// How long a request waits for the host.
    pub(crate) wait: Duration,
    /// git's signing program.
    pub(crate) program: PathBuf,
    /// The git configuration file written while signing is on.
    pub(crate) git_config: PathBuf,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            wait: DEFAULT_WAIT,
            program: DEFAULT_PROGRAM.into(),
            git_config: super::gitconfig::DEFAULT_PATH.into(),
        }
    }
}

impl SigningConfig {
    /// The typed section; errors name the key.
    pub(crate) fn from_raw(raw: Option<RawSigningConfig>) -> Result<Self, ConfigError> {
        let raw = raw.unwrap_or_default();
        let d = Self::default();
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.to_owned(),
        };
        let wait = match raw.wait_s.map(Duration::from_secs) {
            None => d.wait,
            Some(w) if w.is_zero() || w > MAX_WAIT => {
                return Err(invalid("signing.wait_s", "must be between 1 and 60"))
            }
            Some(w) => w,
        };
        // Both are written into a git configuration file: absolute, one line.
        let path = |key, p: Option<PathBuf>, default: PathBuf| {
            let p = p.unwrap_or(default);
            let text = p.to_string_lossy();
            if !p.is_absolute() || text.contains(['\n', '\r', '\0']) || p.parent().is_none() {
                return Err(invalid(key, "must be an absolute path on one line"));
            }
            Ok(p)
        };
        Ok(Self {
            wait,
            program: path("signing.program", raw.program, d.program)?,
            git_config: path("signing.git_config", raw.git_config, d.git_config)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            SigningConfig::from_raw(None).unwrap(),
            SigningConfig::default()
        );
        let raw = |wait_s, program: &str| RawSigningConfig {
            wait_s,
            program: Some(program.into()),
            git_config: None,
        };
        let c = SigningConfig::from_raw(Some(raw(Some(3), "/opt/sign"))).unwrap();
        assert_eq!(c.wait, Duration::from_secs(3));
        for (bad, key) in [
            (raw(Some(0), "/x"), "signing.wait_s"),
            (raw(Some(61), "/x"), "signing.wait_s"),
            (raw(None, "relative"), "signing.program"),
            (raw(None, "/a\nb"), "signing.program"),
        ] {
            let err = SigningConfig::from_raw(Some(bad)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
