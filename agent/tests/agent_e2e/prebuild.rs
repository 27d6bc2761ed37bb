//! Prebuilds through the real daemon (DESIGN.md §1 "Secrets": not injected in prebuilds;
//! workspace-agents.md §2.4; issue 17): a prebuild gets no user secrets, and the prebuild's own
//! token is never visible to the code that runs in the codespace made from it: not in the
//! environment file, not from the credential broker, not in any process's `/proc` entry.
//!
//! The host starts a prebuild with `session create --prebuild` and ends it with `session create
//! --prebuild=false` (the codespace made from it), before it delivers the creator's token.

use std::process::Command;

use crate::support::{json_out, rfc3339_in, stdout, Agent};

const PLAIN: &str = r#""lifecycle": {"launcher": "plain"}"#;
const PREBUILD_TOKEN: &str = "ghs_prebuild_own_token_0123456789";
const CREATOR_TOKEN: &str = "ghu_the_creators_token_9876543210";
const SECRET: &str = "prebuild-must-not-see-this-s3cret";

fn start_prebuild(agent: &Agent) -> serde_json::Value {
    agent.session_create_with_write_access(&["--prebuild"])
}

fn env_file(agent: &Agent) -> String {
    std::fs::read_to_string(agent.env_file()).unwrap()
}

fn git_password(agent: &Agent) -> String {
    agent.git_credential("protocol=https\nhost=github.com\npath=octo/app.git\n\n")
}

#[test]
fn a_prebuild_gets_no_user_secrets() {
    let agent = Agent::start(PLAIN);
    // Delivered before the codespace is known to be a prebuild: pending, then dropped when the
    // prebuild starts, never landing in the environment file.
    let secrets = agent.write("s.json", &format!(r#"{{"API_KEY": "{SECRET}"}}"#));
    let file = secrets.to_str().unwrap();
    json_out(&agent.ctl(&["secrets", "put", "--file", file]));
    let report = start_prebuild(&agent);
    assert_eq!(report["prebuild"]["secrets_wiped"], 1, "{report}");
    assert_eq!(report["secrets"], serde_json::json!([]), "{report}");
    assert!(!env_file(&agent).contains(SECRET));
    // Delivered during the prebuild: every entry refused, nothing kept.
    let report = json_out(&agent.ctl(&["secrets", "put", "--file", file]));
    assert_eq!(report["accepted"], serde_json::json!([]), "{report}");
    assert_eq!(report["rejected"][0]["reason"], "prebuild", "{report}");
    json_out(&agent.ctl(&["session", "resume"]));
    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(status["secrets"], serde_json::json!([]));
    assert_eq!(status["pending_secrets"], serde_json::Value::Null);
    assert_eq!(status["prebuild"], true);
    assert!(!env_file(&agent).contains(SECRET));
    // The prebuild's lifecycle commands run restricted, without secrets or token.
    let ws = agent.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join(".devcontainer.json"),
        r#"{"onCreateCommand": "echo len=${#API_KEY} tlen=${#GITHUB_TOKEN}"}"#,
    )
    .unwrap();
    let (r, log) =
        agent.lifecycle_run_json(".devcontainer.json", ws.to_str().unwrap(), "create", &[]);
    assert_eq!(r["profile"], "restricted", "{r}");
    assert_eq!(r["decision"]["reason"], "prebuild", "{r}");
    assert_eq!(r["secrets_injected"], false);
    assert!(log.contains("len=0 tlen=0"), "{log}");
}

#[test]
fn the_prebuilds_token_reaches_no_environment_and_is_gone_when_the_prebuild_ends() {
    let agent = Agent::start(PLAIN);
    start_prebuild(&agent);
    json_out(&agent.put_token(PREBUILD_TOKEN, &rfc3339_in(3600)));
    // During the prebuild: the broker serves the prebuild's own work, but the token is in no
    // environment: not in the file, not in what `exec` starts.
    assert!(git_password(&agent).contains(PREBUILD_TOKEN));
    assert!(
        !env_file(&agent).contains(PREBUILD_TOKEN),
        "{}",
        env_file(&agent)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
        .args(["exec", "--state-dir"])
        .arg(agent.dir.path().join("state"))
        .args(["--", "sh", "-c", "printf %s \"$GITHUB_TOKEN\""])
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");

    // The prebuild ends: the codespace made from it starts without the prebuild's token.
    let report = json_out(&agent.ctl(&["session", "create", "--prebuild=false"]));
    assert_eq!(report["prebuild"]["token_wiped"], true, "{report}");
    assert_eq!(
        git_password(&agent),
        "",
        "the broker still serves the prebuild's token"
    );
    assert!(!env_file(&agent).contains(PREBUILD_TOKEN));
    let status = json_out(&agent.ctl(&["status"]));
    assert_eq!(status["token"], serde_json::Value::Null, "{status}");
    assert_eq!(status["prebuild"], false);
    let seen = processes_showing(PREBUILD_TOKEN);
    assert!(
        seen.is_empty(),
        "/proc shows the prebuild's token: {seen:?}"
    );

    // The creator's token, delivered after, is served and exported as usual.
    json_out(&agent.put_token(CREATOR_TOKEN, &rfc3339_in(3600)));
    assert!(git_password(&agent).contains(CREATOR_TOKEN));
    assert!(env_file(&agent).contains(CREATOR_TOKEN));
    assert!(!agent.log().contains(PREBUILD_TOKEN));
}

/// Every process whose environment or command line (as `/proc` shows them to this test, root
/// in CI: every process of the VM) holds `needle`.
fn processes_showing(needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for file in ["environ", "cmdline"] {
            let Ok(bytes) = std::fs::read(entry.path().join(file)) else {
                continue;
            };
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                seen.push(format!("{name}/{file}"));
            }
        }
    }
    seen
}
