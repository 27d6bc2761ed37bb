//! `hostRequirements` (minimum machine size) and `secrets` (recommended secrets the tool
//! should prompt the user for).

use crate::error::{located, ErrorSink};
use crate::model::UnknownProperty;
use crate::node::{Node, NodeValue};
use crate::span::Located;

/// `hostRequirements`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRequirements {
    /// `cpus` (≥ 1).
    pub cpus: Option<Located<u64>>,
    /// `memory` such as `"8gb"`.
    pub memory: Option<Located<String>>,
    /// `storage` such as `"32gb"`.
    pub storage: Option<Located<String>>,
    /// `gpu`.
    pub gpu: Option<Located<GpuRequirement>>,
}

/// `hostRequirements.gpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GpuRequirement {
    /// `true`: a GPU is required.
    Required,
    /// `false`: none.
    None,
    /// `"optional"`: use one if there is one.
    Optional,
    /// `{cores?, memory?}`: a GPU with at least these.
    Detailed {
        /// Minimum cores.
        cores: Option<u64>,
        /// Minimum memory (`"4gb"`).
        memory: Option<String>,
    },
}

fn positive_int(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<u64> {
    let n = match &node.value {
        NodeValue::Number(t) => t.parse::<u64>().ok().filter(|n| *n >= 1),
        _ => {
            errors.wrong_type(node, property, "an integer ≥ 1");
            return None;
        }
    };
    if n.is_none() {
        errors.invalid(node, property, "expected an integer ≥ 1");
    }
    n
}

/// `^\d+([tgmk]b)?$`
fn size(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<Located<String>> {
    let s = errors.string(node, property)?;
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let ok = digits_end > 0 && matches!(&s[digits_end..], "" | "tb" | "gb" | "mb" | "kb");
    if !ok {
        errors.invalid(node, property, format!("{:?} is not a size; expected digits optionally followed by tb, gb, mb or kb (e.g. \"8gb\")", s.value));
        return None;
    }
    Some(s)
}

/// Parse `hostRequirements`.
pub fn parse_host_requirements(
    node: &Node,
    errors: &mut ErrorSink,
    unknown: &mut Vec<UnknownProperty>,
) -> Option<HostRequirements> {
    if node.members().is_none() {
        errors.wrong_type(node, "hostRequirements", "an object");
        return None;
    }
    let mut h = HostRequirements::default();
    for m in node.effective_members() {
        let v = &m.value;
        match m.key.as_str() {
            "cpus" => {
                h.cpus = positive_int(v, "hostRequirements.cpus", errors).map(|n| located(v, n))
            }
            "memory" => h.memory = size(v, "hostRequirements.memory", errors),
            "storage" => h.storage = size(v, "hostRequirements.storage", errors),
            "gpu" => {
                let g = match &v.value {
                    NodeValue::Bool(true) => Some(GpuRequirement::Required),
                    NodeValue::Bool(false) => Some(GpuRequirement::None),
                    NodeValue::String(s) if s == "optional" => Some(GpuRequirement::Optional),
                    NodeValue::Object(_) => {
                        let cores = v
                            .get("cores")
                            .and_then(|c| positive_int(c, "hostRequirements.gpu.cores", errors));
                        let memory = v
                            .get("memory")
                            .and_then(|c| size(c, "hostRequirements.gpu.memory", errors))
                            .map(|l| l.value);
                        for extra in v
                            .effective_members()
                            .filter(|x| x.key != "cores" && x.key != "memory")
                        {
                            unknown.push(UnknownProperty::of(extra));
                        }
                        Some(GpuRequirement::Detailed { cores, memory })
                    }
                    _ => {
                        errors.wrong_type(
                            v,
                            "hostRequirements.gpu",
                            "true, false, \"optional\" or {cores, memory}",
                        );
                        None
                    }
                };
                h.gpu = g.map(|g| located(v, g));
            }
            _ => unknown.push(UnknownProperty::of(m)),
        }
    }
    Some(h)
}

/// One recommended secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecommendedSecret {
    /// The secret (environment variable) name.
    pub name: Located<String>,
    /// `description`.
    pub description: Option<Located<String>>,
    /// `documentationUrl`.
    pub documentation_url: Option<Located<String>>,
}

fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Parse `secrets`.
pub fn parse_secrets(
    node: &Node,
    errors: &mut ErrorSink,
    unknown: &mut Vec<UnknownProperty>,
) -> Vec<RecommendedSecret> {
    if node.members().is_none() {
        errors.wrong_type(node, "secrets", "an object keyed by secret name");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        if !is_env_name(&m.key) {
            errors.invalid(&m.value, "secrets", format!("{:?} is not a valid secret name; expected letters, digits and '_', not starting with a digit", m.key));
            continue;
        }
        if m.value.members().is_none() {
            errors.wrong_type(
                &m.value,
                &format!("secrets.{}", m.key),
                "an object {description, documentationUrl}",
            );
            continue;
        }
        let mut s = RecommendedSecret {
            name: Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span),
            description: None,
            documentation_url: None,
        };
        for f in m.value.effective_members() {
            match f.key.as_str() {
                "description" => s.description = errors.string(&f.value, "secret description"),
                "documentationUrl" => {
                    s.documentation_url = errors.string(&f.value, "secret documentationUrl")
                }
                _ => unknown.push(UnknownProperty::of(f)),
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_requirements() {
        let n = Node::from_json_value(
            &json!({"cpus": 4, "memory": "8gb", "storage": "32", "gpu": "optional"}),
        );
        let (mut e, mut u) = (ErrorSink::new(), Vec::new());
        let h = parse_host_requirements(&n, &mut e, &mut u).unwrap();
        assert!(e.is_empty());
        assert_eq!(h.gpu.unwrap().value, GpuRequirement::Optional);
        let n = Node::from_json_value(
            &json!({"cpus": 0, "memory": "8 GB", "gpu": {"cores": 2, "x": 1}, "disk": 1}),
        );
        let h = parse_host_requirements(&n, &mut e, &mut u).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(u.len(), 2);
        assert_eq!(
            h.gpu.unwrap().value,
            GpuRequirement::Detailed {
                cores: Some(2),
                memory: None
            }
        );
    }

    #[test]
    fn secrets() {
        let n = Node::from_json_value(&json!({
            "API_KEY": {"description": "d", "documentationUrl": "https://x"},
            "1BAD": {}, "OK": 3, "_X": {"other": 1}
        }));
        let (mut e, mut u) = (ErrorSink::new(), Vec::new());
        let s = parse_secrets(&n, &mut e, &mut u);
        assert_eq!(s.len(), 2);
        assert_eq!(e.len(), 2);
        assert_eq!(u.len(), 1);
        assert_eq!(s[0].documentation_url.as_ref().unwrap().value, "https://x");
    }
}
