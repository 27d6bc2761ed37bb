//! The fast path of [`crate::parse`]: a [`Node`] tree straight from jsonc-parser's [`Scanner`]
//! tokens, without building jsonc-parser's AST first.
//!
//! ```text
//! text ─▶ Scanner tokens (comments skipped) ─▶ Node tree        (valid documents: this file)
//!      └▶ anything unexpected ─▶ None ─▶ parse_to_ast + convert (errors: parse.rs, unchanged)
//! ```
//!
//! It accepts a strict subset of what `parse_to_ast` accepts with the options `parse.rs` passes
//! (double-quoted keys, a colon, values separated by commas, trailing commas, comments, one root
//! object, nesting within [`MAX_DEPTH`]) and builds exactly the tree the AST conversion builds
//! (same spans, pointers and decoded strings; a test compares the two). On anything else — a
//! scanner error, a missing comma, a word, too deep, not an object, empty — it returns `None`
//! and the caller takes the AST path, so every error, its kind and its position are the ones
//! jsonc-parser reports. Errors are rare; valid documents skip the AST and its drop.

use jsonc_parser::tokens::Token;
use jsonc_parser::{Scanner, ScannerOptions};

use crate::node::{Member, Node, NodeValue};
use crate::parse::{MAX_DEPTH, PARSE_OPTIONS};
use crate::pointer;
use crate::span::Span;

/// The tree of `body` (the text after any BOM, which is `offset` bytes long), or `None` when the
/// AST path must decide (any error, or anything this builder does not handle).
pub(crate) fn build(body: &str, offset: usize) -> Option<Node> {
    // The scanner options parse_to_ast derives from the parser's options.
    let p = &PARSE_OPTIONS;
    let options = ScannerOptions {
        allow_single_quoted_strings: p.allow_single_quoted_strings,
        allow_hexadecimal_numbers: p.allow_hexadecimal_numbers,
        allow_unary_plus_numbers: p.allow_unary_plus_numbers,
        allow_bare_decimal_point_numbers: p.allow_bare_decimal_point_numbers,
        allow_non_finite_numbers: p.allow_non_finite_numbers,
        allow_extended_string_escapes: p.allow_extended_string_escapes,
    };
    let mut builder = Builder {
        scanner: Scanner::new(body, &options),
        offset,
        token: None,
        items: Vec::new(),
        members: Vec::new(),
    };
    builder.advance()?;
    if !matches!(builder.token, Some(Token::OpenBrace)) {
        return None; // empty, or a root that is not an object: the AST path reports it
    }
    let root = builder.value(String::new(), 1)?;
    builder.advance()?;
    // Text after the root object: the AST path reports it.
    builder.token.is_none().then_some(root)
}

struct Builder<'a> {
    scanner: Scanner<'a>,
    /// Bytes before `body` in the original text (the BOM).
    offset: usize,
    /// The current token (comments skipped); `None` at the end of the text.
    token: Option<Token<'a>>,
    /// Elements of the arrays being built, innermost last; each array takes its tail.
    items: Vec<Node>,
    /// Members of the objects being built, likewise.
    members: Vec<Member>,
}

impl<'a> Builder<'a> {
    /// Moves to the next token that is not a comment; `None` on a scanner error.
    fn advance(&mut self) -> Option<()> {
        loop {
            match self.scanner.scan() {
                Ok(Some(Token::CommentLine(_) | Token::CommentBlock(_))) => {}
                Ok(token) => {
                    self.token = token;
                    return Some(());
                }
                Err(_) => return None,
            }
        }
    }

    /// The span of the current token in the original text.
    fn token_span(&self) -> Span {
        Span::new(
            self.scanner.token_start() + self.offset,
            self.scanner.token_end() + self.offset,
        )
    }

    /// The value starting at the current token, which it consumes up to its last token.
    /// Recursion is bounded by `MAX_DEPTH`: deeper containers go to the AST path.
    fn value(&mut self, ptr: String, depth: usize) -> Option<Node> {
        let start = self.scanner.token_start() + self.offset;
        let value = match self.token.take()? {
            Token::Null => NodeValue::Null,
            Token::Boolean(b) => NodeValue::Bool(b),
            Token::Number(n) => NodeValue::Number(n.to_owned()),
            Token::String(s) => NodeValue::String(s.into_owned()),
            Token::OpenBracket if depth <= MAX_DEPTH => self.array(&ptr, depth)?,
            Token::OpenBrace if depth <= MAX_DEPTH => self.object(&ptr, depth)?,
            _ => return None,
        };
        let end = self.scanner.token_end() + self.offset;
        Some(Node::new(value, ptr, Some(Span::new(start, end))))
    }

    /// After `[`: elements up to and including `]`.
    fn array(&mut self, ptr: &str, depth: usize) -> Option<NodeValue> {
        let base = self.items.len();
        self.advance()?;
        loop {
            if matches!(self.token, Some(Token::CloseBracket)) {
                break;
            }
            let index = self.items.len() - base;
            let item = self.value(pointer::child_index(ptr, index), depth + 1)?;
            self.items.push(item);
            self.advance()?;
            match self.token {
                Some(Token::Comma) => self.advance()?, // `]` next is a trailing comma
                Some(Token::CloseBracket) => {}
                _ => return None,
            }
        }
        // Exact capacity: the drained tail's length is known.
        Some(NodeValue::Array(self.items.drain(base..).collect()))
    }

    /// After `{`: members up to and including `}`.
    fn object(&mut self, ptr: &str, depth: usize) -> Option<NodeValue> {
        let base = self.members.len();
        self.advance()?;
        loop {
            let key = match self.token.take() {
                Some(Token::CloseBrace) => {
                    self.token = Some(Token::CloseBrace);
                    break;
                }
                Some(Token::String(key)) => key.into_owned(),
                _ => return None,
            };
            let key_span = self.token_span();
            self.advance()?;
            if !matches!(self.token, Some(Token::Colon)) {
                return None;
            }
            self.advance()?;
            let value = self.value(pointer::child_key(ptr, &key), depth + 1)?;
            self.members.push(Member {
                key,
                key_span: Some(key_span),
                value,
            });
            self.advance()?;
            match self.token {
                Some(Token::Comma) => self.advance()?, // `}` next is a trailing comma
                Some(Token::CloseBrace) => {}
                _ => return None,
            }
        }
        Some(NodeValue::Object(self.members.drain(base..).collect()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse::{ast_tree, MAX_DEPTH};

    /// The fast path either declines or builds exactly the AST path's tree.
    fn same_as_ast(text: &str) -> bool {
        let (body, offset) = match text.strip_prefix('\u{feff}') {
            Some(rest) => (rest, 3),
            None => (text, 0),
        };
        match build(body, offset) {
            Some(fast) => {
                assert_eq!(Some(&fast), ast_tree(text).ok().as_ref(), "{text:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn builds_the_ast_paths_tree() {
        let deep = "{\"a\":".to_owned()
            + &"[".repeat(MAX_DEPTH - 1)
            + "1"
            + &"]".repeat(MAX_DEPTH - 1)
            + "}";
        let valid = [
            "{}",
            "\u{feff}{\"a\": 1}",
            "// c\n{ /* b */ \"a\" /* x */ : /* y */ [1, 2,] /* z */, } // end\n",
            "{\r\n  \"a\": {\"b\": {\"c\": [true, false, null, -1.5e3, 0]}},\r\n}",
            r#"{"privil\u0065ged": true, "privileged": false, "a/b~c": {"": []}}"#,
            r#"{"s": "\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00 ü", "n": [1e400, 99999999999999999999]}"#,
            r#"{"x": [[], {}, [{}], [[]]], "y": {"z": [1, [2, [3]]]}}"#,
            "{\"a\":1,}",
            "{\"a\":[1,],\"b\":[],}",
            &deep,
        ];
        for text in valid {
            assert!(same_as_ast(text), "declined {text:?}");
        }
    }

    #[test]
    fn declines_what_the_ast_path_must_report() {
        let too_deep = "{\"a\":".to_owned() + &"[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH) + "}";
        let invalid = [
            "",
            "  // only a comment\n",
            "[]",
            "null",
            "\"x\"",
            "{'a': 1}",
            "{\n# c\n\"a\": 1}",
            "{\"a\": 1\n \"b\": 2}",
            "{} {}",
            "{\"a\": \"\\ud800\"}",
            "{\"a\": 0x10}",
            "{\"a\": 1",
            "{a: 1}",
            "{,}",
            "{\"a\":1,,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{\"a\": [1 2]}",
            "{\"a\": [,1]}",
            "{\"a\": [1,,]}",
            "{\"a\": [1}",
            "{\"a\": {]}",
            "{\"a\": NaN}",
            "{\"a\": +1}",
            "{\"a\": .5}",
            "{\"a\": tru}",
            &too_deep,
        ];
        for text in invalid {
            assert!(!same_as_ast(text), "accepted {text:?}");
            assert!(ast_tree(text).is_err(), "{text:?}");
        }
    }

    /// A JSONC document from random pieces: values, comments, trailing commas, odd spacing.
    fn document() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let gap = prop_oneof![
            Just(String::new()),
            Just(" ".to_owned()),
            Just("\r\n\t".to_owned()),
            Just("/* c */".to_owned()),
            Just("// c\n".to_owned()),
        ];
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-z~/ ü]|\\\\[nt\"\\\\/]|\\\\u00e9){0,8}\"",
        ];
        let value = leaf.prop_recursive(6, 48, 6, move |inner| {
            let gap = gap.clone();
            prop_oneof![
                (
                    proptest::collection::vec((inner.clone(), gap.clone()), 0..6),
                    any::<bool>()
                )
                    .prop_map(|(items, trailing)| {
                        let body: Vec<String> = items.into_iter().map(|(v, g)| g + &v).collect();
                        let comma = if trailing && !body.is_empty() {
                            ","
                        } else {
                            ""
                        };
                        format!("[{}{comma}]", body.join(","))
                    }),
                (
                    proptest::collection::vec(("[a-c/~]{0,3}", inner, gap), 0..6),
                    any::<bool>()
                )
                    .prop_map(|(members, trailing)| object(members, trailing)),
            ]
        });
        (
            proptest::collection::vec(("[a-c]{0,2}", value, gap_strategy()), 0..5),
            any::<bool>(),
        )
            .prop_map(|(members, trailing)| object(members, trailing))
    }

    fn gap_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::strategy::Just(String::new()),
            proptest::strategy::Just("\n// c\n".to_owned()),
        ]
    }

    fn object(members: Vec<(String, String, String)>, trailing: bool) -> String {
        let body: Vec<String> = members
            .into_iter()
            .map(|(k, v, g)| format!("{g}\"{k}\"{g}:{g}{v}"))
            .collect();
        let comma = if trailing && !body.is_empty() {
            ","
        } else {
            ""
        };
        format!("{{{}{comma}}}", body.join(","))
    }

    proptest::proptest! {
        #[test]
        fn random_documents_build_the_ast_paths_tree(text in document()) {
            proptest::prop_assert_eq!(same_as_ast(&text), ast_tree(&text).is_ok(), "{:?}", text);
        }

        #[test]
        fn damaged_documents_are_declined_or_built_alike(
            text in document(),
            at in 0usize..400,
            byte in proptest::prop_oneof![
                proptest::strategy::Just(','), proptest::strategy::Just(':'),
                proptest::strategy::Just('"'), proptest::strategy::Just('}'),
                proptest::strategy::Just('['), proptest::strategy::Just('x'),
                proptest::strategy::Just('/'), proptest::strategy::Just('\\'),
            ],
        ) {
            let mut text = text;
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert(at, byte);
            // same_as_ast asserts equality whenever the fast path builds a tree.
            same_as_ast(&text);
        }
    }

    #[test]
    fn builds_the_ast_paths_tree_for_every_corpus_and_fixture_file() {
        let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![manifest.join("tests/fixtures"), manifest.join("examples")];
        dirs.extend(
            ["../../shared", "../../../shared"]
                .iter()
                .map(|c| manifest.join(c).join("corpus/devcontainer")),
        );
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.map(|e| e.unwrap().path()) {
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    let fast = same_as_ast(&text);
                    // Every file the AST path accepts is built by the fast path too.
                    assert_eq!(fast, ast_tree(&text).is_ok(), "{}", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked > 0);
    }
}
