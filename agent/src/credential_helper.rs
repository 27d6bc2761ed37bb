//! `codespace-agent git-credential [--state-dir DIR] get|store|erase`: git's credential helper,
//! a thin client of the broker socket ([`crate::guest::broker`]).
//!
//! ```text
//! git ──stdin: key=value lines──► run() ──"get\n"+lines, EOF──► <state-dir>/git-credential.sock
//! git ◄─stdout: key=value lines── run() ◄──answer (maybe empty)──┘
//! ```
//!
//! `store` and `erase` are read and dropped without contacting the broker: the token is managed
//! by the host. An action git may add in the future is ignored too, as git's documentation asks
//! of helpers. The answer is checked to be `key=value` lines before it is printed, so a broken
//! broker cannot inject anything else into git. Everything is bounded: request and answer sizes
//! and the time spent on the socket.
//!
//! The broker refuses a caller by closing the connection at once, without reading its request
//! (so a refusal costs it nothing). Depending on timing the helper then sees a broken pipe while
//! sending or a reset while receiving; both mean "no answer" and are told to git as an empty
//! answer, exactly like the broker's silence.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::guest::broker::{MAX_REQUEST_BYTES, SOCKET_NAME};

/// Time allowed for the whole exchange with the broker.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer accepted from the broker.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Errors of the helper. None contains request or answer contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// Git's input is larger than the broker accepts.
    #[error("credential request larger than {max} bytes")]
    RequestTooLarge {
        /// The limit.
        max: usize,
    },
    /// Reading git's input or writing to git failed.
    #[error("{action}: {source}")]
    Stdio {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker socket could not be used.
    #[error("credential broker at {path}: {action}: {source}")]
    Broker {
        /// The socket path.
        path: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker answered something that is not git's format.
    #[error("credential broker at {path} sent an invalid answer")]
    InvalidAnswer {
        /// The socket path.
        path: String,
    },
}

/// Runs the helper for `action` with git's request on `input`, printing the answer to `output`.
/// `state_dir` locates the broker socket.
pub fn run(
    state_dir: &Path,
    action: &str,
    input: impl Read,
    mut output: impl Write,
) -> Result<(), HelperError> {
    let request = read_request(input)?;
    if action != "get" {
        return Ok(());
    }
    let socket = state_dir.join(SOCKET_NAME);
    let shown = socket.display().to_string();
    let mut message = Zeroizing::new(Vec::with_capacity(request.len() + 4));
    message.extend_from_slice(b"get\n");
    message.extend_from_slice(&request);
    let answer = match exchange(&socket, &message, TIMEOUT, TIMEOUT, MAX_ANSWER_BYTES) {
        Ok(Some(answer)) => answer,
        Ok(None) => return Ok(()),
        Err(e) => {
            return Err(HelperError::Broker {
                path: shown,
                action: e.action,
                source: e.source,
            })
        }
    };
    if answer.len() > MAX_ANSWER_BYTES || !is_valid_answer(&answer) {
        return Err(HelperError::InvalidAnswer { path: shown });
    }
    output
        .write_all(&answer)
        .and_then(|()| output.flush())
        .map_err(|source| HelperError::Stdio {
            action: "write the answer",
            source,
        })
}

/// A step of [`exchange`] that failed: what was being done, and why.
#[derive(Debug)]
pub(crate) struct ExchangeError {
    /// `connect`, `set timeouts`, `send` or `receive`.
    pub action: &'static str,
    /// The cause.
    pub source: std::io::Error,
}

/// One request and its answer on a broker socket (this helper's and `git-sign`'s): connect,
/// send `request`, half-close, read until EOF, at most `max_answer + 1` bytes (so the caller
/// sees an answer that is too long). `Ok(None)`: the broker closed without an answer, its way
/// of refusing a caller at accept (see the module docs).
pub(crate) fn exchange(
    socket: &Path,
    request: &[u8],
    write_timeout: Duration,
    read_timeout: Duration,
    max_answer: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, ExchangeError> {
    let failed = |action| move |source| ExchangeError { action, source };
    let mut stream = UnixStream::connect(socket).map_err(failed("connect"))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .and_then(|()| stream.set_write_timeout(Some(write_timeout)))
        .map_err(failed("set timeouts"))?;
    let sent = stream
        .write_all(request)
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    match sent {
        Err(e) if closed_by_broker(&e) => return Ok(None),
        sent => sent.map_err(failed("send"))?,
    }
    let mut answer = Zeroizing::new(Vec::new());
    let received = (&mut stream)
        .take(max_answer as u64 + 1)
        .read_to_end(&mut answer);
    match received {
        Err(e) if closed_by_broker(&e) => Ok(None),
        received => received.map(|_| Some(answer)).map_err(failed("receive")),
    }
}

/// Whether `error` is the broker closing the connection without an answer: its way of refusing
/// a caller at once (see the module docs). A partial answer cannot end this way, since the
/// broker writes an answer only after reading the whole request.
fn closed_by_broker(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// Reads git's request: until EOF or the blank line that ends it, at most the broker's limit.
fn read_request(input: impl Read) -> Result<Zeroizing<Vec<u8>>, HelperError> {
    let limit = MAX_REQUEST_BYTES - 16; // room for the action line
    let mut request = Zeroizing::new(Vec::new());
    let mut reader = std::io::BufReader::new(input.take(limit as u64 + 1));
    loop {
        let mut line = Zeroizing::new(Vec::new());
        let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(|source| {
            HelperError::Stdio {
                action: "read the request",
                source,
            }
        })?;
        if request.len() + n > limit {
            return Err(HelperError::RequestTooLarge {
                max: MAX_REQUEST_BYTES,
            });
        }
        if n == 0 || line.as_slice() == b"\n" {
            return Ok(request);
        }
        request.extend_from_slice(&line);
        if !line.ends_with(b"\n") {
            request.push(b'\n');
        }
    }
}

/// An empty answer, or `key=value` lines with a non-empty key, no NUL, ending in a newline.
fn is_valid_answer(answer: &[u8]) -> bool {
    answer.is_empty()
        || (answer.ends_with(b"\n")
            && !answer.contains(&0)
            && answer[..answer.len() - 1]
                .split(|&b| b == b'\n')
                .all(|line| line.iter().position(|&b| b == b'=').is_some_and(|i| i > 0)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_end_at_the_blank_line() {
        let read = |text: &[u8]| read_request(text).unwrap().to_vec();
        assert_eq!(
            read(b"protocol=https\nhost=x\n\nignored=1\n"),
            b"protocol=https\nhost=x\n"
        );
        assert_eq!(read(b"protocol=https\nhost=x"), b"protocol=https\nhost=x\n");
        assert_eq!(read(b""), b"");
        let big = vec![b'a'; MAX_REQUEST_BYTES];
        assert!(matches!(
            read_request(big.as_slice()),
            Err(HelperError::RequestTooLarge { .. })
        ));
    }

    #[test]
    fn answers_are_validated() {
        assert!(is_valid_answer(b""));
        assert!(is_valid_answer(b"username=x\npassword=y\n"));
        assert!(!is_valid_answer(b"username=x"));
        assert!(!is_valid_answer(b"username=x\n\nquit=1\n"));
        assert!(!is_valid_answer(b"=x\n"));
        assert!(!is_valid_answer(b"garbage\n"));
        assert!(!is_valid_answer(b"a=\0\n"));
    }

    #[test]
    fn store_and_erase_never_touch_the_socket() {
        let mut out = Vec::new();
        for action in ["store", "erase", "future-action"] {
            run(
                Path::new("/nonexistent"),
                action,
                &b"protocol=https\nhost=github.com\npassword=x\n\n"[..],
                &mut out,
            )
            .unwrap();
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_broker_that_closes_at_once_is_an_empty_answer() {
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET_NAME)).unwrap();
        // Refuse like the broker: accept, close without reading (before or after the request
        // arrives, whichever the scheduler picks; both must read as "no answer").
        let refuser = std::thread::spawn(move || {
            for _ in 0..2 {
                drop(listener.accept().unwrap());
            }
        });
        // A request big enough that it is still being sent when the broker closes.
        let mut big = b"protocol=https\nhost=github.com\nx=".to_vec();
        big.resize(MAX_REQUEST_BYTES - 64, b'a');
        big.extend_from_slice(b"\n\n");
        for request in [&b"protocol=https\nhost=github.com\n\n"[..], &big] {
            let mut out = Vec::new();
            run(dir.path(), "get", request, &mut out).unwrap();
            assert!(out.is_empty());
        }
        refuser.join().unwrap();
    }

    #[test]
    fn a_missing_broker_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(dir.path(), "get", &b"protocol=https\n\n"[..], Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("git-credential.sock") && text.contains("connect"),
            "{text}"
        );
    }
}
