//! Feature references (`features` keys) and their options (`features` values).
//!
//! How the reference CLI reads a key (reference notes §3.1):
//!
//! ```text
//! "./x", "../x"                    → Local path (relative to the config folder)
//! "/x"                             → error (absolute paths are rejected)
//! "https://…/devcontainer-feature-<id>.tgz" → Tarball (no pinning possible)
//! "http://…"                       → error (not recognised as a tarball)
//! "git-lfs" (no '/')               → Legacy short id, auto-mapped to ghcr.io/devcontainers/features
//! "registry/namespace…/id[:tag|@sha256:…]" → OCI reference (lower-cased; no tag = "latest")
//! "owner/repo/id[@tag]" (first part not a host) → deprecated GitHub release
//! ```
//!
//! Values: an object of options (`string` or `boolean` each), a string (shorthand for
//! `{"version": …}`), or a boolean.

use crate::error::{located, ErrorSink};
use crate::node::{Node, NodeValue};
use crate::span::Located;

/// The legacy short ids the CLI maps to `ghcr.io/devcontainers/features/<id>:1`
/// (`golang`→`go`, `common`→`common-utils`, `gradle`/`maven`→`java`, `jupyterlab`→`python`).
const LEGACY_IDS: &[(&str, &str)] = &[
    ("aws-cli", "aws-cli"),
    ("azure-cli", "azure-cli"),
    ("common", "common-utils"),
    ("desktop-lite", "desktop-lite"),
    ("docker-from-docker", "docker-outside-of-docker"),
    ("docker-in-docker", "docker-in-docker"),
    ("dotnet", "dotnet"),
    ("git", "git"),
    ("git-lfs", "git-lfs"),
    ("github-cli", "github-cli"),
    ("golang", "go"),
    ("gradle", "java"),
    ("java", "java"),
    ("jupyterlab", "python"),
    ("kubectl-helm-minikube", "kubectl-helm-minikube"),
    ("maven", "java"),
    ("node", "node"),
    ("powershell", "powershell"),
    ("python", "python"),
    ("ruby", "ruby"),
    ("rust", "rust"),
    ("sshd", "sshd"),
    ("terraform", "terraform"),
];

/// Where a feature comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeatureRef {
    /// An OCI artifact.
    Oci(OciRef),
    /// A folder next to the config (`./x`, `../x`).
    Local {
        /// The path as written.
        path: String,
    },
    /// An `https://` tarball.
    Tarball {
        /// The URL.
        url: String,
        /// The id from the file name `devcontainer-feature-<id>.tgz`.
        id: String,
    },
    /// A short id without `/`, auto-mapped by the CLI.
    Legacy {
        /// The id as written (lower-cased).
        id: String,
        /// The OCI reference it is mapped to.
        mapped_to: OciRef,
    },
    /// Deprecated `owner/repo/id[@tag]` GitHub-release form.
    GithubRelease {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
        /// Feature id.
        id: String,
        /// Release tag, if any.
        tag: Option<String>,
    },
}

/// A parsed OCI reference, canonicalised like the CLI (lower case, `devcontainers-contrib`
/// rewritten to `devcontainers-extra`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciRef {
    /// `ghcr.io`, `ghcr.io:8081`, ...
    pub registry: String,
    /// Path between registry and id (`devcontainers/features`).
    pub namespace: String,
    /// Feature id (last path segment).
    pub id: String,
    /// Tag or digest.
    pub version: OciVersion,
}

/// Which version of an OCI feature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OciVersion {
    /// No tag: `latest`.
    Untagged,
    /// `:tag` (e.g. `1`, `1.2`, `latest`).
    Tag(String),
    /// `@sha256:…`: pinned by content.
    Digest(String),
}

impl OciRef {
    /// `registry/namespace/id` without version.
    #[must_use]
    pub fn resource(&self) -> String {
        format!("{}/{}/{}", self.registry, self.namespace, self.id)
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.resource())?;
        match &self.version {
            OciVersion::Untagged => Ok(()),
            OciVersion::Tag(t) => write!(f, ":{t}"),
            OciVersion::Digest(d) => write!(f, "@{d}"),
        }
    }
}

fn is_path_component(s: &str) -> bool {
    // ^[a-z0-9]+([._-][a-z0-9]+)*$
    !s.is_empty()
        && s.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn is_tag(s: &str) -> bool {
    // ^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn looks_like_registry(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

impl FeatureRef {
    /// Classify and parse a `features` key.
    ///
    /// # Errors
    /// A message naming what is wrong and which forms are accepted.
    pub fn parse(key: &str) -> Result<Self, String> {
        if key.starts_with("./") || key.starts_with("../") {
            return Ok(Self::Local {
                path: key.to_owned(),
            });
        }
        if key.starts_with('/') || key.starts_with('\\') {
            return Err(format!(
                "feature {key:?}: absolute paths are rejected; use a path relative to the config folder (\"./name\")"
            ));
        }
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("https://") {
            let file = key.rsplit('/').next().unwrap_or_default();
            let id = file
                .strip_prefix("devcontainer-feature-")
                .and_then(|f| f.strip_suffix(".tgz"))
                .filter(|id| {
                    !id.is_empty()
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
                });
            return match id {
                Some(id) => Ok(Self::Tarball {
                    url: key.to_owned(),
                    id: id.to_owned(),
                }),
                None => Err(format!(
                    "feature {key:?}: a tarball URL must end in \"devcontainer-feature-<id>.tgz\""
                )),
            };
        }
        if lower.contains("://") {
            return Err(format!(
                "feature {key:?}: only https:// tarball URLs are supported"
            ));
        }
        if !key.contains('/') {
            if let Some((_, mapped)) = LEGACY_IDS.iter().find(|(id, _)| *id == lower) {
                return Ok(Self::Legacy {
                    id: lower.clone(),
                    mapped_to: OciRef {
                        registry: "ghcr.io".to_owned(),
                        namespace: "devcontainers/features".to_owned(),
                        id: (*mapped).to_owned(),
                        version: OciVersion::Tag("1".to_owned()),
                    },
                });
            }
            return Err(format!(
                "feature {key:?}: legacy short ids are only supported for the CLI's fixed list (e.g. \"git-lfs\", \"sshd\"); use \"ghcr.io/<owner>/<repo>/<id>:<version>\""
            ));
        }
        let first = lower.split('/').next().unwrap_or_default();
        if !looks_like_registry(first) {
            return Self::parse_github_release(key);
        }
        parse_oci(&lower)
            .map(Self::Oci)
            .map_err(|why| format!("feature {key:?} is not a valid OCI reference: {why}"))
    }

    fn parse_github_release(key: &str) -> Result<Self, String> {
        let (path, tag) = match key.split_once('@') {
            Some((p, t)) => (p, Some(t.to_owned())),
            None => (key, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [owner, repo, id] if !owner.is_empty() && !repo.is_empty() && !id.is_empty() => {
                Ok(Self::GithubRelease {
                    owner: (*owner).to_owned(),
                    repo: (*repo).to_owned(),
                    id: (*id).to_owned(),
                    tag,
                })
            }
            _ => Err(format!(
                "feature {key:?}: expected \"registry/namespace/id[:tag]\" (e.g. \"ghcr.io/devcontainers/features/node:1\"), \"./local-path\" or an https tarball URL"
            )),
        }
    }
}

fn parse_oci(lower: &str) -> Result<OciRef, String> {
    if lower.starts_with('.') {
        return Err("it starts with '.'".to_owned());
    }
    let (rest, digest) = match lower.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (lower, None),
    };
    let (registry, path) = rest
        .split_once('/')
        .ok_or_else(|| "missing '/' after the registry".to_owned())?;
    let (path, tag) = match path.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (path, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 {
        return Err("expected registry/namespace/id".to_owned());
    }
    if !segments.iter().all(|s| is_path_component(s)) {
        return Err("path segments must be lower-case letters and digits separated by '.', '_' or '-' (no empty segments)".to_owned());
    }
    let version = match (tag, digest) {
        (Some(_), Some(_)) => return Err("both a tag and a digest".to_owned()),
        (Some(t), None) if is_tag(t) => OciVersion::Tag(t.to_owned()),
        (Some(t), None) => return Err(format!("tag {t:?} is invalid")),
        (None, Some(d)) => match d.split_once(':') {
            Some(("sha256", body)) if !body.is_empty() => OciVersion::Digest(d.to_owned()),
            _ => return Err(format!("digest {d:?} must be \"sha256:<hex>\"")),
        },
        (None, None) => OciVersion::Untagged,
    };
    let (id, namespace) = segments
        .split_last()
        .map(|(id, ns)| ((*id).to_owned(), ns.join("/")))
        .ok_or_else(|| "empty path".to_owned())?;
    let namespace = match namespace.strip_prefix("devcontainers-contrib") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            format!("devcontainers-extra{rest}")
        }
        _ => namespace,
    };
    Ok(OciRef {
        registry: registry.to_owned(),
        namespace,
        id,
        version,
    })
}

/// One option value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionValue {
    /// A string option.
    String(String),
    /// A boolean option.
    Bool(bool),
}

/// The value of a `features` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeatureOptions {
    /// An object of options.
    Options(Vec<(Located<String>, Located<OptionValue>)>),
    /// A string: shorthand for `{"version": …}`.
    Version(Located<String>),
    /// A boolean (install with defaults).
    Enabled(bool),
}

/// One `features` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The key as written, located at the key.
    pub key: Located<String>,
    /// The parsed reference.
    pub reference: FeatureRef,
    /// The options.
    pub options: Located<FeatureOptions>,
}

/// Parse a feature value.
pub fn parse_feature_options(
    node: &Node,
    property: &str,
    errors: &mut ErrorSink,
) -> Option<FeatureOptions> {
    match &node.value {
        NodeValue::String(s) => Some(FeatureOptions::Version(located(node, s.clone()))),
        NodeValue::Bool(b) => Some(FeatureOptions::Enabled(*b)),
        NodeValue::Object(_) => {
            let mut opts = Vec::new();
            for m in node.effective_members() {
                let key = Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span);
                let value = match &m.value.value {
                    NodeValue::String(s) => OptionValue::String(s.clone()),
                    NodeValue::Bool(b) => OptionValue::Bool(*b),
                    // The CLI interpolates any other value into the env file as its string
                    // form (`["a", "b"]` is `a,b`); real files write arrays (jellyfin).
                    _ => OptionValue::String(m.value.js_string()),
                };
                opts.push((key, located(&m.value, value)));
            }
            Some(FeatureOptions::Options(opts))
        }
        _ => {
            errors.wrong_type(
                node,
                property,
                "an object of options, a version string, or a boolean",
            );
            None
        }
    }
}

/// Parse a `features` object.
pub fn parse_features(node: &Node, property: &str, errors: &mut ErrorSink) -> Vec<Feature> {
    if node.members().is_none() {
        errors.wrong_type(node, property, "an object keyed by feature id");
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in node.effective_members() {
        let key = Located::new(m.key.clone(), m.value.pointer.clone(), m.key_span);
        let reference = match FeatureRef::parse(&m.key) {
            Ok(r) => r,
            Err(msg) => {
                errors.invalid(&m.value, property, msg);
                continue;
            }
        };
        let prop = format!("{property}.{}", m.key);
        if let Some(options) = parse_feature_options(&m.value, &prop, errors) {
            out.push(Feature {
                key,
                reference,
                options: located(&m.value, options),
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn oci(key: &str) -> OciRef {
        match FeatureRef::parse(key).unwrap() {
            FeatureRef::Oci(o) => o,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn oci_refs() {
        let o = oci("ghcr.io/devcontainers/features/node:1");
        assert_eq!(
            (o.registry.as_str(), o.namespace.as_str(), o.id.as_str()),
            ("ghcr.io", "devcontainers/features", "node")
        );
        assert_eq!(o.version, OciVersion::Tag("1".into()));
        assert_eq!(o.to_string(), "ghcr.io/devcontainers/features/node:1");
        let o = oci("GHCR.IO/User/Repo/Go");
        assert_eq!(o.to_string(), "ghcr.io/user/repo/go");
        assert_eq!(o.version, OciVersion::Untagged);
        let o = oci("ghcr.io:8081/x/y/z:latest");
        assert_eq!(o.registry, "ghcr.io:8081");
        let o = oci("ghcr.io/x/y/z@sha256:abc");
        assert_eq!(o.version, OciVersion::Digest("sha256:abc".into()));
        let o = oci("ghcr.io/devcontainers-contrib/features/bun:1");
        assert_eq!(o.namespace, "devcontainers-extra/features");
        for bad in [
            "ghcr.io//x/y",
            "ghcr.io/x/y/z@md5:abc",
            "ghcr.io/x",
            "ghcr.io/x/y:b@d",
            "ghcr.io/x/y:-t",
            ".ghcr.io/x/y",
        ] {
            assert!(FeatureRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_kinds() {
        assert!(matches!(
            FeatureRef::parse("./local").unwrap(),
            FeatureRef::Local { .. }
        ));
        assert!(matches!(
            FeatureRef::parse("../x").unwrap(),
            FeatureRef::Local { .. }
        ));
        assert!(FeatureRef::parse("/abs").is_err());
        assert_eq!(
            FeatureRef::parse("https://evil.example/devcontainer-feature-x.tgz").unwrap(),
            FeatureRef::Tarball {
                url: "https://evil.example/devcontainer-feature-x.tgz".into(),
                id: "x".into()
            }
        );
        assert!(FeatureRef::parse("https://x.example/feature.tgz").is_err());
        assert!(FeatureRef::parse("http://x.example/devcontainer-feature-x.tgz").is_err());
        let FeatureRef::Legacy { mapped_to, .. } = FeatureRef::parse("golang").unwrap() else {
            panic!()
        };
        assert_eq!(mapped_to.to_string(), "ghcr.io/devcontainers/features/go:1");
        assert!(FeatureRef::parse("not-a-legacy-id").is_err());
        assert!(matches!(
            FeatureRef::parse("owner/repo/id@v1").unwrap(),
            FeatureRef::GithubRelease { tag: Some(_), .. }
        ));
        assert!(FeatureRef::parse("owner/id").is_err());
    }

    #[test]
    fn option_values() {
        let n = Node::from_json_value(&serde_json::json!({
            "ghcr.io/a/b/c:1": {"version": "1", "x": true, "n": 3, "list": ["a", null, "b"]},
            "ghcr.io/a/b/d": "latest",
            "ghcr.io/a/b/e": false,
            "ghcr.io/a/b/f": 1,
            "bogus": {}
        }));
        let mut e = ErrorSink::new();
        let f = parse_features(&n, "features", &mut e);
        assert_eq!(f.len(), 3);
        assert_eq!(e.len(), 2);
        let FeatureOptions::Options(o) = &f[0].options.value else {
            panic!()
        };
        assert_eq!(o.len(), 4);
        assert_eq!(o[1].1.pointer, "/ghcr.io~1a~1b~1c:1/x");
        // Other types are what the CLI writes into the env file: their string form.
        assert_eq!(o[2].1.value, OptionValue::String("3".into()));
        assert_eq!(o[3].1.value, OptionValue::String("a,,b".into()));
    }
}
