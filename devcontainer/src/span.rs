//! Where a value came from: byte [`Span`]s into the original text, the [`LineIndex`] that turns
//! them into 1-based line:column, and [`Located`], the wrapper every typed value wears so a
//! finding can cite the exact place it is about.
//!
//! Invariant: spans always index the text the caller passed in, *including* a UTF-8 BOM if there
//! was one, so line:column computed from them matches what an editor shows.

/// A half-open byte range `[start, end)` into the original document text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte of the value.
    pub start: usize,
    /// One past the last byte of the value.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    #[must_use]
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineCol {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, in Unicode scalar values from the start of the line.
    pub column: u32,
}

/// Maps byte offsets of one text to [`LineCol`]s. The line starts are found (in O(n)) the first
/// time a position is asked for: a document without findings or errors never needs them.
#[derive(Debug, Clone)]
pub struct LineIndex {
    text: String,
    /// Byte offset of the first byte of each line, once asked for.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl PartialEq for LineIndex {
    /// Two indexes are equal when they index the same text (whether built yet or not).
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for LineIndex {}

impl LineIndex {
    /// Index `text`. A line ends after `\n` (so CRLF counts as one line break).
    #[must_use]
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            line_starts: std::sync::OnceLock::new(),
        }
    }

    /// The line and column of byte `offset`. Offsets past the end (or inside a multi-byte
    /// character) are clamped to the nearest preceding character boundary.
    #[must_use]
    pub fn locate(&self, offset: usize) -> LineCol {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let starts = self
            .line_starts
            .get_or_init(|| line_starts(self.text.as_bytes()));
        let line = match starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        LineCol {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// A value together with its JSON pointer and (when it came from text) its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The typed value.
    pub value: T,
    /// RFC 6901 pointer to the JSON value this was built from (`""` is the root).
    pub pointer: String,
    /// Where the JSON value is in the text; `None` for trees built from `serde_json` values.
    pub span: Option<Span>,
}

/// Byte offsets where lines start: 0, then after every `\n`. Eight bytes at a time: a word
/// without a newline (the usual case) is one test, where a byte-by-byte filter cost as much as
/// jsonc-parser's whole scan of the corpus.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut starts = Vec::with_capacity(bytes.len() / 32 + 1);
    starts.push(0);
    let mut push_newlines = |base: usize, chunk: &[u8]| {
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                starts.push(base + i + 1);
            }
        }
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let word =
            u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ (ONES * u64::from(b'\n'));
        // Nonzero iff some byte of `word` is zero, i.e. some byte of the chunk is `\n`.
        if word.wrapping_sub(ONES) & !word & HIGHS != 0 {
            push_newlines(base, chunk);
        }
        base += 8;
    }
    push_newlines(base, chunks.remainder());
    starts
}

impl<T> Located<T> {
    /// Wrap `value` found at `pointer`/`span`.
    pub fn new(value: T, pointer: impl Into<String>, span: Option<Span>) -> Self {
        Self {
            value,
            pointer: pointer.into(),
            span,
        }
    }

    /// Transform the value, keeping its location.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Located<U> {
        Located {
            value: f(self.value),
            pointer: self.pointer,
            span: self.span,
        }
    }

    /// Borrow the value with the same location.
    pub fn as_ref(&self) -> Located<&T> {
        Located {
            value: &self.value,
            pointer: self.pointer.clone(),
            span: self.span,
        }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_character_columns() {
        let idx = LineIndex::new("ab\r\nü{x\n");
        assert_eq!(idx.locate(0), LineCol { line: 1, column: 1 });
        assert_eq!(idx.locate(1), LineCol { line: 1, column: 2 });
        assert_eq!(idx.locate(4), LineCol { line: 2, column: 1 });
        // 'ü' is two bytes: '{' at byte 6 is the second character.
        assert_eq!(idx.locate(6), LineCol { line: 2, column: 2 });
        // inside 'ü' clamps back to its start.
        assert_eq!(idx.locate(5), LineCol { line: 2, column: 1 });
        assert_eq!(idx.locate(1000), LineCol { line: 3, column: 1 });
        // built or not, an index of the same text is the same index
        assert_eq!(idx, LineIndex::new("ab\r\nü{x\n"));
        assert_ne!(idx, LineIndex::new("ab"));
    }

    #[test]
    fn line_starts_match_a_byte_scan() {
        let texts = [
            "",
            "\n",
            "a\nb",
            "1234567\n",
            "12345678\n\n\n",
            "\u{ff}\n\u{100}\n\u{80}\u{8080}x\n\n",
            "no newline at all, but longer than eight bytes",
            "\r\n\r\n\n\x0b\x09\x0a\u{8a}\n\x00\n",
        ];
        for text in texts {
            let expected: Vec<usize> = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
            for from in 0..text.len().min(9) {
                if let Some(t) = text.get(from..) {
                    let want: Vec<usize> = std::iter::once(0)
                        .chain(t.match_indices('\n').map(|(i, _)| i + 1))
                        .collect();
                    assert_eq!(line_starts(t.as_bytes()), want, "{t:?}");
                }
            }
            assert_eq!(line_starts(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn bom_counts_as_a_character_of_line_one() {
        let idx = LineIndex::new("\u{feff}{}");
        assert_eq!(idx.locate(3), LineCol { line: 1, column: 2 });
    }
}
