//! Fuzz the host library against a compromised guest: the agent's bytes are the input. The
//! host's handshake states, the reading of answers and events after it, the forward answer
//! (`forward_ok` or a refusal) and the hybrid-vsock `OK <n>` line must end in a result or an
//! error: never a panic, never a hang (time is virtual here, so every timeout fires as soon
//! as the host waits for nothing else), never unbounded growth (libFuzzer's RSS limit).
//!
//! Input: a flags byte, then what the agent (or the VMM) writes. Flags: bits 0-1 the path
//! (0 control connection, 1 forward connection with the full handshake, 2 forward connection
//! with a ticket and early data, 3 hybrid vsock then a control connection: the bytes up to the
//! first newline are the VMM's answer to `CONNECT`); bit 2 the agent first completes the
//! handshake honestly with the shared key (the real agent-side state machine), so the rest
//! reaches what follows it; bit 3 the agent stays silent after its bytes instead of closing;
//! bit 4 the host holds no key.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use codespace_agent::host::dial::hybrid_connect;
use codespace_agent::host::forward::{mint, open_with};
use codespace_agent::host::{Backoff, Client, ConnectAddr, ConnectOptions};
use codespace_agent::wire::grant::GrantKey;
use codespace_agent::wire::handshake::{AfterHello, AgentIdentity, AwaitHello};
use codespace_agent::wire::io::{read_payload, write_payload};
use codespace_agent::wire::ticket::ForwardTicket;
use codespace_agent::wire::{FrameCodec, SharedKey};
use codespace_fuzz::{scratch, GRANT_KEY, KEY};
use libfuzzer_sys::fuzz_target;
use serde_json::Map;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;

/// The frame limit of the fuzzed host: small, so the "too large" path is as near as the others.
const MAX_FRAME: usize = 64 * 1024;

/// A runtime whose clock only moves when every task waits: timeouts fire at once, and a hang
/// shows as a wait that no timeout ends.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

/// The fake agent's socket for forward connections (they dial an address).
fn socket() -> &'static (PathBuf, UnixListener) {
    static L: OnceLock<(PathBuf, UnixListener)> = OnceLock::new();
    L.get_or_init(|| {
        let path = scratch().join("host-target.sock");
        let _ = std::fs::remove_file(&path);
        let _guard = runtime().enter();
        let l = UnixListener::bind(&path).unwrap();
        (path, l)
    })
}

/// The agent's side: an honest handshake first (when asked), then `bytes`, then silence or a
/// close.
async fn agent<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    honest: bool,
    bytes: &[u8],
    silent: bool,
) {
    let codec = FrameCodec::new(MAX_FRAME);
    if honest {
        let identity = AgentIdentity {
            agent_id: "vm".into(),
            boot_id: "b".into(),
            capabilities: vec!["status".into()],
            public_key: [9; 32],
        };
        let Ok(Some(hello)) = read_payload(&mut s, &codec).await else {
            return;
        };
        let key = SharedKey::new(&KEY).unwrap();
        let Ok(next) = AwaitHello::new(identity, Some(key)).handle(&hello, [2; 32]) else {
            return;
        };
        match next {
            AfterHello::AwaitAuth { state, welcome } => {
                let _ = write_payload(&mut s, &codec, &welcome).await;
                let Ok(Some(auth)) = read_payload(&mut s, &codec).await else {
                    return;
                };
                let Ok((_, ok)) = state.handle(&auth) else {
                    return;
                };
                let _ = write_payload(&mut s, &codec, &ok).await;
            }
            AfterHello::TicketProof { state } => {
                let Ok(Some(auth)) = read_payload(&mut s, &codec).await else {
                    return;
                };
                let Ok(proven) = state.handle(&auth) else {
                    return;
                };
                let _ = write_payload(&mut s, &codec, &proven.welcome).await;
                let _ = write_payload(&mut s, &codec, &proven.ok).await;
            }
            AfterHello::Established { welcome, ok, .. } => {
                let _ = write_payload(&mut s, &codec, &welcome).await;
                let _ = write_payload(&mut s, &codec, &ok).await;
            }
        }
    }
    let _ = s.write_all(bytes).await;
    if silent {
        // Reads what the host sends, answers nothing, never closes first.
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

async fn control(stream: tokio::io::DuplexStream, key: Option<SharedKey>) {
    let Ok(c) = Client::handshake(Box::new(stream), key, MAX_FRAME, "fuzz").await else {
        return;
    };
    let _ = c.info();
    let (a, b) = tokio::join!(
        c.request("status", Map::new(), Duration::from_secs(5)),
        c.request("ping", Map::new(), Duration::from_secs(5)),
    );
    let _ = (a, b);
    let mut n = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), c.next_event()).await {
        let _ = ev.to_object();
        n += 1;
        if n > 2000 {
            break;
        }
    }
    let _ = c.request("ping", Map::new(), Duration::from_secs(1)).await;
}

async fn forward(with_ticket: bool, key: Option<SharedKey>) {
    let mut opts = ConnectOptions::new(ConnectAddr::Unix(socket().0.clone()), key);
    opts.max_frame_bytes = MAX_FRAME;
    opts.attempt_timeout = Duration::from_secs(5);
    opts.backoff = Backoff::none();
    let grant = mint(
        &GrantKey::new(&GRANT_KEY).unwrap(),
        3000,
        1,
        None,
        1_700_000_000,
        Duration::from_secs(600),
    );
    let ticket = ForwardTicket::from_bytes([5; 32]);
    let ticket = with_ticket.then_some(&ticket);
    if let Ok((mut stream, accepted)) =
        open_with(&opts, 3000, &grant, ticket, b"GET / HTTP/1.1\r\n\r\n").await
    {
        let _ = accepted.target.len();
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let honest = flags & 4 != 0;
    let silent = flags & 8 != 0;
    let key = (flags & 16 == 0).then(|| SharedKey::new(&KEY).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let run = async {
            match flags & 3 {
                0 => {
                    let (host, vm) = tokio::io::duplex(1 << 16);
                    let fake = tokio::spawn({
                        let bytes = bytes.to_vec();
                        async move { agent(vm, honest, &bytes, silent).await }
                    });
                    control(host, key).await;
                    fake.abort();
                }
                3 => {
                    let (mut host, mut vm) = tokio::io::duplex(1 << 16);
                    let (line, rest) = match bytes.iter().position(|b| *b == b'\n') {
                        Some(i) => bytes.split_at(i + 1),
                        None => (bytes, &[][..]),
                    };
                    let fake = tokio::spawn({
                        let (line, rest) = (line.to_vec(), rest.to_vec());
                        async move {
                            let mut connect = [0u8; 13];
                            if vm.read_exact(&mut connect).await.is_err() {
                                return;
                            }
                            let _ = vm.write_all(&line).await;
                            agent(vm, honest, &rest, silent).await;
                        }
                    });
                    if hybrid_connect(&mut host, 1023, Duration::from_secs(1))
                        .await
                        .is_ok()
                    {
                        control(host, key).await;
                    }
                    fake.abort();
                }
                path => {
                    let (_, listener) = socket();
                    let fake = tokio::spawn({
                        let bytes = bytes.to_vec();
                        async move {
                            if let Ok((s, _)) = listener.accept().await {
                                agent(s, honest, &bytes, silent).await;
                            }
                        }
                    });
                    forward(path == 2, key).await;
                    fake.abort();
                }
            }
        };
        let finished = tokio::time::timeout(Duration::from_secs(3600), run).await;
        assert!(finished.is_ok(), "the host hung on a misbehaving agent");
    });
});
