//! Fuzz the organization policy document parser (JSONC, strict) and the CLI input readers:
//! any input must give a value or an error, never a panic, a hang or unbounded recursion.
#![no_main]

use codespace_policy::cli::{self, Topic};
use codespace_policy::repo::RepoName;
use codespace_policy::OrgPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = OrgPolicy::parse(text) {
        // A parsed policy must answer every question without panicking.
        if let Ok(repo) = RepoName::parse("octo/app") {
            let _ = policy.trusts(&repo);
        }
        let _ = policy.allows_image("mcr.microsoft.com/devcontainers/base:1");
        let _ = policy.allows_feature("ghcr.io/devcontainers/features/node:1");
        let _ = policy.idle_timeout(240);
        let _ = policy.allowed_visibilities();
        let _ = policy.deny_names();
    }
    // The same text as the input of every CLI topic.
    for topic in Topic::ALL {
        let _ = cli::run(topic, text);
    }
});
