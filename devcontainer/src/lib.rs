//! `codespace-devcontainer`: a pure library that turns a `devcontainer.json` (JSON with comments)
//! into a typed model and audits it for what a hostile repository can do with it.
//!
//! ```text
//!  text ─▶ parse (syntax: JSONC, BOM, 4 MiB, depth 128) ─▶ Node tree (raw: every key, duplicates,
//!          │                                                │  pointers, spans)
//!          ▼                                                ▼
//!     SyntaxError (fatal, one)                     DevContainer / FeatureMetadata (typed;
//!                                                  every value Located; ModelErrors collected)
//!                                                           │
//!                            substitute(SubstitutionContext)┘─▶ same model, variables resolved
//! ```
//!
//! * [`parse_devcontainer`] / [`parse_feature`] return a [`Parsed`]: the raw [`Node`] tree, the
//!   typed model, every error ([`Parsed::diagnostics`] gives pointer + line:column + message)
//!   and the duplicate keys.
//! * [`substitute()`] resolves `${localEnv:…}`, `${containerEnv:…}`, `${localWorkspaceFolder}`,
//!   `${devcontainerId}`, … exactly like the reference CLI, with everything passed in.
//! * [`extensions`] and [`repositories`] parse VS Code extension ids and Codespaces repository
//!   permissions; they work on any [`Node`], including one built with [`Node::from_json_value`].
//!
//! The crate does no I/O: every entry point takes `&str` or typed values and returns values.

#![forbid(unsafe_code)]

pub mod audit;
pub mod compose;
pub mod env_names;
pub mod error;
pub mod extensions;
pub mod feature;
pub mod model;
pub mod node;
pub mod parse;
pub mod parsed;
pub mod pointer;
pub mod repositories;
mod scan_tree;
pub mod span;
pub mod substitute;

pub use error::{Diagnostic, ErrorSink, ModelError, ModelErrorKind};
pub use extensions::{ExtensionId, ExtensionIdError, ExtensionRef, ExtensionVersion};
pub use model::DevContainer;
pub use node::{DuplicateKey, Member, Node, NodeValue};
pub use parse::{SyntaxError, SyntaxErrorKind, MAX_DEPTH, MAX_INPUT_BYTES};
pub use parsed::Parsed;
pub use repositories::{
    Level, Permission, RepoSelector, RepositoryError, RepositoryGrant, RepositoryPattern,
    RepositoryPermissions,
};
pub use span::{LineCol, LineIndex, Located, Span};

/// Parse a `devcontainer.json` text into its raw tree and typed model, collecting every error.
///
/// ```
/// let parsed = codespace_devcontainer::parse_devcontainer(
///     r#"{ "image": "mcr.microsoft.com/devcontainers/base", // comment
///          "forwardPorts": [3000, 70000], }"#,
/// );
/// let model = parsed.model.as_ref().unwrap();
/// assert_eq!(model.image.as_ref().unwrap().value, "mcr.microsoft.com/devcontainers/base");
/// assert_eq!(model.forward_ports.len(), 1);
/// let errors = parsed.diagnostics();
/// assert_eq!(errors[0].pointer, "/forwardPorts/1");
/// assert_eq!((errors[0].line, errors[0].column), (2, 33));
/// ```
#[must_use]
pub fn parse_devcontainer(text: &str) -> Parsed<DevContainer> {
    Parsed::build(text, DevContainer::from_tree)
}
pub use feature::{parse_feature, FeatureMetadata};
pub use substitute::{
    devcontainer_id_for_labels, substitute, substitute_feature, substitute_str,
    SubstitutionContext, SubstitutionError,
};
