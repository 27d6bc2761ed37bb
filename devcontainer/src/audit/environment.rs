//! Environment variable names: which ones hijack execution, and which ones hold secrets.
//!
//! `dangerous_name` answers "does setting this variable make unrelated programs run
//! attacker-chosen code?" (the dynamic loader, shell startup hooks, interpreter start-up
//! options, git's command hooks) from the shared list in [`crate::env_names`], each entry with
//! its reason. `secret_name` answers "does this host
//! variable probably hold a credential?", used when `${localEnv:NAME}` copies it somewhere.
//!
//! Names are compared case-insensitively: Windows hosts lower-case them and Linux programs are
//! case-sensitive, so the safe reading of `ld_preload` is "maybe".

/// Why setting this variable hijacks execution, or `None` for an ordinary variable: the
/// [`Danger::Hijack`](crate::env_names::Danger::Hijack) entries of the one list of dangerous
/// names ([`crate::env_names`]), which the secrets policy refuses as names too.
pub fn dangerous_name(name: &str) -> Option<&'static str> {
    crate::env_names::hijack_reason(name.trim())
}

/// Well-known credential variables that the word rule below would miss.
const SECRET_EXACT: &[&str] = &[
    "SSH_AUTH_SOCK",
    "AWS_ACCESS_KEY_ID",
    "DATABASE_URL",
    "KUBECONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DOCKER_AUTH_CONFIG",
    "NETRC",
    "PGPASSWORD",
];

/// `_`-separated words that mark a secret (`GITHUB_TOKEN`, `DB_PASSWORD`, `OPENAI_API_KEY`).
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "TOKENS",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PASSPHRASE",
    "KEY",
    "APIKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "PAT",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "CERT",
    "PEM",
];

/// Substrings that mark a secret even inside a longer word (`MYTOKEN`, `APITOKEN`).
const SECRET_SUBSTRINGS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "APIKEY",
    "PRIVATEKEY",
];

/// Does this variable name look like it holds a credential?
pub fn secret_name(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return false;
    }
    SECRET_EXACT.contains(&upper.as_str())
        || upper
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| SECRET_WORDS.contains(&word))
        || SECRET_SUBSTRINGS.iter().any(|s| upper.contains(s))
}

/// A host variable whose value is public (`HOME`, `PATH`, ...): copying it into a variable with
/// a secret-looking name (`"API_TOKEN": "${localEnv:HOME}"`) forwards nothing secret.
pub(crate) fn public_variable(var: &str) -> bool {
    matches!(
        var.to_ascii_uppercase().as_str(),
        "HOME"
            | "USER"
            | "USERNAME"
            | "USERPROFILE"
            | "PATH"
            | "SHELL"
            | "LANG"
            | "TZ"
            | "DISPLAY"
            | "TERM"
    )
}

/// The variable names read by `${localEnv:NAME[:default]}` / `${env:NAME}` in a value, in order.
pub fn local_env_references(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let body_start = start + 2;
        let Some(len) = rest[body_start..].find('}') else {
            break;
        };
        let body = &rest[body_start..body_start + len];
        if let Some(args) = body
            .strip_prefix("localEnv:")
            .or_else(|| body.strip_prefix("env:"))
        {
            let name = args.split(':').next().unwrap_or("");
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = &rest[body_start + len + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_names() {
        for name in [
            "LD_PRELOAD",
            "ld_preload",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "BASH_ENV",
            "ENV",
            "PROMPT_COMMAND",
            "PS1",
            "PS4",
            "ZDOTDIR",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "PERL5OPT",
            "JAVA_TOOL_OPTIONS",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_GLOBAL",
            "DYLD_INSERT_LIBRARIES",
            "BASH_FUNC_ls%%",
        ] {
            assert!(dangerous_name(name).is_some(), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "PYTHONUNBUFFERED",
            "NODE_ENV",
            "EDITOR",
            "ENVIRONMENT",
            "LANG",
        ] {
            assert!(dangerous_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn secret_names() {
        for name in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "OPENAI_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "NPM_TOKEN",
            "SSH_AUTH_SOCK",
            "PRIVATE_KEY",
            "MYAPITOKEN",
            "github_token",
        ] {
            assert!(secret_name(name), "{name}");
        }
        for name in [
            "HOME",
            "USER",
            "PATH",
            "KEYBOARD_LAYOUT",
            "DISPLAY",
            "TZ",
            "COMPOSE_PROJECT_NAME",
            "",
        ] {
            assert!(!secret_name(name), "{name}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(
            local_env_references(
                "${localEnv:HOME}/x:${localEnv:TOKEN:def}${env:A}${containerEnv:B}"
            ),
            vec!["HOME", "TOKEN", "A"]
        );
        assert!(local_env_references("${localEnv}").is_empty());
        assert!(local_env_references("${localEnv:X").is_empty());
    }
}
