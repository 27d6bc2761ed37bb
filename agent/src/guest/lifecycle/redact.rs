//! Streaming redaction of secret values and the token from command output.
//!
//! A command's output arrives in arbitrary chunks, so a secret can be split across two reads
//! (`...ghp_ab` | `cd12...`). [`Redactor`] keeps a small carry between chunks: after each chunk it
//! emits everything that can no longer become part of a secret and holds back only the longest
//! tail that is still a *proper prefix* of some secret, which is at most `max_len - 1` bytes.
//!
//! ```text
//!  carry + chunk ──► leftmost-longest full matches before the hold-back point ──► "[redacted]"
//!                └─► tail that is a proper prefix of a secret ──► carry (≤ max_len-1 bytes)
//!  finish() ──► the carry, with any full match in it replaced
//! ```
//!
//! Invariants (property-tested against a one-shot reference):
//! - feeding the stream in any chunking gives exactly the output of redacting the whole stream
//!   at once with leftmost-longest matching;
//! - no secret value ever appears in the output (unless it is also produced by the replacement
//!   text itself, which is not a plausible secret);
//! - the carry never exceeds `max_len - 1` bytes.
//!
//! Matching is on bytes: values need not be UTF-8. Empty values are ignored.

use memchr::memmem;

/// What a redacted value is replaced with.
pub const REDACTED: &[u8] = b"[redacted]";

/// The set of values to hide, shared by every stream of a run.
#[derive(Clone, Default)]
pub struct Needles {
    finders: Vec<memmem::Finder<'static>>,
    max_len: usize,
}

// Values are secrets: Debug shows only how many there are.
impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needles")
            .field("count", &self.finders.len())
            .finish()
    }
}

impl Needles {
    /// The values to redact (empty ones and duplicates are dropped).
    pub fn new<I, B>(values: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let v = v.as_ref();
            if !v.is_empty() && !seen.iter().any(|s| s == v) {
                seen.push(v.to_vec());
            }
        }
        let max_len = seen.iter().map(Vec::len).max().unwrap_or(0);
        let finders = seen
            .into_iter()
            .map(|v| memmem::Finder::new(&v).into_owned())
            .collect();
        Self { finders, max_len }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// The longest value.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The leftmost match starting in `[from, before)`, longest among those at that start.
    fn leftmost_longest(&self, buf: &[u8], from: usize, before: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for f in &self.finders {
            let n = f.needle().len();
            // A match must start before `before`, so it ends before `before + n`.
            let end = (before + n - 1).min(buf.len());
            if end < from + n {
                continue;
            }
            if let Some(i) = f.find(&buf[from..end]) {
                let start = from + i;
                let better = match best {
                    None => true,
                    Some((s, e)) => start < s || (start == s && start + n > e),
                };
                if better {
                    best = Some((start, start + n));
                }
            }
        }
        best
    }

    /// Earliest `h >= from` such that `buf[h..]` is a proper prefix of some value.
    fn hold_back_start(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        let mut h = len;
        for f in &self.finders {
            let needle = f.needle();
            let lo = from.max(len.saturating_sub(needle.len() - 1));
            for s in memchr::memchr_iter(needle[0], &buf[lo..h.max(lo)]).map(|i| lo + i) {
                if needle.starts_with(&buf[s..]) {
                    h = s;
                    break;
                }
            }
        }
        h
    }

    /// Redacts `buf` as a whole (nothing follows it).
    pub fn redact_all(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len());
        self.emit(buf, 0, buf.len(), &mut out);
        out
    }

    /// Appends `buf[from..upto]` with every match that starts before `upto` replaced; returns
    /// where the caller's carry begins (`upto`, or later if a match ran past it).
    fn emit(&self, buf: &[u8], mut from: usize, upto: usize, out: &mut Vec<u8>) -> usize {
        while let Some((s, e)) = self.leftmost_longest(buf, from, upto) {
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
pub struct Redactor {
    needles: Needles,
    carry: Vec<u8>,
}

impl Redactor {
    /// A redactor for one stream.
    pub fn new(needles: Needles) -> Self {
        Self {
            needles,
            carry: Vec::new(),
        }
    }

    /// Bytes held back, waiting to see whether they start a secret.
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// Feeds a chunk; returns what can be shown now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
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
    pub fn finish(&mut self) -> Vec<u8> {
        let carry = std::mem::take(&mut self.carry);
        self.needles.redact_all(&carry)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
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
