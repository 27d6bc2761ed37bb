//! Mount parsing and classification: which host paths does a mount expose?
//!
//! Mounts reach Docker in three spellings, all of which end up here:
//!
//! ```text
//! "source=/var/run/docker.sock,target=/x,type=bind"      --mount CSV (devcontainer mounts, --mount)
//! "\"src=/run/docker.sock\",dst=/x"                      the same, with CSV quoting
//! "/var/run/docker.sock:/var/run/docker.sock:ro"         -v / --volume
//! {"type":"bind","source":"/var/run/docker.sock",..}     object form (the caller passes source)
//! ```
//!
//! The source is then normalised lexically (`//` collapsed, `.` dropped, `..` resolved, trailing
//! `/` removed) and classified. Host-home spellings (`~`, `$HOME`, `${localEnv:HOME}`,
//! `${localEnv:USERPROFILE}`, both concatenated as the templates do) become a `~` root, and
//! `${localWorkspaceFolder}` a workspace root whose escape through `..` is noticed.
//!
//! Invariant: classification never needs the real filesystem; it errs towards reporting (a
//! directory that *contains* a socket counts as the socket).

mod classify;

pub use classify::{classify, classify_source, normalise, Exposure, NormalPath, Root};

/// The rule, severity and description (`exposes … (path)`) of what a mount source exposes.
/// `workspace`: the mount is the workspace mount, whose source must stay inside the workspace.
pub(crate) fn rate(
    exposure: &Exposure,
    workspace: bool,
) -> (crate::audit::RuleId, crate::audit::Severity, String) {
    use crate::audit::checks::quoted;
    use crate::audit::{RuleId, Severity};
    match exposure {
        Exposure::ContainerSocket { path, what } => (
            RuleId::ContainerSocketMount,
            Severity::Critical,
            format!("exposes {what} ({})", quoted(path)),
        ),
        Exposure::HostPath { path, what, root } => (
            RuleId::HostPathMount,
            if *root {
                Severity::Critical
            } else {
                Severity::High
            },
            format!("exposes {what} ({})", quoted(path)),
        ),
        Exposure::OutsideWorkspace { path } => (
            RuleId::HostPathMount,
            if workspace {
                Severity::High
            } else {
                Severity::Medium
            },
            format!("source {} is outside the workspace folder", quoted(path)),
        ),
    }
}

/// A mount's parts, as far as the audit cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountSpec {
    /// `type=` (`bind`, `volume`, `tmpfs`, ...), lower case; `None` if not given.
    pub kind: Option<String>,
    /// `source=`/`src=` (or a local-driver volume's `volume-opt=device=`).
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
}

/// Splits a Docker `--mount` value: CSV fields (double quotes group, `""` is a quote), each
/// `key=value`; keys are case-insensitive and aliased like Docker does.
pub fn parse_mount_csv(spec: &str) -> MountSpec {
    let mut out = MountSpec::default();
    for field in csv_fields(spec) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.to_string()),
            None => (field.trim().to_ascii_lowercase(), String::new()),
        };
        match key.as_str() {
            "type" => out.kind = Some(value.trim().to_ascii_lowercase()),
            "source" | "src" => out.source = Some(value),
            "target" | "dst" | "destination" => out.target = Some(value),
            // `type=volume,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/var/run`
            // is a bind mount in disguise through the local volume driver.
            "volume-opt" => {
                if let Some(device) = value.strip_prefix("device=") {
                    out.source = Some(device.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn csv_fields(spec: &str) -> Vec<String> {
    // Without a quote nothing is ever quoted: fields are what lies between commas.
    if !spec.contains('"') {
        return spec.split(',').map(str::to_owned).collect();
    }
    csv_fields_quoted(spec)
}

/// [`csv_fields`] char by char, for specs with quotes.
fn csv_fields_quoted(spec: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Splits a `-v`/`--volume` value `SOURCE:TARGET[:OPTIONS]`. Colons inside `${...}` and a Windows
/// drive letter (`C:\x`) do not split. A single part is an anonymous volume (no source).
pub fn parse_volume(spec: &str) -> MountSpec {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let chars: Vec<char> = spec.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '$' if chars.get(i + 1) == Some(&'{') => {
                current.push(c);
            }
            '{' if i > 0 && chars[i - 1] == '$' => {
                depth += 1;
                current.push(c);
            }
            '}' if depth > 0 => {
                depth -= 1;
                current.push(c);
            }
            ':' if depth == 0 => {
                let drive = current.len() == 1
                    && current.chars().all(|c| c.is_ascii_alphabetic())
                    && matches!(chars.get(i + 1), Some('\\') | Some('/'));
                if drive {
                    current.push(c);
                } else {
                    parts.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    parts.push(current);
    if parts.len() == 1 {
        return MountSpec {
            kind: Some("volume".into()),
            source: None,
            target: parts.pop(),
        };
    }
    let source = parts.first().cloned();
    let target = parts.get(1).cloned();
    let is_path = source.as_deref().is_some_and(looks_like_path);
    MountSpec {
        kind: Some(if is_path { "bind" } else { "volume" }.into()),
        source,
        target,
    }
}

/// Does a mount source name a host path (rather than a named volume)?
pub fn looks_like_path(source: &str) -> bool {
    let s = source.trim();
    s.starts_with('/')
        || s.starts_with('\\')
        || s.starts_with('.')
        || s.starts_with('~')
        || s.starts_with('$')
        || s.as_bytes().get(1) == Some(&b':')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quote_free_fields_match_the_char_by_char_ones() {
        for spec in [
            "",
            ",",
            "a",
            "a,",
            ",a",
            "type=bind,src=/x,dst=/y",
            "a,,b",
            "ü=1,ß",
        ] {
            assert_eq!(csv_fields(spec), csv_fields_quoted(spec), "{spec:?}");
        }
    }

    #[test]
    fn csv_forms() {
        let m =
            parse_mount_csv("source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind");
        assert_eq!(m.source.as_deref(), Some("/var/run/docker.sock"));
        assert_eq!(m.kind.as_deref(), Some("bind"));
        let m = parse_mount_csv("\"src=/run/docker.sock\",dst=/x");
        assert_eq!(m.source.as_deref(), Some("/run/docker.sock"));
        assert_eq!(m.target.as_deref(), Some("/x"));
        let m = parse_mount_csv("type=bind,\"source=/a,b\",destination=/y");
        assert_eq!(m.source.as_deref(), Some("/a,b"));
        assert_eq!(m.target.as_deref(), Some("/y"));
        let m = parse_mount_csv("Type=Bind,SRC=/etc,Target=/e,readonly");
        assert_eq!(
            (m.kind.as_deref(), m.source.as_deref()),
            (Some("bind"), Some("/etc"))
        );
        let m = parse_mount_csv(
            "type=volume,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/var/run,target=/r",
        );
        assert_eq!(m.source.as_deref(), Some("/var/run"));
        let m = parse_mount_csv("\"source=\"\"/x\"\"\",target=/t");
        assert_eq!(m.source.as_deref(), Some("\"/x\""));
    }

    #[test]
    fn volume_forms() {
        let v = parse_volume("/var/run/docker.sock:/var/run/docker.sock:ro");
        assert_eq!(v.source.as_deref(), Some("/var/run/docker.sock"));
        assert_eq!(v.kind.as_deref(), Some("bind"));
        let v = parse_volume("${localEnv:HOME}/.ssh:/root/.ssh");
        assert_eq!(v.source.as_deref(), Some("${localEnv:HOME}/.ssh"));
        assert_eq!(v.target.as_deref(), Some("/root/.ssh"));
        let v = parse_volume("C:\\Users\\me:/host");
        assert_eq!(v.source.as_deref(), Some("C:\\Users\\me"));
        let v = parse_volume("cache:/cache");
        assert_eq!(v.kind.as_deref(), Some("volume"));
        let v = parse_volume("/data");
        assert_eq!((v.source, v.target.as_deref()), (None, Some("/data")));
    }
}
