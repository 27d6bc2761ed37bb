//! Which secrets enter a codespace's environment, and under which names.
//!
//! Secrets come from three levels (user, repository, organization). The agent asks
//! [`select`] with each secret's level, name and value size (never the value), and injects
//! exactly the names in [`SecretSelection::environment`].
//!
//! ```text
//!  per level: check_name ─► duplicate-name ─► too-large ─► too-many   (first failing reason)
//!  across levels: user > repository > organization (case-insensitive)
//!  withheld: no write access / fork pull request / prebuild ⇒ nothing is injected
//! ```
//!
//! Rules and their sources:
//! - Names are ASCII letters, digits and `_` (`invalid-name`), not starting with a digit
//!   (`starts-with-digit`), not starting with `GITHUB_` in any case (`reserved-prefix`):
//!   DESIGN.md §1 "Secrets", workspace-agents.md §2.4.
//! - Names that hijack execution are refused (`dangerous-name`): the list in [`DANGEROUS_NAMES`],
//!   from DESIGN.md §2 and workspace-agents.md §4/§5.8 (Gitpod CLC-1591), plus the organization
//!   policy's `secrets.deny_names`. Names are case-insensitive (§2.4), so every comparison is.
//!   The list holds three kinds of name (issue 16), each entry with its reason:
//!   1. variables a shell treats specially. Quoting protects a value, never a name: sourcing
//!      `RANDOM='x[$(id)]'` runs `id` in bash, zsh and mksh, because assigning a numeric
//!      variable evaluates the value arithmetically; `OPTIND='x'` in dash or `EUID=..` in zsh
//!      aborts the sourced file, so every later secret and the token silently go missing.
//!      The list covers the variables bash, dash, zsh, ksh93, mksh and fish set, protect or act
//!      on (zsh's lower-case `path`, `status`, `argv`, ... are the same names in any case);
//!   2. variables that make everyday tools run a program or load code (`EDITOR`, `PAGER`,
//!      `LESSOPEN`, `HOME`, `XDG_*`, `RUBYOPT`, `_JAVA_OPTIONS`, `DOTNET_STARTUP_HOOKS`,
//!      `GCONV_PATH`, `RUSTC_WRAPPER`, `GOFLAGS`, `NPM_CONFIG_*`, ...);
//!   3. variables that intercept traffic (`HTTPS_PROXY`, `SSL_CERT_FILE`, `CURL_CA_BUNDLE`, ...).
//!
//!   [`dangerous_reason`] tells which entry refused a name, for messages; the agent's
//!   environment-file writer asks it again for every line it writes.
//! - Names are unique per level, case-insensitively (`duplicate-name`): every member of a group
//!   of names that differ only in case is refused, chosen restrictively because no rule says
//!   which spelling is meant.
//! - At most 48 KiB (49 152 bytes) per value (`too-large`), at most 100 per level
//!   (`too-many`: names past the first 100 of a level in byte-wise sorted order): DESIGN.md §1.
//! - Precedence user > repository > organization, case-insensitive: DESIGN.md §1 (the GitHub
//!   docs leave user vs repository ambiguous, workspace-agents.md §2.4). A refused secret does
//!   not shadow a valid one of a lower level.
//! - Nothing is injected without write access to the repository, for a pull request from a
//!   fork, or in a prebuild (`withheld`, first applicable in that order): DESIGN.md §1.

use serde::{Deserialize, Serialize};

use crate::decision::ReasonCode;

mod select;

pub use codespace_devcontainer::env_names::{dangerous_reason, DANGEROUS_NAMES};

pub use select::{
    select, InjectionFacts, RejectedSecret, SecretLevel, SecretMeta, SecretRejection,
    SecretSelection, WithheldReason,
};

/// Maximum size of one secret value in bytes (48 KiB).
pub const MAX_SECRET_BYTES: usize = 49_152;

/// Maximum number of secrets per level.
pub const MAX_SECRETS_PER_LEVEL: usize = 100;

/// Why a secret name is refused on its own (see [`check_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SecretNameRejection {
    /// Empty, or a character other than ASCII letters, digits and `_`.
    InvalidName,
    /// Starts with a digit.
    StartsWithDigit,
    /// Starts with `GITHUB_` (any case).
    ReservedPrefix,
    /// Hijacks execution (see [`DANGEROUS_NAMES`]) or is in the policy's `deny_names`.
    DangerousName,
}

impl ReasonCode for SecretNameRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidName => "invalid-name",
            Self::StartsWithDigit => "starts-with-digit",
            Self::ReservedPrefix => "reserved-prefix",
            Self::DangerousName => "dangerous-name",
        }
    }
}

fn pattern_matches(pattern: &str, upper_name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => upper_name.starts_with(&prefix.to_ascii_uppercase()),
        None => upper_name.eq_ignore_ascii_case(pattern),
    }
}

/// Checks one secret name on its own, against the fixed rules and the organization's extra
/// deny list (`secrets.deny_names`, exact names or prefixes ending in `*`, case-insensitive).
///
/// The first failing rule in the order invalid-name, starts-with-digit, reserved-prefix,
/// dangerous-name is returned.
pub fn check_name(name: &str, extra_deny: &[String]) -> Result<(), SecretNameRejection> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SecretNameRejection::InvalidName);
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Err(SecretNameRejection::StartsWithDigit);
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("GITHUB_") {
        return Err(SecretNameRejection::ReservedPrefix);
    }
    if dangerous_reason(name).is_some()
        || extra_deny
            .iter()
            .any(|pattern| pattern_matches(pattern, &upper))
    {
        return Err(SecretNameRejection::DangerousName);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_table() {
        let deny = vec!["AWS_SECRET".to_owned(), "corp_*".to_owned()];
        let table: &[(&str, Result<(), SecretNameRejection>)] = &[
            ("API_KEY", Ok(())),
            ("a", Ok(())),
            ("_X1", Ok(())),
            ("", Err(SecretNameRejection::InvalidName)),
            ("MY KEY", Err(SecretNameRejection::InvalidName)),
            ("MY-KEY", Err(SecretNameRejection::InvalidName)),
            ("KÉY", Err(SecretNameRejection::InvalidName)),
            ("1KEY", Err(SecretNameRejection::StartsWithDigit)),
            ("GITHUB_TOKEN", Err(SecretNameRejection::ReservedPrefix)),
            ("github_foo", Err(SecretNameRejection::ReservedPrefix)),
            ("GITHUB", Ok(())),
            ("LD_PRELOAD", Err(SecretNameRejection::DangerousName)),
            ("ld_library_path", Err(SecretNameRejection::DangerousName)),
            ("LDX", Ok(())),
            ("BASH_ENV", Err(SecretNameRejection::DangerousName)),
            ("ENV", Err(SecretNameRejection::DangerousName)),
            ("ENVIRONMENT", Ok(())),
            ("PROMPT_COMMAND", Err(SecretNameRejection::DangerousName)),
            ("PS0", Err(SecretNameRejection::DangerousName)),
            ("ps4", Err(SecretNameRejection::DangerousName)),
            ("PS5", Ok(())),
            ("ZDOTDIR", Err(SecretNameRejection::DangerousName)),
            ("PATH", Err(SecretNameRejection::DangerousName)),
            ("MY_PATH", Ok(())),
            ("CDPATH", Err(SecretNameRejection::DangerousName)),
            ("SHELL", Err(SecretNameRejection::DangerousName)),
            ("IFS", Err(SecretNameRejection::DangerousName)),
            ("NODE_OPTIONS", Err(SecretNameRejection::DangerousName)),
            ("NODE_ENV", Ok(())),
            ("PYTHONPATH", Err(SecretNameRejection::DangerousName)),
            ("PYTHON", Err(SecretNameRejection::DangerousName)),
            ("PERL5OPT", Err(SecretNameRejection::DangerousName)),
            ("JAVA_TOOL_OPTIONS", Err(SecretNameRejection::DangerousName)),
            ("JAVA_HOME", Ok(())),
            ("GIT_SSH_COMMAND", Err(SecretNameRejection::DangerousName)),
            ("GITLAB_TOKEN", Ok(())),
            ("aws_secret", Err(SecretNameRejection::DangerousName)),
            ("AWS_SECRET_2", Ok(())),
            ("CORP_TOKEN", Err(SecretNameRejection::DangerousName)),
        ];
        for (name, want) in table {
            assert_eq!(&check_name(name, &deny), want, "{name:?}");
        }
    }

    /// Issue 16: names a shell treats specially (arithmetic on assignment runs `$(..)`,
    /// read-only or numeric ones abort the sourced file) and names that make common tools run a
    /// program or load code. Each was accepted before; each must be `dangerous-name`.
    #[test]
    fn shell_special_and_tool_hijacking_names_are_refused() {
        let refused = [
            // Shells: arithmetic on assignment, read-only, numeric, or special on assignment.
            "RANDOM",
            "SRANDOM",
            "SECONDS",
            "LINENO",
            "OPTIND",
            "OPTARG",
            "HISTCMD",
            "HISTSIZE",
            "HISTFILE",
            "HISTFILESIZE",
            "COLUMNS",
            "LINES",
            "SHLVL",
            "UID",
            "EUID",
            "GID",
            "EGID",
            "PPID",
            "PWD",
            "OLDPWD",
            "TMOUT",
            "MAIL",
            "MAILCHECK",
            "MAILPATH",
            "FPATH",
            "BASHPID",
            "BASH_XTRACEFD",
            "SHELLOPTS",
            "KSHUID",
            "FUNCNEST",
            "KEYTIMEOUT",
            "SAVEHIST",
            "NULLCMD",
            "ZSH_VERSION",
            "dis_aliases",
            "_",
            // zsh's lowercase parameters (names are case-insensitive: `path` is `PATH`).
            "argv",
            "status",
            "pipestatus",
            "path",
            "cdpath",
            "fpath",
            "options",
            "functions",
            "fish_function_path",
            // Tools that run a program or load code.
            "EDITOR",
            "VISUAL",
            "PAGER",
            "GIT_PAGER",
            "LESSOPEN",
            "LESSCLOSE",
            "BROWSER",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "HOME",
            "RUBYOPT",
            "RUBYLIB",
            "PERL5LIB",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "DOTNET_STARTUP_HOOKS",
            "GCONV_PATH",
            "RUSTC_WRAPPER",
            "RUSTC",
            "GOFLAGS",
            "npm_config_script_shell",
            "NPM_CONFIG_PREFIX",
            "PYTHONSTARTUP",
            // Traffic interception.
            "HTTPS_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "CURL_CA_BUNDLE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
        ];
        for name in refused {
            assert_eq!(
                check_name(name, &[]),
                Err(SecretNameRejection::DangerousName),
                "{name}"
            );
        }
        // Near misses stay allowed: the rules are exact names, and prefixes only where a whole
        // family is dangerous.
        for name in [
            "RANDOM_SEED",
            "MAILGUN_API_KEY",
            "HOMEBREW_GITHUB_API_TOKEN",
            "EDITOR_THEME",
            "PAGERDUTY_TOKEN",
            "CARGO_REGISTRY_TOKEN",
            "NPM_TOKEN",
            "STATUS_PAGE_KEY",
            "HISTORY_API",
            "GOOGLE_API_KEY",
            "LINEAR_API_KEY",
            "PROXY_PASSWORD",
        ] {
            assert_eq!(check_name(name, &[]), Ok(()), "{name}");
        }
    }

    /// Every entry of the shared list is refused as a secret name, the audit's too (the list
    /// itself is checked where it lives, `codespace_devcontainer::env_names`).
    #[test]
    fn every_dangerous_entry_is_refused() {
        for (_, pattern, _) in DANGEROUS_NAMES {
            let example = pattern.replace('*', "X");
            assert_eq!(
                check_name(&example, &[]),
                Err(SecretNameRejection::DangerousName),
                "{pattern}"
            );
        }
        // Names the audit flagged and this policy once let through.
        for name in [
            "BASH_FUNC_X",
            "DYLD_INSERT_LIBRARIES",
            "HOSTALIASES",
            "RUBYOPT",
        ] {
            assert_eq!(
                check_name(name, &[]),
                Err(SecretNameRejection::DangerousName),
                "{name}"
            );
        }
    }

    #[test]
    fn dangerous_reason_names_the_entry_and_ignores_the_other_rules() {
        assert_eq!(
            dangerous_reason("random"),
            DANGEROUS_NAMES
                .iter()
                .find(|(_, p, _)| *p == "RANDOM")
                .map(|(_, _, why)| *why)
        );
        assert!(dangerous_reason("npm_config_script_shell").is_some());
        assert_eq!(dangerous_reason("GITHUB_TOKEN"), None);
        assert_eq!(dangerous_reason("API_KEY"), None);
    }
}
