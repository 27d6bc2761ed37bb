//! `codespace-agent`: the guest agent that every codespace VM boots, the host-side client library
//! and the shared wire protocol. This is the only crate of the workspace that does I/O.
pub mod credential_helper;
pub mod exec;
pub mod guest;
pub mod seal;
