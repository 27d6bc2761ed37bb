//! A cgroup per run: limits (`pids.max`, `memory.max`), a way to kill everything in it at once,
//! and the mark the credential broker looks for.
//!
//! Two layouts exist in practice (`sandbox-ports.md` §3):
//!
//! ```text
//!  pure v2 (systemd VM)              hybrid (this Firecracker VM)
//!  /sys/fs/cgroup                    /sys/fs/cgroup/memory/<own>/RUN   memory.limit_in_bytes
//!   └ <parent>  +memory +pids        /sys/fs/cgroup/pids/<own>/RUN     pids.max
//!      └ RUN  memory.max pids.max    /sys/fs/cgroup/freezer/<own>/RUN  (only without cgroup.kill)
//!             cgroup.kill            /sys/fs/cgroup/unified/<own>/RUN  cgroup.kill, cgroup.events
//! ```
//!
//! Which hierarchies a run uses is decided in [`super::cgroup_layout`]. Killing uses
//! `cgroup.kill` (v2, Linux ≥ 5.14: one race-free write); without it the v1 freezer (freeze,
//! SIGKILL every member, thaw), and without that a bounded `cgroup.procs` kill loop.
//!
//! **Names.** `codespace-lifecycle-restricted.<agent pid>.<sandbox>-<n>` / `...-trusted....`:
//! the restricted marker ([`DEFAULT_RESTRICTED_CGROUP_MARKER`]) is what the broker refuses; the
//! agent pid lets a sweep tell the leftovers of an agent that is gone from another agent's live
//! runs; `<sandbox>` (random per [`Runs`]) keeps two sandboxes of one process (tests) apart.
//!
//! **Leftovers.** A run whose handle goes while processes still run in it (a dev server a
//! successful command left behind) keeps its directories; its [`Runs`] remembers them and a
//! later [`Runs::sweep`] removes them once empty. Nothing here is process-wide: the [`Runs`] is a
//! field of the sandbox.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cgroup_layout::write;
pub(crate) use super::cgroup_layout::{detect, Kind, Layout};
use super::{Limits, SandboxError, SandboxProfile};
use crate::guest::broker::DEFAULT_RESTRICTED_CGROUP_MARKER;

/// Prefix of every run cgroup's name.
pub(crate) const RUN_PREFIX: &str = "codespace-lifecycle-";

/// The restricted principal's cgroup, one per hierarchy, for the codespace's life: every
/// restricted run's cgroup is created inside it, so whatever restricted runs leave behind (a
/// dev server, a miner that forked away) shares one CPU ceiling, one memory and one pids limit,
/// and is killed as a whole when the trust facts change.
pub(crate) const RESTRICTED_GROUP: &str = "codespace-restricted";

/// The limits of [`RESTRICTED_GROUP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupLimits {
    /// CPU ceiling in thousandths of a CPU (1000: one CPU).
    pub(crate) cpu_millis: u64,
    /// Memory of everything restricted together.
    pub(crate) memory_max_bytes: u64,
    /// Processes of everything restricted together.
    pub(crate) pids_max: u64,
}

/// Which of [`GroupLimits`] the kernel enforces here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct GroupReport {
    /// The limits asked for.
    pub(crate) limits: Option<GroupLimits>,
    /// `cpu.max` (v2) or `cpu.cfs_quota_us` (v1) was written.
    pub(crate) cpu: bool,
    /// A memory limit was written.
    pub(crate) memory: bool,
    /// A pids limit was written.
    pub(crate) pids: bool,
}

/// The scheduler period the CPU ceiling is expressed in (µs).
const CPU_PERIOD_US: u64 = 100_000;

/// Creates [`RESTRICTED_GROUP`] in every hierarchy of `layout` (if missing) and writes its
/// `limits` (every time: a later config wins). A limit the machine cannot enforce is reported,
/// not an error; a group that cannot be created is.
pub(crate) fn ensure_restricted_group(
    layout: &Layout,
    limits: &GroupLimits,
) -> Result<GroupReport, SandboxError> {
    let mut report = GroupReport {
        limits: Some(*limits),
        ..GroupReport::default()
    };
    let quota = (limits.cpu_millis * CPU_PERIOD_US / 1000).max(1000);
    for parent in &layout.parents {
        let dir = parent.dir.join(RESTRICTED_GROUP);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(SandboxError::Cgroup {
                    path: dir,
                    action: "create",
                    source,
                })
            }
        }
        let set = |file: &str, value: String| write(&dir.join(file), &value).is_ok();
        match parent.kind {
            Kind::V2 => {
                // The runs inside need the parent's controllers; cpu is best effort (a parent
                // with processes of its own cannot hand it down).
                let mut wanted = Vec::new();
                if parent.memory {
                    wanted.push("+memory");
                    report.memory |= set("memory.max", limits.memory_max_bytes.to_string());
                }
                if parent.pids {
                    wanted.push("+pids");
                    report.pids |= set("pids.max", limits.pids_max.to_string());
                }
                if !wanted.is_empty() {
                    let _ = set("cgroup.subtree_control", wanted.join(" "));
                }
                if !dir.join("cpu.max").exists() {
                    let _ = write(&parent.dir.join("cgroup.subtree_control"), "+cpu");
                }
                report.cpu |= set("cpu.max", format!("{quota} {CPU_PERIOD_US}"));
            }
            Kind::V1Memory => {
                report.memory |= set("memory.limit_in_bytes", limits.memory_max_bytes.to_string());
            }
            Kind::V1Pids => report.pids |= set("pids.max", limits.pids_max.to_string()),
            Kind::V1Cpu => {
                report.cpu |= set("cpu.cfs_period_us", CPU_PERIOD_US.to_string())
                    && set("cpu.cfs_quota_us", quota.to_string());
            }
            Kind::V1Freezer => {}
        }
    }
    Ok(report)
}

/// Kills everything in [`RESTRICTED_GROUP`] (`cgroup.kill` of the v2 group, else every member
/// of every hierarchy's group, a few rounds) and waits, at most two seconds, for it to empty.
/// Returns how many processes were seen in it.
pub(crate) fn kill_restricted_group(layout: &Layout) -> usize {
    let groups: Vec<PathBuf> = layout
        .parents
        .iter()
        .map(|p| p.dir.join(RESTRICTED_GROUP))
        .filter(|d| d.exists())
        .collect();
    let members = |dir: &Path| -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for file in ["cgroup.procs", "tasks"] {
                if let Ok(t) = std::fs::read_to_string(d.join(file)) {
                    out.extend(t.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                }
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    };
    let seen = groups.iter().map(|g| members(g).len()).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<i32> = groups.iter().flat_map(|g| members(g)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        for g in &groups {
            let _ = write(&g.join("cgroup.kill"), "1");
        }
        for pid in left {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// Directories of runs whose handle is gone but which still had processes.
type Leftovers = Arc<Mutex<Vec<PathBuf>>>;

fn lock(leftovers: &Leftovers) -> MutexGuard<'_, Vec<PathBuf>> {
    // Only paths live behind the lock; a panic elsewhere leaves them usable.
    leftovers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The run cgroups of one sandbox: how new ones are named ([`Runs::create`]) and which of
/// them were left populated ([`Runs::sweep`]; see the module docs).
#[derive(Debug)]
pub(crate) struct Runs {
    /// This sandbox's part of every name (random: two sandboxes in one process never meet).
    instance: u32,
    /// The next run's number.
    next: AtomicU64,
    leftovers: Leftovers,
}

impl Default for Runs {
    fn default() -> Self {
        Self::new()
    }
}

/// A random `u32` from the kernel (the time's nanoseconds, should `getrandom` ever fail).
fn random_u32() -> u32 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    }
}

impl Runs {
    /// No runs yet.
    pub(crate) fn new() -> Self {
        Self {
            instance: random_u32(),
            next: AtomicU64::new(0),
            leftovers: Leftovers::default(),
        }
    }

    /// Creates the next run's directories (one per hierarchy of `layout`) and writes its
    /// limits.
    pub(crate) fn create(
        &self,
        layout: &Layout,
        profile: SandboxProfile,
        limits: &Limits,
    ) -> Result<RunCgroup, SandboxError> {
        let marker = match profile {
            SandboxProfile::Restricted => DEFAULT_RESTRICTED_CGROUP_MARKER.to_owned(),
            SandboxProfile::Trusted => format!("{RUN_PREFIX}trusted"),
        };
        let name = format!(
            "{marker}.{}.{:08x}-{}",
            std::process::id(),
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        RunCgroup::create(name, self.leftovers.clone(), layout, profile, limits)
    }

    /// Removes this sandbox's leftovers that are empty by now.
    fn remove_empty_leftovers(&self) {
        lock(&self.leftovers).retain(|dir| std::fs::remove_dir(dir).is_err() && dir.exists());
    }

    /// Removes empty run cgroups left behind: this sandbox's leftovers, and every run of
    /// agents that no longer run. Runs of a live process (this one's other sandboxes, another
    /// agent's) are never touched.
    pub(crate) fn sweep(&self, layout: &Layout) {
        self.remove_empty_leftovers();
        let own = std::process::id();
        let dirs = layout
            .parents
            .iter()
            .flat_map(|p| [p.dir.clone(), p.dir.join(RESTRICTED_GROUP)]);
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with(RUN_PREFIX) {
                    continue;
                }
                let pid: Option<u32> = name.split('.').nth(1).and_then(|p| p.parse().ok());
                let gone = pid.is_some_and(|pid| {
                    pid != own && !Path::new("/proc").join(pid.to_string()).exists()
                });
                if gone {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    }
}

impl Drop for Runs {
    /// The sandbox goes (agent shutdown, the end of a test): its leftovers that are empty go
    /// too. Populated ones (a dev server) stay, for a later agent's sweep once this one is gone.
    fn drop(&mut self) {
        self.remove_empty_leftovers();
    }
}

/// A run's cgroup, one directory per hierarchy.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    name: String,
    dirs: Vec<(Kind, PathBuf)>,
    /// The counters as they were when the directories were removed.
    final_events: Option<LimitEvents>,
    /// Where the directories go when the handle is dropped while the run still has processes.
    leftovers: Leftovers,
}

/// Limit events counted by the kernel for a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LimitEvents {
    /// Processes the OOM killer killed (memory limit reached).
    pub oom_kills: u64,
    /// Forks refused because `pids.max` was reached.
    pub pids_max_hits: u64,
}

fn counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            })
        })
        .unwrap_or(0)
}

impl RunCgroup {
    /// Creates the directories of run `name` (one per hierarchy of `layout`) and writes its
    /// limits. On a failure, the directories made so far go with the half-made handle.
    fn create(
        name: String,
        leftovers: Leftovers,
        layout: &Layout,
        profile: SandboxProfile,
        limits: &Limits,
    ) -> Result<Self, SandboxError> {
        let mut run = Self {
            name,
            dirs: Vec::with_capacity(layout.parents.len()),
            final_events: None,
            leftovers,
        };
        for parent in &layout.parents {
            let killable = run
                .dir(Kind::V2)
                .is_some_and(|d| d.join("cgroup.kill").exists());
            if parent.kind == Kind::V1Freezer && killable {
                continue; // cgroup.kill makes the freezer fallback unnecessary
            }
            let base = match profile {
                SandboxProfile::Restricted => {
                    // Made with its limits by `ensure_restricted_group` (the spawn calls it
                    // first); made here too in case it was removed in between.
                    let group = parent.dir.join(RESTRICTED_GROUP);
                    let _ = std::fs::create_dir(&group);
                    group
                }
                SandboxProfile::Trusted => parent.dir.clone(),
            };
            let dir = base.join(&run.name);
            std::fs::create_dir(&dir).map_err(|source| SandboxError::Cgroup {
                path: dir.clone(),
                action: "create",
                source,
            })?;
            run.dirs.push((parent.kind, dir.clone()));
            let mut files: Vec<(&str, String, bool)> = Vec::new();
            match parent.kind {
                Kind::V2 => {
                    if parent.memory {
                        files.push(("memory.max", limits.memory_max_bytes.to_string(), true));
                        files.push(("memory.swap.max", "0".into(), false));
                        files.push(("memory.oom.group", "1".into(), false));
                    }
                    if parent.pids {
                        files.push(("pids.max", limits.pids_max.to_string(), true));
                    }
                }
                Kind::V1Memory => {
                    let bytes = limits.memory_max_bytes.to_string();
                    files.push(("memory.limit_in_bytes", bytes.clone(), true));
                    files.push(("memory.memsw.limit_in_bytes", bytes, false));
                }
                Kind::V1Pids => files.push(("pids.max", limits.pids_max.to_string(), true)),
                Kind::V1Cpu | Kind::V1Freezer => {}
            }
            for (file, value, required) in files {
                let path = dir.join(file);
                match write(&path, &value) {
                    Ok(()) => {}
                    Err(_) if !required => {} // swap accounting or oom.group not available
                    Err(source) => {
                        return Err(SandboxError::Cgroup {
                            path,
                            action: "write",
                            source,
                        })
                    }
                }
            }
        }
        Ok(run)
    }

    /// The name shared by all its directories.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its directories.
    pub(crate) fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// Opens, for the child to join each hierarchy by writing `"0"` (`O_WRONLY | O_CLOEXEC`):
    /// v2's `cgroup.procs`, and v1's **`tasks`**. Both move the single-threaded child (the
    /// same thing for it), but a write to `cgroup.procs` takes the kernel's global
    /// threadgroup lock for writing, which waits for an RCU grace period whenever no such write
    /// happened in the last one (measured here: 6–23 ms, 10.6 ms median, for a command started
    /// 150 ms after the previous one), while moving the writing thread itself through `tasks`
    /// skips that lock (44 µs).
    pub(crate) fn procs_fds(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.dirs
            .iter()
            .map(|(kind, dir)| {
                let path = dir.join(match kind {
                    Kind::V2 => "cgroup.procs",
                    Kind::V1Memory | Kind::V1Pids | Kind::V1Cpu | Kind::V1Freezer => "tasks",
                });
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| SandboxError::Cgroup {
                        path,
                        action: "open",
                        source,
                    })
            })
            .collect()
    }

    fn dir(&self, kind: Kind) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| d.as_path())
    }

    fn members(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .flat_map(|(_, d)| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether any process is still in the run.
    pub(crate) fn populated(&self) -> bool {
        match self.dir(Kind::V2) {
            Some(v2) => std::fs::read_to_string(v2.join("cgroup.events"))
                .map(|t| t.lines().any(|l| l == "populated 1"))
                .unwrap_or(false),
            None => !self.members().is_empty(),
        }
    }

    /// Kills every process in the run: `cgroup.kill`, else freeze + SIGKILL + thaw, else a
    /// bounded `cgroup.procs` kill loop. Returns the method used.
    pub(crate) fn kill(&self) -> &'static str {
        if let Some(v2) = self.dir(Kind::V2) {
            if write(&v2.join("cgroup.kill"), "1").is_ok() {
                return "cgroup.kill";
            }
        }
        let kill_each = |pids: &[i32]| {
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        };
        if let Some(freezer) = self.dir(Kind::V1Freezer) {
            let state = freezer.join("freezer.state");
            if write(&state, "FROZEN").is_ok() {
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline
                    && std::fs::read_to_string(&state).is_ok_and(|s| s.trim() != "FROZEN")
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                kill_each(&self.members());
                let _ = write(&state, "THAWED");
                return "freezer";
            }
        }
        for _ in 0..100 {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            kill_each(&members);
        }
        "kill-loop"
    }

    /// The kernel's limit counters (kept after the directories are removed).
    pub(crate) fn limit_events(&self) -> LimitEvents {
        if let Some(events) = self.final_events {
            return events;
        }
        let mut events = LimitEvents::default();
        for (kind, dir) in &self.dirs {
            match kind {
                Kind::V2 => {
                    events.oom_kills += counter(&dir.join("memory.events"), "oom_kill");
                    events.pids_max_hits += counter(&dir.join("pids.events"), "max");
                }
                Kind::V1Memory => {
                    events.oom_kills += counter(&dir.join("memory.oom_control"), "oom_kill");
                }
                Kind::V1Pids => {
                    events.pids_max_hits += counter(&dir.join("pids.events"), "max");
                }
                Kind::V1Cpu | Kind::V1Freezer => {}
            }
        }
        events
    }

    /// Removes the directories if the run is empty; a populated run (a dev server left running
    /// on purpose) stays and is swept once empty. Returns whether it was removed.
    #[cfg(test)]
    pub(crate) fn remove_if_empty(&mut self) -> bool {
        self.remove_keeping_events(true)
    }

    /// [`Self::remove_if_empty`]; `keep` says whether to read the counters first (for
    /// [`Self::limit_events`] after the removal; a dropped handle has no later reader).
    fn remove_keeping_events(&mut self, keep: bool) -> bool {
        if self.final_events.is_some() {
            return true;
        }
        if self.populated() {
            return false;
        }
        let events = if keep {
            self.limit_events()
        } else {
            LimitEvents::default()
        };
        let mut all = true;
        for (_, dir) in self.dirs.iter().rev() {
            all &= matches!(std::fs::remove_dir(dir), Ok(())) || !dir.exists();
        }
        if all {
            self.final_events = Some(events);
        }
        all
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.remove_keeping_events(false) {
            let dirs = self.dirs.iter().map(|(_, d)| d.clone());
            lock(&self.leftovers).extend(dirs);
        }
    }
}

/// Whether `/proc/<pid>/cgroup` (under `proc_root`) puts the process in a restricted run
/// (`marker` in any hierarchy's path). `Err` when the file cannot be read (process gone).
pub(crate) fn is_restricted_pid_in(
    proc_root: &Path,
    pid: u32,
    marker: &str,
) -> std::io::Result<bool> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(crate::guest::broker::in_restricted_cgroup(&text, marker))
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_markers() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        std::fs::write(&f, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(counter(&f, "oom_kill"), 2);
        assert_eq!(counter(&f, "max"), 3);
        assert_eq!(counter(&f, "none"), 0);
        let proc_root = dir.path();
        std::fs::create_dir(proc_root.join("42")).unwrap();
        std::fs::write(
            proc_root.join("42/cgroup"),
            "8:pids:/codespace-lifecycle-restricted.1.0\n0::/\n",
        )
        .unwrap();
        assert!(is_restricted_pid_in(proc_root, 42, DEFAULT_RESTRICTED_CGROUP_MARKER).unwrap());
        std::fs::create_dir(proc_root.join("43")).unwrap();
        std::fs::write(
            proc_root.join("43/cgroup"),
            "0::/codespace-lifecycle-trusted.1.1\n",
        )
        .unwrap();
        assert!(!is_restricted_pid_in(proc_root, 43, DEFAULT_RESTRICTED_CGROUP_MARKER).unwrap());
        assert!(is_restricted_pid_in(proc_root, 44, DEFAULT_RESTRICTED_CGROUP_MARKER).is_err());
    }
}
