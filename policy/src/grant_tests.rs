//! Table tests for every token-scope rule and reason code, through the CLI contract, plus the
//! property tests of the invariants "nothing granted exceeds the creator's own access" and
//! "deny by default on any missing fact".

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::cli::{run, Topic};

fn scope(mut input: Value) -> Value {
    let defaults = json!({
        "repository": "octo/app", "access": {}, "pull_request": null, "fork": null,
        "requested": null, "authorized": false, "prebuild": false, "org_policy": null
    });
    let obj = input.as_object_mut().unwrap();
    for (k, v) in defaults.as_object().unwrap() {
        obj.entry(k.clone()).or_insert(v.clone());
    }
    run(Topic::TokenScope, &input.to_string()).unwrap()
}

const WRITE_BASE: &str =
    r#"{"contents":"write","issues":"write","metadata":"read","pull_requests":"write"}"#;
const READ_BASE: &str = r#"{"contents":"read","metadata":"read"}"#;

fn base(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn base_grant_by_access_level() {
    for (level, perms, fork_on_push) in [
        ("admin", Some(WRITE_BASE), false),
        ("maintain", Some(WRITE_BASE), false),
        ("write", Some(WRITE_BASE), false),
        ("triage", Some(READ_BASE), true),
        ("read", Some(READ_BASE), true),
        ("none", None, false),
    ] {
        let out = scope(json!({"access": {"Octo/App": level}}));
        let repos = match perms {
            Some(p) => json!({"octo/app": base(p)}),
            None => json!({}),
        };
        assert_eq!(
            out,
            json!({"repositories": repos, "fork_on_push": fork_on_push, "denied": []}),
            "{level}"
        );
    }
    // A missing fact is no access.
    assert_eq!(
        scope(json!({})),
        json!({"repositories": {}, "fork_on_push": false, "denied": []})
    );
}

#[test]
fn fork_gets_the_write_base_grant_capped_by_access() {
    let out =
        scope(json!({"access": {"octo/app": "read", "mona/app": "admin"}, "fork": "mona/app"}));
    assert_eq!(
        out,
        json!({"repositories": {"mona/app": base(WRITE_BASE), "octo/app": base(READ_BASE)},
               "fork_on_push": true, "denied": []})
    );
    let out = scope(json!({"access": {"octo/app": "read"}, "fork": "mona/app"}));
    let denied: Vec<Value> = ["contents", "issues", "pull_requests"]
        .iter()
        .map(|p| json!({"repository": "mona/app", "permission": p, "requested": "write", "reason": "exceeds-creator-access"}))
        .chain([json!({"repository": "mona/app", "permission": "metadata", "requested": "read", "reason": "exceeds-creator-access"})])
        .collect();
    assert_eq!(
        out,
        json!({"repositories": {"octo/app": base(READ_BASE)}, "fork_on_push": true, "denied": denied})
    );
}

#[test]
fn pull_request_from_a_fork() {
    let private = scope(json!({
        "repository": "mona/app", "access": {"mona/app": "admin", "octo/app": "read"},
        "pull_request": {"head": "mona/app", "base": "octo/app", "base_private": true}
    }));
    assert_eq!(
        private,
        json!({"repositories": {"mona/app": base(WRITE_BASE), "octo/app": base(READ_BASE)},
               "fork_on_push": false, "denied": []})
    );
    // Public base: only opening pull requests, even without any access fact for the base.
    let public = scope(json!({
        "repository": "mona/app", "access": {"mona/app": "write"},
        "pull_request": {"head": "MONA/app", "base": "octo/app", "base_private": false}
    }));
    assert_eq!(
        public,
        json!({"repositories": {"mona/app": base(WRITE_BASE),
                                "octo/app": {"metadata": "read", "pull_requests": "write"}},
               "fork_on_push": false, "denied": []})
    );
    // Even a base writer gets only that on a public base from this rule.
    let public_writer = scope(json!({
        "repository": "mona/app", "access": {"mona/app": "write", "octo/app": "write"},
        "pull_request": {"head": "mona/app", "base": "octo/app", "base_private": false}
    }));
    assert_eq!(
        public_writer["repositories"]["octo/app"],
        json!({"metadata": "read", "pull_requests": "write"})
    );
}

#[test]
fn requested_permissions_need_authorization_and_the_same_owner() {
    let requested = json!({
        "octo/lib": {"permissions": {"issues": "write", "packages": "read"}},
        "other/x": {"permissions": {"contents": "read"}}
    });
    let access = json!({"octo/app": "write", "octo/lib": "write", "other/x": "admin"});
    let unauthorized = scope(json!({"access": access, "requested": requested}));
    assert_eq!(
        unauthorized["denied"],
        json!([
            {"repository": "octo/lib", "permission": "issues", "requested": "write", "reason": "not-authorized"},
            {"repository": "octo/lib", "permission": "packages", "requested": "read", "reason": "not-authorized"},
            {"repository": "other/x", "permission": "contents", "requested": "read", "reason": "different-owner"}
        ])
    );
    assert_eq!(
        unauthorized["repositories"],
        json!({"octo/app": base(WRITE_BASE)})
    );
    let authorized = scope(json!({"access": access, "requested": requested, "authorized": true}));
    assert_eq!(
        authorized["repositories"],
        json!({"octo/app": base(WRITE_BASE), "octo/lib": {"issues": "write", "packages": "read"}})
    );
    assert_eq!(
        authorized["denied"],
        json!([{"repository": "other/x", "permission": "contents", "requested": "read", "reason": "different-owner"}])
    );
}

#[test]
fn invalid_permissions_are_denied_one_by_one() {
    let out = scope(json!({
        "access": {"octo/app": "write", "octo/lib": "write"}, "authorized": true,
        "requested": {
            "octo/lib": {"permissions": {"packages": "write", "workflows": "read", "secrets": "read",
                                          "contents": "admin", "issues": 1, "statuses": "write"}},
            "octo/app": {"permissions": "admin-all"}
        }
    }));
    assert_eq!(
        out["denied"],
        json!([
            {"repository": "octo/lib", "permission": "packages", "requested": "write", "reason": "invalid-permission"},
            {"repository": "octo/lib", "permission": "workflows", "requested": "read", "reason": "invalid-permission"},
            {"repository": "octo/lib", "permission": "secrets", "requested": "read", "reason": "invalid-permission"},
            {"repository": "octo/lib", "permission": "contents", "requested": "admin", "reason": "invalid-permission"},
            {"repository": "octo/lib", "permission": "issues", "requested": "1", "reason": "invalid-permission"},
            {"repository": "octo/app", "permission": null, "requested": "admin-all", "reason": "invalid-permission"}
        ])
    );
    assert_eq!(
        out["repositories"]["octo/lib"],
        json!({"statuses": "write"})
    );
}

#[test]
fn read_all_and_write_all_expand_at_allowed_levels() {
    let out = scope(json!({
        "access": {"octo/app": "write", "octo/a": "admin", "octo/b": "admin"}, "authorized": true,
        "requested": {"octo/a": {"permissions": "read-all"}, "octo/b": {"permissions": "write-all"}}
    }));
    let read_all: Value = json!({"actions": "read", "checks": "read", "contents": "read", "deployments": "read",
        "discussions": "read", "issues": "read", "packages": "read", "pages": "read", "pull_requests": "read",
        "repository_projects": "read", "statuses": "read"});
    let write_all: Value = json!({"actions": "write", "checks": "write", "contents": "write", "deployments": "write",
        "discussions": "write", "issues": "write", "packages": "read", "pages": "write", "pull_requests": "write",
        "repository_projects": "write", "statuses": "write", "workflows": "write"});
    assert_eq!(out["repositories"]["octo/a"], read_all);
    assert_eq!(out["repositories"]["octo/b"], write_all);
    assert_eq!(out["denied"], json!([]));
}

#[test]
fn wildcards_expand_over_access_and_are_refused_in_prebuilds() {
    let input = json!({
        "access": {"octo/app": "write", "octo/lib": "read", "octo/docs": "admin", "other/z": "admin"},
        "authorized": true,
        "requested": {"OCTO/*": {"permissions": {"workflows": "write", "actions": "read"}}}
    });
    let out = scope(input.clone());
    assert_eq!(
        out["repositories"],
        json!({
            "octo/app": {"actions": "read", "contents": "write", "issues": "write", "metadata": "read",
                         "pull_requests": "write", "workflows": "write"},
            "octo/docs": {"actions": "read", "workflows": "write"},
            "octo/lib": {"actions": "read"}
        })
    );
    assert_eq!(
        out["denied"],
        json!([{"repository": "octo/lib", "permission": "workflows", "requested": "write", "reason": "exceeds-creator-access"}])
    );
    let mut prebuild = input;
    prebuild["prebuild"] = json!(true);
    let out = scope(prebuild);
    assert_eq!(
        out["denied"],
        json!([
            {"repository": "OCTO/*", "permission": "workflows", "requested": "write", "reason": "wildcard-in-prebuild"},
            {"repository": "OCTO/*", "permission": "actions", "requested": "read", "reason": "wildcard-in-prebuild"}
        ])
    );
}

#[test]
fn organization_trust_list() {
    let access =
        json!({"octo/app": "write", "octo/lib": "read", "octo/none": "none", "other/x": "admin"});
    let requested = json!({"octo/lib": {"permissions": {"issues": "read"}}});
    // Not covered: requests are refused and no trust grant.
    let out = scope(
        json!({"access": access, "requested": requested, "authorized": true,
                           "org_policy": {"trusted_repositories": ["octo/other"]}}),
    );
    assert_eq!(out["repositories"], json!({"octo/app": base(WRITE_BASE)}));
    assert_eq!(
        out["denied"],
        json!([{"repository": "octo/lib", "permission": "issues", "requested": "read", "reason": "not-trusted-by-organization"}])
    );
    let none = scope(
        json!({"access": access, "requested": requested, "authorized": true,
                            "org_policy": {"trusted_repositories": "none"}}),
    );
    assert_eq!(none["denied"][0]["reason"], "not-trusted-by-organization");
    // Covered: every other readable repository of the owner gets contents and metadata read.
    for trusted in [json!("all"), json!(["octo/*"]), json!(["Octo/App"])] {
        let out = scope(json!({"access": access, "org_policy": {"trusted_repositories": trusted}}));
        assert_eq!(
            out,
            json!({"repositories": {"octo/app": base(WRITE_BASE), "octo/lib": base(READ_BASE)},
                   "fork_on_push": false, "denied": []}),
            "{trusted}"
        );
    }
    // No list at all: no trust grant, but requests are not refused for trust.
    let out = scope(
        json!({"access": access, "requested": requested, "authorized": true, "org_policy": {}}),
    );
    assert_eq!(
        out["repositories"],
        json!({"octo/app": base(WRITE_BASE), "octo/lib": {"issues": "read"}})
    );
}

#[test]
fn creator_cap_lowers_or_drops_and_grants_merge_upwards() {
    let out = scope(json!({
        "access": {"octo/app": "read", "octo/lib": "triage"}, "authorized": true,
        "requested": {"octo/app": {"permissions": {"contents": "write", "workflows": "write", "packages": "read"}},
                      "octo/gone": {"permissions": {"issues": "read"}}}
    }));
    assert_eq!(
        out["repositories"],
        json!({"octo/app": {"contents": "read", "metadata": "read", "packages": "read"}})
    );
    assert_eq!(
        out["denied"],
        json!([
            {"repository": "octo/app", "permission": "contents", "requested": "write", "reason": "exceeds-creator-access"},
            {"repository": "octo/app", "permission": "workflows", "requested": "write", "reason": "exceeds-creator-access"},
            {"repository": "octo/gone", "permission": "issues", "requested": "read", "reason": "exceeds-creator-access"}
        ])
    );
    let merged = scope(json!({
        "access": {"octo/app": "write"}, "authorized": true,
        "requested": {"octo/app": {"permissions": {"contents": "read", "issues": "read", "checks": "write"}}}
    }));
    assert_eq!(
        merged["repositories"]["octo/app"],
        json!({"checks": "write", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"})
    );
}

#[test]
fn invalid_inputs_name_their_field() {
    let cases = [
        (
            json!({"repository": "octo/app"}),
            vec![
                "/access",
                "/pull_request",
                "/fork",
                "/requested",
                "/authorized",
                "/prebuild",
                "/org_policy",
            ],
        ),
        (
            json!({"repository": "octo", "access": {}, "pull_request": null, "fork": null, "requested": null,
                "authorized": false, "prebuild": false, "org_policy": null, "extra": 1}),
            vec!["/repository", "/extra"],
        ),
        (
            json!({"repository": "octo/app", "access": {"octo/app": "owner", "a/b": "read", "A/B": "read"}, "pull_request": null,
                "fork": null, "requested": {"bad": {"permissions": "read-all"}, "octo/x": {"permissions": "read-all", "why": 1},
                "octo/y": "read-all", "octo/z": {"permissions": 3}},
                "authorized": "yes", "prebuild": false, "org_policy": {"trusted_repositories": "some"}}),
            vec![
                "/access/octo~1app",
                "/access/A~1B",
                "/requested/bad",
                "/requested/octo~1x/why",
                "/requested/octo~1y",
                "/requested/octo~1z/permissions",
                "/authorized",
                "/org_policy/trusted_repositories",
            ],
        ),
        (
            json!({"repository": "octo/app", "access": {}, "pull_request": {"head": "other/app", "base": "octo/app", "base_private": true},
                "fork": null, "requested": null, "authorized": false, "prebuild": false, "org_policy": null}),
            vec!["/pull_request/head"],
        ),
        (
            json!({"repository": "octo/app", "access": {}, "pull_request": {"head": "octo/app"},
                "fork": 3, "requested": null, "authorized": false, "prebuild": false, "org_policy": null}),
            vec!["/pull_request/base", "/pull_request/base_private", "/fork"],
        ),
    ];
    for (input, want) in cases {
        match run(Topic::TokenScope, &input.to_string()) {
            Err(crate::cli::CliError::Invalid(errs)) => {
                let got: Vec<&str> = errs.0.iter().map(|e| e.pointer.as_str()).collect();
                assert_eq!(got, want, "{input}");
            }
            other => panic!("{input}: {other:?}"),
        }
    }
}

mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use crate::grant::{
        cap, token_scope, PullRequest, RequestTarget, RequestedEntry, TokenRequest,
    };
    use crate::repo::{AccessLevel, RepoName};
    use crate::token::{Level, Permission};

    fn repo_names() -> Vec<RepoName> {
        ["octo/app", "octo/lib", "octo/docs", "mona/app", "other/x"]
            .iter()
            .map(|s| RepoName::parse(s).unwrap())
            .collect()
    }

    fn access_level() -> impl Strategy<Value = Option<AccessLevel>> {
        prop::option::of(prop::sample::select(AccessLevel::ALL.to_vec()))
    }

    fn level_ord(level: Level) -> u8 {
        match level {
            Level::Read => 1,
            Level::Write => 2,
        }
    }

    fn access_ceiling(access: AccessLevel) -> u8 {
        if access.can_write() {
            2
        } else if access.can_read() {
            1
        } else {
            0
        }
    }

    prop_compose! {
        fn request()(
            access in prop::collection::vec(access_level(), 5),
            fork in prop::option::of(0usize..5),
            pr in prop::option::of((0usize..5, any::<bool>())),
            requested in prop::collection::vec((0usize..6, prop::collection::vec((0usize..13, any::<bool>()), 0..4)), 0..4),
            authorized in any::<bool>(),
            prebuild in any::<bool>(),
            trust in 0usize..4,
        ) -> (BTreeMap<RepoName, AccessLevel>, Option<usize>, Option<(usize, bool)>, Vec<(usize, Vec<(usize, bool)>)>, bool, bool, usize) {
            let names = repo_names();
            let access = names.iter().zip(access).filter_map(|(n, a)| a.map(|a| (n.clone(), a))).collect();
            (access, fork, pr, requested, authorized, prebuild, trust)
        }
    }

    proptest! {
        /// Nothing granted exceeds the creator's own access (the one documented exemption:
        /// opening pull requests on a public base), and no access means nothing.
        #[test]
        fn nothing_exceeds_the_creator((access, fork, pr, requested, authorized, prebuild, trust) in request()) {
            let policies = [
                None,
                Some(r#"{"trusted_repositories": "all"}"#),
                Some(r#"{"trusted_repositories": "none"}"#),
                Some(r#"{"trusted_repositories": ["octo/*"]}"#),
            ];
            let policy = policies[trust].map(|text| crate::document::OrgPolicy::parse(text).unwrap());
            let names = repo_names();
            let repository = names[0].clone();
            let pull_request = pr.map(|(base, base_private)| PullRequest {
                head: repository.clone(),
                base: names[base].clone(),
                base_private,
            });
            let requested: Vec<RequestedEntry> = requested
                .into_iter()
                .map(|(target, perms)| {
                    let (key, target) = if target == 5 {
                        ("octo/*".to_owned(), RequestTarget::Owner("octo".into()))
                    } else {
                        (names[target].as_str().to_owned(), RequestTarget::Repo(names[target].clone()))
                    };
                    let permissions = perms
                        .into_iter()
                        .map(|(p, write)| {
                            let level = serde_json::Value::from(if write { "write" } else { "read" });
                            RequestedEntry::from_pair(Permission::ALL[p].name(), &level)
                        })
                        .collect();
                    RequestedEntry { key, target, permissions }
                })
                .collect();
            let req = TokenRequest {
                repository,
                access: access.clone(),
                pull_request: pull_request.clone(),
                fork: fork.map(|i| names[i].clone()),
                requested,
                authorized,
                prebuild,
                policy: policy.as_ref(),
            };
            let scope = token_scope(&req);
            for (repo, perms) in scope.repositories() {
                let creator = access.get(repo).copied().unwrap_or_default();
                for (perm, level) in perms {
                    let exempt = pull_request.as_ref().is_some_and(|pr| !pr.base_private && &pr.base == repo)
                        && matches!(perm, Permission::PullRequests | Permission::Metadata);
                    prop_assert!(
                        exempt || level_ord(*level) <= access_ceiling(creator),
                        "{repo} {perm:?} {level:?} above {creator:?}"
                    );
                    prop_assert!(perm.supports(*level));
                }
                prop_assert!(!perms.is_empty());
            }
            if access.is_empty() && pull_request.is_none() {
                prop_assert!(scope.repositories().is_empty(), "no fact, no grant");
            }
        }

        /// The cap never raises a level and never grants to someone without access.
        #[test]
        fn cap_never_raises(access in prop::sample::select(AccessLevel::ALL.to_vec()), p in 0usize..13, write in any::<bool>()) {
            let level = if write { Level::Write } else { Level::Read };
            let perm = Permission::ALL[p];
            match cap(access, perm, level) {
                Some(capped) => {
                    prop_assert!(capped <= level);
                    prop_assert!(access.can_read());
                    prop_assert!(level_ord(capped) <= access_ceiling(access));
                }
                None => prop_assert!(!access.can_read() || (level == Level::Write && !perm.supports(Level::Read))),
            }
        }
    }
}
