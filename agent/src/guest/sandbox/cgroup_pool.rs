//! Run cgroups made ahead of time, so a spawn takes a ready one instead of creating three
//! directories and writing their limits on its way to `fork` (0.15–0.25 ms here, the v1 memory
//! `mkdir` dominating).
//!
//! ```text
//!  take(profile, limits) ─► a pooled RunCgroup (limits written) ─► the run's cgroup from now on
//!                                (or one made on the spot when the pool is empty)
//!  refill(profile, limits) ─► on the janitor thread (super::cgroup_janitor, nice 19), up to
//!                             `size` per (profile, limits); asked for once the child runs: a
//!                             refill woken earlier shared the CPU with the spawn (measured:
//!                             +0.2 ms on 2 vCPUs)
//!  drain() ─► every pooled cgroup removed (agent shutdown, tests)
//! ```
//!
//! A pooled cgroup is an ordinary [`RunCgroup`] (with its `cgroup.procs` descriptors already
//! open): the same name scheme (restricted marker, agent
//! pid, sequence number), the same limits, registered as live so the sweep leaves it alone; once
//! taken it belongs to that run exactly as one created for it would (a dev server keeps it, a
//! timeout kills it). Nothing is pooled until the first spawn of a kind, and nothing at all with
//! a size of 0 (the library's default: only the agent turns the pool on, see
//! [`super::configure`]). Cgroups left by an agent that died without draining carry its pid and
//! are removed by the next agent's sweep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::cgroup::{Layout, RunCgroup};
use super::{Limits, SandboxError, SandboxProfile};

/// Most (profile, limits) kinds pooled at once (the agent uses two: trusted and restricted).
const MAX_KINDS: usize = 4;

#[derive(Debug, Default)]
struct Pool {
    ready: HashMap<(SandboxProfile, Limits), Vec<RunCgroup>>,
    /// Kinds with a refill running (at most one each).
    refilling: Vec<(SandboxProfile, Limits)>,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::default()))
}

static SIZE: AtomicUsize = AtomicUsize::new(0);

/// Sets how many cgroups of each kind are kept ready; a size above 0 starts the janitor
/// thread, 0 stops it (after its queue) and drains the pool.
pub fn set_size(size: usize) {
    SIZE.store(size, Ordering::Relaxed);
    if size == 0 {
        super::cgroup_janitor::stop();
        drain();
    } else {
        super::cgroup_janitor::start();
    }
}

/// A cgroup for a run: a pooled one when ready, else one created now.
pub fn take(
    layout: &'static Layout,
    profile: SandboxProfile,
    limits: &Limits,
) -> Result<RunCgroup, SandboxError> {
    let taken = match pool().lock() {
        Ok(mut p) => p.ready.get_mut(&(profile, *limits)).and_then(Vec::pop),
        Err(_) => None,
    };
    match taken {
        Some(run) => Ok(run),
        None => RunCgroup::create(layout, profile, limits),
    }
}

/// Tops the pool of this kind up on the janitor thread (when the pool is on); at most one
/// refill per kind is queued at a time.
pub fn refill(layout: &'static Layout, profile: SandboxProfile, limits: &Limits) {
    let size = SIZE.load(Ordering::Relaxed);
    if size == 0 {
        return;
    }
    let kind = (profile, *limits);
    let start = match pool().lock() {
        Ok(mut p) => {
            let start = !p.refilling.contains(&kind)
                && p.ready.get(&kind).map_or(0, Vec::len) < size
                && (p.ready.contains_key(&kind) || p.ready.len() < MAX_KINDS);
            if start {
                p.refilling.push(kind);
            }
            start
        }
        Err(_) => false,
    };
    if start {
        let job = super::cgroup_janitor::Job::Fill(layout, kind, size);
        if super::cgroup_janitor::submit(job).is_err() {
            finish_refill(kind);
        }
    }
}

fn finish_refill(kind: (SandboxProfile, Limits)) {
    if let Ok(mut p) = pool().lock() {
        p.refilling.retain(|k| *k != kind);
    }
}

/// Creates cgroups of `kind` until `size` are ready (or creation fails). Runs on the janitor.
pub(super) fn fill(layout: &Layout, kind: (SandboxProfile, Limits), size: usize) {
    loop {
        let have = pool()
            .lock()
            .map(|p| p.ready.get(&kind).map_or(0, Vec::len))
            .unwrap_or(size);
        if have >= size || SIZE.load(Ordering::Relaxed) == 0 {
            break;
        }
        let made = RunCgroup::create(layout, kind.0, &kind.1).and_then(|mut run| {
            run.open_procs_fds()?;
            Ok(run)
        });
        match made {
            Ok(run) => match pool().lock() {
                // Checked under the lock: a drain after `set_size(0)` sees every push.
                Ok(mut p) if SIZE.load(Ordering::Relaxed) != 0 => {
                    p.ready.entry(kind).or_default().push(run);
                }
                _ => break, // `run` drops: removed
            },
            Err(e) => {
                tracing::debug!(error = %e, "cgroup pool refill failed");
                break;
            }
        }
    }
    finish_refill(kind);
}

/// The cgroups of a kind ready now (their names).
pub fn ready(profile: SandboxProfile, limits: &Limits) -> Vec<String> {
    pool()
        .lock()
        .map(|p| {
            p.ready
                .get(&(profile, *limits))
                .map(|v| v.iter().map(|r| r.name().to_owned()).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Removes every pooled cgroup (each is empty: never used).
pub fn drain() {
    let drained: Vec<RunCgroup> = match pool().lock() {
        Ok(mut p) => p.ready.drain().flat_map(|(_, v)| v).collect(),
        Err(_) => Vec::new(),
    };
    drop(drained); // RunCgroup's drop removes the directories
}
