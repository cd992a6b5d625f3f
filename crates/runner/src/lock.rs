//! The run lock: one run of a pipeline at a time, across processes (the daemon and a manual
//! `goalpost run`), kept in the state store.
//!
//! A process that is killed cannot let go of its locks. The next run of the pipeline sees
//! that the holder is gone and takes the lock over, recording the dead run as interrupted.
//! "Gone" is decided on this host only: no process with the holder's pid, or one that
//! started later (the pid was reused), or this very process holding no such run (a
//! restarted daemon that got its old pid back, as in a container).

use chrono::{DateTime, Utc};
use goalpost_state::{LockHolder, LockOutcome, RunEnd, StateStore};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

/// The runs this process holds locks for.
static HELD: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// This machine's name, as the lock records it.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What tells process `pid` from a later one given the same pid: the boot it runs in, its
/// start time in clock ticks since boot, and its pid namespace (`boot:start:pid:[inode]`).
/// `None` where `/proc` cannot tell.
fn identity(pid: &str) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the
    // last ')'. The start time is field 22, the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(format!("{}:{start}:{ns}", boot.trim()))
}

pub(crate) fn own_identity() -> String {
    identity("self").unwrap_or_default()
}

/// `(boot:start, pid namespace)` of an identity.
fn parts(identity: &str) -> (&str, &str) {
    let mut it = identity.splitn(3, ':');
    let (boot, start) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    let ns = it.next().unwrap_or("");
    (
        &identity[..(boot.len() + 1 + start.len()).min(identity.len())],
        ns,
    )
}

/// Whether the lock's holder still runs. When this cannot be told (another pid namespace,
/// an unreadable `/proc`), it is taken to run: `goalpost unlock` frees such a lock.
fn alive(h: &LockHolder) -> bool {
    let own = own_identity();
    let (_, own_ns) = parts(&own);
    let (their_process, their_ns) = parts(&h.process);
    if !their_ns.is_empty() && !own_ns.is_empty() && their_ns != own_ns {
        // Another container on the same host name: its pids mean nothing here.
        return true;
    }
    if h.pid == std::process::id() {
        return HELD.lock().expect("lock registry").contains(&h.run_id);
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    match std::fs::metadata(format!("/proc/{}", h.pid)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(_) => return true,
        Ok(_) => {}
    }
    match identity(&h.pid.to_string()) {
        None => true,
        Some(now) => h.process.is_empty() || parts(&now).0 == their_process,
    }
}

/// A pipeline's run lock, held for one run. Dropping it without [`RunLock::release`]
/// means the run was cancelled: the run is recorded as interrupted, then the lock let go.
pub(crate) struct RunLock {
    state_db: PathBuf,
    pipeline: String,
    run_id: String,
    released: bool,
    /// Whether `run_id` is a run in the history (table upkeep holds the lock without one).
    recorded: bool,
}

impl RunLock {
    /// Take the lock, or say who holds it.
    pub(crate) fn take(
        state: &mut StateStore,
        state_db: PathBuf,
        pipeline: &str,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Self, crate::RunError> {
        // Registered first, so a lock this process has just written is never judged dead.
        HELD.lock()
            .expect("lock registry")
            .insert(run_id.to_string());
        let claim = LockHolder {
            pipeline: pipeline.to_string(),
            run_id: run_id.to_string(),
            pid: std::process::id(),
            host: host(),
            process: own_identity(),
            acquired_at: at,
        };
        let outcome = state.lock_pipeline(&claim, &alive);
        match outcome {
            Ok(LockOutcome::Acquired { recovered }) => {
                if let Some(dead) = recovered {
                    tracing::warn!(
                        run_id = %dead.run_id,
                        pid = dead.pid,
                        "the previous run of this pipeline ended without finishing (its process is gone); it is recorded as interrupted"
                    );
                }
                Ok(Self {
                    state_db,
                    pipeline: pipeline.to_string(),
                    run_id: run_id.to_string(),
                    released: false,
                    recorded: true,
                })
            }
            Ok(LockOutcome::Held(h)) => {
                HELD.lock().expect("lock registry").remove(run_id);
                Err(crate::RunError::Busy(Box::new(h)))
            }
            Err(e) => {
                HELD.lock().expect("lock registry").remove(run_id);
                Err(e.into())
            }
        }
    }

    /// Take the lock for table upkeep (compaction, vacuum), which is not a run in the
    /// history: a pipeline's table has one writer at a time.
    pub(crate) fn take_for_upkeep(
        state: &mut StateStore,
        state_db: PathBuf,
        pipeline: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Self, crate::RunError> {
        let mut lock = Self::take(state, state_db, pipeline, id, at)?;
        lock.recorded = false;
        Ok(lock)
    }

    /// The run finished (and its end is recorded): let go of the lock.
    pub(crate) fn release(mut self, state: &StateStore) {
        self.released = true;
        if let Err(e) = state.unlock_pipeline(&self.pipeline, &self.run_id) {
            tracing::error!(error = %e, "could not let go of the pipeline's run lock; the next run takes it over");
        }
        HELD.lock().expect("lock registry").remove(&self.run_id);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Cancelled mid-run. Every write the run makes is all-or-nothing (one Delta commit,
        // one rename of `current`), so what it did not finish left nothing behind.
        match StateStore::open(&self.state_db) {
            Ok(state) if !self.recorded => {
                if let Err(e) = state.unlock_pipeline(&self.pipeline, &self.run_id) {
                    tracing::error!(error = %e, "could not let go of the pipeline's run lock");
                }
            }
            Ok(state) => {
                let end = RunEnd {
                    interrupted: true,
                    error: Some(
                        "interrupted: stopped before it finished (goalpost was shutting down, or the run stopped unexpectedly); nothing it had not committed was kept"
                            .to_string(),
                    ),
                    ..Default::default()
                };
                if let Err(e) = state.finish_run(&self.run_id, Utc::now(), &end) {
                    tracing::error!(error = %e, "could not record the cancelled run");
                }
                if let Err(e) = state.unlock_pipeline(&self.pipeline, &self.run_id) {
                    tracing::error!(error = %e, "could not let go of the pipeline's run lock");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not record the cancelled run"),
        }
        HELD.lock().expect("lock registry").remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let holder = |pid: u32, run_id: &str, process: String| LockHolder {
            pipeline: "p".into(),
            run_id: run_id.into(),
            pid,
            host: host(),
            process,
            acquired_at: Utc::now(),
        };
        // This process, holding no such run: a lock left by an earlier process that had
        // the same pid.
        assert!(!alive(&holder(me, "not-mine", own_identity())));
        HELD.lock().unwrap().insert("mine".into());
        assert!(alive(&holder(me, "mine", own_identity())));
        HELD.lock().unwrap().remove("mine");
        // pid 1 runs, but started at another time than recorded: the pid was reused.
        if let Some(one) = identity("1") {
            assert!(alive(&holder(1, "x", one.clone())));
            let (_, ns) = parts(&one);
            assert!(!alive(&holder(1, "x", format!("other-boot:1:{ns}"))));
            // In another pid namespace, pid 1 is someone else's: cannot tell, so alive.
            assert!(alive(&holder(1, "x", "b:1:pid:[1]".into())));
        }
        // No such process (pids are below 2^22 on Linux).
        assert!(!alive(&holder(u32::MAX - 1, "x", String::new())));
    }
}
