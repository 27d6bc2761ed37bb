//! Text → raw [`Node`] tree: the syntax layer.
//!
//! ```text
//! &str ─▶ size check (4 MiB) ─▶ strip BOM ─▶ jsonc-parser (comments + trailing commas only)
//!      ─▶ AST ─▶ convert (depth ≤ 128, spans shifted back past the BOM) ─▶ Node (root object)
//! ```
//!
//! Valid documents take a shortcut: the private `scan_tree` module builds the same tree from
//! jsonc-parser's scanner tokens without the AST, and declines on anything unexpected, so
//! errors always come from the AST path.
//!
//! The dialect is what VS Code and the reference CLI write and read in practice: JSON plus
//! `//` and `/* */` comments and trailing commas. Everything else the lenient JavaScript parser
//! would silently "recover" from (single quotes, `#` comments, missing commas, garbage around the
//! root, hex numbers, `NaN`) is a hard error here, because recovery there means a value a
//! reviewer sees in the file is not the value the tool uses.
//!
//! A syntax error is fatal: jsonc-parser stops at the first one, so there is exactly one. The
//! audit still looks at what parsed ([`recover_tree`]), but no model is built from it.

use jsonc_parser::ast::{ObjectPropName, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::errors::ParseErrorKind;
use jsonc_parser::ParseStringErrorKind;
use jsonc_parser::{CollectOptions, ParseOptions};

use crate::node::{Member, Node, NodeValue};
use crate::pointer;
use crate::span::{LineIndex, Span};

/// What the parser accepts beyond JSON: comments and trailing commas (the devcontainer.json
/// dialect), nothing else. `scan_tree` derives its scanner's options from these, as
/// `jsonc_parser::parse_to_ast` does, so both paths accept exactly the same documents.
pub(crate) const PARSE_OPTIONS: ParseOptions = ParseOptions {
    allow_comments: true,
    allow_trailing_commas: true,
    allow_loose_object_property_names: false,
    allow_missing_commas: false,
    allow_single_quoted_strings: false,
    allow_hexadecimal_numbers: false,
    allow_unary_plus_numbers: false,
    allow_bare_decimal_point_numbers: false,
    allow_non_finite_numbers: false,
    allow_extended_string_escapes: false,
};

/// Largest accepted document, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest accepted nesting of arrays and objects (the root object is depth 1).
pub const MAX_DEPTH: usize = 128;

const BOM: &str = "\u{feff}";

/// A document that is not acceptable JSONC, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct SyntaxError {
    /// What is wrong.
    pub kind: SyntaxErrorKind,
    /// Pointer of the value involved, `""` when not known (e.g. a token error).
    pub pointer: String,
    /// Where in the original text (BOM included).
    pub span: Option<Span>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column in characters.
    pub column: u32,
}

/// The kinds of syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxErrorKind {
    /// Input larger than [`MAX_INPUT_BYTES`].
    #[error("document is {size} bytes; the limit is {limit} bytes (4 MiB)")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nothing but whitespace and comments.
    #[error("document is empty; expected a JSON object")]
    Empty,
    /// The root is not an object.
    #[error("the top-level value is {found}; a devcontainer.json must contain a JSON object")]
    NotAnObject {
        /// JSON type of the root.
        found: &'static str,
    },
    /// Arrays/objects nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} levels of arrays and objects")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A `\uD800`-style escape that is not part of a surrogate pair.
    #[error("string contains a lone UTF-16 surrogate escape ({detail}); only complete surrogate pairs are valid")]
    LoneSurrogate {
        /// The parser's description of the escape.
        detail: String,
    },
    /// Any other JSONC syntax error.
    #[error("{message}")]
    Invalid {
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Parse `text` into a raw tree whose root is an object.
///
/// # Errors
/// [`SyntaxError`] for anything that is not a single JSONC object within the limits.
pub fn parse_tree(text: &str) -> Result<Node, SyntaxError> {
    parse_tree_with(text, &LineIndex::new(text))
}

/// [`parse_tree`] with a prebuilt line index of the same `text`.
pub(crate) fn parse_tree_with(text: &str, index: &LineIndex) -> Result<Node, SyntaxError> {
    parse_tree_impl(text, index, true)
}

/// The tree through jsonc-parser's AST only (no fast path), for tests that compare the two.
#[cfg(test)]
pub(crate) fn ast_tree(text: &str) -> Result<Node, SyntaxError> {
    parse_tree_impl(text, &LineIndex::new(text), false)
}

fn parse_tree_impl(text: &str, index: &LineIndex, fast: bool) -> Result<Node, SyntaxError> {
    let err = |kind, pointer: String, span: Option<Span>| {
        let lc = index.locate(span.map_or(0, |s| s.start));
        SyntaxError {
            kind,
            pointer,
            span,
            line: lc.line,
            column: lc.column,
        }
    };
    if text.len() > MAX_INPUT_BYTES {
        return Err(err(
            SyntaxErrorKind::TooLarge {
                size: text.len(),
                limit: MAX_INPUT_BYTES,
            },
            String::new(),
            None,
        ));
    }
    let (body, offset) = match text.strip_prefix(BOM) {
        Some(rest) => (rest, BOM.len()),
        None => (text, 0),
    };
    // Valid documents: straight from the scanner's tokens. Anything else declines, and the AST
    // path below finds and reports the error.
    if fast {
        if let Some(node) = crate::scan_tree::build(body, offset) {
            return Ok(node);
        }
    }
    let result = jsonc_parser::parse_to_ast(body, &CollectOptions::default(), &PARSE_OPTIONS)
        .map_err(|e| {
            let r = e.range();
            let span = Some(Span::new(r.start + offset, r.end + offset));
            err(map_kind(e.kind()), String::new(), span)
        })?;
    let Some(root) = result.value else {
        return Err(err(
            SyntaxErrorKind::Empty,
            String::new(),
            Some(Span::new(text.len(), text.len())),
        ));
    };
    let converter = Converter { offset };
    let node = converter
        .convert(&root, String::new(), 1)
        .map_err(|(pointer, span)| {
            err(
                SyntaxErrorKind::TooDeep { limit: MAX_DEPTH },
                pointer,
                Some(span),
            )
        })?;
    if !matches!(node.value, NodeValue::Object(_)) {
        return Err(err(
            SyntaxErrorKind::NotAnObject {
                found: node.type_name(),
            },
            String::new(),
            node.span,
        ));
    }
    Ok(node)
}

/// What the reference CLI's lenient parser recovers from: missing commas, single quotes, bare
/// keys, hex numbers. Used only to recover a tree for the audit after a syntax error.
const LENIENT_OPTIONS: ParseOptions = ParseOptions {
    allow_comments: true,
    allow_trailing_commas: true,
    allow_loose_object_property_names: true,
    allow_missing_commas: true,
    allow_single_quoted_strings: true,
    allow_hexadecimal_numbers: true,
    allow_unary_plus_numbers: true,
    allow_bare_decimal_point_numbers: true,
    allow_non_finite_numbers: true,
    allow_extended_string_escapes: true,
};

/// How many cut points before the error are tried when recovering a truncated document.
const MAX_RECOVERY_ATTEMPTS: usize = 16;

/// Best-effort tree of a document that has a syntax error, for the audit only (a tool must never
/// act on it): the parts that parsed, so a `privileged: true` before a missing comma or garbage
/// after the root is still reported. Tries the lenient dialect on the whole text, then the text
/// up to the error, then up to each of the last separators before it, with the open arrays and
/// objects closed. Spans point into the original text. `None` when nothing object-like parsed.
pub(crate) fn recover_tree(text: &str, error: &SyntaxError) -> Option<Node> {
    if matches!(
        error.kind,
        SyntaxErrorKind::TooLarge { .. } | SyntaxErrorKind::TooDeep { .. }
    ) {
        return None;
    }
    let (body, offset) = match text.strip_prefix(BOM) {
        Some(rest) => (rest, BOM.len()),
        None => (text, 0),
    };
    // Like the CLI's scanner, skip what it cannot read (`#`, a stray word): blank the offending
    // token (same length, so spans stay right) and parse again.
    let mut blanked = body.to_owned();
    for _ in 0..MAX_RECOVERY_ATTEMPTS {
        match jsonc_parser::parse_to_ast(&blanked, &CollectOptions::default(), &LENIENT_OPTIONS) {
            Ok(_) => return lenient_object(&blanked, offset),
            Err(e) => {
                let r = e.range();
                let ok = r.start < r.end
                    && r.end <= blanked.len()
                    && blanked.is_char_boundary(r.start)
                    && blanked.is_char_boundary(r.end);
                if !ok {
                    break;
                }
                blanked.replace_range(r.start..r.end, &" ".repeat(r.end - r.start));
            }
        }
    }
    let end = error
        .span
        .map_or(body.len(), |s| s.start.saturating_sub(offset))
        .min(body.len());
    let end = (0..=end).rev().find(|i| body.is_char_boundary(*i))?;
    let prefix = &body[..end];
    cut_points(prefix)
        .iter()
        .rev()
        .take(MAX_RECOVERY_ATTEMPTS)
        .find_map(|cut| {
            let mut candidate = body[..cut.keep].to_owned();
            candidate.extend(
                cut.open
                    .chars()
                    .rev()
                    .map(|c| if c == '{' { '}' } else { ']' }),
            );
            lenient_object(&candidate, offset)
        })
}

fn lenient_object(body: &str, offset: usize) -> Option<Node> {
    let result =
        jsonc_parser::parse_to_ast(body, &CollectOptions::default(), &LENIENT_OPTIONS).ok()?;
    let node = Converter { offset }
        .convert(&result.value?, String::new(), 1)
        .ok()?;
    matches!(node.value, NodeValue::Object(_)).then_some(node)
}

/// A place where the text can be cut and closed: after a `{`/`[`, or before a `,`.
struct Cut {
    /// Bytes of the text to keep.
    keep: usize,
    /// The arrays and objects open there, outermost first.
    open: String,
}

/// Scans `text` outside strings and comments for cut points, the end of the text last. Old
/// ones are dropped as it goes (only the last [`MAX_RECOVERY_ATTEMPTS`] are tried).
fn cut_points(text: &str) -> Vec<Cut> {
    let mut cuts: Vec<Cut> = Vec::new();
    let mut open = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let push = |cuts: &mut Vec<Cut>, keep: usize, open: &str| {
        if cuts.len() > MAX_RECOVERY_ATTEMPTS * 4 {
            cuts.drain(..MAX_RECOVERY_ATTEMPTS * 3);
        }
        cuts.push(Cut {
            keep,
            open: open.to_owned(),
        });
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'{' | b'[' => {
                open.push(char::from(bytes[i]));
                push(&mut cuts, i + 1, &open);
            }
            b'}' | b']' => {
                open.pop();
                push(&mut cuts, i + 1, &open);
            }
            b',' => push(&mut cuts, i, &open),
            _ => {}
        }
        i += 1;
    }
    // The state at the very end, so the whole prefix can be closed too.
    push(&mut cuts, text.len(), &open);
    cuts
}

fn map_kind(kind: &ParseErrorKind) -> SyntaxErrorKind {
    use ParseErrorKind as K;
    let message = match kind {
        K::String(ParseStringErrorKind::InvalidUnicodeEscapeSequence(detail))
            if detail.contains("surrogate") =>
        {
            return SyntaxErrorKind::LoneSurrogate {
                detail: detail.clone(),
            }
        }
        K::NestingDepthExceeded => return SyntaxErrorKind::TooDeep { limit: MAX_DEPTH },
        K::SingleQuotedStringsNotAllowed => {
            "single-quoted strings are not JSON; use double quotes".to_owned()
        }
        K::ExpectedComma => {
            "expected ',' between members or elements (a comma is missing)".to_owned()
        }
        K::MultipleRootJsonValues => {
            "unexpected text after the top-level value; a devcontainer.json holds exactly one object"
                .to_owned()
        }
        K::UnexpectedToken | K::UnexpectedWord => format!(
            "{kind}; expected a JSON value (only // and /* */ comments are allowed, not #)"
        ),
        K::HexadecimalNumbersNotAllowed
        | K::UnaryPlusNumbersNotAllowed
        | K::BareDecimalPointNumbersNotAllowed
        | K::NonFiniteNumbersNotAllowed => format!("{kind}; expected a plain JSON number"),
        K::ExpectedStringObjectProperty => {
            "expected a double-quoted string as object key".to_owned()
        }
        other => other.to_string(),
    };
    SyntaxErrorKind::Invalid { message }
}

struct Converter {
    offset: usize,
}

impl Converter {
    fn span(&self, r: jsonc_parser::common::Range) -> Option<Span> {
        Some(Span::new(r.start + self.offset, r.end + self.offset))
    }

    /// Convert one AST value. Recursion is bounded by `MAX_DEPTH` (and jsonc-parser's own 512),
    /// so this cannot overflow the stack. Err carries the pointer and span of the first value
    /// that is too deep.
    fn convert(&self, v: &Value<'_>, ptr: String, depth: usize) -> Result<Node, (String, Span)> {
        let span = self.span(v.range());
        let is_container = matches!(v, Value::Array(_) | Value::Object(_));
        if is_container && depth > MAX_DEPTH {
            return Err((ptr, span.unwrap_or(Span::new(0, 0))));
        }
        let value = match v {
            Value::NullKeyword(_) => NodeValue::Null,
            Value::BooleanLit(b) => NodeValue::Bool(b.value),
            Value::NumberLit(n) => NodeValue::Number(n.value.to_owned()),
            Value::StringLit(s) => NodeValue::String(s.value.to_string()),
            // Exact capacity: collecting through `Result` would grow the vectors by doubling.
            Value::Array(a) => {
                let mut items = Vec::with_capacity(a.elements.len());
                for (i, e) in a.elements.iter().enumerate() {
                    items.push(self.convert(e, pointer::child_index(&ptr, i), depth + 1)?);
                }
                NodeValue::Array(items)
            }
            Value::Object(o) => {
                let mut members = Vec::with_capacity(o.properties.len());
                for p in &o.properties {
                    let (key, key_range) = match &p.name {
                        ObjectPropName::String(s) => (s.value.to_string(), s.range),
                        ObjectPropName::Word(w) => (w.value.to_owned(), w.range),
                    };
                    let child = pointer::child_key(&ptr, &key);
                    members.push(Member {
                        value: self.convert(&p.value, child, depth + 1)?,
                        key,
                        key_span: self.span(key_range),
                    });
                }
                NodeValue::Object(members)
            }
        };
        Ok(Node::new(value, ptr, span))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn syntax(text: &str) -> SyntaxError {
        parse_tree(text).unwrap_err()
    }

    #[test]
    fn accepts_comments_trailing_commas_bom_crlf() {
        let text =
            "\u{feff}{\r\n  // c\r\n  \"a\": [1, 2,], /* b */\r\n  \"b\": {\"c\": true,},\r\n}";
        let n = parse_tree(text).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.pointer, "/a");
        // span points into the ORIGINAL text (BOM included)
        let s = a.span.unwrap();
        assert_eq!(&text[s.start..s.end], "[1, 2,]");
        let idx = LineIndex::new(text);
        let lc = idx.locate(s.start);
        assert_eq!((lc.line, lc.column), (3, 8));
    }

    #[test]
    fn decodes_escaped_keys_and_keeps_duplicates() {
        let n = parse_tree(r#"{"privil\u0065ged": false, "privileged": true, "__proto__": {}}"#)
            .unwrap();
        assert_eq!(n.members().unwrap()[0].key, "privileged");
        assert_eq!(n.get("privileged").unwrap().as_bool(), Some(true));
        assert_eq!(n.duplicate_keys().len(), 1);
        assert!(n.get("__proto__").is_some());
    }

    #[test]
    fn duplicates_inside_shadowed_objects_are_not_reported() {
        let n = parse_tree(r#"{"c": {"x": 1, "x": 2}, "c": {"y": 1, "y": 2}}"#).unwrap();
        let d = n.duplicate_keys();
        let pointers: Vec<_> = d.iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(pointers, ["/c", "/c/y"]);
        assert!(d.iter().all(|d| n.resolve(&d.pointer).is_some()));
    }

    #[test]
    fn numbers_keep_source_text() {
        let n = parse_tree(r#"{"p": [1e400, 99999999999999999999, 3000.0, -1, 65536]}"#).unwrap();
        let texts: Vec<_> = n
            .get("p")
            .unwrap()
            .elements()
            .unwrap()
            .iter()
            .map(|e| match &e.value {
                NodeValue::Number(t) => t.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(
            texts,
            ["1e400", "99999999999999999999", "3000.0", "-1", "65536"]
        );
    }

    #[test]
    fn rejections_have_positions() {
        let table: &[(&str, u32, u32, &str)] = &[
            ("", 1, 1, "empty"),
            ("  // only a comment\n", 2, 1, "empty"),
            ("[]", 1, 1, "array"),
            ("null", 1, 1, "null"),
            ("\"x\"", 1, 1, "string"),
            ("{'a': 1}", 1, 2, "single-quoted"),
            ("{\n# c\n\"a\": 1}", 2, 1, "#"),
            ("{\"a\": 1\n \"b\": 2}", 1, 8, "comma"),
            ("{} {}", 1, 4, "exactly one"),
            ("\"ghcr.io/x\": {} {}", 1, 12, ""),
            ("{\"a\": \"\\ud800\"}", 1, 8, "surrogate"),
            ("{\"a\": 0x10}", 1, 7, "number"),
            ("{\"a\": 1", 1, 1, "nterminated"),
            ("{a: 1}", 1, 2, ""),
        ];
        for (text, line, column, needle) in table {
            let e = syntax(text);
            assert_eq!((e.line, e.column), (*line, *column), "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let e = syntax(&"[".repeat(10_000));
        assert_eq!(e.kind, SyntaxErrorKind::TooDeep { limit: MAX_DEPTH });
        let mut text = "{\"a\":".to_owned() + &"[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        text.push('}');
        let e = syntax(&text);
        assert_eq!(e.kind, SyntaxErrorKind::TooDeep { limit: MAX_DEPTH });
        assert_eq!(e.pointer, format!("/a{}", "/0".repeat(MAX_DEPTH - 1)));
        assert_eq!(
            (e.line, e.column),
            (1, 6 + u32::try_from(MAX_DEPTH).unwrap() - 1)
        );
        let ok =
            "{\"a\":".to_owned() + &"[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1) + "}";
        assert!(parse_tree(&ok).is_ok());
    }

    #[test]
    fn size_limit_checked_before_parsing() {
        let big = " ".repeat(MAX_INPUT_BYTES + 1);
        assert!(matches!(
            syntax(&big).kind,
            SyntaxErrorKind::TooLarge { .. }
        ));
    }
}
