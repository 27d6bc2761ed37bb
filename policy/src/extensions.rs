//! Which requested VS Code extensions the agent installs.
//!
//! Entries are parsed with the devcontainer crate's [`ExtensionRef::parse`] (`publisher.name`,
//! `publisher.name@version`, `-publisher.name` to remove, `*.vsix` paths); this module decides.
//!
//! Rules (issue 3 unless noted; DESIGN.md §1 "installs only extensions that the policy allows"):
//! - An entry that does not parse (non-ASCII, look-alike or invalid characters): `invalid-id`.
//! - A `.vsix` path needs the organization's `allow_vsix: true` (`vsix-not-allowed`). Chosen
//!   restrictively: this holds even with no organization policy, because a package file bypasses
//!   the gallery and any id-based allow or deny list; and a restricted repository may not
//!   install one at all (`untrusted-repository`), since no allow list can name a file.
//! - Deny wins over allow: an id matching a deny pattern is `denied-by-organization`.
//! - With an allow list, an id it does not name is `not-in-allow-list` (for trusted and
//!   restricted repositories alike). Without one, a trusted repository may install anything not
//!   denied and a restricted one nothing (`untrusted-repository`).
//! - Removals (`-publisher.name`) only narrow what is installed and are always honoured.
//! - Patterns are `publisher`, `publisher.name` or `*`, where `*` matches within one
//!   dot-separated part; ids and patterns compare case-insensitively.
//! - A refused entry's `id` is the entry as written.

use codespace_devcontainer::{ExtensionRef, ExtensionVersion};
use serde::{Deserialize, Serialize};

use crate::decision::{Authorized, ReasonCode};
use crate::lifecycle::Trust;

/// Why a pattern of the organization policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionPatternError {
    /// Not `publisher`, `publisher.name` or `*`-wildcarded parts of ASCII letters, digits, `-`.
    #[error("invalid extension pattern {0:?}: expected \"publisher\", \"publisher.name\" or \"*\" (ASCII letters, digits, '-', '*')")]
    Malformed(String),
}

/// An allow or deny pattern: one part (publisher) or two (publisher.name), lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionPattern {
    publisher: String,
    name: Option<String>,
}

fn is_pattern_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
}

impl ExtensionPattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<Self, ExtensionPatternError> {
        let malformed = || ExtensionPatternError::Malformed(text.to_owned());
        let lower = text.to_ascii_lowercase();
        let (publisher, name) = match lower.split_once('.') {
            Some((p, n)) => (p.to_owned(), Some(n.to_owned())),
            None => (lower.clone(), None),
        };
        if !is_pattern_part(&publisher) || name.as_deref().is_some_and(|n| !is_pattern_part(n)) {
            return Err(malformed());
        }
        Ok(Self { publisher, name })
    }

    /// True when the pattern names `publisher.name`.
    pub fn matches(&self, publisher: &str, name: &str) -> bool {
        glob(&self.publisher, &publisher.to_ascii_lowercase())
            && self
                .name
                .as_deref()
                .is_none_or(|pattern| glob(pattern, &name.to_ascii_lowercase()))
    }
}

/// `*` matches any run of characters (parts contain no `.`, so a match stays in its part).
fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The organization's extension rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionPolicy {
    /// `None`: no allow list.
    pub allow: Option<Vec<ExtensionPattern>>,
    /// Deny patterns (win over allow).
    pub deny: Vec<ExtensionPattern>,
    /// Whether `.vsix` files may be installed.
    pub allow_vsix: bool,
}

/// Why a requested extension is refused (stable kebab-case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ExtensionRefusal {
    /// Not a valid extension reference.
    InvalidId,
    /// A `.vsix` path without `allow_vsix`.
    VsixNotAllowed,
    /// Matches a deny pattern.
    DeniedByOrganization,
    /// An allow list exists and does not name it.
    NotInAllowList,
    /// A restricted repository and no allow list naming it.
    UntrustedRepository,
}

impl ReasonCode for ExtensionRefusal {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidId => "invalid-id",
            Self::VsixNotAllowed => "vsix-not-allowed",
            Self::DeniedByOrganization => "denied-by-organization",
            Self::NotInAllowList => "not-in-allow-list",
            Self::UntrustedRepository => "untrusted-repository",
        }
    }
}

/// An extension to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    /// `publisher.name` as written, or the `.vsix` path.
    pub id: String,
    /// `null` for the latest release (and for `.vsix`), `"prerelease"`, or an exact version.
    pub version: Option<String>,
}

/// An extension to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remove {
    /// `publisher.name` as written (without the leading `-`).
    pub id: String,
}

/// A refused entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The entry as written.
    pub id: String,
    /// Why.
    pub reason: ExtensionRefusal,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExtensionPlan {
    /// To install, in request order.
    pub install: Vec<Install>,
    /// To remove, in request order.
    pub remove: Vec<Remove>,
    /// Refused entries, in request order.
    pub refused: Vec<Refused>,
}

impl ExtensionPlan {
    /// The installs the agent may perform.
    pub fn authorize(&self) -> Authorized<Vec<Install>> {
        Authorized::new(self.install.clone())
    }
}

/// Decides each requested entry (see the module docs). `policy` is `None` when the
/// organization policy has no `extensions` key.
pub fn plan(policy: Option<&ExtensionPolicy>, trust: Trust, requested: &[String]) -> ExtensionPlan {
    let mut out = ExtensionPlan::default();
    for entry in requested {
        match decide(policy, trust, entry) {
            Ok(Action::Install(install)) => {
                let seen = out.install.iter().any(|i| {
                    i.id.eq_ignore_ascii_case(&install.id) && i.version == install.version
                });
                if !seen {
                    out.install.push(install);
                }
            }
            Ok(Action::Remove(remove)) => {
                if !out
                    .remove
                    .iter()
                    .any(|r| r.id.eq_ignore_ascii_case(&remove.id))
                {
                    out.remove.push(remove);
                }
            }
            Err(reason) => out.refused.push(Refused {
                id: entry.clone(),
                reason,
            }),
        }
    }
    out
}

enum Action {
    Install(Install),
    Remove(Remove),
}

fn decide(
    policy: Option<&ExtensionPolicy>,
    trust: Trust,
    entry: &str,
) -> Result<Action, ExtensionRefusal> {
    let parsed = ExtensionRef::parse(entry).map_err(|_| ExtensionRefusal::InvalidId)?;
    let id = match parsed {
        ExtensionRef::Remove(id) => {
            return Ok(Action::Remove(Remove {
                id: format!("{}.{}", id.publisher, id.name),
            }))
        }
        ExtensionRef::Vsix(path) => {
            if !policy.is_some_and(|p| p.allow_vsix) {
                return Err(ExtensionRefusal::VsixNotAllowed);
            }
            if trust == Trust::Restricted {
                return Err(ExtensionRefusal::UntrustedRepository);
            }
            return Ok(Action::Install(Install {
                id: path,
                version: None,
            }));
        }
        ExtensionRef::Install(id) => id,
        // A future form of reference this crate does not know: refuse rather than guess.
        _ => return Err(ExtensionRefusal::InvalidId),
    };
    let named_by =
        |patterns: &[ExtensionPattern]| patterns.iter().any(|p| p.matches(&id.publisher, &id.name));
    if policy.is_some_and(|p| named_by(&p.deny)) {
        return Err(ExtensionRefusal::DeniedByOrganization);
    }
    match policy.and_then(|p| p.allow.as_deref()) {
        Some(allow) if !named_by(allow) => return Err(ExtensionRefusal::NotInAllowList),
        Some(_) => {}
        None if trust == Trust::Restricted => return Err(ExtensionRefusal::UntrustedRepository),
        None => {}
    }
    let version = match &id.version {
        ExtensionVersion::Latest => None,
        ExtensionVersion::Prerelease => Some("prerelease".to_owned()),
        ExtensionVersion::Exact(v) => Some(v.clone()),
        _ => return Err(ExtensionRefusal::InvalidId),
    };
    Ok(Action::Install(Install {
        id: format!("{}.{}", id.publisher, id.name),
        version,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<ExtensionPattern> {
        list.iter()
            .map(|p| ExtensionPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn patterns_table() {
        let table = [
            ("ms-python", "ms-python", "python", true),
            ("MS-Python", "ms-python", "python", true),
            ("ms-python.python", "MS-PYTHON", "Python", true),
            ("ms-python.python", "ms-python", "pylance", false),
            ("*", "anyone", "anything", true),
            ("ms-*", "ms-vscode", "cpptools", true),
            ("ms-*", "microsoft", "x", false),
            ("*.python", "ms-python", "python", true),
            ("*.py*", "ms-python", "rust", false),
            ("ms-python.py*", "ms-python", "pylance", true),
            ("a*b*c", "axxbyyc", "n", true),
            ("a*b*c", "axxbyy", "n", false),
            ("ab*b", "ab", "n", false),
        ];
        for (pattern, publisher, name, want) in table {
            assert_eq!(
                ExtensionPattern::parse(pattern)
                    .unwrap()
                    .matches(publisher, name),
                want,
                "{pattern} {publisher}.{name}"
            );
        }
        for bad in ["", ".", "a.", ".b", "a.b.c", "a b", "a_b", "é"] {
            assert!(ExtensionPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn run(policy: Option<&ExtensionPolicy>, trust: Trust, requested: &[&str]) -> ExtensionPlan {
        let requested: Vec<String> = requested.iter().map(|s| (*s).to_owned()).collect();
        plan(policy, trust, &requested)
    }

    fn refusals(plan: &ExtensionPlan) -> Vec<(&str, ExtensionRefusal)> {
        plan.refused
            .iter()
            .map(|r| (r.id.as_str(), r.reason))
            .collect()
    }

    #[test]
    fn every_refusal_reason() {
        use ExtensionRefusal::*;
        let policy = ExtensionPolicy {
            allow: Some(pats(&["ms-python", "rust-lang.rust-analyzer"])),
            deny: pats(&["ms-python.bad*"]),
            allow_vsix: false,
        };
        let out = run(
            Some(&policy),
            Trust::Trusted,
            &[
                "ms-python.python@1.2.3",
                "ms-python.badthing",
                "evil.ext",
                "/x/y.vsix",
                "ms\u{2011}python.python",
                "-old.ext",
                "rust-lang.rust-analyzer@prerelease",
            ],
        );
        assert_eq!(
            out.install,
            vec![
                Install {
                    id: "ms-python.python".into(),
                    version: Some("1.2.3".into())
                },
                Install {
                    id: "rust-lang.rust-analyzer".into(),
                    version: Some("prerelease".into())
                },
            ]
        );
        assert_eq!(
            out.remove,
            vec![Remove {
                id: "old.ext".into()
            }]
        );
        assert_eq!(
            refusals(&out),
            vec![
                ("ms-python.badthing", DeniedByOrganization),
                ("evil.ext", NotInAllowList),
                ("/x/y.vsix", VsixNotAllowed),
                ("ms\u{2011}python.python", InvalidId),
            ]
        );
    }

    #[test]
    fn trust_without_allow_list() {
        use ExtensionRefusal::*;
        let deny_only = ExtensionPolicy {
            allow: None,
            deny: pats(&["bad"]),
            allow_vsix: true,
        };
        let trusted = run(
            Some(&deny_only),
            Trust::Trusted,
            &["a.b", "bad.x", "/p.vsix"],
        );
        assert_eq!(trusted.install.len(), 2);
        assert_eq!(refusals(&trusted), vec![("bad.x", DeniedByOrganization)]);
        let restricted = run(
            Some(&deny_only),
            Trust::Restricted,
            &["a.b", "bad.x", "/p.vsix"],
        );
        assert!(restricted.install.is_empty());
        assert_eq!(
            refusals(&restricted),
            vec![
                ("a.b", UntrustedRepository),
                ("bad.x", DeniedByOrganization),
                ("/p.vsix", UntrustedRepository)
            ]
        );
        let none = run(None, Trust::Trusted, &["a.b", "/p.vsix"]);
        assert_eq!(none.install.len(), 1);
        assert_eq!(refusals(&none), vec![("/p.vsix", VsixNotAllowed)]);
        let allow_restricted = ExtensionPolicy {
            allow: Some(pats(&["a"])),
            deny: vec![],
            allow_vsix: false,
        };
        let out = run(Some(&allow_restricted), Trust::Restricted, &["A.b", "c.d"]);
        assert_eq!(
            out.install,
            vec![Install {
                id: "A.b".into(),
                version: None
            }]
        );
        assert_eq!(refusals(&out), vec![("c.d", NotInAllowList)]);
        assert_eq!(out.authorize().get().len(), 1);
    }

    #[test]
    fn reason_codes_match_serde() {
        use ExtensionRefusal::*;
        for r in [
            InvalidId,
            VsixNotAllowed,
            DeniedByOrganization,
            NotInAllowList,
            UntrustedRepository,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }
}
