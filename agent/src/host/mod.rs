//! The host side: a client library for host supervisors (and `codespace-agentctl`).
//!
//! - [`dial`]: addresses (`vsock:`, `hybrid:`, `unix:`), the hybrid-vsock preamble, backoff;
//! - [`client`]: the authenticated control connection with concurrent requests and events
//!   (what it accepts from an untrusted agent and keeps of it: `inbound.rs`);
//! - [`forward`]: grants and `forward` connections (port forwarding);
//! - [`ports`]: `ports_list`, one page or all of them;
//! - [`tickets`]: single-use forward tickets, for one-round-trip forward connections;
//! - [`signing`]: answering the agent's commit signing requests with a host key;
//! - [`trail`]: the agent's audit trail, caught up in pages and followed;
//! - [`registry`]: container registry credentials, sealed like secrets (`registry_put`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use codespace_agent::host::{Client, ConnectOptions};
//! let key = codespace_agent::wire::SharedKey::new(&std::fs::read("/etc/agent.key")?)?;
//! let client = Client::connect(&ConnectOptions::new("hybrid:/run/vm.sock:1023".parse()?, Some(key))).await?;
//! let status = client.request("status", Default::default(), std::time::Duration::from_secs(5)).await?;
//! println!("{status}");
//! # Ok(()) }
//! ```

pub mod client;
pub mod dial;
pub mod forward;
mod inbound;
pub mod ports;
pub mod registry;
pub mod signing;
pub mod tickets;
pub mod trail;

pub use client::{Client, ClientError, ConnectOptions, Reconnecting};
pub use dial::{Backoff, ConnectAddr, HybridError};
