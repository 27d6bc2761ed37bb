//! Unit tests of the sans-I/O handshake: keys on both sides, one side or neither, wrong and short
//! keys, version mismatch, out-of-order frames, tampering and replay of proofs, peer errors.
#![allow(clippy::unwrap_used)]

use super::*;

/// The agent identity of the handshake tests (and the ticket tests).
pub(crate) fn identity() -> AgentIdentity {
    AgentIdentity {
        agent_id: "a1".into(),
        boot_id: "b1".into(),
        capabilities: vec!["status".into()],
        public_key: [7; 32],
    }
}

/// A 32-byte shared key of one repeated byte.
pub(crate) fn key(b: u8) -> SharedKey {
    SharedKey::new(&[b; 32]).unwrap()
}

fn run(
    agent_key: Option<SharedKey>,
    host_key: Option<SharedKey>,
) -> Result<AgentInfo, HandshakeError> {
    let (hs, hello) = host_start(Role::Control, host_key, [1; 32]);
    let agent = AwaitHello::new(identity(), agent_key);
    match agent.handle(&hello, [2; 32])? {
        AfterHello::Established { welcome, ok, .. } => {
            let (hs, auth) = hs.handle(&welcome)?;
            assert!(auth.is_none());
            hs.handle(&ok)
        }
        AfterHello::AwaitAuth { state, welcome } => {
            let (hs, auth) = hs.handle(&welcome)?;
            let (agreed, ok) = state.handle(&auth.unwrap())?;
            assert_eq!(agreed.version, 1);
            hs.handle(&ok)
        }
        AfterHello::TicketProof { .. } => panic!("no ticket was sent"),
    }
}

#[test]
fn with_matching_keys_both_sides_authenticate() {
    let info = run(Some(key(9)), Some(key(9))).unwrap();
    assert!(info.authenticated);
    assert_eq!(info.public_key, [7; 32]);
    assert_eq!(info.agent_id, "a1");
}

#[test]
fn without_keys_the_handshake_completes_unauthenticated() {
    assert!(!run(None, None).unwrap().authenticated);
}

#[test]
fn wrong_key_is_unauthorized() {
    assert_eq!(
        run(Some(key(9)), Some(key(8))).unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

#[test]
fn key_mismatch_in_presence_is_unauthorized() {
    assert_eq!(
        run(Some(key(9)), None).unwrap_err().code,
        ErrorCode::Unauthorized
    );
    assert_eq!(
        run(None, Some(key(9))).unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

#[test]
fn short_keys_are_refused() {
    assert_eq!(
        SharedKey::new(&[0; 31]).unwrap_err(),
        KeyError::TooShort { len: 31 }
    );
    assert!(!format!("{:?}", key(3)).contains('3'));
}

#[test]
fn version_mismatch() {
    let hello = br#"{"type":"hello","versions":[99],"role":"control","nonce":"AAAA"}"#;
    let err = AwaitHello::new(identity(), None)
        .handle(hello, [0; 32])
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::VersionMismatch);
}

#[test]
fn other_frames_before_the_end_are_protocol_violations() {
    let req = br#"{"id":1,"type":"status"}"#;
    let err = AwaitHello::new(identity(), None)
        .handle(req, [0; 32])
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ProtocolViolation);
    let (_, hello) = host_start(Role::Control, None, [1; 32]);
    let AfterHello::AwaitAuth { state, .. } = AwaitHello::new(identity(), Some(key(1)))
        .handle(&hello, [0; 32])
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        state.handle(req).unwrap_err().code,
        ErrorCode::ProtocolViolation
    );
}

#[test]
fn tampered_welcome_breaks_the_proof() {
    let (hs, hello) = host_start(Role::Control, Some(key(5)), [1; 32]);
    let AfterHello::AwaitAuth { state, welcome } = AwaitHello::new(identity(), Some(key(5)))
        .handle(&hello, [2; 32])
        .unwrap()
    else {
        panic!()
    };
    // The host sees a welcome with another public key (a man in the middle).
    let mut w: serde_json::Value = serde_json::from_slice(&welcome).unwrap();
    w["public_key"] = B64.encode([8u8; 32]).into();
    let (_, auth) = hs.handle(&serde_json::to_vec(&w).unwrap()).unwrap();
    assert_eq!(
        state.handle(&auth.unwrap()).unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

#[test]
fn a_replayed_agent_proof_fails_against_a_new_host_nonce() {
    let agent_key = key(4);
    let (_, hello1) = host_start(Role::Control, Some(key(4)), [1; 32]);
    let AfterHello::AwaitAuth { state, welcome } = AwaitHello::new(identity(), Some(agent_key))
        .handle(&hello1, [2; 32])
        .unwrap()
    else {
        panic!()
    };
    let (hs1, auth1) = host_start(Role::Control, Some(key(4)), [1; 32])
        .0
        .handle(&welcome)
        .unwrap();
    let (_, ok1) = state.handle(&auth1.unwrap()).unwrap();
    hs1.handle(&ok1).unwrap();
    // A fresh host session (new nonce) fed the recorded welcome/ok must reject the proof.
    let (hs2, _) = host_start(Role::Control, Some(key(4)), [3; 32]);
    let (hs2, _) = hs2.handle(&welcome).unwrap();
    assert_eq!(hs2.handle(&ok1).unwrap_err().code, ErrorCode::Unauthorized);
}

#[test]
fn peer_error_frames_are_reported_with_their_code() {
    let (hs, _) = host_start(Role::Control, None, [1; 32]);
    let err = hs
        .handle(br#"{"type":"error","error":{"code":"version_mismatch","message":"x"}}"#)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::VersionMismatch);
}
