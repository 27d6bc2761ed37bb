//! What a signing payload is: a git commit or tag object, parsed from the bytes git hands its
//! signing program, or nothing the broker will sign.
//!
//! ```text
//! commit                                   tag
//!   tree <oid>                               object <oid>
//!   parent <oid>          (0..n)             type commit|tree|blob|tag
//!   author <ident>                           tag <name>
//!   committer <ident>     ◄─ signer          tagger <ident>   ◄─ signer
//!   encoding/mergetag/... (optional)         <blank line>
//!   <blank line>                             <message>
//!   <message>
//! ```
//!
//! This is the exact buffer git builds before it signs (`commit_tree_extended` and
//! `create_tag` in git): the headers in this order, a blank line, then the message, which may
//! be empty and in any encoding. `<oid>` is a full object id (40 hex digits for SHA-1, 64 for
//! SHA-256; one length in one object). `<ident>` is `Name <email> <seconds> <+hhmm|-hhmm>`.
//!
//! After `committer` a commit may carry further headers: `encoding`, `mergetag` (a signed tag
//! merged in, with continuation lines starting with a space) and headers other tools add and
//! `git commit --amend` carries over (jj's `change-id`). A header named `gpgsig` or
//! `gpgsig-sha256` is refused: git strips signatures before it signs, so a payload with one is
//! not something git asked for. A tag has exactly its four headers.
//!
//! Everything else is refused, with the reason: a blob, a push certificate (`certificate
//! version ...`), an SSH challenge, arbitrary bytes. The parser reads bytes, not text (names and
//! messages may be in a legacy encoding); only the header keywords, object ids and the signer's
//! email must be ASCII or UTF-8.

use std::fmt;

/// Which git object a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A commit (`git commit -S`, `git rebase`, `git commit --amend`, ...).
    Commit,
    /// An annotated tag (`git tag -s`).
    Tag,
}

impl ObjectKind {
    /// The header that names who signs: `committer` or `tagger`.
    pub fn signer_header(self) -> &'static str {
        match self {
            Self::Commit => "committer",
            Self::Tag => "tagger",
        }
    }

    /// `commit` or `tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Tag => "tag",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload that parsed as a commit or tag: what the policy checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitObject {
    /// Commit or tag.
    pub kind: ObjectKind,
    /// The committer's (commit) or tagger's (tag) email, as written.
    pub signer_email: String,
}

/// Why a payload is not a commit or tag object. Messages never quote the payload: a refused
/// payload may be any file (one with a password in it), and refusals are logged and recorded.
/// They name git's own header keywords only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Nothing to sign.
    #[error("the data to sign is empty")]
    Empty,
    /// The first line is neither `tree` (a commit) nor `object` (a tag).
    #[error(
        "the data to sign is neither a commit (it would start with `tree`) nor a tag (`object`)"
    )]
    NotAGitObject,
    /// A header the object needs is missing or out of place.
    #[error("{kind} header {line}: expected `{expected}`, found {found}")]
    UnexpectedHeader {
        /// The object.
        kind: ObjectKind,
        /// 1-based line number.
        line: usize,
        /// The header that belongs there.
        expected: &'static str,
        /// What is there instead: a git header keyword in backquotes, or a description.
        found: &'static str,
    },
    /// A line after `committer` that is not a `keyword value` header (a lowercase keyword) or
    /// the continuation of one.
    #[error("{kind} header {line}: not a `keyword value` header")]
    MalformedHeader {
        /// The object.
        kind: ObjectKind,
        /// 1-based line number.
        line: usize,
    },
    /// A line after a tag's `tagger` other than the blank line (git writes none).
    #[error("tag header {line}: a tag has no header after `tagger`, found {found}")]
    TagExtraHeader {
        /// 1-based line number.
        line: usize,
        /// What is there: a git header keyword in backquotes, or a description.
        found: &'static str,
    },
    /// A header that is never part of what git signs.
    #[error("{kind} header {line}: `{header}` is not allowed in data to sign")]
    ForbiddenHeader {
        /// The object.
        kind: ObjectKind,
        /// 1-based line number.
        line: usize,
        /// The header (`gpgsig`, or a required header repeated).
        header: &'static str,
    },
    /// An object id that is not 40 or 64 lowercase hex digits, or not the length of the first.
    #[error("{kind} header {line}: `{header}` does not name a full object id")]
    InvalidObjectId {
        /// The object.
        kind: ObjectKind,
        /// 1-based line number.
        line: usize,
        /// The header.
        header: &'static str,
    },
    /// An identity that is not `Name <email> <seconds> <+hhmm>`.
    #[error("{kind} header {line}: `{header}` is not `Name <email> <seconds> <zone>`")]
    InvalidIdent {
        /// The object.
        kind: ObjectKind,
        /// 1-based line number.
        line: usize,
        /// The header.
        header: &'static str,
    },
    /// A tag's `type` or `tag` value is not valid.
    #[error("tag header {line}: invalid `{header}` value")]
    InvalidTagField {
        /// 1-based line number.
        line: usize,
        /// The header.
        header: &'static str,
    },
    /// The headers do not end with a blank line.
    #[error("the {kind} has no blank line after its headers")]
    NoBlankLine {
        /// The object.
        kind: ObjectKind,
    },
}

/// Parses `payload` as a commit or tag object (see the module docs).
pub fn parse(payload: &[u8]) -> Result<GitObject, PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    let first = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let kind = match keyword(first) {
        b"tree" => ObjectKind::Commit,
        b"object" => ObjectKind::Tag,
        _ => return Err(PayloadError::NotAGitObject),
    };
    let headers = header_lines(payload).ok_or(PayloadError::NoBlankLine { kind })?;
    match kind {
        ObjectKind::Commit => parse_commit(&headers),
        ObjectKind::Tag => parse_tag(&headers),
    }
}

/// The header lines (without their newline), up to the blank line that ends them; `None` when
/// there is no blank line.
fn header_lines(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let mut lines = Vec::new();
    let mut rest = payload;
    loop {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..end];
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
        rest = &rest[end + 1..];
    }
}

/// The header's keyword: everything before the first space.
fn keyword(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b' ').next().unwrap_or_default()
}

/// The value after `keyword ` when the line is that header.
fn value<'a>(line: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    line.strip_prefix(keyword.as_bytes())?.strip_prefix(b" ")
}

/// Git's header keywords: the only words of a payload a message may quote.
const KNOWN_HEADERS: [&str; 12] = [
    "tree",
    "parent",
    "author",
    "committer",
    "encoding",
    "mergetag",
    "object",
    "type",
    "tag",
    "tagger",
    "gpgsig",
    "gpgsig-sha256",
];

/// What a message says was found on `line`: its keyword when it is one of git's, else only
/// what kind of line it is (never its text).
fn found(line: &[u8]) -> &'static str {
    let word = keyword(line);
    if let Some(known) = KNOWN_HEADERS.iter().find(|k| k.as_bytes() == word) {
        return match *known {
            "tree" => "`tree`",
            "parent" => "`parent`",
            "author" => "`author`",
            "committer" => "`committer`",
            "encoding" => "`encoding`",
            "mergetag" => "`mergetag`",
            "object" => "`object`",
            "type" => "`type`",
            "tag" => "`tag`",
            "tagger" => "`tagger`",
            "gpgsig" => "`gpgsig`",
            _ => "`gpgsig-sha256`",
        };
    }
    if line.is_empty() {
        "the end of the headers"
    } else if line.starts_with(b" ") {
        "a continuation line"
    } else {
        "a line that is not one of git's headers"
    }
}

/// Walks the header lines with their 1-based numbers.
struct Headers<'a, 'b> {
    kind: ObjectKind,
    lines: &'b [&'a [u8]],
    next: usize,
    oid_len: Option<usize>,
}

impl<'a> Headers<'a, '_> {
    fn peek(&self) -> Option<&'a [u8]> {
        self.lines.get(self.next).copied()
    }

    /// The value of the next line, which must be the header `expected`.
    fn take(&mut self, expected: &'static str) -> Result<&'a [u8], PayloadError> {
        let line = self.peek().unwrap_or_default();
        let value = value(line, expected).ok_or_else(|| PayloadError::UnexpectedHeader {
            kind: self.kind,
            line: self.next + 1,
            expected,
            found: found(line),
        })?;
        self.next += 1;
        Ok(value)
    }

    /// The next line as the object id header `expected`.
    fn take_oid(&mut self, expected: &'static str) -> Result<(), PayloadError> {
        let line = self.next + 1;
        let oid = self.take(expected)?;
        let hex = oid
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let length_ok = matches!(oid.len(), 40 | 64) && self.oid_len.is_none_or(|n| n == oid.len());
        if !hex || !length_ok {
            return Err(PayloadError::InvalidObjectId {
                kind: self.kind,
                line,
                header: expected,
            });
        }
        self.oid_len = Some(oid.len());
        Ok(())
    }

    /// The next line as the identity header `expected`; its email.
    fn take_ident(&mut self, expected: &'static str) -> Result<String, PayloadError> {
        let line = self.next + 1;
        let ident = self.take(expected)?;
        ident_email(ident).ok_or(PayloadError::InvalidIdent {
            kind: self.kind,
            line,
            header: expected,
        })
    }
}

/// The email of `Name <email> <seconds> <+hhmm>` (git's `split_ident_line`, strictly).
fn ident_email(ident: &[u8]) -> Option<String> {
    let lt = ident.iter().position(|&b| b == b'<')?;
    let gt = lt + 1 + ident[lt + 1..].iter().position(|&b| b == b'>')?;
    let name = &ident[..lt];
    if !name.is_empty() && !name.ends_with(b" ") {
        return None;
    }
    let email = std::str::from_utf8(&ident[lt + 1..gt]).ok()?;
    if email.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<') {
        return None;
    }
    let date = ident[gt + 1..].strip_prefix(b" ")?;
    let (seconds, zone) = date.split_at(date.iter().position(|&b| b == b' ')?);
    let zone = &zone[1..];
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let zone_ok = zone.len() == 5 && matches!(zone[0], b'+' | b'-') && digits(&zone[1..]);
    (digits(seconds) && zone_ok).then(|| email.to_owned())
}

fn parse_commit(lines: &[&[u8]]) -> Result<GitObject, PayloadError> {
    let mut h = Headers {
        kind: ObjectKind::Commit,
        lines,
        next: 0,
        oid_len: None,
    };
    h.take_oid("tree")?;
    while h.peek().is_some_and(|l| keyword(l) == b"parent") {
        h.take_oid("parent")?;
    }
    h.take_ident("author")?;
    let signer_email = h.take_ident("committer")?;
    // Extra headers: each a lowercase keyword with a value, continuation lines after it.
    for (i, line) in lines.iter().enumerate().skip(h.next) {
        if line.starts_with(b" ") && i > h.next {
            continue;
        }
        let word = keyword(line);
        let well_formed = !word.is_empty()
            && word.len() < line.len()
            && word
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !well_formed {
            return Err(PayloadError::MalformedHeader {
                kind: ObjectKind::Commit,
                line: i + 1,
            });
        }
        if word.starts_with(b"gpgsig")
            || matches!(word, b"tree" | b"parent" | b"author" | b"committer")
        {
            return Err(PayloadError::ForbiddenHeader {
                kind: ObjectKind::Commit,
                line: i + 1,
                header: match word {
                    b"tree" => "tree",
                    b"parent" => "parent",
                    b"author" => "author",
                    b"committer" => "committer",
                    _ => "gpgsig",
                },
            });
        }
    }
    Ok(GitObject {
        kind: ObjectKind::Commit,
        signer_email,
    })
}

fn parse_tag(lines: &[&[u8]]) -> Result<GitObject, PayloadError> {
    let mut h = Headers {
        kind: ObjectKind::Tag,
        lines,
        next: 0,
        oid_len: None,
    };
    h.take_oid("object")?;
    let line = h.next + 1;
    let kind = h.take("type")?;
    if !matches!(kind, b"commit" | b"tree" | b"blob" | b"tag") {
        return Err(PayloadError::InvalidTagField {
            line,
            header: "type",
        });
    }
    let line = h.next + 1;
    let name = h.take("tag")?;
    if name.is_empty() || name.iter().any(|b| b.is_ascii_control() || *b == b' ') {
        return Err(PayloadError::InvalidTagField {
            line,
            header: "tag",
        });
    }
    let signer_email = h.take_ident("tagger")?;
    if let Some(extra) = h.peek() {
        // (`extra` is only described, never quoted.)
        return Err(PayloadError::TagExtraHeader {
            line: h.next + 1,
            found: found(extra),
        });
    }
    Ok(GitObject {
        kind: ObjectKind::Tag,
        signer_email,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    const PARENT: &str = "a3c1e5f7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9";

    fn commit(extra: &str, message: &str) -> String {
        format!(
            "tree {TREE}\nparent {PARENT}\nauthor A U Thor <author@example.com> 1700000000 +0100\n\
             committer C O Mitter <Committer@Example.com> 1700000001 -0530\n{extra}\n{message}"
        )
    }

    fn tag(extra: &str) -> String {
        format!(
            "object {PARENT}\ntype commit\ntag v1.0\ntagger T Agger <tagger@example.com> 1700000000 +0000\n{extra}\nrelease\n"
        )
    }

    #[test]
    fn commits_and_tags_git_writes_parse() {
        let ok = |p: &str| parse(p.as_bytes()).unwrap();
        let c = ok(&commit("", "subject\n\nbody\n"));
        assert_eq!(c.kind, ObjectKind::Commit);
        assert_eq!(c.signer_email, "Committer@Example.com");
        // Root commit, merge, empty message, extra headers with continuation lines.
        let root = format!("tree {TREE}\nauthor <a@b> 1 +0000\ncommitter <c@d> 2 +0000\n\n");
        assert_eq!(ok(&root).signer_email, "c@d");
        let merge = commit("", "m\n").replace(
            &format!("parent {PARENT}\n"),
            &format!("parent {PARENT}\nparent {TREE}\n"),
        );
        assert_eq!(ok(&merge).kind, ObjectKind::Commit);
        // mergetag's embedded tag: continuation lines start with a space (" " for its blank
        // line); then a header another tool added.
        let extras = commit(
            "encoding ISO-8859-1\nmergetag object x\n type commit\n tag v1\n \n msg\nchange-id abc\n",
            "\u{e9}\n",
        );
        assert_eq!(ok(&extras).kind, ObjectKind::Commit);
        let sha256 = commit("", "x")
            .replace(TREE, &"ab".repeat(32))
            .replace(PARENT, &"cd".repeat(32));
        assert_eq!(ok(&sha256).kind, ObjectKind::Commit);
        let t = ok(&tag(""));
        assert_eq!(
            (t.kind, t.signer_email.as_str()),
            (ObjectKind::Tag, "tagger@example.com")
        );
        // Names and messages in a legacy encoding are bytes, not text.
        let mut latin1 = commit("encoding ISO-8859-1\n", "caf").into_bytes();
        latin1.push(0xe9);
        let pos = latin1.windows(7).position(|w| w == b"author ").unwrap() + 7;
        latin1.insert(pos, 0xe9);
        assert_eq!(parse(&latin1).unwrap().kind, ObjectKind::Commit);
    }

    /// Every refusal, with the variant it must be: the table of what is never signed.
    #[test]
    fn everything_else_is_refused_with_its_reason() {
        type Row = (&'static str, Vec<u8>, fn(&PayloadError) -> bool);
        let table: Vec<Row> = vec![
            ("empty", vec![], |e| *e == PayloadError::Empty),
            ("a blob", b"hello world\n".to_vec(), |e| {
                matches!(e, PayloadError::NotAGitObject)
            }),
            (
                "a push certificate",
                b"certificate version 0.1\npusher C <c@d> 1 +0000\n\n".to_vec(),
                |e| matches!(e, PayloadError::NotAGitObject),
            ),
            (
                "an SSH challenge",
                b"SSHSIG\0\0\0\x01\0\0\0\x0essh-connection".to_vec(),
                |e| matches!(e, PayloadError::NotAGitObject),
            ),
            (
                "no blank line",
                commit("", "").trim_end().as_bytes().to_vec(),
                |e| matches!(e, PayloadError::NoBlankLine { .. }),
            ),
            (
                "short tree id",
                commit("", "").replace(TREE, "4b825dc").into_bytes(),
                |e| matches!(e, PayloadError::InvalidObjectId { line: 1, .. }),
            ),
            (
                "upper-case id",
                commit("", "")
                    .replace(TREE, &TREE.to_uppercase())
                    .into_bytes(),
                |e| matches!(e, PayloadError::InvalidObjectId { .. }),
            ),
            (
                "mixed id lengths",
                commit("", "")
                    .replace(PARENT, &"cd".repeat(32))
                    .into_bytes(),
                |e| {
                    matches!(
                        e,
                        PayloadError::InvalidObjectId {
                            line: 2,
                            header: "parent",
                            ..
                        }
                    )
                },
            ),
            (
                "committer before author",
                format!("tree {TREE}\ncommitter <c@d> 2 +0000\nauthor <a@b> 1 +0000\n\n")
                    .into_bytes(),
                |e| {
                    matches!(
                        e,
                        PayloadError::UnexpectedHeader {
                            expected: "author",
                            ..
                        }
                    )
                },
            ),
            (
                "no committer",
                format!("tree {TREE}\nauthor <a@b> 1 +0000\n\n").into_bytes(),
                |e| {
                    matches!(
                        e,
                        PayloadError::UnexpectedHeader {
                            expected: "committer",
                            ..
                        }
                    )
                },
            ),
            (
                "already signed",
                commit("gpgsig -----BEGIN PGP SIGNATURE-----\n x\n", "").into_bytes(),
                |e| matches!(e, PayloadError::ForbiddenHeader { .. }),
            ),
            (
                "a second committer",
                commit("committer <x@y> 1 +0000\n", "").into_bytes(),
                |e| matches!(e, PayloadError::ForbiddenHeader { .. }),
            ),
            (
                "a stray continuation",
                commit("", "")
                    .replacen("\n\n", "\n continued\n\n", 1)
                    .into_bytes(),
                |e| matches!(e, PayloadError::MalformedHeader { line: 5, .. }),
            ),
            (
                "an upper-case extra header",
                commit("Encoding x\n", "").into_bytes(),
                |e| matches!(e, PayloadError::MalformedHeader { .. }),
            ),
            (
                "ident without a date",
                commit("", "").replace(" 1700000001 -0530", "").into_bytes(),
                |e| {
                    matches!(
                        e,
                        PayloadError::InvalidIdent {
                            header: "committer",
                            ..
                        }
                    )
                },
            ),
            (
                "ident with a bad zone",
                commit("", "").replace("-0530", "-05:30").into_bytes(),
                |e| matches!(e, PayloadError::InvalidIdent { .. }),
            ),
            (
                "ident with a space in the email",
                commit("", "")
                    .replace("Committer@Example.com", "a b@c")
                    .into_bytes(),
                |e| matches!(e, PayloadError::InvalidIdent { .. }),
            ),
            (
                "tag without tagger",
                tag("")
                    .replace("tagger T Agger <tagger@example.com> 1700000000 +0000\n", "")
                    .into_bytes(),
                |e| {
                    matches!(
                        e,
                        PayloadError::UnexpectedHeader {
                            expected: "tagger",
                            ..
                        }
                    )
                },
            ),
            (
                "tag of an odd type",
                tag("").replace("type commit", "type note").into_bytes(),
                |e| matches!(e, PayloadError::InvalidTagField { header: "type", .. }),
            ),
            (
                "tag name with a space",
                tag("").replace("tag v1.0", "tag v 1").into_bytes(),
                |e| matches!(e, PayloadError::InvalidTagField { header: "tag", .. }),
            ),
            (
                "tag with an extra header",
                tag("encoding x\n").into_bytes(),
                |e| matches!(e, PayloadError::TagExtraHeader { line: 5, .. }),
            ),
        ];
        for (what, payload, expected) in table {
            let err = parse(&payload).expect_err(what);
            assert!(expected(&err), "{what}: {err:?}");
            // Every message is one printable line.
            let text = err.to_string();
            assert!(
                !text.contains('\n') && !text.contains('\0'),
                "{what}: {text:?}"
            );
        }
    }

    #[test]
    fn messages_never_quote_the_payload() {
        // A file with a password on its first line, and the same line where a commit header
        // belongs, after `committer`, and after a tag's `tagger`: refused without it.
        let secret = "hunter2-secret-value";
        for payload in [
            format!("{secret}\n"),
            commit("", "").replacen("author", secret, 1),
            commit(&format!("{secret}\n"), ""),
            commit(&format!("x {secret}\n"), "").replacen("x ", "X ", 1),
            tag(&format!("{secret} x\n")),
            format!("\x1b[31m{secret}"),
        ] {
            let text = parse(payload.as_bytes()).unwrap_err().to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains('\x1b') && !text.contains('\n'), "{text:?}");
        }
        // Git's own keywords are named.
        let text = parse(commit("", "").replacen("author", "committer", 1).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("expected `author`, found `committer`"),
            "{text}"
        );
    }
}
