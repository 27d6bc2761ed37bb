//! Features: where they come from, whether they are pinned, whether their options can inject
//! shell code, and what well-known and local features add behind the file's back.
//!
//! Pinning policy (decided here, documented in the README): a digest (`@sha256:..`) or a full
//! `MAJOR.MINOR.PATCH` tag is pinned. For the official collection (`ghcr.io/devcontainers/`) a
//! major or minor tag (`:1`, `:1.2`) is also accepted: that is the collection's documented usage
//! and its maintainers publish those tags with semver discipline. No tag or `latest` is never
//! pinned. Tarballs have no integrity check outside a lockfile, so they are never pinned.

use super::super::{AuditContext, Emitter, RuleId, Severity};
use super::quoted;
use crate::audit::credentials::find_credentials;
use crate::node::{Node, NodeValue};

/// Where a feature comes from, as far as trust goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `ghcr.io/devcontainers/...` or a legacy short id the CLI maps there.
    Official,
    /// Any other OCI registry or namespace (`registry/namespace`).
    ThirdParty(String),
    /// `https://.../devcontainer-feature-x.tgz` (`insecure` for `http://`).
    Tarball { insecure: bool },
    /// `./x`, `../x`.
    Local,
    /// Deprecated `owner/repo/id` GitHub release.
    GithubRelease,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pin {
    Digest,
    FullVersion,
    Partial(String),
    Latest,
    None,
}

/// Splits a feature key like the reference CLI does (lower-cased).
fn classify(key: &str) -> (Source, Pin, String) {
    let lower = key.trim().to_ascii_lowercase();
    if lower.starts_with("./") || lower.starts_with("../") || lower.starts_with('/') {
        return (Source::Local, Pin::None, id_of(&lower));
    }
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let insecure = lower.starts_with("http://");
        let file = lower.rsplit('/').next().unwrap_or_default();
        let id = file
            .strip_prefix("devcontainer-feature-")
            .and_then(|f| f.strip_suffix(".tgz"))
            .unwrap_or(file)
            .to_string();
        return (Source::Tarball { insecure }, Pin::None, id);
    }
    let (path, pin) = if let Some((path, _digest)) = lower.split_once('@') {
        (path.to_string(), Pin::Digest)
    } else {
        let last_slash = lower.rfind('/').unwrap_or(0);
        match lower[last_slash..].rfind(':') {
            Some(colon) => {
                let at = last_slash + colon;
                let tag = &lower[at + 1..];
                let pin = if tag == "latest" {
                    Pin::Latest
                } else if is_full_version(tag) {
                    Pin::FullVersion
                } else {
                    Pin::Partial(tag.to_string())
                };
                (lower[..at].to_string(), pin)
            }
            None => (lower.clone(), Pin::None),
        }
    };
    let id = id_of(&path);
    if !path.contains('/') {
        // Legacy short id: the CLI maps it to ghcr.io/devcontainers/features/<id>:1.
        return (Source::Official, Pin::Partial("1".into()), id);
    }
    let segments: Vec<&str> = path.split('/').collect();
    let source = if path.starts_with("ghcr.io/devcontainers/") {
        Source::Official
    } else if segments.len() == 3 && !segments[0].contains(['.', ':']) && segments[0] != "localhost"
    {
        Source::GithubRelease
    } else {
        Source::ThirdParty(segments[..segments.len() - 1].join("/"))
    };
    (source, pin, id)
}

fn id_of(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn is_full_version(tag: &str) -> bool {
    let core = tag.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Well-known features whose own metadata adds privileges.
const WELL_KNOWN: &[(&str, Severity, &str)] = &[
    ("docker-in-docker", Severity::High, "runs the container privileged (its metadata sets `privileged: true`) and starts a Docker daemon"),
    ("docker-outside-of-docker", Severity::Critical, "mounts the host's Docker socket into the container"),
    ("docker-from-docker", Severity::Critical, "mounts the host's Docker socket into the container"),
    ("sshd", Severity::Medium, "runs an SSH server in the container"),
    ("desktop-lite", Severity::Low, "runs a VNC/noVNC desktop server in the container"),
];

/// `features` of a devcontainer.json.
pub(super) fn features(root: &Node, ctx: &AuditContext, out: &mut Emitter<'_>) {
    let Some(features) = root.get("features") else {
        return;
    };
    for member in features.effective_members() {
        let node = &member.value;
        let key = member.key.as_str();
        let (source, pin, id) = classify(key);
        let at = |out: &mut Emitter<'_>, rule, severity, message: String| {
            out.at(
                rule,
                severity,
                &node.pointer,
                member.key_span.or(node.span),
                message,
            );
        };
        match &source {
            Source::Official => {}
            Source::ThirdParty(publisher) => at(
                out,
                RuleId::FeatureSource,
                Severity::Medium,
                format!(
                    "feature {} comes from third-party publisher {}",
                    quoted(key),
                    quoted(publisher)
                ),
            ),
            Source::Tarball { insecure } => at(
                out,
                RuleId::FeatureSource,
                if *insecure {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!(
                    "feature {} is a tarball downloaded from a URL{}",
                    quoted(key),
                    if *insecure { " over plain HTTP" } else { "" }
                ),
            ),
            Source::Local => {
                let audited = ctx.local_features.iter().any(|f| same_local(&f.key, key));
                at(
                    out,
                    RuleId::FeatureSource,
                    Severity::Low,
                    format!(
                        "local feature {} runs its install.sh as root at build time{}",
                        quoted(key),
                        if audited {
                            ""
                        } else {
                            " (its devcontainer-feature.json was not audited)"
                        }
                    ),
                );
            }
            Source::GithubRelease => at(
                out,
                RuleId::FeatureSource,
                Severity::Medium,
                format!(
                    "feature {} uses the deprecated GitHub-release form from a third party",
                    quoted(key)
                ),
            ),
        }
        let unpinned = match (&source, &pin) {
            (Source::Local, _) => None,
            (Source::Tarball { .. }, _) => Some("a tarball URL has no digest".to_string()),
            (_, Pin::None) => Some("has no version tag (means `latest`)".to_string()),
            (_, Pin::Latest) => Some("uses the `latest` tag".to_string()),
            (Source::Official, Pin::Partial(_)) => None,
            (_, Pin::Partial(tag)) => Some(format!("uses the moving tag {}", quoted(tag))),
            (_, Pin::Digest | Pin::FullVersion) => None,
        };
        if let Some(why) = unpinned {
            at(
                out,
                RuleId::FeatureUnpinned,
                Severity::Low,
                format!(
                    "feature {} is not pinned: {why}; pin a digest or a full version",
                    quoted(key)
                ),
            );
        }
        if let Some((_, severity, what)) = WELL_KNOWN.iter().find(|(name, _, _)| *name == id) {
            at(
                out,
                RuleId::FeatureImpliedPrivileges,
                *severity,
                format!("feature {} {what}", quoted(key)),
            );
        }
        options(key, node, out);
        // Metadata the caller read: a local feature's, or any other feature's it fetched.
        let metadata = ctx.local_features.iter().find(|f| match source {
            Source::Local => same_local(&f.key, key),
            _ => f.key == key,
        });
        if let Some(metadata) = metadata {
            let what = if source == Source::Local {
                "local feature"
            } else {
                "feature"
            };
            let span = member.key_span.or(node.span);
            feature_metadata(what, key, span, node, &metadata.metadata, out);
        }
    }
}

fn same_local(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Feature options: a bare string is `{"version": ..}`; object values are strings or booleans,
/// or anything else the CLI turns into its string form.
fn options(key: &str, node: &Node, out: &mut Emitter<'_>) {
    match &node.value {
        NodeValue::String(s) => option_value(key, "version", node, s, out),
        NodeValue::Object(_) => {
            for m in node.effective_members() {
                match &m.value.value {
                    NodeValue::String(s) => option_value(key, &m.key, &m.value, s, out),
                    // The CLI writes other values as their string form: audit that.
                    NodeValue::Array(_) | NodeValue::Object(_) | NodeValue::Number(_) => {
                        option_value(key, &m.key, &m.value, &m.value.js_string(), out);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Devcontainer variables the CLI substitutes before writing the env file; they are not shell.
const VARIABLE_PREFIXES: &[&str] = &[
    "${localEnv:",
    "${env:",
    "${containerEnv:",
    "${localWorkspaceFolder",
    "${containerWorkspaceFolder",
    "${devcontainerId}",
    "${templateOption:",
];

fn option_value(key: &str, option: &str, node: &Node, value: &str, out: &mut Emitter<'_>) {
    // Every dangerous needle below starts with one of these bytes, and removing variable
    // references only removes text: a value without any of them has nothing to report.
    if !value.bytes().any(|b| {
        matches!(
            b,
            b'"' | b'`' | b'$' | b'\\' | b';' | b'|' | b'&' | b'\n' | b'\r'
        )
    }) {
        return;
    }
    let mut text = value.to_string();
    for prefix in VARIABLE_PREFIXES {
        while let Some(start) = text.find(prefix) {
            let end = text[start..]
                .find('}')
                .map_or(text.len(), |e| start + e + 1);
            text.replace_range(start..end, "");
        }
    }
    let dangerous: Vec<&str> = [
        ("\"", "a double quote"),
        ("`", "a backtick"),
        ("$(", "`$(`"),
        ("${", "`${`"),
        ("\\", "a backslash"),
        (";", "`;`"),
        ("|", "`|`"),
        ("&", "`&`"),
        ("\n", "a newline"),
        ("\r", "a carriage return"),
    ]
    .iter()
    .filter(|(needle, _)| text.contains(needle))
    .map(|(_, name)| *name)
    .collect();
    if !dangerous.is_empty() {
        out.node(
            RuleId::FeatureOptionInjection,
            Severity::Critical,
            node,
            format!(
                "feature {} option {} contains {}, which breaks out of the quoted value in devcontainer-features.env (sourced by /bin/sh as root at build time)",
                quoted(key),
                quoted(option),
                dangerous.join(", ")
            ),
        );
    }
}

/// Rules whose findings in a feature's metadata describe what the feature adds to the container.
const ADDED_BY_FEATURE: &[RuleId] = &[
    RuleId::Privileged,
    RuleId::Capability,
    RuleId::UnconfinedSecurity,
    RuleId::ContainerSocketMount,
    RuleId::HostPathMount,
    RuleId::HostSecretForwarding,
    RuleId::LifecycleCommand,
    RuleId::DownloadAndExecute,
    RuleId::DangerousEnvironment,
    RuleId::EmbeddedCredential,
];

/// Audits a feature's metadata and reports what it adds at the feature's key, including the
/// well-known features its `dependsOn` installs (the CLI installs them too and merges their
/// metadata, so a dependency on docker-in-docker makes the container privileged).
fn feature_metadata(
    what: &str,
    key: &str,
    span: Option<crate::span::Span>,
    node: &Node,
    metadata: &Node,
    out: &mut Emitter<'_>,
) {
    let mut inner = Emitter::new(None);
    // No duplicate keys passed: duplicate-key findings are not among ADDED_BY_FEATURE.
    super::feature_file(metadata, &[], &[], &mut inner);
    for finding in inner.finish() {
        if !ADDED_BY_FEATURE.contains(&finding.rule) {
            continue;
        }
        out.at(
            finding.rule,
            finding.severity,
            &node.pointer,
            span,
            format!(
                "{what} {} adds: {} (devcontainer-feature.json {})",
                quoted(key),
                finding.message,
                quoted_pointer(&finding.pointer)
            ),
        );
    }
    let Some(deps) = metadata.get("dependsOn") else {
        return;
    };
    for dep in deps.effective_members() {
        let (_, _, id) = classify(&dep.key);
        if let Some((_, severity, adds)) = WELL_KNOWN.iter().find(|(name, _, _)| *name == id) {
            out.at(
                RuleId::FeatureImpliedPrivileges,
                *severity,
                &node.pointer,
                span,
                format!(
                    "{what} {} depends on {} (devcontainer-feature.json `dependsOn`), which {adds}",
                    quoted(key),
                    quoted(&dep.key)
                ),
            );
        }
    }
}

/// The feature file's pointer as quoted in a message: a segment that holds a credential (a token
/// used as a key) is shown redacted, because messages never repeat a secret.
fn quoted_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        return "/".to_owned();
    }
    pointer
        .split('/')
        .map(
            |segment| match find_credentials(segment).into_iter().next() {
                Some(hit) => hit.redacted,
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_classification() {
        let cases = [
            (
                "ghcr.io/devcontainers/features/node:1",
                Source::Official,
                Pin::Partial("1".into()),
            ),
            (
                "GHCR.IO/devcontainers/features/node",
                Source::Official,
                Pin::None,
            ),
            (
                "ghcr.io/devcontainers/features/go@sha256:abc",
                Source::Official,
                Pin::Digest,
            ),
            ("git-lfs", Source::Official, Pin::Partial("1".into())),
            (
                "ghcr.io/devcontainers-contrib/features/x:1",
                Source::ThirdParty("ghcr.io/devcontainers-contrib/features".into()),
                Pin::Partial("1".into()),
            ),
            (
                "ghcr.io/evil/f/x:latest",
                Source::ThirdParty("ghcr.io/evil/f".into()),
                Pin::Latest,
            ),
            (
                "ghcr.io:8081/a/b/c:1.2.3",
                Source::ThirdParty("ghcr.io:8081/a/b".into()),
                Pin::FullVersion,
            ),
            (
                "https://x.example/devcontainer-feature-y.tgz",
                Source::Tarball { insecure: false },
                Pin::None,
            ),
            (
                "http://x.example/devcontainer-feature-y.tgz",
                Source::Tarball { insecure: true },
                Pin::None,
            ),
            ("./local", Source::Local, Pin::None),
            ("owner/repo/id", Source::GithubRelease, Pin::None),
        ];
        for (key, source, pin) in cases {
            let (s, p, _) = classify(key);
            assert_eq!((s, p), (source, pin), "{key}");
        }
        assert_eq!(
            classify("ghcr.io/devcontainers/features/docker-in-docker:2").2,
            "docker-in-docker"
        );
        assert!(
            is_full_version("1.2.3-rc.1") && !is_full_version("1.2") && !is_full_version("v1.2.3")
        );
    }
}
