//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+other}`, `${VAR+other}`, and `$$` for a literal `$`.
//! Values come from the host's environment (and a `.env` file next to the Compose file), so a
//! reference is a host variable reaching the container or its settings.
//!
//! The audit reads a value as written and as Compose makes it with every variable unset: the
//! default of `${VAR:-default}` is what a host without `VAR` gets, and what a hostile file
//! would rely on.

/// The host variables a value reads, in order (defaults searched too).
#[must_use]
pub fn references(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    walk(value, 0, &mut |name| out.push(name));
    out
}

/// Nested defaults deeper than this are taken literally (Compose has no limit; a hostile file
/// must not be able to exhaust the stack).
const MAX_NESTING: usize = 16;
/// A `${` whose `}` is further away than this is not a reference (bounds the work per `$`).
const MAX_REFERENCE: usize = 4096;

/// The value with every host variable unset: defaults of `:-`/`-` (themselves interpolated),
/// the empty string otherwise; `$$` is `$`.
#[must_use]
pub fn unset(value: &str) -> String {
    unset_at(value, 0)
}

fn unset_at(value: &str, nesting: usize) -> String {
    let mut out = String::with_capacity(value.len());
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = value[i..].find('$').map_or(value.len(), |n| i + n);
            out.push_str(&value[i..next]);
            i = next;
            continue;
        }
        match parse_at(value, i) {
            Some(Reference::Dollar { end }) => {
                out.push('$');
                i = end;
            }
            Some(Reference::Variable { default, end, .. }) => {
                if let Some(default) = default {
                    if nesting < MAX_NESTING {
                        out.push_str(&unset_at(default, nesting + 1));
                    } else {
                        out.push_str(default);
                    }
                }
                i = end;
            }
            None => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

enum Reference<'a> {
    /// `$$`.
    Dollar { end: usize },
    /// `$NAME` or `${NAME…}`; `default` is what an unset `NAME` gives (`:-`/`-` only).
    Variable {
        name: &'a str,
        default: Option<&'a str>,
        /// The text after the operator (default, alternative or error), to search for nested
        /// references.
        rest: &'a str,
        end: usize,
    },
}

/// The reference starting at `value[at] == '$'`.
fn parse_at(value: &str, at: usize) -> Option<Reference<'_>> {
    let rest = &value[at + 1..];
    if rest.starts_with('$') {
        return Some(Reference::Dollar { end: at + 2 });
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(body) = rest.strip_prefix('{') {
        // The closing brace, skipping nested `${…}` in a default.
        let mut depth = 0usize;
        let mut close = None;
        let b = body.as_bytes();
        let mut j = 0;
        while j < b.len().min(MAX_REFERENCE) {
            match b[j] {
                b'$' if b.get(j + 1) == Some(&b'{') => {
                    depth += 1;
                    j += 1;
                }
                b'}' if depth == 0 => {
                    close = Some(j);
                    break;
                }
                b'}' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let close = close?;
        let inner = &body[..close];
        let name_len = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
        let (name, op) = inner.split_at(name_len);
        if name.is_empty() {
            return None;
        }
        let (default, rest) = if let Some(d) = op.strip_prefix(":-").or(op.strip_prefix('-')) {
            (Some(d), d)
        } else {
            let after = op
                .strip_prefix(":?")
                .or(op.strip_prefix('?'))
                .or(op.strip_prefix(":+"))
                .or(op.strip_prefix('+'))
                .unwrap_or("");
            (None, after)
        };
        return Some(Reference::Variable {
            name,
            default,
            rest,
            end: at + 2 + close + 1,
        });
    }
    let len = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
    let name = &rest[..len];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(Reference::Variable {
        name,
        default: None,
        rest: "",
        end: at + 1 + len,
    })
}

fn walk<'a>(value: &'a str, nesting: usize, found: &mut dyn FnMut(&'a str)) {
    let mut i = 0;
    while let Some(n) = value[i..].find('$') {
        let at = i + n;
        match parse_at(value, at) {
            Some(Reference::Dollar { end }) => i = end,
            Some(Reference::Variable {
                name, rest, end, ..
            }) => {
                found(name);
                if nesting < MAX_NESTING {
                    walk(rest, nesting + 1, found);
                }
                i = end;
            }
            None => i = at + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_unset_values() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("plain", &[], "plain"),
            ("$HOME/.ssh", &["HOME"], "/.ssh"),
            ("${HOME}/.ssh", &["HOME"], "/.ssh"),
            (
                "${SOCK:-/var/run/docker.sock}:/x",
                &["SOCK"],
                "/var/run/docker.sock:/x",
            ),
            ("${A-${B:-/etc}}", &["A", "B"], "/etc"),
            ("${TOKEN:?need a token}", &["TOKEN"], ""),
            ("${X:+set}", &["X"], ""),
            ("$$HOME", &[], "$HOME"),
            ("cost: 5$", &[], "cost: 5$"),
            ("${unterminated", &[], "${unterminated"),
            ("$1 ü ${Ü}", &[], "$1 ü ${Ü}"),
        ];
        // deep nesting and unclosed references stay cheap and never overflow the stack
        let deep = "${A-".repeat(500) + &"}".repeat(500);
        assert_eq!(references(&deep).len(), MAX_NESTING + 1);
        let _ = unset(&deep);
        let _ = unset(&"${".repeat(10_000));
        for (value, refs, unset_value) in cases {
            assert_eq!(&references(value), refs, "{value}");
            assert_eq!(&unset(value), unset_value, "{value}");
        }
    }
}
