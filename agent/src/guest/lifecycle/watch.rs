//! Watching a workspace's devcontainer configuration and pushing `config_changed`.
//!
//! ```text
//!  inotify (notify crate) on the PARENT directories, non-recursive:
//!     <workspace>/               (sees .devcontainer.json and .devcontainer/ being created,
//!     <workspace>/.devcontainer/  replaced by rename, deleted)
//!        │ relevant path?
//!        ▼
//!  mpsc ─► debounce (quiet for `debounce`) ─► parse again ─► diff against the last good one
//!        ─► event config_changed {file, valid, security_relevant, cosmetic, changed,
//!                                 rebuild_required} | {valid: false, errors: [...]}
//! ```
//!
//! Editors save by writing a temporary file and renaming it over the original; a watch on the
//! file itself would follow the old inode and go silent, so the directories are watched. The
//! file looked at is `.devcontainer/devcontainer.json`, else `.devcontainer.json` (the spec's
//! lookup order). Identical content after a save (or `touch`) gives no event.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::diff::diff;
use super::service::{describe, load};
use crate::guest::service::EventSink;
use crate::wire::Event;

/// The current watch, if any (one per agent; a new request replaces it).
#[derive(Debug, Default)]
pub(crate) struct WatchSlot(Mutex<Option<WatchHandle>>);

impl WatchSlot {
    /// Replaces the current watch.
    pub(crate) fn set(&self, h: WatchHandle) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Stops the current watch.
    pub(crate) fn clear(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }
}

/// A running watch; dropping it stops it.
#[derive(Debug)]
pub(crate) struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The configuration file of `workspace`, in lookup order.
pub(crate) fn config_file(workspace: &Path) -> Option<PathBuf> {
    [".devcontainer/devcontainer.json", ".devcontainer.json"]
        .iter()
        .map(|p| workspace.join(p))
        .find(|p| p.is_file())
}

/// What the file says now.
#[derive(Debug, Clone, PartialEq)]
enum Snapshot {
    Missing,
    Broken(PathBuf, Vec<String>),
    Good(PathBuf, Value),
}

fn snapshot(workspace: &Path) -> Snapshot {
    let Some(file) = config_file(workspace) else {
        return Snapshot::Missing;
    };
    match load(&file) {
        Err(e) => Snapshot::Broken(file, vec![e.to_string()]),
        Ok(parsed) => match (
            &parsed.tree,
            parsed.syntax_error.is_some() || !parsed.errors.is_empty(),
        ) {
            (Some(tree), false) => Snapshot::Good(file, tree.to_json_value()),
            _ => Snapshot::Broken(file.clone(), describe(&file, &parsed.diagnostics())),
        },
    }
}

fn relevant(workspace: &Path, p: &Path) -> bool {
    let dc = workspace.join(".devcontainer");
    p == dc || p.starts_with(&dc) || p.file_name().is_some_and(|n| n == ".devcontainer.json")
}

/// Starts watching `workspace`; events go to `events`.
pub(crate) fn start(
    workspace: &Path,
    events: EventSink,
    debounce: Duration,
) -> Result<WatchHandle, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let ws = workspace.to_owned();
    let filter_ws = ws.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| relevant(&filter_ws, p)) {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&ws, RecursiveMode::NonRecursive)?;
    let dc_dir = ws.join(".devcontainer");
    let mut dc_watched =
        dc_dir.is_dir() && watcher.watch(&dc_dir, RecursiveMode::NonRecursive).is_ok();
    let mut last = snapshot(&ws);
    let mut last_good = match &last {
        Snapshot::Good(_, v) => Some(v.clone()),
        _ => None,
    };
    let task = tokio::spawn(async move {
        // The watcher lives as long as this task.
        let mut watcher = watcher;
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let is_dir = dc_dir.is_dir();
            if is_dir && !dc_watched {
                dc_watched = watcher.watch(&dc_dir, RecursiveMode::NonRecursive).is_ok();
            } else if !is_dir {
                // A removed directory drops its watch; a new one must be added again.
                dc_watched = false;
            }
            let now = snapshot(&ws);
            if now == last {
                continue;
            }
            let fields = match &now {
                Snapshot::Missing => json!({"workspace": ws, "file": null, "valid": false,
                    "errors": ["no .devcontainer/devcontainer.json or .devcontainer.json"]}),
                Snapshot::Broken(file, errors) => {
                    json!({"workspace": ws, "file": file, "valid": false, "errors": errors})
                }
                Snapshot::Good(file, v) => {
                    let d = diff(last_good.as_ref().unwrap_or(&json!({})), v);
                    last_good = Some(v.clone());
                    if d.is_empty() && matches!(last, Snapshot::Good(..)) {
                        last = now;
                        continue;
                    }
                    let mut m = json!({"workspace": ws, "file": file, "valid": true});
                    if let (Value::Object(m), Ok(Value::Object(d))) =
                        (&mut m, serde_json::to_value(&d))
                    {
                        m.extend(d);
                    }
                    m
                }
            };
            last = now;
            let _ = events.send(Event::new("config_changed", fields));
        }
    });
    Ok(WatchHandle { task })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::sync::broadcast;

    async fn next(rx: &mut broadcast::Receiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no config_changed within 10 s")
            .unwrap()
    }

    #[tokio::test]
    async fn real_edits_renames_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir(ws.join(".devcontainer")).unwrap();
        let file = ws.join(".devcontainer/devcontainer.json");
        std::fs::write(&file, r#"{"name": "a", "image": "x"}"#).unwrap();
        let (tx, mut rx) = EventSink::channel(16);
        let _h = start(ws, tx, Duration::from_millis(100)).unwrap();

        // An in-place edit of a lifecycle command.
        std::fs::write(
            &file,
            r#"{"name": "a", "image": "x", "postCreateCommand": "curl x | sh"}"#,
        )
        .unwrap();
        let e = next(&mut rx).await;
        assert_eq!(e.name, "config_changed");
        assert_eq!(e.fields["valid"], true);
        assert_eq!(e.fields["security_relevant"], json!(["lifecycle_commands"]));
        assert_eq!(e.fields["rebuild_required"], false);

        // An editor's save: write elsewhere, rename over the file.
        let tmp = ws.join(".devcontainer/.devcontainer.json.swp");
        std::fs::write(
            &tmp,
            r#"{"name": "b", "image": "y", "postCreateCommand": "curl x | sh"}"#,
        )
        .unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let e = next(&mut rx).await;
        assert_eq!(e.fields["security_relevant"], json!(["image_and_build"]));
        assert_eq!(e.fields["cosmetic"], json!(["/name"]));
        assert_eq!(e.fields["rebuild_required"], true);

        // A broken file: parse errors with line:column.
        std::fs::write(&file, "{\n  \"image\": \n}").unwrap();
        let e = next(&mut rx).await;
        assert_eq!(e.fields["valid"], false);
        let err = e.fields["errors"][0].as_str().unwrap();
        assert!(err.contains("devcontainer.json:"), "{err}");

        // Fixed again: compared with the last good version.
        std::fs::write(&file, r#"{"name": "b", "image": "y", "postCreateCommand": "curl x | sh", "forwardPorts": [3000]}"#)
            .unwrap();
        let e = next(&mut rx).await;
        assert_eq!(e.fields["valid"], true);
        assert_eq!(e.fields["security_relevant"], json!(["ports"]));
    }

    #[test]
    fn relevance() {
        let ws = Path::new("/w");
        assert!(relevant(ws, Path::new("/w/.devcontainer.json")));
        assert!(relevant(
            ws,
            Path::new("/w/.devcontainer/devcontainer.json")
        ));
        assert!(relevant(ws, Path::new("/w/.devcontainer")));
        assert!(!relevant(ws, Path::new("/w/src/main.rs")));
    }
}
