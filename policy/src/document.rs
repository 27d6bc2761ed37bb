//! The organization policy document.
//!
//! JSON with comments (and trailing commas), parsed strictly: an unknown key or a bad value is
//! an error naming its JSON pointer, and every error of the document is reported. An absent key
//! means that part is unrestricted (issue 3). Keys:
//!
//! ```jsonc
//! {
//!   "trusted_repositories": "all" | "none" | ["owner/name", "owner/*"],
//!   "port_visibility": ["org", "public"],          // allowed besides private (may be [])
//!   "extensions": {"allow": ["publisher", "publisher.name", "ms-*"],
//!                  "deny": ["evil"], "allow_vsix": false},
//!   "features": ["ghcr.io/devcontainers/features/*"],   // or {"allow": [...]}
//!   "images": ["mcr.microsoft.com/devcontainers/*"],    // or {"allow": [...]}
//!   "lifecycle_commands": "run" | "sandboxed" | "trusted-only",
//!   "idle_timeout_minutes": 30,                         // 5-240
//!   "secrets": {"deny_names": ["AWS_*", "NPM_TOKEN"]}
//! }
//! ```
//!
//! Sources: trusted repositories = the "Access and security" setting (workspace-agents.md §2.3:
//! disabled / all / selected); port visibility (§2.1, private cannot be disabled, so listing
//! `"private"` is accepted and changes nothing); base image and idle timeout constraints
//! (§2.2: exact references or `*` as the last character; 5–240 minutes); extension allow/deny
//! (§5.9 and issue 3); lifecycle and `deny_names` (issue 3). Features use the image pattern
//! syntax (issue 3). Inside `extensions` and `secrets` every key is optional too; an absent
//! `allow_vsix` is `false` (see [`crate::extensions`]).

use codespace_devcontainer::parse::parse_tree;
use codespace_devcontainer::{LineCol, LineIndex, Node, SyntaxErrorKind};
use serde_json::Value;

use crate::extensions::{ExtensionPattern, ExtensionPolicy};
use crate::input::{
    self, array, boolean, child_index, integer, one_of, string, Field, FieldError, InputErrors, Obj,
};
use crate::ports::{AllowedVisibilities, Visibility};
use crate::repo::{RepoName, RepoPattern};

/// Shortest idle timeout a policy may set, in minutes.
pub const MIN_IDLE_TIMEOUT_MINUTES: u16 = 5;
/// Longest idle timeout a policy may set, in minutes.
pub const MAX_IDLE_TIMEOUT_MINUTES: u16 = 240;

/// Which repositories the organization trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustedRepositories {
    /// `"all"`.
    All,
    /// `"none"`.
    None,
    /// A list of `owner/name` and `owner/*`.
    Selected(Vec<RepoPattern>),
}

impl TrustedRepositories {
    /// Whether `repo` is trusted.
    pub fn covers(&self, repo: &RepoName) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Selected(patterns) => patterns.iter().any(|p| p.matches(repo)),
        }
    }
}

/// What the organization says about lifecycle commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleSetting {
    /// `"run"`: run them (with the profile trust decides).
    Run,
    /// `"sandboxed"`: always the restricted profile.
    Sandboxed,
    /// `"trusted-only"`: untrusted ones wait for the creator's approval.
    TrustedOnly,
}

/// An allow pattern for images and features: exact, or a prefix when `*` is the last
/// character (the only place `*` may appear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixPattern {
    text: String,
}

impl PrefixPattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(format!(
                "invalid pattern {text:?}: empty or containing whitespace"
            ));
        }
        if text.trim_end_matches('*').contains('*') || text.ends_with("**") {
            return Err(format!(
                "invalid pattern {text:?}: '*' is allowed only as the last character"
            ));
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// Whether `reference` is allowed by this pattern.
    pub fn matches(&self, reference: &str) -> bool {
        match self.text.strip_suffix('*') {
            Some(prefix) => reference.starts_with(prefix),
            None => reference == self.text,
        }
    }
}

/// The `secrets` part of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretsPolicy {
    /// Extra names refused as `dangerous-name` (exact or ending in `*`, case-insensitive).
    pub deny_names: Vec<String>,
}

/// A parsed organization policy. `None` everywhere means unrestricted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrgPolicy {
    /// `trusted_repositories`.
    pub trusted_repositories: Option<TrustedRepositories>,
    /// `port_visibility`.
    pub port_visibility: Option<AllowedVisibilities>,
    /// `extensions`.
    pub extensions: Option<ExtensionPolicy>,
    /// `features` allow patterns.
    pub features: Option<Vec<PrefixPattern>>,
    /// `images` allow patterns.
    pub images: Option<Vec<PrefixPattern>>,
    /// `lifecycle_commands`.
    pub lifecycle_commands: Option<LifecycleSetting>,
    /// `idle_timeout_minutes` (5–240).
    pub idle_timeout_minutes: Option<u16>,
    /// `secrets`.
    pub secrets: Option<SecretsPolicy>,
}

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyDocumentError {
    /// Not JSON with comments.
    #[error("organization policy is not valid JSON: {0}")]
    Syntax(#[from] input::SyntaxError),
    /// Valid JSON, invalid policy.
    #[error("{0}")]
    Invalid(#[from] InputErrors),
}

impl OrgPolicy {
    /// Parses a policy document (JSON with comments and trailing commas, through the
    /// devcontainer crate's syntax layer); every error carries its pointer and line:column.
    pub fn parse(text: &str) -> Result<Self, PolicyDocumentError> {
        let root = parse_tree(text).map_err(|err| {
            let message = match &err.kind {
                SyntaxErrorKind::NotAnObject { found } => {
                    format!("the organization policy must be a JSON object, found {found}")
                }
                other => other.to_string(),
            };
            input::SyntaxError {
                line: err.line as usize,
                column: err.column as usize,
                message,
            }
        })?;
        let index = LineIndex::new(text);
        let at = |pointer: &str| locate(&root, &index, pointer);
        let duplicates = root.duplicate_keys();
        if !duplicates.is_empty() {
            let errs = duplicates
                .into_iter()
                .map(|dup| FieldError {
                    message: format!("duplicate key {:?}", dup.key),
                    at: dup
                        .duplicate
                        .map(|span| index.locate(span.start))
                        .or_else(|| at(&dup.pointer)),
                    pointer: dup.pointer,
                })
                .collect();
            return Err(InputErrors(errs).into());
        }
        Self::from_value(&root.to_json_value(), "").map_err(|InputErrors(errs)| {
            let located = errs
                .into_iter()
                .map(|mut err| {
                    err.at = at(&err.pointer);
                    err
                })
                .collect();
            InputErrors(located).into()
        })
    }

    /// Reads a policy from a JSON value located at `pointer` (e.g. `/org_policy`).
    pub fn from_value(value: &Value, pointer: &str) -> Result<Self, InputErrors> {
        let mut errs = Vec::new();
        match Self::read(value, pointer, &mut errs) {
            Some(policy) if errs.is_empty() => Ok(policy),
            _ => Err(InputErrors(errs)),
        }
    }

    /// Reads a policy, collecting errors in `errs` (`None` when there were any).
    pub(crate) fn read(value: &Value, pointer: &str, errs: &mut Vec<FieldError>) -> Option<Self> {
        let before = errs.len();
        let mut obj = Obj::new(value, pointer, errs)?;
        let mut policy = OrgPolicy::default();
        if let Some((v, p)) = obj.optional("trusted_repositories") {
            policy.trusted_repositories = read_trusted(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("port_visibility") {
            policy.port_visibility = read_visibilities(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("extensions") {
            policy.extensions = read_extensions(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("features") {
            policy.features = read_prefix_allow(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("images") {
            policy.images = read_prefix_allow(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("lifecycle_commands") {
            let choices = [
                ("run", LifecycleSetting::Run),
                ("sandboxed", LifecycleSetting::Sandboxed),
                ("trusted-only", LifecycleSetting::TrustedOnly),
            ];
            policy.lifecycle_commands = one_of(Field::new(v, &p), &choices, errs);
        }
        if let Some((v, p)) = obj.optional("idle_timeout_minutes") {
            policy.idle_timeout_minutes = read_idle(Field::new(v, &p), errs);
        }
        if let Some((v, p)) = obj.optional("secrets") {
            policy.secrets = read_secrets(Field::new(v, &p), errs);
        }
        obj.finish(errs);
        (errs.len() == before).then_some(policy)
    }

    /// The visibilities allowed (all when the key is absent).
    pub fn allowed_visibilities(&self) -> AllowedVisibilities {
        self.port_visibility.unwrap_or_default()
    }

    /// Extra secret names to refuse.
    pub fn deny_names(&self) -> &[String] {
        self.secrets
            .as_ref()
            .map_or(&[], |s| s.deny_names.as_slice())
    }

    /// True unless a trusted-repository list exists and does not cover `repo`.
    pub fn trusts(&self, repo: &RepoName) -> bool {
        self.trusted_repositories
            .as_ref()
            .is_none_or(|t| t.covers(repo))
    }

    /// Whether a base image reference is allowed (all when `images` is absent).
    pub fn allows_image(&self, reference: &str) -> bool {
        self.images
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p.matches(reference)))
    }

    /// Whether a feature reference is allowed (all when `features` is absent).
    pub fn allows_feature(&self, reference: &str) -> bool {
        self.features
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p.matches(reference)))
    }

    /// The idle timeout to apply: the shorter of the user's and the policy's (§2.2 "the shortest
    /// timeout period is applied").
    pub fn idle_timeout(&self, user_minutes: u16) -> u16 {
        self.idle_timeout_minutes
            .map_or(user_minutes, |max| user_minutes.min(max))
    }
}

/// The line:column of the value at `pointer`, or of its nearest ancestor that exists (a missing
/// key is reported at the object that lacks it).
fn locate(root: &Node, index: &LineIndex, pointer: &str) -> Option<LineCol> {
    let mut pointer = pointer;
    loop {
        if let Some(span) = root.resolve(pointer).and_then(|node| node.span) {
            return Some(index.locate(span.start));
        }
        pointer = &pointer[..pointer.rfind('/')?];
    }
}

fn read_trusted(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<TrustedRepositories> {
    match field.value {
        Value::String(s) if s == "all" => Some(TrustedRepositories::All),
        Value::String(s) if s == "none" => Some(TrustedRepositories::None),
        Value::Array(items) => {
            let mut patterns = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let p = child_index(field.pointer, i);
                let Some(text) = string(Field::new(v, &p), errs) else {
                    continue;
                };
                match RepoPattern::parse(text) {
                    Ok(pattern) => patterns.push(pattern),
                    Err(err) => errs.push(FieldError::new(p, err.to_string())),
                }
            }
            Some(TrustedRepositories::Selected(patterns))
        }
        other => {
            errs.push(FieldError::new(
                field.pointer,
                format!(
                    "expected \"all\", \"none\" or an array of \"owner/name\" / \"owner/*\", found {}",
                    describe(other)
                ),
            ));
            None
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => input::kind(other).to_owned(),
    }
}

fn read_visibilities(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<AllowedVisibilities> {
    let items = array(field, errs)?;
    let choices = [
        ("private", Visibility::Private),
        ("org", Visibility::Org),
        ("public", Visibility::Public),
    ];
    let mut list = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let p = child_index(field.pointer, i);
        if let Some(vis) = one_of(Field::new(v, &p), &choices, errs) {
            if list.contains(&vis) {
                errs.push(FieldError::new(
                    p,
                    format!("{:?} is listed twice", vis.as_str()),
                ));
            }
            list.push(vis);
        }
    }
    Some(AllowedVisibilities::from_list(&list))
}

fn read_string_list<T>(
    field: Field<'_>,
    errs: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let items = array(field, errs)?;
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let p = child_index(field.pointer, i);
        if let Some(text) = string(Field::new(v, &p), errs) {
            match parse(text) {
                Ok(value) => out.push(value),
                Err(message) => errs.push(FieldError::new(p, message)),
            }
        }
    }
    Some(out)
}

fn read_extensions(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<ExtensionPolicy> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let parse = |t: &str| ExtensionPattern::parse(t).map_err(|e| e.to_string());
    let mut policy = ExtensionPolicy::default();
    if let Some((v, p)) = obj.optional("allow") {
        policy.allow = read_string_list(Field::new(v, &p), errs, parse);
    }
    if let Some((v, p)) = obj.optional("deny") {
        policy.deny = read_string_list(Field::new(v, &p), errs, parse).unwrap_or_default();
    }
    if let Some((v, p)) = obj.optional("allow_vsix") {
        policy.allow_vsix = boolean(Field::new(v, &p), errs).unwrap_or(false);
    }
    obj.finish(errs);
    Some(policy)
}

fn read_prefix_allow(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<Vec<PrefixPattern>> {
    if field.value.is_object() {
        let mut obj = Obj::new(field.value, field.pointer, errs)?;
        let list = obj
            .required("allow", errs)
            .and_then(|(v, p)| read_string_list(Field::new(v, &p), errs, PrefixPattern::parse));
        obj.finish(errs);
        return list;
    }
    read_string_list(field, errs, PrefixPattern::parse)
}

fn read_idle(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<u16> {
    let minutes = integer(field, errs)?;
    match u16::try_from(minutes) {
        Ok(m) if (MIN_IDLE_TIMEOUT_MINUTES..=MAX_IDLE_TIMEOUT_MINUTES).contains(&m) => Some(m),
        _ => {
            errs.push(FieldError::new(
                field.pointer,
                format!("idle timeout {minutes} is outside {MIN_IDLE_TIMEOUT_MINUTES}-{MAX_IDLE_TIMEOUT_MINUTES} minutes"),
            ));
            None
        }
    }
}

fn is_deny_name(text: &str) -> bool {
    let body = text.strip_suffix('*').unwrap_or(text);
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn read_secrets(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<SecretsPolicy> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let mut policy = SecretsPolicy::default();
    if let Some((v, p)) = obj.optional("deny_names") {
        policy.deny_names = read_string_list(Field::new(v, &p), errs, |t| {
            if is_deny_name(t) {
                Ok(t.to_owned())
            } else {
                Err(format!(
                    "invalid secret name {t:?}: ASCII letters, digits and '_', optionally ending in '*'"
                ))
            }
        })
        .unwrap_or_default();
    }
    obj.finish(errs);
    Some(policy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match OrgPolicy::parse(text) {
            Err(PolicyDocumentError::Invalid(InputErrors(errs))) => {
                errs.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn full_document() {
        let policy = OrgPolicy::parse(
            r#"// organization policy
            {
              "trusted_repositories": ["octo/app", "tools/*"],
              "port_visibility": ["org"],
              "extensions": {"allow": ["ms-python"], "deny": ["evil.*"], "allow_vsix": true},
              "features": {"allow": ["ghcr.io/devcontainers/features/*"]},
              "images": ["mcr.microsoft.com/devcontainers/*", "ubuntu:24.04"],
              "lifecycle_commands": "trusted-only",
              "idle_timeout_minutes": 60,
              "secrets": {"deny_names": ["AWS_*", "NPM_TOKEN"]}, // trailing comma next
            }"#,
        )
        .unwrap();
        let repo = |s: &str| RepoName::parse(s).unwrap();
        assert!(policy.trusts(&repo("Octo/App")));
        assert!(policy.trusts(&repo("tools/x")));
        assert!(!policy.trusts(&repo("octo/other")));
        assert!(policy.allowed_visibilities().allows(Visibility::Org));
        assert!(!policy.allowed_visibilities().allows(Visibility::Public));
        assert!(policy.extensions.as_ref().unwrap().allow_vsix);
        assert!(policy.allows_feature("ghcr.io/devcontainers/features/node:1"));
        assert!(!policy.allows_feature("ghcr.io/evil/x:1"));
        assert!(policy.allows_image("ubuntu:24.04"));
        assert!(!policy.allows_image("ubuntu:24.04-evil"));
        assert!(policy.allows_image("mcr.microsoft.com/devcontainers/base:1"));
        assert_eq!(
            policy.lifecycle_commands,
            Some(LifecycleSetting::TrustedOnly)
        );
        assert_eq!(policy.idle_timeout(240), 60);
        assert_eq!(policy.idle_timeout(30), 30);
        assert_eq!(
            policy.deny_names(),
            ["AWS_*".to_owned(), "NPM_TOKEN".to_owned()]
        );
    }

    #[test]
    fn empty_document_is_unrestricted() {
        let policy = OrgPolicy::parse("{}").unwrap();
        assert_eq!(policy, OrgPolicy::default());
        assert!(policy.trusts(&RepoName::parse("a/b").unwrap()));
        assert_eq!(policy.allowed_visibilities(), AllowedVisibilities::ALL);
        assert!(policy.allows_image("anything"));
        assert_eq!(policy.idle_timeout(45), 45);
        assert!(
            OrgPolicy::parse(r#"{"trusted_repositories": "none"}"#)
                .unwrap()
                .trusted_repositories
                == Some(TrustedRepositories::None)
        );
    }

    #[test]
    fn every_error_is_reported_with_its_pointer() {
        let errs = errors(
            r#"{
              "trusted_repositories": ["octo/app", 3, "bad"],
              "port_visibility": ["org", "org", "everyone"],
              "extensions": {"allow": ["a.b.c"], "deny": "x", "allow_vsix": "yes", "other": 1},
              "features": ["a*b"],
              "images": {"allow": ["x**"], "deny": []},
              "lifecycle_commands": "always",
              "idle_timeout_minutes": 4,
              "secrets": {"deny_names": ["BAD-NAME", ""]},
              "unknown": true
            }"#,
        );
        let pointers: Vec<&str> = errs
            .iter()
            .map(|e| e.split([' ', ':']).next().unwrap())
            .collect();
        assert_eq!(
            pointers,
            vec![
                "/trusted_repositories/1",
                "/trusted_repositories/2",
                "/port_visibility/1",
                "/port_visibility/2",
                "/extensions/allow/0",
                "/extensions/deny",
                "/extensions/allow_vsix",
                "/extensions/other",
                "/features/0",
                "/images/allow/0",
                "/images/deny",
                "/lifecycle_commands",
                "/idle_timeout_minutes",
                "/secrets/deny_names/0",
                "/secrets/deny_names/1",
                "/unknown",
            ],
            "{errs:#?}"
        );
        assert!(errs[12].contains("outside 5-240"));
        assert!(
            errs[12].starts_with("/idle_timeout_minutes (line 8, column 39): "),
            "{}",
            errs[12]
        );
        // A missing key is placed at the object that lacks it.
        let missing = errors("{\n  \"images\": {}\n}");
        assert_eq!(
            missing,
            vec!["/images/allow (line 2, column 13): required field is missing".to_owned()]
        );
    }

    #[test]
    fn idle_bounds_and_types() {
        assert!(OrgPolicy::parse(r#"{"idle_timeout_minutes": 5}"#).is_ok());
        assert!(OrgPolicy::parse(r#"{"idle_timeout_minutes": 240}"#).is_ok());
        assert_eq!(errors(r#"{"idle_timeout_minutes": 241}"#).len(), 1);
        assert_eq!(errors(r#"{"idle_timeout_minutes": 30.5}"#).len(), 1);
        assert_eq!(errors(r#"{"idle_timeout_minutes": "30"}"#).len(), 1);
        assert!(
            matches!(OrgPolicy::parse("[]"), Err(PolicyDocumentError::Syntax(e)) if e.message.contains("must be a JSON object"))
        );
        assert_eq!(
            OrgPolicy::from_value(&serde_json::json!([]), "/org_policy")
                .unwrap_err()
                .to_string(),
            "/org_policy: expected an object, found an array"
        );
        assert!(matches!(
            OrgPolicy::parse("{"),
            Err(PolicyDocumentError::Syntax(_))
        ));
        assert_eq!(
            errors("{\"a\":1,\n \"a\":1}"),
            vec!["/a (line 2, column 2): duplicate key \"a\"".to_owned()]
        );
    }

    #[test]
    fn prefix_patterns() {
        assert!(PrefixPattern::parse("*").unwrap().matches("anything"));
        assert!(PrefixPattern::parse("a*b").is_err());
        assert!(PrefixPattern::parse("").is_err());
        assert!(PrefixPattern::parse("a b").is_err());
        assert!(!PrefixPattern::parse("abc").unwrap().matches("abcd"));
    }
}
