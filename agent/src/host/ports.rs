//! `ports_list` from the host: one page, or every page.
//!
//! The agent answers `ports_list` in pages by port number (`guest::ports::page`): a page says
//! whether `more` ports follow and the cursor to ask for them (`next_after`). [`list_all`]
//! walks the pages and joins them into one answer shaped like a single page; [`list_page`]
//! asks for one. An agent older than paging ignores `after`/`limit` and sends everything at
//! once, without `more`: that is one page, the last.
//!
//! ```text
//! list_all ── list_page(None) ──▶ {ports, more: true, next_after: N}
//!          ── list_page(N)    ──▶ {ports, more: false}  ──▶ {ports: all, more: false, ..last page}
//! ```
//!
//! The walk is not a snapshot: a port opened below the cursor meanwhile is missed (its
//! `port_opened` event tells of it). A cursor that does not move forward ends the walk with
//! [`ClientError::UnexpectedAnswer`], so a confused agent cannot keep it going for ever.

use std::time::Duration;

use serde_json::{Map, Value};

use super::client::{Client, ClientError};

fn unexpected(reason: String) -> ClientError {
    ClientError::UnexpectedAnswer {
        request: "ports_list",
        reason,
    }
}

/// One page of `ports_list`: the ports above `after` (all when `None`), at most `limit`
/// (`None`: the agent's default, its largest page).
pub async fn list_page(
    control: &Client,
    after: Option<u16>,
    limit: Option<u32>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mut fields = Map::new();
    if let Some(after) = after {
        fields.insert("after".into(), after.into());
    }
    if let Some(limit) = limit {
        fields.insert("limit".into(), limit.into());
    }
    control.request("ports_list", fields, timeout).await
}

/// Every port, walking the pages in order (`timeout` is for each page): the last page's
/// answer with the ports of all pages in `ports`.
pub async fn list_all(control: &Client, timeout: Duration) -> Result<Value, ClientError> {
    let mut ports = Vec::new();
    let mut after = None;
    loop {
        let mut page = list_page(control, after, None, timeout).await?;
        match page.get_mut("ports").map(Value::take) {
            Some(Value::Array(more)) => ports.extend(more),
            _ => return Err(unexpected("a page without a `ports` list".into())),
        }
        if page.get("more") != Some(&Value::Bool(true)) {
            page["ports"] = Value::Array(ports);
            return Ok(page);
        }
        let next = page
            .get("next_after")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| unexpected("`more` without a port number in `next_after`".into()))?;
        if after.is_some_and(|a| next <= a) {
            return Err(unexpected(format!(
                "the cursor went from {} back to {next}",
                after.unwrap_or_default()
            )));
        }
        after = Some(next);
    }
}

/// The entry of `port` in `ports_list`, if the agent has detected a listener on it: a page of
/// one port starting there.
pub async fn port_entry(
    control: &Client,
    port: u16,
    timeout: Duration,
) -> Result<Option<Value>, ClientError> {
    let page = list_page(control, port.checked_sub(1), Some(1), timeout).await?;
    // An agent older than paging sends every port: look for this one among them.
    Ok(page["ports"].as_array().and_then(|ports| {
        ports
            .iter()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            .cloned()
    }))
}
