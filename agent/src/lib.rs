//! `codespace-agent`: the guest agent that every codespace VM boots, the host-side client library
//! and the shared wire protocol. This is the only crate of the workspace that does I/O.
//!
//! - [`wire`]: the sans-I/O protocol (frames, messages, handshake) shared by both ends;
//! - [`guest`]: the daemon (transports, connection handling, request dispatch, health, vault,
//!   credential broker);
//! - [`host`]: the client library a host supervisor links to talk to agents;
//! - [`relay`]: zero-copy byte relaying between two sockets (port forwarding, both ends);
//! - [`seal`]: sealing secrets end to end to the agent's boot-time X25519 key;
//! - [`credential_helper`], [`docker_credential`], [`exec`], [`git_sign`]: the in-guest helpers
//!   behind `codespace-agent git-credential`, `codespace-agent docker-credential` (installed as
//!   `docker-credential-codespace`), `codespace-agent exec` and `codespace-agent git-sign`
//!   (installed as `codespace-git-sign`).

pub mod credential_helper;
pub mod docker_credential;
pub mod exec;
pub mod git_sign;
pub mod guest;
pub mod host;
pub mod relay;
pub mod seal;
pub mod wire;
