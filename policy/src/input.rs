//! Strict reading of JSON input: every error names its place with a JSON pointer.
//!
//! Inputs of this crate (the organization policy document, the CLI requests) are read from a
//! `serde_json::Value` by hand rather than by derive, so that
//! - every error carries the JSON pointer of the offending field (RFC 6901, `""` is the root),
//! - all errors of a document are collected, not only the first (STYLE.md habit 3),
//! - unknown keys are errors, required keys must be present (issue 3: "accept and ignore
//!   nothing silently").
//!
//! [`parse_json`] turns text into a `Value` and refuses duplicate object keys (a duplicate would
//! otherwise silently win over the first) and nesting deeper than [`MAX_DEPTH`]. JSON with
//! comments (the organization policy document) goes through the devcontainer crate's syntax
//! layer instead (see [`crate::document`]), which also gives line and column. JSON pointers are
//! built with the devcontainer crate's [`child_key`] and [`child_index`].

use std::fmt;

use codespace_devcontainer::LineCol;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of arrays and objects accepted in any input.
pub const MAX_DEPTH: usize = 64;

/// One problem in an input, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", display_pointer(.pointer), display_at(.at.as_ref()))]
pub struct FieldError {
    /// RFC 6901 pointer of the field (`""` for the whole input).
    pub pointer: String,
    /// What is wrong, for a human.
    pub message: String,
    /// Line and column in the source text, when the input was text with positions (the
    /// organization policy document); `None` for values handed over as JSON.
    pub at: Option<LineCol>,
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

fn display_at(at: Option<&LineCol>) -> String {
    at.map(|at| format!(" (line {}, column {})", at.line, at.column))
        .unwrap_or_default()
}

impl FieldError {
    /// A new error at `pointer`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
            at: None,
        }
    }
}

/// All problems of one input; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputErrors(pub Vec<FieldError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

/// A text that is not JSON (or JSONC) at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's message.
    pub message: String,
}

/// Parses strict JSON (RFC 8259) into a `Value`, refusing duplicate keys.
pub fn parse_json(text: &str) -> Result<Value, SyntaxError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictSeed { depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|err| SyntaxError {
            line: err.line(),
            column: err.column(),
            message: strip_position(&err.to_string()),
        })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Clone, Copy)]
struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl StrictSeed {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

pub use codespace_devcontainer::pointer::{child_index, child_key};

/// A JSON value and where it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) value: &'a Value,
    pub(crate) pointer: &'a str,
}

/// An object being read field by field; [`Obj::finish`] reports the keys nobody asked for.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    pointer: String,
    known: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    /// Starts reading `value` as an object (an error if it is not one).
    pub(crate) fn new(value: &'a Value, pointer: &str, errs: &mut Vec<FieldError>) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self {
                map,
                pointer: pointer.to_owned(),
                known: Vec::new(),
            }),
            other => {
                errs.push(FieldError::new(
                    pointer,
                    format!("expected an object, found {}", kind(other)),
                ));
                None
            }
        }
    }

    /// A key that must be present.
    pub(crate) fn required(
        &mut self,
        key: &'static str,
        errs: &mut Vec<FieldError>,
    ) -> Option<(&'a Value, String)> {
        self.known.push(key);
        let found = self
            .map
            .get(key)
            .map(|v| (v, child_key(&self.pointer, key)));
        if found.is_none() {
            errs.push(FieldError::new(
                child_key(&self.pointer, key),
                "required field is missing",
            ));
        }
        found
    }

    /// A key that may be absent.
    pub(crate) fn optional(&mut self, key: &'static str) -> Option<(&'a Value, String)> {
        self.known.push(key);
        self.map
            .get(key)
            .map(|v| (v, child_key(&self.pointer, key)))
    }

    /// Reports every key that was not read.
    pub(crate) fn finish(self, errs: &mut Vec<FieldError>) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let expected = self.known.join(", ");
                errs.push(FieldError::new(
                    child_key(&self.pointer, key),
                    format!("unknown field (expected one of: {expected})"),
                ));
            }
        }
    }
}

/// The JSON type name of a value, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a string.
pub(crate) fn string<'a>(field: Field<'a>, errs: &mut Vec<FieldError>) -> Option<&'a str> {
    match field.value {
        Value::String(s) => Some(s),
        other => {
            errs.push(FieldError::new(
                field.pointer,
                format!("expected a string, found {}", kind(other)),
            ));
            None
        }
    }
}

/// Reads a boolean.
pub(crate) fn boolean(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<bool> {
    match field.value {
        Value::Bool(b) => Some(*b),
        other => {
            errs.push(FieldError::new(
                field.pointer,
                format!("expected a boolean, found {}", kind(other)),
            ));
            None
        }
    }
}

/// Reads an array.
pub(crate) fn array<'a>(field: Field<'a>, errs: &mut Vec<FieldError>) -> Option<&'a [Value]> {
    match field.value {
        Value::Array(items) => Some(items),
        other => {
            errs.push(FieldError::new(
                field.pointer,
                format!("expected an array, found {}", kind(other)),
            ));
            None
        }
    }
}

/// Reads an integer.
pub(crate) fn integer(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<i64> {
    match field.value.as_i64() {
        Some(n) => Some(n),
        None => {
            let found = match field.value {
                Value::Number(_) => "a non-integer or out-of-range number",
                other => kind(other),
            };
            errs.push(FieldError::new(
                field.pointer,
                format!("expected an integer, found {found}"),
            ));
            None
        }
    }
}

/// Reads one of a fixed set of strings.
pub(crate) fn one_of<T: Copy>(
    field: Field<'_>,
    choices: &[(&str, T)],
    errs: &mut Vec<FieldError>,
) -> Option<T> {
    let text = string(field, errs)?;
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Some(*value),
        None => {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            errs.push(FieldError::new(
                field.pointer,
                format!("expected one of {}, found {text:?}", names.join(", ")),
            ));
            None
        }
    }
}

/// Reads `null` as `None`, anything else with `read`.
pub(crate) fn nullable<'a, T>(
    field: Field<'a>,
    errs: &mut Vec<FieldError>,
    read: impl FnOnce(Field<'a>, &mut Vec<FieldError>) -> Option<T>,
) -> Option<Option<T>> {
    if field.value.is_null() {
        Some(None)
    } else {
        read(field, errs).map(Some)
    }
}

impl<'a> Field<'a> {
    /// A field from a value and its pointer.
    pub(crate) fn new(value: &'a Value, pointer: &'a str) -> Self {
        Self { value, pointer }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_and_depth_are_refused() {
        assert!(parse_json(r#"{"a":1,"b":{"c":[1,2]}}"#).is_ok());
        let err = parse_json(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(err.message.contains("duplicate key \"a\""), "{err}");
        assert_eq!(err.line, 1);
        assert!(parse_json(r#"{"a":{"b":1,"b":2}}"#).is_err());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse_json(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_json(&ok).is_ok());
        assert!(parse_json("{} x").is_err());
        assert!(parse_json("{,}").is_err());
    }

    #[test]
    fn pointers_escape() {
        assert_eq!(child_key("", "a/b~c"), "/a~1b~0c");
        assert_eq!(child_index("/x", 3), "/x/3");
        assert_eq!(FieldError::new("", "bad").to_string(), "(root): bad");
    }

    #[test]
    fn object_reader_reports_missing_and_unknown() {
        let v = serde_json::json!({"a": 1, "z": 2});
        let mut errs = Vec::new();
        let mut obj = Obj::new(&v, "/doc", &mut errs).unwrap();
        assert!(obj.required("a", &mut errs).is_some());
        assert!(obj.required("b", &mut errs).is_none());
        assert!(obj.optional("c").is_none());
        obj.finish(&mut errs);
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/doc/b", "/doc/z"]);
    }
}
