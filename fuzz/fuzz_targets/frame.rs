//! Fuzz the frame decoder and the agent's side of the handshake: any bytes must decode to a
//! frame, "need more", or an error, never a panic; a decoded frame must have used exactly its
//! header plus its announced length; and any payload fed to the handshake's first state must be
//! answered with a result, not a panic.
#![no_main]

use codespace_agent::wire::handshake::{AgentIdentity, AwaitHello};
use codespace_agent::wire::{Decoded, FrameCodec, SharedKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small maximum exercises the "too large" path as often as the others.
    for codec in [FrameCodec::new(64), FrameCodec::default()] {
        let mut rest = data;
        while let Ok(Decoded::Frame {
            consumed, payload, ..
        }) = codec.decode(rest)
        {
            assert_eq!(consumed, 4 + payload.len());
            assert!(payload.len() <= codec.max() && !payload.is_empty());
            rest = &rest[consumed..];
        }
        if let Ok(Decoded::NeedMore(n)) = codec.decode(rest) {
            assert!(n > 0);
        }
    }
    let identity = AgentIdentity {
        agent_id: "fuzz".into(),
        boot_id: "fuzz".into(),
        capabilities: vec![],
        public_key: [0; 32],
    };
    let key = SharedKey::new(&[7; 32]).ok();
    let _ = AwaitHello::new(identity, key).handle(data, [1; 32]);
});
