//! The raw layer: an owned JSON tree exactly as written.
//!
//! ```text
//! text ──jsonc-parser──▶ AST ──(depth check, BOM offsets)──▶ Node tree ──▶ typed model
//! ```
//!
//! Every [`Node`] keeps its RFC 6901 pointer and byte [`Span`]. Objects keep *all* members in
//! source order, duplicates included; [`Node::get`] returns the last one, which is the one the
//! reference CLI uses (JavaScript's `JSON`-like parse: last wins). Numbers keep their source text
//! so `3000.0`, `1e400` and `99999999999999999999` can be judged on what was written.
//!
//! Trees can also be built from a `serde_json::Value` ([`Node::from_json_value`]) so code that
//! received JSON some other way can reuse the typed parsers; those nodes have no span.

use crate::pointer;
use crate::span::Span;

/// One JSON value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// RFC 6901 pointer from the document root.
    pub pointer: String,
    /// Byte range in the original text, `None` for trees built from `serde_json` values.
    pub span: Option<Span>,
}

/// The kinds of JSON value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written in the source (e.g. `3000.0`, `-1`, `1e400`).
    Number(String),
    /// A string with escapes decoded.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object: members in source order, duplicates kept.
    Object(Vec<Member>),
}

/// One `"key": value` member of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The decoded key (`"privil\u0065ged"` is `privileged`).
    pub key: String,
    /// Where the key (including its quotes) is written.
    pub key_span: Option<Span>,
    /// The member's value.
    pub value: Node,
}

/// A key written more than once in the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The decoded key.
    pub key: String,
    /// Pointer of the member (the effective, last one).
    pub pointer: String,
    /// Span of the first occurrence's key.
    pub first: Option<Span>,
    /// Span of this later occurrence's key.
    pub duplicate: Option<Span>,
}

impl NodeValue {
    /// The JSON type name, for error messages (`"string"`, `"number"`, ...).
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Number(_) => "number",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::Object(_) => "object",
        }
    }
}

impl Node {
    /// Build a node.
    #[must_use]
    pub fn new(value: NodeValue, pointer: String, span: Option<Span>) -> Self {
        Self {
            value,
            pointer,
            span,
        }
    }

    /// The effective (last) member named `key`, if this is an object.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Object(members) => members
                .iter()
                .rev()
                .find(|m| m.key == key)
                .map(|m| &m.value),
            _ => None,
        }
    }

    /// The members of an object, duplicates included, in source order.
    #[must_use]
    pub fn members(&self) -> Option<&[Member]> {
        match &self.value {
            NodeValue::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The effective members of an object: one per key (the last), in order of first appearance
    /// of that last occurrence. Linear time: large objects (settings) must not be quadratic.
    pub fn effective_members(&self) -> impl Iterator<Item = &Member> {
        let members = self.members().unwrap_or(&[]);
        // For small objects a scan beats hashing; above that, remember each key's last index.
        let last: Option<std::collections::HashMap<&str, usize>> =
            (members.len() > 16).then(|| {
                members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.key.as_str(), i))
                    .collect()
            });
        members
            .iter()
            .enumerate()
            .filter(move |(i, m)| match &last {
                Some(last) => last.get(m.key.as_str()) == Some(i),
                None => !members[i + 1..].iter().any(|later| later.key == m.key),
            })
            .map(|(_, m)| m)
    }

    /// The elements of an array.
    #[must_use]
    pub fn elements(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Array(e) => Some(e),
            _ => None,
        }
    }

    /// The string, if this is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as JavaScript's `String(value)` gives it, which is what the reference CLI writes
    /// when it interpolates a value into a string (feature options in `devcontainer-features.env`):
    /// arrays are their elements joined with `,` (`null` as empty), objects `[object Object]`.
    /// Recursion is bounded by the parser's depth limit.
    #[must_use]
    pub fn js_string(&self) -> String {
        match &self.value {
            NodeValue::Null => "null".to_owned(),
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Number(text) => text.clone(),
            NodeValue::String(s) => s.clone(),
            NodeValue::Array(items) => items
                .iter()
                .map(|i| match i.value {
                    NodeValue::Null => String::new(),
                    _ => i.js_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            NodeValue::Object(_) => "[object Object]".to_owned(),
        }
    }

    /// The boolean, if this is a boolean.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            NodeValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The JSON type name of this value.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        self.value.type_name()
    }

    /// Follow an RFC 6901 pointer *relative to this node's own pointer* (i.e. `""` is this node).
    /// Object steps use the effective (last) member.
    #[must_use]
    pub fn resolve(&self, relative: &str) -> Option<&Node> {
        let mut cur = self;
        for token in pointer::tokens_borrowed(relative)? {
            cur = match &cur.value {
                NodeValue::Object(_) => cur.get(&token)?,
                NodeValue::Array(items) => {
                    if token.len() > 1 && token.starts_with('0') {
                        return None;
                    }
                    items.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Every key that is written more than once in any object of this tree that is in effect
    /// (each later occurrence reported against the first). Objects inside a shadowed duplicate
    /// are not searched, so every reported pointer resolves.
    #[must_use]
    pub fn duplicate_keys(&self) -> Vec<DuplicateKey> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match &node.value {
                NodeValue::Object(members) => {
                    // Small objects: a scan, no allocation. Large ones: a map of first positions.
                    let first_of: Option<std::collections::HashMap<&str, &Member>> =
                        (members.len() > 16).then(|| {
                            let mut map = std::collections::HashMap::with_capacity(members.len());
                            for m in members.iter().rev() {
                                map.insert(m.key.as_str(), m);
                            }
                            map
                        });
                    let found_before = out.len();
                    for (i, m) in members.iter().enumerate() {
                        let first = match &first_of {
                            Some(map) => map
                                .get(m.key.as_str())
                                .copied()
                                .filter(|f| !std::ptr::eq(*f, m)),
                            None => members[..i].iter().find(|f| f.key == m.key),
                        };
                        if let Some(first) = first {
                            out.push(DuplicateKey {
                                key: m.key.clone(),
                                pointer: m.value.pointer.clone(),
                                first: first.key_span,
                                duplicate: m.key_span,
                            });
                        }
                    }
                    // Descend only into effective values: a shadowed duplicate's subtree is
                    // ignored by the tools (the shadowing itself is reported above), and every
                    // reported pointer must resolve.
                    let has_duplicates = out.len() > found_before;
                    let start = stack.len();
                    if has_duplicates {
                        stack.extend(node.effective_members().map(|m| &m.value));
                    } else {
                        stack.extend(members.iter().map(|m| &m.value));
                    }
                    stack[start..].reverse();
                }
                NodeValue::Array(items) => stack.extend(items.iter().rev()),
                _ => {}
            }
        }
        out
    }

    /// Build a span-less tree from a `serde_json` value whose pointer is `""`.
    ///
    /// Recursive: meant for values that came from `serde_json`'s parser, which limits nesting
    /// to 128 levels like [`crate::parse`] does.
    #[must_use]
    pub fn from_json_value(value: &serde_json::Value) -> Self {
        Self::from_json_value_at(value, "")
    }

    /// Build a span-less tree from a `serde_json` value that sits at `base` in some document
    /// (so errors name the right place).
    #[must_use]
    pub fn from_json_value_at(value: &serde_json::Value, base: &str) -> Self {
        use serde_json::Value as V;
        let v = match value {
            V::Null => NodeValue::Null,
            V::Bool(b) => NodeValue::Bool(*b),
            V::Number(n) => NodeValue::Number(n.to_string()),
            V::String(s) => NodeValue::String(s.clone()),
            V::Array(items) => NodeValue::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::from_json_value_at(item, &pointer::child_index(base, i)))
                    .collect(),
            ),
            V::Object(map) => NodeValue::Object(
                map.iter()
                    .map(|(k, item)| Member {
                        key: k.clone(),
                        key_span: None,
                        value: Self::from_json_value_at(item, &pointer::child_key(base, k)),
                    })
                    .collect(),
            ),
        };
        Self::new(v, base.to_owned(), None)
    }

    /// Convert back to a `serde_json` value (effective members only; numbers that do not fit a
    /// JSON number become strings of their source text).
    #[must_use]
    pub fn to_json_value(&self) -> serde_json::Value {
        use serde_json::Value as V;
        match &self.value {
            NodeValue::Null => V::Null,
            NodeValue::Bool(b) => V::Bool(*b),
            // Integers exactly; other numbers through std's correctly rounded parser (serde_json's
            // default float parser is not, so a round trip could change the value).
            NodeValue::Number(n) => n
                .parse::<i64>()
                .map(V::from)
                .or_else(|_| n.parse::<u64>().map(V::from))
                .ok()
                .or_else(|| {
                    n.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(V::Number)
                })
                .unwrap_or_else(|| V::String(n.clone())),
            NodeValue::String(s) => V::String(s.clone()),
            NodeValue::Array(items) => V::Array(items.iter().map(Self::to_json_value).collect()),
            NodeValue::Object(_) => V::Object(
                self.effective_members()
                    .map(|m| (m.key.clone(), m.value.to_json_value()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_returns_last_duplicate_and_duplicates_are_listed() {
        let n = Node::from_json_value(&json!({"a": 1}));
        assert_eq!(n.get("a").unwrap().value, NodeValue::Number("1".into()));
        let dup = Node::new(
            NodeValue::Object(vec![
                Member {
                    key: "p".into(),
                    key_span: Some(Span::new(1, 4)),
                    value: Node::new(NodeValue::Bool(false), "/p".into(), None),
                },
                Member {
                    key: "p".into(),
                    key_span: Some(Span::new(10, 13)),
                    value: Node::new(NodeValue::Bool(true), "/p".into(), None),
                },
            ]),
            String::new(),
            None,
        );
        assert_eq!(dup.get("p").unwrap().as_bool(), Some(true));
        let d = dup.duplicate_keys();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].first, Some(Span::new(1, 4)));
        assert_eq!(d[0].duplicate, Some(Span::new(10, 13)));
        assert_eq!(dup.effective_members().count(), 1);
    }

    #[test]
    fn large_objects_use_the_last_duplicate_too() {
        let mut members: Vec<Member> = (0..40)
            .map(|i| Member {
                key: format!("k{}", i % 20),
                key_span: Some(Span::new(i, i + 1)),
                value: Node::new(
                    NodeValue::Number(i.to_string()),
                    format!("/k{}", i % 20),
                    None,
                ),
            })
            .collect();
        members.push(members[0].clone());
        let n = Node::new(NodeValue::Object(members), String::new(), None);
        let eff: Vec<_> = n
            .effective_members()
            .map(|m| m.key_span.unwrap().start)
            .collect();
        assert_eq!(eff.len(), 20);
        // ordered by the position of each key's last occurrence: k1..k19 (21..39), then k0 (the
        // copy at the end, whose span is 0)
        assert_eq!(eff[0], 21);
        assert_eq!(eff[19], 0);
        assert_eq!(n.duplicate_keys().len(), 21);
        assert_eq!(n.get("k0").unwrap().value, NodeValue::Number("0".into()));
    }

    #[test]
    fn pointers_are_escaped_and_resolve() {
        let n = Node::from_json_value(&json!({"a/b": {"~": [1, 2]}}));
        let inner = n.resolve("/a~1b/~0/1").unwrap();
        assert_eq!(inner.pointer, "/a~1b/~0/1");
        assert_eq!(inner.value, NodeValue::Number("2".into()));
        assert!(n.resolve("/a~1b/~0/01").is_none());
        assert!(n.resolve("/nope").is_none());
        assert_eq!(n.to_json_value(), json!({"a/b": {"~": [1, 2]}}));
    }

    #[test]
    fn numbers_round_trip_exactly() {
        for text in [
            "8888888888888888888888888888888888888888888888888888888888888888888888888.0",
            "0.1",
            "-0",
            "1e400",
            "18446744073709551615",
            "-9223372036854775808",
            "3000.0",
        ] {
            let n = Node::new(NodeValue::Number(text.into()), String::new(), None);
            let v = n.to_json_value();
            assert_eq!(Node::from_json_value(&v).to_json_value(), v, "{text}");
        }
        let big = Node::new(NodeValue::Number("1e400".into()), String::new(), None);
        assert_eq!(big.to_json_value(), serde_json::json!("1e400"));
    }

    #[test]
    fn from_json_value_at_prefixes_pointers() {
        let n = Node::from_json_value_at(&json!({"x": true}), "/customizations");
        assert_eq!(n.get("x").unwrap().pointer, "/customizations/x");
    }
}
