//! `codespace-policy`: the pure library that makes every security decision of the system.
//!
//! The crate does no I/O and reads no clock: `now` is always an argument. Every decision is an
//! enum ([`Decision`]) with stable kebab-case reason codes, and code that acts on a decision
//! receives an [`Authorized<T>`] that only this crate constructs.
//!
//! | module | decides | rules from |
//! |---|---|---|
//! | [`token`] | the repository token's scope type | DESIGN.md §1 "Token", issue 3 |
//! | [`secrets`] | secret names and which secrets are injected | DESIGN.md §1 "Secrets", §2 |
//! | [`repo`] | repository names and the creator's access | issue 3 |

pub mod decision;
pub mod repo;
pub mod secrets;
pub mod token;

pub use decision::{Authorized, Decision, ReasonCode};
