//! The rule catalogue: every finding the audit can produce, as data.
//!
//! A rule has a stable id (what CI configurations, suppressions and SARIF consumers key on), a
//! default severity and two descriptions. The catalogue is the single source of truth: the SARIF
//! renderer lists it as `tool.driver.rules`, the README documents it, and the tests check that no
//! id appears twice and that every rule is actually emitted by some input (a rule nobody can
//! trigger is dead weight that still shows up in reports).
//!
//! Ids never change once published; a rule that is retired keeps its id reserved.
//!
//! Severities follow one question: *what can a hostile repository do to the person who opens it?*
//! `critical` = code execution on the host or control of it (host socket, privileged container,
//! host namespaces, initializeCommand); `high` = weakening isolation or leaking host secrets;
//! `medium` = risky but common; `low` = hygiene; `info` = worth knowing (code will run).

use std::fmt;

use serde::{Serialize, Serializer};

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing; no risk by itself.
    Info,
    /// Hygiene: a problem for reproducibility or review, rarely for security.
    Low,
    /// Risky but common; review it.
    Medium,
    /// Weakens the container's isolation or leaks host secrets.
    High,
    /// Runs code on, or hands control of, the host.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name used in every output format and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lower-case name (as printed by [`Severity::as_str`]).
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// SARIF `level` for this severity (GitHub shows `error`, `warning`, `note`).
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        }
    }

    /// GitHub code scanning's `security-severity` score (a CVSS-like number as a string):
    /// above 9.0 is critical, 7.0–8.9 high, 4.0–6.9 medium, 0.1–3.9 low.
    pub fn security_severity(self) -> &'static str {
        match self {
            Severity::Critical => "9.5",
            Severity::High => "8.0",
            Severity::Medium => "5.5",
            Severity::Low => "3.0",
            Severity::Info => "0.5",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $sev:ident, $short:literal, $full:literal; )*) => {
        /// A stable rule id. The string form (`as_str`) is what every output format shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum RuleId {
            $( $(#[$doc])* $variant, )*
        }

        /// The catalogue, in the order the README and SARIF list it.
        pub static RULES: &[Rule] = &[
            $( Rule { id: RuleId::$variant, default_severity: Severity::$sev, short: $short, full: $full }, )*
        ];

        impl RuleId {
            /// The stable kebab-case id.
            pub fn as_str(self) -> &'static str {
                match self { $( RuleId::$variant => $id, )* }
            }
        }
    };
}

rules! {
    /// `initializeCommand` runs on the host.
    InitializeCommandOnHost = "initialize-command-on-host", Critical,
        "initializeCommand runs on the host",
        "initializeCommand is executed on the host machine (outside any container) every time the dev container starts, with the user's privileges and environment. A hostile repository gets code execution on the host.";
    /// Any lifecycle command that runs in the container.
    LifecycleCommand = "lifecycle-command", Info,
        "Lifecycle command runs repository code in the container",
        "onCreateCommand, updateContentCommand, postCreateCommand, postStartCommand and postAttachCommand run code from the repository inside the container, possibly with secrets and a repository token in scope.";
    /// A download piped into an interpreter.
    DownloadAndExecute = "download-and-execute", Critical,
        "Command downloads code and executes it",
        "A command fetches content from the network (curl, wget, Invoke-WebRequest...) and executes it directly (piped into a shell or interpreter, process or command substitution, Invoke-Expression, or saved and then run). Whatever the server returns at that moment runs, unreviewed and unpinned.";
    /// `privileged: true` or `--privileged`.
    Privileged = "privileged", Critical,
        "Container runs privileged",
        "A privileged container has every capability, all host devices and no seccomp/AppArmor confinement; escaping to the host is trivial.";
    /// `capAdd` or `--cap-add`.
    Capability = "capability", Medium,
        "Container gets extra Linux capabilities",
        "Added capabilities widen the kernel attack surface. ALL, SYS_ADMIN, SYS_MODULE, DAC_READ_SEARCH, SYS_PTRACE, SYS_RAWIO, BPF, PERFMON, NET_ADMIN and similar are high severity because they allow container escape or host tampering; the others are medium.";
    /// `--pid/--net/--ipc/--userns/--uts=host`.
    HostNamespace = "host-namespace", Critical,
        "Container shares a host namespace",
        "Sharing the host's PID, network, IPC, user or UTS namespace lets the container see and signal host processes, reach host-only services, or drop user-namespace remapping.";
    /// `seccomp=unconfined`, `apparmor=unconfined`, `label=disable`.
    UnconfinedSecurity = "unconfined-security", High,
        "Security profile disabled",
        "seccomp=unconfined, apparmor=unconfined, label=disable (SELinux) or systempaths=unconfined remove a confinement layer that blocks most container escapes.";
    /// A Docker/Podman/containerd socket or its directory mounted.
    ContainerSocketMount = "container-socket-mount", Critical,
        "Container engine socket mounted",
        "Mounting the Docker, Podman, containerd or CRI-O socket (or a directory containing it, such as /var/run) gives the container full control of the host's container engine, which is equivalent to root on the host.";
    /// A sensitive host path mounted.
    HostPathMount = "host-path-mount", High,
        "Sensitive host path mounted",
        "The host's root filesystem, system directories, home directory or credential directories (~/.ssh, ~/.aws, ~/.kube, ~/.gnupg, ~/.docker, ~/.config, ~/.gitconfig, ~/.netrc) are mounted into the container, or the workspace mount reaches outside the workspace.";
    /// `remoteUser`/`containerUser` is root.
    RootUser = "root-user", Medium,
        "Container or tools run as root",
        "remoteUser or containerUser is root (or uid 0): lifecycle commands, extensions and terminals run as root in the container, so any container escape lands with root privileges.";
    /// A feature from outside the official collection.
    FeatureSource = "feature-source", Medium,
        "Feature from a third-party or unpinned source",
        "Features run an install script as root at build time. Features outside ghcr.io/devcontainers/ (third-party OCI publishers, HTTPS tarballs, local folders) are code from a source nobody vetted.";
    /// A feature without a digest or full version.
    FeatureUnpinned = "feature-unpinned", Low,
        "Feature version not pinned",
        "A feature reference without a digest or a full semantic version (no tag, latest, or a major/minor-only tag) can change under you between builds. Pin with @sha256:<digest> or a full MAJOR.MINOR.PATCH tag.";
    /// A feature option value that breaks out of the env file.
    FeatureOptionInjection = "feature-option-injection", Critical,
        "Feature option can inject shell code",
        "Feature options are written unescaped into devcontainer-features.env, which /bin/sh sources as root during the image build. Quotes, backticks, $(...), ${...}, backslashes, ;, |, & or newlines in a value can run arbitrary commands.";
    /// Host secrets forwarded into the container or image.
    HostSecretForwarding = "host-secret-forwarding", High,
        "Host secret forwarded into the container",
        "${localEnv:...} of a secret-looking host variable is copied into containerEnv (visible in docker inspect), build.args (stored in the image history), remoteEnv, runArgs or a mount.";
    /// An environment variable that changes how programs execute.
    DangerousEnvironment = "dangerous-environment", Medium,
        "Environment variable that hijacks execution",
        "Variables such as LD_PRELOAD, BASH_ENV, PROMPT_COMMAND, NODE_OPTIONS, PYTHONSTARTUP, PERL5OPT, JAVA_TOOL_OPTIONS or GIT_* make unrelated programs load or run attacker-chosen code.";
    /// Codespaces repository permissions with write access.
    RepositoryPermissions = "repository-permissions", Medium,
        "Codespace token asks for access to other repositories",
        "customizations.codespaces.repositories requests extra permissions for the codespace's token. Write permissions are medium; write-all, workflows write, and wildcard repositories are high.";
    /// An extension from a `.vsix` path or with a look-alike id.
    ExtensionSource = "extension-source", Medium,
        "Extension from an unusual source",
        "The extension is installed from a .vsix file or its id contains non-ASCII look-alike characters that imitate a well-known publisher. Extensions run with the remote user's privileges.";
    /// `appPort` published on every host interface.
    AppPortAllInterfaces = "app-port-all-interfaces", Medium,
        "Port published on all host interfaces",
        "A string appPort such as \"8080:80\" or \"0.0.0.0:2375:2375\" is passed to docker -p unchanged and listens on every interface of the host, reachable from the network.";
    /// The same key twice in one object.
    DuplicateKey = "duplicate-key", Medium,
        "Duplicate key",
        "The same key appears twice in one object. Tools use the last value while a reviewer usually reads the first, a classic way to hide a setting.";
    /// A property no tool reads.
    UnknownProperty = "unknown-property", Low,
        "Unknown property",
        "The property is not part of the dev container specification and is ignored by the reference tools; often a misspelling or a property in the wrong place.";
    /// A literal credential in the file.
    EmbeddedCredential = "embedded-credential", Critical,
        "Credential embedded in the file",
        "A token, access key, private key or password appears literally in the configuration, where everyone with read access to the repository can use it.";
    /// A well-known feature that silently adds privileges.
    FeatureImpliedPrivileges = "feature-implied-privileges", High,
        "Feature adds privileges through its metadata",
        "A well-known feature (docker-in-docker, docker-outside-of-docker, sshd, ...) contributes privileged mode, socket mounts or a listening daemon through its own metadata, invisible in devcontainer.json.";
    /// `portsAttributes.*.elevateIfNeeded`.
    ElevateIfNeeded = "elevate-if-needed", Low,
        "Port forwarding may ask for host elevation",
        "elevateIfNeeded lets the tool prompt for administrator rights on the host to bind a low local port.";
    /// `--device` or `--gpus` in runArgs.
    HostDevice = "host-device", Medium,
        "Host device passed to the container",
        "--device gives the container direct access to a host device node (e.g. /dev/kvm, /dev/mem, a disk); --gpus exposes GPU drivers.";
    /// `--env-file` in runArgs.
    HostEnvFile = "host-env-file", Low,
        "Host file read into the container environment",
        "--env-file reads a file on the host into the container's environment; a path outside the workspace can copy host secrets in.";
    /// Configuration delegated to Docker Compose.
    ComposeNotAudited = "compose-not-audited", Info,
        "Container settings live in a Compose file",
        "With dockerComposeFile, privileged mode, mounts, host networking and capabilities are set in the Compose YAML, which this audit does not read. Review it separately.";
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The stable id.
    pub id: RuleId,
    /// The severity most findings of this rule carry (some findings are raised or lowered, e.g.
    /// a dangerous capability is `high` while the rule's default is `medium`).
    pub default_severity: Severity,
    /// One line, shown as SARIF `shortDescription`.
    pub short: &'static str,
    /// The full explanation, shown as SARIF `fullDescription` and `help`.
    pub full: &'static str,
}

impl RuleId {
    /// The catalogue entry of this id.
    pub fn rule(self) -> &'static Rule {
        // The macro builds RULES from the same list as the enum, so every id has an entry.
        RULES.iter().find(|r| r.id == self).unwrap_or(&RULES[0])
    }

    /// Looks an id up by its string form.
    pub fn parse(id: &str) -> Option<RuleId> {
        RULES.iter().map(|r| r.id).find(|r| r.as_str() == id)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut seen = HashSet::new();
        for rule in RULES {
            let id = rule.id.as_str();
            assert!(seen.insert(id), "duplicate rule id {id}");
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{id} is not kebab-case"
            );
            assert_eq!(RuleId::parse(id), Some(rule.id));
            assert_eq!(rule.id.rule().id, rule.id);
            assert!(!rule.short.is_empty() && rule.full.len() > rule.short.len());
        }
    }

    #[test]
    fn severities_required_by_the_issue() {
        use RuleId::*;
        let expected = [
            (InitializeCommandOnHost, Severity::Critical),
            (DownloadAndExecute, Severity::Critical),
            (Privileged, Severity::Critical),
            (HostNamespace, Severity::Critical),
            (ContainerSocketMount, Severity::Critical),
            (FeatureOptionInjection, Severity::Critical),
            (EmbeddedCredential, Severity::Critical),
            (UnconfinedSecurity, Severity::High),
            (HostPathMount, Severity::High),
            (HostSecretForwarding, Severity::High),
            (RootUser, Severity::Medium),
            (FeatureSource, Severity::Medium),
            (RepositoryPermissions, Severity::Medium),
            (ExtensionSource, Severity::Medium),
            (DangerousEnvironment, Severity::Medium),
            (AppPortAllInterfaces, Severity::Medium),
            (DuplicateKey, Severity::Medium),
            (Capability, Severity::Medium),
            (FeatureUnpinned, Severity::Low),
            (UnknownProperty, Severity::Low),
            (LifecycleCommand, Severity::Info),
        ];
        for (id, severity) in expected {
            assert_eq!(id.rule().default_severity, severity, "{id}");
        }
    }

    #[test]
    fn severity_order_and_names() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::parse("HIGH"), None);
    }
}
