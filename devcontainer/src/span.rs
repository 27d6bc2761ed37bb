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

/// Maps byte offsets of one text to [`LineCol`]s. Built once per document in O(n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    text: String,
    /// Byte offset of the first byte of each line.
    line_starts: Vec<usize>,
}

impl LineIndex {
    /// Index `text`. A line ends after `\n` (so CRLF counts as one line break).
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            text: text.to_owned(),
            line_starts,
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
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
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
    }

    #[test]
    fn bom_counts_as_a_character_of_line_one() {
        let idx = LineIndex::new("\u{feff}{}");
        assert_eq!(idx.locate(3), LineCol { line: 1, column: 2 });
    }
}
