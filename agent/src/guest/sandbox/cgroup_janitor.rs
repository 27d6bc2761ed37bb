//! A low-priority thread for the cgroup work nobody waits for: filling the pool
//! ([`super::cgroup_pool`]) and removing finished runs' cgroups (three `rmdir`s, ~0.15 ms).
//!
//! Done on tokio's blocking pool, that work was woken right next to the latency-critical path
//! (the spawn, the child's `execve`, the result) and, on two vCPUs, took turns with it:
//! measured +0.04 ms per lifecycle command for the removal alone. At nice 19 the scheduler runs
//! it when nothing more urgent wants the CPU. A kernel lock it holds (`cgroup_mutex`) can make a
//! spawn wait for it, but then the spawn's CPU is free for it to finish.
//!
//! The thread exists only while the pool is on (the agent, [`super::configure`]); otherwise
//! [`submit`] hands the job back and the caller does the work itself. [`stop`] lets it finish
//! its queue (bounded wait) and ends it: nothing it was given is left behind at shutdown.

#![allow(unsafe_code)]

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::cgroup::{Layout, RunCgroup};
use super::{Limits, SandboxProfile};

/// The janitor's nice value (the lowest priority).
const NICE: i32 = 19;
/// How long [`stop`] waits for the queue to drain.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Work for the janitor.
#[derive(Debug)]
pub enum Job {
    /// Fill the pool of a kind up to a size.
    Fill(&'static Layout, (SandboxProfile, Limits), usize),
    /// Remove a finished run's cgroup (dropping it does).
    Remove(RunCgroup),
    /// Answer when everything queued before has been done.
    Flush(Sender<()>),
}

fn sender() -> &'static Mutex<Option<Sender<Job>>> {
    static TX: OnceLock<Mutex<Option<Sender<Job>>>> = OnceLock::new();
    TX.get_or_init(|| Mutex::new(None))
}

/// Starts the thread if it is not running.
pub fn start() {
    let Ok(mut tx) = sender().lock() else {
        return;
    };
    if tx.is_some() {
        return;
    }
    let (send, receive) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("cgroup-janitor".into())
        .spawn(move || {
            // SAFETY: setpriority on this thread's own id (PRIO_PROCESS with a tid sets the
            // thread's nice on Linux); no memory is passed.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
            }
            for job in receive {
                match job {
                    Job::Fill(layout, kind, size) => super::cgroup_pool::fill(layout, kind, size),
                    Job::Remove(run) => drop(run),
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
    if spawned.is_ok() {
        *tx = Some(send);
    }
}

/// Whether the thread is running (so a dropped run's cgroup goes to it).
pub fn running() -> bool {
    sender().lock().map(|tx| tx.is_some()).unwrap_or(false)
}

/// Queues `job`; hands it back when the thread is not running.
pub fn submit(job: Job) -> Result<(), Job> {
    let Ok(tx) = sender().lock() else {
        return Err(job);
    };
    match tx.as_ref() {
        Some(tx) => tx.send(job).map_err(|e| e.0),
        None => Err(job),
    }
}

/// Waits (at most five seconds) for the queue to be done, then ends the thread.
pub fn stop() {
    let tx = sender().lock().ok().and_then(|mut tx| tx.take());
    if let Some(tx) = tx {
        let (done, wait) = mpsc::channel();
        if tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(FLUSH_LIMIT);
        }
    }
}
