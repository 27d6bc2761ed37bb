//! Fuzz what a process in the VM sends the registry side of the broker, and what a user may put
//! in `~/.docker/config.json`: any bytes must parse to a helper request or "not ours" or
//! "malformed", never a panic; a server URL that is answered names exactly the delivered host
//! (`ghcr.io`), whatever Docker normalisation it went through; and the `credHelpers` merge
//! either refuses a file or keeps every key of it, adding only `"codespace"` entries.
#![no_main]

use codespace_agent::guest::registry::docker_config::merge;
use codespace_agent::guest::registry::HelperRequest;
use codespace_policy::container_registry::{decide, Held, RegistryHost};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(HelperRequest::Get(url))) = HelperRequest::parse(data) {
        let ghcr = RegistryHost::parse("ghcr.io").unwrap();
        let held = [Held {
            host: &ghcr,
            expires_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
        }];
        if decide(&url, false, held, time::OffsetDateTime::UNIX_EPOCH).is_ok() {
            let host = RegistryHost::parse(&url).unwrap();
            assert_eq!(host.as_str(), "ghcr.io", "{url:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(host) = RegistryHost::parse(text) {
            // One spelling: parsing the spelling again gives the same registry.
            assert_eq!(RegistryHost::parse(host.as_str()).as_ref(), Ok(&host));
            assert!(!host.as_str().contains(['/', '@', ' ']), "{host}");
        }
    }
    let hosts = [RegistryHost::parse("ghcr.io").unwrap()];
    if let Ok(merged) = merge("config.json", Some(data), &hosts) {
        if let Some(contents) = merged.contents {
            let before: serde_json::Value = if data.iter().all(u8::is_ascii_whitespace) {
                serde_json::json!({})
            } else {
                serde_json::from_slice(data).unwrap()
            };
            let after: serde_json::Value = serde_json::from_slice(&contents).unwrap();
            for (key, value) in before.as_object().unwrap() {
                if key != "credHelpers" {
                    assert_eq!(after.get(key), Some(value), "{key} changed");
                }
            }
            for (key, value) in before["credHelpers"].as_object().into_iter().flatten() {
                if value != "codespace" {
                    assert_eq!(&after["credHelpers"][key], value, "{key} changed");
                }
            }
        }
    }
});
