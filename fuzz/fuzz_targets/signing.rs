//! Fuzz what a process in the VM (and a host answer) can hand the commit signing broker: the
//! helper's request, the payload parser and the whole policy decision, the broker's answer as
//! the helper reads it, and the signature checks. Any bytes must parse or be refused, never
//! panic; and whatever the decision allows is a commit or tag object whose signer is verified.
#![no_main]

use std::time::Instant;

use codespace_agent::guest::signing::armor;
use codespace_agent::guest::signing::protocol::{BrokerAnswer, HelperRequest};
use codespace_policy::repo::RepoName;
use codespace_policy::signing::{self, RateLimiter, RawSigningSettings, SigningFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The helper's request: a sign request's payload goes through the real decision.
    if let Ok(HelperRequest::Sign { format, payload }) = HelperRequest::decode(data) {
        let settings = RawSigningSettings {
            mode: Some(format.as_str().into()),
            trusted: vec!["octo/*".into()],
            verified_emails: vec!["mona@example.com".into()],
        }
        .build()
        .unwrap();
        let facts = SigningFacts {
            repository: Some(RepoName::parse("octo/app").unwrap()),
            prebuild: false,
        };
        let mut limiter = RateLimiter::default();
        if let Ok(approved) = signing::decide(&settings, &facts, format, &payload, &mut limiter, Instant::now()) {
            assert!(payload.starts_with(b"tree ") || payload.starts_with(b"object "));
            assert!(approved.object.signer_email.eq_ignore_ascii_case("mona@example.com"));
            assert!(payload.windows(2).any(|w| w == b"\n\n"));
        }
    }
    // The payload parser on raw bytes.
    if let Ok(object) = signing::object::parse(data) {
        let email = object.signer_email.as_bytes();
        assert!(data.windows(email.len() + 2).any(|w| w[0] == b'<' && &w[1..=email.len()] == email));
    }
    // The broker's answer and the signature checks (what a broken broker or host may send).
    if let Ok(BrokerAnswer::Signature(armored)) = BrokerAnswer::decode(data) {
        let _ = armor::check_ssh(&armored);
        let _ = armor::check_openpgp(&armored);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = armor::check_ssh(text);
        if let Ok(sig) = armor::check_openpgp(text) {
            assert!(sig.class <= 1);
            assert!(!sig.status_line().contains('\n'));
        }
    }
});
