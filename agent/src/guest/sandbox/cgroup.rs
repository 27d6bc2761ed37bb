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
//! Each controller comes from its v1 hierarchy when one is mounted, else from v2 when the v2
//! parent has it; the v2 (or unified) cgroup is always created when a cgroup2 mount exists,
//! because `cgroup.kill` (Linux ≥ 5.14) is the one race-free way to kill a tree, and
//! `cgroup.events` says when it is empty. Without `cgroup.kill` the v1 freezer is used (freeze,
//! SIGKILL every member, thaw), and without that a `cgroup.procs` kill loop.
//!
//! **Pure v2 parent.** The no-internal-processes rule forbids enabling controllers for children
//! of a cgroup that has processes. The parent is, in order: the configured
//! `sandbox.cgroup_parent`; the agent's own cgroup when `memory` and `pids` are already enabled in
//! its `cgroup.subtree_control` (systemd `Delegate=yes` plus a prepared leaf); for an agent in
//! the root cgroup, `/codespace-agent`; when the agent is alone in its cgroup, the agent moves
//! itself into a `daemon` leaf and enables the controllers for its cgroup; otherwise
//! `/codespace-agent` under the root. If none works, runs get a kill-only v2 cgroup and the
//! report says the limits are missing.
//!
//! **Names.** `codespace-lifecycle-restricted.<agent pid>.<n>` / `...-trusted....`: the
//! restricted marker ([`DEFAULT_RESTRICTED_CGROUP_MARKER`]) is what the broker refuses; the agent
//! pid lets a sweep tell its own leftovers from another agent's live runs.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Limits, SandboxError, SandboxProfile};
use crate::guest::broker::DEFAULT_RESTRICTED_CGROUP_MARKER;

/// Prefix of every run cgroup's name.
pub const RUN_PREFIX: &str = "codespace-lifecycle-";

/// One hierarchy a run cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// cgroup v2 (pure, or the unified mount of a hybrid layout).
    V2,
    /// v1 `memory`.
    V1Memory,
    /// v1 `pids`.
    V1Pids,
    /// v1 `freezer` (kill fallback without `cgroup.kill`).
    V1Freezer,
}

/// A parent directory for run cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// Hierarchy.
    pub kind: Kind,
    /// Absolute directory.
    pub dir: PathBuf,
    /// v2 only: `memory` is enabled for children here.
    pub memory: bool,
    /// v2 only: `pids` is enabled for children here.
    pub pids: bool,
}

/// Where run cgroups go on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// `v2`, `hybrid`, `v1` or `none`.
    pub mode: &'static str,
    /// The parents, v2 first.
    #[serde(skip)]
    pub parents: Vec<Parent>,
    /// Why a limit is unavailable, if one is.
    pub note: Option<String>,
}

impl Serialize for Parent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.dir.serialize(s)
    }
}

/// A cgroup2 or v1 mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    v2: bool,
    controllers: Vec<String>,
    root: String,
    point: PathBuf,
}

fn unescape(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(char::from(b)),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(Mount {
                v2,
                controllers: if v2 {
                    Vec::new()
                } else {
                    options.split(',').map(str::to_owned).collect()
                },
                root: unescape(left.get(3)?),
                point: PathBuf::from(unescape(left.get(4)?)),
            })
        })
        .collect()
}

/// The cgroup path of this process in the hierarchy with `controller` (`""` for v2).
fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let _id = f.next()?;
        let controllers = f.next()?;
        let path = f.next()?;
        let hit = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })
}

fn join_under(mount: &Mount, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    if relative.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(relative)
    }
}

fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|w| w == name)
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Detects the layout and prepares a pure-v2 parent (see the module docs).
pub fn detect(configured_parent: Option<&Path>) -> Layout {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mounts = parse_mounts(&mountinfo);
    let v1 = |controller: &str| {
        mounts
            .iter()
            .find(|m| !m.v2 && has(&m.controllers, controller))
            .and_then(|m| Some(join_under(m, own_path(&proc_cgroup, controller)?)))
    };
    let mut parents = Vec::new();
    let mut note = None;
    let memory_v1 = v1("memory");
    let pids_v1 = v1("pids");
    let v2_mount = mounts.iter().find(|m| m.v2);
    if let Some(mount) = v2_mount {
        let own = own_path(&proc_cgroup, "").map(|p| join_under(mount, p));
        let want_memory = memory_v1.is_none();
        let want_pids = pids_v1.is_none();
        let root_controllers = words(&mount.point.join("cgroup.controllers"));
        let needs_controllers = (want_memory && has(&root_controllers, "memory"))
            || (want_pids && has(&root_controllers, "pids"));
        let parent = match (needs_controllers, own) {
            (false, Some(own)) => Ok(own),
            (false, None) => Ok(mount.point.clone()),
            (true, own) => prepare_v2_parent(&mount.point, own.as_deref(), configured_parent),
        };
        match parent {
            Ok(dir) => {
                let enabled = words(&dir.join("cgroup.subtree_control"));
                parents.push(Parent {
                    kind: Kind::V2,
                    memory: want_memory && has(&enabled, "memory"),
                    pids: want_pids && has(&enabled, "pids"),
                    dir,
                });
            }
            Err(why) => {
                note = Some(why);
                let own = own_path(&proc_cgroup, "").map(|p| join_under(mount, p));
                parents.push(Parent {
                    kind: Kind::V2,
                    memory: false,
                    pids: false,
                    dir: own.unwrap_or_else(|| mount.point.clone()),
                });
            }
        }
    }
    for (kind, dir) in [(Kind::V1Memory, memory_v1), (Kind::V1Pids, pids_v1)] {
        if let Some(dir) = dir {
            parents.push(Parent {
                kind,
                dir,
                memory: false,
                pids: false,
            });
        }
    }
    // Used only by runs whose v2 cgroup has no `cgroup.kill` (see `RunCgroup::create`).
    if let Some(dir) = v1("freezer") {
        parents.push(Parent {
            kind: Kind::V1Freezer,
            dir,
            memory: false,
            pids: false,
        });
    }
    let memory = parents.iter().any(|p| p.memory || p.kind == Kind::V1Memory);
    let pids = parents.iter().any(|p| p.pids || p.kind == Kind::V1Pids);
    if note.is_none() && !(memory && pids) && !parents.is_empty() {
        note = Some(format!(
            "no {} controller available",
            if memory { "pids" } else { "memory" }
        ));
    }
    let mode = match (
        v2_mount.is_some(),
        parents
            .iter()
            .any(|p| matches!(p.kind, Kind::V1Memory | Kind::V1Pids)),
    ) {
        (true, false) => "v2",
        (true, true) => "hybrid",
        (false, true) => "v1",
        (false, false) => "none",
    };
    if parents.is_empty() {
        note = Some("no cgroup file system is mounted".into());
    }
    Layout {
        mode,
        parents,
        note,
    }
}

fn prepare_v2_parent(
    mount: &Path,
    own: Option<&Path>,
    configured: Option<&Path>,
) -> Result<PathBuf, String> {
    let enable = |dir: &Path| -> Result<(), String> {
        write(&dir.join("cgroup.subtree_control"), "+memory +pids")
            .map_err(|e| format!("cannot enable memory and pids in {}: {e}", dir.display()))
    };
    let ready = |dir: &Path| {
        let enabled = words(&dir.join("cgroup.subtree_control"));
        has(&enabled, "memory") && has(&enabled, "pids")
    };
    let make = |dir: &Path| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
    };
    if let Some(rel) = configured {
        let dir = mount.join(rel.strip_prefix("/").unwrap_or(rel));
        make(&dir)?;
        if !ready(&dir) {
            enable(&dir)?;
        }
        return Ok(dir);
    }
    if let Some(own) = own {
        if own != mount && ready(own) {
            return Ok(own.to_owned());
        }
        let alone = std::fs::read_to_string(own.join("cgroup.procs"))
            .map(|t| {
                t.split_whitespace()
                    .eq([std::process::id().to_string().as_str()])
            })
            .unwrap_or(false);
        let available = words(&own.join("cgroup.controllers"));
        if own != mount && alone && has(&available, "memory") && has(&available, "pids") {
            let leaf = own.join("daemon");
            make(&leaf)?;
            write(&leaf.join("cgroup.procs"), &std::process::id().to_string())
                .map_err(|e| format!("cannot move the agent into {}: {e}", leaf.display()))?;
            enable(own)?;
            return Ok(own.to_owned());
        }
    }
    // The root cgroup is exempt from the no-internal-processes rule.
    if !ready(mount) {
        enable(mount)?;
    }
    let dir = mount.join("codespace-agent");
    make(&dir)?;
    if !ready(&dir) {
        enable(&dir)?;
    }
    Ok(dir)
}

/// The layout, detected once per process.
pub fn layout(configured_parent: Option<&Path>) -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| detect(configured_parent))
}

fn live() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A run's cgroup, one directory per hierarchy.
#[derive(Debug)]
pub struct RunCgroup {
    name: String,
    dirs: Vec<(Kind, PathBuf)>,
    /// The counters as they were when the directories were removed.
    final_events: Option<LimitEvents>,
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
    /// Creates the run's directories, writes its limits and registers it as live.
    pub fn create(
        layout: &Layout,
        profile: SandboxProfile,
        limits: &Limits,
    ) -> Result<Self, SandboxError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let marker = match profile {
            SandboxProfile::Restricted => DEFAULT_RESTRICTED_CGROUP_MARKER.to_owned(),
            SandboxProfile::Trusted => format!("{RUN_PREFIX}trusted"),
        };
        let name = format!(
            "{marker}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(mut set) = live().lock() {
            set.insert(name.clone());
        }
        let mut run = Self {
            name,
            dirs: Vec::with_capacity(layout.parents.len()),
            final_events: None,
        };
        for parent in &layout.parents {
            let killable = run
                .dir(Kind::V2)
                .is_some_and(|d| d.join("cgroup.kill").exists());
            if parent.kind == Kind::V1Freezer && killable {
                continue; // cgroup.kill makes the freezer fallback unnecessary
            }
            let dir = parent.dir.join(&run.name);
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
                Kind::V1Freezer => {}
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
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// Opens every `cgroup.procs` for the child to join (`O_WRONLY | O_CLOEXEC`).
    pub fn procs_fds(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.dirs
            .iter()
            .map(|(_, dir)| {
                let path = dir.join("cgroup.procs");
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
    pub fn populated(&self) -> bool {
        match self.dir(Kind::V2) {
            Some(v2) => std::fs::read_to_string(v2.join("cgroup.events"))
                .map(|t| t.lines().any(|l| l == "populated 1"))
                .unwrap_or(false),
            None => !self.members().is_empty(),
        }
    }

    /// Kills every process in the run: `cgroup.kill`, else freeze + SIGKILL + thaw, else a
    /// bounded `cgroup.procs` kill loop. Returns the method used.
    pub fn kill(&self) -> &'static str {
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
    pub fn limit_events(&self) -> LimitEvents {
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
                Kind::V1Freezer => {}
            }
        }
        events
    }

    /// Removes the directories if the run is empty; a populated run (a dev server left running
    /// on purpose) stays and is swept once empty. Returns whether it was removed.
    pub fn remove_if_empty(&mut self) -> bool {
        if self.final_events.is_some() {
            return true;
        }
        if self.populated() {
            return false;
        }
        let events = self.limit_events();
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
        let _ = self.remove_if_empty();
        if let Ok(mut set) = live().lock() {
            set.remove(&self.name);
        }
    }
}

/// Removes empty run cgroups left behind: this agent's whose handle is gone, and those of
/// agents that no longer run. Another live agent's runs are never touched.
pub fn sweep(layout: &Layout) {
    let own = std::process::id();
    let live: HashSet<String> = live().lock().map(|s| s.clone()).unwrap_or_default();
    for parent in &layout.parents {
        let Ok(entries) = std::fs::read_dir(&parent.dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(RUN_PREFIX) || live.contains(&name) {
                continue;
            }
            let pid: Option<u32> = name.split('.').nth(1).and_then(|p| p.parse().ok());
            let stale = match pid {
                Some(pid) if pid == own => true,
                Some(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
                None => false,
            };
            if stale {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

/// Sweeps at most once a second (a directory listing per hierarchy).
pub fn sweep_now_and_then(layout: &Layout) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let due = match LAST.lock() {
        Ok(mut last) => {
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        }
        Err(_) => false,
    };
    if due {
        sweep(layout);
    }
}

/// Whether `/proc/<pid>/cgroup` (under `proc_root`) puts the process in a restricted run
/// (`marker` in any hierarchy's path). `Err` when the file cannot be read (process gone).
pub fn is_restricted_pid_in(proc_root: &Path, pid: u32, marker: &str) -> std::io::Result<bool> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(crate::guest::broker::in_restricted_cgroup(&text, marker))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
30 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/freezer rw,relatime shared:11 - cgroup cgroup rw,freezer
33 25 0:30 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw
34 25 0:31 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu
";
    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

    #[test]
    fn mountinfo_and_own_paths() {
        let mounts = parse_mounts(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert!(mounts[3].v2);
        assert_eq!(mounts[4].point, PathBuf::from("/sys/fs/cgroup/cpu x"));
        assert_eq!(mounts[0].controllers, vec!["rw", "memory"]);
        assert_eq!(own_path(HYBRID_CGROUP, "memory"), Some("/process_api/abc"));
        assert_eq!(own_path(HYBRID_CGROUP, ""), Some("/"));
        assert_eq!(own_path(HYBRID_CGROUP, "hugetlb"), None);
        assert_eq!(
            join_under(&mounts[0], "/process_api/abc"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            join_under(&mounts[3], "/"),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        // A namespaced mount whose root is the agent's own cgroup.
        let ns = Mount {
            v2: true,
            controllers: vec![],
            root: "/system.slice/agent.service".into(),
            point: "/sys/fs/cgroup".into(),
        };
        assert_eq!(
            join_under(&ns, "/system.slice/agent.service/daemon"),
            PathBuf::from("/sys/fs/cgroup/daemon")
        );
    }

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
