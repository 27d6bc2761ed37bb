//! Agent-provided text made safe to print on the operator's terminal (or a file they `cat`).
//!
//! A lifecycle command is the repository's code, and its output reaches the operator's terminal
//! through the agent. Printed raw, `ESC ] 52` writes the operator's clipboard, `ESC [ 2J` clears
//! the screen, cursor moves repaint earlier lines, and a line `==> postCreateCommand: succeeded`
//! is indistinguishable from this CLI's own progress. So every piece of agent-provided text goes
//! through this module before it is printed:
//!
//! ```text
//!  lifecycle_output data ──► Output::push (stdout or stderr) ──► stdout / stderr
//!       controls escaped; a line starting "==>" (at column 0 of its stream or of the
//!       terminal both share) gets "| " in front
//!  command names, reasons, ids in progress lines ──► field() ──► "==> {field}: …"
//!  agent error messages ──► field() ──► "codespace-agentctl: agent error …"
//!       controls escaped, newlines and tabs too (a field is one line)
//! ```
//!
//! Escaped: C0 controls (U+0000..U+001F) except newline and tab in output, DEL (U+007F) and C1
//! controls (U+0080..U+009F, which some terminals take as `ESC`-sequences). ESC shows as `\e`;
//! carriage return, newline and tab as `\r`, `\n`, `\t`; the others as `\xNN`, the code point
//! in hex. A backslash is left as it is: text that reads `\e` is only text. `--json` output does
//! not come here: serde escapes control characters in JSON strings.

use std::fmt::Write as _;

/// How the CLI's own progress lines start.
pub(crate) const STATUS: &str = "==>";
/// Put in front of a line of command output that starts like a progress line.
pub(crate) const MARK: &str = "| ";

/// Appends `c`, escaped if it is a control character (newline and tab kept if `layout`).
fn push_char(out: &mut String, c: char, layout: bool) {
    match c {
        '\n' | '\t' if layout => out.push(c),
        '\u{1b}' => out.push_str("\\e"),
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        _ => out.push(c),
    }
}

/// One line's worth of agent-provided text (a command name, a reason): every control escaped.
pub(crate) fn field(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_char(&mut out, c, false);
    }
    out
}

/// Where printed text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One destination's line.
#[derive(Debug, Default)]
struct Line {
    /// The start of the current line, a proper prefix of [`STATUS`].
    pending: String,
    /// Whether the current line already has text (or has been decided).
    mid_line: bool,
}

/// Command output on stdout and stderr, printed as it arrives in arbitrary pieces from commands
/// running in parallel.
///
/// A forged progress line is one that *looks* like it starts at column 0: of its own stream
/// (stdout or stderr redirected alone) or of the terminal both share (one command can end a line
/// on stderr while another is in the middle of one on stdout). So a line is checked if it starts
/// in either view. Whether it starts with [`STATUS`] is known only after up to three characters,
/// which may come in different pieces; until then they wait in `pending` (at most
/// `STATUS.len() - 1` bytes per stream).
#[derive(Debug, Default)]
pub(crate) struct Output {
    stdout: Line,
    stderr: Line,
    /// Whether the shared terminal's current line already has text.
    mid_line: bool,
}

impl Output {
    fn line(&mut self, stream: Stream) -> (&mut Line, &mut bool) {
        match stream {
            Stream::Stdout => (&mut self.stdout, &mut self.mid_line),
            Stream::Stderr => (&mut self.stderr, &mut self.mid_line),
        }
    }

    /// The printable form of the next piece of output on `stream`.
    pub(crate) fn push(&mut self, stream: Stream, data: &str) -> String {
        let (line, shared) = self.line(stream);
        let mut out = String::with_capacity(data.len() + MARK.len());
        for c in data.chars() {
            if line.pending.is_empty() && line.mid_line && *shared {
                push_char(&mut out, c, true);
                line.mid_line = c != '\n';
                *shared = line.mid_line;
                continue;
            }
            line.pending.push(c);
            if line.pending == STATUS {
                out.push_str(MARK);
                out.push_str(STATUS);
                line.pending.clear();
                line.mid_line = true;
                *shared = true;
            } else if !STATUS.starts_with(line.pending.as_str()) {
                for p in std::mem::take(&mut line.pending).chars() {
                    push_char(&mut out, p, true);
                }
                line.mid_line = c != '\n';
                *shared = line.mid_line;
            }
        }
        out
    }

    /// The CLI printed a whole line of its own on `stream`.
    pub(crate) fn own_line(&mut self, stream: Stream) {
        let (line, shared) = self.line(stream);
        line.mid_line = false;
        *shared = false;
    }

    /// The end of the output: what `stream` held back, as it is (it is not a status line).
    pub(crate) fn finish(&mut self, stream: Stream) -> String {
        let (line, shared) = self.line(stream);
        let rest = std::mem::take(&mut line.pending);
        if !rest.is_empty() {
            line.mid_line = true;
            *shared = true;
        }
        field(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_output_lines() {
        // (input, as a field, as one piece of output)
        let table: &[(&str, &str, &str)] = &[
            ("plain text", "plain text", "plain text"),
            ("a\tb\nc", "a\\tb\\nc", "a\tb\nc"),
            (
                "\u{1b}]52;c;ZXZpbA==\u{7}",
                "\\e]52;c;ZXZpbA==\\x07",
                "\\e]52;c;ZXZpbA==\\x07",
            ),
            ("\u{1b}[2J\u{1b}[H", "\\e[2J\\e[H", "\\e[2J\\e[H"),
            (
                "\r==> fake succeeded\n",
                "\\r==> fake succeeded\\n",
                "\\r==> fake succeeded\n",
            ),
            (
                "==> x: succeeded\n",
                "==> x: succeeded\\n",
                "| ==> x: succeeded\n",
            ),
            (
                "ok\n==> forged\n==>\n",
                "ok\\n==> forged\\n==>\\n",
                "ok\n| ==> forged\n| ==>\n",
            ),
            (
                "=== heading ==>\n",
                "=== heading ==>\\n",
                "=== heading ==>\n",
            ),
            (" ==> indented\n", " ==> indented\\n", " ==> indented\n"),
            ("\0\u{8}\u{7f}", "\\x00\\x08\\x7f", "\\x00\\x08\\x7f"),
            ("\u{9b}31m C1 CSI", "\\x9b31m C1 CSI", "\\x9b31m C1 CSI"),
            ("ünïcödé ✓ \\e", "ünïcödé ✓ \\e", "ünïcödé ✓ \\e"),
        ];
        for (input, as_field, as_output) in table {
            assert_eq!(field(input), *as_field, "field {input:?}");
            let mut o = Output::default();
            let printed = o.push(Stream::Stdout, input) + &o.finish(Stream::Stdout);
            assert_eq!(printed, *as_output, "output {input:?}");
        }
    }

    #[test]
    fn a_forged_status_line_split_across_pieces_is_marked() {
        let text = "done\n==> postCreateCommand: succeeded\n=\n==";
        let want = "done\n| ==> postCreateCommand: succeeded\n=\n==";
        for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            for j in (i..=text.len()).filter(|&j| text.is_char_boundary(j)) {
                let mut o = Output::default();
                let printed = o.push(Stream::Stderr, &text[..i])
                    + &o.push(Stream::Stderr, &text[i..j])
                    + &o.push(Stream::Stderr, &text[j..]);
                assert_eq!(
                    printed + &o.finish(Stream::Stderr),
                    want,
                    "split at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn held_back_is_at_most_the_status_prefix() {
        let mut o = Output::default();
        assert_eq!(o.push(Stream::Stdout, "=="), "");
        assert_eq!(o.stdout.pending.len(), 2);
        assert_eq!(o.push(Stream::Stdout, "x"), "==x");
        assert_eq!(o.push(Stream::Stdout, "\n\u{1b}"), "\n\\e");
    }

    #[test]
    fn a_line_start_in_either_view_is_checked() {
        use Stream::{Stderr, Stdout};
        // Mid-line on stdout, a new line on stderr: on a shared terminal stdout's next text
        // starts at column 0.
        let mut o = Output::default();
        assert_eq!(o.push(Stdout, "abc"), "abc");
        assert_eq!(o.push(Stderr, "\n"), "\n");
        assert_eq!(o.push(Stdout, "==> fake\n"), "| ==> fake\n");
        // Mid-line on the terminal, a new line on stderr alone (stderr redirected to a file).
        let mut o = Output::default();
        assert_eq!(o.push(Stderr, "x\n"), "x\n");
        assert_eq!(o.push(Stdout, "abc"), "abc");
        assert_eq!(o.push(Stderr, "==> fake\n"), "| ==> fake\n");
        // The CLI's own progress line ends a line on the terminal.
        let mut o = Output::default();
        assert_eq!(o.push(Stdout, "abc"), "abc");
        o.own_line(Stderr);
        assert_eq!(o.push(Stdout, "==> fake\n"), "| ==> fake\n");
        // Mid-line in both views: not a line start anywhere.
        let mut o = Output::default();
        assert_eq!(o.push(Stdout, "a ==> b"), "a ==> b");
        assert_eq!(o.push(Stderr, "c"), "c");
        assert_eq!(o.push(Stdout, "==> d"), "==> d");
    }
}
