//! Runner tests over the plain launcher: ordering, parallelism, failure, timeout, redaction.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::guest::lifecycle::launcher::{LaunchLimits, PlainLauncher, Trust};
use crate::guest::lifecycle::plan::{plan, RunPhase};
use crate::guest::user::Account;
use std::path::Path;

fn spec(dir: &Path, timeout: Duration) -> LaunchSpec {
    LaunchSpec {
        strength: Trust::Restricted,
        user: Account {
            name: "me".into(),
            uid: 0,
            gid: 0,
            home: dir.to_owned(),
            shell: "/bin/sh".into(),
        },
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: dir.to_owned(),
        workspace: dir.to_owned(),
        state_dir: dir.join("state"),
        limits: LaunchLimits {
            timeout,
            grace: Duration::from_millis(100),
        },
        facts: None,
    }
}

fn trusted() -> codespace_policy::Authorized<codespace_policy::lifecycle::RunProfile> {
    let facts = codespace_policy::lifecycle::LifecycleFacts {
        creator_access: codespace_policy::repo::AccessLevel::Write,
        pull_request_from_fork: false,
        prebuild: false,
        repository: codespace_policy::repo::RepoName::parse("octo/app").unwrap(),
    };
    codespace_policy::lifecycle::decide(&facts, None)
        .authorize()
        .unwrap()
}

async fn run(
    text: &str,
    phase: RunPhase,
    secrets: &[&str],
    timeout: Duration,
) -> (RunOutcome, Vec<Event>, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace("$DIR", dir.path().to_str().unwrap());
    let dc = codespace_devcontainer::parse_devcontainer(&text)
        .model
        .unwrap();
    let p = plan(&dc, phase, false);
    let (tx, mut rx) = EventSink::channel(4096);
    let runner = Runner::new(Arc::new(PlainLauncher), tx);
    let log_path = dir.path().join("run.log");
    let out = runner
        .run(
            &p,
            RunInput {
                profile: trusted(),
                run_id: "r1".into(),
                spec: spec(dir.path(), timeout),
                needles: Needles::new(secrets.iter().map(|s| s.as_bytes())),
                log: Some(BoundedLog::create(&log_path, 1 << 16, 1 << 16).unwrap()),
            },
        )
        .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    (out, events, log)
}

fn output(events: &[Event], command: &str, stream: &str) -> String {
    events
        .iter()
        .filter(|e| e.name == "lifecycle_output")
        .filter(|e| e.fields["command"] == command && e.fields["stream"] == stream)
        .map(|e| e.fields["data"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_form_runs_in_order() {
    let (out, events, log) = run(
        r#"{
            "onCreateCommand": "echo one; echo err >&2",
            "updateContentCommand": ["/bin/echo", "two $HOME"],
            "postCreateCommand": {"x": "echo three"},
        }"#,
        RunPhase::Create,
        &[],
        Duration::from_secs(10),
    )
    .await;
    let names: Vec<_> = out.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand.x"
        ]
    );
    assert!(out
        .commands
        .iter()
        .all(|c| c.status == CommandStatus::Succeeded));
    assert_eq!(output(&events, "onCreateCommand", "stdout"), "one\n");
    assert_eq!(output(&events, "onCreateCommand", "stderr"), "err\n");
    // Exec form: no shell, so $HOME stays literal.
    assert_eq!(
        output(&events, "updateContentCommand", "stdout"),
        "two $HOME\n"
    );
    assert_eq!(out.commands[1].form, "exec");
    assert!(
        log.contains("--- onCreateCommand (stdout) ---\none"),
        "{log}"
    );
    assert_eq!(out.first_failure, None);
}

#[tokio::test]
async fn a_failure_stops_later_steps_but_not_its_siblings() {
    let (out, _, _) = run(
        r#"{
            "onCreateCommand": {"bad": "exit 7", "good": "sleep 0.2; touch $DIR/sibling"},
            "updateContentCommand": "touch $DIR/never",
            "postCreateCommand": "touch $DIR/never",
        }"#,
        RunPhase::Create,
        &[],
        Duration::from_secs(10),
    )
    .await;
    let st: Vec<_> = out.commands.iter().map(|c| c.status).collect();
    assert_eq!(
        st,
        [
            CommandStatus::Failed,
            CommandStatus::Succeeded,
            CommandStatus::Skipped,
            CommandStatus::Skipped
        ]
    );
    assert_eq!(out.commands[0].exit_code, Some(7));
    assert_eq!(out.first_failure.as_deref(), Some("onCreateCommand.bad"));
    assert!(out.commands[2]
        .reason
        .as_deref()
        .unwrap()
        .contains("onCreateCommand.bad"));
}

#[tokio::test]
async fn object_entries_run_in_parallel() {
    // Each entry waits (bounded) for the other's marker: only parallel execution finishes both.
    let (out, _, _) = run(
        r#"{"postStartCommand": {
            "a": "touch $DIR/a; i=0; while [ ! -e $DIR/b ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e $DIR/b ]",
            "b": "touch $DIR/b; i=0; while [ ! -e $DIR/a ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e $DIR/a ]"
        }}"#,
        RunPhase::Start,
        &[],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        out.commands
            .iter()
            .all(|c| c.status == CommandStatus::Succeeded),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_timeout_is_reported_and_stops_the_run() {
    let (out, _, _) = run(
        r#"{"onCreateCommand": "sleep 30", "postCreateCommand": "true"}"#,
        RunPhase::Create,
        &[],
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(out.commands[0].status, CommandStatus::TimedOut);
    assert!(out.commands[0].timed_out);
    assert_eq!(out.commands[1].status, CommandStatus::Skipped);
}

#[tokio::test]
async fn exit_130_is_interrupted_not_failed_and_missing_programs_do_not_start() {
    let (out, _, _) = run(
        r#"{"onCreateCommand": "exit 130", "updateContentCommand": ["/nonexistent/x"], "postCreateCommand": "true"}"#,
        RunPhase::Create,
        &[],
        Duration::from_secs(5),
    )
    .await;
    let st: Vec<_> = out.commands.iter().map(|c| c.status).collect();
    assert_eq!(
        st,
        [
            CommandStatus::Interrupted,
            CommandStatus::NotStarted,
            CommandStatus::Skipped
        ]
    );
    assert!(out.commands[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("/nonexistent/x"));
}

#[tokio::test]
async fn secrets_split_across_writes_are_redacted_in_events_and_log() {
    let (out, events, log) = run(
        r#"{"postAttachCommand": "printf 'key=sup3r'; sleep 0.1; printf 's3cret-value!\\n'; printf 'sup3rs3cret-value' >&2"}"#,
        RunPhase::Attach,
        &["sup3rs3cret-value"],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(out.commands[0].status, CommandStatus::Succeeded);
    let stdout = output(&events, "postAttachCommand", "stdout");
    assert_eq!(stdout, "key=[redacted]!\n");
    assert_eq!(output(&events, "postAttachCommand", "stderr"), "[redacted]");
    assert!(!log.contains("sup3rs3cret"), "{log}");
    assert!(log.contains("key=[redacted]!"), "{log}");
    // The argv in the result is redacted too (the value is in the shell string).
    assert!(!out.commands[0].argv[2].contains("sup3rs3cret-value"));
}
