//! Where run cgroups go on this machine: which hierarchies are mounted (v1 controllers, the
//! cgroup2 mount), where the agent itself sits in each, and, on pure cgroup v2, a parent with
//! `memory` and `pids` enabled for its children. Detected once per process.
//!
//! Each controller comes from its v1 hierarchy when one is mounted, else from v2 when the v2
//! parent has it; the v2 (or unified) cgroup is always used when a cgroup2 mount exists,
//! because `cgroup.kill` (Linux ≥ 5.14) is the one race-free way to kill a tree, and
//! `cgroup.events` says when it is empty. The v1 freezer is kept as the kill fallback for
//! kernels without `cgroup.kill`.
//!
//! **Pure v2 parent.** The no-internal-processes rule forbids enabling controllers for children
//! of a cgroup that has processes. The parent is, in order: the configured
//! `sandbox.cgroup_parent`; the agent's own cgroup when `memory` and `pids` are already enabled in
//! its `cgroup.subtree_control` (systemd `Delegate=yes` plus a prepared leaf); otherwise
//! `/codespace-agent` under the root. The agent's own cgroup is left a leaf otherwise: making it
//! a parent (moving the agent into a leaf below it) breaks the unit's next start while a run it
//! started lives on (found by the systemd-booted VM test: 219/CGROUP). If none works, runs get a kill-only v2 cgroup and
//! [`Layout::note`] says the limits are missing. (This VM is hybrid; the pure-v2 path is
//! exercised only on systemd machines.)

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One hierarchy a run cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// cgroup v2 (pure, or the unified mount of a hybrid layout).
    V2,
    /// v1 `memory`.
    V1Memory,
    /// v1 `pids`.
    V1Pids,
    /// v1 `cpu`: the CPU ceiling of the restricted principal's group (pure v2 has it in `V2`).
    V1Cpu,
    /// v1 `freezer` (kill fallback without `cgroup.kill`).
    V1Freezer,
}

/// A parent directory for run cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parent {
    /// Hierarchy.
    pub(crate) kind: Kind,
    /// Absolute directory.
    pub(crate) dir: PathBuf,
    /// v2 only: `memory` is enabled for children here.
    pub(crate) memory: bool,
    /// v2 only: `pids` is enabled for children here.
    pub(crate) pids: bool,
}

/// Where run cgroups go on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Layout {
    /// `v2`, `hybrid`, `v1` or `none`.
    pub(crate) mode: &'static str,
    /// The parents, v2 first.
    #[serde(skip)]
    pub(crate) parents: Vec<Parent>,
    /// Why a limit is unavailable, if one is.
    pub(crate) note: Option<String>,
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

pub(super) fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

pub(super) fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|w| w == name)
}

pub(super) fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Detects the layout and prepares a pure-v2 parent (see the module docs).
pub(crate) fn detect(configured_parent: Option<&Path>) -> Layout {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    detect_from(&mountinfo, &proc_cgroup, configured_parent)
}

/// [`detect`] on given `/proc/self/mountinfo` and `/proc/self/cgroup` texts (the mount points
/// they name are read, and written on pure v2; tests point them at a scratch tree).
pub(crate) fn detect_from(
    mountinfo: &str,
    proc_cgroup: &str,
    configured_parent: Option<&Path>,
) -> Layout {
    let mounts = parse_mounts(mountinfo);
    let v1 = |controller: &str| {
        mounts
            .iter()
            .find(|m| !m.v2 && has(&m.controllers, controller))
            .and_then(|m| Some(join_under(m, own_path(proc_cgroup, controller)?)))
    };
    let mut parents = Vec::new();
    let mut note = None;
    let memory_v1 = v1("memory");
    let pids_v1 = v1("pids");
    let v2_mount = mounts.iter().find(|m| m.v2);
    if let Some(mount) = v2_mount {
        let own = own_path(proc_cgroup, "").map(|p| join_under(mount, p));
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
                let own = own_path(proc_cgroup, "").map(|p| join_under(mount, p));
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
    if let Some(dir) = v1("cpu") {
        parents.push(Parent {
            kind: Kind::V1Cpu,
            dir,
            memory: false,
            pids: false,
        });
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
        // The agent's own (undelegated) cgroup is never made a parent: under systemd it is the
        // unit's, and a unit cgroup with controllers enabled and a child still alive (a dev
        // server that outlived the agent) refuses the next main process: the restart fails
        // with 219/CGROUP for as long as that child lives.
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

    /// A scratch cgroup tree: `files` are (relative path, contents).
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn pure_v2_with_a_delegated_cgroup_uses_it() {
        let t = tree(&[
            ("cg/cgroup.controllers", "cpu memory pids io\n"),
            (
                "cg/system.slice/agent.service/cgroup.controllers",
                "memory pids\n",
            ),
            (
                "cg/system.slice/agent.service/cgroup.subtree_control",
                "memory pids\n",
            ),
        ]);
        let mountinfo = format!(
            "30 25 0:27 / {}/cg rw - cgroup2 cgroup2 rw\n",
            t.path().display()
        );
        let layout = detect_from(&mountinfo, "0::/system.slice/agent.service\n", None);
        assert_eq!(layout.mode, "v2");
        assert_eq!(layout.note, None);
        assert_eq!(
            layout.parents,
            vec![Parent {
                kind: Kind::V2,
                dir: t.path().join("cg/system.slice/agent.service"),
                memory: true,
                pids: true,
            }]
        );
    }

    #[test]
    fn pure_v2_without_delegation_falls_back_to_a_kill_only_cgroup_and_says_so() {
        // Not alone in its cgroup, and the root refuses: limits are missing, kill still works.
        let t = tree(&[
            ("cg/cgroup.controllers", "memory pids\n"),
            ("cg/user.slice/cgroup.procs", "1\n2\n"),
        ]);
        std::fs::create_dir(t.path().join("cg/cgroup.subtree_control")).unwrap(); // unwritable
        let mountinfo = format!(
            "30 25 0:27 / {}/cg rw - cgroup2 cgroup2 rw\n",
            t.path().display()
        );
        let layout = detect_from(&mountinfo, "0::/user.slice\n", None);
        assert_eq!(layout.mode, "v2");
        let parent = &layout.parents[0];
        assert_eq!((parent.memory, parent.pids), (false, false));
        assert_eq!(parent.dir, t.path().join("cg/user.slice"));
        assert!(layout.note.unwrap().contains("cannot enable"));
    }

    #[test]
    fn pure_v2_under_a_unit_without_delegation_keeps_the_unit_cgroup_a_leaf() {
        // Alone in the unit's cgroup, controllers available: runs still go under the root, so
        // a run that outlives the agent never sits below the unit (its restart would fail).
        let unit = "cg/system.slice/codespace-agent-privileged.service";
        let t = tree(&[
            (
                "cg/cgroup.controllers",
                "memory pids
",
            ),
            ("cg/cgroup.subtree_control", ""),
            (
                &format!("{unit}/cgroup.controllers"),
                "memory pids
",
            ),
            (&format!("{unit}/cgroup.subtree_control"), ""),
            (
                &format!("{unit}/cgroup.procs"),
                &format!("{}\n", std::process::id()),
            ),
        ]);
        let mountinfo = format!(
            "30 25 0:27 / {}/cg rw - cgroup2 cgroup2 rw\n",
            t.path().display()
        );
        let layout = detect_from(
            &mountinfo,
            "0::/system.slice/codespace-agent-privileged.service\n",
            None,
        );
        assert_eq!(layout.parents[0].dir, t.path().join("cg/codespace-agent"));
        assert!(!t.path().join(unit).join("daemon").exists());
        assert_eq!(
            std::fs::read_to_string(t.path().join(unit).join("cgroup.subtree_control")).unwrap(),
            ""
        );
    }

    #[test]
    fn hybrid_takes_limits_from_v1_and_kill_from_unified() {
        let t = tree(&[("unified/cgroup.controllers", "hugetlb\n")]);
        let p = t.path().display();
        let mountinfo = format!(
            "30 25 0:27 / {p}/memory rw - cgroup cgroup rw,memory\n\
             31 25 0:28 / {p}/pids rw - cgroup cgroup rw,pids\n\
             32 25 0:29 / {p}/freezer rw - cgroup cgroup rw,freezer\n\
             33 25 0:30 / {p}/unified rw - cgroup2 cgroup2 rw\n"
        );
        let layout = detect_from(&mountinfo, HYBRID_CGROUP, None);
        assert_eq!(layout.mode, "hybrid");
        assert_eq!(layout.note, None);
        let kinds: Vec<(Kind, PathBuf)> = layout
            .parents
            .iter()
            .map(|p| (p.kind, p.dir.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::V2, t.path().join("unified")),
                (Kind::V1Memory, t.path().join("memory/process_api/abc")),
                (Kind::V1Pids, t.path().join("pids")),
                (Kind::V1Freezer, t.path().join("freezer")),
            ]
        );
        assert!(!layout.parents[0].memory && !layout.parents[0].pids);
        let none = detect_from("", "", None);
        assert_eq!((none.mode, none.parents.len()), ("none", 0));
        assert!(none.note.unwrap().contains("no cgroup"));
    }
}
