//! Starting runs: a pipeline never overlaps itself, at most `max_concurrent_runs` run at
//! once, and at shutdown running ones get a grace period before they are cancelled.

use crate::metrics::Metrics;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Schedule,
    CatchUp,
    Request,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::CatchUp => "catch-up",
            Self::Request => "request",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        rows_fetched: u64,
    },
    Failed(String),
    /// Another process held the pipeline's run lock.
    Locked(String),
}

/// What runs a pipeline (the runner; a stand-in in tests).
pub trait Execute: Send + Sync + 'static {
    fn execute(&self, pipeline: String, why: Why) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// Started, or waiting for a free slot.
    Started,
    /// The pipeline is already running or waiting: this trigger is skipped.
    AlreadyRunning,
    /// The daemon is stopping.
    Closing,
}

pub struct Dispatcher {
    exec: Arc<dyn Execute>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    active: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closing: AtomicBool,
    /// Runs ended since the daemon started.
    ended: std::sync::atomic::AtomicU64,
}

/// Clears a pipeline's place in `active` however its task ends, aborted included.
struct Active {
    dispatcher: Arc<Dispatcher>,
    pipeline: String,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.dispatcher
            .active
            .lock()
            .expect("active runs")
            .remove(&self.pipeline);
    }
}

impl Dispatcher {
    pub fn new(exec: Arc<dyn Execute>, metrics: Arc<Metrics>, max_concurrent: usize) -> Arc<Self> {
        Arc::new(Self {
            exec,
            metrics,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            active: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            ended: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many runs have ended since the daemon started.
    pub fn runs_ended(&self) -> u64 {
        self.ended.load(Ordering::SeqCst)
    }

    /// The pipelines running or waiting for a slot.
    pub fn active(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .active
            .lock()
            .expect("active runs")
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Run `pipeline` unless it is already running or waiting.
    pub fn trigger(self: &Arc<Self>, pipeline: &str, why: Why) -> Triggered {
        // Held until the task is listed, so a shutdown (which sets `closing` under this
        // lock) either sees the task or stops it from starting.
        let mut tasks = self.tasks.lock().expect("run tasks");
        if self.closing.load(Ordering::SeqCst) {
            return Triggered::Closing;
        }
        if !self
            .active
            .lock()
            .expect("active runs")
            .insert(pipeline.to_string())
        {
            tracing::warn!(
                pipeline,
                trigger = why.as_str(),
                "skipped: the pipeline's previous run is still going"
            );
            self.metrics.run_skipped(pipeline, "overlap");
            return Triggered::AlreadyRunning;
        }
        let active = Active {
            dispatcher: self.clone(),
            pipeline: pipeline.to_string(),
        };
        let me = self.clone();
        let id = pipeline.to_string();
        let task = tokio::spawn(async move {
            let _active = active;
            let Ok(_permit) = me.permits.clone().acquire_owned().await else {
                return;
            };
            if me.closing.load(Ordering::SeqCst) {
                return;
            }
            tracing::info!(pipeline = %id, trigger = why.as_str(), "run starting");
            let started = Instant::now();
            let outcome = me.exec.execute(id.clone(), why).await;
            me.ended.fetch_add(1, Ordering::SeqCst);
            crate::release_memory();
            let secs = started.elapsed().as_secs_f64();
            match &outcome {
                Outcome::Succeeded { rows_fetched } => {
                    tracing::info!(pipeline = %id, seconds = secs, rows_fetched, "run succeeded");
                    me.metrics
                        .run_finished(&id, "succeeded", secs, *rows_fetched);
                }
                Outcome::Failed(e) => {
                    tracing::error!(pipeline = %id, seconds = secs, error = %e, "run failed");
                    me.metrics.run_finished(&id, "failed", secs, 0);
                }
                Outcome::Locked(e) => {
                    tracing::warn!(pipeline = %id, reason = %e, "skipped: another process is running the pipeline");
                    me.metrics.run_skipped(&id, "locked");
                }
            }
        });
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Triggered::Started
    }

    /// Stop starting runs; let running ones finish within `grace`, then cancel the rest
    /// (a cancelled run commits and publishes nothing, and is recorded as interrupted).
    /// Returns how many runs were cancelled.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let tasks: Vec<JoinHandle<()>> = {
            let mut tasks = self.tasks.lock().expect("run tasks");
            self.closing.store(true, Ordering::SeqCst);
            std::mem::take(&mut *tasks)
        };
        // Waiting runs give up their turn.
        self.permits.close();
        let running = tasks.iter().filter(|t| !t.is_finished()).count();
        if running > 0 {
            tracing::info!(
                running,
                grace_seconds = grace.as_secs(),
                "stopping: no new runs; waiting for running ones to finish"
            );
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut cancelled = 0;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
                cancelled += 1;
            }
        }
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "cancelled runs still going after the grace period; they committed and published nothing"
            );
        }
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::sync::{mpsc, oneshot};

    /// Runs that report their start and then wait to be told how they end.
    struct Gate {
        started: mpsc::UnboundedSender<String>,
        ends: Mutex<HashMap<String, oneshot::Receiver<Outcome>>>,
    }

    impl Execute for Gate {
        fn execute(
            &self,
            pipeline: String,
            _why: Why,
        ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
            let end = self.ends.lock().unwrap().remove(&pipeline);
            let started = self.started.clone();
            Box::pin(async move {
                started.send(pipeline).unwrap();
                match end {
                    Some(rx) => rx.await.unwrap_or(Outcome::Failed("dropped".into())),
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn gate(
        names: &[&str],
    ) -> (
        Arc<Gate>,
        mpsc::UnboundedReceiver<String>,
        HashMap<String, oneshot::Sender<Outcome>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ends = HashMap::new();
        let mut senders = HashMap::new();
        for n in names {
            let (s, r) = oneshot::channel();
            ends.insert(n.to_string(), r);
            senders.insert(n.to_string(), s);
        }
        (
            Arc::new(Gate {
                started: tx,
                ends: Mutex::new(ends),
            }),
            rx,
            senders,
        )
    }

    #[tokio::test]
    async fn a_pipeline_never_overlaps_itself_and_slots_are_shared() {
        let (exec, mut started, mut end) = gate(&["a", "b", "c"]);
        let metrics = Arc::new(Metrics::default());
        let d = Dispatcher::new(exec, metrics.clone(), 2);
        assert_eq!(d.trigger("a", Why::Schedule), Triggered::Started);
        assert_eq!(started.recv().await.unwrap(), "a");
        // The next tick of a slow run is skipped, with a metric.
        assert_eq!(d.trigger("a", Why::Schedule), Triggered::AlreadyRunning);
        assert!(
            metrics
                .render()
                .contains("goalpost_runs_skipped_total{pipeline=\"a\",reason=\"overlap\"} 1")
        );
        assert_eq!(d.trigger("b", Why::Request), Triggered::Started);
        assert_eq!(started.recv().await.unwrap(), "b");
        // Two slots: c waits for one, and counts as active meanwhile.
        assert_eq!(d.trigger("c", Why::Schedule), Triggered::Started);
        assert_eq!(d.trigger("c", Why::Schedule), Triggered::AlreadyRunning);
        assert_eq!(d.active(), ["a", "b", "c"]);
        tokio::task::yield_now().await;
        assert!(started.try_recv().is_err(), "c must wait for a slot");
        end.remove("a")
            .unwrap()
            .send(Outcome::Succeeded { rows_fetched: 7 })
            .unwrap();
        assert_eq!(started.recv().await.unwrap(), "c");
        end.remove("b")
            .unwrap()
            .send(Outcome::Failed("boom".into()))
            .unwrap();
        end.remove("c")
            .unwrap()
            .send(Outcome::Locked("held".into()))
            .unwrap();
        assert_eq!(d.shutdown(Duration::from_secs(5)).await, 0);
        assert!(d.active().is_empty());
        let text = metrics.render();
        for line in [
            "goalpost_runs_total{pipeline=\"a\",outcome=\"succeeded\"} 1",
            "goalpost_rows_fetched_total{pipeline=\"a\"} 7",
            "goalpost_runs_total{pipeline=\"b\",outcome=\"failed\"} 1",
            "goalpost_runs_skipped_total{pipeline=\"c\",reason=\"locked\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // Once stopping, nothing starts.
        assert_eq!(d.trigger("a", Why::Request), Triggered::Closing);
    }

    #[tokio::test(start_paused = true)]
    async fn runs_past_the_grace_period_are_cancelled() {
        // No end is ever sent for "slow": it runs until cancelled.
        let (exec, mut started, _end) = gate(&[]);
        let d = Dispatcher::new(exec, Arc::new(Metrics::default()), 1);
        d.trigger("slow", Why::Schedule);
        d.trigger("waiting", Why::Schedule);
        assert_eq!(started.recv().await.unwrap(), "slow");
        // Paused time: the grace period passes without wall-clock waiting.
        assert_eq!(d.shutdown(Duration::from_secs(30)).await, 1);
        assert!(d.active().is_empty());
        assert!(started.try_recv().is_err(), "the waiting run never started");
    }
}
