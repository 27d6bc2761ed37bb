//! `codespace-agentctl policy <topic>`: the policy library's decisions for host supervisors and
//! CI, without writing Rust.
//!
//! One JSON object in (stdin, or `--input FILE`), one JSON object out on stdout. The contracts
//! and all parsing live in `codespace_policy::cli`; this module only does the I/O and maps
//! results to exit codes:
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | a decision was printed (allow and deny alike) |
//! | 1 | the input could not be read (missing file, unreadable stdin) |
//! | 2 | invalid input; stderr names each bad field by JSON pointer |

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use codespace_policy::cli::{self, Topic};

/// Arguments of `codespace-agentctl policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Which decision to make.
    #[arg(value_enum)]
    topic: TopicArg,
    /// Read the input JSON object from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// The topics, as clap spells them (kebab-case, the same names as `Topic::name`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TopicArg {
    /// The repository token's scope.
    TokenScope,
    /// Whether a principal may reach a forwarded port.
    PortAccess,
    /// Port visibilities after a sequence of events.
    PortReplay,
    /// Which secrets are injected.
    Secrets,
    /// Which extensions are installed.
    Extensions,
    /// The lifecycle commands' trust profile.
    Lifecycle,
}

impl TopicArg {
    fn topic(self) -> Topic {
        match self {
            TopicArg::TokenScope => Topic::TokenScope,
            TopicArg::PortAccess => Topic::PortAccess,
            TopicArg::PortReplay => Topic::PortReplay,
            TopicArg::Secrets => Topic::Secrets,
            TopicArg::Extensions => Topic::Extensions,
            TopicArg::Lifecycle => Topic::Lifecycle,
        }
    }
}

/// Runs the command.
pub fn run(args: &PolicyArgs) -> ExitCode {
    let topic = args.topic.topic();
    let text = match read_input(args.input.as_ref()) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("codespace-agentctl policy {}: {err}", topic.name());
            return ExitCode::from(1);
        }
    };
    match cli::run(topic, &text) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("codespace-agentctl policy {}: {err}", topic.name());
            ExitCode::from(2)
        }
    }
}

fn read_input(path: Option<&PathBuf>) -> Result<String, String> {
    match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display())),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| format!("cannot read stdin: {err}"))?;
            Ok(text)
        }
    }
}
