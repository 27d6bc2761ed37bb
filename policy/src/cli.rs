//! The JSON contracts of `codespace-agentctl policy <topic>` (issue 3, "CLI contracts").
//!
//! Each topic reads one JSON object and answers one JSON object. The binary only does the I/O:
//! it hands the text to [`run`] and prints the value, exiting 0 for any decision (allow or deny
//! alike) and 2 for a [`CliError`], whose message names each bad field by JSON pointer.
//!
//! Reading is strict (see [`crate::input`]): duplicate keys, unknown fields and missing fields
//! are errors; every listed field is required, `null` only where the contract allows it.
//! Facts that arrive from a devcontainer.json (`requested` permissions and extension entries)
//! are *decided on* (denied, refused), not rejected as invalid input, except where their shape
//! is not the documented one.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::document::OrgPolicy;
use crate::extensions;
use crate::grant::{self, PullRequest, RequestTarget, RequestedEntry, TokenRequest};
use crate::input::{
    self, array, boolean, child_index, child_key, integer, nullable, one_of, string, Field,
    FieldError, InputErrors, Obj,
};
use crate::lifecycle::Trust;
use crate::lifecycle::{self, LifecycleFacts};
use crate::ports::{self, CodespaceIdentity, PortDenyReason, Principal, Visibility};
use crate::registry::{self, PortEvent, PortEventRejection};
use crate::repo::{AccessLevel, RepoName};
use crate::secrets::{self, InjectionFacts, SecretLevel, SecretMeta};

/// A `policy` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// `token-scope`
    TokenScope,
    /// `port-access`
    PortAccess,
    /// `port-replay`
    PortReplay,
    /// `secrets`
    Secrets,
    /// `extensions`
    Extensions,
    /// `lifecycle`
    Lifecycle,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 6] = [
        Topic::TokenScope,
        Topic::PortAccess,
        Topic::PortReplay,
        Topic::Secrets,
        Topic::Extensions,
        Topic::Lifecycle,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::TokenScope => "token-scope",
            Topic::PortAccess => "port-access",
            Topic::PortReplay => "port-replay",
            Topic::Secrets => "secrets",
            Topic::Extensions => "extensions",
            Topic::Lifecycle => "lifecycle",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Invalid input to a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Not JSON.
    #[error("input is not valid JSON: {0}")]
    Syntax(#[from] input::SyntaxError),
    /// JSON, but not the topic's input.
    #[error("invalid input:\n{0}")]
    Invalid(#[from] InputErrors),
}

/// Runs one topic on the input text and returns the output object.
pub fn run(topic: Topic, text: &str) -> Result<Value, CliError> {
    let value = input::parse_json(text)?;
    let mut errs = Vec::new();
    let out = match topic {
        Topic::TokenScope => token_scope(&value, &mut errs),
        Topic::PortAccess => port_access(&value, &mut errs),
        Topic::PortReplay => port_replay(&value, &mut errs),
        Topic::Secrets => secrets(&value, &mut errs),
        Topic::Extensions => extensions(&value, &mut errs),
        Topic::Lifecycle => lifecycle(&value, &mut errs),
    };
    match out {
        Some(out) if errs.is_empty() => Ok(out),
        _ => {
            if errs.is_empty() {
                errs.push(FieldError::new("", "invalid input"));
            }
            Err(CliError::Invalid(InputErrors(errs)))
        }
    }
}

fn to_value<T: Serialize>(value: &T, errs: &mut Vec<FieldError>) -> Option<Value> {
    match serde_json::to_value(value) {
        Ok(v) => Some(v),
        Err(err) => {
            errs.push(FieldError::new("", format!("cannot encode output: {err}")));
            None
        }
    }
}

/// Reads a required field with `read`.
fn req<'a, T>(
    obj: &mut Obj<'a>,
    key: &'static str,
    errs: &mut Vec<FieldError>,
    read: impl FnOnce(Field<'_>, &mut Vec<FieldError>) -> Option<T>,
) -> Option<T> {
    let (v, p) = obj.required(key, errs)?;
    read(Field::new(v, &p), errs)
}

fn owned_string(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<String> {
    string(field, errs).map(str::to_owned)
}

fn repo_name(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<RepoName> {
    let text = string(field, errs)?;
    match RepoName::parse(text) {
        Ok(repo) => Some(repo),
        Err(err) => {
            errs.push(FieldError::new(field.pointer, err.to_string()));
            None
        }
    }
}

fn access_level(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<AccessLevel> {
    let choices: Vec<(&str, AccessLevel)> = AccessLevel::ALL
        .into_iter()
        .map(|l| (l.as_str(), l))
        .collect();
    one_of(field, &choices, errs)
}

fn org_policy(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<Option<OrgPolicy>> {
    nullable(field, errs, |f, errs| {
        OrgPolicy::read(f.value, f.pointer, errs)
    })
}

fn visibility(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<Visibility> {
    let choices: Vec<(&str, Visibility)> = Visibility::ALL
        .into_iter()
        .map(|v| (v.as_str(), v))
        .collect();
    one_of(field, &choices, errs)
}

fn timestamp(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<OffsetDateTime> {
    let text = string(field, errs)?;
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => Some(t),
        Err(err) => {
            errs.push(FieldError::new(
                field.pointer,
                format!("expected an RFC 3339 time with a zone (e.g. 2026-01-01T12:00:00Z), found {text:?}: {err}"),
            ));
            None
        }
    }
}

fn access_map(
    field: Field<'_>,
    errs: &mut Vec<FieldError>,
) -> Option<BTreeMap<RepoName, AccessLevel>> {
    let Value::Object(map) = field.value else {
        errs.push(FieldError::new(
            field.pointer,
            format!(
                "expected an object of \"owner/name\": access level, found {}",
                input::kind(field.value)
            ),
        ));
        return None;
    };
    let mut out = BTreeMap::new();
    for (key, v) in map {
        let p = child_key(field.pointer, key);
        let repo = match RepoName::parse(key) {
            Ok(repo) => repo,
            Err(err) => {
                errs.push(FieldError::new(&p, err.to_string()));
                continue;
            }
        };
        let Some(level) = access_level(Field::new(v, &p), errs) else {
            continue;
        };
        if out.contains_key(&repo) {
            errs.push(FieldError::new(
                &p,
                format!("{key:?} is listed twice (repository names compare case-insensitively)"),
            ));
            continue;
        }
        out.insert(repo, level);
    }
    Some(out)
}

fn pull_request(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<PullRequest> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let head = req(&mut obj, "head", errs, repo_name);
    let base = req(&mut obj, "base", errs, repo_name);
    let base_private = req(&mut obj, "base_private", errs, boolean);
    obj.finish(errs);
    Some(PullRequest {
        head: head?,
        base: base?,
        base_private: base_private?,
    })
}

fn requested(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<Vec<RequestedEntry>> {
    let Value::Object(map) = field.value else {
        errs.push(FieldError::new(
            field.pointer,
            format!(
                "expected null or an object of \"owner/name\": {{\"permissions\": ...}}, found {}",
                input::kind(field.value)
            ),
        ));
        return None;
    };
    let mut out = Vec::new();
    for (key, v) in map {
        let p = child_key(field.pointer, key);
        let target = match codespace_devcontainer::repositories::parse_pattern(key) {
            Err(err) => {
                errs.push(FieldError::new(&p, err.to_string()));
                continue;
            }
            Ok(pattern) => match pattern.repo {
                codespace_devcontainer::RepoSelector::Named(_) => match RepoName::parse(key) {
                    Ok(repo) => RequestTarget::Repo(repo),
                    Err(err) => {
                        errs.push(FieldError::new(&p, err.to_string()));
                        continue;
                    }
                },
                _ if crate::repo::is_valid_owner(&pattern.owner) => {
                    RequestTarget::Owner(pattern.owner)
                }
                _ => {
                    errs.push(FieldError::new(
                        &p,
                        format!("invalid owner {:?}", pattern.owner),
                    ));
                    continue;
                }
            },
        };
        let Some(mut entry) = Obj::new(v, &p, errs) else {
            continue;
        };
        let permissions = entry.required("permissions", errs);
        entry.finish(errs);
        let Some((perms, pp)) = permissions else {
            continue;
        };
        let permissions = match perms {
            Value::String(s) => RequestedEntry::from_shorthand(s),
            Value::Object(pairs) => pairs
                .iter()
                .map(|(name, level)| RequestedEntry::from_pair(name, level))
                .collect(),
            other => {
                errs.push(FieldError::new(pp, format!("expected \"read-all\", \"write-all\" or an object of permission levels, found {}", input::kind(other))));
                continue;
            }
        };
        out.push(RequestedEntry {
            key: key.clone(),
            target,
            permissions,
        });
    }
    Some(out)
}

fn token_scope(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let repository = req(&mut obj, "repository", errs, repo_name);
    let access = req(&mut obj, "access", errs, access_map);
    let pr = req(&mut obj, "pull_request", errs, |f, e| {
        nullable(f, e, pull_request)
    });
    let fork = req(&mut obj, "fork", errs, |f, e| nullable(f, e, repo_name));
    let requested = req(&mut obj, "requested", errs, |f, e| {
        nullable(f, e, requested)
    });
    let authorized = req(&mut obj, "authorized", errs, boolean);
    let prebuild = req(&mut obj, "prebuild", errs, boolean);
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    obj.finish(errs);
    let repository = repository?;
    if let Some(Some(pr)) = &pr {
        if pr.head != repository {
            errs.push(FieldError::new(
                "/pull_request/head",
                format!("the codespace is for the pull request's head, so head must equal repository {:?}", repository.as_str()),
            ));
        }
    }
    let policy = policy?;
    let request = TokenRequest {
        repository,
        access: access?,
        pull_request: pr?,
        fork: fork?,
        requested: requested?.unwrap_or_default(),
        authorized: authorized?,
        prebuild: prebuild?,
        policy: policy.as_ref(),
    };
    to_value(&grant::token_scope(&request), errs)
}

fn principal(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<Principal> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let login = req(&mut obj, "login", errs, owned_string);
    let organizations = req(&mut obj, "organizations", errs, |f, e| {
        let items = array(f, e)?;
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let p = child_index(f.pointer, i);
            if let Some(org) = owned_string(Field::new(v, &p), e) {
                out.push(org);
            }
        }
        (out.len() == items.len()).then_some(out)
    });
    let authenticated_at = req(&mut obj, "authenticated_at", errs, timestamp);
    obj.finish(errs);
    Some(Principal {
        login: login?,
        organizations: organizations?,
        authenticated_at: authenticated_at?,
    })
}

fn codespace(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<CodespaceIdentity> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let owner = req(&mut obj, "owner", errs, owned_string);
    let organization = req(&mut obj, "organization", errs, |f, e| {
        nullable(f, e, owned_string)
    });
    obj.finish(errs);
    Some(CodespaceIdentity {
        owner: owner?,
        organization: organization?,
    })
}

#[derive(Serialize)]
struct PortAccessOut {
    decision: &'static str,
    effective_visibility: Visibility,
    reason: Option<PortDenyReason>,
}

fn port_access(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let codespace = req(&mut obj, "codespace", errs, codespace);
    let visibility = req(&mut obj, "visibility", errs, visibility);
    let principal = req(&mut obj, "principal", errs, |f, e| {
        nullable(f, e, principal)
    });
    let now = req(&mut obj, "now", errs, timestamp);
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    obj.finish(errs);
    let allowed = policy?
        .map(|p| p.allowed_visibilities())
        .unwrap_or_default();
    let access = ports::port_access(&codespace?, visibility?, principal?.as_ref(), now?, allowed);
    let out = PortAccessOut {
        decision: if access.decision.is_allow() {
            "allow"
        } else {
            "deny"
        },
        effective_visibility: access.effective_visibility,
        reason: access.decision.reason().copied(),
    };
    to_value(&out, errs)
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Remove,
    SetVisibility,
    Restart,
    Policy,
}

fn port_event(field: Field<'_>, errs: &mut Vec<FieldError>) -> Option<PortEvent> {
    let mut obj = Obj::new(field.value, field.pointer, errs)?;
    let ops = [
        ("add", Op::Add),
        ("remove", Op::Remove),
        ("set_visibility", Op::SetVisibility),
        ("restart", Op::Restart),
        ("policy", Op::Policy),
    ];
    // An unknown op: stop here rather than also report its other fields as unknown.
    let op = req(&mut obj, "op", errs, |f, e| one_of(f, &ops, e))?;
    let event = match op {
        Op::Add => req(&mut obj, "port", errs, integer).map(PortEvent::Add),
        Op::Remove => req(&mut obj, "port", errs, integer).map(PortEvent::Remove),
        Op::SetVisibility => {
            let port = req(&mut obj, "port", errs, integer);
            let vis = req(&mut obj, "visibility", errs, visibility);
            port.zip(vis).map(|(p, v)| PortEvent::SetVisibility(p, v))
        }
        Op::Restart => Some(PortEvent::Restart),
        Op::Policy => req(&mut obj, "org_policy", errs, org_policy)
            .map(|p| PortEvent::Policy(p.map(|p| p.allowed_visibilities()).unwrap_or_default())),
    };
    obj.finish(errs);
    event
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    reason: PortEventRejection,
}

#[derive(Serialize)]
struct ReplayOut {
    ports: BTreeMap<u16, Visibility>,
    rejected: Vec<Rejected>,
}

fn port_replay(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    let events = req(&mut obj, "events", errs, |f, e| {
        let items = array(f, e)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            let p = child_index(f.pointer, i);
            match port_event(Field::new(v, &p), e) {
                Some(event) => out.push(event),
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    obj.finish(errs);
    let allowed = policy?
        .map(|p| p.allowed_visibilities())
        .unwrap_or_default();
    let (registry, rejected) = registry::replay(allowed, &events?);
    let out = ReplayOut {
        ports: registry.visibilities(),
        rejected: rejected
            .into_iter()
            .map(|(index, reason)| Rejected { index, reason })
            .collect(),
    };
    to_value(&out, errs)
}

fn secret_level(
    field: Field<'_>,
    level: SecretLevel,
    errs: &mut Vec<FieldError>,
) -> Option<Vec<SecretMeta>> {
    let Value::Object(map) = field.value else {
        errs.push(FieldError::new(
            field.pointer,
            format!(
                "expected an object of name: value, found {}",
                input::kind(field.value)
            ),
        ));
        return None;
    };
    let mut out = Vec::new();
    for (name, v) in map {
        let p = child_key(field.pointer, name);
        // Never echo the value: only its type is named.
        if let Some(value) = string(Field::new(v, &p), errs) {
            out.push(SecretMeta {
                level,
                name: name.clone(),
                size: value.len(),
            });
        }
    }
    Some(out)
}

fn secrets(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let creator_access = req(&mut obj, "creator_access", errs, access_level);
    let fork = req(&mut obj, "pull_request_from_fork", errs, boolean);
    let prebuild = req(&mut obj, "prebuild", errs, boolean);
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    let user = req(&mut obj, "user", errs, |f, e| {
        secret_level(f, SecretLevel::User, e)
    });
    let repository = req(&mut obj, "repository", errs, |f, e| {
        secret_level(f, SecretLevel::Repository, e)
    });
    let organization = req(&mut obj, "organization", errs, |f, e| {
        secret_level(f, SecretLevel::Organization, e)
    });
    obj.finish(errs);
    let facts = InjectionFacts {
        creator_access: creator_access?,
        pull_request_from_fork: fork?,
        prebuild: prebuild?,
    };
    let policy = policy?;
    let mut all = user?;
    all.extend(repository?);
    all.extend(organization?);
    let deny = policy
        .as_ref()
        .map(|p| p.deny_names().to_vec())
        .unwrap_or_default();
    to_value(&secrets::select(&all, &facts, &deny), errs)
}

fn extensions(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    let trust = req(&mut obj, "trust", errs, |f, e| {
        one_of(
            f,
            &[
                ("trusted", Trust::Trusted),
                ("restricted", Trust::Restricted),
            ],
            e,
        )
    });
    let requested = req(&mut obj, "requested", errs, |f, e| {
        let items = array(f, e)?;
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let p = child_index(f.pointer, i);
            if let Some(s) = string(Field::new(v, &p), e) {
                out.push(s.to_owned());
            }
        }
        Some(out)
    });
    obj.finish(errs);
    let policy = policy?;
    let plan = extensions::plan(
        policy.as_ref().and_then(|p| p.extensions.as_ref()),
        trust?,
        &requested?,
    );
    to_value(&plan, errs)
}

fn lifecycle(value: &Value, errs: &mut Vec<FieldError>) -> Option<Value> {
    let mut obj = Obj::new(value, "", errs)?;
    let creator_access = req(&mut obj, "creator_access", errs, access_level);
    let fork = req(&mut obj, "pull_request_from_fork", errs, boolean);
    let prebuild = req(&mut obj, "prebuild", errs, boolean);
    let repository = req(&mut obj, "repository", errs, repo_name);
    let policy = req(&mut obj, "org_policy", errs, org_policy);
    obj.finish(errs);
    let facts = LifecycleFacts {
        creator_access: creator_access?,
        pull_request_from_fork: fork?,
        prebuild: prebuild?,
        repository: repository?,
    };
    let policy = policy?;
    to_value(&lifecycle::decide(&facts, policy.as_ref()), errs)
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
