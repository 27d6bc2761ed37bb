//! Argv-level knowledge: which programs download, which interpret, which only wrap another
//! program (`sudo`, `env`, `busybox`), and how to find the inline script an argv runs
//! (`sh -c CODE`, `python -c CODE`, `pwsh -Command CODE`).

/// Programs that fetch content from the network.
pub(super) const DOWNLOADERS: &[&str] = &[
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

pub(super) fn basename(word: &str) -> String {
    base(word).to_ascii_lowercase()
}

/// [`basename`] without the lower-casing copy: the last path component with a `.exe` suffix (in
/// any case) removed, as written. Compare it with `eq_ignore_ascii_case`.
fn base(word: &str) -> &str {
    let name = word.rsplit(['/', '\\']).next().unwrap_or(word);
    let cut = name.len().saturating_sub(4);
    if name.len() >= 4 && name.as_bytes()[cut..].eq_ignore_ascii_case(b".exe") {
        &name[..cut]
    } else {
        name
    }
}

/// Whether `name` is in `table` (lower case), ignoring ASCII case.
fn listed(table: &[&str], name: &str) -> bool {
    table.iter().any(|t| t.eq_ignore_ascii_case(name))
}

pub(super) fn is_downloader(word: &str) -> bool {
    listed(DOWNLOADERS, base(word))
}

/// `python3.11` and `python3` are python; `node18` is not a real binary name but costs nothing.
pub(super) fn interpreter_name(word: &str) -> Option<String> {
    // The user's shell, whichever it is.
    if matches!(word, "$SHELL" | "${SHELL}" | "$BASH" | "${BASH}") {
        return Some(word.to_owned());
    }
    let name = base(word);
    if listed(INTERPRETERS, name) {
        return Some(name.to_ascii_lowercase());
    }
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !stem.is_empty() && stem.len() != name.len() && listed(INTERPRETERS, stem) && stem != "." {
        return Some(name.to_ascii_lowercase());
    }
    None
}

pub(super) fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "fish" | "csh" | "tcsh"
    )
}

/// Skips wrapper programs, their options and `NAME=value` assignments, returning the index of the
/// word that is really executed.
pub(super) fn effective_start(words: &[String]) -> usize {
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if is_assignment(w) {
            i += 1;
            continue;
        }
        if !listed(WRAPPERS, base(w)) {
            return i;
        }
        let name = basename(w);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_like_the_lower_cased_base_name() {
        // The definition the allocation-free helpers must agree with.
        fn reference(word: &str) -> String {
            let name = word.rsplit(['/', '\\']).next().unwrap_or(word);
            let lower = name.to_ascii_lowercase();
            lower.strip_suffix(".exe").unwrap_or(&lower).to_string()
        }
        for word in [
            "curl",
            "/usr/bin/CURL",
            "C:\\bin\\Wget.EXE",
            ".exe",
            "x.exe.exe",
            "é.exe",
            "python3.11",
            "Python3",
            "node18",
            ".",
            "..",
            "sudo",
            "/usr/bin/SUDO",
            "3.",
            "bash.Exe",
            "",
        ] {
            assert_eq!(basename(word), reference(word), "{word:?}");
            let name = reference(word);
            assert_eq!(
                is_downloader(word),
                DOWNLOADERS.contains(&name.as_str()),
                "{word:?}"
            );
            let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            let interpreter = (INTERPRETERS.contains(&name.as_str())
                || (!stem.is_empty()
                    && stem != name
                    && INTERPRETERS.contains(&stem)
                    && stem != "."))
                .then(|| name.clone());
            assert_eq!(interpreter_name(word), interpreter, "{word:?}");
        }
    }
}
