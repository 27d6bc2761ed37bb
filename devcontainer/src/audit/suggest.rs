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
        .map(|c| (distance(name, c), *c))
        .filter(|(d, c)| *d <= limit && *c != name)
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
