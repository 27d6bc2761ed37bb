//! Where command output goes after redaction: a bounded log file, and text for events.
//!
//! ```text
//!  pipe ─► Redactor ─► Utf8Carry ─► lifecycle_output event (text)
//!                   └────────────► BoundedLog  (head kept on disk as it comes,
//!                                               tail kept in memory, written at close
//!                                               after a "[... N bytes dropped ...]" marker)
//! ```
//!
//! The log holds at most `head + tail` bytes of output plus the marker and per-chunk labels,
//! however much a command prints. It is written to the agent's state directory (tmpfs, 0700),
//! mode 0600; it only ever sees redacted bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Turns a byte stream into UTF-8 text without splitting a character across events: an
/// incomplete sequence at the end of a chunk waits for the next one; invalid bytes become
/// U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Text for `chunk`, holding back at most 3 bytes.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let keep = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => self.pending.len() - e.valid_up_to(),
            Err(_) => incomplete_tail(&self.pending),
        };
        let cut = self.pending.len() - keep;
        let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
        self.pending.drain(..cut);
        text
    }

    /// Whatever is left at the end of the stream.
    pub(crate) fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Length of an incomplete UTF-8 sequence at the very end of `b` (0 if none).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let byte = b[b.len() - back];
        if byte & 0xC0 != 0x80 {
            let need = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return 0,
            };
            return if need > back { back } else { 0 };
        }
    }
    0
}

/// A log file that keeps the head and the tail of what is written.
#[derive(Debug)]
pub(crate) struct BoundedLog {
    path: PathBuf,
    file: Option<File>,
    head_left: usize,
    tail: VecDeque<u8>,
    tail_max: usize,
    dropped: u64,
}

impl BoundedLog {
    /// Creates the file (mode 0600, truncating). `head` bytes go to disk as they come; the last
    /// `tail` bytes after that are written by [`BoundedLog::close`].
    pub(crate) fn create(path: &Path, head: usize, tail: usize) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Some(file),
            head_left: head,
            tail: VecDeque::new(),
            tail_max: tail,
            dropped: 0,
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes (already redacted). I/O errors stop the log, never the command.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) {
        if self.head_left > 0 {
            let n = bytes.len().min(self.head_left);
            if let Some(f) = &mut self.file {
                if f.write_all(&bytes[..n]).is_err() {
                    self.file = None;
                }
            }
            self.head_left -= n;
            bytes = &bytes[n..];
        }
        self.tail.extend(bytes);
        let over = self.tail.len().saturating_sub(self.tail_max);
        if over > 0 {
            self.tail.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// Bytes dropped between head and tail.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the marker (if anything was dropped) and the tail.
    pub(crate) fn close(mut self) -> std::io::Result<()> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        if self.dropped > 0 {
            write!(
                f,
                "\n[... {} bytes dropped: the log keeps the head and the tail ...]\n",
                self.dropped
            )?;
        }
        let (a, b) = self.tail.as_slices();
        f.write_all(a)?;
        // No fsync: the log lives on the state directory's tmpfs, and a run must not wait
        // on a disk.
        f.write_all(b)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_never_split() {
        let text = "héllo wörld ✓ 😀 end";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut c = Utf8Carry::default();
            let mut out = c.push(&bytes[..cut]);
            out += &c.push(&bytes[cut..]);
            out += &c.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut c = Utf8Carry::default();
        let out = c.push(b"a\xffb\xe2\x9c");
        assert_eq!(out, "a\u{fffd}b");
        assert_eq!(c.push(b"\x93"), "✓");
        assert_eq!(c.push(b"\xe2"), "");
        assert_eq!(c.finish(), "\u{fffd}");
    }

    #[test]
    fn log_keeps_head_and_tail_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.log");
        let mut log = BoundedLog::create(&p, 10, 5).unwrap();
        for chunk in [b"0123456".as_slice(), b"789abcdefgh", b"ijklmnop"] {
            log.write(chunk);
        }
        assert_eq!(log.dropped(), 26 - 15);
        log.close().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("0123456789\n[... 11 bytes dropped"),
            "{text}"
        );
        assert!(text.ends_with("]\nlmnop"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn small_logs_have_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.log");
        let mut log = BoundedLog::create(&p, 10, 5).unwrap();
        log.write(b"abc");
        log.write(b"defghijkl");
        log.close().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "abcdefghijkl");
    }
}
