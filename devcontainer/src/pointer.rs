//! RFC 6901 JSON pointers: `/a/b~1c/0` names member `a`, then member `b/c`, then element 0.
//! `~` is written `~0` and `/` is written `~1`; the empty pointer is the whole document.

/// Escape one reference token (`~` → `~0`, `/` → `~1`).
#[must_use]
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Decode one reference token (`~1` → `/`, `~0` → `~`, in that order as the RFC requires).
#[must_use]
pub fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The pointer of member `key` of the value at `parent`.
#[must_use]
pub fn child_key(parent: &str, key: &str) -> String {
    let mut out = String::with_capacity(parent.len() + key.len() + 1);
    out.push_str(parent);
    out.push('/');
    if key.contains(['~', '/']) {
        out.push_str(&escape_token(key));
    } else {
        out.push_str(key);
    }
    out
}

/// The pointer of element `index` of the array at `parent`.
#[must_use]
pub fn child_index(parent: &str, index: usize) -> String {
    // Digits by hand: `write!` goes through the formatting machinery, and every array element
    // of every parsed document gets a pointer.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = index;
    loop {
        at -= 1;
        digits[at] = b"0123456789"[n % 10];
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(parent.len() + 1 + digits.len() - at);
    out.push_str(parent);
    out.push('/');
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
    out
}

/// [`tokens`] without allocating: each token borrowed from `pointer` unless it has an escape.
pub(crate) fn tokens_borrowed(
    pointer: &str,
) -> Option<impl Iterator<Item = std::borrow::Cow<'_, str>>> {
    use std::borrow::Cow;
    let rest = if pointer.is_empty() {
        None
    } else {
        Some(pointer.strip_prefix('/')?)
    };
    Some(rest.into_iter().flat_map(|r| r.split('/')).map(|t| {
        if t.contains('~') {
            Cow::Owned(unescape_token(t))
        } else {
            Cow::Borrowed(t)
        }
    }))
}

/// Split a pointer into decoded reference tokens; `None` if it does not start with `/` and is
/// not empty.
#[must_use]
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(unescape_token).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_round_trips() {
        assert_eq!(child_key("", "a/b~c"), "/a~1b~0c");
        assert_eq!(child_key("/x", ""), "/x/");
        assert_eq!(child_index("/x", 3), "/x/3");
        for i in [0, 9, 10, 99, 100, 12_345, usize::MAX] {
            assert_eq!(child_index("/a", i), format!("/a/{i}"));
        }
        assert_eq!(
            tokens("/a~1b~0c/~01"),
            Some(vec!["a/b~c".to_owned(), "~1".to_owned()])
        );
        assert_eq!(tokens(""), Some(vec![]));
        assert_eq!(tokens("x"), None);
        for p in ["", "/", "/a~1b~0c/~01", "//x/", "/a/0/b", "x", "a/b"] {
            let borrowed: Option<Vec<String>> =
                tokens_borrowed(p).map(|t| t.map(|t| t.into_owned()).collect());
            assert_eq!(borrowed, tokens(p), "{p:?}");
        }
    }
}
