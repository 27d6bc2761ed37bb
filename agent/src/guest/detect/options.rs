//! The `detect` config section, raw and typed.
//!
//! ```jsonc
//! "detect": {
//!   "poll_interval_ms": 150,     // 20..=5000
//!   "ignore_ports": [22],        // never reported (e.g. the VM's own sshd)
//!   "method": "auto"             // "auto" | "sock_diag" | "procnet"
//! }
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default poll interval. Why 150 ms: the issue asks for events within 300 ms of a change. The
/// worst case is one full interval plus a dump (0.5 ms loaded) plus owner resolution of the new
/// listener (a `/proc/PID/fd` scan, usually short; see `tests/perf/README.md`), leaving margin
/// for a busy 2-core VM (measured: `opened` p99 181 ms with 1,000 listeners and 10,000
/// established connections). The cost is one dump per interval: 0.53 % of a core loaded and
/// 0.07 % idle as measured; 100 ms would be ~0.8 %, too close to the 1 % budget.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(150);
/// Bounds on `poll_interval_ms`: below 20 ms the cost grows past the budget; above 5 s the
/// detection is no better than the 2–3 s polling we set out to beat.
const POLL_BOUNDS_MS: (u64, u64) = (20, 5_000);

/// How listeners are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Method {
    /// sock_diag, falling back to `/proc/net` if netlink is unavailable.
    #[default]
    Auto,
    /// Only sock_diag (fail if unavailable).
    SockDiag,
    /// Only `/proc/net/tcp{,6}`.
    #[serde(rename = "procnet")]
    ProcNet,
}

/// The `detect` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in the module's example
pub struct RawDetectConfig {
    pub(crate) poll_interval_ms: Option<u64>,
    pub(crate) ignore_ports: Option<Vec<u16>>,
    pub(crate) method: Option<Method>,
}

/// What detection needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectOptions {
    /// Source selection.
    pub method: Method,
    /// Time between two dumps.
    pub poll_interval: Duration,
    /// Ports never reported.
    pub ignore_ports: BTreeSet<u16>,
    /// Sockets owned by this pid are never reported (the agent sets its own pid).
    pub ignore_pid: Option<u32>,
    /// Where `/proc` is (tests point it at a fixture tree).
    pub proc_root: PathBuf,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            method: Method::Auto,
            poll_interval: DEFAULT_POLL_INTERVAL,
            ignore_ports: BTreeSet::new(),
            ignore_pid: None,
            proc_root: "/proc".into(),
        }
    }
}

/// A `detect` setting with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetectConfigError {
    /// `poll_interval_ms` out of bounds.
    #[error("must be between {min} and {max} (milliseconds), got {got}")]
    PollInterval {
        /// Lower bound.
        min: u64,
        /// Upper bound.
        max: u64,
        /// The value.
        got: u64,
    },
    /// Port 0 cannot be listened on, so ignoring it is a mistake.
    #[error("index {index}: port 0 is not a port")]
    PortZero {
        /// Position in the list.
        index: usize,
    },
}

impl DetectConfigError {
    /// The config key the error is about.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Self::PollInterval { .. } => "detect.poll_interval_ms",
            Self::PortZero { .. } => "detect.ignore_ports",
        }
    }
}

impl DetectOptions {
    /// The typed options of the agent itself (its own pid ignored).
    pub(crate) fn from_raw(raw: RawDetectConfig) -> Result<Self, DetectConfigError> {
        let ms = raw
            .poll_interval_ms
            .unwrap_or(DEFAULT_POLL_INTERVAL.as_millis() as u64);
        let (min, max) = POLL_BOUNDS_MS;
        if !(min..=max).contains(&ms) {
            return Err(DetectConfigError::PollInterval { min, max, got: ms });
        }
        let ports = raw.ignore_ports.unwrap_or_default();
        if let Some(index) = ports.iter().position(|p| *p == 0) {
            return Err(DetectConfigError::PortZero { index });
        }
        Ok(Self {
            method: raw.method.unwrap_or_default(),
            poll_interval: Duration::from_millis(ms),
            ignore_ports: ports.into_iter().collect(),
            ignore_pid: Some(std::process::id()),
            proc_root: "/proc".into(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let o = DetectOptions::from_raw(RawDetectConfig::default()).unwrap();
        assert_eq!(o.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(o.method, Method::Auto);
        assert_eq!(o.ignore_pid, Some(std::process::id()));
        let raw: RawDetectConfig = serde_json::from_str(
            r#"{"poll_interval_ms": 100, "ignore_ports": [22, 22, 2222], "method": "procnet"}"#,
        )
        .unwrap();
        let o = DetectOptions::from_raw(raw).unwrap();
        assert_eq!(o.method, Method::ProcNet);
        assert_eq!(o.ignore_ports, BTreeSet::from([22, 2222]));
    }

    #[test]
    fn bad_values_name_key_and_index() {
        let e = DetectOptions::from_raw(RawDetectConfig {
            poll_interval_ms: Some(5),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key(), "detect.poll_interval_ms");
        assert!(e.to_string().contains("got 5"), "{e}");
        let e = DetectOptions::from_raw(RawDetectConfig {
            ignore_ports: Some(vec![80, 0]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key(), "detect.ignore_ports");
        assert!(e.to_string().contains("index 1"), "{e}");
        let bad = serde_json::from_str::<RawDetectConfig>(r#"{"method": "ebpf"}"#);
        assert!(bad.unwrap_err().to_string().contains("ebpf"));
        let bad = serde_json::from_str::<RawDetectConfig>(r#"{"ignore_ports": [70000]}"#);
        assert!(bad.is_err());
    }
}
