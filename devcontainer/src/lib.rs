//! `codespace-devcontainer`: a pure library that turns a `devcontainer.json` (JSON with comments)
//! into a typed model and audits it for what a hostile repository can do with it.
//!
//! The crate does no I/O: every entry point takes `&str` or typed values and returns values.

pub mod audit;
