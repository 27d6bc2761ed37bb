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
    format!("{parent}/{index}")
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
        assert_eq!(
            tokens("/a~1b~0c/~01"),
            Some(vec!["a/b~c".to_owned(), "~1".to_owned()])
        );
        assert_eq!(tokens(""), Some(vec![]));
        assert_eq!(tokens("x"), None);
    }
}
