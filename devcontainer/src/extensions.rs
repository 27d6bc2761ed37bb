//! VS Code extension ids as written in `customizations.vscode.extensions`.
//!
//! Accepted forms (reference notes §7.1):
//!
//! | written                     | meaning                                             |
//! |-----------------------------|-----------------------------------------------------|
//! | `publisher.name`            | install the latest release                          |
//! | `publisher.name@1.2.3[-x]`  | install that exact version                          |
//! | `publisher.name@prerelease` | install the pre-release channel                     |
//! | `-publisher.name`           | remove an extension a feature or the image added    |
//! | `/path/to/file.vsix`        | install a local package file (bypasses the gallery) |
//!
//! Publisher and name match `[A-Za-z0-9][A-Za-z0-9-]*`. Ids compare case-insensitively, so
//! [`ExtensionId::canonical`] lower-cases them. Anything non-ASCII is rejected, and characters
//! that *look like* ASCII (U+2011 non-breaking hyphen, Cyrillic `а`, fullwidth `．`, ...) are
//! named in the error, because an id that looks like a trusted one but is not is how a hostile
//! repository would smuggle in a look-alike publisher.

use std::fmt;

/// A parsed extension reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtensionRef {
    /// Install this extension from the gallery.
    Install(ExtensionId),
    /// `-publisher.name`: do not install this extension even if a feature or image adds it.
    Remove(ExtensionId),
    /// A `.vsix` package file (a path inside the container).
    Vsix(String),
}

/// `publisher.name` plus the requested version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionId {
    /// Publisher as written.
    pub publisher: String,
    /// Extension name as written.
    pub name: String,
    /// Which version was asked for.
    pub version: ExtensionVersion,
}

/// The version part after `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtensionVersion {
    /// No `@`: the latest release.
    Latest,
    /// `@prerelease`.
    Prerelease,
    /// `@1.2.3`, `@1.2.3-beta.1+build`: an exact semantic version (text as written).
    Exact(String),
}

/// Why a string is not a valid extension reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionIdError {
    /// Empty or whitespace-only.
    #[error("extension id is empty; expected \"publisher.name\"")]
    Empty,
    /// A non-ASCII character; `looks_like` names the ASCII character it imitates, if any.
    #[error("extension id {id:?} contains non-ASCII character U+{:04X} at character {position}{}; expected only ASCII letters, digits, '-' and one '.'", u32::from(*ch), looks_like.map(|c| format!(" (looks like {c:?}: a look-alike of an ASCII id)")).unwrap_or_default())]
    NonAscii {
        /// The whole id as written.
        id: String,
        /// The offending character.
        ch: char,
        /// 1-based character position.
        position: usize,
        /// The ASCII character it resembles.
        looks_like: Option<char>,
    },
    /// Not `publisher.name`.
    #[error("extension id {id:?} is not of the form \"publisher.name\" (letters, digits and '-', each part starting with a letter or digit)")]
    Malformed {
        /// The id as written.
        id: String,
    },
    /// The text after `@` is neither a semantic version nor `prerelease`.
    #[error("extension {id:?} has version {version:?}; expected \"@MAJOR.MINOR.PATCH\" (optionally -pre/+build) or \"@prerelease\"")]
    BadVersion {
        /// The id as written.
        id: String,
        /// The text after `@`.
        version: String,
    },
    /// `-publisher.name@...`: a removal cannot name a version.
    #[error("extension removal {id:?} must not carry a version; write \"-publisher.name\"")]
    VersionedRemoval {
        /// The id as written.
        id: String,
    },
}

impl ExtensionRef {
    /// Parse one entry of `customizations.vscode.extensions`.
    ///
    /// # Errors
    /// [`ExtensionIdError`] if `text` is not one of the forms in the module docs.
    pub fn parse(text: &str) -> Result<Self, ExtensionIdError> {
        if text.trim().is_empty() {
            return Err(ExtensionIdError::Empty);
        }
        // A package file is a path, not an id: any characters are fine there.
        if text
            .get(text.len().saturating_sub(5)..)
            .is_some_and(|end| end.eq_ignore_ascii_case(".vsix"))
            && text.len() > 5
        {
            return Ok(Self::Vsix(text.to_owned()));
        }
        if let Some((position, ch)) = text.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
            return Err(ExtensionIdError::NonAscii {
                id: text.to_owned(),
                ch,
                position: position + 1,
                looks_like: ascii_lookalike(ch),
            });
        }
        if let Some(rest) = text.strip_prefix('-') {
            if rest.contains('@') {
                return Err(ExtensionIdError::VersionedRemoval {
                    id: text.to_owned(),
                });
            }
            return parse_id(rest, text).map(Self::Remove);
        }
        parse_id(text, text).map(Self::Install)
    }

    /// The extension id this reference is about (`None` for `.vsix` files).
    #[must_use]
    pub fn id(&self) -> Option<&ExtensionId> {
        match self {
            Self::Install(id) | Self::Remove(id) => Some(id),
            Self::Vsix(_) => None,
        }
    }
}

impl ExtensionId {
    /// `publisher.name` in lower case: the form to compare ids with.
    #[must_use]
    pub fn canonical(&self) -> String {
        format!("{}.{}", self.publisher, self.name).to_ascii_lowercase()
    }

    /// The publisher in lower case.
    #[must_use]
    pub fn publisher_lowercase(&self) -> String {
        self.publisher.to_ascii_lowercase()
    }
}

impl fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.publisher, self.name)?;
        match &self.version {
            ExtensionVersion::Latest => Ok(()),
            ExtensionVersion::Prerelease => f.write_str("@prerelease"),
            ExtensionVersion::Exact(v) => write!(f, "@{v}"),
        }
    }
}

impl fmt::Display for ExtensionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Install(id) => id.fmt(f),
            Self::Remove(id) => write!(f, "-{id}"),
            Self::Vsix(path) => f.write_str(path),
        }
    }
}

fn parse_id(body: &str, whole: &str) -> Result<ExtensionId, ExtensionIdError> {
    let (id_part, version) = match body.split_once('@') {
        None => (body, ExtensionVersion::Latest),
        Some((id, "prerelease")) => (id, ExtensionVersion::Prerelease),
        Some((id, v)) if is_semver(v) => (id, ExtensionVersion::Exact(v.to_owned())),
        Some((_, v)) => {
            return Err(ExtensionIdError::BadVersion {
                id: whole.to_owned(),
                version: v.to_owned(),
            })
        }
    };
    let malformed = || ExtensionIdError::Malformed {
        id: whole.to_owned(),
    };
    let (publisher, name) = id_part.split_once('.').ok_or_else(malformed)?;
    if !is_part(publisher) || !is_part(name) {
        return Err(malformed());
    }
    Ok(ExtensionId {
        publisher: publisher.to_owned(),
        name: name.to_owned(),
        version,
    })
}

/// `[A-Za-z0-9][A-Za-z0-9-]*`
fn is_part(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Semantic version 2.0.0 without leading zeros: `MAJOR.MINOR.PATCH[-pre][+build]`.
fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let core_parts: Vec<&str> = core.split('.').collect();
    core_parts.len() == 3
        && core_parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|id| ident(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

/// The ASCII character a non-ASCII character is commonly confused with (a small confusables
/// table covering dashes, dots and the Cyrillic/Greek/fullwidth letters used in spoofing).
#[must_use]
pub fn ascii_lookalike(ch: char) -> Option<char> {
    let c = match ch {
        '\u{2010}'..='\u{2015}'
        | '\u{2212}'
        | '\u{FE58}'
        | '\u{FE63}'
        | '\u{FF0D}'
        | '\u{00AD}' => '-',
        '\u{2024}' | '\u{FF0E}' | '\u{00B7}' | '\u{2027}' | '\u{0701}' | '\u{06D4}' => '.',
        'а' => 'a',
        'е' => 'e',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'с' => 'c',
        'х' | 'χ' => 'x',
        'у' => 'y',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'һ' => 'h',
        'ո' => 'n',
        'ν' => 'v',
        'ա' => 'w',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Н' | 'Η' => 'H',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' => 'C',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(ch) - 0xFF01 + 0x21)?,
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(p: &str, n: &str, v: ExtensionVersion) -> ExtensionId {
        ExtensionId {
            publisher: p.into(),
            name: n.into(),
            version: v,
        }
    }

    #[test]
    fn valid_forms() {
        let table = [
            (
                "ms-python.python",
                ExtensionRef::Install(id("ms-python", "python", ExtensionVersion::Latest)),
            ),
            (
                "GitHub.copilot@1.2.3",
                ExtensionRef::Install(id(
                    "GitHub",
                    "copilot",
                    ExtensionVersion::Exact("1.2.3".into()),
                )),
            ),
            (
                "a.b@1.0.0-beta.1+exp.sha",
                ExtensionRef::Install(id(
                    "a",
                    "b",
                    ExtensionVersion::Exact("1.0.0-beta.1+exp.sha".into()),
                )),
            ),
            (
                "rust-lang.rust-analyzer@prerelease",
                ExtensionRef::Install(id(
                    "rust-lang",
                    "rust-analyzer",
                    ExtensionVersion::Prerelease,
                )),
            ),
            (
                "-ms-vscode.cpptools",
                ExtensionRef::Remove(id("ms-vscode", "cpptools", ExtensionVersion::Latest)),
            ),
            ("/tmp/x.VSIX", ExtensionRef::Vsix("/tmp/x.VSIX".into())),
            (
                "/home/jürgen/x.vsix",
                ExtensionRef::Vsix("/home/jürgen/x.vsix".into()),
            ),
        ];
        for (text, want) in table {
            let got = ExtensionRef::parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        assert_eq!(
            ExtensionRef::parse("GitHub.Copilot")
                .unwrap()
                .id()
                .unwrap()
                .canonical(),
            "github.copilot"
        );
    }

    #[test]
    fn invalid_forms() {
        for text in [
            "",
            "  ",
            "python",
            ".python",
            "ms.",
            "a.b.c",
            "a_b.c",
            "-a.b@1.0.0",
            "a.b@1.0",
            "a.b@01.0.0",
            "a.b@latest",
            "a.b@",
            "@1.0.0",
            "-.x",
            "a .b",
        ] {
            assert!(ExtensionRef::parse(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn lookalikes_are_named() {
        let err = ExtensionRef::parse("ms\u{2011}python.python").unwrap_err();
        assert_eq!(
            err,
            ExtensionIdError::NonAscii {
                id: "ms\u{2011}python.python".into(),
                ch: '\u{2011}',
                position: 3,
                looks_like: Some('-'),
            }
        );
        assert!(err.to_string().contains("U+2011"));
        assert!(err.to_string().contains("look-alike"));
        let err = ExtensionRef::parse("microsоft.python").unwrap_err(); // Cyrillic о
        assert!(matches!(
            err,
            ExtensionIdError::NonAscii {
                looks_like: Some('o'),
                ..
            }
        ));
        let err = ExtensionRef::parse("ms．python").unwrap_err(); // fullwidth full stop
        assert!(matches!(
            err,
            ExtensionIdError::NonAscii {
                looks_like: Some('.'),
                ..
            }
        ));
        let err = ExtensionRef::parse("ms.日本").unwrap_err();
        assert!(matches!(
            err,
            ExtensionIdError::NonAscii {
                looks_like: None,
                ..
            }
        ));
    }
}
