//! Port exposure: which ports exist, who may reach them, and the forwarder that lets them in.
//!
//! ```text
//!  detection (listeners) ──▶ PortsService ◀── ports_visibility / ports_list / grant_key_put
//!                             │ PortRegistry (policy): visibility + epoch per port
//!                             │ grant key (memory only)     live connection table
//!                             ▼
//!  forward connection ──▶ admit (grant MAC, port, expiry, epoch, owner-only, port_access,
//!                          limits) ──▶ connect 127.0.0.1 / [::1] ──▶ relay (splice)
//!  visibility tightened / port removed ──▶ revoke the live connections no longer allowed
//! ```
//!
//! Rules (DESIGN.md §1 "Port forwarding", §2, issue 5):
//! - New ports are private; a removed port forgets its visibility; the registry starts empty at
//!   every agent start (a codespace restart), so nothing is public then. Every change bumps the
//!   port's epoch, and a grant is only good for the epoch it names.
//! - A visibility must be allowed by the organization policy (`ports.allowed_visibilities`).
//! - Owner-only ports (`ports.owner_only`: SSH, the IDE server) stay private whatever is asked
//!   and are forwarded only for the codespace's creator.
//! - A grant lives at most 3 hours after its principal authenticated (after now, anonymous).
//! - Tightening a visibility or removing a port cuts, at once, every live connection the new
//!   state no longer admits; a principal's connection also ends when its authentication
//!   expires (3 hours after it was made), when the policy would no longer admit it either.
//!
//! - `ports_list` answers in pages by port number, bounded so that no number of listeners makes
//!   an answer outgrow a frame ([`page`]).
//!
//! Modules: [`config`] (the `ports` config section), [`service`] (registry, grant key, admission,
//! revocation), [`page`] (the bounded pages of `ports_list`), [`forward`] (the connection role),
//! [`refusal`] (named refusal reasons), [`tickets`] (single-use forward tickets for
//! one-round-trip forward connections).

pub(crate) mod config;
pub(crate) mod forward;
mod live;
pub mod page;
pub(crate) mod refusal;
pub(crate) mod service;
pub(crate) mod tickets;

pub use config::{PortsConfig, RawPortsConfig};
pub(crate) use refusal::ForwardRefusal;
pub use service::{Admission, PortsService};
