//! The environment of a sandboxed command: cleared, then [`super::rules::BASE_ENVIRONMENT`], then the
//! caller's variables (remoteEnv after substitution, and secrets and the token when the profile
//! allows them; the caller decides which, this module decides how).
//!
//! A caller variable whose name hijacks execution (`LD_PRELOAD`, `BASH_ENV`, `PATH`, `GIT_*`,
//! ... — the shared list, [`codespace_policy::secrets::DANGEROUS_NAMES`]) is refused with an
//! error naming it, never dropped silently; so is a name that cannot be a variable (empty, `=`
//! or NUL). A later caller
//! variable replaces an earlier one and the base `LANG`; values are never in errors.

use codespace_policy::secrets::dangerous_reason;

use super::rules::BASE_ENVIRONMENT;
use super::SandboxError;
use crate::guest::user::Account;

/// An environment shown by its names only: the `Debug` of every type that holds variables
/// (which may be secrets or the token) goes through this, so `{:?}` never prints a value.
pub(crate) struct EnvNames<'a>(pub &'a [(String, String)]);

impl std::fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Builds the final environment, in order, without duplicates.
pub(crate) fn build(
    user: &Account,
    path: &str,
    lang: &str,
    extra: &[(String, String)],
) -> Result<Vec<(String, String)>, SandboxError> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(BASE_ENVIRONMENT.len() + extra.len());
    for (name, _why) in BASE_ENVIRONMENT {
        let value = match *name {
            "PATH" => path.to_owned(),
            "HOME" => user.home.to_string_lossy().into_owned(),
            "USER" => user.name.clone(),
            "SHELL" => user.shell.to_string_lossy().into_owned(),
            _ => lang.to_owned(),
        };
        env.push(((*name).to_owned(), value));
    }
    for (name, value) in extra {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(SandboxError::InvalidEnvName { name: name.clone() });
        }
        if value.contains('\0') {
            return Err(SandboxError::InvalidEnvValue { name: name.clone() });
        }
        if dangerous_reason(name).is_some() {
            return Err(SandboxError::DangerousEnvName { name: name.clone() });
        }
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((name.clone(), value.clone())),
        }
    }
    Ok(env)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user() -> Account {
        Account {
            uid: 1000,
            gid: 1000,
            name: "vscode".into(),
            home: "/home/vscode".into(),
            shell: "/bin/bash".into(),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn base_then_extras_in_order() {
        let env = build(
            &user(),
            "/usr/bin:/bin",
            "C.UTF-8",
            &pairs(&[("FOO", "1"), ("LANG", "de_DE.UTF-8"), ("FOO", "2")]),
        )
        .unwrap();
        assert_eq!(
            env,
            pairs(&[
                ("PATH", "/usr/bin:/bin"),
                ("HOME", "/home/vscode"),
                ("USER", "vscode"),
                ("SHELL", "/bin/bash"),
                ("LANG", "de_DE.UTF-8"),
                ("FOO", "2"),
            ])
        );
    }

    #[test]
    fn dangerous_and_invalid_names_are_refused_by_name_without_values() {
        for name in [
            "LD_PRELOAD",
            "ld_audit",
            "BASH_ENV",
            "PATH",
            "GIT_SSH_COMMAND",
            "NODE_OPTIONS",
        ] {
            let err = build(&user(), "/bin", "C", &pairs(&[(name, "s3cr3t")])).unwrap_err();
            assert!(
                matches!(err, SandboxError::DangerousEnvName { .. }),
                "{name}"
            );
            let text = err.to_string();
            assert!(text.contains(name) && !text.contains("s3cr3t"), "{text}");
        }
        for name in ["", "A=B", "A\0"] {
            assert!(matches!(
                build(&user(), "/bin", "C", &pairs(&[(name, "x")])),
                Err(SandboxError::InvalidEnvName { .. })
            ));
        }
        assert!(matches!(
            build(&user(), "/bin", "C", &pairs(&[("OK", "a\0b")])),
            Err(SandboxError::InvalidEnvValue { .. })
        ));
        // GITHUB_TOKEN is the token's own name, not a hijack: allowed when the caller passes it.
        assert!(build(&user(), "/bin", "C", &pairs(&[("GITHUB_TOKEN", "t")])).is_ok());
    }

    #[test]
    fn a_spec_debugs_names_never_values() {
        let spec = super::super::SandboxSpec {
            profile: super::super::SandboxProfile::Trusted,
            user: user(),
            env: pairs(&[("API_KEY", "s3cr3t-value"), ("GITHUB_TOKEN", "ghu_tok3n")]),
            cwd: "/w".into(),
            workspace: "/w".into(),
            state_dir: "/run/agent".into(),
            limits: super::super::Limits::default(),
            restricted: super::super::world::WorldConfig::default(),
        };
        let text = format!("{spec:?} {spec:#?}");
        assert!(
            text.contains("API_KEY") && text.contains("GITHUB_TOKEN"),
            "{text}"
        );
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok3n"),
            "{text}"
        );
    }
}
