//! `codespace-policy`: the pure library that makes every security decision of the system.
//!
//! The crate does no I/O and reads no clock: `now` is always an argument. Every decision is an
//! enum ([`Decision`]) with stable kebab-case reason codes, and code that acts on a decision
//! receives an [`Authorized<T>`] that only this crate constructs. Where DESIGN.md §1 and
//! workspace-agents.md §2 are silent, the more restrictive answer is chosen and documented in
//! the module that makes it.
//!
//! | module | decides | rules from |
//! |---|---|---|
//! | [`document`] | the organization policy document | issue 3, workspace-agents.md §2.1–2.3 |
//! | [`grant`] | the repository token's scope | DESIGN.md §1 "Token", §2.3, issue 3 |
//! | [`token`] | the scope type the credential broker holds | DESIGN.md §2, issue 3 |
//! | [`ports`] | who may reach a forwarded port | DESIGN.md §1 "Port forwarding", §2.1 |
//! | [`registry`] | port visibility and epochs over time | DESIGN.md §1, §2 |
//! | [`container_registry`] | which registry credential a Docker helper gets | issue 17 |
//! | [`host`] | the one spelling of a host name that credential helpers compare | issue 17 |
//! | [`secrets`] | secret names and which secrets are injected | DESIGN.md §1 "Secrets", §2 |
//! | [`extensions`] | which extensions are installed | DESIGN.md §1, issue 3 |
//! | [`lifecycle`] | the lifecycle commands' trust profile | DESIGN.md §1, issue 3 |
//! | [`signing`] | whether a commit or tag is signed for the user (the key stays on the host) | issue 17 |
//! | [`cli`] | the JSON contracts of `codespace-agentctl policy` | issue 3 |
//! | [`input`] | strict JSON reading with JSON pointers | STYLE.md habits 2–3 |
//! | [`decision`], [`repo`] | `Decision`, `Authorized`, repository names, access levels | STYLE.md habit 5 |

#![forbid(unsafe_code)]

pub mod cli;
pub mod container_registry;
pub mod decision;
pub mod document;
pub mod extensions;
pub mod grant;
pub mod host;
pub mod input;
pub mod lifecycle;
pub mod ports;
pub mod registry;
pub mod repo;
pub mod secrets;
pub mod signing;
pub mod token;

pub use decision::{Authorized, Decision, ReasonCode};
pub use document::OrgPolicy;
pub use token::TokenScope;
