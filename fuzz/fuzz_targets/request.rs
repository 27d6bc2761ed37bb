//! Fuzz the requests of an authenticated control connection through the dispatcher's parsing,
//! against an agent whose effects stay in memory (`codespace_fuzz::Agent`): `token_put`,
//! `secrets_put` with sealed values, `session` with the codespace's identity,
//! `ports_visibility`, `ports_list`, `grant_key_put`, `forward_tickets`, `lifecycle_run`,
//! `extensions_install`. Each line of the input is one request (placeholders: see the crate
//! docs). Any request must get a result or a wire error, never a panic; an error's message
//! never carries a secret value or the token; a `secrets_put` report names only what was sent.
#![no_main]

use std::time::Duration;

use codespace_agent::wire::frame::parse_payload;
use codespace_agent::wire::Request;
use codespace_fuzz::{lines, runtime, Agent};
use libfuzzer_sys::fuzz_target;

/// Lifecycle requests with effects outside memory (a watch thread, killing processes).
const SKIPPED: &[&str] = &["config_watch", "restricted_kill"];

fuzz_target!(|data: &[u8]| {
    let agent = Agent::new(true);
    runtime().block_on(async {
        for line in lines(data).into_iter().take(16) {
            let payload = agent.substitute(line);
            let Ok(object) = parse_payload(&payload) else {
                continue;
            };
            let secrets: Vec<String> = object
                .get("secrets")
                .and_then(|s| s.as_array())
                .map(|l| {
                    l.iter()
                        .filter_map(|e| e["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let token = object
                .get("value")
                .and_then(|v| v.as_str())
                .filter(|t| t.len() >= 8)
                .map(str::to_owned);
            let Ok(envelope) = Request::parse(object) else {
                continue;
            };
            if SKIPPED.contains(&envelope.kind.as_str()) {
                continue;
            }
            let kind = envelope.kind.clone();
            // As the server does it: the envelope's type and fields become the typed request.
            let req = codespace_agent::guest::request::Request::from_frame(
                envelope.kind,
                envelope.fields,
            );
            let result = match agent.lifecycle.start_job(req) {
                Ok(job) => tokio::time::timeout(Duration::from_secs(20), job.work)
                    .await
                    .expect("a lifecycle job with an in-memory launcher finishes"),
                Err(req) => agent.dispatcher.handle(req).map_err(|e| e.wire()),
            };
            match &result {
                Err(e) => {
                    if let Some(t) = &token {
                        assert!(
                            !e.message.contains(t.as_str()),
                            "{kind}: the token is echoed"
                        );
                    }
                }
                Ok(v) if kind == "secrets_put" => {
                    for name in v["accepted"].as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        assert!(secrets.iter().any(|s| s == name), "{name} was not sent");
                    }
                }
                Ok(_) => {}
            }
        }
    });
});
