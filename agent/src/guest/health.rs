//! Health metrics for `status` and the periodic `heartbeat` event.
//!
//! A host supervisor watching thousands of VMs should not poll each one: every control connection
//! receives a `heartbeat` event every `heartbeat_interval_s` (default 30 s) with the VM's CPU,
//! memory, workspace disk, load and uptime, and the agent's own RSS and CPU. The same snapshot is
//! part of `status`. CPU percentages are measured between two samples, so the first sample after
//! start reports the usage since the sampler was created.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One snapshot of the metrics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Metrics {
    /// Whole-VM CPU usage in percent (all cores together = 100).
    pub(crate) cpu_percent: f32,
    /// Number of logical CPUs.
    pub(crate) cpus: usize,
    /// Total memory, bytes.
    pub(crate) memory_total_bytes: u64,
    /// Used memory, bytes.
    pub(crate) memory_used_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes.
    pub(crate) load: [f64; 3],
    /// VM uptime, seconds.
    pub(crate) uptime_s: u64,
    /// Disk of the workspace directory (absent if no file system could be matched).
    pub(crate) disk: Option<DiskMetrics>,
    /// The agent's own resident memory, bytes.
    pub(crate) agent_rss_bytes: u64,
    /// The agent's own CPU usage in percent of one core.
    pub(crate) agent_cpu_percent: f32,
}

/// File system holding the workspace.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct DiskMetrics {
    /// Mount point.
    pub(crate) mount_point: PathBuf,
    /// Size, bytes.
    pub(crate) total_bytes: u64,
    /// Available, bytes.
    pub(crate) available_bytes: u64,
}

/// Keeps the sysinfo state between samples (needed for CPU deltas).
pub struct HealthSampler {
    inner: Mutex<(System, Disks)>,
    workspace: PathBuf,
    pid: Pid,
}

impl std::fmt::Debug for HealthSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthSampler")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl HealthSampler {
    /// A sampler reporting the disk that holds `workspace`.
    pub fn new(workspace: &Path) -> Self {
        let mut sys = System::new();
        sys.refresh_cpu_usage();
        Self {
            inner: Mutex::new((sys, Disks::new())),
            workspace: workspace.to_owned(),
            pid: Pid::from_u32(std::process::id()),
        }
    }

    /// Takes a snapshot.
    pub(crate) fn sample(&self) -> Metrics {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            // A panic while sampling leaves only stale numbers behind; keep going with them.
            Err(poisoned) => poisoned.into_inner(),
        };
        let (sys, disks) = &mut *guard;
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        disks.refresh(true);
        let (agent_rss_bytes, agent_cpu_percent) = sys
            .process(self.pid)
            .map_or((0, 0.0), |p| (p.memory(), p.cpu_usage()));
        let load = System::load_average();
        Metrics {
            cpu_percent: sys.global_cpu_usage(),
            cpus: sys.cpus().len(),
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            load: [load.one, load.five, load.fifteen],
            uptime_s: System::uptime(),
            disk: workspace_disk(disks, &self.workspace),
            agent_rss_bytes,
            agent_cpu_percent,
        }
    }
}

/// The disk whose mount point is the longest prefix of `dir` (or of its nearest existing parent).
fn workspace_disk(disks: &Disks, dir: &Path) -> Option<DiskMetrics> {
    let dir = dir
        .ancestors()
        .find_map(|p| p.canonicalize().ok())
        .unwrap_or_else(|| "/".into());
    disks
        .list()
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| DiskMetrics {
            mount_point: d.mount_point().to_owned(),
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reports_this_process_and_the_machine() {
        let s = HealthSampler::new(Path::new("/nonexistent/workspace"));
        let m = s.sample();
        assert!(m.agent_rss_bytes > 0);
        assert!(m.memory_total_bytes >= m.memory_used_bytes && m.memory_total_bytes > 0);
        assert!(m.cpus > 0);
        assert!(m.uptime_s > 0);
    }
}
