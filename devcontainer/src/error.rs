//! Semantic errors of the typed layer and the [`Diagnostic`] every error becomes for users.
//!
//! Typed parsers never stop at the first problem: they push a [`ModelError`] into an
//! [`ErrorSink`] and carry on with the next property, so one run reports everything wrong with
//! a document. Each error knows the JSON pointer and span of the value it is about; [`Diagnostic`]
//! adds the 1-based line and column computed from the span.

use crate::extensions::ExtensionIdError;
use crate::node::Node;
use crate::repositories::RepositoryError;
use crate::span::{Located, Span};

/// A semantic error: a value that is valid JSON but not a valid devcontainer property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ModelError {
    /// Pointer of the offending value.
    pub pointer: String,
    /// Span of the offending value (`None` for trees without text).
    pub span: Option<Span>,
    /// What is wrong.
    pub kind: ModelErrorKind,
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// The JSON type does not fit the property.
    #[error("{property} must be {expected}, found {found}")]
    WrongType {
        /// Human name of the property (`"postCreateCommand"`).
        property: String,
        /// What was expected (`"a string, an array of strings or an object"`).
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// The type is right but the value is not allowed.
    #[error("{property}: {message}")]
    InvalidValue {
        /// Human name of the property.
        property: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A required member is missing.
    #[error("{property} is missing required member {member:?}")]
    MissingMember {
        /// Human name of the object.
        property: String,
        /// The missing key.
        member: &'static str,
    },
    /// A variable that cannot be substituted.
    #[error("{0}")]
    Substitution(crate::substitute::SubstitutionError),
    /// A bad VS Code extension id.
    #[error("{0}")]
    Extension(ExtensionIdError),
    /// A bad `customizations.codespaces.repositories` entry.
    #[error("{0}")]
    Repository(RepositoryError),
}

/// A user-facing error: message plus where (pointer and 1-based line:column; 0:0 when the
/// value has no position in a text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// RFC 6901 pointer of the value the message is about.
    pub pointer: String,
    /// 1-based line, 0 if unknown.
    pub line: u32,
    /// 1-based column in characters, 0 if unknown.
    pub column: u32,
    /// Says what is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(
                f,
                "{}:{}: {} (at {})",
                self.line, self.column, self.message, self.pointer
            )
        }
    }
}

/// Collects [`ModelError`]s while a typed parser walks a tree.
#[derive(Debug, Default)]
pub struct ErrorSink {
    errors: Vec<ModelError>,
}

impl ErrorSink {
    /// An empty sink.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `kind` against `node`.
    pub fn push(&mut self, node: &Node, kind: ModelErrorKind) {
        self.errors.push(ModelError {
            pointer: node.pointer.clone(),
            span: node.span,
            kind,
        });
    }

    /// Record a wrong-type error against `node`.
    pub fn wrong_type(&mut self, node: &Node, property: &str, expected: &'static str) {
        self.push(
            node,
            ModelErrorKind::WrongType {
                property: property.to_owned(),
                expected,
                found: node.type_name(),
            },
        );
    }

    /// Record an invalid-value error against `node`.
    pub fn invalid(&mut self, node: &Node, property: &str, message: impl Into<String>) {
        self.push(
            node,
            ModelErrorKind::InvalidValue {
                property: property.to_owned(),
                message: message.into(),
            },
        );
    }

    /// Take the collected errors.
    #[must_use]
    pub fn into_errors(self) -> Vec<ModelError> {
        self.errors
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// A string value, or a wrong-type error.
    pub fn string(&mut self, node: &Node, property: &str) -> Option<Located<String>> {
        match node.as_str() {
            Some(s) => Some(located(node, s.to_owned())),
            None => {
                self.wrong_type(node, property, "a string");
                None
            }
        }
    }

    /// A boolean value, or a wrong-type error.
    pub fn boolean(&mut self, node: &Node, property: &str) -> Option<Located<bool>> {
        match node.as_bool() {
            Some(b) => Some(located(node, b)),
            None => {
                self.wrong_type(node, property, "a boolean (true or false)");
                None
            }
        }
    }

    /// An array of strings; wrong elements are reported one by one and skipped.
    pub fn string_array(&mut self, node: &Node, property: &str) -> Option<Vec<Located<String>>> {
        let Some(items) = node.elements() else {
            self.wrong_type(node, property, "an array of strings");
            return None;
        };
        Some(
            items
                .iter()
                .filter_map(|item| {
                    let s = item.as_str();
                    if s.is_none() {
                        self.wrong_type(item, &format!("each entry of {property}"), "a string");
                    }
                    s.map(|s| located(item, s.to_owned()))
                })
                .collect(),
        )
    }

    /// A string or an array of strings (normalised to a list).
    pub fn string_or_array(&mut self, node: &Node, property: &str) -> Option<Vec<Located<String>>> {
        if let Some(s) = node.as_str() {
            return Some(vec![located(node, s.to_owned())]);
        }
        if node.elements().is_some() {
            return self.string_array(node, property);
        }
        self.wrong_type(node, property, "a string or an array of strings");
        None
    }

    /// An object whose effective members are all strings (`containerEnv`, `build.args`).
    pub fn string_map(
        &mut self,
        node: &Node,
        property: &str,
    ) -> Option<Vec<(Located<String>, Located<String>)>> {
        if node.members().is_none() {
            self.wrong_type(node, property, "an object of strings");
            return None;
        }
        let mut out = Vec::new();
        for m in node.effective_members() {
            let key = Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span);
            if let Some(v) = self.string(&m.value, &format!("{property}.{}", m.key)) {
                out.push((key, v));
            }
        }
        Some(out)
    }
}

/// Wrap `value` with `node`'s location.
#[must_use]
pub fn located<T>(node: &Node, value: T) -> Located<T> {
    Located::new(value, node.pointer.clone(), node.span)
}
