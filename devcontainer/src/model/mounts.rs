//! Mounts: the `mounts` entries, `workspaceMount`, and feature `mounts`.
//!
//! The string form is Docker's `--mount` syntax, passed to `docker run` verbatim:
//! comma-separated fields in CSV (a field may be `"quoted"`, with `""` for a quote inside),
//! each `key=value` or a bare flag such as `readonly`. Keys are case-insensitive; `src` and
//! `source` are the same, as are `dst`, `destination` and `target`. No `type=` means a volume.
//! The object form `{type, source?, target}` is converted by the CLI to
//! `type=…,src=…,dst=…`, dropping any other member (so `"readonly": true` in an object is a
//! silent no-op; it is kept in [`Mount::ignored`] for the audit).
//!
//! Parsing to this shape is what lets the audit see `"\"source=/var/run/docker.sock\",target=/x"`
//! and `src=//var/run/../run/docker.sock` for what they are.

use crate::error::{located, ErrorSink};
use crate::node::Node;
use crate::span::Located;

/// `type=` of a mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MountType {
    /// A host path.
    Bind,
    /// A named or anonymous volume (the default).
    Volume,
    /// A tmpfs.
    Tmpfs,
    /// Any other type as written (lower-cased), e.g. `npipe`, `image`, `cluster`.
    Other(String),
}

/// How the mount was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountForm {
    /// The `--mount` string as written.
    String(String),
    /// The object form.
    Object,
}

/// One parsed mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount type (`volume` when not given).
    pub kind: MountType,
    /// `source`/`src` (host path for binds, volume name for volumes).
    pub source: Option<String>,
    /// `target`/`dst`/`destination` in the container.
    pub target: Option<String>,
    /// `readonly`/`ro` present and not `false`/`0`.
    pub readonly: bool,
    /// Every field as `(lower-cased key, value)` in order (string form), for options the
    /// model does not name (`consistency`, `bind-propagation`, ...).
    pub fields: Vec<(String, Option<String>)>,
    /// Object members the CLI drops when converting (e.g. `readonly`).
    pub ignored: Vec<Located<String>>,
    /// How it was written.
    pub form: MountForm,
}

/// Split a `--mount` string into CSV fields (Go `encoding/csv` rules, comma separator).
///
/// # Errors
/// A message when a quote is not closed or a quoted field has text after the closing quote.
pub fn split_csv(text: &str) -> Result<Vec<String>, String> {
    // Without a quote every rule below reduces to splitting at commas (the usual mount string).
    if !text.contains('"') {
        return Ok(text.split(',').map(str::to_owned).collect());
    }
    split_csv_quoted(text)
}

/// [`split_csv`] char by char, for text with quotes.
fn split_csv_quoted(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_owned()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(format!(
                            "bare '\"' in unquoted field {field:?}; quote the whole field"
                        ))
                    }
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

impl Mount {
    /// Parse a Docker `--mount` string.
    ///
    /// # Errors
    /// A message saying what is wrong (bad CSV, empty field, no target).
    pub fn parse_str(text: &str) -> Result<Self, String> {
        let mut mount = Self {
            kind: MountType::Volume,
            source: None,
            target: None,
            readonly: false,
            fields: Vec::new(),
            ignored: Vec::new(),
            form: MountForm::String(text.to_owned()),
        };
        for field in split_csv(text)? {
            let (key, value) = match field.split_once('=') {
                // Docker lower-cases keys but does not trim them (" source=" is no source).
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
                None => (field.to_ascii_lowercase(), None),
            };
            if key.is_empty() {
                return Err(format!("empty field in mount {text:?}"));
            }
            match (key.as_str(), &value) {
                ("type", Some(v)) => mount.kind = MountType::from_name(v),
                ("source" | "src", v) => mount.source = v.clone(),
                ("target" | "dst" | "destination", v) => mount.target = v.clone(),
                ("readonly" | "ro", v) => {
                    mount.readonly = !matches!(v.as_deref(), Some("false" | "0"));
                }
                _ => {}
            }
            mount.fields.push((key, value));
        }
        if mount.target.as_deref().is_none_or(str::is_empty) {
            return Err(format!(
                "mount {text:?} has no target; expected \"target=/path/in/container\" (or dst=)"
            ));
        }
        Ok(mount)
    }

    /// Whether this mounts a host path.
    #[must_use]
    pub fn is_bind(&self) -> bool {
        self.kind == MountType::Bind
    }
}

impl MountType {
    /// Parse a `type=` value (case-insensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "bind" => Self::Bind,
            "volume" => Self::Volume,
            "tmpfs" => Self::Tmpfs,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Parse one `mounts` entry (string or object).
pub fn parse_mount(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<Located<Mount>> {
    if let Some(s) = node.as_str() {
        return match Mount::parse_str(s) {
            Ok(m) => Some(located(node, m)),
            Err(msg) => {
                errors.invalid(node, property, msg);
                None
            }
        };
    }
    if node.members().is_none() {
        errors.wrong_type(
            node,
            property,
            "a mount string or an object {type, source, target}",
        );
        return None;
    }
    let before = errors.len();
    let kind = match node.get("type") {
        None => {
            errors.push(
                node,
                crate::ModelErrorKind::MissingMember {
                    property: property.to_owned(),
                    member: "type",
                },
            );
            None
        }
        Some(t) => match t.as_str() {
            Some("bind") => Some(MountType::Bind),
            Some("volume") => Some(MountType::Volume),
            Some(other) => {
                errors.invalid(
                    t,
                    property,
                    format!("type {other:?} is invalid; expected \"bind\" or \"volume\""),
                );
                None
            }
            None => {
                errors.wrong_type(t, &format!("{property}.type"), "\"bind\" or \"volume\"");
                None
            }
        },
    };
    let source = node
        .get("source")
        .and_then(|s| errors.string(s, &format!("{property}.source")));
    let target = match node.get("target") {
        Some(t) => errors.string(t, &format!("{property}.target")),
        None => {
            errors.push(
                node,
                crate::ModelErrorKind::MissingMember {
                    property: property.to_owned(),
                    member: "target",
                },
            );
            None
        }
    };
    let ignored = node
        .effective_members()
        .filter(|m| !matches!(m.key.as_str(), "type" | "source" | "target"))
        .map(|m| Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span))
        .collect();
    if errors.len() != before {
        return None;
    }
    Some(located(
        node,
        Mount {
            kind: kind?,
            source: source.map(|s| s.value),
            target: target.map(|t| t.value),
            readonly: false,
            fields: Vec::new(),
            ignored,
            form: MountForm::Object,
        },
    ))
}

/// Parse an array of mounts.
pub fn parse_mounts(node: &Node, property: &str, errors: &mut ErrorSink) -> Vec<Located<Mount>> {
    let Some(items) = node.elements() else {
        errors.wrong_type(node, property, "an array of mount strings or objects");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| parse_mount(item, property, errors))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quote_free_split_matches_the_char_by_char_one() {
        for text in [
            "",
            ",",
            "a",
            "a,",
            ",a",
            "type=bind,source=/x,target=/y",
            "a,,b",
            "ü=1,ß",
        ] {
            assert_eq!(split_csv(text), split_csv_quoted(text), "{text:?}");
        }
    }
    use serde_json::json;

    #[test]
    fn string_forms() {
        let m =
            Mount::parse_str("source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind")
                .unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.source.as_deref(), Some("/var/run/docker.sock"));
        let m = Mount::parse_str("\"source=/var/run/docker.sock\",target=/x,Type=BIND,readonly")
            .unwrap();
        assert_eq!(m.source.as_deref(), Some("/var/run/docker.sock"));
        assert!(m.is_bind());
        assert!(m.readonly);
        let m = Mount::parse_str("src=//var/run/../run/docker.sock,dst=/d").unwrap();
        assert_eq!(m.kind, MountType::Volume);
        assert_eq!(m.source.as_deref(), Some("//var/run/../run/docker.sock"));
        let m = Mount::parse_str("type=bind,\"src=/a,b\",destination=/c,ro=false").unwrap();
        assert_eq!(m.source.as_deref(), Some("/a,b"));
        assert!(!m.readonly);
        let m = Mount::parse_str("\"src=a\"\"b\",target=/t").unwrap();
        assert_eq!(m.source.as_deref(), Some("a\"b"));
    }

    #[test]
    fn bad_strings() {
        for s in [
            "source=/x",
            "\"source=/x,target=/y",
            "\"a\"b,target=/t",
            ",target=/t",
            "",
        ] {
            assert!(Mount::parse_str(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn object_forms() {
        let n = Node::from_json_value(&json!([
            {"type": "bind", "source": "/var/run/docker.sock", "target": "/x", "readonly": true},
            {"type": "volume", "target": "/anon"},
            {"type": "tmpfs", "target": "/t"},
            {"source": "/a"},
            42
        ]));
        let mut e = ErrorSink::new();
        let ms = parse_mounts(&n, "mounts", &mut e);
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].ignored[0].value, "readonly");
        assert_eq!(ms[1].source, None);
        // tmpfs type, missing type + target (two errors), number
        assert_eq!(e.len(), 4, "{:?}", e.into_errors());
    }
}
