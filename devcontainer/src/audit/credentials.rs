//! Literal credentials in string values.
//!
//! Well-known token formats are recognised by prefix and alphabet (GitHub, AWS, Slack, Google,
//! OpenAI, Anthropic, npm, GitLab, Stripe), private keys by their PEM header, URLs by a password in
//! their user-info, and generic `password=...`/`token: ...` assignments by a long, high-entropy
//! value. Variable references (`${localEnv:TOKEN}`) are never credentials: that is the *right* way
//! to pass one.
//!
//! Invariant: a [`CredentialHit`] never contains the secret. `redacted` keeps a short,
//! non-secret prefix (the token type's public prefix, or 4 characters) and the length, which is
//! enough to find the value in the file.

/// What kind of credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GitHubToken,
    /// An AWS access key id (`AKIA...`, `ASIA...`).
    AwsAccessKey,
    /// A Slack token (`xoxb-`, `xoxp-`, ...).
    SlackToken,
    /// A Google API key (`AIza...`).
    GoogleApiKey,
    /// An OpenAI or Anthropic key (`sk-...`).
    AiApiKey,
    /// An npm token (`npm_...`).
    NpmToken,
    /// A GitLab personal access token (`glpat-...`).
    GitLabToken,
    /// A Stripe live secret key (`sk_live_...`).
    StripeKey,
    /// A PEM private key.
    PrivateKey,
    /// A password in a URL (`https://user:pass@host`).
    UrlPassword,
    /// `password=...`, `token: ...` with a high-entropy value.
    GenericSecret,
}

impl CredentialKind {
    /// Human name for messages.
    pub fn describe(self) -> &'static str {
        match self {
            CredentialKind::GitHubToken => "GitHub token",
            CredentialKind::AwsAccessKey => "AWS access key id",
            CredentialKind::SlackToken => "Slack token",
            CredentialKind::GoogleApiKey => "Google API key",
            CredentialKind::AiApiKey => "AI provider API key",
            CredentialKind::NpmToken => "npm token",
            CredentialKind::GitLabToken => "GitLab token",
            CredentialKind::StripeKey => "Stripe secret key",
            CredentialKind::PrivateKey => "private key",
            CredentialKind::UrlPassword => "password in a URL",
            CredentialKind::GenericSecret => "secret value",
        }
    }
}

/// One credential found in a value, already redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialHit {
    /// What it is.
    pub kind: CredentialKind,
    /// A redacted form: a public prefix, `…` and the length, e.g. `ghp_… (40 chars)`.
    pub redacted: String,
}

impl std::fmt::Debug for CredentialHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `redacted` is already safe; spelled out so nobody adds the raw value later by accident.
        f.debug_struct("CredentialHit")
            .field("kind", &self.kind)
            .field("redacted", &self.redacted)
            .finish()
    }
}

/// (prefix, kind, alphabet, minimum length of the part after the prefix)
type Pattern = (&'static str, CredentialKind, fn(char) -> bool, usize);

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}
fn alnum_underscore(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
fn alnum_dash(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}
fn alnum_dash_underscore(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}
fn upper_digit(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

const PATTERNS: &[Pattern] = &[
    ("ghp_", CredentialKind::GitHubToken, alnum, 36),
    ("gho_", CredentialKind::GitHubToken, alnum, 36),
    ("ghu_", CredentialKind::GitHubToken, alnum, 36),
    ("ghs_", CredentialKind::GitHubToken, alnum, 36),
    ("ghr_", CredentialKind::GitHubToken, alnum, 36),
    (
        "github_pat_",
        CredentialKind::GitHubToken,
        alnum_underscore,
        22,
    ),
    ("AKIA", CredentialKind::AwsAccessKey, upper_digit, 16),
    ("ASIA", CredentialKind::AwsAccessKey, upper_digit, 16),
    ("xoxb-", CredentialKind::SlackToken, alnum_dash, 10),
    ("xoxp-", CredentialKind::SlackToken, alnum_dash, 10),
    ("xoxa-", CredentialKind::SlackToken, alnum_dash, 10),
    ("xoxr-", CredentialKind::SlackToken, alnum_dash, 10),
    ("xoxs-", CredentialKind::SlackToken, alnum_dash, 10),
    (
        "AIza",
        CredentialKind::GoogleApiKey,
        alnum_dash_underscore,
        35,
    ),
    (
        "sk-ant-",
        CredentialKind::AiApiKey,
        alnum_dash_underscore,
        32,
    ),
    (
        "sk-proj-",
        CredentialKind::AiApiKey,
        alnum_dash_underscore,
        32,
    ),
    ("sk-", CredentialKind::AiApiKey, alnum, 40),
    ("npm_", CredentialKind::NpmToken, alnum, 36),
    (
        "glpat-",
        CredentialKind::GitLabToken,
        alnum_dash_underscore,
        20,
    ),
    ("sk_live_", CredentialKind::StripeKey, alnum, 20),
];

/// Generic assignment keys whose value is checked for entropy.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "secret_key",
    "client_secret",
    "auth",
];

/// The first characters of every [`PATTERNS`] prefix (a test keeps them in sync).
fn may_start_token(c: char) -> bool {
    matches!(c, 'g' | 'A' | 'x' | 's' | 'n')
}

fn redact(public_prefix: &str, full_len: usize) -> String {
    format!("{public_prefix}… ({full_len} chars)")
}

/// Finds literal credentials in a string value. Never returns the secret itself.
pub fn find_credentials(value: &str) -> Vec<CredentialHit> {
    let mut hits = Vec::new();
    if value.contains("PRIVATE KEY-----") && value.contains("-----BEGIN") {
        hits.push(CredentialHit {
            kind: CredentialKind::PrivateKey,
            redacted: "-----BEGIN … PRIVATE KEY-----".to_string(),
        });
    }
    let mut covered_until = 0;
    for (pos, c) in value.char_indices() {
        // Every pattern starts with one of these; most positions are skipped right here.
        if pos < covered_until || !may_start_token(c) {
            continue;
        }
        let prev = value[..pos].chars().next_back();
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            continue;
        }
        for (prefix, kind, alphabet, min) in PATTERNS {
            let Some(rest) = value[pos..].strip_prefix(prefix) else {
                continue;
            };
            let body_len = rest.chars().take_while(|&c| alphabet(c)).count();
            if body_len >= *min {
                hits.push(CredentialHit {
                    kind: *kind,
                    redacted: redact(prefix, prefix.len() + body_len),
                });
                covered_until = pos + prefix.len() + body_len;
                break;
            }
        }
    }
    hits.extend(url_passwords(value));
    hits.extend(generic_assignments(value));
    hits
}

/// Checks a `NAME: value` pair where the name says "secret" (containerEnv, build args): a long,
/// high-entropy literal is reported even without a recognisable prefix.
pub fn find_named_credential(name_is_secret: bool, value: &str) -> Option<CredentialHit> {
    if let Some(hit) = find_credentials(value).into_iter().next() {
        return Some(hit);
    }
    let v = value.trim();
    (name_is_secret && is_secret_like(v)).then(|| CredentialHit {
        kind: CredentialKind::GenericSecret,
        redacted: redact(&v.chars().take(4).collect::<String>(), v.chars().count()),
    })
}

fn is_secret_like(v: &str) -> bool {
    !v.contains("${")
        && !v.contains('$')
        && !v.contains(char::is_whitespace)
        && v.chars().count() >= 16
        && v.chars().any(|c| c.is_ascii_digit())
        && v.chars().any(|c| c.is_ascii_alphabetic())
        && shannon_entropy(v) >= 3.5
        && !v.contains('/')
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::new();
    for c in &chars {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    let n = chars.len() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn url_passwords(value: &str) -> Vec<CredentialHit> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | ' ' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            if let Some((user, password)) = userinfo.split_once(':') {
                if is_real_password(user, password) {
                    out.push(CredentialHit {
                        kind: CredentialKind::UrlPassword,
                        redacted: format!("{user}:… ({} chars)", password.chars().count()),
                    });
                }
            }
        }
        rest = after;
    }
    out
}

/// Development defaults (`postgres://posthog:posthog@db`, `user:password@localhost`) are not
/// credentials worth a critical finding; anything else of 8 characters or more is.
fn is_real_password(user: &str, password: &str) -> bool {
    const DEFAULTS: &[&str] = &[
        "password",
        "changeme",
        "postgres",
        "example",
        "secret",
        "admin",
        "root",
        "test",
        "guest",
        "pass",
        "dev",
        "development",
        "mysql",
        "user",
    ];
    password.chars().count() >= 8
        && !password.contains("${")
        && !password.starts_with('$')
        && !password.eq_ignore_ascii_case(user)
        && !DEFAULTS.contains(&password.to_ascii_lowercase().as_str())
}

fn generic_assignments(value: &str) -> Vec<CredentialHit> {
    if !value.contains(['=', ':']) {
        return Vec::new();
    }
    let lower = value.to_ascii_lowercase();
    let mut out = Vec::new();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(key) {
            let start = from + found;
            let end = start + key.len();
            from = end;
            let before_ok = lower[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            let after = value[end..].trim_start_matches(['"', '\'']);
            let after = after.trim_start();
            let Some(after) = after.strip_prefix(['=', ':']) else {
                continue;
            };
            let v: String = after
                .trim_start()
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | ';' | '&'))
                .collect();
            if before_ok && is_secret_like(&v) {
                out.push(CredentialHit {
                    kind: CredentialKind::GenericSecret,
                    redacted: format!("{key}=… ({} chars)", v.chars().count()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GHP: &str = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5";

    #[test]
    fn recognises_token_formats() {
        let cases = [
            (format!("token {GHP}"), CredentialKind::GitHubToken),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz".to_string(),
                CredentialKind::GitHubToken,
            ),
            ("AKIAIOSFODNN7EXAMPLE".to_string(), CredentialKind::AwsAccessKey),
            ("xoxb-123456789012-abcdefghij".to_string(), CredentialKind::SlackToken),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----"
                    .to_string(),
                CredentialKind::PrivateKey,
            ),
            ("https://bob:hunter2pass@example.com/repo.git".to_string(), CredentialKind::UrlPassword),
            (
                "--password=Xk9vQ2mZ7pL4wR8tY1uB6nC3".to_string(),
                CredentialKind::GenericSecret,
            ),
            (
                "AIzaSyA1234567890abcdefghijklmnopqrstuv".to_string(),
                CredentialKind::GoogleApiKey,
            ),
            ("npm_abcdefghijklmnopqrstuvwxyz0123456789".to_string(), CredentialKind::NpmToken),
        ];
        for (value, kind) in cases {
            let hits = find_credentials(&value);
            assert!(
                hits.iter().any(|h| h.kind == kind),
                "{kind:?} in {value}: {hits:?}"
            );
        }
    }

    #[test]
    fn never_reveals_the_secret() {
        let value = format!("export GITHUB_TOKEN={GHP}; curl https://u:s3cr3tP4ss@x");
        for hit in find_credentials(&value) {
            assert!(!hit.redacted.contains(&GHP[4..12]), "{hit:?}");
            assert!(!hit.redacted.contains("s3cr3t"), "{hit:?}");
            assert!(!format!("{hit:?}").contains(&GHP[4..]));
        }
    }

    #[test]
    fn ignores_references_and_ordinary_text() {
        for value in [
            "${localEnv:GITHUB_TOKEN}",
            "https://${localEnv:USER}:${localEnv:TOKEN}@host",
            "password=${localEnv:PW}",
            "password=changeme",
            "ghp_short",
            "xghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
            "token: /run/secrets/token",
            "mcr.microsoft.com/devcontainers/base:ubuntu",
            "ghcr.io/devcontainers/features/node:1",
            "https://github.com/org/repo",
            "task-sk-something",
            "postgres://posthog:posthog@db:5432/posthog",
            "mysql://root:password@localhost/db",
            "https://u:short@host",
        ] {
            assert!(
                find_credentials(value).is_empty(),
                "false positive: {value}"
            );
        }
    }

    #[test]
    fn named_values() {
        assert!(find_named_credential(true, "Xk9vQ2mZ7pL4wR8tY1uB6nC3").is_some());
        assert!(find_named_credential(false, "Xk9vQ2mZ7pL4wR8tY1uB6nC3").is_none());
        assert!(find_named_credential(true, "${localEnv:OPENAI_API_KEY}").is_none());
        assert!(find_named_credential(true, "development").is_none());
        assert!(find_named_credential(false, GHP).is_some());
    }

    #[test]
    fn prefilter_covers_every_pattern() {
        for (prefix, ..) in PATTERNS {
            assert!(may_start_token(prefix.chars().next().unwrap()), "{prefix}");
        }
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!(shannon_entropy("abcd") > 1.9);
    }
}
