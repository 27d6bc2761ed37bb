//! End-to-end tests: the real `codespace-agent` and `codespace-agentctl` binaries over Unix
//! sockets in temporary directories. One test binary; helpers in `support/`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

#[path = "agent_e2e/protocol.rs"]
mod protocol;

#[path = "agent_e2e/clients.rs"]
mod clients;

#[path = "agent_e2e/vault.rs"]
mod vault;

#[path = "agent_e2e/hybrid.rs"]
mod hybrid;

#[path = "agent_e2e/lifecycle.rs"]
mod lifecycle;

#[path = "agent_e2e/credentials.rs"]
mod credentials;

#[path = "agent_e2e/lifecycle_run.rs"]
mod lifecycle_run;

#[path = "agent_e2e/floods.rs"]
mod floods;

#[path = "agent_e2e/hostile_agent.rs"]
mod hostile_agent;

#[path = "agent_e2e/registry.rs"]
mod registry;

#[path = "agent_e2e/prebuild.rs"]
mod prebuild;
