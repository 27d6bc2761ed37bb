//! A small YAML tree with line:column marks, built from `saphyr-parser` events.
//!
//! ```text
//! text ─▶ size check ─▶ saphyr-parser events ─▶ Yaml tree (first document only)
//!                         │ anchors kept by id; an alias is a copy of its anchor's tree,
//!                         │ counted against a node budget (no billion laughs)
//!                         └ `<<` merge keys folded in (explicit keys win, as Compose does)
//! ```
//!
//! Only what the Compose audit needs: scalars keep their text and whether they were plain (a
//! plain `null`, `~` or nothing is null), sequences and mappings keep their entries in order,
//! duplicate keys included ([`Yaml::get`] returns the last one). Every value carries where it
//! starts (1-based line and column in characters), so findings point into the Compose file.
//!
//! Invariants: building never recurses (nesting is bounded by [`MAX_DEPTH`] and kept on an
//! explicit stack) and never allocates more than [`MAX_NODES`] nodes, aliases included; past
//! either limit, or on any YAML error, the result is a [`YamlError`] with its position.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::parse::MAX_INPUT_BYTES;

/// Deepest accepted nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 128;
/// Most nodes a document may expand to, aliases included.
pub const MAX_NODES: usize = 200_000;

/// A YAML value with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yaml {
    /// The value.
    pub value: YamlValue,
    /// 1-based line of its first character.
    pub line: usize,
    /// 1-based column (in characters) of its first character.
    pub column: usize,
}

/// The kinds of YAML value the audit distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlValue {
    /// `null`, `~`, or nothing at all (`key:`).
    Null,
    /// Any other scalar, as text (numbers and booleans too: Compose's schema decides).
    Scalar {
        /// The scalar's text, escapes and folding resolved.
        text: String,
        /// Written without quotes (only plain scalars can be `true` or `null`).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping: entries in order, duplicates kept; keys are scalars' text (other keys are
    /// dropped: Compose has none).
    Map(Vec<(String, Yaml)>),
}

/// A YAML document that could not be read, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct YamlError {
    /// What is wrong.
    pub message: String,
    /// 1-based line (0 when not known).
    pub line: usize,
    /// 1-based column in characters (0 when not known).
    pub column: usize,
}

impl Yaml {
    fn new(value: YamlValue, line: usize, column: usize) -> Self {
        Self {
            value,
            line,
            column,
        }
    }

    /// The last entry named `key`, if this is a mapping.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match &self.value {
            YamlValue::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|e| &e.1),
            _ => None,
        }
    }

    /// The entries of a mapping (duplicates included).
    #[must_use]
    pub fn entries(&self) -> &[(String, Yaml)] {
        match &self.value {
            YamlValue::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The elements of a sequence.
    #[must_use]
    pub fn items(&self) -> &[Yaml] {
        match &self.value {
            YamlValue::Seq(items) => items,
            _ => &[],
        }
    }

    /// The text of a scalar.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YamlValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is a mapping.
    #[must_use]
    pub fn is_map(&self) -> bool {
        matches!(self.value, YamlValue::Map(_))
    }
}

/// One container being built.
enum Open {
    Seq {
        items: Vec<Yaml>,
        anchor: usize,
        line: usize,
        column: usize,
    },
    Map {
        entries: Vec<(String, Yaml)>,
        /// What `<<` merged in, applied before the explicit entries when the mapping closes.
        merged: Vec<(String, Yaml)>,
        /// The key read, waiting for its value.
        key: Option<Option<String>>,
        anchor: usize,
        line: usize,
        column: usize,
    },
}

/// Parses the first document of `text`. An empty text (or only comments) is a null document.
///
/// # Errors
/// [`YamlError`] for invalid YAML, an undefined alias, nesting deeper than [`MAX_DEPTH`],
/// more than [`MAX_NODES`] nodes, or a text larger than 4 MiB.
pub fn parse(text: &str) -> Result<Yaml, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            message: format!(
                "document is {} bytes; the limit is {MAX_INPUT_BYTES} bytes (4 MiB)",
                text.len()
            ),
            line: 0,
            column: 0,
        });
    }
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let (line, column) = in_text(text, e.marker().line(), e.marker().col() + 1);
            YamlError {
                message: e.info().to_owned(),
                line,
                column,
            }
        })?;
        if let Some(done) = builder.event(event, span)? {
            return Ok(done);
        }
    }
    Ok(Yaml {
        value: YamlValue::Null,
        line: 1,
        column: 1,
    })
}

/// A position inside `text`: the scanner reports the end of the input one line further down.
fn in_text(text: &str, line: usize, column: usize) -> (usize, usize) {
    let lines = text.split('\n').count();
    if line <= lines {
        return (line, column);
    }
    let last = text.rsplit('\n').next().unwrap_or_default();
    (lines, last.chars().count() + 1)
}

struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Yaml>,
    nodes: usize,
}

impl Builder {
    /// Handles one event; returns the document's root once it is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<Yaml>, YamlError> {
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let error = |message: String| YamlError {
            message,
            line,
            column,
        };
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let value = if plain && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
                    YamlValue::Null
                } else {
                    YamlValue::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                self.count(1, line, column)?;
                self.complete(Yaml::new(value, line, column), anchor)
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(error("alias to an undefined anchor".into()));
                };
                let copy = target.clone();
                self.count(size(&copy), line, column)?;
                self.complete(copy, 0)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(error(format!(
                        "nesting deeper than {MAX_DEPTH} levels of sequences and mappings"
                    )));
                }
                self.count(1, line, column)?;
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Open::Seq {
                            items: Vec::new(),
                            anchor,
                            line,
                            column,
                        }
                    } else {
                        Open::Map {
                            entries: Vec::new(),
                            merged: Vec::new(),
                            key: None,
                            anchor,
                            line,
                            column,
                        }
                    });
                Ok(None)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return Err(error("unbalanced end of a collection".into()));
                };
                let (value, anchor, line, column) = match open {
                    Open::Seq {
                        items,
                        anchor,
                        line,
                        column,
                    } => (YamlValue::Seq(items), anchor, line, column),
                    Open::Map {
                        entries,
                        mut merged,
                        anchor,
                        line,
                        column,
                        ..
                    } => {
                        merged.extend(entries);
                        (YamlValue::Map(merged), anchor, line, column)
                    }
                };
                self.complete(Yaml::new(value, line, column), anchor)
            }
            Event::DocumentEnd | Event::StreamEnd => Ok(Some(Yaml {
                value: YamlValue::Null,
                line: 1,
                column: 1,
            })),
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => Ok(None),
        }
    }

    fn count(&mut self, nodes: usize, line: usize, column: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                message: format!(
                    "the document expands to more than {MAX_NODES} values (aliases included)"
                ),
                line,
                column,
            });
        }
        Ok(())
    }

    /// A finished value: remembered under its anchor, then placed in its parent (or returned
    /// as the root).
    fn complete(&mut self, node: Yaml, anchor: usize) -> Result<Option<Yaml>, YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => Ok(Some(node)),
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                Ok(None)
            }
            Some(Open::Map {
                entries,
                merged,
                key,
                ..
            }) => {
                match key.take() {
                    None => {
                        // A key: scalars only (Compose has no other keys); others are dropped.
                        *key = Some(match node.value {
                            YamlValue::Scalar { text, .. } => Some(text),
                            YamlValue::Null => Some(String::new()),
                            _ => None,
                        });
                    }
                    Some(Some(name)) if name == "<<" => merge_into(merged, node),
                    Some(Some(name)) => entries.push((name, node)),
                    Some(None) => {}
                }
                Ok(None)
            }
        }
    }
}

/// `<<: *a` or `<<: [*a, *b]`: the merged mappings' entries; an earlier mapping in the list wins
/// over a later one, so later ones go first (lookups take the last entry).
fn merge_into(merged: &mut Vec<(String, Yaml)>, node: Yaml) {
    match node.value {
        YamlValue::Map(entries) => merged.extend(entries),
        YamlValue::Seq(items) => {
            for item in items.into_iter().rev() {
                if let YamlValue::Map(entries) = item.value {
                    merged.extend(entries);
                }
            }
        }
        _ => {}
    }
}

/// Nodes in a tree, iteratively.
fn size(node: &Yaml) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        count += 1;
        match &n.value {
            YamlValue::Seq(items) => stack.extend(items),
            YamlValue::Map(entries) => stack.extend(entries.iter().map(|e| &e.1)),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn marks_scalars_and_collections() {
        let doc = parse("services:\n  app:\n    privileged: true\n    cap_add: [SYS_ADMIN, 'x']\n")
            .unwrap();
        let app = doc.get("services").unwrap().get("app").unwrap();
        let p = app.get("privileged").unwrap();
        assert_eq!((p.line, p.column), (3, 17));
        assert_eq!(
            p.value,
            YamlValue::Scalar {
                text: "true".into(),
                plain: true
            }
        );
        let caps = app.get("cap_add").unwrap().items();
        // a quoted scalar starts at its quote
        assert_eq!((caps[1].line, caps[1].column), (4, 26));
        assert_eq!(caps[1].as_str(), Some("x"));
    }

    #[test]
    fn nulls_and_quoted_nulls() {
        let doc = parse("a:\nb: ~\nc: 'null'\n").unwrap();
        assert_eq!(doc.get("a").unwrap().value, YamlValue::Null);
        assert_eq!(doc.get("b").unwrap().value, YamlValue::Null);
        assert_eq!(doc.get("c").unwrap().as_str(), Some("null"));
    }

    #[test]
    fn aliases_and_merge_keys() {
        let text = "x-base: &base\n  privileged: true\n  pid: host\nservices:\n  app:\n    <<: *base\n    pid: private\n";
        let doc = parse(text).unwrap();
        let app = doc.get("services").unwrap().get("app").unwrap();
        let p = app.get("privileged").unwrap();
        assert_eq!(p.as_str(), Some("true"));
        // marks point where the value is written: in the anchor
        assert_eq!((p.line, p.column), (2, 15));
        // the explicit key wins over the merged one
        assert_eq!(app.get("pid").unwrap().as_str(), Some("private"));
        let list = parse("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n").unwrap();
        let c = list.get("c").unwrap();
        assert_eq!(c.get("k").unwrap().as_str(), Some("1"));
        assert_eq!(c.get("j").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn errors_have_positions_and_limits_hold() {
        let e = parse("services:\n  app: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = parse("a: *nope\n").unwrap_err();
        assert!(e.message.contains("anchor"), "{e}");
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        // a billion laughs stops at the node budget
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f"][i];
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("expands"));
        assert_eq!(parse("").unwrap().value, YamlValue::Null);
        assert_eq!(parse("# only a comment\n").unwrap().value, YamlValue::Null);
    }

    #[test]
    fn never_panics_on_truncations() {
        let text = "x: &a {privileged: true}\nservices:\n  app:\n    <<: *a\n    volumes:\n      - \"/var/run/docker.sock:/x\"\n      - type: bind\n        source: ~/.ssh\n    environment:\n      GITHUB_TOKEN:\n      - ü: 'é'\n";
        for end in 0..=text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = parse(prefix);
            }
        }
    }
}
