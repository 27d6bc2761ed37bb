//! [`Parsed`]: the result of parsing one document: the raw tree, the typed model, and every
//! problem found, with helpers to turn spans into line:column.
//!
//! Nothing accepted is lost: the model is built even when some properties are invalid (they
//! are left out and reported); only a syntax error leaves `model` and `tree` empty.

use crate::error::{Diagnostic, ModelError};
use crate::node::{DuplicateKey, Node};
use crate::parse::SyntaxError;
use crate::span::{LineCol, LineIndex, Span};

/// One parsed document.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    /// The typed model (`None` only after a syntax error).
    pub model: Option<T>,
    /// The raw tree as written (`None` only after a syntax error).
    pub tree: Option<Node>,
    /// The syntax error, if the text is not a JSONC object.
    pub syntax_error: Option<SyntaxError>,
    /// After a syntax error, the parts that parsed (as the reference CLI's lenient parser reads
    /// them), for the audit only: nothing may act on a document with a syntax error.
    pub recovered: Option<Node>,
    /// Semantic errors, in document order.
    pub errors: Vec<ModelError>,
    /// Keys written more than once (the last one is effective).
    pub duplicate_keys: Vec<DuplicateKey>,
    /// Whether the text started with a UTF-8 byte order mark (stripped before parsing).
    pub had_bom: bool,
    /// Line index of the original text.
    pub lines: LineIndex,
}

impl<T> Parsed<T> {
    /// Whether the document parsed with no error at all.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.syntax_error.is_none() && self.errors.is_empty()
    }

    /// Line and column of a span's start (`0:0` for `None`).
    #[must_use]
    pub fn locate(&self, span: Option<Span>) -> LineCol {
        span.map_or(LineCol { line: 0, column: 0 }, |s| {
            self.lines.locate(s.start)
        })
    }

    /// Every error as a [`Diagnostic`] (the syntax error, or the semantic errors).
    #[must_use]
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        if let Some(e) = &self.syntax_error {
            return vec![Diagnostic {
                pointer: e.pointer.clone(),
                line: e.line,
                column: e.column,
                message: e.kind.to_string(),
            }];
        }
        self.errors
            .iter()
            .map(|e| {
                let lc = self.locate(e.span);
                Diagnostic {
                    pointer: e.pointer.clone(),
                    line: lc.line,
                    column: lc.column,
                    message: e.kind.to_string(),
                }
            })
            .collect()
    }

    /// Run `build` on the tree of `text`, collecting everything.
    pub(crate) fn build(
        text: &str,
        build: impl FnOnce(&Node, &mut crate::error::ErrorSink) -> T,
    ) -> Self {
        // An oversized text is rejected before anything is copied or indexed.
        let lines = if text.len() > crate::parse::MAX_INPUT_BYTES {
            LineIndex::new("")
        } else {
            LineIndex::new(text)
        };
        let had_bom = text.starts_with('\u{feff}');
        match crate::parse::parse_tree_with(text, &lines) {
            Err(e) => Self {
                model: None,
                tree: None,
                recovered: crate::parse::recover_tree(text, &e),
                syntax_error: Some(e),
                errors: Vec::new(),
                duplicate_keys: Vec::new(),
                had_bom,
                lines,
            },
            Ok(tree) => Self::from_tree(tree, lines, had_bom, build),
        }
    }

    /// Build from an existing tree (e.g. a substituted one) with the original line index.
    pub(crate) fn from_tree(
        tree: Node,
        lines: LineIndex,
        had_bom: bool,
        build: impl FnOnce(&Node, &mut crate::error::ErrorSink) -> T,
    ) -> Self {
        let mut sink = crate::error::ErrorSink::new();
        let model = build(&tree, &mut sink);
        let mut errors = sink.into_errors();
        errors.sort_by_key(|e| e.span.map(|s| s.start));
        Self {
            model: Some(model),
            duplicate_keys: tree.duplicate_keys(),
            tree: Some(tree),
            syntax_error: None,
            recovered: None,
            errors,
            had_bom,
            lines,
        }
    }
}
