//! `codespace-agentctl lifecycle …`: run lifecycle phases, install extensions and watch the
//! configuration through a running agent.
//!
//! `lifecycle run` prints each command's output as the agent streams it (stdout to stdout,
//! stderr to stderr; progress lines on stderr), then a summary. Exit codes:
//! 0 every command succeeded (or was interrupted, exit 130, which the reference CLI does not
//! count as a failure); otherwise the first failing command's own exit status, 128+N when a
//! signal killed it, 124 when it timed out, 127 when it could not be started; 77 when the
//! profile is blocked and `--approve` was not given; 1 agent error, 2 invalid arguments,
//! 3 agent not reachable, 4 protocol violation by the agent (as for the other commands). `--json` prints only the agent's result
//! object, which tells these cases apart unambiguously.
//!
//! Everything the agent sends (command output, names, reasons) is printed through
//! [`crate::sanitize`]: control characters escaped, forged `==>` lines marked.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codespace_agent::host::{Client, ClientError};
use serde_json::{json, Map, Value};

use crate::connect::{options, ConnectArgs, TrustFactArgs};
use crate::sanitize::{field, Output, Stream};

/// How long the CLI waits for an answer: the agent enforces the real deadline.
const WAIT: Duration = Duration::from_secs(24 * 3600);
/// How long output events may trail the result.
const TRAILING: Duration = Duration::from_secs(3);
/// Exit status of a blocked run.
const EXIT_BLOCKED: u8 = 77;

/// `lifecycle` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LifecycleCommand {
    /// Run a phase's lifecycle commands and print their output as it comes.
    Run(RunArgs),
    /// Install the devcontainer.json's extensions that the policy allows.
    Extensions(ExtensionsArgs),
    /// Kill everything restricted lifecycle runs left behind in this codespace (their dev
    /// servers too); prints `{"killed": N}`. The agent does this itself when `session create`
    /// changes the trust facts.
    KillRestricted,
    /// Watch the workspace's devcontainer configuration; print config_changed events.
    Watch {
        /// The workspace folder (in the VM).
        #[arg(long, value_name = "DIR")]
        workspace: String,
    },
}

/// The phases.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PhaseArg {
    /// onCreateCommand, updateContentCommand, postCreateCommand.
    Create,
    /// postStartCommand.
    Start,
    /// postAttachCommand.
    Attach,
}

/// Trust facts (default: what `session create` recorded) and run options.
#[derive(Debug, Clone, clap::Args)]
pub struct FactArgs {
    #[command(flatten)]
    pub trust: TrustFactArgs,
    /// The repository, OWNER/NAME.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// Per-command timeout in seconds (default: the agent's configuration).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print only the agent's JSON result.
    #[arg(long)]
    pub json: bool,
}

/// `lifecycle run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The devcontainer.json (in the VM; relative to the workspace if relative).
    #[arg(long, value_name = "PATH")]
    pub devcontainer: String,
    /// The workspace folder (in the VM).
    #[arg(long, value_name = "DIR")]
    pub workspace: String,
    /// The phase.
    #[arg(long, value_enum)]
    pub phase: PhaseArg,
    /// The creator approves running a blocked profile (it then runs restricted).
    #[arg(long)]
    pub approve: bool,
    #[command(flatten)]
    facts: FactArgs,
}

/// `lifecycle extensions` arguments.
#[derive(Debug, clap::Args)]
pub struct ExtensionsArgs {
    /// The devcontainer.json to read the extensions from.
    #[arg(long, value_name = "PATH")]
    pub devcontainer: Option<String>,
    /// The workspace folder (in the VM).
    #[arg(long, value_name = "DIR")]
    pub workspace: String,
    /// Extensions to install instead of the file's (repeatable).
    #[arg(long = "extension", value_name = "ID")]
    pub extensions: Vec<String>,
    #[command(flatten)]
    facts: FactArgs,
}

fn fact_fields(m: &mut Map<String, Value>, f: &FactArgs, run_id: &str) {
    f.trust.insert_into(m);
    if let Some(r) = &f.repository {
        m.insert("repository".into(), r.clone().into());
    }
    if let Some(t) = f.timeout {
        m.insert("timeout_s".into(), t.into());
    }
    m.insert("run_id".into(), run_id.into());
}

fn fresh_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("ctl-{}-{nanos}", std::process::id())
}

/// Runs a `lifecycle` subcommand.
pub fn run(args: &ConnectArgs, cmd: LifecycleCommand) -> ExitCode {
    let runtime = match crate::connect::runtime(false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(execute(args, cmd))
}

async fn execute(args: &ConnectArgs, cmd: LifecycleCommand) -> ExitCode {
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("codespace-agentctl: {e:#}");
            return ExitCode::from(2);
        }
    };
    let run_id = fresh_run_id();
    let (kind, fields, json_only) = match &cmd {
        LifecycleCommand::Run(r) => {
            let mut m = Map::new();
            m.insert(
                "phase".into(),
                format!("{:?}", r.phase).to_lowercase().into(),
            );
            m.insert("workspace".into(), r.workspace.clone().into());
            m.insert("devcontainer".into(), r.devcontainer.clone().into());
            if r.approve {
                m.insert("approve".into(), true.into());
            }
            fact_fields(&mut m, &r.facts, &run_id);
            ("lifecycle_run", m, r.facts.json)
        }
        LifecycleCommand::Extensions(x) => {
            let mut m = Map::new();
            m.insert("workspace".into(), x.workspace.clone().into());
            if let Some(d) = &x.devcontainer {
                m.insert("devcontainer".into(), d.clone().into());
            }
            if !x.extensions.is_empty() {
                m.insert("extensions".into(), json!(x.extensions));
            }
            fact_fields(&mut m, &x.facts, &run_id);
            ("extensions_install", m, x.facts.json)
        }
        LifecycleCommand::Watch { workspace } => {
            let mut m = Map::new();
            m.insert("workspace".into(), workspace.clone().into());
            ("config_watch", m, true)
        }
        LifecycleCommand::KillRestricted => ("restricted_kill", Map::new(), true),
    };
    let client = match Client::connect(&opts).await {
        Ok(c) => c,
        Err(e) => return crate::connect::client_failure(&e),
    };
    if kind == "config_watch" {
        return watch(&client, fields).await;
    }
    if kind == "restricted_kill" {
        return match client.request(kind, fields, WAIT).await {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => crate::connect::client_failure(&e),
        };
    }
    let request = client.request(kind, fields, WAIT);
    tokio::pin!(request);
    let mut result = None;
    let mut finished = false;
    let mut trailing = None;
    let mut streams = Streams::default();
    loop {
        tokio::select! {
            r = &mut request, if result.is_none() => {
                result = Some(r);
                trailing = Some(Box::pin(tokio::time::sleep(TRAILING)));
            }
            ev = client.next_event(), if !finished => {
                let Some(ev) = ev else { finished = true; continue };
                if ev.fields.get("run").and_then(Value::as_str) != Some(run_id.as_str()) {
                    continue;
                }
                if ev.name == "lifecycle_finished" {
                    finished = true;
                } else if !json_only {
                    streams.show(&ev.name, &ev.fields);
                }
            }
            () = async { if let Some(t) = trailing.as_mut() { t.await } }, if trailing.is_some() => {
                finished = true;
            }
        }
        if result.is_some() && finished {
            break;
        }
    }
    streams.finish();
    let result = match result {
        Some(Ok(v)) => v,
        Some(Err(e)) => return crate::connect::client_failure(&e),
        None => return ExitCode::from(3),
    };
    if json_only {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        summary(&result);
    }
    exit_code(&result)
}

/// Command output and progress of a run, on stdout and stderr.
#[derive(Debug, Default)]
struct Streams(Output);

impl Streams {
    /// What one event prints, and where.
    fn render(&mut self, name: &str, f: &Map<String, Value>) -> Option<(Stream, String)> {
        let command = f.get("command").and_then(Value::as_str).unwrap_or("?");
        match name {
            "lifecycle_output" => {
                let data = f.get("data").and_then(Value::as_str).unwrap_or_default();
                let stream = if f.get("stream").and_then(Value::as_str) == Some("stderr") {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                Some((stream, self.0.push(stream, data)))
            }
            "lifecycle_command" => {
                let line = match f.get("state").and_then(Value::as_str) {
                    Some("started") => format!("==> {}\n", field(command)),
                    Some("not_started") => format!(
                        "==> {}: not started: {}\n",
                        field(command),
                        field(f.get("reason").and_then(Value::as_str).unwrap_or(""))
                    ),
                    _ => return None,
                };
                self.0.own_line(Stream::Stderr);
                Some((Stream::Stderr, line))
            }
            _ => None,
        }
    }

    /// Prints one event's progress or output.
    fn show(&mut self, name: &str, f: &Map<String, Value>) {
        if let Some((stream, text)) = self.render(name, f) {
            print_to(stream, &text);
        }
    }

    /// Prints what the streams still hold back.
    fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            print_to(stream, &self.0.finish(stream));
        }
    }
}

fn print_to(stream: Stream, text: &str) {
    if text.is_empty() {
        return;
    }
    let _ = match stream {
        Stream::Stderr => {
            let mut e = std::io::stderr().lock();
            e.write_all(text.as_bytes()).and_then(|()| e.flush())
        }
        Stream::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        }
    };
}

fn summary(result: &Value) {
    if result["status"] == "blocked" {
        eprintln!(
            "==> blocked: {}",
            field(
                result["reason"]
                    .as_str()
                    .unwrap_or("needs the creator's approval")
            )
        );
    }
    let empty = Vec::new();
    for c in result["commands"].as_array().unwrap_or(&empty) {
        eprintln!(
            "==> {}: {}{}",
            field(c["name"].as_str().unwrap_or("?")),
            field(c["status"].as_str().unwrap_or("?")),
            match (&c["exit_code"], &c["signal"]) {
                (Value::Number(n), _) => format!(" (exit {n})"),
                (_, Value::Number(s)) => format!(" (signal {s})"),
                _ => c["reason"]
                    .as_str()
                    .map(|r| format!(" ({})", field(r)))
                    .unwrap_or_default(),
            }
        );
    }
    for s in result["skipped"].as_array().unwrap_or(&empty) {
        eprintln!(
            "==> {}: not run ({})",
            field(s["property"].as_str().unwrap_or("?")),
            field(s["reason"].as_str().unwrap_or("?"))
        );
    }
    for x in result["extensions"].as_array().unwrap_or(&empty) {
        eprintln!(
            "==> {} {}: {}{}",
            field(x["action"].as_str().unwrap_or("?")),
            field(x["id"].as_str().unwrap_or("?")),
            field(x["status"].as_str().unwrap_or("?")),
            x["reason"]
                .as_str()
                .map(|r| format!(" ({})", field(r)))
                .unwrap_or_default()
        );
    }
}

/// The documented exit status of a result.
fn exit_code(result: &Value) -> ExitCode {
    if result["status"] == "blocked" {
        return ExitCode::from(EXIT_BLOCKED);
    }
    let empty = Vec::new();
    let commands = result["commands"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .chain(
            result["extensions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|x| x.get("command")),
        );
    for c in commands {
        let code = match c["status"].as_str() {
            Some("failed") => match (c["exit_code"].as_i64(), c["signal"].as_i64()) {
                (Some(n), _) => n,
                (None, Some(s)) => 128 + s,
                _ => 1,
            },
            Some("timed_out") => 124,
            Some("not_started") => 127,
            _ => continue,
        };
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    ExitCode::SUCCESS
}

async fn watch(client: &Client, fields: Map<String, Value>) -> ExitCode {
    match client
        .request("config_watch", fields, Duration::from_secs(30))
        .await
    {
        // `{v}` is JSON: serde escapes control characters.
        Ok(v) => eprintln!("watching: {v}"),
        Err(e) => return crate::connect::client_failure(&e),
    }
    while let Some(ev) = client.next_event().await {
        if ev.name != "config_changed" {
            continue;
        }
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(&Value::Object(ev.to_object())).unwrap_or_default();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    crate::connect::client_failure(&ClientError::Disconnected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn agent_text_is_neutralised_per_command_and_stream() {
        let mut s = Streams::default();
        let out = |command: &str, stream: &str, data: &str| {
            event(json!({"command": command, "stream": stream, "data": data}))
        };
        let mut render = |name: &str, f: Map<String, Value>| s.render(name, &f);
        // Two commands interleave on one stdout: the line start is the stream's.
        assert_eq!(
            render("lifecycle_output", out("a", "stdout", "x\n==")),
            Some((Stream::Stdout, "x\n".into()))
        );
        assert_eq!(
            render("lifecycle_output", out("b", "stdout", "> fake\n")),
            Some((Stream::Stdout, "| ==> fake\n".into()))
        );
        assert_eq!(
            render(
                "lifecycle_output",
                out("a", "stderr", "\u{1b}]52;c;ZXZpbA==\u{7}")
            ),
            Some((Stream::Stderr, "\\e]52;c;ZXZpbA==\\x07".into()))
        );
        assert_eq!(
            render(
                "lifecycle_command",
                event(
                    json!({"command": "c\n==> d: succeeded", "state": "not_started",
                             "reason": "\u{1b}[2J"})
                )
            ),
            Some((
                Stream::Stderr,
                "==> c\\n==> d: succeeded: not started: \\e[2J\n".into()
            ))
        );
    }
}
