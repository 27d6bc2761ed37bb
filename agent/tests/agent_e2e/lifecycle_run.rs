//! Lifecycle commands through the real agent and `codespace-agentctl lifecycle`: forms,
//! phase order, failure, parallelism, timeouts, redaction, blocked → approve, extensions.

use std::path::Path;
use std::process::Output;

use crate::support::{json_out, rfc3339_in, stderr, stdout, Agent};

/// The semantics tests run without the sandbox (they run as whoever runs the tests, in
/// private temporary directories); `sandboxed_*` tests below use the real sandbox.
const PLAIN: &str = r#""lifecycle": {"launcher": "plain"}"#;

/// A workspace with a devcontainer.json; `$WS` in the text becomes the workspace path.
fn workspace(agent: &Agent, text: &str) -> String {
    let ws = agent.dir.path().join("ws");
    std::fs::create_dir_all(ws.join(".devcontainer")).unwrap();
    let text = text.replace("$WS", ws.to_str().unwrap());
    std::fs::write(ws.join(".devcontainer/devcontainer.json"), text).unwrap();
    ws.to_str().unwrap().to_owned()
}

fn run(agent: &Agent, ws: &str, phase: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "lifecycle",
        "run",
        "--devcontainer",
        ".devcontainer/devcontainer.json",
        "--workspace",
        ws,
        "--phase",
        phase,
        "--repository",
        "octo/app",
    ];
    args.extend_from_slice(extra);
    agent.ctl(&args)
}

fn result(agent: &Agent, ws: &str, phase: &str, extra: &[&str]) -> serde_json::Value {
    let mut e = extra.to_vec();
    e.push("--json");
    let out = run(agent, ws, phase, &e);
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|err| {
        panic!(
            "{err}: {}\n{}\nlog:\n{}",
            stdout(&out),
            stderr(&out),
            agent.log()
        )
    })
}

#[test]
fn every_form_in_phase_order_and_a_failure_stops_later_phases() {
    let agent = Agent::start(PLAIN);
    let ws = workspace(
        &agent,
        r#"{
            "initializeCommand": "touch $WS/initialize-ran",
            "onCreateCommand": "echo on-create; echo to-stderr >&2",
            "updateContentCommand": ["/bin/echo", "$HOME stays literal"],
            "postCreateCommand": {"fail": ["/bin/sh", "-c", "exit 3"], "ok": "echo sibling-ran"},
            "postStartCommand": "touch $WS/start-ran",
        }"#,
    );
    let out = run(&agent, &ws, "create", &["--creator-access", "write"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let so = stdout(&out);
    let on_create = so.find("on-create").unwrap();
    let update = so.find("$HOME stays literal").unwrap();
    assert!(on_create < update, "{so}");
    assert!(so.contains("sibling-ran"), "{so}");
    assert!(stderr(&out).contains("to-stderr"));
    assert!(
        stderr(&out).contains("initializeCommand: not run"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&ws).join("initialize-ran").exists());

    let r = result(&agent, &ws, "create", &["--creator-access", "write"]);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["profile"], "trusted");
    assert_eq!(r["first_failure"], "postCreateCommand.fail");
    let forms: Vec<_> = r["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["form"].as_str().unwrap()))
        .collect();
    assert_eq!(
        forms,
        [
            ("onCreateCommand", "shell"),
            ("updateContentCommand", "exec"),
            ("postCreateCommand.fail", "exec"),
            ("postCreateCommand.ok", "shell")
        ]
    );
    assert_eq!(r["commands"][2]["exit_code"], 3);
    assert!(r["commands"][0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r["skipped"][0]["property"], "initializeCommand");

    // A failing onCreateCommand stops the later properties of the phase.
    let ws = workspace(
        &agent,
        r#"{"onCreateCommand": "exit 5", "postCreateCommand": "touch $WS/never"}"#,
    );
    let r = result(&agent, &ws, "create", &["--creator-access", "write"]);
    assert_eq!(r["commands"][1]["status"], "skipped");
    assert!(r["commands"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("onCreateCommand"));
    assert!(!Path::new(&ws).join("never").exists());
}

#[test]
fn object_entries_run_in_parallel_and_start_attach_are_separate_phases() {
    let agent = Agent::start(PLAIN);
    let wait = |me: &str, other: &str| {
        format!(
            "touch $WS/{me}; i=0; while [ ! -e $WS/{other} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; [ -e $WS/{other} ]"
        )
    };
    let ws = workspace(
        &agent,
        &format!(
            r#"{{"postStartCommand": {{"a": "{}", "b": "{}"}}, "postAttachCommand": "echo attached"}}"#,
            wait("a", "b"),
            wait("b", "a")
        ),
    );
    let r = result(&agent, &ws, "start", &["--creator-access", "write"]);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["commands"].as_array().unwrap().len(), 2);
    let out = run(&agent, &ws, "attach", &["--creator-access", "write"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "attached\n");
}

#[test]
fn timeouts_kill_and_long_runs_outlive_the_request_timeout() {
    // The agent's request timeout is 1 s; a 2 s command still gets its result.
    let agent = Agent::start(r#""request_timeout_ms": 1000, "lifecycle": {"launcher": "plain"}"#);
    let ws = workspace(
        &agent,
        r#"{"onCreateCommand": "sleep 2; echo slow-done", "postCreateCommand": "sleep 30"}"#,
    );
    let out = run(
        &agent,
        &ws,
        "create",
        &["--creator-access", "write", "--timeout", "5"],
    );
    assert!(stdout(&out).contains("slow-done"), "{}", stderr(&out));
    let r = result(
        &agent,
        &ws,
        "create",
        &["--creator-access", "write", "--timeout", "3"],
    );
    assert_eq!(r["commands"][1]["status"], "timed_out", "{r}");
    assert_eq!(r["commands"][1]["timed_out"], true);
    let out = run(
        &agent,
        &ws,
        "create",
        &["--creator-access", "write", "--timeout", "3"],
    );
    assert_eq!(out.status.code(), Some(124));
    // The connection served other requests meanwhile: ping still answers.
    json_out(&agent.ctl(&["ping"]));
}

/// A plain-launcher agent with the secret `API_KEY` and a session whose creator can write.
fn agent_with_api_key() -> Agent {
    let agent = Agent::start(PLAIN);
    let secrets = agent.write("s.json", r#"{"API_KEY": "sup3r-s3cret-value-42"}"#);
    json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    agent.session_create_with_write_access(&[]);
    agent
}

#[test]
fn secrets_reach_trusted_runs_only_and_are_redacted_across_chunks() {
    let agent = agent_with_api_key();
    // The secret is printed in two writes with a pause between them, so it crosses reads.
    let ws = workspace(
        &agent,
        r#"{"postAttachCommand": "printf 'k=%s' \"${API_KEY%%-value-42}\"; sleep 0.2; printf -- '-value-42;\\n'; echo \"len=${#API_KEY}\""}"#,
    );
    let out = run(&agent, &ws, "attach", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "k=[redacted];\nlen=21\n");
    let r = result(&agent, &ws, "attach", &[]);
    assert_eq!(r["secrets_injected"], true);
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("k=[redacted];"), "{log}");
    assert!(!log.contains("sup3r-s3cret"), "{log}");
    assert!(!agent.log().contains("sup3r-s3cret"));

    // Read access: restricted, no secrets in the environment.
    let out = run(&agent, &ws, "attach", &["--creator-access", "read"]);
    assert_eq!(stdout(&out), "k=-value-42;\nlen=0\n", "{}", stderr(&out));
    let r = result(&agent, &ws, "attach", &["--creator-access", "read"]);
    assert_eq!(r["profile"], "restricted");
    assert_eq!(r["decision"]["reason"], "no-write-access");
    assert_eq!(r["secrets_injected"], false);

    // A pull request from a fork, given to the run or recorded by `session create`: the same.
    let r = result(
        &agent,
        &ws,
        "attach",
        &["--creator-access", "write", "--fork-pull-request"],
    );
    assert_eq!(r["profile"], "restricted", "{r}");
    assert_eq!(r["decision"]["reason"], "fork-pull-request");
    assert_eq!(r["secrets_injected"], false);
    agent.session_create_with_write_access(&["--fork-pull-request"]);
    let r = result(&agent, &ws, "attach", &[]);
    assert_eq!(r["decision"]["reason"], "fork-pull-request", "{r}");
    assert_eq!(r["secrets_injected"], false);
}

#[test]
fn hostile_output_is_neutralised_on_the_terminal_and_encoded_secrets_are_redacted() {
    let agent = agent_with_api_key();
    // A clipboard write, a screen clear, a status line forged after a carriage return and one
    // at the start of a line, the secret in base64 and in hex.
    let ws = workspace(
        &agent,
        r#"{"postAttachCommand": {"evil\u001b[2J": "printf '\\033]52;c;ZXZpbA==\\007\\033[2J\\r==> fake succeeded\\n==> postAttachCommand: succeeded\\n'; printf %s \"$API_KEY\" | base64; printf '%s\\n' \"$API_KEY\" | od -An -tx1 -w64 | tr -d ' '"}}"#,
    );
    let out = run(&agent, &ws, "attach", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "\\e]52;c;ZXZpbA==\\x07\\e[2J\\r==> fake succeeded\n\
         | ==> postAttachCommand: succeeded\n\
         [redacted]\n\
         [redacted]0a\n"
    );
    let err = stderr(&out);
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(err.contains("==> postAttachCommand.evil\\e[2J\n"), "{err}");
    // --json keeps the bytes, escaped by JSON.
    let r = result(&agent, &ws, "attach", &[]);
    assert_eq!(
        r["commands"][0]["name"], "postAttachCommand.evil\u{1b}[2J",
        "{r}"
    );
}

#[test]
fn a_blocked_profile_runs_nothing_until_approved() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("org.json");
    std::fs::write(&policy, r#"{"lifecycle_commands": "trusted-only"}"#).unwrap();
    let agent = Agent::start(&format!(
        r#""lifecycle": {{"launcher": "plain", "org_policy_file": "{}"}}"#,
        policy.display()
    ));
    let ws = workspace(&agent, r#"{"postStartCommand": "touch $WS/ran"}"#);
    let out = run(&agent, &ws, "start", &["--creator-access", "read"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("blocked"), "{}", stderr(&out));
    assert!(!Path::new(&ws).join("ran").exists());
    let r = result(&agent, &ws, "start", &["--creator-access", "read"]);
    assert_eq!(r["status"], "blocked");
    assert_eq!(r["decision"]["reason"], "no-write-access");
    assert_eq!(r["commands"][0]["status"], "skipped");

    let r = result(
        &agent,
        &ws,
        "start",
        &["--creator-access", "read", "--approve"],
    );
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["approved"], true);
    assert_eq!(r["profile"], "restricted");
    assert!(Path::new(&ws).join("ran").exists());
    // Write access is trusted even under trusted-only.
    let r = result(&agent, &ws, "start", &["--creator-access", "write"]);
    assert_eq!(r["profile"], "trusted");
}

#[test]
fn parse_errors_are_refused_with_line_and_column() {
    let agent = Agent::start(PLAIN);
    let caps = json_out(&agent.ctl(&["status"]))["capabilities"].clone();
    for c in ["lifecycle_run", "extensions_install", "config_watch"] {
        assert!(caps.as_array().unwrap().iter().any(|x| x == c), "{caps}");
    }
    let ws = workspace(&agent, "{\n  \"postStartCommand\": 42\n}");
    let out = run(&agent, &ws, "start", &["--creator-access", "write"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("devcontainer.json:2:"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("/postStartCommand"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn extensions_are_installed_refused_and_reported_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("fake-code");
    let record = dir.path().join("installed.txt");
    std::fs::write(
        &installer,
        format!(
            "#!/bin/sh\ncase \"$2\" in broken.*) echo cannot >&2; exit 9;; esac\necho \"$1 $2\" >> {}\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&installer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = dir.path().join("org.json");
    std::fs::write(&policy, r#"{"extensions": {"deny": ["evil"]}}"#).unwrap();
    let agent = Agent::start(&format!(
        r#""lifecycle": {{"launcher": "plain", "org_policy_file": "{}", "extension_installer": ["{}", "--install-extension", "{{id}}"]}}"#,
        policy.display(),
        installer.display()
    ));
    let ws = workspace(
        &agent,
        r#"{"customizations": {"vscode": {"extensions": ["ms-python.python", "evil.miner", "broken.ext", "not an id", "-old.ext"]}}}"#,
    );
    let out = agent.ctl(&[
        "lifecycle",
        "extensions",
        "--workspace",
        &ws,
        "--devcontainer",
        ".devcontainer/devcontainer.json",
        "--repository",
        "octo/app",
        "--creator-access",
        "write",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let got: Vec<(String, String)> = r["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_owned(),
                x["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("ms-python.python", "installed"),
        ("broken.ext", "failed"),
        ("old.ext", "not_run"),
        ("evil.miner", "refused"),
        ("not an id", "refused"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())), "{r}");
    assert_eq!(r["extensions"][3]["reason"], "denied-by-organization");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "--install-extension ms-python.python\n"
    );
}

/// Root-only: the real sandbox. A restricted run (as an unprivileged user) cannot read the
/// agent's environment file and gets no secrets; a trusted run gets them in its environment.
#[test]
fn sandboxed_restricted_runs_cannot_read_the_env_file() {
    if !crate::support::root::root() {
        return;
    }
    let agent = Agent::start("");
    let secrets = agent.write("s.json", r#"{"API_KEY": "sandboxed-s3cret-value"}"#);
    json_out(&agent.ctl(&["secrets", "put", "--file", secrets.to_str().unwrap()]));
    json_out(&agent.ctl(&["session", "create", "--repository", "octo/app"]));
    json_out(&agent.put_token("ghs_sandboxed_token_value\n", &rfc3339_in(3600)));
    // A workspace of the creator's (a uid of its own: the restricted principal sees it through
    // an idmapped view, the trusted run is root here).
    let ws_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws_dir.path(), Some(64_999), Some(64_999)).unwrap();
    let ws = ws_dir.path().to_str().unwrap().to_owned();
    std::fs::write(
        ws_dir.path().join(".devcontainer.json"),
        format!(
            r#"{{"postAttachCommand": "id -u; echo len=${{#API_KEY}} tlen=${{#GITHUB_TOKEN}}; cat {} ; echo rc=$?"}}"#,
            agent.env_file().display()
        ),
    )
    .unwrap();
    let args = |access: &'static str| {
        vec![
            "lifecycle",
            "run",
            "--devcontainer",
            ".devcontainer.json",
            "--workspace",
            ws.as_str(),
            "--phase",
            "attach",
            "--creator-access",
            access,
            "--json",
        ]
    };
    let out = agent.ctl(&args("read"));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {} {}\n{}", stdout(&out), stderr(&out), agent.log()));
    assert_eq!(r["launcher"], "sandbox", "{r}");
    assert_eq!(r["profile"], "restricted");
    assert_ne!(r["user"]["uid"], 0, "{r}");
    assert_eq!(r["user"]["name"], "nobody", "the restricted identity: {r}");
    assert_eq!(r["commands"][0]["sandbox"]["no_new_privs"], true, "{r}");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("len=0 tlen=0"), "{log}");
    assert!(log.contains("rc=1"), "the env file was readable: {log}");
    assert!(!log.contains("sandboxed-s3cret"), "{log}");

    let out = agent.ctl(&args("write"));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["profile"], "trusted", "{r}");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    // The secret is in a trusted run's environment (22 bytes) and redacted from its output.
    assert!(log.contains("len=22 tlen=25"), "{log}");
    assert_eq!(r["token_injected"], true);
    assert!(!log.contains("sandboxed-s3cret"), "{log}");
    assert!(!log.contains("ghs_sandboxed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watch_pushes_config_changed_through_the_agent() {
    let agent = Agent::start(PLAIN);
    let ws = workspace(&agent, r#"{"image": "a"}"#);
    let c = agent.client().await;
    let mut fields = serde_json::Map::new();
    fields.insert("workspace".into(), ws.clone().into());
    let r = c
        .request("config_watch", fields, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        r["file"].as_str().unwrap().ends_with("devcontainer.json"),
        "{r}"
    );
    let file = Path::new(&ws).join(".devcontainer/devcontainer.json");
    std::fs::write(&file, r#"{"image": "a", "runArgs": ["--privileged"]}"#).unwrap();
    let ev = loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), c.next_event())
            .await
            .expect("no config_changed within 10 s")
            .unwrap();
        if ev.name == "config_changed" {
            break ev;
        }
    };
    assert_eq!(ev.fields["valid"], true);
    assert_eq!(
        ev.fields["security_relevant"],
        serde_json::json!(["mounts_run_args_privileges"])
    );
    assert_eq!(ev.fields["rebuild_required"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_serves_other_requests_while_a_run_is_in_flight() {
    let agent = Agent::start(r#""request_timeout_ms": 1000, "lifecycle": {"launcher": "plain"}"#);
    let ws = workspace(&agent, r#"{"postStartCommand": "sleep 2"}"#);
    let c = std::sync::Arc::new(agent.client().await);
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"phase": "start", "workspace": ws,
                           "devcontainer": ".devcontainer/devcontainer.json",
                           "repository": "octo/app", "creator_access": "write"}))
        .unwrap();
    let started = std::time::Instant::now();
    let run = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request("lifecycle_run", fields, std::time::Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pong = c
        .request(
            "ping",
            serde_json::Map::new(),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(pong["pong"], true);
    assert!(
        !run.is_finished(),
        "the run ended before the ping was answered"
    );
    let r = run.await.unwrap().unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    // Longer than the agent's 1 s request timeout, yet answered.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_on_when_its_connection_closes() {
    let agent = Agent::start(r#""shutdown_grace_ms": 100, "lifecycle": {"launcher": "plain"}"#);
    // Two steps: if the run were dropped with its connection, the second would never start.
    let ws = workspace(
        &agent,
        r#"{"onCreateCommand": "sleep 1", "postCreateCommand": "touch $WS/done"}"#,
    );
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"phase": "create", "workspace": ws,
                           "devcontainer": ".devcontainer/devcontainer.json",
                           "repository": "octo/app", "creator_access": "write"}))
        .unwrap();
    {
        let c = agent.client().await;
        // The request is sent, then the client goes away before the command ends.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            c.request("lifecycle_run", fields, std::time::Duration::from_secs(60)),
        )
        .await;
    }
    let done = Path::new(&ws).join("done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run was cut when its connection closed; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
