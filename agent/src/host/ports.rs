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
    let mut walk = Walk::default();
    loop {
        let page = list_page(control, walk.after, None, timeout).await?;
        if let Some(all) = walk.take(page)? {
            return Ok(all);
        }
    }
}

/// A walk through the pages, without I/O: the ports so far and the next cursor.
#[derive(Debug, Default)]
struct Walk {
    ports: Vec<Value>,
    after: Option<u16>,
}

impl Walk {
    /// Takes in the next page; the joined answer once it was the last.
    fn take(&mut self, mut page: Value) -> Result<Option<Value>, ClientError> {
        match page.get_mut("ports").map(Value::take) {
            Some(Value::Array(more)) => self.ports.extend(more),
            _ => return Err(unexpected("a page without a `ports` list".into())),
        }
        if page.get("more") != Some(&Value::Bool(true)) {
            page["ports"] = Value::Array(std::mem::take(&mut self.ports));
            return Ok(Some(page));
        }
        let next = page
            .get("next_after")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| unexpected("`more` without a port number in `next_after`".into()))?;
        if let Some(before) = self.after.filter(|a| next <= *a) {
            return Err(unexpected(format!(
                "the cursor went from {before} back to {next}"
            )));
        }
        self.after = Some(next);
        Ok(None)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_walk_joins_the_pages_and_ends_with_the_last() {
        let mut w = Walk::default();
        let first = json!({"ports": [{"port": 1}, {"port": 5}], "more": true, "next_after": 5, "grant_key": false});
        assert!(w.take(first).unwrap().is_none());
        assert_eq!(w.after, Some(5));
        let last =
            json!({"ports": [{"port": 9}], "more": false, "next_after": null, "grant_key": true});
        assert_eq!(
            w.take(last).unwrap().unwrap(),
            json!({"ports": [{"port": 1}, {"port": 5}, {"port": 9}], "more": false,
                   "next_after": null, "grant_key": true})
        );
    }

    #[test]
    fn an_agent_older_than_pages_answers_in_one() {
        let old = json!({"ports": [{"port": 3000}], "grant_key": true});
        assert_eq!(Walk::default().take(old.clone()).unwrap(), Some(old));
    }

    #[test]
    fn a_confused_agent_cannot_keep_a_walk_going() {
        let mut w = Walk::default();
        w.take(json!({"ports": [], "more": true, "next_after": 10}))
            .unwrap();
        for bad in [
            json!({"ports": [], "more": true, "next_after": 10}),
            json!({"ports": [], "more": true, "next_after": 3}),
            json!({"ports": [], "more": true}),
            json!({"ports": [], "more": true, "next_after": 70000}),
            json!({"more": false}),
            json!({"ports": {}, "more": false}),
        ] {
            let e = w.take(bad.clone()).unwrap_err();
            assert!(
                matches!(
                    e,
                    ClientError::UnexpectedAnswer {
                        request: "ports_list",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }
}
