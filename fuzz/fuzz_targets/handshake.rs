//! Fuzz the agent's side of a connection end to end: the real `Server` over an in-memory
//! stream, from the `hello` through `welcome`, `auth` and `ok` (or a forward ticket's one
//! flight with its early data) to a sequence of requests, against an agent whose effects stay
//! in memory (`codespace_fuzz::Agent`, shared key `codespace_fuzz::KEY`).
//!
//! Input: a flags byte, then lines (each one frame's payload; placeholders: see the crate
//! docs). Flags: bit 0 the agent holds no key; bit 1 the target computes the host's proof
//! (over the exact hello and welcome, or the ticket hello) instead of sending the next line
//! as `auth`, so half the inputs get past authentication; bit 2 the lines after the hello go
//! out at once, unframed, right behind it (early data of a ticket flight, or a host that does
//! not wait). The agent must answer every input, never panic, and close the connection by
//! itself once the host has said everything.
#![no_main]

use std::time::Duration;

use codespace_agent::guest::server::{Server, ServerSettings};
use codespace_agent::guest::transport::Peer;
use codespace_agent::wire::handshake::AgentIdentity;
use codespace_agent::wire::io::{read_payload, write_payload};
use codespace_agent::wire::{FrameCodec, SharedKey};
use codespace_fuzz::{auth_payload, lines, runtime, Agent, HOST_LABEL, KEY, TICKET_LABEL};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let agent = Agent::new(false);
    let key = (flags & 1 == 0).then(|| SharedKey::new(&KEY).unwrap());
    let compute_proof = flags & 2 != 0;
    let early = flags & 4 != 0;
    let settings = ServerSettings {
        max_frame_bytes: MAX_FRAME,
        max_connections: 4,
        max_handshakes: 4,
        max_requests_per_connection: 8,
        handshake_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_millis(200),
        allowed_cids: vec![2],
    };
    let identity = AgentIdentity {
        agent_id: "fuzz".into(),
        boot_id: "boot".into(),
        capabilities: agent.dispatcher.capabilities(),
        public_key: agent.public_key(),
    };
    let server = Server::new(
        settings,
        identity,
        key,
        agent.dispatcher.clone(),
        agent.events.clone(),
    );
    let frames: Vec<Vec<u8>> = lines(rest)
        .into_iter()
        .take(24)
        .map(|l| agent.substitute(l))
        .collect();
    let Some((hello, later)) = frames.split_first() else {
        return;
    };
    runtime().block_on(async {
        let (mut host, end) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let served =
            tokio::spawn(async move { server.serve_connection(end, Peer::Unix, stop).await });
        let codec = FrameCodec::new(MAX_FRAME);
        let done = tokio::time::timeout(Duration::from_secs(20), async {
            let mut later = later.iter();
            let ticket = serde_json::from_slice::<Value>(hello)
                .is_ok_and(|h| h["forward"]["ticket"].is_string());
            let mut flight = codec.encode_payload(hello).unwrap_or_default();
            if ticket && compute_proof {
                let auth = auth_payload(TICKET_LABEL, &[hello]);
                flight.extend(codec.encode_payload(&auth).unwrap());
            }
            if early {
                for l in later.by_ref() {
                    flight.extend_from_slice(l);
                }
            }
            if host.write_all(&flight).await.is_err() {
                return;
            }
            if !ticket {
                // The full handshake: the welcome (or a refusal), then the auth.
                let Ok(Some(welcome)) = read_payload(&mut host, &codec).await else {
                    return;
                };
                let auth = if compute_proof {
                    Some(auth_payload(HOST_LABEL, &[hello, &welcome]))
                } else {
                    later.next().cloned()
                };
                if let Some(auth) = auth {
                    if write_payload(&mut host, &codec, &auth).await.is_err() {
                        return;
                    }
                }
            }
            let (mut rd, mut wr) = tokio::io::split(host);
            let reader = tokio::spawn(async move {
                // Everything the agent says, until it closes.
                let mut sink = vec![0u8; 1 << 16];
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            for l in later {
                if write_payload(&mut wr, &codec, l).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            let _ = reader.await;
        })
        .await;
        assert!(
            done.is_ok(),
            "the agent did not close a connection the host had finished with"
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    });
});
