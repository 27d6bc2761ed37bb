//! Values that reach the container's environment (containerEnv, remoteEnv, build.args, recommended
//! secrets) and literal credentials anywhere in the file.

use std::collections::HashSet;

use super::super::credentials::{find_credentials, find_named_credential};
use super::super::environment::{dangerous_name, secret_name};
use super::super::{Emitter, RuleId, Severity};
use super::container::env_entry;
use super::{all_members, all_strings, quoted};
use crate::node::Node;

/// Where a map of variables goes and how bad forwarding a host secret there is: build args land
/// in the image history, containerEnv in `docker inspect`, remoteEnv only in tool processes.
const ENV_MAPS: &[(&str, &str, Severity)] = &[
    ("/build/args", "build.args", Severity::High),
    ("/containerEnv", "containerEnv", Severity::High),
    ("/remoteEnv", "remoteEnv", Severity::Medium),
];

/// Environment maps, recommended secrets, and credentials in every string.
pub(super) fn environment(root: &Node, out: &mut Emitter<'_>) {
    let mut named: HashSet<&str> = HashSet::new();
    for (pointer, place, severity) in ENV_MAPS {
        let Some(map) = root.resolve(pointer) else {
            continue;
        };
        for m in map.effective_members() {
            let value = m.value.as_str();
            // Build args are not environment variables at run time; their names are harmless.
            if *place != "build.args" {
                env_entry(&m.value, &m.key, value, place, *severity, out);
            } else if let Some(v) = value {
                env_entry_forwarding_only(&m.value, &m.key, v, *severity, out);
            }
            if let Some(v) = value {
                named.insert(&m.value.pointer);
                if let Some(hit) = find_named_credential(secret_name(&m.key), v) {
                    out.node(
                        RuleId::EmbeddedCredential,
                        Severity::Critical,
                        &m.value,
                        format!(
                            "{place} {} holds a literal {} ({})",
                            quoted(&m.key),
                            hit.kind.describe(),
                            hit.redacted
                        ),
                    );
                }
            }
        }
    }
    if let Some(secrets) = root.get("secrets") {
        for m in secrets.effective_members() {
            if let Some(reason) = dangerous_name(&m.key) {
                out.at(
                    RuleId::DangerousEnvironment,
                    Severity::Medium,
                    &m.value.pointer,
                    m.key_span.or(m.value.span),
                    format!(
                        "recommended secret {} becomes an environment variable: {reason}",
                        quoted(&m.key)
                    ),
                );
            }
        }
    }
    for m in all_members(root) {
        if let Some(hit) = find_credentials(&m.key).into_iter().next() {
            // The member's own pointer spells the key, which is the credential: point at the
            // object that holds it instead (the span still marks the key), so neither the
            // finding nor a message quoting its pointer repeats the secret.
            let holder = m
                .value
                .pointer
                .rfind('/')
                .map_or("", |i| &m.value.pointer[..i]);
            out.at(
                RuleId::EmbeddedCredential,
                Severity::Critical,
                &resolvable(root, holder),
                m.key_span.or(m.value.span),
                format!(
                    "literal {} used as a key ({})",
                    hit.kind.describe(),
                    hit.redacted
                ),
            );
        }
    }
    for (node, text) in all_strings(root) {
        // Credentials are rare: look for one before hashing the pointer.
        let Some(hit) = find_credentials(text).into_iter().next() else {
            continue;
        };
        if !named.contains(node.pointer.as_str()) {
            out.at(
                RuleId::EmbeddedCredential,
                Severity::Critical,
                &resolvable(root, &node.pointer),
                node.span,
                format!(
                    "literal {} in the file ({})",
                    hit.kind.describe(),
                    hit.redacted
                ),
            );
        }
    }
}

/// A value inside the shadowed (first) copy of a duplicated key has no pointer of its own: point
/// at the nearest ancestor that resolves (the duplicated key), keeping the value's own position.
fn resolvable(root: &Node, pointer: &str) -> String {
    let mut p = pointer;
    while root.resolve(p).is_none() {
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => return String::new(),
        }
    }
    p.to_string()
}

fn env_entry_forwarding_only(
    node: &Node,
    name: &str,
    value: &str,
    severity: Severity,
    out: &mut Emitter<'_>,
) {
    // Reuse the forwarding logic without the dangerous-name check.
    let mut scratch = Emitter::new(None);
    env_entry(
        node,
        name,
        Some(value),
        "build.args",
        severity,
        &mut scratch,
    );
    for f in scratch.finish() {
        if f.rule == RuleId::HostSecretForwarding {
            out.node(
                f.rule,
                f.severity,
                node,
                format!("{} (stored in the image history)", f.message),
            );
        }
    }
}
