//! Substring search for ASCII needles in short texts, the audit's inner loop.
//!
//! The audit looks for a handful of ASCII words (`://`, `password`, `iex`, ...) in every string of
//! a document. `str::find(&str)` builds a two-way searcher per call, which costs more than the
//! search itself on a 40-byte value, and a case-insensitive search by lower-casing first copies
//! the text. These scan for the needle's first byte and compare in place. An ASCII needle can only
//! match at a char boundary, so the offsets are valid `str` indices.

/// Byte offset of the first `needle` (ASCII) in `hay` at or after `from`. For the short values of
/// a devcontainer.json a scan for the first byte beats building a two-way searcher per call.
pub(crate) fn find_ascii(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= hay.len() {
        let i = at + hay[at..].iter().position(|&b| b == first)?;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// [`find_ascii`] ignoring ASCII case; `needle` must be ASCII lower case.
pub(crate) fn find_ascii_ignore_case(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= hay.len() {
        let i = at
            + hay[at..]
                .iter()
                .position(|b| b.to_ascii_lowercase() == first)?;
        if hay.len() - i >= needle.len() && hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_search_agrees_with_str_find() {
        let hays = [
            "",
            "a",
            "xx://",
            "ü://ü",
            "PassWord=Xk9",
            "tokentoken",
            "ßtoken",
            "a:/b://",
        ];
        for hay in hays {
            for needle in ["://", "token", "password", "x"] {
                let lower = hay.to_ascii_lowercase();
                for from in 0..=hay.len() {
                    if !hay.is_char_boundary(from) {
                        continue;
                    }
                    let expected = hay[from..].find(needle).map(|i| i + from);
                    assert_eq!(
                        find_ascii(hay, needle, from),
                        expected,
                        "{hay:?} {needle:?}"
                    );
                    let expected = lower[from..].find(needle).map(|i| i + from);
                    assert_eq!(
                        find_ascii_ignore_case(hay, needle, from),
                        expected,
                        "{hay:?} {needle:?}"
                    );
                }
            }
        }
    }
}
