//! Dangerous environment variable names, one list with a reason for each: every name a shell
//! treats specially and every name that makes a common tool run a program, load code or send
//! traffic somewhere else.
//!
//! Two users read it, each through its own question:
//! - the secrets policy (`codespace_policy::secrets::check_name`, which also guards `remoteEnv`,
//!   the environment file and the sandbox's environment) refuses every name here
//!   ([`dangerous_reason`]);
//! - the audit reports a devcontainer that sets a [`Danger::Hijack`] name ([`hijack_reason`]);
//!   [`Danger::Special`] names (`PATH`, `HOME`, `EDITOR`, ...) are ones devcontainers set on
//!   purpose.
//!
//! It lives here, in the pure parser crate, because `codespace-policy` depends on this crate
//! and not the other way round.
//!
//! A secret becomes a variable in three places: the environment file that login shells source
//! (`set -a; . file`), the environment of lifecycle commands, and a sandboxed command's
//! environment. A *value* is harmless in all three (the file single-quotes it); the *name* is
//! not. Issue 16 showed both kinds of harm:
//!
//! - **The shell itself.** Some variables are numeric: assigning one evaluates the value
//!   arithmetically, and an array subscript in it runs a command substitution, so
//!   `RANDOM='x[$(id)]'` runs `id` in bash, zsh and mksh the moment the file is sourced. Others
//!   are read-only or must be numbers: the assignment fails and the shell abandons the rest of
//!   the file (`EUID` in zsh, `OPTIND` in dash: "Illegal number"), so every later secret, the
//!   token among them, silently goes missing. Others change what the shell does next (history
//!   written to a chosen file, functions autoloaded from a chosen directory).
//! - **The tools.** `EDITOR`, `PAGER`, `LESSOPEN`, `HOME`, `XDG_CONFIG_HOME`, `RUBYOPT`, ...
//!   each make git, less, ruby or another everyday tool run a program the secret's author chose,
//!   as the codespace's user.
//!
//! Sources for the shell names: bash(1) "Shell Variables"; zshparam(1) "Parameters Set By The
//! Shell" and "Parameters Used By The Shell"; dash(1) and mksh(1)/ksh93(1) special parameters;
//! fish's own variables (`set -n` in a clean fish). The names each shell sets were also listed
//! from the shells themselves (`compgen -v`, `${(k)parameters}`, `typeset`, `set`) and every
//! one was sourced with an `x[$(touch marker)]` value (the agent's env-file test keeps doing
//! that). Names are case-insensitive (workspace-agents.md §2.4), so zsh's lower-case arrays
//! (`path`, `fpath`, `status`, `argv`, ...) are the same names as their upper-case spellings;
//! every pattern is written in upper case.
//!
//! A pattern is an exact name, or a prefix when it ends in `*`. Prefixes are used only where a
//! whole family is dangerous and no common secret name starts that way (`MAIL*` would catch
//! `MAILGUN_API_KEY`, so the mail variables are listed one by one). The tests below check that
//! every entry is upper case, live, unique and not shadowed by a prefix entry.
//!
//! Deliberately not here: build-tool variables that devcontainers commonly set (`CC`, `CXX`,
//! `MAKEFLAGS`, `CFLAGS`) and credential carriers whose purpose is the secret
//! (`PIP_INDEX_URL`, `CARGO_REGISTRY_TOKEN`, `NPM_TOKEN`); the organization can refuse them
//! with `secrets.deny_names`.

use Danger::{Hijack, Special};

/// What setting a variable of a [`DANGEROUS_NAMES`] entry does, which decides who acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Danger {
    /// Makes unrelated programs run code or send data somewhere chosen (the dynamic loader,
    /// shell start-up hooks, interpreter options, git's commands): the audit reports a
    /// devcontainer that sets it, and no secret or `remoteEnv` entry may have the name.
    Hijack,
    /// Special to a shell or a tool in a way devcontainers also use on purpose (`PATH`, `HOME`,
    /// `EDITOR`, `PYTHONUNBUFFERED`): no secret or `remoteEnv` entry may have the name, but the
    /// audit does not report a devcontainer that sets it.
    Special,
}

/// Numeric shell variables whose assignment is evaluated arithmetically somewhere.
const ARITHMETIC: &str =
    "numeric shell variable: assigning it evaluates the value arithmetically, which runs `$(..)` \
     in a subscript (bash, zsh or mksh) or aborts the sourced file (dash, ksh93)";
/// Variables a shell sets and protects.
const READ_ONLY: &str =
    "read-only or shell-maintained variable: assigning it aborts the sourced file, losing every \
     later entry, or is overwritten at once";
/// zsh's special arrays and associative arrays (lower case in zsh; names are case-insensitive).
const ZSH_SPECIAL: &str =
    "zsh special parameter (lower case in zsh): read-only or an associative array, so \
     assigning it aborts the sourced file";
/// Prompt strings.
const PROMPT: &str = "prompt strings expand command substitutions";
/// Traffic interception.
const PROXY: &str = "sends the traffic of curl, git, pip, npm, ... through a chosen proxy";
/// Trust anchors.
const CA: &str = "replaces or extends the trusted certificate authorities: TLS interception";

/// The dangerous names: what setting one does, its pattern (exact, or a prefix when it ends in
/// `*`; upper case) and why.
///
/// Each entry says why it is dangerous; the tests check every entry is upper case, live,
/// unique and not shadowed (a [`Danger::Hijack`] entry inside a [`Danger::Special`] family is
/// listed before it, so that its own reason is the one reported).
#[rustfmt::skip] // one entry a line: the table reads as data
pub const DANGEROUS_NAMES: &[(Danger, &str, &str)] = &[
    // ── Execution hijacking (DESIGN.md §2, workspace-agents.md §4/§5.8) ──
    (Hijack, "LD_*",
        "dynamic loader variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT) inject code"),
    (Hijack, "BASH_ENV", "sourced by every non-interactive bash"),
    (Hijack, "ENV", "sourced by interactive POSIX shells"),
    (Hijack, "PROMPT_COMMAND", "run by bash before every prompt"),
    (Hijack, "PS0", PROMPT),
    (Hijack, "PS1", PROMPT),
    (Hijack, "PS2", PROMPT),
    (Hijack, "PS3", PROMPT),
    (Hijack, "PS4", PROMPT),
    (Hijack, "ZDOTDIR", "moves zsh's startup files to an attacker's directory"),
    (Special, "PATH", "decides which program runs (zsh's `path` array too)"),
    (Special, "CDPATH", "redirects cd in scripts (zsh's `cdpath` array too)"),
    (Special, "SHELL", "decides which shell tools spawn"),
    (Hijack, "IFS", "changes word splitting of every shell script"),
    (Hijack, "NODE_OPTIONS", "--require preloads code into every node process"),
    (Hijack, "DYLD_*", "the macOS dynamic loader loads the libraries these name"),
    (Hijack, "BASH_FUNC_*", "bash imports exported functions from these variables"),
    (Hijack, "HOSTALIASES", "redirects host name lookups"),
    // The audit reports these members of the PYTHON* and PERL* families (a devcontainer
    // setting PYTHONUNBUFFERED is ordinary); the secrets policy refuses the whole family.
    (Hijack, "PYTHONSTARTUP", "python runs this file when it starts interactively"),
    (Hijack, "PYTHONPATH", "python imports modules from these directories first"),
    (Hijack, "PYTHONHOME", "python loads its standard library from here"),
    (Hijack, "PYTHONINSPECT", "python enters interactive mode after scripts"),
    (Hijack, "PYTHONUSERBASE", "python imports site packages from here"),
    (Hijack, "PYTHONWARNINGS", "python imports the warning categories it names"),
    (Hijack, "PYTHONBREAKPOINT", "python imports and calls this on breakpoint()"),
    (Hijack, "PYTHONHTTPSVERIFY", "switches off TLS certificate checks in python"),
    (Hijack, "PERL5OPT", "perl applies these command-line options (e.g. -M modules) to every run"),
    (Hijack, "PERL5LIB", "perl loads modules from here first"),
    (Hijack, "PERLLIB", "perl loads modules from here first"),
    (Hijack, "PERL5DB", "perl runs this debugger code"),
    (Special, "PYTHON*", "PYTHONPATH, PYTHONSTARTUP, PYTHONHOME load code into python"),
    (Special, "PERL*", "PERL5OPT, PERL5LIB load code into perl"),
    (Hijack, "JAVA_TOOL_OPTIONS", "-javaagent loads code into every JVM"),
    (Hijack, "GIT_*",
        "GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_*, GIT_PAGER run code, redirect credentials"),
    // ── Shells: numeric variables (issue 16: the payload ran or the file was abandoned) ──
    (Special, "RANDOM", ARITHMETIC),
    (Special, "SRANDOM", ARITHMETIC),
    (Special, "SECONDS", ARITHMETIC),
    (Special, "LINENO", ARITHMETIC),
    (Special, "OPTIND", ARITHMETIC),
    (Special, "HISTCMD", ARITHMETIC),
    (Special, "HISTSIZE", ARITHMETIC),
    (Special, "SAVEHIST", ARITHMETIC),
    (Special, "COLUMNS", ARITHMETIC),
    (Special, "LINES", ARITHMETIC),
    (Special, "SHLVL", ARITHMETIC),
    (Special, "UID", ARITHMETIC),
    (Special, "EUID", ARITHMETIC),
    (Special, "GID", ARITHMETIC),
    (Special, "EGID", ARITHMETIC),
    (Special, "PPID", ARITHMETIC),
    (Special, "TMOUT", ARITHMETIC),
    (Special, "MAILCHECK", ARITHMETIC),
    (Special, "FUNCNEST", ARITHMETIC),
    (Special, "KEYTIMEOUT", ARITHMETIC),
    (Special, "LISTMAX", ARITHMETIC),
    (Special, "TRY_BLOCK_ERROR", ARITHMETIC),
    (Special, "TRY_BLOCK_INTERRUPT", ARITHMETIC),
    (Special, "BASHPID", ARITHMETIC),
    (Special, "KSHUID", ARITHMETIC),
    (Special, "KSHGID", ARITHMETIC),
    (Special, "KSHEGID", ARITHMETIC),
    (Special, "USER_ID", ARITHMETIC),
    (Special, "PGRP", ARITHMETIC),
    (Special, "JOBMAX", ARITHMETIC),
    (Special, "EPOCHSECONDS", READ_ONLY),
    (Special, "EPOCHREALTIME", READ_ONLY),
    (Special, "ARGC", READ_ONLY),
    (Special, "TTYIDLE", READ_ONLY),
    (Special, "REPORTTIME", "zsh reports the timing of commands that take longer"),
    (Special, "REPORTMEMORY", "zsh reports the memory of commands that use more"),
    (Special, "HISTFILESIZE", "numeric; bash truncates the history file to this many lines"),
    // ── Shells: variables they set, protect or act on ──
    (Special, "_", READ_ONLY),
    (Special, "PWD", "the shell's current directory: cd, prompts and scripts trust it"),
    (Special, "OLDPWD", "the shell's previous directory: `cd -` goes there"),
    (Special, "OPTARG", "set by getopts"),
    (Special, "OPTERR", "set by getopts"),
    (Special, "REPLY", "set by read and select"),
    (Special, "BASH", READ_ONLY),
    (Hijack, "BASHOPTS", "read-only in bash; exported, it turns options on in every bash started"),
    (Hijack, "SHELLOPTS",
        "read-only in bash; exported, it turns on xtrace (and more) in every bash started"),
    (Special, "BASH_ALIASES", READ_ONLY),
    (Special, "BASH_ARGC", READ_ONLY),
    (Special, "BASH_ARGV", READ_ONLY),
    (Special, "BASH_ARGV0", "sets bash's $0"),
    (Special, "BASH_CMDS",
        "bash's command hash table: assigning it decides which program a name runs"),
    (Special, "BASH_COMMAND", READ_ONLY),
    (Special, "BASH_COMPAT", "switches bash to an older behaviour"),
    (Special, "BASH_EXECUTION_STRING", READ_ONLY),
    (Special, "BASH_LINENO", READ_ONLY),
    (Special, "BASH_LOADABLES_PATH", "`enable -f` loads shared objects (code) from there"),
    (Special, "BASH_REMATCH", READ_ONLY),
    (Special, "BASH_SOURCE", READ_ONLY),
    (Special, "BASH_SUBSHELL", READ_ONLY),
    (Special, "BASH_VERSINFO", READ_ONLY),
    (Special, "BASH_VERSION", READ_ONLY),
    (Special, "BASH_XTRACEFD", "bash writes its trace (with expanded secrets) to that descriptor"),
    (Special, "COMP_*", "bash's programmable completion state (COMP_WORDBREAKS, COMP_LINE, ...)"),
    (Special, "COMPREPLY", "bash's programmable completion state"),
    (Special, "COPROC", "bash's coprocess descriptors"),
    (Special, "DIRSTACK", "the directory stack of bash and zsh (`dirstack` in zsh)"),
    (Special, "FUNCNAME", READ_ONLY),
    (Special, "GROUPS", READ_ONLY),
    (Special, "PIPESTATUS", "read-only in mksh and zsh (`pipestatus`): aborts the sourced file"),
    (Special, "READLINE_*", "bash's line-editing state"),
    (Special, "MAPFILE", "set by mapfile"),
    (Special, "HOSTNAME", "set by bash and fish"),
    (Special, "HOSTTYPE", "set by bash"),
    (Special, "MACHTYPE", "set by bash and zsh"),
    (Special, "OSTYPE", "set by bash and zsh"),
    (Special, "EXECIGNORE", "hides programs from bash's command search"),
    (Special, "GLOBIGNORE", "changes which files bash's globs match"),
    (Special, "FCEDIT", "the editor `fc` runs"),
    (Special, "INPUTRC", "readline's key bindings: a macro can type and run a command"),
    (Special, "HISTFILE",
        "where the shell writes history: written into .bashrc, the typed lines run later"),
    (Special, "HISTCONTROL", "changes what bash keeps in history"),
    (Special, "HISTIGNORE", "changes what bash keeps in history"),
    (Special, "HISTTIMEFORMAT", "changes bash's history format"),
    (Special, "HISTCHARS", "changes the characters of history expansion (`histchars`)"),
    (Special, "HISTORY", ZSH_SPECIAL),
    (Special, "HISTORYWORDS", ZSH_SPECIAL),
    (Special, "HOSTFILE", "bash completes host names from that file"),
    (Special, "IGNOREEOF", "changes how the shell handles end of input"),
    (Special, "AUTO_RESUME", "changes how bash resumes jobs"),
    (Special, "CHILD_MAX", "changes how many exit statuses bash remembers"),
    (Special, "TIMEFORMAT", "changes bash's `time` output"),
    (Special, "PROMPT_DIRTRIM", "changes bash's prompt"),
    (Special, "POSIXLY_CORRECT", "switches bash and GNU tools to POSIX mode mid-session"),
    (Special, "EMACS", "turns off bash's line editing"),
    (Special, "MAIL", "the shell checks and reports on that file"),
    (Special, "MAILPATH", "its messages undergo command substitution (zsh `mailpath` too)"),
    (Special, "MAIL_WARNING", "changes bash's mail check"),
    (Special, "FPATH",
        "zsh and ksh autoload functions (code) from these directories (zsh `fpath`)"),
    (Special, "MODULE_PATH",
        "zsh loads modules (shared objects) from these directories (`module_path`)"),
    (Special, "PROMPT", PROMPT),
    (Special, "PROMPT2", PROMPT),
    (Special, "PROMPT3", PROMPT),
    (Special, "PROMPT4", PROMPT),
    (Special, "PROMPT_EOL_MARK", PROMPT),
    (Special, "RPROMPT", PROMPT),
    (Special, "RPROMPT2", PROMPT),
    (Special, "RPS1", PROMPT),
    (Special, "RPS2", PROMPT),
    (Special, "SPROMPT", PROMPT),
    (Special, "PSVAR", "zsh prompt content (`psvar`)"),
    (Special, "POSTEDIT", "zsh prints it after every edit"),
    (Special, "NULLCMD", "zsh runs this command for a redirection without one"),
    (Special, "READNULLCMD", "zsh runs this command for `< file` without one"),
    (Special, "TMPPREFIX", "where zsh creates its temporary files"),
    (Special, "WATCH", "zsh login watching (`watch`)"),
    (Special, "WATCHFMT", "zsh login watching output"),
    (Special, "LOGCHECK", "zsh login watching interval"),
    (Special, "TIMEFMT", "zsh's `time` output"),
    (Special, "WORDCHARS", "zsh line editing"),
    (Special, "FIGNORE", "zsh completion (`fignore`)"),
    (Special, "KEYBOARD_HACK", "zsh line editing"),
    (Special, "CPUTYPE", "set by zsh"),
    (Special, "VENDOR", "set by zsh"),
    (Special, "HOST", "set by zsh"),
    (Special, "TTY", "set by zsh"),
    (Special, "USERNAME", "zsh: assigning it tries to switch to that user"),
    (Special, "MANPATH", "zsh ties it to `manpath`; decides which manual pages man renders"),
    (Special, "ARGV", ZSH_SPECIAL),
    (Special, "STATUS", ZSH_SPECIAL),
    (Special, "OPTIONS", ZSH_SPECIAL),
    (Special, "FUNCTIONS", ZSH_SPECIAL),
    (Special, "FUNCTIONS_SOURCE", ZSH_SPECIAL),
    (Special, "ALIASES", ZSH_SPECIAL),
    (Special, "GALIASES", ZSH_SPECIAL),
    (Special, "SALIASES", ZSH_SPECIAL),
    (Special, "COMMANDS", ZSH_SPECIAL),
    (Special, "BUILTINS", ZSH_SPECIAL),
    (Special, "PARAMETERS", ZSH_SPECIAL),
    (Special, "MODULES", ZSH_SPECIAL),
    (Special, "RESWORDS", ZSH_SPECIAL),
    (Special, "PATCHARS", ZSH_SPECIAL),
    (Special, "WIDGETS", ZSH_SPECIAL),
    (Special, "KEYMAPS", ZSH_SPECIAL),
    (Special, "TERMCAP", ZSH_SPECIAL),
    (Special, "TERMINFO", "zsh special parameter, and where ncurses reads terminal descriptions"),
    (Special, "USERDIRS", ZSH_SPECIAL),
    (Special, "USERGROUPS", ZSH_SPECIAL),
    (Special, "NAMEDDIRS", ZSH_SPECIAL),
    (Special, "JOBDIRS", ZSH_SPECIAL),
    (Special, "JOBSTATES", ZSH_SPECIAL),
    (Special, "JOBTEXTS", ZSH_SPECIAL),
    (Special, "FUNCSTACK", ZSH_SPECIAL),
    (Special, "FUNCTRACE", ZSH_SPECIAL),
    (Special, "FUNCFILETRACE", ZSH_SPECIAL),
    (Special, "FUNCSOURCETRACE", ZSH_SPECIAL),
    (Special, "SIGNALS", ZSH_SPECIAL),
    (Special, "DIS_*", ZSH_SPECIAL),
    (Special, "ZSH_*", "zsh's own variables (ZSH_VERSION, ZSH_EVAL_CONTEXT read-only, ...)"),
    (Special, "KSH_VERSION", READ_ONLY),
    (Special, "PATHSEP", "set by mksh"),
    (Special, "FISH_*",
        "fish's own variables: fish_function_path and fish_complete_path autoload code"),
    (Special, "__FISH_*", "fish's own variables"),
    (Special, "UMASK", "fish's `umask` variable sets the file-creation mask"),
    (Special, "VERSION", "read-only in fish (`version`)"),
    (Special, "CMD_DURATION", "read-only in fish"),
    (Special, "LAST_PID", "read-only in fish"),
    (Special, "STATUS_GENERATION", "read-only in fish"),
    // ── Tools that run a program the variable names ──
    (Special, "EDITOR", "git, crontab, less `v` and many more run it"),
    (Special, "VISUAL", "git, crontab and many more run it"),
    (Special, "SUDO_EDITOR", "sudoedit runs it"),
    (Special, "SYSTEMD_EDITOR", "systemctl edit runs it"),
    (Special, "PAGER", "git, man, psql and many more run it"),
    (Special, "MANPAGER", "man runs it"),
    (Special, "SYSTEMD_PAGER", "systemctl and journalctl run it"),
    (Hijack, "LESSOPEN", "less runs it on every file it opens"),
    (Special, "LESSCLOSE", "less runs it when it closes a file"),
    (Special, "LESSEDIT", "less's `v` command line"),
    (Special, "LESSKEY", "less's key bindings"),
    (Special, "LESSKEYIN", "less's key bindings"),
    (Special, "BROWSER", "xdg-open, python's webbrowser and many CLIs run it"),
    (Hijack, "SSH_ASKPASS", "ssh runs it to ask for a passphrase"),
    (Special, "SUDO_ASKPASS", "sudo -A runs it"),
    (Special, "SSH_AUTH_SOCK", "sends ssh's signing requests to a chosen agent socket"),
    // ── Tools that read configuration (code) from where the variable points ──
    (Special, "HOME",
        "every tool reads its configuration there: a chosen .bashrc, .gitconfig, .npmrc runs code"),
    (Special, "XDG_*",
        "configuration and data directories: git's core.fsmonitor (code) from a chosen one"),
    (Special, "TMPDIR", "temporary files of every tool land in a chosen directory"),
    (Special, "VIMINIT", "vim runs these ex commands at start"),
    (Special, "EXINIT", "vi and vim run these ex commands at start"),
    (Special, "GVIMINIT", "gvim runs these ex commands at start"),
    (Special, "KUBECONFIG", "kubectl's exec credential plugins run code"),
    (Special, "DOCKER_HOST", "docker talks to a chosen daemon"),
    (Special, "DOCKER_CONFIG", "docker's credential helpers run code"),
    (Special, "AWS_CONFIG_FILE", "credential_process runs code"),
    (Special, "OPENSSL_CONF", "OpenSSL loads engines and providers (code) named there"),
    (Special, "OPENSSL_ENGINES", "OpenSSL loads engines (code) from there"),
    (Special, "OPENSSL_MODULES", "OpenSSL loads providers (code) from there"),
    // ── Language runtimes and package managers that load code ──
    (Hijack, "RUBYOPT", "-r preloads code into every ruby"),
    (Hijack, "RUBYLIB", "ruby loads libraries from there first"),
    (Special, "GEM_HOME", "ruby loads gems (code) from there"),
    (Special, "GEM_PATH", "ruby loads gems (code) from there"),
    (Special, "BUNDLE_GEMFILE", "bundler evaluates that Gemfile (ruby code)"),
    (Special, "IRBRC", "irb evaluates that file"),
    (Hijack, "_JAVA_OPTIONS", "-javaagent loads code into every JVM"),
    (Hijack, "JDK_JAVA_OPTIONS", "-javaagent loads code into every java launch"),
    (Special, "JAVA_OPTS", "start scripts pass it to java: -javaagent loads code"),
    (Special, "MAVEN_OPTS", "mvn passes it to java: -javaagent loads code"),
    (Special, "GRADLE_OPTS", "gradle passes it to java: -javaagent loads code"),
    (Special, "CLASSPATH", "java loads classes from there"),
    (Special, "DOTNET_STARTUP_HOOKS", "loads assemblies (code) into every .NET process"),
    (Special, "DOTNET_ADDITIONAL_DEPS", "loads assemblies (code) into every .NET process"),
    (Special, "DOTNET_ROOT", "decides which .NET runtime runs"),
    (Special, "CORECLR_*", "CORECLR_PROFILER_PATH loads a profiler (code) into every .NET process"),
    (Hijack, "NODE_PATH", "node resolves modules from there"),
    (Special, "NPM_CONFIG_*",
        "npm configuration: script_shell runs a chosen shell, registry installs chosen code"),
    (Special, "LUA_*", "LUA_INIT runs code; LUA_PATH and LUA_CPATH load modules from there"),
    (Special, "PHPRC", "php reads php.ini (auto_prepend_file runs code) from there"),
    (Special, "PHP_INI_SCAN_DIR",
        "php reads extra ini files (auto_prepend_file runs code) from there"),
    (Special, "R_PROFILE", "R evaluates that file at start"),
    (Special, "R_PROFILE_USER", "R evaluates that file at start"),
    (Hijack, "GCONV_PATH", "glibc's iconv loads shared objects (code) from there"),
    (Special, "LOCPATH", "glibc parses locale data from there"),
    (Special, "NLSPATH", "message catalogs (format strings) from there"),
    (Special, "RUSTC", "cargo runs it as the compiler"),
    (Special, "RUSTC_WRAPPER", "cargo runs it around every rustc call"),
    (Special, "RUSTC_WORKSPACE_WRAPPER", "cargo runs it around every workspace rustc call"),
    (Special, "RUSTDOC", "cargo runs it as rustdoc"),
    (Special, "RUSTFLAGS", "-C linker= runs a chosen program"),
    (Special, "RUSTDOCFLAGS", "rustdoc flags can run a chosen linker or test runner"),
    (Special, "CARGO_ENCODED_RUSTFLAGS", "-C linker= runs a chosen program"),
    (Special, "CARGO_HOME", "cargo reads config.toml (build.rustc-wrapper runs code) from there"),
    (Special, "CARGO_BUILD_*",
        "cargo's build.rustc, build.rustc-wrapper, build.rustflags run code"),
    (Special, "CARGO_TARGET_*", "cargo's target.<triple>.runner and .linker run code"),
    (Special, "RUSTUP_*",
        "RUSTUP_TOOLCHAIN, RUSTUP_HOME, RUSTUP_DIST_SERVER decide which toolchain runs"),
    (Special, "GOFLAGS", "-toolexec runs a chosen program around every go tool"),
    (Special, "GOENV", "go reads GOFLAGS and the rest from that file"),
    (Special, "GOROOT", "decides which go toolchain runs"),
    (Special, "GOTOOLCHAIN", "decides which go toolchain is downloaded and run"),
    (Special, "GOPROXY", "go downloads modules (code) from a chosen server"),
    (Special, "GOSUMDB", "turns off or replaces go's checksum database"),
    (Special, "GONOSUMDB", "turns off go's checksum database for chosen modules"),
    (Special, "GONOSUMCHECK", "turns off go's checksum database"),
    (Special, "GOINSECURE", "go fetches chosen modules without TLS"),
    // ── Traffic interception ──
    (Special, "HTTPS_PROXY", PROXY),
    (Special, "HTTP_PROXY", PROXY),
    (Special, "ALL_PROXY", PROXY),
    (Special, "FTP_PROXY", PROXY),
    (Special, "SSL_CERT_FILE", CA),
    (Special, "SSL_CERT_DIR", CA),
    (Special, "CURL_CA_BUNDLE", CA),
    (Special, "REQUESTS_CA_BUNDLE", CA),
    (Special, "NODE_EXTRA_CA_CERTS", CA),
    (Special, "AWS_CA_BUNDLE", CA),
    (Hijack, "NODE_TLS_REJECT_UNAUTHORIZED",
        "0 turns off certificate checks in every node process"),
];

fn pattern_matches(pattern: &str, upper_name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => upper_name.starts_with(prefix),
        None => upper_name == pattern,
    }
}

/// The first entry whose pattern matches `name` (case-insensitively) among those `wanted`.
fn first(name: &str, wanted: impl Fn(Danger) -> bool) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    DANGEROUS_NAMES
        .iter()
        .find(|(danger, pattern, _)| wanted(*danger) && pattern_matches(pattern, &upper))
        .map(|(_, _, why)| *why)
}

/// Why `name` may not be the name of a secret or a `remoteEnv` entry (any entry matches), or
/// `None`.
pub fn dangerous_reason(name: &str) -> Option<&'static str> {
    first(name, |_| true)
}

/// Why setting `name` hijacks unrelated programs ([`Danger::Hijack`] entries only), or `None`:
/// what the audit reports.
pub fn hijack_reason(name: &str) -> Option<&'static str> {
    first(name, |danger| danger == Hijack)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry is upper case, has a reason, is live (its example matches it, and its
    /// reason is the one reported), unique, and not shadowed: no other entry matches it, except
    /// a `Special` family around a `Hijack` entry listed before it (the audit needs the member,
    /// the secrets policy the family).
    #[test]
    fn every_entry_is_upper_case_live_unique_and_unshadowed() {
        let mut seen = std::collections::HashSet::new();
        for (i, (danger, pattern, why)) in DANGEROUS_NAMES.iter().enumerate() {
            assert!(seen.insert(*pattern), "duplicate {pattern}");
            assert!(!why.is_empty(), "{pattern} has no reason");
            assert_eq!(*pattern, pattern.to_ascii_uppercase(), "{pattern}");
            let example = pattern.replace('*', "X");
            assert_eq!(dangerous_reason(&example), Some(*why), "{pattern}");
            assert_eq!(
                hijack_reason(&example),
                (*danger == Hijack).then_some(*why),
                "{pattern}"
            );
            for (j, (other_danger, other, _)) in DANGEROUS_NAMES.iter().enumerate() {
                if i == j || !pattern_matches(other, &example) {
                    continue;
                }
                assert!(
                    *danger == Hijack && *other_danger == Special && i < j,
                    "{pattern} is shadowed by {other}"
                );
            }
        }
    }

    #[test]
    fn the_audit_reports_hijacks_only_and_every_hijack_is_refused() {
        for name in [
            "LD_PRELOAD",
            "ld_preload",
            "BASH_ENV",
            "PS1",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "RUBYOPT",
            "SHELLOPTS",
            "GCONV_PATH",
            "GIT_SSH_COMMAND",
            "DYLD_INSERT_LIBRARIES",
            "BASH_FUNC_ls%%",
            "HOSTALIASES",
        ] {
            assert!(hijack_reason(name).is_some(), "{name}");
            assert_eq!(dangerous_reason(name), hijack_reason(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "EDITOR",
            "PYTHONUNBUFFERED",
            "RANDOM",
            "HTTPS_PROXY",
        ] {
            assert_eq!(hijack_reason(name), None, "{name}");
            assert!(dangerous_reason(name).is_some(), "{name}");
        }
        for name in ["NODE_ENV", "ENVIRONMENT", "LANG", "API_KEY", "GITHUB_TOKEN"] {
            assert_eq!(dangerous_reason(name), None, "{name}");
        }
    }
}
