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

use super::ascii::find_ascii;

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

/// The length of the shortest token [`PATTERNS`] accept: prefix plus minimum body (a test checks).
const SHORTEST_TOKEN: usize = 15;

/// The first characters of every [`PATTERNS`] prefix (a test keeps them in sync).
fn may_start_token(c: char) -> bool {
    matches!(c, 'g' | 'A' | 'x' | 's' | 'n')
}

/// Whether bytes `a`, `b` can start one of [`SECRET_KEYS`], in any ASCII case (a test keeps the
/// two in sync). Every key is longer than two bytes.
fn may_start_key(a: u8, b: u8) -> bool {
    matches!(
        (a.to_ascii_lowercase(), b.to_ascii_lowercase()),
        (b'p', b'a' | b'w')
            | (b's', b'e')
            | (b't', b'o')
            | (b'a', b'p' | b'c' | b'u')
            | (b'c', b'l')
    )
}

fn redact(public_prefix: &str, full_len: usize) -> String {
    format!("{public_prefix}… ({full_len} chars)")
}

/// Finds literal credentials in a string value. Never returns the secret itself.
pub fn find_credentials(value: &str) -> Vec<CredentialHit> {
    let mut hits = Vec::new();
    // One pass says which of the searches below can match at all; most values need none of
    // them (each was a byte-by-byte scan of its own, the larger part of the audit's time).
    let seen = value
        .bytes()
        .fold(0u8, |seen, b| seen | BYTE_CLASS[usize::from(b)]);
    if seen & (HAS_P | HAS_DASH) == HAS_P | HAS_DASH
        && find_ascii(value, "PRIVATE KEY-----", 0).is_some()
        && find_ascii(value, "-----BEGIN", 0).is_some()
    {
        hits.push(CredentialHit {
            kind: CredentialKind::PrivateKey,
            redacted: "-----BEGIN … PRIVATE KEY-----".to_string(),
        });
    }
    let mut covered_until = 0;
    // Bytes, not chars: every prefix is ASCII, so a match starts at an ASCII byte (a char
    // boundary), and a non-ASCII byte before it belongs to a char that is not `[A-Za-z0-9_-]`.
    let bytes = value.as_bytes();
    // A token needs SHORTEST_TOKEN bytes from where it starts (its alphabets are ASCII).
    let starts = (bytes.len() + 1).saturating_sub(SHORTEST_TOKEN);
    for (pos, &b) in bytes.iter().enumerate().take(starts) {
        // Every pattern starts with one of these; most positions are skipped right here.
        if pos < covered_until || !may_start_token(char::from(b)) {
            continue;
        }
        let prev = pos.checked_sub(1).map(|p| bytes[p]);
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            continue;
        }
        for (prefix, kind, alphabet, min) in PATTERNS {
            // One byte compare rules out most patterns before a slice compare.
            if prefix.as_bytes()[0] != b || !bytes[pos..].starts_with(prefix.as_bytes()) {
                continue;
            }
            // `pos` is an ASCII byte, so a char boundary, and so is the end of the ASCII prefix.
            let rest = &value[pos + prefix.len()..];
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
    // A password in a URL needs `://` and an `@`.
    if seen & (HAS_COLON | HAS_AT) == HAS_COLON | HAS_AT {
        hits.extend(url_passwords(value));
    }
    // An assignment needs `=` or `:`.
    if seen & (HAS_COLON | HAS_EQUALS) != 0 {
        hits.extend(generic_assignments(value));
    }
    hits
}

const HAS_P: u8 = 1;
const HAS_DASH: u8 = 2;
const HAS_COLON: u8 = 4;
const HAS_AT: u8 = 8;
const HAS_EQUALS: u8 = 16;
/// The first letter of a [`SECRET_KEYS`] entry, either case (a test keeps them in sync).
const MAY_START_KEY: u8 = 32;

/// The flags above per byte value: which bytes the searches in [`find_credentials`] need.
static BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'P' as usize] = HAS_P;
    table[b'-' as usize] = HAS_DASH;
    table[b':' as usize] = HAS_COLON;
    table[b'@' as usize] = HAS_AT;
    table[b'=' as usize] = HAS_EQUALS;
    let starts = b"pstacPSTAC";
    let mut i = 0;
    while i < starts.len() {
        table[starts[i] as usize] |= MAY_START_KEY;
        i += 1;
    }
    table
};

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
    while let Some(at) = find_ascii(rest, "://", 0) {
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
    // Every occurrence of every key (ASCII lower case, matched ignoring ASCII case: the offsets a
    // search in the lower-cased text gives), in one pass over the bytes. No key overlaps itself
    // (a test checks), so these are exactly the occurrences a left-to-right search per key finds,
    // and a stable sort by key puts them in the order of that search.
    let bytes = value.as_bytes();
    let mut found: Vec<(usize, usize)> = Vec::new(); // (index in SECRET_KEYS, byte offset)
    for (start, pair) in bytes.windows(2).enumerate() {
        // A table lookup rejects most bytes before the two-byte test.
        if BYTE_CLASS[usize::from(pair[0])] & MAY_START_KEY == 0 || !may_start_key(pair[0], pair[1])
        {
            continue;
        }
        let rest = &bytes[start..];
        let first = pair[0].to_ascii_lowercase();
        for (k, key) in SECRET_KEYS.iter().enumerate() {
            if key.as_bytes()[0] == first
                && rest.len() >= key.len()
                && rest[..key.len()].eq_ignore_ascii_case(key.as_bytes())
            {
                found.push((k, start));
            }
        }
    }
    found.sort_by_key(|&(k, _)| k);
    let mut out = Vec::new();
    for (k, start) in found {
        let key = SECRET_KEYS[k];
        let end = start + key.len();
        // A non-ASCII byte before the key is not alphanumeric, as the char it belongs to.
        let before_ok = start == 0 || !value.as_bytes()[start - 1].is_ascii_alphanumeric();
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
    fn byte_class_gates_keep_every_hit() {
        // Each gate in find_credentials names bytes its search cannot match without.
        for b in 0..=255u8 {
            let class = BYTE_CLASS[usize::from(b)];
            assert_eq!(class & HAS_P != 0, b == b'P');
            assert_eq!(class & HAS_DASH != 0, b == b'-');
            assert_eq!(class & HAS_COLON != 0, b == b':');
            assert_eq!(class & HAS_AT != 0, b == b'@');
            assert_eq!(class & HAS_EQUALS != 0, b == b'=');
        }
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n";
        assert_eq!(find_credentials(key).len(), 1);
        assert_eq!(
            find_credentials("https://deploy:Xk9vQ2mZ7pL4wR8t@git.example.com").len(),
            1
        );
        assert_eq!(find_credentials("--password=Xk9vQ2mZ7pL4wR8tY1uB").len(), 1);
        assert_eq!(find_credentials("token: Xk9vQ2mZ7pL4wR8tY1uB").len(), 1);
        assert!(find_credentials("https://example.com:8080/x").is_empty());
    }

    #[test]
    fn prefilter_covers_every_pattern() {
        for (prefix, ..) in PATTERNS {
            assert!(may_start_token(prefix.chars().next().unwrap()), "{prefix}");
        }
        let shortest = PATTERNS.iter().map(|(p, _, _, min)| p.len() + min).min();
        assert_eq!(shortest, Some(SHORTEST_TOKEN));
        assert_eq!(find_credentials("xoxb-1234567890").len(), 1);
        assert!(find_credentials("xoxb-123456789").is_empty());
        for key in SECRET_KEYS {
            let k = key.as_bytes();
            assert!(k.len() > 2 && may_start_key(k[0], k[1]), "{key}");
            let upper = key.to_ascii_uppercase().into_bytes();
            assert!(may_start_key(upper[0], upper[1]), "{key}");
            for first in [k[0], upper[0]] {
                assert_ne!(BYTE_CLASS[usize::from(first)] & MAY_START_KEY, 0, "{key}");
            }
            // No key overlaps itself, so its occurrences never overlap (generic_assignments).
            for n in 1..k.len() {
                assert_ne!(k[..n], k[k.len() - n..], "{key}");
            }
        }
    }

    #[test]
    fn generic_assignments_match_a_search_per_key() {
        // The definition the one-pass search replaces: lower-case, then search key by key.
        fn reference(value: &str) -> Vec<CredentialHit> {
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
                    let after = value[end..].trim_start_matches(['"', '\'']).trim_start();
                    let Some(after) = after.strip_prefix(['=', ':']) else {
                        continue;
                    };
                    let v: String = after
                        .trim_start()
                        .trim_start_matches(['"', '\''])
                        .chars()
                        .take_while(|c| {
                            !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | ';' | '&')
                        })
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
        let s = "Xk9vQ2mZ7pL4wR8tY1uB6nC3";
        let values = [
            format!("PASSWORD={s} token: {s} api-key={s}"),
            format!("--auth={s};apikey:{s}&passwd={s} Password={s}1"),
            format!("x_secret_key={s} client_secret={s} secret={s} secret_key: '{s}'"),
            format!("tokentoken={s} ACCESS_KEY = \"{s}\" pwd:{s} xpwd={s}"),
            format!("üpassword={s} ßtoken={s}"),
            "no keys here: a=b, token=short".to_string(),
            String::new(),
        ];
        for value in &values {
            let hits = generic_assignments(value);
            assert_eq!(hits, reference(value), "{value}");
        }
        assert!(generic_assignments(&values[0]).len() >= 3);
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!(shannon_entropy("abcd") > 1.9);
    }
}
