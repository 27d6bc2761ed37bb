//! `codespace-agent docker-credential [--state-dir DIR] ACTION`, installed as
//! `docker-credential-codespace`: Docker's credential helper protocol, answered by the agent's
//! broker ([`crate::guest::registry`]) instead of a keychain.
//!
//! ```text
//! docker ──argv[1]=get, stdin: server URL──► run() ──"docker-get\nURL\n\n"──► broker socket
//! docker ◄─stdout: {"ServerURL","Username","Secret"}── run() ◄──answer──┘     (exit 0)
//!        ◄─stdout: credentials not found in native keychain──  (no answer: exit 1)
//! ```
//!
//! The protocol, as Docker's own helpers speak it (`docker-credential-helpers`): the action is
//! the only argument; `get` reads the server URL on stdin and prints the credential as JSON;
//! `list` prints a JSON object of server URL → username; `store` (JSON on stdin) and `erase`
//! (server URL on stdin) change the store; `version` prints the version. Errors go to stdout
//! with exit status 1, and the exact text `credentials not found in native keychain` tells
//! Docker there is no credential, so it goes on without one (an anonymous pull still works).
//!
//! Here:
//! - `get`: whatever the broker does not answer is "not found": a registry the host did not
//!   deliver, a lookalike host, an expired credential, a prebuild, a caller that is not the
//!   codespace user or runs in a restricted lifecycle run (the broker closes at once), and an
//!   agent that is not running (then stderr also says why). The answer is checked to be the
//!   JSON Docker expects before it is printed.
//! - `list`: the broker's map (no secret), or `{}`.
//! - `store` / `erase`: refused politely with exit 1: the credentials belong to the codespace
//!   host, and `docker login` cannot replace them here. Nothing is sent to the broker.
//!
//! Everything is bounded: the input read, the answer accepted and the time on the socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::guest::broker::SOCKET_NAME;
use crate::guest::registry::{HelperRequest, MAX_SERVER_URL_BYTES};

/// Docker's "no credential" message (exact text: Docker compares it).
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// Docker's message for a `get` without a server URL.
pub const MISSING_SERVER_URL: &str = "no credentials server URL";

/// What `store` and `erase` answer.
pub const MANAGED: &str = "registry credentials in this codespace are delivered by the codespace host and cannot be stored or erased with docker login/logout; to use your own, remove the registry's \"codespace\" entry from credHelpers in ~/.docker/config.json";

/// Time allowed for the whole exchange with the broker.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer accepted from the broker.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Largest input read from Docker (`store` sends a credential, `get` a server URL).
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// How the helper ended: the exit status Docker sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Exit 1 (the message is on stdout, as the protocol wants).
    Failure,
}

/// Runs `action` with Docker's input on `input`, the protocol's output on `output` and
/// diagnostics on `diagnostics`. `state_dir` locates the broker socket.
pub fn run(
    state_dir: &Path,
    action: &str,
    input: impl Read,
    mut output: impl Write,
    mut diagnostics: impl Write,
) -> Status {
    match action {
        "version" => say(
            &mut output,
            concat!(
                "docker-credential-codespace (codespace-agent) ",
                env!("CARGO_PKG_VERSION")
            ),
            Status::Success,
        ),
        "store" | "erase" => {
            // Drained so Docker never sees a broken pipe; never looked at.
            let _ = std::io::copy(&mut input.take(MAX_INPUT_BYTES), &mut std::io::sink());
            say(&mut output, MANAGED, Status::Failure)
        }
        "list" => relay(
            &mut output,
            &mut diagnostics,
            ask(state_dir, &HelperRequest::List),
            is_list,
            ("{}", Status::Success),
        ),
        "get" => {
            let mut url = Zeroizing::new(Vec::new());
            if input
                .take(MAX_SERVER_URL_BYTES as u64 + 1)
                .read_to_end(&mut url)
                .is_err()
            {
                return say(&mut output, "cannot read the server URL", Status::Failure);
            }
            let Ok(url) = std::str::from_utf8(&url) else {
                return say(&mut output, NOT_FOUND, Status::Failure);
            };
            let url = url.trim();
            if url.is_empty() {
                return say(&mut output, MISSING_SERVER_URL, Status::Failure);
            }
            if url.len() > MAX_SERVER_URL_BYTES || url.contains(['\n', '\r']) {
                return say(&mut output, NOT_FOUND, Status::Failure);
            }
            relay(
                &mut output,
                &mut diagnostics,
                ask(state_dir, &HelperRequest::Get(url.to_owned())),
                is_credential,
                (NOT_FOUND, Status::Failure),
            )
        }
        other => say(
            &mut output,
            &format!("Unknown credential action `{other}`"),
            Status::Failure,
        ),
    }
}

/// Prints a protocol message (stdout, as Docker's helpers do) and gives the status.
fn say(output: &mut impl Write, text: &str, status: Status) -> Status {
    let _ = writeln!(output, "{text}").and_then(|()| output.flush());
    status
}

/// Prints the broker's answer for Docker when it has the shape `valid` checks; `none` when
/// there is no answer or the broker cannot be asked (then why, on `diagnostics`).
fn relay(
    output: &mut impl Write,
    diagnostics: &mut impl Write,
    asked: Result<Zeroizing<Vec<u8>>, String>,
    valid: fn(&[u8]) -> bool,
    none: (&str, Status),
) -> Status {
    match asked {
        Ok(answer) if answer.is_empty() => say(output, none.0, none.1),
        Ok(answer) if valid(&answer) => {
            let _ = output.write_all(&answer).and_then(|()| output.flush());
            Status::Success
        }
        Ok(_) => say(
            output,
            "the agent's broker sent an invalid answer",
            Status::Failure,
        ),
        Err(e) => {
            let _ = writeln!(diagnostics, "codespace-agent docker-credential: {e}");
            say(output, none.0, none.1)
        }
    }
}

/// Sends `request` to the broker and reads its answer (empty: no answer, including a broker
/// that closed without reading: its way of refusing a caller).
fn ask(state_dir: &Path, request: &HelperRequest) -> Result<Zeroizing<Vec<u8>>, String> {
    let socket = state_dir.join(SOCKET_NAME);
    let fail = |what: &str, e: std::io::Error| {
        format!("the agent's broker at {}: {what}: {e}", socket.display())
    };
    let mut stream = UnixStream::connect(&socket).map_err(|e| fail("connect", e))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| fail("set timeouts", e))?;
    let closed = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    };
    match stream
        .write_all(&request.encode())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
    {
        Err(e) if closed(&e) => return Ok(Zeroizing::new(Vec::new())),
        sent => sent.map_err(|e| fail("send", e))?,
    }
    let mut answer = Zeroizing::new(Vec::with_capacity(1024));
    match (&mut stream)
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut answer)
    {
        Err(e) if closed(&e) => return Ok(Zeroizing::new(Vec::new())),
        read => read.map_err(|e| fail("receive", e))?,
    };
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "the agent's broker at {}: answer too large",
            socket.display()
        ));
    }
    Ok(answer)
}

/// Docker's credential JSON: an object with string `ServerURL` and `Username` and a `Secret`
/// (present, but never copied out of the zeroizing answer buffer to be looked at).
fn is_credential(answer: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // only the shape is checked
    struct Credential {
        #[serde(rename = "ServerURL")]
        server_url: String,
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: serde::de::IgnoredAny,
    }
    serde_json::from_slice::<Credential>(answer).is_ok()
}

/// Docker's list JSON: an object of strings.
fn is_list(answer: &[u8]) -> bool {
    serde_json::from_slice::<std::collections::BTreeMap<String, String>>(answer).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run_with(state: &Path, action: &str, input: &str) -> (Status, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(state, action, input.as_bytes(), &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn store_and_erase_are_refused_politely_without_the_broker() {
        for (action, input) in [
            (
                "store",
                r#"{"ServerURL":"ghcr.io","Username":"u","Secret":"s3cret"}"#,
            ),
            ("erase", "ghcr.io\n"),
        ] {
            let (status, out, _) = run_with(Path::new("/nonexistent"), action, input);
            assert_eq!(status, Status::Failure);
            assert!(out.contains("cannot be stored or erased"), "{out}");
            assert!(!out.contains("s3cret"));
        }
    }

    #[test]
    fn get_without_an_agent_is_not_found_and_says_why_on_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (status, out, err) = run_with(dir.path(), "get", "ghcr.io\n");
        assert_eq!(
            (status, out.as_str()),
            (
                Status::Failure,
                "credentials not found in native keychain\n"
            )
        );
        assert!(
            err.contains("git-credential.sock") && err.contains("connect"),
            "{err}"
        );
        let (status, out, _) = run_with(dir.path(), "get", " \n");
        assert_eq!(
            (status, out.as_str()),
            (Status::Failure, "no credentials server URL\n")
        );
        let (status, out, _) = run_with(dir.path(), "list", "");
        assert_eq!((status, out.as_str()), (Status::Success, "{}\n"));
        let (status, out, _) = run_with(dir.path(), "frobnicate", "");
        assert_eq!(status, Status::Failure);
        assert_eq!(out, "Unknown credential action `frobnicate`\n");
        let (status, out, _) = run_with(dir.path(), "version", "");
        assert_eq!(status, Status::Success);
        assert!(out.starts_with("docker-credential-codespace (codespace-agent) "));
    }

    #[test]
    fn answers_must_have_dockers_shape() {
        assert!(is_credential(
            br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"s"}"#
        ));
        assert!(!is_credential(br#"{"ServerURL":"ghcr.io","Username":"u"}"#));
        assert!(!is_credential(br#"{"ServerURL":"ghcr.io","Secret":"s"}"#));
        assert!(!is_credential(b"username=x\npassword=y\n"));
        assert!(is_list(br#"{"ghcr.io":"u"}"#));
        assert!(!is_list(br#"{"ghcr.io":1}"#));
    }
}
