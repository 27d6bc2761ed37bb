//! The directory of run logs (`<state-dir>/lifecycle/`), holding the newest `keep` of them.
//!
//! The directory is listed once, the first time a log is opened (the logs an earlier agent left,
//! ordered oldest first by modification time); after that the agent remembers the logs it
//! created, so opening a run's log costs one `open` and, once `keep` logs exist, one `unlink`.
//! Listing the directory and `stat`ing every log on each run instead cost about two dozen
//! system calls per lifecycle request, a visible share of a short command's request-to-exit time
//! (`tests/perf/README.md`, "Lifecycle exec"). If the directory disappears or is replaced
//! (someone cleaned the state directory), the open fails once with `NotFound`; the list is then
//! rebuilt from a fresh listing and the open retried.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::output::BoundedLog;

/// The run-log directory and the logs in it, oldest first.
#[derive(Debug)]
pub(crate) struct RunLogs {
    dir: PathBuf,
    keep: usize,
    /// `None` until the directory has been listed (again).
    known: Mutex<Option<VecDeque<PathBuf>>>,
}

impl RunLogs {
    /// Logs in `dir` (created 0700 when missing), at most `keep` (at least 1) of them.
    pub(crate) fn new(dir: PathBuf, keep: usize) -> Self {
        Self {
            dir,
            keep: keep.max(1),
            known: Mutex::new(None),
        }
    }

    /// Creates `<dir>/<run_id>.log` (see [`BoundedLog::create`]) after removing the oldest logs
    /// so that, with it, at most `keep` remain.
    pub(crate) fn open(&self, run_id: &str, head: usize, tail: usize) -> io::Result<BoundedLog> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.dir.join(format!("{run_id}.log"));
        let mut retried = false;
        loop {
            let logs = match known.as_mut() {
                Some(logs) => logs,
                None => known.insert(list(&self.dir)?),
            };
            while logs.len() >= self.keep {
                if let Some(old) = logs.pop_front() {
                    // Already gone is fine: the goal is that it does not stay.
                    let _ = std::fs::remove_file(old);
                }
            }
            match BoundedLog::create(&path, head, tail) {
                Ok(log) => {
                    logs.push_back(path);
                    return Ok(log);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !retried => {
                    retried = true;
                    *known = None;
                }
                Err(e) => {
                    *known = None;
                    return Err(e);
                }
            }
        }
    }
}

/// Creates `dir` (0700) if needed and lists its `*.log` files, oldest first.
fn list(dir: &Path) -> io::Result<VecDeque<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort();
    Ok(logs.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_the_newest_including_logs_an_earlier_agent_left() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("lifecycle");
        std::fs::create_dir(&dir).unwrap();
        // An earlier agent's logs, and a file that is not a log (kept).
        for (name, age) in [("run-1-0.log", 30), ("run-1-1.log", 20), ("notes.txt", 40)] {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age))
                .unwrap();
        }
        let logs = RunLogs::new(dir.clone(), 3);
        for n in 0..2 {
            logs.open(&format!("run-2-{n}"), 10, 10)
                .unwrap()
                .close()
                .unwrap();
        }
        assert_eq!(
            names(&dir),
            ["notes.txt", "run-1-1.log", "run-2-0.log", "run-2-1.log"]
        );
        for n in 2..5 {
            logs.open(&format!("run-2-{n}"), 10, 10).unwrap();
        }
        assert_eq!(
            names(&dir),
            ["notes.txt", "run-2-2.log", "run-2-3.log", "run-2-4.log"]
        );
    }

    #[test]
    fn a_removed_directory_is_made_again() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("lifecycle");
        let logs = RunLogs::new(dir.clone(), 2);
        logs.open("a", 10, 10).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        logs.open("b", 10, 10).unwrap();
        logs.open("c", 10, 10).unwrap();
        assert_eq!(names(&dir), ["b.log", "c.log"]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_unusable_directory_is_an_error_not_a_panic() {
        let state = tempfile::tempdir().unwrap();
        let file = state.path().join("lifecycle");
        std::fs::write(&file, "not a directory").unwrap();
        let logs = RunLogs::new(file, 2);
        assert!(logs.open("a", 10, 10).is_err());
    }
}
