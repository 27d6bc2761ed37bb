//! Variable substitution, exactly as the reference CLI does it (reference notes §6).
//!
//! ```text
//! raw tree ──pass 1: ${localEnv:X[:default]} ${env:X} ${localWorkspaceFolder[Basename]}
//!          │         ${containerWorkspaceFolder[Basename]}
//!          ├─pass 2: ${devcontainerId}            (when the id is known)
//!          └─pass 3: ${containerEnv:X[:default]}  (when the container's env is known)
//!                                                 ─▶ substituted tree ─▶ typed model again
//! ```
//!
//! Each pass scans every string *value* (never keys) once with the CLI's regular expression
//! `/\$\{(.*?)\}/g`: non-greedy, no nesting, no escape syntax, `.` not matching line breaks.
//! The text inside is split on `:`; the first part names the variable and the rest are
//! arguments, so a default containing `:` is truncated (`${localEnv:X:http://a}` → `http`).
//! Unknown names stay literal, and replacement text is not re-scanned *within* a pass (it is by
//! the next pass, as in the CLI). `${localEnv}` without a name is an error.
//! Environment and folders are passed in: this module never reads the process environment.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{ErrorSink, ModelErrorKind};
use crate::feature::FeatureMetadata;
use crate::model::DevContainer;
use crate::node::{Member, Node, NodeValue};
use crate::parsed::Parsed;

/// What the variables resolve to. `None` leaves the corresponding variables literal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubstitutionContext {
    /// The host environment (`${localEnv:…}`, `${env:…}`).
    pub local_env: BTreeMap<String, String>,
    /// Host path of the opened folder.
    pub local_workspace_folder: Option<String>,
    /// Path of the workspace in the container (default `/workspaces/<basename>`).
    pub container_workspace_folder: Option<String>,
    /// The `${devcontainerId}` value (see [`devcontainer_id_for_labels`]).
    pub devcontainer_id: Option<String>,
    /// The container's environment, known after it started (`${containerEnv:…}`).
    pub container_env: Option<BTreeMap<String, String>>,
}

/// Why a variable could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubstitutionError {
    /// `${localEnv}`, `${env}` or `${containerEnv}` without a variable name.
    #[error("'{variable}' can not be resolved because no environment variable name is given; expected ${{localEnv:NAME}} or ${{localEnv:NAME:default}}")]
    MissingVariableName {
        /// The whole `${…}` text.
        variable: String,
    },
}

/// `${devcontainerId}` for a container's id labels, as the CLI computes it: SHA-256 of the
/// labels as compact JSON with sorted keys, as a base-32 number (`0-9a-v`) left-padded to 52.
#[must_use]
pub fn devcontainer_id_for_labels(labels: &BTreeMap<String, String>) -> String {
    // BTreeMap iterates in sorted order, like JSON.stringify with a sorted key list.
    let json = serde_json::to_string(labels).unwrap_or_default();
    let hash = Sha256::digest(json.as_bytes());
    // 52 base-32 digits hold 260 bits: read the 256-bit number 5 bits at a time from the top,
    // with 4 leading zero bits.
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let bit = |i: usize| -> u8 {
        // bit i of the 260-bit number counted from the most significant end
        if i < 4 {
            return 0;
        }
        let j = i - 4;
        (hash[j / 8] >> (7 - j % 8)) & 1
    };
    (0..52)
        .map(|d| {
            let v = (0..5).fold(0u8, |acc, b| (acc << 1) | bit(d * 5 + b));
            char::from(DIGITS[usize::from(v)])
        })
        .collect()
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// One regex pass: `f(whole, inner)` returns the replacement or `None` to keep `whole`.
fn replace_pass(
    s: &str,
    mut f: impl FnMut(&str, &str) -> Result<Option<String>, SubstitutionError>,
    errors: &mut Vec<SubstitutionError>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(pos) = s[i..].find("${") {
        let start = i + pos;
        let body = start + 2;
        let close = s[body..]
            .find(|c: char| c == '}' || is_line_terminator(c))
            .filter(|off| s.as_bytes()[body + off] == b'}');
        let Some(off) = close else {
            out.push_str(&s[i..=start]);
            i = start + 1;
            continue;
        };
        let end = body + off + 1;
        let whole = &s[start..end];
        out.push_str(&s[i..start]);
        match f(whole, &s[body..end - 1]) {
            Ok(Some(r)) => out.push_str(&r),
            Ok(None) => out.push_str(whole),
            Err(e) => {
                errors.push(e);
                out.push_str(whole);
            }
        }
        i = end;
    }
    out.push_str(&s[i..]);
    out
}

fn lookup(
    env: &BTreeMap<String, String>,
    args: &[&str],
    whole: &str,
) -> Result<Option<String>, SubstitutionError> {
    let Some(name) = args.first() else {
        return Err(SubstitutionError::MissingVariableName {
            variable: whole.to_owned(),
        });
    };
    Ok(Some(match env.get(*name) {
        Some(v) => v.clone(),
        None => args.get(1).map_or_else(String::new, |d| (*d).to_owned()),
    }))
}

fn posix_basename(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Substitute all variables of one string; errors are appended to `errors`.
#[must_use]
pub fn substitute_str(
    s: &str,
    ctx: &SubstitutionContext,
    errors: &mut Vec<SubstitutionError>,
) -> String {
    if !s.contains("${") {
        return s.to_owned();
    }
    let split = |inner: &str| -> (String, Vec<String>) {
        let mut parts = inner.split(':');
        let name = parts.next().unwrap_or_default().to_owned();
        (name, parts.map(str::to_owned).collect())
    };
    let pass1 = replace_pass(
        s,
        |whole, inner| {
            let (name, args) = split(inner);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let folder = |f: &Option<String>, base: bool| {
                Ok(f.as_ref()
                    .map(|f| if base { posix_basename(f) } else { f.clone() }))
            };
            match name.as_str() {
                "env" | "localEnv" => lookup(&ctx.local_env, &args, whole),
                "localWorkspaceFolder" => folder(&ctx.local_workspace_folder, false),
                "localWorkspaceFolderBasename" => folder(&ctx.local_workspace_folder, true),
                "containerWorkspaceFolder" => folder(&ctx.container_workspace_folder, false),
                "containerWorkspaceFolderBasename" => folder(&ctx.container_workspace_folder, true),
                _ => Ok(None),
            }
        },
        errors,
    );
    let pass2 = match &ctx.devcontainer_id {
        Some(id) => replace_pass(
            &pass1,
            |_, inner| Ok((split(inner).0 == "devcontainerId").then(|| id.clone())),
            errors,
        ),
        None => pass1,
    };
    match &ctx.container_env {
        Some(env) => replace_pass(
            &pass2,
            |whole, inner| {
                let (name, args) = split(inner);
                if name != "containerEnv" {
                    return Ok(None);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                lookup(env, &args, whole)
            },
            errors,
        ),
        None => pass2,
    }
}

/// Substitute every string value of a tree (keys untouched; pointers and spans kept, so
/// findings on substituted values still point at the raw text).
pub fn substitute_tree(node: &Node, ctx: &SubstitutionContext, errors: &mut ErrorSink) -> Node {
    let value = match &node.value {
        NodeValue::String(s) => {
            let mut errs = Vec::new();
            let out = substitute_str(s, ctx, &mut errs);
            for e in errs {
                errors.push(node, ModelErrorKind::Substitution(e));
            }
            NodeValue::String(out)
        }
        NodeValue::Array(items) => NodeValue::Array(
            items
                .iter()
                .map(|i| substitute_tree(i, ctx, errors))
                .collect(),
        ),
        NodeValue::Object(members) => NodeValue::Object(
            members
                .iter()
                .map(|m| Member {
                    key: m.key.clone(),
                    key_span: m.key_span,
                    value: substitute_tree(&m.value, ctx, errors),
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Node::new(value, node.pointer.clone(), node.span)
}

/// Substitute a parsed document and rebuild its model. The result's `errors` are the
/// substitution errors plus the model errors of the substituted values. A document with a
/// syntax error is returned as is.
///
/// ```
/// use codespace_devcontainer::{parse_devcontainer, substitute, SubstitutionContext};
///
/// let raw = parse_devcontainer(
///     r#"{"image": "x", "containerEnv": {"TOKEN": "${localEnv:GITHUB_TOKEN:none}"}}"#,
/// );
/// let ctx = SubstitutionContext::default(); // empty host environment
/// let resolved = substitute(&raw, &ctx);
/// let env = &resolved.model.as_ref().unwrap().container_env[0];
/// assert_eq!(env.value.value, "none");
/// // the raw model still shows what was written, at the same pointer
/// let raw_env = &raw.model.as_ref().unwrap().container_env[0];
/// assert_eq!(raw_env.value.value, "${localEnv:GITHUB_TOKEN:none}");
/// assert_eq!(raw_env.value.pointer, env.value.pointer);
/// ```
#[must_use]
pub fn substitute(
    parsed: &Parsed<DevContainer>,
    ctx: &SubstitutionContext,
) -> Parsed<DevContainer> {
    substitute_with(parsed, ctx, DevContainer::from_tree)
}

/// [`substitute`] for a `devcontainer-feature.json` (features may use `${devcontainerId}` in
/// `mounts` and `entrypoint`).
#[must_use]
pub fn substitute_feature(
    parsed: &Parsed<FeatureMetadata>,
    ctx: &SubstitutionContext,
) -> Parsed<FeatureMetadata> {
    substitute_with(parsed, ctx, FeatureMetadata::from_tree)
}

fn substitute_with<T: Clone>(
    parsed: &Parsed<T>,
    ctx: &SubstitutionContext,
    build: impl FnOnce(&Node, &mut ErrorSink) -> T,
) -> Parsed<T> {
    let Some(tree) = &parsed.tree else {
        return parsed.clone();
    };
    let mut sub_errors = ErrorSink::new();
    let substituted = substitute_tree(tree, ctx, &mut sub_errors);
    let mut out = Parsed::from_tree(substituted, parsed.lines.clone(), parsed.had_bom, build);
    out.errors.extend(sub_errors.into_errors());
    out.errors.sort_by_key(|e| e.span.map(|s| s.start));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> SubstitutionContext {
        SubstitutionContext {
            local_env: [
                ("HOME", "/home/u"),
                ("X", "x"),
                ("EMPTY", ""),
                ("EVIL", "${localEnv:HOME}"),
                ("C", "${containerEnv:PATH}"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            local_workspace_folder: Some("/src/proj/".to_owned()),
            container_workspace_folder: Some("/workspaces/proj".to_owned()),
            devcontainer_id: Some("ID".to_owned()),
            container_env: Some(
                [("PATH".to_owned(), "/bin".to_owned())]
                    .into_iter()
                    .collect(),
            ),
        }
    }

    #[test]
    fn table() {
        let c = ctx();
        let table = [
            ("${localEnv:HOME}/.ssh", "/home/u/.ssh"),
            ("${env:HOME}${env:USERPROFILE}", "/home/u"),
            ("${localEnv:NOPE:def}", "def"),
            ("${localEnv:EMPTY:def}", ""),
            ("${localEnv:NOPE:http://a:1}", "http"),
            ("${localEnv:${localEnv:X}}", "X}"),
            ("${localEnv:}", ""),
            ("${CODESPACES:-false}", "${CODESPACES:-false}"),
            (
                "${LOCALENV:X} ${ localEnv:X } ${workspaceFolder}",
                "${LOCALENV:X} ${ localEnv:X } ${workspaceFolder}",
            ),
            ("$${localEnv:X} \\${localEnv:X}", "$x \\x"),
            ("${localEnv:EVIL}", "${localEnv:HOME}"),
            ("${localEnv:C}", "/bin"),
            (
                "${localWorkspaceFolder}|${localWorkspaceFolderBasename}",
                "/src/proj/|proj",
            ),
            ("${containerWorkspaceFolderBasename}", "proj"),
            ("${localWorkspaceFolder:ignored}", "/src/proj/"),
            ("${devcontainerId}-vol", "ID-vol"),
            ("${containerEnv:PATH}:${containerEnv:NONE:d}", "/bin:d"),
            ("${localEnv:X\n}", "${localEnv:X\n}"),
            (
                "${templateOption:imageVariant}",
                "${templateOption:imageVariant}",
            ),
            ("no vars", "no vars"),
            ("${unclosed", "${unclosed"),
        ];
        for (input, want) in table {
            let mut e = Vec::new();
            assert_eq!(substitute_str(input, &c, &mut e), want, "{input:?}");
            assert!(e.is_empty(), "{input:?}: {e:?}");
        }
    }

    #[test]
    fn evil_is_expanded_once_per_pass() {
        // pass 1 puts "${localEnv:HOME}" in; pass 1 does not rescan, and pass 2/3 do not know
        // localEnv, so it stays literal.
        let mut c = ctx();
        c.local_env
            .insert("EVIL".into(), "${localEnv:SECRET}".into());
        let mut e = Vec::new();
        assert_eq!(
            substitute_str("${localEnv:EVIL}", &c, &mut e),
            "${localEnv:SECRET}"
        );
    }

    #[test]
    fn missing_name_is_an_error_and_literal() {
        let mut e = Vec::new();
        assert_eq!(
            substitute_str("a ${localEnv} b ${env}", &ctx(), &mut e),
            "a ${localEnv} b ${env}"
        );
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().contains("no environment variable name"));
    }

    #[test]
    fn unknown_context_leaves_literal() {
        let c = SubstitutionContext::default();
        let mut e = Vec::new();
        let s = "${localWorkspaceFolder} ${devcontainerId} ${containerEnv:PATH} ${localEnv:HOME}";
        assert_eq!(
            substitute_str(s, &c, &mut e),
            "${localWorkspaceFolder} ${devcontainerId} ${containerEnv:PATH} "
        );
    }

    #[test]
    fn devcontainer_id_shape_and_order_independence() {
        let a: BTreeMap<String, String> = [
            ("devcontainer.local_folder", "/x"),
            (
                "devcontainer.config_file",
                "/x/.devcontainer/devcontainer.json",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let id = devcontainer_id_for_labels(&a);
        assert_eq!(id.len(), 52);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
        // the first digit holds only 1 bit of the hash
        assert!(matches!(id.as_bytes()[0], b'0' | b'1'));
        let empty = devcontainer_id_for_labels(&BTreeMap::new());
        assert_eq!(empty, known_empty_id());
    }

    /// Independent computation of the id of `{}` via u128 arithmetic on the hash.
    fn known_empty_id() -> String {
        let h = Sha256::digest(b"{}");
        let hi = u128::from_be_bytes(h[..16].try_into().unwrap());
        let lo = u128::from_be_bytes(h[16..].try_into().unwrap());
        // repeated division of the 256-bit number (hi, lo) by 32
        let (mut hi, mut lo) = (hi, lo);
        let mut digits = Vec::new();
        for _ in 0..52 {
            let r = lo & 31;
            lo = (lo >> 5) | ((hi & 31) << 123);
            hi >>= 5;
            digits.push(b"0123456789abcdefghijklmnopqrstuv"[usize::try_from(r).unwrap()]);
        }
        digits.reverse();
        String::from_utf8(digits).unwrap()
    }

    #[test]
    fn substitute_feature_resolves_devcontainer_id_in_mounts() {
        let p = crate::parse_feature(
            r#"{"id": "d", "mounts": [{"source": "dind-var-lib-docker-${devcontainerId}", "target": "/var/lib/docker", "type": "volume"}]}"#,
        );
        let s = substitute_feature(&p, &ctx());
        assert!(s.is_ok());
        assert_eq!(
            s.model.unwrap().mounts[0].source.as_deref(),
            Some("dind-var-lib-docker-ID")
        );
    }

    #[test]
    fn substitute_rebuilds_the_model() {
        let p = crate::parse_devcontainer(
            r#"{"image": "x", "mounts": ["source=${localEnv:HOME}/.ssh,target=/root/.ssh,type=bind"],
                "containerEnv": {"T": "${localEnv}"}}"#,
        );
        assert!(p.is_ok());
        let s = substitute(&p, &ctx());
        let m = s.model.as_ref().unwrap();
        assert_eq!(m.mounts[0].source.as_deref(), Some("/home/u/.ssh"));
        assert_eq!(m.mounts[0].pointer, "/mounts/0");
        let d = s.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pointer, "/containerEnv/T");
        assert_eq!(d[0].line, 2);
    }
}
