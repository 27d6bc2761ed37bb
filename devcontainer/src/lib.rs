//! `codespace-devcontainer`: a pure library that turns a `devcontainer.json` (JSON with comments)
//! into a typed model and audits it for what a hostile repository can do with it.
//!
//! The crate does no I/O: every entry point takes `&str` or typed values and returns values.

pub mod error;
pub mod extensions;
pub mod node;
pub mod pointer;
pub mod repositories;
pub mod span;

pub use error::{Diagnostic, ErrorSink, ModelError, ModelErrorKind};
pub use extensions::{ExtensionId, ExtensionIdError, ExtensionRef, ExtensionVersion};
pub use node::{DuplicateKey, Member, Node, NodeValue};
pub use repositories::{
    Level, Permission, RepoSelector, RepositoryError, RepositoryGrant, RepositoryPattern,
    RepositoryPermissions,
};
pub use span::{LineCol, LineIndex, Located, Span};
