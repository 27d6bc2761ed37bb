//! The fixed deny list of secret names: every name a shell treats specially and every name that
//! makes a common tool run a program, load code or send traffic somewhere else.
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

/// A name pattern of the deny list: exact, or a prefix when it ends in `*`. Upper case.
///
/// Each entry says why it is dangerous; the tests check every entry is upper case, live,
/// unique and not shadowed by a prefix entry.
pub const DANGEROUS_NAMES: &[(&str, &str)] = &[
    // ── Execution hijacking (DESIGN.md §2, workspace-agents.md §4/§5.8) ──
    (
        "LD_*",
        "dynamic loader variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT) inject code",
    ),
    ("BASH_ENV", "sourced by every non-interactive bash"),
    ("ENV", "sourced by interactive POSIX shells"),
    ("PROMPT_COMMAND", "run by bash before every prompt"),
    ("PS0", PROMPT),
    ("PS1", PROMPT),
    ("PS2", PROMPT),
    ("PS3", PROMPT),
    ("PS4", PROMPT),
    (
        "ZDOTDIR",
        "moves zsh's startup files to an attacker's directory",
    ),
    (
        "PATH",
        "decides which program runs (zsh's `path` array too)",
    ),
    (
        "CDPATH",
        "redirects cd in scripts (zsh's `cdpath` array too)",
    ),
    ("SHELL", "decides which shell tools spawn"),
    ("IFS", "changes word splitting of every shell script"),
    (
        "NODE_OPTIONS",
        "--require preloads code into every node process",
    ),
    (
        "PYTHON*",
        "PYTHONPATH, PYTHONSTARTUP, PYTHONHOME load code into python",
    ),
    ("PERL*", "PERL5OPT, PERL5LIB load code into perl"),
    ("JAVA_TOOL_OPTIONS", "-javaagent loads code into every JVM"),
    (
        "GIT_*",
        "GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_*, GIT_PAGER run code, redirect credentials",
    ),
    // ── Shells: numeric variables (issue 16: the payload ran or the file was abandoned) ──
    ("RANDOM", ARITHMETIC),
    ("SRANDOM", ARITHMETIC),
    ("SECONDS", ARITHMETIC),
    ("LINENO", ARITHMETIC),
    ("OPTIND", ARITHMETIC),
    ("HISTCMD", ARITHMETIC),
    ("HISTSIZE", ARITHMETIC),
    ("SAVEHIST", ARITHMETIC),
    ("COLUMNS", ARITHMETIC),
    ("LINES", ARITHMETIC),
    ("SHLVL", ARITHMETIC),
    ("UID", ARITHMETIC),
    ("EUID", ARITHMETIC),
    ("GID", ARITHMETIC),
    ("EGID", ARITHMETIC),
    ("PPID", ARITHMETIC),
    ("TMOUT", ARITHMETIC),
    ("MAILCHECK", ARITHMETIC),
    ("FUNCNEST", ARITHMETIC),
    ("KEYTIMEOUT", ARITHMETIC),
    ("LISTMAX", ARITHMETIC),
    ("TRY_BLOCK_ERROR", ARITHMETIC),
    ("TRY_BLOCK_INTERRUPT", ARITHMETIC),
    ("BASHPID", ARITHMETIC),
    ("KSHUID", ARITHMETIC),
    ("KSHGID", ARITHMETIC),
    ("KSHEGID", ARITHMETIC),
    ("USER_ID", ARITHMETIC),
    ("PGRP", ARITHMETIC),
    ("JOBMAX", ARITHMETIC),
    ("EPOCHSECONDS", READ_ONLY),
    ("EPOCHREALTIME", READ_ONLY),
    ("ARGC", READ_ONLY),
    ("TTYIDLE", READ_ONLY),
    (
        "REPORTTIME",
        "zsh reports the timing of commands that take longer",
    ),
    (
        "REPORTMEMORY",
        "zsh reports the memory of commands that use more",
    ),
    (
        "HISTFILESIZE",
        "numeric; bash truncates the history file to this many lines",
    ),
    // ── Shells: variables they set, protect or act on ──
    ("_", READ_ONLY),
    (
        "PWD",
        "the shell's current directory: cd, prompts and scripts trust it",
    ),
    (
        "OLDPWD",
        "the shell's previous directory: `cd -` goes there",
    ),
    ("OPTARG", "set by getopts"),
    ("OPTERR", "set by getopts"),
    ("REPLY", "set by read and select"),
    ("BASH", READ_ONLY),
    (
        "BASHOPTS",
        "read-only in bash; exported, it turns options on in every bash started",
    ),
    (
        "SHELLOPTS",
        "read-only in bash; exported, it turns on xtrace (and more) in every bash started",
    ),
    ("BASH_ALIASES", READ_ONLY),
    ("BASH_ARGC", READ_ONLY),
    ("BASH_ARGV", READ_ONLY),
    ("BASH_ARGV0", "sets bash's $0"),
    (
        "BASH_CMDS",
        "bash's command hash table: assigning it decides which program a name runs",
    ),
    ("BASH_COMMAND", READ_ONLY),
    ("BASH_COMPAT", "switches bash to an older behaviour"),
    ("BASH_EXECUTION_STRING", READ_ONLY),
    ("BASH_LINENO", READ_ONLY),
    (
        "BASH_LOADABLES_PATH",
        "`enable -f` loads shared objects (code) from there",
    ),
    ("BASH_REMATCH", READ_ONLY),
    ("BASH_SOURCE", READ_ONLY),
    ("BASH_SUBSHELL", READ_ONLY),
    ("BASH_VERSINFO", READ_ONLY),
    ("BASH_VERSION", READ_ONLY),
    (
        "BASH_XTRACEFD",
        "bash writes its trace (with expanded secrets) to that descriptor",
    ),
    (
        "COMP_*",
        "bash's programmable completion state (COMP_WORDBREAKS, COMP_LINE, ...)",
    ),
    ("COMPREPLY", "bash's programmable completion state"),
    ("COPROC", "bash's coprocess descriptors"),
    (
        "DIRSTACK",
        "the directory stack of bash and zsh (`dirstack` in zsh)",
    ),
    ("FUNCNAME", READ_ONLY),
    ("GROUPS", READ_ONLY),
    (
        "PIPESTATUS",
        "read-only in mksh and zsh (`pipestatus`): aborts the sourced file",
    ),
    ("READLINE_*", "bash's line-editing state"),
    ("MAPFILE", "set by mapfile"),
    ("HOSTNAME", "set by bash and fish"),
    ("HOSTTYPE", "set by bash"),
    ("MACHTYPE", "set by bash and zsh"),
    ("OSTYPE", "set by bash and zsh"),
    ("EXECIGNORE", "hides programs from bash's command search"),
    ("GLOBIGNORE", "changes which files bash's globs match"),
    ("FCEDIT", "the editor `fc` runs"),
    (
        "INPUTRC",
        "readline's key bindings: a macro can type and run a command",
    ),
    (
        "HISTFILE",
        "where the shell writes history: written into .bashrc, the typed lines run later",
    ),
    ("HISTCONTROL", "changes what bash keeps in history"),
    ("HISTIGNORE", "changes what bash keeps in history"),
    ("HISTTIMEFORMAT", "changes bash's history format"),
    (
        "HISTCHARS",
        "changes the characters of history expansion (`histchars`)",
    ),
    ("HISTORY", ZSH_SPECIAL),
    ("HISTORYWORDS", ZSH_SPECIAL),
    ("HOSTFILE", "bash completes host names from that file"),
    ("IGNOREEOF", "changes how the shell handles end of input"),
    ("AUTO_RESUME", "changes how bash resumes jobs"),
    ("CHILD_MAX", "changes how many exit statuses bash remembers"),
    ("TIMEFORMAT", "changes bash's `time` output"),
    ("PROMPT_DIRTRIM", "changes bash's prompt"),
    (
        "POSIXLY_CORRECT",
        "switches bash and GNU tools to POSIX mode mid-session",
    ),
    ("EMACS", "turns off bash's line editing"),
    ("MAIL", "the shell checks and reports on that file"),
    (
        "MAILPATH",
        "its messages undergo command substitution (zsh `mailpath` too)",
    ),
    ("MAIL_WARNING", "changes bash's mail check"),
    (
        "FPATH",
        "zsh and ksh autoload functions (code) from these directories (zsh `fpath`)",
    ),
    (
        "MODULE_PATH",
        "zsh loads modules (shared objects) from these directories (`module_path`)",
    ),
    ("PROMPT", PROMPT),
    ("PROMPT2", PROMPT),
    ("PROMPT3", PROMPT),
    ("PROMPT4", PROMPT),
    ("PROMPT_EOL_MARK", PROMPT),
    ("RPROMPT", PROMPT),
    ("RPROMPT2", PROMPT),
    ("RPS1", PROMPT),
    ("RPS2", PROMPT),
    ("SPROMPT", PROMPT),
    ("PSVAR", "zsh prompt content (`psvar`)"),
    ("POSTEDIT", "zsh prints it after every edit"),
    (
        "NULLCMD",
        "zsh runs this command for a redirection without one",
    ),
    (
        "READNULLCMD",
        "zsh runs this command for `< file` without one",
    ),
    ("TMPPREFIX", "where zsh creates its temporary files"),
    ("WATCH", "zsh login watching (`watch`)"),
    ("WATCHFMT", "zsh login watching output"),
    ("LOGCHECK", "zsh login watching interval"),
    ("TIMEFMT", "zsh's `time` output"),
    ("WORDCHARS", "zsh line editing"),
    ("FIGNORE", "zsh completion (`fignore`)"),
    ("KEYBOARD_HACK", "zsh line editing"),
    ("CPUTYPE", "set by zsh"),
    ("VENDOR", "set by zsh"),
    ("HOST", "set by zsh"),
    ("TTY", "set by zsh"),
    ("USERNAME", "zsh: assigning it tries to switch to that user"),
    (
        "MANPATH",
        "zsh ties it to `manpath`; decides which manual pages man renders",
    ),
    ("ARGV", ZSH_SPECIAL),
    ("STATUS", ZSH_SPECIAL),
    ("OPTIONS", ZSH_SPECIAL),
    ("FUNCTIONS", ZSH_SPECIAL),
    ("FUNCTIONS_SOURCE", ZSH_SPECIAL),
    ("ALIASES", ZSH_SPECIAL),
    ("GALIASES", ZSH_SPECIAL),
    ("SALIASES", ZSH_SPECIAL),
    ("COMMANDS", ZSH_SPECIAL),
    ("BUILTINS", ZSH_SPECIAL),
    ("PARAMETERS", ZSH_SPECIAL),
    ("MODULES", ZSH_SPECIAL),
    ("RESWORDS", ZSH_SPECIAL),
    ("PATCHARS", ZSH_SPECIAL),
    ("WIDGETS", ZSH_SPECIAL),
    ("KEYMAPS", ZSH_SPECIAL),
    ("TERMCAP", ZSH_SPECIAL),
    (
        "TERMINFO",
        "zsh special parameter, and where ncurses reads terminal descriptions",
    ),
    ("USERDIRS", ZSH_SPECIAL),
    ("USERGROUPS", ZSH_SPECIAL),
    ("NAMEDDIRS", ZSH_SPECIAL),
    ("JOBDIRS", ZSH_SPECIAL),
    ("JOBSTATES", ZSH_SPECIAL),
    ("JOBTEXTS", ZSH_SPECIAL),
    ("FUNCSTACK", ZSH_SPECIAL),
    ("FUNCTRACE", ZSH_SPECIAL),
    ("FUNCFILETRACE", ZSH_SPECIAL),
    ("FUNCSOURCETRACE", ZSH_SPECIAL),
    ("SIGNALS", ZSH_SPECIAL),
    ("DIS_*", ZSH_SPECIAL),
    (
        "ZSH_*",
        "zsh's own variables (ZSH_VERSION, ZSH_EVAL_CONTEXT read-only, ...)",
    ),
    ("KSH_VERSION", READ_ONLY),
    ("PATHSEP", "set by mksh"),
    (
        "FISH_*",
        "fish's own variables: fish_function_path and fish_complete_path autoload code",
    ),
    ("__FISH_*", "fish's own variables"),
    (
        "UMASK",
        "fish's `umask` variable sets the file-creation mask",
    ),
    ("VERSION", "read-only in fish (`version`)"),
    ("CMD_DURATION", "read-only in fish"),
    ("LAST_PID", "read-only in fish"),
    ("STATUS_GENERATION", "read-only in fish"),
    // ── Tools that run a program the variable names ──
    ("EDITOR", "git, crontab, less `v` and many more run it"),
    ("VISUAL", "git, crontab and many more run it"),
    ("SUDO_EDITOR", "sudoedit runs it"),
    ("SYSTEMD_EDITOR", "systemctl edit runs it"),
    ("PAGER", "git, man, psql and many more run it"),
    ("MANPAGER", "man runs it"),
    ("SYSTEMD_PAGER", "systemctl and journalctl run it"),
    ("LESSOPEN", "less runs it on every file it opens"),
    ("LESSCLOSE", "less runs it when it closes a file"),
    ("LESSEDIT", "less's `v` command line"),
    ("LESSKEY", "less's key bindings"),
    ("LESSKEYIN", "less's key bindings"),
    (
        "BROWSER",
        "xdg-open, python's webbrowser and many CLIs run it",
    ),
    ("SSH_ASKPASS", "ssh runs it to ask for a passphrase"),
    ("SUDO_ASKPASS", "sudo -A runs it"),
    (
        "SSH_AUTH_SOCK",
        "sends ssh's signing requests to a chosen agent socket",
    ),
    // ── Tools that read configuration (code) from where the variable points ──
    (
        "HOME",
        "every tool reads its configuration there: a chosen .bashrc, .gitconfig, .npmrc runs code",
    ),
    (
        "XDG_*",
        "configuration and data directories: git's core.fsmonitor (code) from a chosen one",
    ),
    (
        "TMPDIR",
        "temporary files of every tool land in a chosen directory",
    ),
    ("VIMINIT", "vim runs these ex commands at start"),
    ("EXINIT", "vi and vim run these ex commands at start"),
    ("GVIMINIT", "gvim runs these ex commands at start"),
    ("KUBECONFIG", "kubectl's exec credential plugins run code"),
    ("DOCKER_HOST", "docker talks to a chosen daemon"),
    ("DOCKER_CONFIG", "docker's credential helpers run code"),
    ("AWS_CONFIG_FILE", "credential_process runs code"),
    (
        "OPENSSL_CONF",
        "OpenSSL loads engines and providers (code) named there",
    ),
    ("OPENSSL_ENGINES", "OpenSSL loads engines (code) from there"),
    (
        "OPENSSL_MODULES",
        "OpenSSL loads providers (code) from there",
    ),
    // ── Language runtimes and package managers that load code ──
    ("RUBYOPT", "-r preloads code into every ruby"),
    ("RUBYLIB", "ruby loads libraries from there first"),
    ("GEM_HOME", "ruby loads gems (code) from there"),
    ("GEM_PATH", "ruby loads gems (code) from there"),
    (
        "BUNDLE_GEMFILE",
        "bundler evaluates that Gemfile (ruby code)",
    ),
    ("IRBRC", "irb evaluates that file"),
    ("_JAVA_OPTIONS", "-javaagent loads code into every JVM"),
    (
        "JDK_JAVA_OPTIONS",
        "-javaagent loads code into every java launch",
    ),
    (
        "JAVA_OPTS",
        "start scripts pass it to java: -javaagent loads code",
    ),
    ("MAVEN_OPTS", "mvn passes it to java: -javaagent loads code"),
    (
        "GRADLE_OPTS",
        "gradle passes it to java: -javaagent loads code",
    ),
    ("CLASSPATH", "java loads classes from there"),
    (
        "DOTNET_STARTUP_HOOKS",
        "loads assemblies (code) into every .NET process",
    ),
    (
        "DOTNET_ADDITIONAL_DEPS",
        "loads assemblies (code) into every .NET process",
    ),
    ("DOTNET_ROOT", "decides which .NET runtime runs"),
    (
        "CORECLR_*",
        "CORECLR_PROFILER_PATH loads a profiler (code) into every .NET process",
    ),
    ("NODE_PATH", "node resolves modules from there"),
    (
        "NPM_CONFIG_*",
        "npm configuration: script_shell runs a chosen shell, registry installs chosen code",
    ),
    (
        "LUA_*",
        "LUA_INIT runs code; LUA_PATH and LUA_CPATH load modules from there",
    ),
    (
        "PHPRC",
        "php reads php.ini (auto_prepend_file runs code) from there",
    ),
    (
        "PHP_INI_SCAN_DIR",
        "php reads extra ini files (auto_prepend_file runs code) from there",
    ),
    ("R_PROFILE", "R evaluates that file at start"),
    ("R_PROFILE_USER", "R evaluates that file at start"),
    (
        "GCONV_PATH",
        "glibc's iconv loads shared objects (code) from there",
    ),
    ("LOCPATH", "glibc parses locale data from there"),
    ("NLSPATH", "message catalogs (format strings) from there"),
    ("RUSTC", "cargo runs it as the compiler"),
    ("RUSTC_WRAPPER", "cargo runs it around every rustc call"),
    (
        "RUSTC_WORKSPACE_WRAPPER",
        "cargo runs it around every workspace rustc call",
    ),
    ("RUSTDOC", "cargo runs it as rustdoc"),
    ("RUSTFLAGS", "-C linker= runs a chosen program"),
    (
        "RUSTDOCFLAGS",
        "rustdoc flags can run a chosen linker or test runner",
    ),
    (
        "CARGO_ENCODED_RUSTFLAGS",
        "-C linker= runs a chosen program",
    ),
    (
        "CARGO_HOME",
        "cargo reads config.toml (build.rustc-wrapper runs code) from there",
    ),
    (
        "CARGO_BUILD_*",
        "cargo's build.rustc, build.rustc-wrapper, build.rustflags run code",
    ),
    (
        "CARGO_TARGET_*",
        "cargo's target.<triple>.runner and .linker run code",
    ),
    (
        "RUSTUP_*",
        "RUSTUP_TOOLCHAIN, RUSTUP_HOME, RUSTUP_DIST_SERVER decide which toolchain runs",
    ),
    (
        "GOFLAGS",
        "-toolexec runs a chosen program around every go tool",
    ),
    ("GOENV", "go reads GOFLAGS and the rest from that file"),
    ("GOROOT", "decides which go toolchain runs"),
    (
        "GOTOOLCHAIN",
        "decides which go toolchain is downloaded and run",
    ),
    (
        "GOPROXY",
        "go downloads modules (code) from a chosen server",
    ),
    ("GOSUMDB", "turns off or replaces go's checksum database"),
    (
        "GONOSUMDB",
        "turns off go's checksum database for chosen modules",
    ),
    ("GONOSUMCHECK", "turns off go's checksum database"),
    ("GOINSECURE", "go fetches chosen modules without TLS"),
    // ── Traffic interception ──
    ("HTTPS_PROXY", PROXY),
    ("HTTP_PROXY", PROXY),
    ("ALL_PROXY", PROXY),
    ("FTP_PROXY", PROXY),
    ("SSL_CERT_FILE", CA),
    ("SSL_CERT_DIR", CA),
    ("CURL_CA_BUNDLE", CA),
    ("REQUESTS_CA_BUNDLE", CA),
    ("NODE_EXTRA_CA_CERTS", CA),
    ("AWS_CA_BUNDLE", CA),
    (
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "0 turns off certificate checks in every node process",
    ),
];
