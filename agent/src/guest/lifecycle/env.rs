//! Who a lifecycle command runs as and with which environment (pure apart from the secret
//! values it is handed).
//!
//! ```text
//!  remoteUser ▸ containerUser ▸ the agent's configured user ▸ the agent's own uid
//!      └─ /etc/passwd (crate::guest::user) ─► Account {name, uid, gid, home, shell}
//!         restricted + uid 0 ─► downgraded to the configured non-root user, else `nobody`
//!
//!  environment (built from nothing, the process's own is never inherited):
//!      PATH, HOME, USER, SHELL, LANG
//!    + remoteEnv (substituted; names checked like secret names; null unsets)
//!    + secrets          only if the profile allows them
//!    + GITHUB_TOKEN     only if the profile allows the token
//! ```
//!
//! A remoteEnv name that would hijack execution (`LD_PRELOAD`, `BASH_ENV`, `GIT_*`, ...) is
//! refused with the policy's reason code; secrets win over remoteEnv for the same name, since
//! the repository must not shadow what the host delivered.

use serde::Serialize;
use zeroize::Zeroizing;

use crate::guest::user::Account;

/// Secret values and the token, as the vault holds them now. No `Debug`: values.
#[derive(Default)]
pub struct SecretValues {
    /// `(name, value)` of every current secret.
    pub(crate) secrets: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// The live token.
    pub(crate) token: Option<Zeroizing<String>>,
    /// Values that are redacted from output but never put in any environment (the registry
    /// credentials' secrets: Docker gets them from the helper only).
    pub(crate) redact_only: Vec<Zeroizing<Vec<u8>>>,
}

impl SecretValues {
    /// Every value, for redaction.
    pub(crate) fn all_values(&self) -> Vec<&[u8]> {
        self.secrets
            .iter()
            .map(|(_, v)| v.as_slice())
            .chain(self.token.iter().map(|t| t.as_bytes()))
            .chain(self.redact_only.iter().map(|v| v.as_slice()))
            .collect()
    }
}

/// Where the runner gets secret values from (the vault in the agent).
pub trait SecretSource: Send + Sync + 'static {
    /// The values now.
    fn values(&self) -> SecretValues;
}

/// A variable left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Refused {
    /// The name.
    pub(crate) name: String,
    /// Stable reason code.
    pub(crate) reason: String,
}

/// `PATH`, `HOME`, `USER`, `SHELL`, `LANG`.
pub(crate) fn base_env(user: &Account, path: &str, lang: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), path.into()),
        ("HOME".into(), user.home.display().to_string()),
        ("USER".into(), user.name.clone()),
        ("SHELL".into(), user.shell.display().to_string()),
        ("LANG".into(), lang.into()),
    ]
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    }
}

/// Adds `remoteEnv` (already substituted) to `env`; returns the refused names.
pub(crate) fn apply_remote_env(
    env: &mut Vec<(String, String)>,
    remote_env: &[(String, Option<String>)],
) -> Vec<Refused> {
    let mut refused = Vec::new();
    for (name, value) in remote_env {
        if let Err(r) = codespace_policy::secrets::check_name(name, &[]) {
            refused.push(Refused {
                name: name.clone(),
                reason: codespace_policy::ReasonCode::code(&r).to_owned(),
            });
            continue;
        }
        match value {
            Some(v) => set(env, name, v.clone()),
            None => env.retain(|(k, _)| k != name),
        }
    }
    refused
}

/// Adds secrets and/or the token; values that are not UTF-8 cannot be environment strings
/// here and are reported instead.
pub(crate) fn apply_secrets(
    env: &mut Vec<(String, String)>,
    values: &SecretValues,
    secrets: bool,
    token: bool,
    token_name: &str,
) -> Vec<Refused> {
    let mut refused = Vec::new();
    if secrets {
        for (name, v) in &values.secrets {
            match std::str::from_utf8(v) {
                Ok(s) => set(env, name, s.to_owned()),
                Err(_) => refused.push(Refused {
                    name: name.clone(),
                    reason: "not-utf8".into(),
                }),
            }
        }
    }
    if token {
        if let Some(t) = &values.token {
            set(env, token_name, t.as_str().to_owned());
        }
    }
    refused
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remote_env_is_checked_and_null_unsets() {
        let u = Account {
            name: "vscode".into(),
            uid: 1000,
            gid: 1001,
            home: "/home/vscode".into(),
            shell: "/bin/zsh".into(),
        };
        let mut env = base_env(&u, "/bin", "C.UTF-8");
        let refused = apply_remote_env(
            &mut env,
            &[
                ("LD_PRELOAD".into(), Some("/tmp/x.so".into())),
                ("APP_MODE".into(), Some("dev".into())),
                ("LANG".into(), None),
                ("BASH_ENV".into(), Some("/tmp/x".into())),
            ],
        );
        let names: Vec<_> = refused.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["LD_PRELOAD", "BASH_ENV"]);
        assert_eq!(refused[0].reason, "dangerous-name");
        assert!(env.contains(&("APP_MODE".into(), "dev".into())));
        assert!(!env.iter().any(|(k, _)| k == "LANG" || k == "LD_PRELOAD"));
        assert!(env.contains(&("USER".into(), "vscode".into())));
    }

    #[test]
    fn secrets_and_token_only_when_allowed() {
        let values = SecretValues {
            secrets: vec![
                ("API".into(), Zeroizing::new(b"v1".to_vec())),
                ("BIN".into(), Zeroizing::new(vec![0xff])),
            ],
            token: Some(Zeroizing::new("tok".into())),
            redact_only: vec![Zeroizing::new(b"registry-secret".to_vec())],
        };
        // Redacted, never injected.
        assert!(values.all_values().contains(&&b"registry-secret"[..]));
        let mut env = vec![("API".into(), "from-repo".into())];
        assert!(apply_secrets(&mut env, &values, false, false, "GITHUB_TOKEN").is_empty());
        assert_eq!(env, vec![("API".to_owned(), "from-repo".to_owned())]);
        let refused = apply_secrets(&mut env, &values, true, true, "GITHUB_TOKEN");
        assert_eq!(refused[0].name, "BIN");
        assert!(env.contains(&("API".into(), "v1".into())));
        assert!(env.contains(&("GITHUB_TOKEN".into(), "tok".into())));
        assert!(!env.iter().any(|(_, v)| v == "registry-secret"));
        assert_eq!(values.all_values().len(), 4);
    }
}
