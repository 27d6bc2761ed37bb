//! Fuzz the git credential broker's request parser and decision, the input that any process in
//! the VM can send: any bytes must parse to a request or a silence, never a panic; and a
//! credential is granted only for a repository in the token's scope, named by a path that no URL
//! normalization can turn into another repository (no empty, `.` or `..` segment, no `%`, no
//! backslash).
#![no_main]

use codespace_agent::guest::broker::{decide, parse_request, Grant};
use codespace_agent::guest::vault::LiveToken;
use codespace_agent::seal::TokenValue;
use codespace_policy::token::TokenScope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(data) else {
        return;
    };
    let scope: TokenScope = serde_json::from_str(
        r#"{"repositories":{"Octo/App":{"contents":"write","metadata":"read"},
            "octo/lib":{"contents":"read","metadata":"read"}},"fork_on_push":false,"denied":[]}"#,
    )
    .unwrap();
    let value = TokenValue::new("ghu_fuzz".into()).unwrap();
    let live = LiveToken {
        value: &value,
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        scope: &scope,
        host: "github.com",
    };
    for require_path in [false, true] {
        if let Ok(Grant::Repository(authorized)) = decide(&request, Some(&live), require_path) {
            let repository = authorized.get().0.to_string();
            assert!(scope.covers(&repository), "{repository} is out of scope");
            let path = request.path.as_deref().unwrap_or_default();
            let path = path.trim_start_matches('/').trim_end_matches('/');
            assert!(!path.contains(['%', '\\']), "{path:?}");
            assert!(
                path.split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".."),
                "{path:?}"
            );
        }
    }
});
