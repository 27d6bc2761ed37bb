//! Container registry credentials through the real daemon, `codespace-agentctl registry` and
//! the real Docker credential helper (`codespace-agent docker-credential`): the helper's
//! answers are the test. A fake registry is not needed, and no network is used.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::support::{json_out, output_with_stdin, rfc3339_in, stderr, stdout, Agent};

const SECRET: &str = "ghp_registry_s3cret_value";
const NOT_FOUND: &str = "credentials not found in native keychain\n";

/// An agent that keeps its Docker configuration in `home/.docker` (a directory of the test's,
/// never the real user's or root's `~/.docker`).
fn agent_with_docker_dir(extra: &str) -> (Agent, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let sep = if extra.is_empty() { "" } else { "," };
    let agent = Agent::start(&format!(
        "\"docker_config_dir\": \"{}\"{sep} {extra}",
        docker_dir(&home).display()
    ));
    (agent, home)
}

fn docker_dir(home: &tempfile::TempDir) -> PathBuf {
    home.path().join(".docker")
}

fn put(agent: &Agent, registry: &str, secret: &str, extra: &[&str]) -> Output {
    let file = agent.write("registry-secret", &format!("{secret}\n"));
    let expires = rfc3339_in(8 * 3600);
    let mut args = vec![
        "registry",
        "put",
        "--registry",
        registry,
        "--username",
        "octocat",
        "--secret-file",
        file.to_str().unwrap(),
        "--expires-at",
        &expires,
    ];
    args.extend_from_slice(extra);
    agent.ctl(&args)
}

/// Runs the helper as Docker does: the action as the argument, the input on stdin.
fn helper(state: &Path, action: &str, input: &str) -> (Option<i32>, String, String) {
    let out = output_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_codespace-agent"))
            .args(["docker-credential", "--state-dir"])
            .arg(state)
            .arg(action),
        input.as_bytes(),
    );
    (out.status.code(), stdout(&out), stderr(&out))
}

fn state(agent: &Agent) -> PathBuf {
    agent.dir.path().join("state")
}

fn config_json(home: &tempfile::TempDir) -> Value {
    serde_json::from_str(&std::fs::read_to_string(docker_dir(home).join("config.json")).unwrap())
        .unwrap()
}

#[test]
fn the_codespace_user_gets_exactly_the_delivered_registry_and_nothing_else() {
    let (agent, home) = agent_with_docker_dir("");
    let answer = json_out(&put(&agent, "ghcr.io", SECRET, &["--scope", "octo-org"]));
    assert_eq!(answer["registry"]["registry"], "ghcr.io", "{answer}");
    assert_eq!(
        answer["docker_config"]["added"],
        json!(["ghcr.io"]),
        "{answer}"
    );
    assert!(!answer.to_string().contains(SECRET));

    // Docker's forms of the same registry are answered, with Docker's JSON.
    for url in [
        "ghcr.io",
        "https://ghcr.io",
        "ghcr.io/v2/",
        "https://ghcr.io/v2/octo/app",
    ] {
        let (code, out, err) = helper(&state(&agent), "get", &format!("{url}\n"));
        assert_eq!(code, Some(0), "{url}: {out} {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"ServerURL": url, "Username": "octocat", "Secret": SECRET}),
            "{url}"
        );
    }
    // Lookalikes and other registries: Docker's "not found", exit 1.
    for url in [
        "ghcr.io.evil.com",
        "evil.com/ghcr.io",
        "https://evil.com/ghcr.io",
        "ghcr.io@evil.com",
        "https://user@ghcr.io",
        "ghcr.io:443",
        "quay.io",
    ] {
        let (code, out, _) = helper(&state(&agent), "get", url);
        assert_eq!((code, out.as_str()), (Some(1), NOT_FOUND), "{url}");
    }
    let (code, out, _) = helper(&state(&agent), "list", "");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "{\"ghcr.io\":\"octocat\"}\n")
    );
    // store and erase are refused politely; nothing changes.
    for (action, input) in [
        (
            "store",
            r#"{"ServerURL":"ghcr.io","Username":"me","Secret":"mine"}"#,
        ),
        ("erase", "ghcr.io"),
    ] {
        let (code, out, _) = helper(&state(&agent), action, input);
        assert_eq!(code, Some(1), "{action}");
        assert!(out.contains("delivered by the codespace host"), "{out}");
    }
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").0, Some(0));

    // status lists it without the secret; the config names the helper, never the secret.
    let status = json_out(&agent.ctl(&["status"]));
    let registries = &status["registries"];
    assert_eq!(registries[0]["registry"], "ghcr.io", "{status}");
    assert_eq!(registries[0]["username"], "octocat");
    assert_eq!(registries[0]["scope"], "octo-org");
    assert!(registries[0]["expires_at"].is_string());
    assert!(!status.to_string().contains(SECRET));
    assert_eq!(
        config_json(&home),
        json!({"credHelpers": {"ghcr.io": "codespace"}})
    );
    let text = std::fs::read_to_string(docker_dir(&home).join("config.json")).unwrap();
    assert!(!text.contains(SECRET));
    assert!(!agent.log().contains(SECRET), "secret in the agent log");
    // Every answer and refusal is in the audit trail, by registry and caller, without the secret.
    let out = agent.ctl(&["trail"]);
    let text = stdout(&out);
    assert!(out.status.success() && !text.contains(SECRET), "{text}");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["kind"] == "registry")
        .collect();
    let answered = records
        .iter()
        .find(|r| r["result"] == "answered" && r["action"] == "get")
        .unwrap_or_else(|| panic!("no answered registry record: {text}"));
    assert_eq!(answered["registry"], "ghcr.io", "{answered}");
    assert!(
        answered["uid"].is_u64() && answered["pid"].is_u64(),
        "{answered}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["registry"] == "ghcr.io.evil.com" && r["reason"] == "unknown-registry"),
        "{text}"
    );
    assert!(
        agent.log().contains("registry credential request"),
        "{}",
        agent.log()
    );

    // Removed: not answered, and the helper entry goes.
    let answer = json_out(&agent.ctl(&["registry", "remove", "--registry", "https://ghcr.io/"]));
    assert_eq!(answer["removed"], "ghcr.io");
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").1, NOT_FOUND);
    assert_eq!(config_json(&home), json!({"credHelpers": {}}));
}

#[test]
fn a_caller_whose_uid_is_not_allowed_gets_nothing() {
    let me = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let other = if me == 4242 { 4243 } else { 4242 };
    let (agent, _home) = agent_with_docker_dir(&format!("\"credential_uids\": [{other}]"));
    json_out(&put(&agent, "ghcr.io", SECRET, &[]));
    let (code, out, _) = helper(&state(&agent), "get", "ghcr.io");
    assert_eq!((code, out.as_str()), (Some(1), NOT_FOUND));
    assert_eq!(helper(&state(&agent), "list", "").1, "{}\n");
}

#[test]
fn bad_deliveries_are_refused_before_or_by_the_agent() {
    let (agent, _home) = agent_with_docker_dir("");
    // Refused here, before connecting (exit 2).
    for registry in ["ghcr.io@evil.com", "ftp://ghcr.io", ""] {
        let out = put(&agent, registry, SECRET, &[]);
        assert_eq!(out.status.code(), Some(2), "{registry}: {}", stderr(&out));
    }
    // Refused by the agent (exit 1), naming the field and never the secret.
    let out = put(&agent, "ghcr.io", SECRET, &["--scope", "octo/app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("scope"), "{}", stderr(&out));
    let expired = agent.write("s", SECRET);
    let out = agent.ctl(&[
        "registry",
        "put",
        "--registry",
        "ghcr.io",
        "--username",
        "octocat",
        "--secret-file",
        expired.to_str().unwrap(),
        "--expires-at",
        &rfc3339_in(-60),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expires_at"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(SECRET) && !agent.log().contains(SECRET));
    let out = agent.ctl(&["registry", "remove", "--registry", "quay.io"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no credential"), "{}", stderr(&out));
}

#[test]
fn the_users_docker_config_is_merged_and_an_invalid_one_is_reported_not_clobbered() {
    let (agent, home) = agent_with_docker_dir("");
    std::fs::create_dir(docker_dir(&home)).unwrap();
    let users = json!({
        "auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}},
        "credHelpers": {"gcr.io": "gcloud", "registry.example": "pass"},
        "detachKeys": "ctrl-x"
    });
    let path = docker_dir(&home).join("config.json");
    std::fs::write(&path, users.to_string()).unwrap();
    let answer = json_out(&put(&agent, "ghcr.io", SECRET, &[]));
    assert_eq!(answer["docker_config"]["written"], true, "{answer}");
    let answer = json_out(&put(&agent, "registry.example", "other-secret", &[]));
    assert_eq!(
        answer["docker_config"]["kept_users_helper"],
        json!(["registry.example"]),
        "{answer}"
    );
    assert_eq!(
        config_json(&home),
        json!({
            "auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}},
            "credHelpers": {"gcr.io": "gcloud", "registry.example": "pass", "ghcr.io": "codespace"},
            "detachKeys": "ctrl-x"
        })
    );
    // A file the user broke is left as it is; the credential is still held and answered.
    let broken = "{\"auths\": {\"quay.io\": {}},";
    std::fs::write(&path, broken).unwrap();
    let out = put(&agent, "quay.io", SECRET, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let error = answer["docker_config"]["error"].as_str().unwrap();
    assert!(
        error.contains("not valid JSON") && error.contains("config.json"),
        "{error}"
    );
    assert!(stderr(&out).contains("did not update the Docker configuration"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    assert_eq!(helper(&state(&agent), "get", "quay.io").0, Some(0));
    let status = json_out(&agent.ctl(&["status"]));
    assert!(status["docker_config"]["error"].is_string(), "{status}");
}

#[test]
fn in_a_prebuild_registry_credentials_are_off() {
    let (agent, home) = agent_with_docker_dir("");
    json_out(&put(&agent, "ghcr.io", SECRET, &[]));
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").0, Some(0));
    // The codespace becomes a prebuild: what was held is wiped, Docker is no longer pointed at
    // the helper, and nothing new is taken.
    let report = json_out(&agent.ctl(&["session", "create", "--prebuild"]));
    assert_eq!(report["prebuild"]["registries_wiped"], 1, "{report}");
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").1, NOT_FOUND);
    assert_eq!(config_json(&home), json!({"credHelpers": {}}));
    let out = put(&agent, "ghcr.io", SECRET, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("prebuilds"), "{}", stderr(&out));
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").1, NOT_FOUND);
    // Once the prebuild ends, the host may deliver them again.
    json_out(&agent.ctl(&["session", "create", "--prebuild=false"]));
    json_out(&put(&agent, "ghcr.io", SECRET, &[]));
    assert_eq!(helper(&state(&agent), "get", "ghcr.io").0, Some(0));
}

/// A restricted lifecycle run (a fork's pull request, a read-only creator) asks the helper: it
/// gets Docker's "not found"; a trusted run of the creator is answered, and the secret is
/// redacted from its output.
#[test]
fn a_restricted_run_gets_nothing_and_a_trusted_run_sees_no_secret_in_its_output() {
    if !crate::support::root::root() {
        return;
    }
    let (agent, _home) = agent_with_docker_dir("");
    json_out(&agent.ctl(&["session", "create", "--repository", "octo/app"]));
    json_out(&put(&agent, "ghcr.io", SECRET, &[]));
    let ws_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws_dir.path(), Some(64_999), Some(64_999)).unwrap();
    let ws = ws_dir.path().to_str().unwrap().to_owned();
    std::fs::write(
        ws_dir.path().join(".devcontainer.json"),
        format!(
            r#"{{"postAttachCommand": "printf ghcr.io | {} docker-credential --state-dir {} get; echo rc=$?"}}"#,
            env!("CARGO_BIN_EXE_codespace-agent"),
            state(&agent).display()
        ),
    )
    .unwrap();
    let run = |access: &str| {
        agent.lifecycle_run_json(
            ".devcontainer.json",
            &ws,
            "attach",
            &["--creator-access", access],
        )
    };
    let (r, log) = run("read");
    assert_eq!(r["profile"], "restricted", "{r}");
    assert!(
        log.contains("credentials not found in native keychain"),
        "{log}"
    );
    assert!(log.contains("rc=1"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    let (r, log) = run("write");
    assert_eq!(r["profile"], "trusted", "{r}");
    assert!(log.contains("\"Username\":\"octocat\""), "{log}");
    assert!(log.contains("rc=0"), "{log}");
    assert!(
        !log.contains(SECRET),
        "the registry secret reached a run's log: {log}"
    );
}

/// Docker itself finds `docker-credential-codespace` on PATH and reads its answer: `docker
/// login` with no daemon (DOCKER_HOST is a socket that does not exist) first looks up stored
/// credentials through the helper and says whose they are. Needs the docker CLI only; skipped
/// (with a line saying so) on a machine without it.
#[test]
fn docker_itself_runs_docker_credential_codespace() {
    let Some(docker) = find_docker() else {
        eprintln!("skipped: no docker CLI on PATH");
        return;
    };
    let (agent, home) = agent_with_docker_dir("");
    // A loopback registry: even if this Docker tried the registry, it would stay on this host.
    json_out(&put(&agent, "127.0.0.1:1", SECRET, &[]));
    assert_eq!(
        config_json(&home),
        json!({"credHelpers": {"127.0.0.1:1": "codespace"}})
    );
    // The shipped wrapper, pointed at this agent's state directory and binary.
    let bin = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/docker-credential-codespace"),
    )
    .unwrap();
    let exec_line = "exec /usr/bin/codespace-agent docker-credential \"$@\"";
    assert!(shipped.contains(exec_line), "{shipped}");
    let wrapper = shipped.replace(
        exec_line,
        &format!(
            "exec {} docker-credential --state-dir {} \"$@\"",
            env!("CARGO_BIN_EXE_codespace-agent"),
            state(&agent).display()
        ),
    );
    let helper_path = bin.path().join("docker-credential-codespace");
    std::fs::write(&helper_path, wrapper).unwrap();
    std::fs::set_permissions(
        &helper_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(docker)
        .args(["login", "127.0.0.1:1"])
        .env("PATH", path)
        .env("DOCKER_CONFIG", docker_dir(&home))
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-daemon.sock", bin.path().display()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("Authenticating with existing credentials... [Username: octocat]"),
        "docker did not get the credential from the helper:\n{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}

fn find_docker() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("docker"))
            .find(|f| f.is_file())
    })
}
