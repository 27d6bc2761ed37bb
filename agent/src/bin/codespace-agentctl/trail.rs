//! `codespace-agentctl trail`: the agent's audit trail as JSON lines.
//!
//! ```text
//! trail [--since S]            pages of `trail {since}` until `more` is false, then exits
//! trail [--since S] --follow   the same, then the `audit` events as they come
//! ```
//!
//! The pages and the events overlap (the connection receives events from the moment it is
//! made); every record is printed once, in sequence order, because a record is printed only
//! when its `seq` is above the last one printed. If the client had to drop events (a burst
//! bigger than its buffer while stdout was slow), the gap is filled by asking for a page
//! again. When the agent no longer holds records after `--since` (its ring turned over), a
//! warning on stderr says how many were missed.

use std::io::Write as _;

use codespace_agent::host::{Client, ClientError};
use serde_json::{json, Map, Value};

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
    let mut last = args.since;
    let mut out = Printer::default();
    catch_up(client, &mut last, &mut out).await?;
    if !args.follow {
        return Ok(());
    }
    let mut dropped = client.events_dropped();
    while let Some(event) = client.next_event().await {
        if client.events_dropped() != dropped {
            dropped = client.events_dropped();
            catch_up(client, &mut last, &mut out).await?;
        }
        if event.name != "audit" {
            continue;
        }
        if !out.record(&Value::Object(event.fields), &mut last) {
            return Ok(()); // stdout closed (`| head`)
        }
    }
    Err(Failure::Agent(ClientError::Disconnected))
}

/// Asks for pages after `last` until the agent has no more, printing each record.
async fn catch_up(client: &Client, last: &mut u64, out: &mut Printer) -> Result<(), Failure> {
    loop {
        let mut fields = Map::new();
        fields.insert("since".into(), json!(*last));
        let page = client
            .request("trail", fields, REQUEST_TIMEOUT)
            .await
            .map_err(Failure::Agent)?;
        let missed = page["missed"].as_u64().unwrap_or(0);
        if missed > 0 {
            eprintln!(
                "codespace-agentctl: {missed} audit records after {last} are no longer kept by \
                 the agent; continuing at {}",
                page["first_seq"]
            );
        }
        let records = page["records"].as_array().cloned().unwrap_or_default();
        for record in &records {
            if !out.record(record, last) {
                return Ok(());
            }
        }
        if records.is_empty() || page["more"] != json!(true) {
            return Ok(());
        }
    }
}

/// Prints records as JSON lines, each once, in sequence order.
#[derive(Debug, Default)]
struct Printer {
    closed: bool,
}

impl Printer {
    /// Prints `record` if its sequence number is above `last` (and moves `last`); false once
    /// stdout is closed.
    fn record(&mut self, record: &Value, last: &mut u64) -> bool {
        if self.closed {
            return false;
        }
        let Some(seq) = record["seq"].as_u64() else {
            return true;
        };
        if seq <= *last {
            return true;
        }
        *last = seq;
        let mut stdout = std::io::stdout().lock();
        let line = serde_json::to_string(record).unwrap_or_default();
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
        !self.closed
    }
}
