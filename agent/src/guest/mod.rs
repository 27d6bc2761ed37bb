//! The guest daemon's parts: what runs inside the codespace VM.

pub mod broker;
pub mod vault;
