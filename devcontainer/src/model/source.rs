//! Where the container comes from: `image`, `build` (or legacy `dockerFile` + `context`), or
//! Docker Compose (`dockerComposeFile` + `service` + `runServices`).
//!
//! The schema allows exactly one. When several are written the reference CLI silently picks by
//! precedence Dockerfile > image > Compose ([`ContainerSource`] records that choice), which
//! makes a mixture an error here: what a reviewer reads first may not be what runs.

use crate::error::ErrorSink;
use crate::model::UnknownProperty;
use crate::node::Node;
use crate::span::Located;

/// The `build` object (or the legacy top-level `dockerFile`/`context`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Build {
    /// `build.dockerfile` or legacy `dockerFile`.
    pub dockerfile: Option<Located<String>>,
    /// `build.context` or legacy `context` (default `"."`).
    pub context: Option<Located<String>>,
    /// `build.args` (`--build-arg`; values may carry substituted host variables).
    pub args: Vec<(Located<String>, Located<String>)>,
    /// `build.options`: extra `docker build` flags, appended verbatim.
    pub options: Vec<Located<String>>,
    /// `build.target`.
    pub target: Option<Located<String>>,
    /// `build.cacheFrom` (string or array).
    pub cache_from: Vec<Located<String>>,
    /// Whether this came from the legacy top-level `dockerFile`.
    pub legacy: bool,
}

/// Which source the reference CLI would use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerSource {
    /// Build from a Dockerfile.
    Dockerfile,
    /// Run an image.
    Image,
    /// Docker Compose.
    Compose,
    /// None given (Codespaces uses its default image; the CLI refuses).
    Default,
}

/// Parse the `build` object.
pub fn parse_build(
    node: &Node,
    errors: &mut ErrorSink,
    unknown: &mut Vec<UnknownProperty>,
) -> Option<Build> {
    if node.members().is_none() {
        errors.wrong_type(node, "build", "an object");
        return None;
    }
    let mut b = Build::default();
    for m in node.effective_members() {
        let v = &m.value;
        match m.key.as_str() {
            "dockerfile" => b.dockerfile = errors.string(v, "build.dockerfile"),
            "context" => b.context = errors.string(v, "build.context"),
            "args" => b.args = errors.string_map(v, "build.args").unwrap_or_default(),
            "options" => b.options = errors.string_array(v, "build.options").unwrap_or_default(),
            "target" => b.target = errors.string(v, "build.target"),
            "cacheFrom" => {
                b.cache_from = errors
                    .string_or_array(v, "build.cacheFrom")
                    .unwrap_or_default()
            }
            _ => unknown.push(UnknownProperty::of(m)),
        }
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn build_object() {
        let n = Node::from_json_value(&json!({
            "dockerfile": "Dockerfile", "context": "..", "args": {"A": "1", "B": 2},
            "options": ["--network=host"], "cacheFrom": "x", "target": "dev", "extra": 1
        }));
        let (mut e, mut u) = (ErrorSink::new(), Vec::new());
        let b = parse_build(&n, &mut e, &mut u);
        let b = b
            .as_ref()
            .map(|b| (b.args.len(), b.options.len(), b.cache_from.len()));
        assert_eq!(b, Some((1, 1, 1)));
        assert_eq!(e.len(), 1);
        assert_eq!(u.len(), 1);
    }
}
