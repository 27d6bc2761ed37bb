//! Near-miss suggestions for unknown property names.
//!
//! `postCreateCommmand` was meant to be `postCreateCommand`, `Privileged` to be `privileged`.
//! Names are compared case-insensitively by Levenshtein distance; a candidate is suggested when
//! the distance is small relative to the name's length (at most 1 for names up to 5 characters,
//! 2 up to 12, 3 beyond), and a case-only difference always wins.
//!
//! Some names are not misspelled but misplaced (`postCreateCommand` inside
//! `customizations.vscode`); [`misplaced`] says where they belong.

use crate::model::KNOWN_PROPERTIES;

/// Properties of `build`.
pub const BUILD: &[&str] = &[
    "dockerfile",
    "context",
    "args",
    "options",
    "target",
    "cacheFrom",
];

/// Case-insensitive Levenshtein distance, computed over chars with two rows.
pub fn distance(a: &str, b: &str) -> usize {
    if fits_ascii(a, b) {
        if let Some(d) = ascii_within(a.as_bytes(), b.as_bytes(), usize::MAX) {
            return d;
        }
    }
    chars_distance(a, b)
}

/// The plain two-row Levenshtein distance over lower-cased `char`s: what [`distance`] computes
/// when its ASCII fast path does not apply, and the oracle its tests check the fast paths against.
fn chars_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `Some(distance(a, b))` when it is at most `limit`, else `None`; cheaper than [`distance`]
/// because hopeless pairs stop early (the audit compares every extension publisher with every
/// well-known one, and every unknown key with every property name).
pub fn within(a: &str, b: &str, limit: usize) -> Option<usize> {
    if fits_ascii(a, b) {
        // Cheapest bounds first: length difference, then characters; the table only for the rest.
        if a.len().abs_diff(b.len()) > limit
            || missing_chars_bound(a.as_bytes(), b.as_bytes()) > limit
        {
            return None;
        }
        return ascii_within(a.as_bytes(), b.as_bytes(), limit);
    }
    let d = distance(a, b);
    (d <= limit).then_some(d)
}

/// Longest word [`ascii_within`] takes: its stack rows hold `MAX + 1` byte-sized cells (every
/// distance between two such words is at most `MAX`).
const MAX: usize = 64;

/// Whether [`ascii_within`] applies: both words ASCII and short enough.
fn fits_ascii(a: &str, b: &str) -> bool {
    a.is_ascii() && b.is_ascii() && a.len() <= MAX && b.len() <= MAX
}

/// A lower bound of the (case-insensitive) distance from the characters alone, for ASCII words:
/// every distinct character of one word that never occurs in the other needs an edit of its own
/// (an edit changes one position of each word). Sets are 64-bit masks of `(byte | 0x20) % 64`,
/// which maps both cases of a letter to one bit; a collision only makes a character look
/// present, which keeps the bound a lower bound.
fn missing_chars_bound(a: &[u8], b: &[u8]) -> usize {
    fn mask(word: &[u8]) -> u64 {
        word.iter().fold(0, |m, c| m | 1 << ((c | 0x20) % 64))
    }
    let (ma, mb) = (mask(a), mask(b));
    let bound = (ma & !mb).count_ones().max((mb & !ma).count_ones());
    usize::try_from(bound).unwrap_or(usize::MAX)
}

/// A row or column index (at most [`MAX`]) as a cell value.
fn cell(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// The ASCII fast path of [`distance`] (see [`fits_ascii`]): bytes lower-cased on the fly (for
/// ASCII text that is exactly what `char::to_lowercase` does), rows on the stack. `None` as soon
/// as the distance is known to be above `limit`: it is at least the length difference, and row
/// minima never decrease, so a row with no cell within `limit` settles it.
fn ascii_within(a: &[u8], b: &[u8], limit: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    // Only the band of cells within `limit` of the diagonal is computed: the others are above
    // `limit` and hold `over`. Every cell holds min(its true value, over), exact where it
    // matters (at most `limit`).
    let over = cell(limit.saturating_add(1));
    let mut prev = [over; MAX + 1];
    let mut cur = [over; MAX + 1];
    for (j, c) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *c = cell(j).min(over);
    }
    for (i, ca) in a.iter().enumerate() {
        let row = i + 1;
        let ca = ca.to_ascii_lowercase();
        let lo = row.saturating_sub(limit).max(1);
        let hi = row.saturating_add(limit).min(b.len());
        cur[0] = cell(row).min(over);
        if lo > 1 {
            cur[lo - 1] = over; // left of the band: the next cell reads it
        }
        let mut row_min = cur[0];
        for j in lo..=hi {
            let cost = u8::from(ca != b[j - 1].to_ascii_lowercase());
            let v = prev[j - 1]
                .saturating_add(cost)
                .min(prev[j].saturating_add(1))
                .min(cur[j - 1].saturating_add(1))
                .min(over);
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if hi < b.len() {
            cur[hi + 1] = over; // right of the band: the next row reads it
        }
        if usize::from(row_min) > limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(usize::from(prev[b.len()])).filter(|d| *d <= limit)
}

/// The closest candidate within the allowed distance, if any.
pub fn suggest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Names beyond this length are not misspellings of any property; skip the quadratic work.
    if name.chars().count() > 64 {
        return None;
    }
    let len = name.chars().count();
    let limit = match len {
        0..=5 => 1,
        6..=12 => 2,
        _ => 3,
    };
    candidates
        .iter()
        // The length difference bounds the distance from below: skip hopeless candidates cheaply.
        .filter(|c| c.chars().count().abs_diff(len) <= limit)
        .filter_map(|c| within(name, c, limit).map(|d| (d, *c)))
        .filter(|(_, c)| *c != name)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// If `name` is a top-level property found somewhere else, where it belongs.
pub fn misplaced(name: &str) -> Option<&'static str> {
    KNOWN_PROPERTIES
        .contains(&name)
        .then_some("it is a top-level property")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses() {
        let cases = [
            ("postCreateCommmand", Some("postCreateCommand")),
            ("Privileged", Some("privileged")),
            ("postcreatecommand", Some("postCreateCommand")),
            ("forwardedPorts", Some("forwardPorts")),
            ("remoteUsr", Some("remoteUser")),
            ("dockerfile", Some("dockerFile")),
            ("runargs", Some("runArgs")),
            ("completelyUnrelated", None),
            ("x", None),
            ("privileged", None),
        ];
        for (name, expected) in cases {
            assert_eq!(suggest(name, KNOWN_PROPERTIES), expected, "{name}");
        }
        assert_eq!(suggest("dockerFile", BUILD), Some("dockerfile"));
        assert_eq!(suggest(&"a".repeat(10_000), KNOWN_PROPERTIES), None);
    }

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ABC", "abc"), 0);
        assert_eq!(distance("ms\u{2011}python", "ms-python"), 1);
    }

    // The plain two-row Levenshtein over lower-cased chars that both fast paths replace.
    fn reference(a: &str, b: &str) -> usize {
        chars_distance(a, b)
    }

    #[test]
    fn bounded_distance_agrees_with_the_full_one() {
        let words = [
            "",
            "a",
            "ab",
            "kitten",
            "sitting",
            "ms-python",
            "MS-Python",
            "ms\u{2011}python",
            "postCreateCommand",
            "postcreatecommmand",
            "github",
            "githbu",
            "gihtub",
            "publisher12",
            "dbaeumer",
            "esbenp",
            "redhat",
            "rust-lang",
            "İstanbul",
            "istanbul",
            "abcdef",
            "badcfe",
            "fedcba",
            "abc",
            "abcabc",
            "xabcx",
            "ms-vscode-remote",
            "vscjava",
        ];
        let long = "x".repeat(100);
        for a in words.iter().copied().chain([long.as_str()]) {
            for b in words.iter().copied().chain([long.as_str()]) {
                let full = reference(a, b);
                assert_eq!(distance(a, b), full, "{a:?} {b:?}");
                for limit in 0..8 {
                    let expected = (full <= limit).then_some(full);
                    assert_eq!(within(a, b, limit), expected, "{a:?} {b:?} {limit}");
                }
            }
        }
        // Exhaustively: every word of up to four letters over {a, b, C}.
        let mut small = vec![String::new()];
        for len in 1..=4 {
            let mut next = Vec::new();
            for w in small.iter().filter(|w| w.len() == len - 1) {
                for c in ['a', 'b', 'C'] {
                    next.push(format!("{w}{c}"));
                }
            }
            small.extend(next);
        }
        for a in &small {
            for b in &small {
                let full = reference(a, b);
                assert_eq!(distance(a, b), full, "{a:?} {b:?}");
                for limit in 0..5 {
                    let expected = (full <= limit).then_some(full);
                    assert_eq!(within(a, b, limit), expected, "{a:?} {b:?} {limit}");
                }
            }
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)] // u64 -> usize of values below 16
    fn character_bound_never_exceeds_the_distance() {
        // Random words over an alphabet where `!` and `a` share a mask bit (33 = 97 % 64).
        let alphabet = ['a', 'B', 'c', 'd', '!', '-', '1', 'e'];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut word = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = usize::try_from(seed >> 60).unwrap() % 9;
            (0..len)
                .map(|i| alphabet[usize::try_from((seed >> (4 + 3 * i)) & 7).unwrap()])
                .collect::<String>()
        };
        for _ in 0..20_000 {
            let (a, b) = (word(), word());
            let full = reference(&a, &b);
            assert!(
                missing_chars_bound(a.as_bytes(), b.as_bytes()) <= full,
                "{a:?} {b:?}"
            );
            for limit in 0..4 {
                assert_eq!(
                    within(&a, &b, limit),
                    (full <= limit).then_some(full),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn misplacement() {
        assert!(misplaced("postCreateCommand").is_some());
        assert!(misplaced("editor.fontSize").is_none());
    }

    #[test]
    fn tables_have_no_duplicates() {
        for table in [KNOWN_PROPERTIES, BUILD] {
            let mut v = table.to_vec();
            v.sort_unstable();
            v.dedup();
            assert_eq!(v.len(), table.len());
        }
    }
}
