//! goalpost-daemon: `goalpost daemon`, how a city runs goalpost for years on one server.
//!
//! - **Schedules**: each pipeline's `schedule` (cron with seconds) in its `timezone`. Fire
//!   instants are computed by [`goalpost_spec::Schedule`] in UTC and handed to
//!   tokio-cron-scheduler as one-shot jobs: its own cron jobs keep the UTC offset of the day
//!   they were made (`time_offset_seconds` in its job data), so they drift an hour at every
//!   daylight-saving change.
//! - **No overlap**: a pipeline still running when its next time comes is skipped (log line
//!   and metric); at most `max_concurrent_runs` run at once; the run lock in the state store
//!   keeps a manual `goalpost run` and the daemon apart.
//! - **Missed runs**: at start-up, a pipeline whose schedule fired while the daemon was down
//!   runs once (`catch_up = "once"`, the default) or waits (`"skip"`).
//! - **Signals**: SIGTERM/SIGINT stop new runs and give running ones `grace_period` before
//!   cancelling them; SIGHUP reloads the config and pipelines, keeping the old set when the
//!   new one does not validate.
//! - **HTTP** ([`http`]): the site, the run history, a run trigger, health and metrics.

mod dispatch;
pub mod http;
mod metrics;
pub mod status;

pub use dispatch::{Dispatcher, Execute, Outcome, Triggered, Why};
pub use metrics::Metrics;

use chrono::{DateTime, Utc};
use goalpost_runner::{Clock, Configured, RunError, RunOptions, Runner};
use goalpost_spec::{Config, LoadedPipelines, load_pipelines};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Spec(#[from] goalpost_spec::SpecError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The configuration and pipelines in force; replaced whole on SIGHUP.
pub struct Loaded {
    pub config: Config,
    pub pipelines: LoadedPipelines,
    pub configured: Configured,
    pub runner: Arc<Runner>,
}

/// Read and check the config and every pipeline. Any pipeline file with errors, or
/// pipelines reading each other's tables in a circle, fails the whole set: the daemon
/// starts (or keeps running) only with a set that validates.
pub fn load(config_file: &Path, clock: Arc<dyn Clock>) -> Result<Loaded, DaemonError> {
    let config = Config::load(config_file)?;
    let pipelines = load_pipelines(&config.pipelines_dir)?;
    if !pipelines.failed.is_empty() {
        let mut msg = format!(
            "{} pipeline file(s) in {} have errors:",
            pipelines.failed.len(),
            config.pipelines_dir.display()
        );
        for (_, e) in &pipelines.failed {
            msg.push('\n');
            msg.push_str(&e.to_string());
        }
        return Err(DaemonError::Invalid(msg));
    }
    let configured = Configured::new(&pipelines);
    let cycles = configured.cycles(&pipelines.pipelines);
    if let Some(c) = cycles.first() {
        return Err(DaemonError::Invalid(format!(
            "pipelines read each other's tables in a circle: {}",
            c.join(" -> ")
        )));
    }
    let runner = Arc::new(Runner::new(config.clone(), clock));
    Ok(Loaded {
        config,
        pipelines,
        configured,
        runner,
    })
}

/// What the HTTP handlers and the scheduler share.
pub struct Shared {
    loaded: RwLock<Arc<Loaded>>,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// `GOALPOST_ADMIN_TOKEN`: run requests over HTTP need it; unset, they are refused.
    pub admin_token: Option<String>,
}

impl Shared {
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.read().expect("loaded config").clone()
    }
}

/// Runs pipelines with the runner of the set in force when the run starts.
struct RunnerExec {
    shared: std::sync::Weak<Shared>,
}

impl Execute for RunnerExec {
    fn execute(
        &self,
        pipeline: String,
        _why: Why,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else {
                return Outcome::Failed("the daemon is stopping".into());
            };
            let loaded = shared.loaded();
            let Some(p) = loaded.pipelines.pipelines.iter().find(|p| p.id == pipeline) else {
                return Outcome::Failed(format!("pipeline {pipeline:?} is no longer configured"));
            };
            match loaded
                .runner
                .run(p, &loaded.configured, &RunOptions::default())
                .await
            {
                Ok(r) => Outcome::Succeeded {
                    rows_fetched: r.rows_fetched,
                },
                Err(RunError::Busy(h)) => Outcome::Locked(format!(
                    "run {} by process {} on {}",
                    h.run_id, h.pid, h.host
                )),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        })
    }
}

/// How to start the daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Overrides `[daemon] bind`.
    pub bind: Option<String>,
}

/// The one-shot jobs that start scheduled runs, re-armed after each fire and all replaced
/// on reload (`generation` tells a job made before a reload to do nothing).
struct Timers {
    scheduler: JobScheduler,
    /// Per pipeline: its pending job and the instant it stands for.
    jobs: tokio::sync::Mutex<HashMap<String, (uuid::Uuid, DateTime<Utc>)>>,
    generation: AtomicU64,
}

impl Timers {
    /// Schedule `pipeline`'s next run after `after`.
    fn arm(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        pipeline: String,
        after: DateTime<Utc>,
        generation: u64,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let me = self.clone();
        let shared = shared.clone();
        Box::pin(async move {
            let loaded = shared.loaded();
            let Some(schedule) = loaded
                .pipelines
                .pipelines
                .iter()
                .find(|p| p.id == pipeline)
                .and_then(|p| p.schedule.clone())
            else {
                return;
            };
            let Some(next) = schedule.next_after(after) else {
                tracing::warn!(pipeline, "the schedule has no further time; not scheduled");
                return;
            };
            // In whole seconds, as the scheduler counts them; the job itself waits out the
            // rest (see below).
            let wait = (next - shared.clock.now()).to_std().unwrap_or_default();
            let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            let at = std::time::Instant::now() + wait;
            let (timers, shared2, id) = (me.clone(), shared.clone(), pipeline.clone());
            let job = Job::new_one_shot_at_instant_async(at, move |_, _| {
                let (timers, shared, id) = (timers.clone(), shared2.clone(), id.clone());
                Box::pin(async move {
                    // The scheduler keeps whole seconds and polls twice a second, so it can
                    // fire up to a second early: wait for the instant itself.
                    if let Ok(early) = (next - shared.clock.now()).to_std() {
                        tokio::time::sleep(early).await;
                    }
                    if timers.generation.load(Ordering::SeqCst) != generation {
                        return;
                    }
                    shared.dispatcher.trigger(&id, Why::Schedule);
                    timers.arm(&shared, id, next, generation).await;
                })
            });
            let job = match job {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(pipeline, error = %e, "could not schedule the next run");
                    return;
                }
            };
            // Under the jobs lock, so a reload (which takes it to bump the generation) and
            // this arming cannot interleave: a job armed for an old generation is dropped.
            let mut jobs = me.jobs.lock().await;
            if me.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            match me.scheduler.add(job).await {
                Ok(uuid) => {
                    if let Some((old, _)) = jobs.insert(pipeline.clone(), (uuid, next)) {
                        let _ = me.scheduler.remove(&old).await;
                    }
                    tracing::debug!(pipeline, next = %next, "next run scheduled");
                }
                Err(e) => {
                    tracing::error!(pipeline, error = %e, "could not schedule the next run; the watchdog tries again")
                }
            }
        })
    }

    /// Drop every job and schedule each pipeline of the set in force afresh.
    async fn rearm_all(self: &Arc<Self>, shared: &Arc<Shared>) {
        let generation = {
            let mut jobs = self.jobs.lock().await;
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            for (_, (id, _)) in jobs.drain() {
                let _ = self.scheduler.remove(&id).await;
            }
            generation
        };
        let now = shared.clock.now();
        let ids: Vec<String> = shared
            .loaded()
            .pipelines
            .pipelines
            .iter()
            .filter(|p| p.schedule.is_some())
            .map(|p| p.id.clone())
            .collect();
        for id in ids {
            self.arm(shared, id, now, generation).await;
        }
    }
}

impl Timers {
    /// A pipeline whose job should have fired a while ago but did not replace itself (the
    /// scheduler lost it, or adding it failed) is armed again from now.
    async fn watchdog(self: &Arc<Self>, shared: &Arc<Shared>) {
        let now = shared.clock.now();
        let generation = self.generation.load(Ordering::SeqCst);
        let lost: Vec<String> = {
            let jobs = self.jobs.lock().await;
            shared
                .loaded()
                .pipelines
                .pipelines
                .iter()
                .filter(|p| p.schedule.is_some())
                .filter(|p| match jobs.get(&p.id) {
                    None => true,
                    Some((_, due)) => *due + chrono::Duration::seconds(WATCHDOG_SLACK) < now,
                })
                .map(|p| p.id.clone())
                .collect()
        };
        for id in lost {
            tracing::warn!(pipeline = %id, "the pipeline's next run was not scheduled; scheduling it again");
            self.arm(shared, id, now, generation).await;
        }
    }
}

/// Hand the heap memory freed since back to the operating system. glibc's allocator keeps
/// freed memory in its arenas for reuse, so a daemon that once ran a large pipeline would
/// otherwise hold that memory while idle.
pub(crate) fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`release_memory`]; and once the daemon is idle after start-up or after runs ended, hand
/// the pages of goalpost's own program file back to the kernel. Most of the program is the
/// machinery of a run (DataFusion, Parquet, Delta Lake); the pages a run touched stay in the
/// daemon's memory after it, about 40 MB, though the idle daemon needs little of it.
/// `MADV_PAGEOUT` reclaims them: code pages are copies of the file, so nothing is written,
/// and the next run reads back those it needs from the page cache (or the disk); the few
/// the idle daemon uses come back at once. (Read-only data the loader relocated is a private
/// copy: with swap it goes there, without it stays.) Once per idle spell, not on every tick,
/// so the idle daemon's own pages are not read back over and over.
pub(crate) fn release_memory_when_idle(dispatcher: &Dispatcher) {
    static PAGED_OUT_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);
    release_memory();
    let ended = dispatcher.runs_ended();
    if dispatcher.active().is_empty() && PAGED_OUT_AFTER.swap(ended, Ordering::SeqCst) != ended {
        page_out_program();
    }
}

/// `MADV_PAGEOUT` over every read-only mapping of the program file (see
/// [`release_memory_when_idle`]). Best effort: a kernel without it (before Linux 5.4)
/// refuses the advice and nothing changes.
fn page_out_program() {
    #[cfg(target_os = "linux")]
    {
        let (Ok(exe), Ok(maps)) = (
            std::fs::read_link("/proc/self/exe"),
            std::fs::read_to_string("/proc/self/maps"),
        ) else {
            return;
        };
        for (start, end) in read_only_mappings(&maps, &exe) {
            // SAFETY: the range is a read-only mapping of this process; the advice only
            // moves its pages out, and the kernel brings them back on the next access.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
            }
        }
    }
}

/// The address ranges of `file`'s read-only mappings in a `/proc/<pid>/maps` listing.
fn read_only_mappings(maps: &str, file: &Path) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset device inode path
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [range, perms, _, _, _, path] = fields[..] else {
                return None;
            };
            if perms.contains('w') || Path::new(path) != file {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// How often the schedule watchdog looks, and how late a job may be before it steps in.
const WATCHDOG_EVERY: Duration = Duration::from_secs(30);
const WATCHDOG_SLACK: i64 = 60;

/// Start every pipeline whose scheduled run was missed while the daemon was down.
fn catch_up(shared: &Arc<Shared>) {
    let loaded = shared.loaded();
    let now = shared.clock.now();
    let state = match goalpost_state::StateStore::open(&loaded.config.state_db) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the run history; no missed runs are made up");
            return;
        }
    };
    for p in &loaded.pipelines.pipelines {
        let Some(schedule) = &p.schedule else {
            continue;
        };
        let last = match state.runs(Some(&p.id), 1) {
            Ok(r) => r.first().map(|r| r.started_at),
            Err(e) => {
                tracing::error!(pipeline = %p.id, error = %e, "cannot read the run history");
                continue;
            }
        };
        if status::missed(schedule, p.spec.catch_up, last, now) {
            tracing::info!(
                pipeline = %p.id,
                last_run = ?last,
                "a scheduled run was missed while the daemon was down; running it now (catch_up = \"once\")"
            );
            shared.dispatcher.trigger(&p.id, Why::CatchUp);
        }
    }
}

/// News items whose window has ended are archived by publishing the digest again; checked
/// this often.
const NEWS_UPKEEP: Duration = Duration::from_secs(300);

async fn news_upkeep(shared: &Arc<Shared>) {
    let loaded = shared.loaded();
    let now = shared.clock.now();
    let ended = match loaded.runner.publisher() {
        Ok(publisher) => match publisher.current_news().await {
            Ok(Some(news)) => news.iter().any(|n| !n.archived && n.until <= now),
            _ => false,
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the publish location");
            false
        }
    };
    if ended {
        match loaded.runner.republish(now).await {
            Ok(Some(v)) => {
                tracing::info!(version = %v, "published again: news items whose window ended are archived")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not archive ended news items"),
        }
    }
}

/// Run the daemon until SIGTERM or SIGINT. `on_listening` is told the address the server
/// listens on (port 0 in the config picks a free one).
pub async fn run(
    config_file: PathBuf,
    options: DaemonOptions,
    clock: Arc<dyn Clock>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    let loaded = load(&config_file, clock.clone())?;
    let bind = options
        .bind
        .clone()
        .unwrap_or_else(|| loaded.config.daemon.bind.clone());
    let grace = loaded.config.daemon.grace_period;
    let metrics = Arc::new(Metrics::default());
    let admin_token = std::env::var("GOALPOST_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if admin_token.is_none() {
        tracing::info!("GOALPOST_ADMIN_TOKEN is not set: run requests over HTTP are refused");
    }
    let max = loaded.config.daemon.max_concurrent_runs;
    let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| Shared {
        loaded: RwLock::new(Arc::new(loaded)),
        dispatcher: Dispatcher::new(
            Arc::new(RunnerExec {
                shared: weak.clone(),
            }),
            metrics.clone(),
            max,
        ),
        metrics: metrics.clone(),
        clock: clock.clone(),
        admin_token,
    });

    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| DaemonError::Scheduler(e.to_string()))?;
    let timers = Arc::new(Timers {
        scheduler,
        jobs: tokio::sync::Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
    });
    timers.rearm_all(&shared).await;
    timers
        .scheduler
        .start()
        .await
        .map_err(|e| DaemonError::Scheduler(e.to_string()))?;
    {
        let loaded = shared.loaded();
        let scheduled = loaded
            .pipelines
            .pipelines
            .iter()
            .filter(|p| p.schedule.is_some())
            .count();
        tracing::info!(
            pipelines = loaded.pipelines.pipelines.len(),
            scheduled,
            "daemon started"
        );
    }
    catch_up(&shared);
    release_memory_when_idle(&shared.dispatcher);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, http::router(shared.clone()), stop_rx));
    tracing::info!(address = %addr, "listening on http://{addr}");
    on_listening(addr);

    let watchdog = {
        let (shared, timers) = (shared.clone(), timers.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(WATCHDOG_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                timers.watchdog(&shared).await;
                // What runs and requests freed since goes back to the system.
                release_memory_when_idle(&shared.dispatcher);
            }
        })
    };
    let upkeep = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(NEWS_UPKEEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let s = shared.clone();
                news_upkeep(&s).await;
            }
        })
    };

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                match load(&config_file, clock.clone()) {
                    Ok(new) => {
                        if new.config.daemon.bind != shared.loaded().config.daemon.bind {
                            tracing::warn!("[daemon] bind changed: the new address takes effect at the next start");
                        }
                        let old = &shared.loaded().config.daemon;
                        if new.config.daemon.max_concurrent_runs != old.max_concurrent_runs
                            || new.config.daemon.grace_period != old.grace_period
                        {
                            tracing::warn!("[daemon] max_concurrent_runs and grace_period changes take effect at the next start");
                        }
                        let n = new.pipelines.pipelines.len();
                        *shared.loaded.write().expect("loaded config") = Arc::new(new);
                        timers.rearm_all(&shared).await;
                        tracing::info!(pipelines = n, "SIGHUP: configuration and pipelines reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the new configuration has errors; keeping the one in force"),
                }
            }
        }
    }

    // Stop: no new runs, running ones get the grace period, then the server stops.
    timers.generation.fetch_add(1, Ordering::SeqCst);
    let mut scheduler = timers.scheduler.clone();
    let _ = scheduler.shutdown().await;
    upkeep.abort();
    watchdog.abort();
    shared.dispatcher.shutdown(grace).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .is_err()
    {
        tracing::warn!("the HTTP server did not stop within 15 s");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_read_only_mappings_of_the_program_are_handed_back() {
        let maps = "\
55d0a0000000-55d0a1000000 r--p 00000000 fd:01 1234 /opt/goalpost/bin/goalpost
55d0a1000000-55d0a3000000 r-xp 01000000 fd:01 1234 /opt/goalpost/bin/goalpost
55d0a3000000-55d0a3400000 rw-p 03000000 fd:01 1234 /opt/goalpost/bin/goalpost
55d0a3400000-55d0a3500000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r--p 00000000 fd:01 77 /opt/goalpost/bin/goalpost-old
7f0000400000-7f0000500000 ---p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            read_only_mappings(maps, Path::new("/opt/goalpost/bin/goalpost")),
            vec![
                (0x55d0a0000000, 0x55d0a1000000),
                (0x55d0a1000000, 0x55d0a3000000)
            ]
        );
        assert!(read_only_mappings("garbage\n\n", Path::new("/x")).is_empty());
    }
}
