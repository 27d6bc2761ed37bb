//! A forgiving shell lexer: words and control operators, enough that quoting cannot hide a
//! pattern. It never fails; unbalanced quotes or parentheses run to the end of the input.

/// The contents of `$(..)`, `<(..)`, `>(..)` and backtick substitutions in a word.
pub(super) fn substitutions(word: &str) -> Vec<String> {
    // Every substitution starts with one of these; most words have none, skip the char copy.
    if !word.contains(['$', '<', '>', '`']) {
        return Vec::new();
    }
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if (c == '$' || c == '<' || c == '>') && chars.get(i + 1) == Some(&'(') {
            let mut depth = 1;
            let mut j = i + 2;
            while j < chars.len() && depth > 0 {
                match chars[j] {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            let end = if depth == 0 { j - 1 } else { j };
            out.push(chars[i + 2..end].iter().collect());
            i = j;
        } else if c == '`' {
            let rest = &chars[i + 1..];
            let len = rest.iter().position(|&c| c == '`').unwrap_or(rest.len());
            out.push(rest[..len].iter().collect());
            i += len + 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Control operators between commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `|`
    Pipe,
    /// `;`, `&&`, `||`, `&`, newline, group boundaries
    Sequence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// A word, quotes removed.
    Word(String),
    /// A control operator.
    Op(Op),
}

/// Splits a script into words and control operators. Quotes are removed (their content kept in
/// the word), `$(..)`/`<(..)`/backticks are kept whole inside a word, comments are dropped,
/// redirections are dropped with their target, except an output file (kept as the word `>f`)
/// and a here-string's word (kept as a word).
pub(super) fn lex(script: &str) -> Vec<Token> {
    let chars: Vec<char> = script.chars().collect();
    let mut tokens = Vec::new();
    // One buffer for every word, copied out at its exact size when the word ends: growing a
    // fresh String char by char cost two or three reallocations per word.
    let mut word = String::with_capacity(script.len());
    let mut in_word = false;
    let mut i = 0;
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(word.as_str().to_owned()));
            word.clear();
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => {
                flush(&mut word, &mut in_word, &mut tokens);
                i += 1;
            }
            '\n' | ';' => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Op(Op::Sequence));
                i += 1;
            }
            '&' => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Op(Op::Sequence));
                i += if chars.get(i + 1) == Some(&'&') { 2 } else { 1 };
            }
            '|' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.get(i + 1) == Some(&'|') {
                    tokens.push(Token::Op(Op::Sequence));
                    i += 2;
                } else {
                    tokens.push(Token::Op(Op::Pipe));
                    i += if chars.get(i + 1) == Some(&'&') { 2 } else { 1 };
                }
            }
            '(' | ')' | '{' | '}' if !in_word => {
                // Subshells and groups: treat as command boundaries.
                tokens.push(Token::Op(Op::Sequence));
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    if next != '\n' {
                        word.push(next);
                        in_word = true;
                    }
                }
                i += 2;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\'
                        && i + 1 < chars.len()
                        && matches!(chars[i + 1], '"' | '\\' | '$' | '`')
                    {
                        i += 1;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '$' | '<' | '>' if chars.get(i + 1) == Some(&'(') => {
                in_word = true;
                let mut depth = 0usize;
                while i < chars.len() {
                    word.push(chars[i]);
                    if chars[i] == '(' {
                        depth += 1;
                    } else if chars[i] == ')' {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    i += 1;
                }
            }
            '`' => {
                in_word = true;
                word.push('`');
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    word.push(chars[i]);
                    i += 1;
                }
                word.push('`');
                i += 1;
            }
            // A here-string feeds its word to the command's stdin: keep the word (it is lexed
            // as usual, so `sh <<< "$(curl ..)"` keeps its substitution).
            '<' if chars.get(i + 1) == Some(&'<') && chars.get(i + 2) == Some(&'<') => {
                flush(&mut word, &mut in_word, &mut tokens);
                i += 3;
            }
            // Output to a file (`> f`, `>> f`, `>| f`): kept as the word `>f`, so a download
            // saved this way (`curl URL > f && sh f`) is known.
            '>' if !matches!(chars.get(i + 1), Some('&' | '('))
                && (!in_word || word.chars().all(|c| c.is_ascii_digit())) =>
            {
                let fd = std::mem::take(&mut word);
                in_word = false;
                i += 1;
                while i < chars.len() && matches!(chars[i], '>' | '|') {
                    i += 1;
                }
                while i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                if fd.is_empty() || fd == "1" {
                    word.push('>');
                    in_word = true;
                } else {
                    // `2> log`: not the command's output; drop the target as before.
                    while i < chars.len()
                        && !matches!(chars[i], ' ' | '\t' | '\n' | ';' | '|' | '&')
                    {
                        i += 1;
                    }
                }
            }
            '<' | '>' => {
                // Redirection: drop the operator and its target (`< in`, `2>&1`, `<<EOF`).
                if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                while i < chars.len() && matches!(chars[i], '<' | '>' | '&' | '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                while i < chars.len() && !matches!(chars[i], ' ' | '\t' | '\n' | ';' | '|' | '&') {
                    i += 1;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
                i += 1;
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// Groups tokens into simple commands, each with the operator that follows it.
pub(super) fn split_commands(tokens: Vec<Token>) -> Vec<(Vec<String>, Op)> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    for token in tokens {
        match token {
            Token::Word(w) => words.push(w),
            Token::Op(op) => {
                if !words.is_empty() || op == Op::Pipe {
                    out.push((std::mem::take(&mut words), op));
                }
            }
        }
    }
    if !words.is_empty() {
        out.push((words, Op::Sequence));
    }
    out
}
