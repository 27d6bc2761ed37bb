//! A `docker run` flag parser for `runArgs`, and the capability table.
//!
//! `runArgs` is appended verbatim to `docker run`, so everything Docker accepts must be
//! understood: long flags as `--flag value` or `--flag=value`, short flags alone (`-v x`),
//! attached (`-vx`) or bundled (`-itv x`, where only the last letter may take a value), and
//! boolean flags with an explicit value (`--privileged=true`). The parser knows which flags take a
//! value so that a value is never mistaken for a flag (`--label --privileged` is a label).
//!
//! An element holding a flag and its value separated by a space (`"--cap-add SYS_ADMIN"`) is not
//! valid for Docker, but some tools split it; the parser reads it both ways and reports the
//! dangerous reading (an auditor prefers a false alarm to a miss).

/// A security-relevant `docker run` flag found in `runArgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunFlag {
    /// `--privileged` (or `=true`).
    Privileged,
    /// `--cap-add NAME` (normalised: upper case, no `CAP_` prefix).
    CapAdd(String),
    /// `--security-opt VALUE`.
    SecurityOpt(String),
    /// `--net/--network/--pid/--ipc/--userns/--uts/--cgroupns host` (or `container:<id>`).
    Namespace {
        /// Which namespace (`network`, `pid`, `ipc`, `userns`, `uts`, `cgroupns`).
        namespace: &'static str,
        /// The requested mode (`host`, `container:x`).
        mode: String,
    },
    /// `-v/--volume SPEC`.
    Volume(String),
    /// `--mount SPEC`.
    Mount(String),
    /// `--device SPEC`.
    Device(String),
    /// `--gpus SPEC`.
    Gpus(String),
    /// `--env-file PATH`.
    EnvFile(String),
    /// `-e/--env NAME[=VALUE]`.
    Env(String),
    /// `-u/--user USER`.
    User(String),
    /// `-p/--publish SPEC`.
    Publish(String),
    /// `-P/--publish-all` (or `=true`): every exposed port on a random port of every interface.
    PublishAll,
    /// `--device-cgroup-rule RULE`: lets the container use devices it creates with `mknod`.
    DeviceCgroupRule(String),
}

/// One parsed flag and the index of the `runArgs` element it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFlag {
    /// Index into `runArgs` (the JSON pointer is `/runArgs/<index>`).
    pub index: usize,
    /// What it does.
    pub flag: RunFlag,
}

/// Long flags of `docker run` / `docker create` that take a value.
const LONG_WITH_VALUE: &[&str] = &[
    "add-host",
    "annotation",
    "attach",
    "blkio-weight",
    "blkio-weight-device",
    "cap-add",
    "cap-drop",
    "cgroup-parent",
    "cgroupns",
    "cidfile",
    "cpu-count",
    "cpu-percent",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "detach-keys",
    "device",
    "device-cgroup-rule",
    "device-read-bps",
    "device-read-iops",
    "device-write-bps",
    "device-write-iops",
    "dns",
    "dns-opt",
    "dns-option",
    "dns-search",
    "domainname",
    "entrypoint",
    "env",
    "env-file",
    "expose",
    "gpus",
    "group-add",
    "health-cmd",
    "health-interval",
    "health-retries",
    "health-start-interval",
    "health-start-period",
    "health-timeout",
    "hostname",
    "io-maxbandwidth",
    "io-maxiops",
    "ip",
    "ip6",
    "ipc",
    "isolation",
    "kernel-memory",
    "label",
    "label-file",
    "link",
    "link-local-ip",
    "log-driver",
    "log-opt",
    "mac-address",
    "memory",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "mount",
    "name",
    "net",
    "net-alias",
    "network",
    "network-alias",
    "oom-score-adj",
    "pid",
    "pids-limit",
    "platform",
    "publish",
    "pull",
    "restart",
    "runtime",
    "security-opt",
    "shm-size",
    "stop-signal",
    "stop-timeout",
    "storage-opt",
    "sysctl",
    "tmpfs",
    "ulimit",
    "user",
    "userns",
    "uts",
    "volume",
    "volume-driver",
    "volumes-from",
    "workdir",
];

/// Short flags that take a value (`-a -c -e -h -l -m -p -u -v -w`).
const SHORT_WITH_VALUE: &[char] = &['a', 'c', 'e', 'h', 'l', 'm', 'p', 'u', 'v', 'w'];

fn short_to_long(c: char) -> Option<&'static str> {
    Some(match c {
        'e' => "env",
        'p' => "publish",
        'u' => "user",
        'v' => "volume",
        _ => return None,
    })
}

fn classify(name: &str, value: &str) -> Option<RunFlag> {
    let namespace = |namespace: &'static str| {
        let mode = value.trim().to_ascii_lowercase();
        (mode == "host" || mode.starts_with("container:"))
            .then_some(RunFlag::Namespace { namespace, mode })
    };
    match name {
        "privileged" => {
            let v = value.trim().to_ascii_lowercase();
            (v.is_empty() || v == "true" || v == "1").then_some(RunFlag::Privileged)
        }
        "cap-add" => Some(RunFlag::CapAdd(normalise_capability(value))),
        "security-opt" => Some(RunFlag::SecurityOpt(value.to_string())),
        "net" | "network" => namespace("network"),
        "pid" => namespace("pid"),
        "ipc" => namespace("ipc"),
        "userns" => namespace("userns"),
        "uts" => namespace("uts"),
        "cgroupns" => namespace("cgroupns"),
        "volume" => Some(RunFlag::Volume(value.to_string())),
        "mount" => Some(RunFlag::Mount(value.to_string())),
        "device" => Some(RunFlag::Device(value.to_string())),
        "gpus" => Some(RunFlag::Gpus(value.to_string())),
        "env-file" => Some(RunFlag::EnvFile(value.to_string())),
        "env" => Some(RunFlag::Env(value.to_string())),
        "user" => Some(RunFlag::User(value.to_string())),
        "publish" => Some(RunFlag::Publish(value.to_string())),
        "publish-all" => {
            let v = value.trim().to_ascii_lowercase();
            (v.is_empty() || v == "true" || v == "1").then_some(RunFlag::PublishAll)
        }
        "device-cgroup-rule" => Some(RunFlag::DeviceCgroupRule(value.to_string())),
        _ => None,
    }
}

/// Parses `runArgs` and returns the security-relevant flags in order.
pub fn parse_run_args(args: &[String]) -> Vec<ParsedFlag> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].trim();
        let index = i;
        i += 1;
        let mut push = |flag: Option<RunFlag>| {
            if let Some(flag) = flag {
                out.push(ParsedFlag { index, flag });
            }
        };
        if let Some(long) = arg.strip_prefix("--") {
            if long.is_empty() {
                break; // `--` ends the options; the rest is the image and its command.
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => match long.split_once(char::is_whitespace) {
                    Some((n, v)) => (n, Some(v.trim().to_string())),
                    None => (long, None),
                },
            };
            let name = name.to_ascii_lowercase();
            let value = match inline {
                Some(v) => v,
                None if LONG_WITH_VALUE.contains(&name.as_str()) => {
                    i += 1;
                    args.get(i - 1).cloned().unwrap_or_default()
                }
                None => String::new(),
            };
            push(classify(&name, &value));
        } else if let Some(bundle) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            for (pos, c) in bundle.char_indices() {
                if c == 'P' {
                    push(Some(RunFlag::PublishAll));
                }
                if SHORT_WITH_VALUE.contains(&c) {
                    let rest = bundle[pos + c.len_utf8()..].trim_start_matches('=');
                    let value = if rest.is_empty() {
                        i += 1;
                        args.get(i - 1).cloned().unwrap_or_default()
                    } else {
                        rest.trim().to_string()
                    };
                    if let Some(long) = short_to_long(c) {
                        push(classify(long, &value));
                    }
                    break;
                }
            }
        }
        // A bare word is the start of the image name for `docker run`, but devcontainer tools
        // append the image after runArgs, so keep scanning: a stray word is just ignored.
    }
    out
}

/// `sys_admin`, `CAP_SYS_ADMIN`, ` Sys_Admin ` → `SYS_ADMIN`.
pub fn normalise_capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// Capabilities that allow a container escape or tampering with the host, each with the reason.
/// Any other capability is medium.
pub const DANGEROUS_CAPABILITIES: &[(&str, &str)] = &[
    (
        "ALL",
        "every capability, the same as a privileged container minus devices",
    ),
    (
        "SYS_ADMIN",
        "mount, namespaces, BPF, cgroups: the classic container escape",
    ),
    ("SYS_MODULE", "loads kernel modules into the host kernel"),
    (
        "DAC_READ_SEARCH",
        "open_by_handle_at reads any host file (the shocker escape)",
    ),
    (
        "DAC_OVERRIDE",
        "bypasses file permission checks on every mounted path",
    ),
    ("SYS_PTRACE", "traces and injects code into other processes"),
    ("SYS_RAWIO", "raw I/O ports and /dev/mem access"),
    ("SYS_BOOT", "reboots the host or loads a new kernel"),
    ("SYS_TIME", "sets the host clock, which is not namespaced"),
    ("BPF", "loads BPF programs into the host kernel"),
    (
        "PERFMON",
        "kernel performance monitoring, a rich kernel attack surface",
    ),
    (
        "NET_ADMIN",
        "reconfigures networking, firewall rules and routing",
    ),
    (
        "MAC_ADMIN",
        "changes the host's mandatory access control policy",
    ),
    (
        "MAC_OVERRIDE",
        "bypasses the host's mandatory access control",
    ),
    ("SYSLOG", "reads kernel addresses from the kernel log"),
];

/// Whether a `--device-cgroup-rule` (`TYPE MAJOR:MINOR ACCESS`) covers every device of a kind:
/// type `a`, a `*` major, or no numbers at all.
pub fn device_rule_covers_every(rule: &str) -> bool {
    let mut parts = rule.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let numbers = parts.next().unwrap_or_default();
    kind == "a" || numbers.starts_with('*') || numbers.is_empty()
}

/// How a published port (`-p`, `appPort`, Compose `ports`) reaches beyond the host's loopback,
/// or `None` when it is bound to a loopback address. Forms: `HOST_IP:HOST_PORT:CONTAINER_PORT`,
/// `HOST_PORT:CONTAINER_PORT`, `CONTAINER_PORT` (a random host port on all interfaces),
/// `[IPv6]:HOST:CONTAINER`.
pub fn publish_exposure(spec: &str) -> Option<&'static str> {
    let spec = spec.trim();
    let (host_ip, has_host_part) = if let Some(rest) = spec.strip_prefix('[') {
        (rest.split(']').next().unwrap_or_default(), true)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            0 | 1 => ("", false),
            2 => ("", true),
            _ => (parts[0], true),
        }
    };
    let local = matches!(host_ip, "127.0.0.1" | "::1" | "localhost") || host_ip.starts_with("127.");
    if local {
        None
    } else if has_host_part {
        Some("listens on all host interfaces")
    } else {
        Some("is published on a random host port on all interfaces")
    }
}

/// The reason a capability is dangerous, or `None` for the ordinary ones.
pub fn dangerous_capability(normalised: &str) -> Option<&'static str> {
    DANGEROUS_CAPABILITIES
        .iter()
        .find(|(name, _)| *name == normalised)
        .map(|(_, reason)| *reason)
}

/// Security options that switch off a confinement layer, or `None` for harmless ones.
pub fn unconfined_security_opt(value: &str) -> Option<&'static str> {
    let v: String = value
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let v = v.replace(':', "=");
    match v.as_str() {
        "seccomp=unconfined" => Some("seccomp filtering disabled"),
        "apparmor=unconfined" => Some("AppArmor disabled"),
        "label=disable" | "label=disabled" => Some("SELinux labelling disabled"),
        "systempaths=unconfined" => Some("/proc and /sys no longer masked"),
        "no-new-privileges=false" => Some("setuid escalation explicitly allowed"),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Vec<RunFlag> {
        let args: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        parse_run_args(&args).into_iter().map(|p| p.flag).collect()
    }

    #[test]
    fn spellings_table() {
        use RunFlag::*;
        let ns = |namespace, mode: &str| Namespace {
            namespace,
            mode: mode.to_string(),
        };
        let cases: Vec<(Vec<&str>, Vec<RunFlag>)> = vec![
            (vec!["--privileged"], vec![Privileged]),
            (vec!["--privileged=true"], vec![Privileged]),
            (vec!["--privileged=false"], vec![]),
            (vec!["--cap-add", "ALL"], vec![CapAdd("ALL".into())]),
            (
                vec!["--cap-add=sys_admin"],
                vec![CapAdd("SYS_ADMIN".into())],
            ),
            (
                vec!["--cap-add=CAP_SYS_PTRACE"],
                vec![CapAdd("SYS_PTRACE".into())],
            ),
            (
                vec!["--cap-add SYS_ADMIN"],
                vec![CapAdd("SYS_ADMIN".into())],
            ),
            (vec!["-v", "/:/host"], vec![Volume("/:/host".into())]),
            (vec!["-v/:/host"], vec![Volume("/:/host".into())]),
            (vec!["-itv", "/:/host"], vec![Volume("/:/host".into())]),
            (
                vec!["--volume=/var/run/docker.sock:/var/run/docker.sock"],
                vec![Volume("/var/run/docker.sock:/var/run/docker.sock".into())],
            ),
            (
                vec!["--mount", "type=bind,src=/,dst=/h"],
                vec![Mount("type=bind,src=/,dst=/h".into())],
            ),
            (vec!["--net=host"], vec![ns("network", "host")]),
            (vec!["--network", "host"], vec![ns("network", "host")]),
            (vec!["--network", "bridge"], vec![]),
            (vec!["--pid=host"], vec![ns("pid", "host")]),
            (vec!["--ipc", "HOST"], vec![ns("ipc", "host")]),
            (vec!["--userns=host"], vec![ns("userns", "host")]),
            (vec!["--uts=host"], vec![ns("uts", "host")]),
            (
                vec!["--pid=container:abc"],
                vec![ns("pid", "container:abc")],
            ),
            (
                vec!["--security-opt", "seccomp=unconfined"],
                vec![SecurityOpt("seccomp=unconfined".into())],
            ),
            (vec!["--device=/dev/kvm"], vec![Device("/dev/kvm".into())]),
            (
                vec!["--env-file", "../.env"],
                vec![EnvFile("../.env".into())],
            ),
            (vec!["-e", "A=1"], vec![Env("A=1".into())]),
            (vec!["-u", "0"], vec![User("0".into())]),
            (vec!["--gpus", "all"], vec![Gpus("all".into())]),
            (vec!["-p", "2375:2375"], vec![Publish("2375:2375".into())]),
            // Values are never read as flags.
            (vec!["--label", "--privileged", "--name", "x"], vec![]),
            (vec!["-l", "--privileged"], vec![]),
            // `--` ends the options.
            (vec!["--", "--privileged"], vec![]),
            (
                vec![
                    "--rm",
                    "--init",
                    "--add-host=host.docker.internal:host-gateway",
                ],
                vec![],
            ),
            (vec!["--cap-add"], vec![CapAdd(String::new())]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn indices_point_at_the_flag() {
        let args: Vec<String> = ["--rm", "--cap-add", "NET_ADMIN", "--privileged"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = parse_run_args(&args);
        assert_eq!(parsed[0].index, 1);
        assert_eq!(parsed[1].index, 3);
    }

    #[test]
    fn capabilities() {
        assert_eq!(normalise_capability(" cap_net_raw "), "NET_RAW");
        assert!(dangerous_capability("SYS_ADMIN").is_some());
        assert!(dangerous_capability("ALL").is_some());
        assert!(dangerous_capability("NET_RAW").is_none());
        assert!(dangerous_capability("CHOWN").is_none());
        let mut names: Vec<_> = DANGEROUS_CAPABILITIES.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DANGEROUS_CAPABILITIES.len(), "duplicate entry");
    }

    #[test]
    fn security_opts() {
        for v in [
            "seccomp=unconfined",
            "seccomp:unconfined",
            "apparmor=unconfined",
            "label=disable",
            "label:disable",
            "systempaths=unconfined",
            "Seccomp=Unconfined",
        ] {
            assert!(unconfined_security_opt(v).is_some(), "{v}");
        }
        for v in ["no-new-privileges", "seccomp=/x.json", "label=type:x"] {
            assert!(unconfined_security_opt(v).is_none(), "{v}");
        }
    }
}
