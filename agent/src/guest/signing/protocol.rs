//! What the in-VM helper (`codespace-agent git-sign`) and the signing broker say to each other
//! over `<state-dir>/git-sign.sock`: one request, one answer, then the connection closes.
//!
//! ```text
//! helper ─► "codespace-sign/1 enabled\n"                          EOF
//!        ─► "codespace-sign/1 sign ssh|openpgp\n" + payload bytes  EOF
//! broker ─► "enabled ssh|openpgp\n"
//!        ─► "disabled CODE\n" + message
//!        ─► "signature\n" + armored signature
//!        ─► "refused CODE\n" + message
//! ```
//!
//! The helper half-closes its side after the request, so the payload needs no length: it ends
//! at EOF. Both sides bound what they read ([`MAX_REQUEST`], [`MAX_ANSWER`]) before they
//! allocate it. A `CODE` is a stable kebab-case reason; a message is one printable line of at
//! most [`MAX_MESSAGE`] bytes (what git shows the user); a signature is ASCII armor. Pure: no
//! I/O here, so both ends and the tests share one encoder and one parser per message.

use codespace_policy::signing::SigningFormat;

/// File name of the socket in the state directory.
pub(crate) const SOCKET_NAME: &str = "git-sign.sock";

/// What the helper tells git when the broker closes the connection without an answer: how the
/// broker refuses a caller at accept (another uid, a restricted lifecycle run, no slot left).
pub(crate) const REFUSED_AT_ACCEPT: &str = "the signing broker refused this caller: only the codespace's user may sign, outside restricted lifecycle runs";

/// The request line's prefix (and the protocol's version).
pub(crate) const VERSION: &str = "codespace-sign/1";

/// Largest payload (a commit or tag object) the helper sends.
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024;

/// Largest request: the line and the payload.
pub(crate) const MAX_REQUEST: usize = MAX_PAYLOAD + 64;

/// Largest signature accepted from the host (an SSH or OpenPGP signature is a few KiB).
pub(crate) const MAX_SIGNATURE: usize = 16 * 1024;

/// Longest message shown to the user.
pub(crate) const MAX_MESSAGE: usize = 512;

/// Largest answer.
pub(crate) const MAX_ANSWER: usize = MAX_SIGNATURE + 64;

/// The helper's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperRequest {
    /// Is signing on for this codespace (and this caller)?
    Enabled,
    /// Sign `payload` in `format`.
    Sign {
        /// What git asked for.
        format: SigningFormat,
        /// The object git signs.
        payload: Vec<u8>,
    },
}

/// The broker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerAnswer {
    /// Signing is on, in this format.
    Enabled(SigningFormat),
    /// Signing is off: why.
    Disabled(Reason),
    /// The host's signature (ASCII armor, already checked by the broker).
    Signature(String),
    /// Nothing was signed: why.
    Refused(Reason),
}

/// A stable code and the message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Kebab-case code.
    pub code: String,
    /// One printable line.
    pub message: String,
}

impl Reason {
    /// A reason with `message` made printable and bounded ([`printable`]).
    pub(crate) fn new(code: &str, message: &str) -> Self {
        Self {
            code: code.to_owned(),
            message: printable(message),
        }
    }
}

/// Why bytes on the socket are not a request or an answer. Never quotes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Larger than the limit.
    #[error("larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The first line is missing or not one the protocol has.
    #[error("not a {what} of the signing protocol")]
    Malformed {
        /// `request` or `answer`.
        what: &'static str,
    },
}

impl HelperRequest {
    /// The bytes the helper sends (then it half-closes).
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Self::Enabled => format!("{VERSION} enabled\n").into_bytes(),
            Self::Sign { format, payload } => {
                let mut out = format!("{VERSION} sign {format}\n").into_bytes();
                out.extend_from_slice(payload);
                out
            }
        }
    }

    /// Parses what the broker read until EOF.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_REQUEST {
            return Err(ProtocolError::TooLarge { max: MAX_REQUEST });
        }
        let malformed = ProtocolError::Malformed { what: "request" };
        let (line, rest) = split_line(bytes).ok_or(malformed.clone())?;
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            [VERSION, "enabled"] if rest.is_empty() => Ok(Self::Enabled),
            [VERSION, "sign", format] => {
                let format = SigningFormat::parse(format).ok_or(malformed)?;
                Ok(Self::Sign {
                    format,
                    payload: rest.to_vec(),
                })
            }
            _ => Err(malformed),
        }
    }
}

impl BrokerAnswer {
    /// The bytes the broker sends.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let with_reason = |word: &str, r: &Reason| {
            format!("{word} {}\n{}", code(&r.code), printable(&r.message)).into_bytes()
        };
        match self {
            Self::Enabled(format) => format!("enabled {format}\n").into_bytes(),
            Self::Disabled(r) => with_reason("disabled", r),
            Self::Signature(armor) => format!("signature\n{armor}").into_bytes(),
            Self::Refused(r) => with_reason("refused", r),
        }
    }

    /// Parses what the helper read until EOF.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_ANSWER {
            return Err(ProtocolError::TooLarge { max: MAX_ANSWER });
        }
        let malformed = ProtocolError::Malformed { what: "answer" };
        let (line, rest) = split_line(bytes).ok_or(malformed.clone())?;
        let rest = std::str::from_utf8(rest).map_err(|_| malformed.clone())?;
        let reason = |c: &str| -> Result<Reason, ProtocolError> {
            let valid = is_code(c) && rest.len() <= MAX_MESSAGE && printable(rest) == rest;
            valid
                .then(|| Reason::new(c, rest))
                .ok_or(ProtocolError::Malformed { what: "answer" })
        };
        match line.split_once(' ').unwrap_or((line, "")) {
            ("enabled", f) if rest.is_empty() => {
                SigningFormat::parse(f).map(Self::Enabled).ok_or(malformed)
            }
            ("disabled", c) => reason(c).map(Self::Disabled),
            ("refused", c) => reason(c).map(Self::Refused),
            ("signature", "") if is_armor(rest) => Ok(Self::Signature(rest.to_owned())),
            _ => Err(malformed),
        }
    }
}

/// The first line (ASCII, without its newline) and what follows it.
fn split_line(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().take(128).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    line.is_ascii().then_some((line, &bytes[end + 1..]))
}

/// A kebab-case code of at most 40 characters.
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

/// `code`, or `unknown` when it is not a valid code (so an encoder never writes a bad one).
fn code(code: &str) -> &str {
    if is_code(code) {
        code
    } else {
        "unknown"
    }
}

/// Printable ASCII armor lines of at most [`MAX_SIGNATURE`] bytes.
pub(crate) fn is_armor(text: &str) -> bool {
    text.len() <= MAX_SIGNATURE
        && text.starts_with("-----BEGIN ")
        && text
            .bytes()
            .all(|b| b == b'\n' || b == b'\r' || (b' '..=b'~').contains(&b))
}

/// `text` as one printable line of at most [`MAX_MESSAGE`] bytes: control characters (line
/// breaks, escapes) become spaces, so a message can neither forge lines in git's output nor
/// move the terminal's cursor.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_MESSAGE {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_malformed() {
        for r in [
            HelperRequest::Enabled,
            HelperRequest::Sign {
                format: SigningFormat::Ssh,
                payload: b"tree x\n\n\0binary\n".to_vec(),
            },
            HelperRequest::Sign {
                format: SigningFormat::OpenPgp,
                payload: Vec::new(),
            },
        ] {
            assert_eq!(HelperRequest::decode(&r.encode()).unwrap(), r);
        }
        for junk in [
            &b""[..],
            b"codespace-sign/1 sign gpg\n",
            b"codespace-sign/2 enabled\n",
            b"codespace-sign/1 enabled\nextra",
            b"codespace-sign/1 enabled",
            b"get\nprotocol=https\n\n",
        ] {
            assert!(HelperRequest::decode(junk).is_err(), "{junk:?}");
        }
        let big = vec![b'x'; MAX_REQUEST + 1];
        assert_eq!(
            HelperRequest::decode(&big),
            Err(ProtocolError::TooLarge { max: MAX_REQUEST })
        );
    }

    #[test]
    fn answers_round_trip_and_messages_stay_one_printable_line() {
        let armor = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n";
        for a in [
            BrokerAnswer::Enabled(SigningFormat::OpenPgp),
            BrokerAnswer::Disabled(Reason::new("signing-off", "commit signing is off")),
            BrokerAnswer::Signature(armor.into()),
            BrokerAnswer::Refused(Reason::new("unverified-email", "the committer <x@y> ...")),
        ] {
            assert_eq!(BrokerAnswer::decode(&a.encode()).unwrap(), a);
        }
        // A hostile reason cannot add lines or escapes; a bad code is never written.
        let a = BrokerAnswer::Refused(Reason::new("Bad Code", "line\n\x1b[2Jfake: ok"));
        let decoded = BrokerAnswer::decode(&a.encode()).unwrap();
        assert_eq!(
            decoded,
            BrokerAnswer::Refused(Reason {
                code: "unknown".into(),
                message: "line  [2Jfake: ok".into()
            })
        );
        assert_eq!(printable(&"é".repeat(1000)).len(), MAX_MESSAGE);
        for junk in [
            &b"signature\nnot armor"[..],
            b"refused x\nline\nline",
            b"enabled gpg\n",
            b"enabled ssh\ntrailing",
            b"yes\n",
        ] {
            assert!(BrokerAnswer::decode(junk).is_err(), "{junk:?}");
        }
    }
}
