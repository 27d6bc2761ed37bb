//! Classification of a normalised mount source: container engine sockets and their
//! directories, sensitive host paths, the host home and its credential files, and escapes from
//! the workspace folder. Every table entry carries its reason, shown in the finding.

/// The first path component of a normalised source when it is not the filesystem root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// An absolute host path.
    Host,
    /// The host user's home (`~`, `$HOME`, `${localEnv:HOME}`, `${localEnv:USERPROFILE}`).
    Home,
    /// `${localWorkspaceFolder}`.
    Workspace,
    /// A relative path (Docker resolves it against the daemon's cwd; devcontainer tools reject it).
    Relative,
}

/// A lexically normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// What the path starts from.
    pub root: Root,
    /// Components after the root, with `.`/`..`/empty ones resolved.
    pub components: Vec<String>,
    /// `..` climbed above the root (for `Workspace`: the path leaves the workspace; for `Home`:
    /// it reaches other users' homes).
    pub escaped: bool,
}

impl NormalPath {
    /// The path as text: `/a/b`, `~/a`, `${localWorkspaceFolder}/a`, `a/b`.
    pub fn display(&self) -> String {
        let joined = self.components.join("/");
        match (self.root, self.escaped) {
            (Root::Host, _) => format!("/{joined}"),
            (Root::Home, false) if joined.is_empty() => "~".to_string(),
            (Root::Home, false) => format!("~/{joined}"),
            (Root::Workspace, false) if joined.is_empty() => "${localWorkspaceFolder}".to_string(),
            (Root::Workspace, false) => format!("${{localWorkspaceFolder}}/{joined}"),
            (Root::Home, true) => format!("~/../{joined}"),
            (Root::Workspace, true) => format!("${{localWorkspaceFolder}}/../{joined}"),
            (Root::Relative, _) => joined,
        }
    }
}

const HOME_PREFIXES: &[&str] = &[
    "${localEnv:HOME}${localEnv:USERPROFILE}",
    "${localEnv:USERPROFILE}${localEnv:HOME}",
    "${localEnv:HOME}",
    "${localEnv:USERPROFILE}",
    "${env:HOME}",
    "${env:USERPROFILE}",
    "${HOME}",
    "$HOME",
    "%USERPROFILE%",
    "~",
];

/// How many levels above `${localWorkspaceFolder}` reach the host root on the usual layouts
/// (`/workspaces/p` is 2 deep, `/home/u/src/p` and `/Users/u/code/p` 4): from there on a source
/// is treated as a host path, so `${localWorkspaceFolder}/../../../..` is `/`.
const WORKSPACE_DEPTH: usize = 4;

/// Normalises a mount source. Backslashes count as separators (Windows hosts).
pub fn normalise(source: &str) -> NormalPath {
    let s = source.trim();
    let (root, rest) = if let Some(rest) = strip_home(s) {
        (Root::Home, rest)
    } else if let Some(rest) = s.strip_prefix("${localWorkspaceFolder}") {
        (Root::Workspace, rest)
    } else if s.starts_with('/') || s.starts_with('\\') {
        (Root::Host, s)
    } else if s.as_bytes().get(1) == Some(&b':') && s.as_bytes()[0].is_ascii_alphabetic() {
        // `C:\Users\x` → host path `/c/Users/x`.
        (Root::Host, s)
    } else {
        (Root::Relative, s)
    };
    let mut root = root;
    let mut components: Vec<String> = Vec::new();
    let mut escaped = false;
    let mut levels_above = 0;
    for part in rest.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() && root != Root::Host {
                    escaped = true;
                    levels_above += 1;
                    if root == Root::Workspace && levels_above >= WORKSPACE_DEPTH {
                        // Above every usual workspace folder: from here on, the host root.
                        root = Root::Host;
                        escaped = false;
                    }
                }
            }
            p => components.push(p.trim_end_matches(':').to_string()),
        }
    }
    if let Some(first) = components.first_mut() {
        if root == Root::Host && first.len() == 1 && rest.as_bytes().get(1) == Some(&b':') {
            *first = first.to_ascii_lowercase();
        }
    }
    NormalPath {
        root,
        components,
        escaped,
    }
}

/// Strips every home prefix at the start: `${env:HOME}${env:USERPROFILE}` is the home on every
/// host (one of the two is empty), whichever of the variable forms is used.
fn strip_home(s: &str) -> Option<&str> {
    let mut rest = strip_one_home(s)?;
    while let Some(next) = strip_one_home(rest).filter(|n| n.len() < rest.len()) {
        rest = next;
    }
    Some(rest)
}

fn strip_one_home(s: &str) -> Option<&str> {
    HOME_PREFIXES.iter().find_map(|p| {
        // `${localEnv:HOME:/default}` counts too.
        if let Some(rest) = s.strip_prefix(p) {
            return Some(rest);
        }
        let open = p.strip_suffix('}')?;
        let rest = s.strip_prefix(open)?.strip_prefix(':')?;
        rest.find('}').map(|end| &rest[end + 1..])
    })
}

/// What a mount source exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exposure {
    /// A container engine socket, or a directory that contains one.
    ContainerSocket {
        /// The normalised path.
        path: String,
        /// Which engine, or "directory containing ... sockets".
        what: &'static str,
    },
    /// A sensitive host path.
    HostPath {
        /// The normalised path.
        path: String,
        /// Why it matters.
        what: &'static str,
        /// `/` itself (which also contains every socket): critical rather than high.
        root: bool,
    },
    /// A path that leaves the workspace folder (`${localWorkspaceFolder}/..`).
    OutsideWorkspace {
        /// The normalised path.
        path: String,
    },
}

const SOCKETS: &[(&str, &str)] = &[
    ("docker.sock", "the Docker socket"),
    ("docker_engine", "the Docker named pipe"),
    ("podman.sock", "the Podman socket"),
    ("containerd.sock", "the containerd socket"),
    ("crio.sock", "the CRI-O socket"),
    ("cri-dockerd.sock", "the cri-dockerd socket"),
    ("buildkitd.sock", "the BuildKit socket"),
    ("dockershim.sock", "the dockershim socket"),
    ("k3s.sock", "the k3s containerd socket"),
    (
        "libvirt-sock",
        "the libvirt socket (virtual machines and host devices, as root)",
    ),
    (
        "virtqemud-sock",
        "the libvirt QEMU socket (virtual machines, as root)",
    ),
];

/// Host directories that contain engine sockets (after normalisation; `/run/user/<uid>` is
/// matched separately).
const SOCKET_DIRS: &[&str] = &[
    "/run",
    "/var/run",
    "/run/user",
    "/var/run/user",
    "/run/docker",
    "/var/run/docker",
    "/run/containerd",
    "/var/run/containerd",
    "/run/podman",
    "/var/run/podman",
    "/run/crio",
    "/var/run/crio",
    "/run/buildkit",
    "/var/run/buildkit",
    "/run/k3s",
    "/var/run/k3s",
    "/run/k3s/containerd",
    "/run/libvirt",
    "/var/run/libvirt",
    "~/.docker/run",
    "~/.colima",
    "~/.colima/default",
    "~/.rd",
    "~/.rd/docker.sock",
    "~/.local/share/containers",
    "/./pipe",
    "/pipe",
];

const HOST_DIRS: &[(&str, &str)] = &[
    ("/etc", "host system configuration"),
    ("/root", "the host root user's home"),
    ("/home", "every user's home directory"),
    ("/users", "every user's home directory"),
    ("/proc", "host process information"),
    ("/sys", "host kernel interfaces"),
    ("/dev", "host devices"),
    ("/boot", "the host kernel and boot loader"),
    ("/var", "host system state"),
    (
        "/var/lib/docker",
        "the Docker data root (images, container filesystems)",
    ),
    ("/var/lib/containerd", "the containerd data root"),
    ("/var/lib/containers", "the Podman data root"),
    ("/var/lib/kubelet", "kubelet state and secrets"),
    ("/var/log", "host logs"),
    ("/usr", "host programs"),
    ("/bin", "host programs"),
    ("/sbin", "host programs"),
    ("/lib", "host libraries"),
    ("/lib64", "host libraries"),
    ("/opt", "host-installed software"),
    ("/c", "the host's system drive"),
    ("/c/users", "every user's home directory"),
    ("/c/windows", "the host's Windows directory"),
    (
        "/run/dbus",
        "the D-Bus system bus (asks systemd and other root services to act)",
    ),
    (
        "/var/run/dbus",
        "the D-Bus system bus (asks systemd and other root services to act)",
    ),
    (
        "/run/systemd",
        "systemd's control sockets (starts anything as root on the host)",
    ),
    (
        "/var/run/systemd",
        "systemd's control sockets (starts anything as root on the host)",
    ),
    ("/lib/modules", "the host kernel's modules"),
    ("/usr/lib/modules", "the host kernel's modules"),
    ("/dev/bus", "host USB devices"),
    ("/dev/bus/usb", "host USB devices"),
];

/// Paths below these are themselves sensitive (`/etc/shadow`, `/proc/1/root`).
const HOST_TREES: &[&str] = &[
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/boot",
    "/var/lib/docker",
    "/run/dbus",
    "/var/run/dbus",
    "/run/systemd",
    "/var/run/systemd",
    "/lib/modules",
    "/usr/lib/modules",
    "/dev/bus",
];

/// Credential and shell-startup files in a home directory (relative to `~`).
const HOME_SECRETS: &[(&str, &str)] = &[
    (".ssh", "SSH keys"),
    (".config/gh", "GitHub CLI tokens"),
    (".config/gcloud", "Google Cloud credentials"),
    (".config/github-copilot", "GitHub Copilot tokens"),
    (".claude", "Claude Code credentials and settings"),
    (".claude.json", "Claude Code credentials and settings"),
    (".codex", "OpenAI Codex CLI credentials"),
    (".gemini", "Gemini CLI credentials"),
    (".cache/huggingface", "a Hugging Face token"),
    (".huggingface", "a Hugging Face token"),
    (".aws", "AWS credentials"),
    (".azure", "Azure credentials"),
    (".kube", "Kubernetes credentials"),
    (".gnupg", "GnuPG keys"),
    (".docker", "Docker registry credentials"),
    (
        ".config",
        "application configuration and tokens (gh, gcloud, ...)",
    ),
    (
        ".gitconfig",
        "git configuration (can set credential helpers and hooks)",
    ),
    (".git-credentials", "stored git passwords"),
    (".netrc", "stored network passwords"),
    (".npmrc", "npm tokens"),
    (".pypirc", "PyPI tokens"),
    (".cargo", "cargo credentials"),
    (".m2", "Maven settings and credentials"),
    (".gradle", "Gradle credentials"),
    (".terraform.d", "Terraform tokens"),
    (".vault-token", "a Vault token"),
    (".password-store", "a password store"),
    (".local/share/keyrings", "desktop keyrings"),
    (".minikube", "minikube certificates"),
    (".oci", "Oracle Cloud credentials"),
    (
        ".bashrc",
        "a shell startup file (writes run code on the host)",
    ),
    (
        ".bash_profile",
        "a shell startup file (writes run code on the host)",
    ),
    (
        ".profile",
        "a shell startup file (writes run code on the host)",
    ),
    (
        ".zshrc",
        "a shell startup file (writes run code on the host)",
    ),
    (
        ".zshenv",
        "a shell startup file (writes run code on the host)",
    ),
    (".bash_history", "shell history"),
];

fn socket_file(path: &NormalPath) -> Option<&'static str> {
    let last = path.components.last()?.to_ascii_lowercase();
    SOCKETS
        .iter()
        .find(|(name, _)| *name == last)
        .map(|(_, what)| *what)
}

/// Classifies a normalised source. `None` means nothing sensitive was recognised.
pub fn classify(path: &NormalPath) -> Option<Exposure> {
    let shown = path.display();
    if let Some(what) = socket_file(path) {
        return Some(Exposure::ContainerSocket { path: shown, what });
    }
    let lower = shown.to_ascii_lowercase();
    let rootless_dir = {
        // /run/user/<uid> and /run/user/<uid>/podman, /run/user/<uid>/docker
        let c: Vec<&str> = path.components.iter().map(String::as_str).collect();
        path.root == Root::Host
            && matches!(c.as_slice(), ["run" | "var", ..])
            && {
                let c = if c.first() == Some(&"var") {
                    &c[1..]
                } else {
                    &c[..]
                };
                matches!(c, ["run", "user", uid] | ["run", "user", uid, "podman" | "docker" | "containerd"]
                    if uid.chars().all(|ch| ch.is_ascii_digit()))
            }
    };
    if rootless_dir || SOCKET_DIRS.contains(&lower.as_str()) {
        return Some(Exposure::ContainerSocket {
            path: shown,
            what: "a directory that contains container engine sockets",
        });
    }
    match path.root {
        Root::Host => {
            if path.components.is_empty() {
                return Some(Exposure::HostPath {
                    path: shown,
                    what: "the host's entire filesystem, including the container engine socket",
                    root: true,
                });
            }
            if let Some((_, what)) = HOST_DIRS.iter().find(|(p, _)| *p == lower) {
                return Some(Exposure::HostPath {
                    path: shown,
                    what,
                    root: false,
                });
            }
            if let Some(tree) = HOST_TREES
                .iter()
                .find(|t| lower.starts_with(&format!("{t}/")))
            {
                let what = HOST_DIRS
                    .iter()
                    .find(|(p, _)| p == tree)
                    .map(|(_, w)| *w)
                    .unwrap_or("a host system path");
                return Some(Exposure::HostPath {
                    path: shown,
                    what,
                    root: false,
                });
            }
            // /home/<user>, /Users/<user>, /c/Users/<user> and secrets below them.
            let c: Vec<String> = path
                .components
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect();
            // WSL mounts Windows drives at /mnt/<letter>: `/mnt/c/Users/x` is `C:\Users\x`.
            let drive = |at: usize| c.get(at).is_some_and(|d| d.len() == 1);
            let users = |at: usize| c.get(at).map(String::as_str) == Some("users");
            let home_len = match c.first().map(String::as_str) {
                Some("home") | Some("users") => 2,
                Some(_) if drive(0) && users(1) => 3,
                Some("mnt") if drive(1) && users(2) => 4,
                Some("mnt") if drive(1) && (c.len() == 2 || c.len() == 3 && users(2)) => {
                    let what = if c.len() == 3 {
                        "every user's home directory"
                    } else {
                        "a whole Windows host drive"
                    };
                    return Some(Exposure::HostPath {
                        path: shown,
                        what,
                        root: false,
                    });
                }
                _ => 0,
            };
            if home_len > 0 && c.len() >= home_len {
                return classify_in_home(&path.components[home_len..], shown);
            }
            None
        }
        Root::Home if path.escaped => Some(Exposure::HostPath {
            path: shown,
            what: "other users' home directories",
            root: false,
        }),
        Root::Home => classify_in_home(&path.components, shown),
        Root::Workspace if path.escaped => {
            // `${localWorkspaceFolder}/../.aws`: with the workspace in the home directory (the
            // usual case) this is the host's credential directory.
            let in_home = if path.components.is_empty() {
                None
            } else {
                classify_in_home(&path.components, shown.clone())
            };
            in_home.or(Some(Exposure::OutsideWorkspace { path: shown }))
        }
        Root::Workspace | Root::Relative => None,
    }
}

fn classify_in_home(rest: &[String], shown: String) -> Option<Exposure> {
    if rest.is_empty() {
        return Some(Exposure::HostPath {
            path: shown,
            what: "the host user's home directory",
            root: false,
        });
    }
    let rel = rest.join("/");
    HOME_SECRETS
        .iter()
        .find(|(p, _)| rel == *p || rel.starts_with(&format!("{p}/")))
        .map(|(_, what)| Exposure::HostPath {
            path: shown,
            what,
            root: false,
        })
}

/// Parses, normalises and classifies a mount source in one step.
pub fn classify_source(source: &str) -> Option<Exposure> {
    classify(&normalise(source))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let cases = [
            ("//var/run/../run/docker.sock", "/var/run/docker.sock"),
            ("/var/run/../../run/docker.sock", "/run/docker.sock"),
            ("/var/./run//docker.sock/", "/var/run/docker.sock"),
            ("/../../etc", "/etc"),
            ("/", "/"),
            ("~/.ssh/", "~/.ssh"),
            ("${localEnv:HOME}${localEnv:USERPROFILE}/.aws", "~/.aws"),
            ("${localEnv:HOME:/tmp}/.kube", "~/.kube"),
            ("$HOME/x/../.gnupg", "~/.gnupg"),
            ("${localWorkspaceFolder}/..", "${localWorkspaceFolder}/../"),
            (
                "${localWorkspaceFolder}/a/../b",
                "${localWorkspaceFolder}/b",
            ),
            ("C:\\Users\\me\\.ssh", "/c/Users/me/.ssh"),
            ("data", "data"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise(input).display(), expected, "{input}");
        }
    }

    fn socket(src: &str) -> bool {
        matches!(classify_source(src), Some(Exposure::ContainerSocket { .. }))
    }

    fn host(src: &str) -> bool {
        matches!(
            classify_source(src),
            Some(Exposure::HostPath { .. } | Exposure::OutsideWorkspace { .. })
        )
    }

    #[test]
    fn sockets_and_their_directories() {
        for src in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "//var/run/../run/docker.sock",
            "/var/run/docker.sock/",
            "/run/user/1000/docker.sock",
            "/run/user/1000/podman/podman.sock",
            "/run/podman/podman.sock",
            "/run/containerd/containerd.sock",
            "/var/run/crio/crio.sock",
            "~/.docker/run/docker.sock",
            "${localEnv:HOME}/.colima/default/docker.sock",
            "//./pipe/docker_engine",
            "\\\\.\\pipe\\docker_engine",
            "/var/run",
            "/run",
            "/run/",
            "/run/user/1000",
            "/var/run/docker",
            "/run/containerd",
            "/var/run/user/501",
        ] {
            assert!(socket(src), "missed socket: {src}");
        }
        for src in [
            "/run/secrets",
            "/var/run/dbus",
            "/tmp/docker",
            "docker.sock.bak",
            "/run/user/x",
        ] {
            assert!(!socket(src), "false socket: {src}");
        }
        // A named volume called docker.sock is not a host path; callers check looks_like_path.
        assert!(!super::super::looks_like_path("docker.sock"));
    }

    #[test]
    fn host_paths() {
        for src in [
            "/",
            "//",
            "/etc",
            "/etc/shadow",
            "/root",
            "/home",
            "/home/alice",
            "/home/alice/.ssh/id_rsa",
            "/Users/bob/.aws",
            "~",
            "~/.ssh",
            "${localEnv:HOME}/.kube/config",
            "${localEnv:HOME}${localEnv:USERPROFILE}/.gnupg",
            "${localEnv:USERPROFILE}/.docker",
            "$HOME/.gitconfig",
            "~/.netrc",
            "~/.config/gh",
            "${localWorkspaceFolder}/..",
            "${localWorkspaceFolder}/../../.aws",
            "${localWorkspaceFolder}/../.ssh",
            "/proc/1/root",
            "/var/lib/docker",
            "C:\\",
            "C:\\Users\\me\\.ssh",
        ] {
            assert!(host(src), "missed host path: {src}");
        }
        for src in [
            "${localWorkspaceFolder}",
            "${localWorkspaceFolder}/node_modules",
            "/tmp/.X11-unix",
            "~/projects/x",
            "/home/alice/code",
            "/workspaces",
            "/srv/data",
        ] {
            assert!(!host(src), "false host path: {src}");
        }
        assert!(matches!(
            classify_source("${localWorkspaceFolder}/../.aws"),
            Some(Exposure::HostPath { .. })
        ));
        assert!(matches!(
            classify_source("${localWorkspaceFolder}/../other-repo"),
            Some(Exposure::OutsideWorkspace { .. })
        ));
        assert!(matches!(
            classify_source("/"),
            Some(Exposure::HostPath { root: true, .. })
        ));
    }
}
