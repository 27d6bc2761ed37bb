//! Streaming redaction of secret values and the token from command output.
//!
//! A command's output arrives in arbitrary chunks, so a secret can be split across two reads
//! (`...ghp_ab` | `cd12...`). [`Redactor`] keeps a small carry between chunks: after each chunk it
//! emits everything that can no longer become part of a needle and holds back only the longest
//! tail that is still a *proper prefix* of some needle, which is at most `max_len - 1` bytes.
//!
//! ```text
//!  carry + chunk ──► leftmost-longest full matches before the hold-back point ──► "[redacted]"
//!                └─► tail that is a proper prefix of a needle ──► carry (≤ max_len-1 bytes)
//!  finish() ──► the carry, with any full match in it replaced
//! ```
//!
//! The needles are every value and, for values of at least [`MIN_ENCODED_LEN`] bytes, the forms
//! a command prints it in to slip past a literal match (`echo $GITHUB_TOKEN | base64`):
//!
//! | form | needles |
//! |---|---|
//! | base64, standard and URL-safe | the whole encoding with and without `=` padding; and for the value starting at byte offset 0, 1 and 2 of a longer base64 stream, the characters that depend on the value's bytes only (the first one or two characters of an unaligned start and the last partial character mix in neighbouring bytes, so they are left out) |
//! | hex | lower and upper case; also wrapped at 60 columns (`xxd -p`) |
//! | URL encoding | `%XX` (upper and lower case) for every byte outside RFC 3986's unreserved set, and the same with `/` or with `!'()*` also left alone (Python's `quote`, JavaScript's `encodeURIComponent`) |
//!
//! Shorter values are redacted literally only: the hex of a 5-byte value is 10 hex digits,
//! which a commit hash or a checksum contains by chance often enough to make output unreadable.
//! Encodings that wrap lines are matched as the common encoders wrap a value that starts their
//! output: `xxd -p` at 60 columns, `base64` at 76, `openssl base64` at 64 (a value that starts
//! mid-line wraps elsewhere and is not matched across the break). Compression, encryption, or a
//! command that prints a value in pieces are not recognised either: the sandbox, not this
//! filter, is what keeps a hostile command from the values.
//!
//! Invariants (property-tested against a one-shot reference):
//! - feeding the stream in any chunking gives exactly the output of redacting the whole stream
//!   at once with leftmost-longest matching;
//! - no needle ever appears in the output (unless it is also produced by the replacement text
//!   itself, which is not a plausible secret);
//! - the carry never exceeds `max_len - 1` bytes, `max_len` being the longest needle.
//!
//! One Aho-Corasick automaton finds all needles in one pass; the hold-back point is found by
//! binary search in the sorted needles, for at most `max_len - 1` tail positions per chunk.
//! Matching is on bytes: values need not be UTF-8. Empty values are ignored.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use zeroize::Zeroize as _;

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &[u8] = b"[redacted]";

/// Values shorter than this are redacted literally, not in their encodings (see the module doc).
pub(crate) const MIN_ENCODED_LEN: usize = 8;

/// The set of values to hide, shared by every stream of a run.
#[derive(Clone, Default)]
pub(crate) struct Needles {
    /// Leftmost-longest automaton over `sorted`; `None` when there is nothing to find, or when
    /// it could not be built, in which case everything is redacted (fail closed).
    matcher: Option<AhoCorasick>,
    /// Every needle, sorted and distinct: the hold-back search.
    sorted: Vec<Vec<u8>>,
    /// Whether some needle starts with a byte: skips most tail positions without a search.
    first: Vec<bool>,
    max_len: usize,
}

// Needles are secrets: Debug shows only how many there are.
impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needles")
            .field("count", &self.sorted.len())
            .finish()
    }
}

impl Drop for Needles {
    fn drop(&mut self) {
        // The automaton's own copy cannot be reached; ours at least does not outlive the run.
        for n in &mut self.sorted {
            n.zeroize();
        }
    }
}

/// RFC 3986 unreserved bytes, which URL encoders leave alone; `extra` are left alone too.
fn url_encoded(v: &[u8], extra: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || extra.contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

fn hex(v: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    v.iter()
        .flat_map(|&b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

/// `enc` with a line break after every `width` characters, as `xxd -p` (60), `base64` (76) and
/// `openssl base64` (64) print it when the value starts a line; `None` when it fits on one.
fn wrapped(enc: &[u8], width: usize) -> Option<Vec<u8>> {
    (enc.len() > width).then(|| enc.chunks(width).collect::<Vec<_>>().join(&b'\n'))
}

/// Every form `v` is redacted in (see the module doc's table); may contain duplicates.
fn forms(v: &[u8]) -> Vec<Vec<u8>> {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = vec![v.to_vec()];
    if v.len() < MIN_ENCODED_LEN {
        return out;
    }
    for digits in [LOWER, UPPER] {
        let h = hex(v, digits);
        out.extend(wrapped(&h, 60));
        out.push(h);
    }
    for extra in [&b""[..], b"/", b"!'()*"] {
        out.extend([url_encoded(v, extra, UPPER), url_encoded(v, extra, LOWER)]);
    }
    for (padded, bare) in [(STANDARD, STANDARD_NO_PAD), (URL_SAFE, URL_SAFE_NO_PAD)] {
        let whole = padded.encode(v).into_bytes();
        out.extend([76, 64].into_iter().filter_map(|w| wrapped(&whole, w)));
        out.push(whole);
        out.push(bare.encode(v).into_bytes());
        let mut framed = Vec::with_capacity(v.len() + 2);
        for offset in 0..3 {
            framed.clear();
            framed.resize(offset, 0);
            framed.extend_from_slice(v);
            let mut enc = bare.encode(&framed).into_bytes();
            // Characters before `skip` hold bits of the bytes before the value, those from
            // `stable` on bits of the bytes after it.
            let skip = (8 * offset).div_ceil(6);
            let stable = 8 * framed.len() / 6;
            if offset == 0 {
                // A value that starts the encoder's output (`echo $TOKEN | base64`), wrapped.
                out.extend(
                    [76, 64]
                        .into_iter()
                        .filter_map(|w| wrapped(&enc[..stable], w)),
                );
            }
            out.push(enc[skip..stable].to_vec());
            enc.zeroize();
        }
        framed.zeroize();
    }
    out
}

impl Needles {
    /// The values to redact, with their encodings (empty values and duplicates are dropped).
    pub(crate) fn new<I, B>(values: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut sorted: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.as_ref().is_empty())
            .flat_map(|v| forms(v.as_ref()))
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let max_len = sorted.iter().map(Vec::len).max().unwrap_or(0);
        let mut first = vec![false; 256];
        for n in &sorted {
            first[usize::from(n[0])] = true;
        }
        let matcher = if sorted.is_empty() {
            None
        } else {
            // Fails only past the automaton's size limits (billions of states); `None` then
            // makes every chunk "[redacted]".
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&sorted)
                .ok()
        };
        Self {
            matcher,
            sorted,
            first,
            max_len,
        }
    }

    /// Whether there is nothing to redact.
    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The longest needle (a value or one of its encodings).
    #[cfg(test)]
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether `tail` is a proper prefix of some needle.
    fn is_pending(&self, tail: &[u8]) -> bool {
        if !self.first[usize::from(tail[0])] {
            return false;
        }
        // Needles starting with `tail` sort together from the first one not below it; the
        // first may be `tail` itself, so look at two.
        let i = self.sorted.partition_point(|n| n.as_slice() < tail);
        self.sorted[i..]
            .iter()
            .take(2)
            .any(|n| n.len() > tail.len() && n.starts_with(tail))
    }

    /// Earliest `h >= from` such that `buf[h..]` is a proper prefix of some needle.
    fn hold_back_start(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        let lo = from.max(len.saturating_sub(self.max_len.saturating_sub(1)));
        (lo..len)
            .find(|&s| self.is_pending(&buf[s..]))
            .unwrap_or(len)
    }

    /// Redacts `buf` as a whole (nothing follows it).
    pub(crate) fn redact_all(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len());
        self.emit(buf, 0, buf.len(), &mut out);
        out
    }

    /// Appends `buf[from..upto]` with every match that starts before `upto` replaced; returns
    /// where the caller's carry begins (`upto`, or later if a match ran past it).
    fn emit(&self, buf: &[u8], mut from: usize, upto: usize, out: &mut Vec<u8>) -> usize {
        let Some(matcher) = &self.matcher else {
            if !self.is_empty() && from < buf.len() {
                out.extend_from_slice(REDACTED);
                return buf.len();
            }
            out.extend_from_slice(&buf[from..upto]);
            return upto;
        };
        // Leftmost-longest over the whole buffer is the reference's left-to-right scan; matches
        // that start in the held-back tail are found again with the next chunk.
        let base = from;
        for m in matcher.find_iter(&buf[base..]) {
            let (s, e) = (base + m.start(), base + m.end());
            if s >= upto {
                break;
            }
            out.extend_from_slice(&buf[from..s]);
            out.extend_from_slice(REDACTED);
            from = e;
        }
        if from < upto {
            out.extend_from_slice(&buf[from..upto]);
            from = upto;
        }
        from
    }
}

/// One stream's redaction state.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    needles: Needles,
    carry: Vec<u8>,
}

impl Redactor {
    /// A redactor for one stream.
    pub(crate) fn new(needles: Needles) -> Self {
        Self {
            needles,
            carry: Vec::new(),
        }
    }

    /// Bytes held back, waiting to see whether they start a secret.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.carry.len()
    }

    /// Feeds a chunk; returns what can be shown now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.needles.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        loop {
            let h = self.needles.hold_back_start(&buf, pos);
            // Matches starting before h are final (see the module docs); one may end past h,
            // after which the hold-back point is looked for again.
            let after = self.needles.emit(&buf, pos, h, &mut out);
            if after <= h {
                self.carry = buf[h..].to_vec();
                return out;
            }
            pos = after;
        }
    }

    /// The end of the stream: the carry, redacted.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let carry = std::mem::take(&mut self.carry);
        self.needles.redact_all(&carry)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use memchr::memmem;
    use proptest::prelude::*;

    /// The obvious quadratic reference: scan left to right, longest value at each position.
    fn reference(values: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let best = values
                .iter()
                .filter(|v| !v.is_empty() && text[i..].starts_with(v))
                .map(Vec::len)
                .max();
            match best {
                Some(n) => {
                    out.extend_from_slice(REDACTED);
                    i += n;
                }
                None => {
                    out.push(text[i]);
                    i += 1;
                }
            }
        }
        out
    }

    fn chunked(values: &[Vec<u8>], chunks: &[&[u8]]) -> (Vec<u8>, usize) {
        let needles = Needles::new(values);
        let max = needles.max_len();
        let mut r = Redactor::new(needles);
        let mut out = Vec::new();
        let mut max_held = 0;
        for c in chunks {
            out.extend(r.push(c));
            max_held = max_held.max(r.held());
        }
        out.extend(r.finish());
        assert!(max_held < max.max(1), "held {max_held} of max {max}");
        (out, max_held)
    }

    #[test]
    fn every_split_point_of_a_token() {
        let token = b"ghp_0123456789abcdefABCDEF".to_vec();
        let text = b"before ghp_0123456789abcdefABCDEF after ghp_01 partial".to_vec();
        let want = b"before [redacted] after ghp_01 partial".to_vec();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let (out, _) = chunked(
                    std::slice::from_ref(&token),
                    &[&text[..i], &text[i..j], &text[j..]],
                );
                assert_eq!(out, want, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let values = vec![b"s3cr3t".to_vec(), b"tok".to_vec()];
        let text = b"xs3cr3ts3cr3tok tok s3cr".to_vec();
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(chunked(&values, &chunks).0, reference(&values, &text));
        assert_eq!(
            String::from_utf8(chunked(&values, &chunks).0).unwrap(),
            "x[redacted][redacted]ok [redacted] s3cr"
        );
    }

    #[test]
    fn a_short_value_inside_a_pending_long_one_is_redacted_at_the_end() {
        let values = vec![b"abcd".to_vec(), b"bc".to_vec()];
        assert_eq!(chunked(&values, &[b"abc"]).0, b"a[redacted]");
        assert_eq!(chunked(&values, &[b"abc", b"d"]).0, b"[redacted]");
    }

    #[test]
    fn nothing_is_held_when_no_prefix_is_pending() {
        let mut r = Redactor::new(Needles::new([b"secret"]));
        assert_eq!(r.push(b"hello\n"), b"hello\n");
        assert_eq!(r.held(), 0);
        assert_eq!(r.push(b"a sec"), b"a ");
        assert_eq!(r.held(), 3);
        assert_eq!(r.push(b"ond"), b"second");
        assert_eq!(r.finish(), b"");
    }

    #[test]
    fn debug_hides_values() {
        let n = Needles::new([b"hunter2"]);
        assert!(!format!("{n:?}").contains("hunter2"));
        assert!(!format!("{:?}", Redactor::new(n)).contains("hunter2"));
    }

    /// A command prints `printed`; `hidden` must not survive, at any split into two chunks.
    fn leaks_through(value: &[u8], printed: &[u8], hidden: &[u8]) {
        let mut text = b"out: ".to_vec();
        text.extend_from_slice(printed);
        text.extend_from_slice(b" :end\n");
        for i in 0..=text.len() {
            let (out, _) = chunked(&[value.to_vec()], &[&text[..i], &text[i..]]);
            assert!(
                memmem::find(&out, hidden).is_none(),
                "an encoding survived a split at {i}"
            );
            assert!(out.starts_with(b"out: ") && out.ends_with(b" :end\n"));
        }
    }

    fn hidden(value: &[u8], printed: &[u8]) {
        leaks_through(value, printed, printed);
    }

    #[test]
    fn encodings_of_a_value_are_redacted_across_chunks() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
        use base64::Engine as _;
        let token = b"ghu_16C7e42F292c6912E7710c838347Ae178B4a\xfb?+/ =&%".to_vec();
        hidden(&token, STANDARD.encode(&token).as_bytes());
        hidden(&token, URL_SAFE_NO_PAD.encode(&token).as_bytes());
        // Inside a longer stream (`echo $TOKEN | base64` adds a newline), at each alignment:
        // the characters made of the token's bits only must go.
        for engine in [STANDARD, URL_SAFE] {
            for pre in 0..3 {
                for post in [&b"\n"[..], b"xy"] {
                    let mut framed = b"XYZ"[..pre].to_vec();
                    framed.extend_from_slice(&token);
                    framed.extend_from_slice(post);
                    let enc = engine.encode(&framed);
                    let inner = (8 * pre).div_ceil(6)..8 * (pre + token.len()) / 6;
                    leaks_through(&token, enc.as_bytes(), &enc.as_bytes()[inner]);
                }
            }
        }
        let lower: String = token.iter().map(|b| format!("{b:02x}")).collect();
        hidden(&token, lower.as_bytes());
        hidden(&token, lower.to_uppercase().as_bytes());
        let url: String = token
            .iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        hidden(&token, url.as_bytes());
    }

    #[test]
    fn line_wrapped_encodings_are_redacted() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        // A GitHub token: `echo $GITHUB_TOKEN | xxd -p` is 82 hex digits, wrapped at 60.
        let token = b"ghu_16C7e42F292c6912E7710c838347Ae178B4a".to_vec();
        let mut line = token.clone();
        line.push(b'\n');
        let xxd = wrapped(&hex(&line, b"0123456789abcdef"), 60).unwrap();
        leaks_through(&token, &xxd, &xxd[..60]);
        leaks_through(&token, &xxd, &xxd[61..80]);
        // A 70-byte secret: `echo $S | base64` (76 columns) and `openssl base64` (64).
        let secret =
            b"-----BEGIN KEY----- 0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMN".to_vec();
        let mut line = secret.clone();
        line.push(b'\n');
        for width in [76, 64] {
            let enc = wrapped(STANDARD.encode(&line).as_bytes(), width).unwrap();
            leaks_through(&secret, &enc, &enc[..width]);
            leaks_through(&secret, &enc, &enc[width + 1..enc.len() - 4]);
        }
    }

    #[test]
    fn short_values_are_redacted_only_literally() {
        let n = Needles::new([b"abc1234"]);
        // The hex of "abc1234" is innocent-looking text that must survive.
        assert_eq!(
            n.redact_all(b"61626331323334 abc1234"),
            b"61626331323334 [redacted]"
        );
    }

    /// Throughput on `REDACT_BENCH_MIB` (default 64) MiB of log-like output with 100 secrets,
    /// in 64 KiB chunks. Prints MiB/s; asserts nothing about time.
    #[test]
    #[ignore = "a measurement: cargo test --release -p codespace-agent --lib redact_throughput -- --ignored --nocapture"]
    #[allow(clippy::print_stdout)] // the measurement is the output
    fn redact_throughput() {
        let mib: usize = std::env::var("REDACT_BENCH_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let secrets: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("s3cr3t-{i:03}-ghu_AbCdEfGhIjKlMnOpQrStUvWxYz0123").into_bytes())
            .collect();
        let line = b"npm WARN deprecated some-package@1.2.3: use other-package instead 0123abcd\n";
        let mut text = Vec::with_capacity(mib << 20);
        let mut i = 0usize;
        while text.len() < mib << 20 {
            text.extend_from_slice(line);
            if i % 1000 == 0 {
                text.extend_from_slice(&secrets[(i / 1000) % secrets.len()]);
            }
            i += 1;
        }
        let needles = Needles::new(&secrets);
        let count = needles.sorted.len();
        let mut r = Redactor::new(needles);
        let start = std::time::Instant::now();
        let mut n = 0;
        for c in text.chunks(64 << 10) {
            n += r.push(c).len();
        }
        n += r.finish().len();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "redact_throughput: {mib} MiB, 100 secrets ({count} needles): {:.3} s, {:.0} MiB/s ({n} bytes out)",
            secs,
            mib as f64 / secs
        );
    }

    proptest! {
        #[test]
        fn any_chunking_matches_the_reference(
            values in proptest::collection::vec(proptest::collection::vec(0u8..4, 1..6), 1..4),
            text in proptest::collection::vec(0u8..4, 0..80),
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&text[prev..c]);
                prev = c;
            }
            chunks.push(&text[prev..]);
            let (out, _) = chunked(&values, &chunks);
            prop_assert_eq!(out, reference(&values, &text));
        }

        #[test]
        fn no_value_survives(
            secret in proptest::collection::vec(any::<u8>(), 8..20),
            pre in proptest::collection::vec(any::<u8>(), 0..30),
            split in 0usize..20,
        ) {
            let mut text = pre.clone();
            text.extend_from_slice(&secret);
            text.extend_from_slice(&pre);
            let split = split.min(text.len());
            let (out, _) = chunked(std::slice::from_ref(&secret), &[&text[..split], &text[split..]]);
            prop_assert!(memmem::find(&out, &secret).is_none());
        }
    }
}
