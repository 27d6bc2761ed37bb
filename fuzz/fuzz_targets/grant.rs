//! Fuzz grant and ticket decoding and verification: `parse_grant`, `canonical`, `verify`,
//! `ForwardTicket::from_base64`, `GrantKey::from_base64`. Any JSON must parse to a grant or a
//! refusal, never a panic; a parsed grant verifies only with its own MAC; re-signed claims
//! verify and survive the wire form unchanged; two different claims never share canonical
//! bytes (the MAC would cover both); a ticket that parses prints back as the same text.
//!
//! Input: a flags byte, then two JSON grants separated by a newline (the second one, and the
//! texts tried as a ticket and a grant key, are the input's other lines). Flag bit 0: re-sign
//! the first grant's claims with the fixed grant key (so the verified path is reached).
#![no_main]

use codespace_agent::wire::grant::{parse_grant, GrantKey};
use codespace_agent::wire::ticket::ForwardTicket;
use codespace_fuzz::{lines, GRANT_KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let key = GrantKey::new(&GRANT_KEY).unwrap();
    let parts = lines(rest);
    let grants: Vec<_> = parts
        .iter()
        .take(2)
        .filter_map(|l| serde_json::from_slice(l).ok())
        .filter_map(|v| parse_grant(v).ok())
        .collect();
    if let Some(g) = grants.first() {
        let claims = g.claims.clone();
        assert_eq!(claims.canonical(), claims.canonical());
        match key.verify(g.clone()) {
            Ok(c) => assert_eq!(c, claims),
            Err(_) if flags & 1 != 0 => {
                let signed = key.sign(claims.clone());
                let wire = serde_json::to_value(&signed).unwrap();
                let back = parse_grant(wire).expect("a signed grant parses");
                assert_eq!(back.claims, claims);
                assert_eq!(key.verify(back).unwrap(), claims);
            }
            Err(_) => {}
        }
        // Another key never accepts it.
        assert!(GrantKey::new(&[0x48; 32])
            .unwrap()
            .verify(g.clone())
            .is_err());
    }
    if let [a, b] = grants.as_slice() {
        if a.claims != b.claims {
            assert_ne!(a.claims.canonical(), b.claims.canonical(), "{a:?} {b:?}");
        }
    }
    for text in parts.iter().filter_map(|l| std::str::from_utf8(l).ok()) {
        if let Ok(t) = ForwardTicket::from_base64(text) {
            assert_eq!(t.to_base64(), text);
        }
        let _ = GrantKey::from_base64(text);
    }
});
