//! `codespace-agentctl trail`: the agent's audit trail as JSON lines.
//!
//! ```text
//! trail [--since S]            pages of `trail {since}` until the agent has no more, then exits
//! trail [--since S] --follow   the same, then the `audit` events as they come
//! ```
//!
//! The work is [`codespace_agent::host::trail::TrailReader`]'s: every record is printed once,
//! in sequence order, though pages and events overlap. If the client had to drop events (a
//! burst bigger than its buffer while stdout was slow), the gap is filled by catching up
//! again. When the agent no longer holds records after `--since` (its ring turned over), a
//! warning on stderr says how many were missed.

use std::io::Write as _;

use codespace_agent::host::trail::TrailReader;
use codespace_agent::host::{Client, ClientError};
use serde_json::Value;

use crate::connect::{Failure, REQUEST_TIMEOUT};

/// `trail` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TrailArgs {
    /// Print only the records after this sequence number (the last one you have).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
    /// After the records kept, print new ones as they happen, until interrupted.
    #[arg(long)]
    pub follow: bool,
}

/// Prints the trail; see the module docs.
pub(crate) async fn run(client: &Client, args: &TrailArgs) -> Result<(), Failure> {
    let mut reader = TrailReader::new(args.since);
    if !catch_up(client, &mut reader).await? || !args.follow {
        return Ok(());
    }
    let mut dropped = client.events_dropped();
    while let Some(event) = client.next_event().await {
        if client.events_dropped() != dropped {
            dropped = client.events_dropped();
            if !catch_up(client, &mut reader).await? {
                return Ok(());
            }
        }
        if let Some(record) = reader.take_event(&event) {
            if !print(&record) {
                return Ok(()); // stdout closed (`| head`)
            }
        }
    }
    Err(Failure::Agent(ClientError::Disconnected))
}

/// Prints what the agent holds after the reader's position; false once stdout is closed.
async fn catch_up(client: &Client, reader: &mut TrailReader) -> Result<bool, Failure> {
    let from = reader.last();
    let done = reader
        .catch_up(client, REQUEST_TIMEOUT, print)
        .await
        .map_err(Failure::Agent)?;
    if done.missed > 0 {
        eprintln!(
            "codespace-agentctl: {} audit records after {from} are no longer kept by the agent",
            done.missed
        );
    }
    Ok(!done.stopped)
}

/// Prints one record as a JSON line; false once stdout is closed.
fn print(record: &Value) -> bool {
    let mut stdout = std::io::stdout().lock();
    let line = serde_json::to_string(record).unwrap_or_default();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_ok()
}
