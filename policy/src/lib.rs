//! `codespace-policy`: the pure library that makes every security decision of the system.
//!
//! The crate does no I/O and reads no clock: `now` is always an argument.
