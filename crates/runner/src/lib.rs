//! goalpost-runner: one pipeline run, end to end, recorded.
//!
//! [`Runner::run`] takes a loaded pipeline through fetch → typed table → indicators → goal
//! status → publish, and records the run in the state store whatever happens. A run that fails
//! at any stage publishes nothing: `publish/current` keeps the last good digest. The other
//! pipelines' parts of the digest are carried over from the current digest, so running one
//! pipeline never drops another's figures.
//!
//! Time comes from a [`Clock`] so tests can fix it.

mod clock;
mod digest_build;
mod keys;
mod load;
mod lock;
mod lookups;
mod news;
mod progress;
mod snapshots;
mod timings;
mod upkeep;

pub use clock::{Clock, FixedClock, SystemClock};
pub use lookups::Configured;
pub use progress::{LogProgress, Progress};
pub use timings::StageTiming;
pub use upkeep::{Compacted, QuarantineEntry, Recomputed, Vacuumed};

use chrono::{DateTime, Utc};
use goalpost_fetch::{
    FetchError, FetchStats, HttpClient, Recorder, Replayer, RunManifest, SourceContext, Tape,
};
use goalpost_indicators::IndicatorError;
use goalpost_publish::{DIGEST_SCHEMA_VERSION, Digest, PublishError, Publisher, Summary};
use goalpost_spec::{Config, Pipeline, SpecError};
use goalpost_state::{RunEnd, StateError, StateStore};
use goalpost_table::{MapError, TableError, TableStore};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<goalpost_spec::Diagnostic>),
    #[error("fetch: {0}")]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Map(#[from] MapError),
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    Indicators(#[from] IndicatorError),
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Quarantine(String),
    #[error(
        "the full load was committed, but keeping one row per key failed: {0}; the next run loads everything again"
    )]
    Unsettled(Box<RunError>),
    #[error("{0}")]
    Check(#[from] goalpost_table::checks::CheckError),
    #[error("{0}")]
    Internal(String),
    #[error(
        "pipeline {} is already running: run {} started at {} by process {} on {}; wait for it to finish (`goalpost status` shows it). If that process is gone and this machine cannot tell (it ran on another host or container), `goalpost unlock {}` lets go of its lock",
        .0.pipeline, .0.run_id, .0.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"), .0.pid, .0.host, .0.pipeline
    )]
    Busy(Box<goalpost_state::LockHolder>),
}

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Load everything, ignoring saved watermarks.
    pub full: bool,
    /// Replay the recorded responses of this run instead of touching the network.
    pub replay: Option<String>,
    /// Take the sources' current columns and the table's current row count as the new
    /// baseline: schema_drift and row_count checks pass this run.
    pub accept_changes: bool,
    /// Measure each stage's peak memory as well as its time (Linux; it resets the process's
    /// peak-memory mark, so only one run at a time should ask).
    pub measure_memory: bool,
}

/// What a successful run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub rows_fetched: u64,
    pub rows_written: u64,
    /// `full`, `incremental` or `unchanged`.
    pub mode: &'static str,
    pub fetch: goalpost_state::FetchCounts,
    pub table: String,
    pub table_version: u64,
    /// Rows in the table at that version.
    pub table_rows: u64,
    /// Rows kept out of the table, in `data/quarantine/<table>/`.
    pub rows_quarantined: u64,
    /// Every check's result, in the pipeline's order.
    pub checks: Vec<goalpost_table::CheckResult>,
    /// Why the figures were held at their last good values, if they were.
    pub held: Option<String>,
    pub indicators: usize,
    pub summary: Summary,
    /// The published version's address (a folder, or a prefix in object storage).
    pub published: String,
    /// Each stage's time (and peak memory, when measured), in order.
    pub stages: Vec<StageTiming>,
}

pub struct Runner {
    config: Config,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Progress>,
    sleep: Option<goalpost_fetch::http::SleepFn>,
    /// Built on first use: a bucket's store reads its credentials then.
    publisher: std::sync::OnceLock<Publisher>,
}

impl Runner {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            progress: Arc::new(LogProgress::default()),
            sleep: None,
            publisher: std::sync::OnceLock::new(),
        }
    }

    /// Report fetch progress here instead of in log lines.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Wait between retries with this instead of sleeping (tests record the waits).
    pub fn with_sleep(mut self, sleep: goalpost_fetch::http::SleepFn) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// Where a run's raw responses are kept.
    pub fn raw_dir(&self, pipeline: &str, run_id: &str) -> PathBuf {
        self.config.work_dir.join("raw").join(pipeline).join(run_id)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pipelines' tables, `data/tables/`.
    fn tables(&self) -> TableStore {
        TableStore::new(self.config.data_dir.join("tables"))
    }

    /// The rows kept out of them, `data/quarantine/`.
    fn quarantine_store(&self) -> TableStore {
        TableStore::new(self.config.data_dir.join("quarantine"))
    }

    /// The publish location.
    pub fn publisher(&self) -> Result<Publisher, RunError> {
        if let Some(p) = self.publisher.get() {
            return Ok(p.clone());
        }
        let p = publisher_for(&self.config)?;
        Ok(self.publisher.get_or_init(|| p).clone())
    }

    fn state(&self) -> Result<StateStore, StateError> {
        StateStore::open(&self.config.state_db)
    }

    fn new_run_id(&self, pipeline: &str, at: DateTime<Utc>) -> String {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{}-{pipeline}-{}",
            at.format("%Y%m%dT%H%M%S%3fZ"),
            &tag[..6]
        )
    }

    /// Record a pipeline that could not even be loaded as a failed run, so the run history
    /// shows it.
    pub fn record_load_failure(&self, pipeline: &str, error: &str) -> Result<String, RunError> {
        let now = self.clock.now();
        let id = self.new_run_id(pipeline, now);
        let state = self.state()?;
        state.start_run(&id, pipeline, now)?;
        state.finish_run(
            &id,
            now,
            &RunEnd {
                error: Some(error.to_string()),
                ..Default::default()
            },
        )?;
        Ok(id)
    }

    /// Run one pipeline. `configured` lists every pipeline currently configured: the digest
    /// keeps their last published parts and drops parts of pipelines no longer there, and
    /// the indicators may read the tables they load.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        configured: &Configured,
        options: &RunOptions,
    ) -> Result<RunReport, RunError> {
        let started = self.clock.now();
        let run_id = self.new_run_id(&pipeline.id, started);
        let mut state = self.state()?;
        let lock = lock::RunLock::take(
            &mut state,
            self.config.state_db.clone(),
            &pipeline.id,
            &run_id,
            started,
        )?;
        state.start_run(&run_id, &pipeline.id, started)?;
        let span = tracing::info_span!("run", run_id = %run_id, pipeline = %pipeline.id);
        let mut progress = RunEnd {
            replay_of: options.replay.clone(),
            ..Default::default()
        };
        let result = self
            .stages(pipeline, configured, options, &run_id, &mut progress)
            .instrument(span)
            .await;
        let end = self.clock.now();
        match &result {
            Ok(report) => {
                progress.succeeded = true;
                progress.published_version = Some(report.run_id.clone());
            }
            Err(e) => progress.error = Some(e.to_string()),
        }
        let recorded = state.finish_run(&run_id, end, &progress);
        lock.release(&state);
        if let Err(e) = recorded {
            // The run's outcome stands (a digest may already be live); only its record is lost.
            tracing::error!(error = %e, "could not record the end of the run");
            if result.is_err() {
                return Err(e.into());
            }
        }
        result
    }

    async fn stages(
        &self,
        pipeline: &Pipeline,
        configured: &Configured,
        options: &RunOptions,
        run_id: &str,
        progress: &mut RunEnd,
    ) -> Result<RunReport, RunError> {
        let mut watch = timings::Stopwatch::new(options.measure_memory);
        watch.start("plan");
        // Plan the indicator SQL first: a typo should fail before any table is touched.
        let store = self.tables();
        let current = self.publisher()?.current_digest().await?;
        let lookups = lookups::open(&store, pipeline, configured, current.as_ref()).await?;
        let problems = goalpost_indicators::check_sql(pipeline, &lookups.schemas).await;
        if !problems.is_empty() {
            return Err(RunError::Invalid(problems));
        }
        let table_spec = &pipeline.spec.table;
        let table_name = table_spec.name.get_ref();
        let mut state = self.state()?;

        // Where to start from: the saved watermarks, unless a full load is asked for or the
        // table cannot take a refresh (missing, or its columns changed in the pipeline).
        let (tape, prior, full) = match &options.replay {
            Some(replayed) => {
                let dir = self.raw_dir(&pipeline.id, replayed);
                let replayer = Replayer::open(&dir)?;
                let m = replayer.manifest().clone();
                (Tape::Replay(replayer), m.sources, m.full)
            }
            None => {
                let saved: std::collections::BTreeMap<String, goalpost_fetch::SourceState> = state
                    .source_states(&pipeline.id)?
                    .into_iter()
                    .map(|(k, v)| (k, goalpost_fetch::SourceState::from_json(&v)))
                    .collect();
                let schema_matches = store
                    .schema(table_name)
                    .await?
                    .is_some_and(|s| same_columns(&s, &table_spec.arrow_schema()));
                let full = options.full || !schema_matches;
                let prior = if full { Default::default() } else { saved };
                let manifest = RunManifest {
                    run_id: run_id.to_string(),
                    pipeline: pipeline.id.clone(),
                    full,
                    sources: prior.clone(),
                };
                let has_web = pipeline
                    .spec
                    .sources
                    .iter()
                    .any(|s| s.get_ref().url().is_some());
                let tape = if self.config.fetch.keep_raw && has_web {
                    Tape::Record(Recorder::create(
                        &self.raw_dir(&pipeline.id, run_id),
                        &manifest,
                    )?)
                } else {
                    Tape::Off
                };
                (tape, prior, full)
            }
        };
        if full {
            tracing::info!("loading everything");
        }
        let stats = Arc::new(FetchStats::default());
        let mut http = HttpClient::new(&self.config.fetch, tape, stats.clone())?;
        if let Some(sleep) = &self.sleep {
            http = http.with_sleep(sleep.clone());
        }
        let fetch_started = std::time::Instant::now();
        let quarantine_store = self.quarantine_store();
        let last_good = state.last_good_run(&pipeline.id, run_id)?;
        let input = load::LoadInput {
            pipeline,
            store: &store,
            quarantine: &quarantine_store,
            table_rows: last_good.as_ref().and_then(|r| r.table_rows).unwrap_or(0),
            now: self.clock.now(),
            ctx: SourceContext {
                base_dir: pipeline.dir.clone(),
                http: Arc::new(http),
                prior: None,
            },
            prior,
            run_id,
            progress: self.progress.clone(),
        };
        let mut trace = load::Trace::default();
        watch.start("load");
        let loaded = load::load(&input, &mut trace).await;
        let load::Trace { intake, shapes } = trace;
        let saved_shapes = state.source_shapes(&pipeline.id)?;
        let drift: Vec<(String, Option<Vec<String>>)> = shapes
            .iter()
            .map(|(key, describe, shape)| {
                let before = saved_shapes
                    .get(key)
                    .and_then(|j| serde_json::from_str::<goalpost_table::Shape>(j).ok());
                let changes = shape
                    .as_ref()
                    .zip(before)
                    .map(|(now, b)| now.drift_from(&b));
                (describe.clone(), changes)
            })
            .collect();
        let (requests, retries, bytes) = stats.snapshot();
        progress.fetch = goalpost_state::FetchCounts {
            requests,
            retries,
            bytes,
            pages: loaded.as_ref().map_or(0, |l| l.pages),
            fetch_ms: fetch_started.elapsed().as_millis() as u64,
        };
        progress.rows_quarantined = intake.quarantined;
        // Rejected rows are kept whatever became of the load, so a steward can see why.
        let stored = load::store_quarantined(&input, intake.rows.clone()).await;
        if intake.quarantined > 0 {
            tracing::warn!(rows = intake.quarantined, table = %table_name, "rows were quarantined");
        }
        let loaded = match (loaded, stored) {
            (Ok(l), Ok(())) => l,
            (Ok(_), Err(e)) => return Err(e),
            (Err(e), stored) => {
                if let Err(q) = stored {
                    tracing::error!(error = %q, "could not store the quarantined rows");
                }
                if matches!(e, RunError::Unsettled(_)) {
                    // The table holds duplicates a refresh would never settle.
                    state.clear_source_states(&pipeline.id)?;
                }
                // What can be judged without the table is still recorded: the row checks
                // and schema drift (a renamed column is often why the load failed).
                let results = in_declared_order(
                    pipeline,
                    intake.checks.clone(),
                    goalpost_table::drift_checks(pipeline, &drift),
                    options.accept_changes,
                );
                if let Err(r) = state.record_checks(run_id, &pipeline.id, &records(&results)) {
                    tracing::error!(error = %r, "could not record the check results");
                }
                return Err(e);
            }
        };
        progress.mode = Some(loaded.kind.as_str().to_string());
        progress.rows_fetched = loaded.rows_fetched;
        progress.rows_written = loaded.write.rows;
        let mut write = loaded.write;
        if loaded.kind != goalpost_fetch::LoadKind::Unchanged {
            self.compact_if_needed(&store, table_name, run_id, &mut write)
                .await;
        }
        progress.table_version = Some(write.version);
        let sources = loaded.sources;
        watch.start("checks");

        // Checks on the version just written.
        let now = self.clock.now();
        let as_of = pipeline
            .as_of
            .unwrap_or_else(|| now.with_timezone(&pipeline.tz).date_naive());
        let table = store.open_version(table_name, write.version).await?;
        let table_rows = goalpost_table::row_count(&table)
            .await
            .map_err(|e| RunError::Internal(format!("table {table_name}: counting rows: {e}")))?;
        progress.table_rows = Some(table_rows);
        let previous_rows = last_good.as_ref().and_then(|r| r.table_rows);
        let check_input = goalpost_table::TableCheckInput {
            // An archive judged `as_of` a date is fresh as of the end of that day.
            now: Some(match pipeline.as_of {
                Some(d) => (d + chrono::Days::new(1))
                    .and_time(chrono::NaiveTime::MIN)
                    .and_local_timezone(pipeline.tz)
                    .earliest()
                    .map_or(now, |t| t.with_timezone(&Utc)),
                None => now,
            }),
            rows: table_rows,
            previous_rows,
            drift,
        };
        let mut table_results =
            goalpost_table::table_checks(pipeline, &table, &check_input).await?;
        // A drift that failed stays failed until it is accepted or undone, even through
        // runs that bring no rows to judge it by.
        for r in &mut table_results {
            if r.kind == goalpost_spec::CheckKind::SchemaDrift
                && r.status == goalpost_table::CheckStatus::Skipped
                && let Some((since, last)) = state.last_check(&pipeline.id, &r.id, run_id)?
                && last.status == goalpost_table::CheckStatus::Failed.as_str()
            {
                r.status = goalpost_table::CheckStatus::Failed;
                r.message = if last.message.starts_with("unresolved since run ") {
                    last.message
                } else {
                    format!("unresolved since run {since}: {}", last.message)
                };
            }
        }
        let results = in_declared_order(
            pipeline,
            intake.checks.clone(),
            table_results,
            options.accept_changes,
        );
        state.record_checks(run_id, &pipeline.id, &records(&results))?;
        let blocking: Vec<&goalpost_table::CheckResult> =
            results.iter().filter(|r| r.blocks()).collect();
        let hold = (!blocking.is_empty()).then(|| goalpost_publish::Hold {
            reason: "data quality".into(),
            checks: blocking.iter().map(|r| r.id.clone()).collect(),
            message: blocking
                .iter()
                .map(|r| format!("check {:?} failed: {}", r.id, r.message))
                .collect::<Vec<_>>()
                .join("; "),
            since_run: run_id.to_string(),
            last_good_run: None,
        });
        if let Some(h) = &hold {
            tracing::warn!(checks = ?h.checks, "a data-quality check failed: the figures keep their last good values");
            progress.held = Some(h.message.clone());
        }

        // The table holds what was fetched: the next run may start from here.
        let states: Vec<(String, String)> = loaded
            .states
            .iter()
            .map(|(k, s)| (k.clone(), s.to_json()))
            .collect();
        if options.replay.is_some() {
            // The table now holds the replayed (older) rows, so no saved watermark describes
            // it any more: the next run loads everything.
            state.clear_source_states(&pipeline.id)?;
            tracing::info!("replayed; the next run of this pipeline loads everything");
        } else {
            state.save_source_states(&pipeline.id, run_id, self.clock.now(), &states)?;
        }
        // A failed drift check keeps the old columns as the baseline, so the figures stay
        // held until the change is accepted (`run --accept-changes`) or undone.
        let drift_blocks = blocking
            .iter()
            .any(|r| r.kind == goalpost_spec::CheckKind::SchemaDrift);
        if !drift_blocks {
            for (key, _, shape) in &shapes {
                if let Some(shape) = shape
                    && let Ok(json) = serde_json::to_string(shape)
                {
                    state.save_source_shape(&pipeline.id, key, &json, run_id, now)?;
                }
            }
        }
        if options.replay.is_none()
            && let Err(e) = goalpost_fetch::prune_recordings(
                &self.config.work_dir.join("raw").join(&pipeline.id),
                self.config.fetch.keep_raw_runs,
            )
        {
            tracing::warn!(error = %e, "could not delete old raw recordings");
        }

        // Figures and judgements from the version just written, unless a check holds them.
        watch.start("indicators");
        let series = match hold {
            None => goalpost_indicators::compute(pipeline, &table, &lookups.tables, as_of).await?,
            Some(_) => Vec::new(),
        };
        let quality = goalpost_publish::DataQuality {
            run_id: run_id.to_string(),
            rows_received: intake.rows_in,
            rows_quarantined: intake.quarantined,
            quarantine_limit: intake.limit,
            checks: results.iter().map(check_report).collect(),
        };

        // The table version's snapshot is written before the publish lock is taken: other
        // publishes need not wait for it.
        watch.start("publish");
        let snapshot_dir = self.config.work_dir.join("snapshots");
        if hold.is_none() && table_spec.publish {
            snapshots::prepare(&store, &snapshot_dir, pipeline, write.version).await?;
        }

        // Merge into the current digest and publish, under the publish lock.
        let publisher = self.publisher()?;
        let lock = publisher.lock().await?;
        let current = publisher.current_digest().await?;
        let mut pipelines = current
            .as_ref()
            .map(|d| d.pipelines.clone())
            .unwrap_or_default();
        let previous = pipelines.iter().find(|p| p.id == pipeline.id).cloned();
        let built = digest_build::Built {
            run_id,
            now,
            as_of,
            version: write.version,
            rows: table_rows,
            sources,
            quality,
            reads: &lookups.reads,
        };
        let held_now = hold.is_some();
        let section = match hold {
            None => digest_build::pipeline_digest(pipeline, built, &series),
            Some(hold) => digest_build::held_digest(pipeline, built, previous.clone(), hold),
        };
        // News: the events of this run enter the ledger once; the digest shows every
        // published item, current or archived.
        let announced =
            goalpost_publish::news::announcements(&pipeline.spec.news, previous.as_ref(), &section)
                .map_err(|e| {
                    RunError::Internal(format!("{}: {e}", pipeline.file.path.display()))
                })?;
        // New items enter the ledger only once the version showing them is published; until
        // then the digest shows the ledger's items and this run's.
        let ledger = state.news(None)?;
        let fresh: Vec<goalpost_state::NewsRecord> = news::records(&announced, run_id, now)
            .into_iter()
            .filter(|n| !ledger.iter().any(|l| l.id == n.id))
            .collect();
        let shown: Vec<goalpost_state::NewsRecord> = ledger
            .into_iter()
            .chain(fresh.iter().cloned())
            .filter(|n| n.status == "published")
            .collect();
        let news = news::digest_items(&shown, now);
        let mut section = section;
        section.schedule = pipeline.spec.schedule.as_ref().map(|s| s.get_ref().clone());
        let started = state.run(run_id)?.map_or(now, |r| r.started_at);
        section.history = refresh_history(&state, pipeline, run_id, started, progress, held_now)?;
        let mine = Summary::of(&section.goals);
        let indicators = section.indicators.len();
        pipelines.retain(|p| p.id != pipeline.id && configured.ids.contains(&p.id));
        pipelines.push(section);
        pipelines.sort_by(|a, b| a.id.cmp(&b.id));
        let digest = Digest {
            schema_version: DIGEST_SCHEMA_VERSION,
            version: run_id.to_string(),
            generated_at: now,
            site: site_info(&self.config.site),
            summary: Summary::of(pipelines.iter().flat_map(|p| &p.goals)),
            pipelines,
            news,
        };
        let mut digest = digest;
        // In a bucket, a snapshot the current version already has is copied there, not
        // uploaded again.
        let carry = match &self.config.publish_dir {
            goalpost_spec::Location::Remote(_) => current.as_ref(),
            goalpost_spec::Location::Local(_) => None,
        };
        let files = snapshots::attach(
            &store,
            &snapshot_dir,
            &mut digest,
            pipeline,
            carry,
            &publisher,
        )
        .await?;
        let published = publisher.publish_with(&lock, &digest, &files).await?;
        match state.add_news(&fresh) {
            Ok(added) if !added.is_empty() => tracing::info!(items = ?added, "news"),
            Ok(_) => {}
            // Published, but not recorded: the next run announces the same ids again.
            Err(e) => tracing::error!(error = %e, "could not record the news items"),
        }
        let mut kept: Vec<Digest> = Vec::new();
        for v in publisher.kept_versions().await.unwrap_or_default() {
            if let Ok(Some(d)) = publisher.version_digest(&v).await {
                kept.push(d);
            }
        }
        snapshots::prune(&snapshot_dir, &kept);
        lock.release().await;
        Ok(RunReport {
            run_id: run_id.to_string(),
            pipeline: pipeline.id.clone(),
            rows_fetched: progress.rows_fetched,
            rows_written: write.rows,
            mode: loaded.kind.as_str(),
            fetch: progress.fetch,
            table: table_name.clone(),
            table_version: write.version,
            table_rows,
            rows_quarantined: intake.quarantined,
            checks: results,
            held: progress.held.clone(),
            indicators,
            summary: mine,
            published,
            stages: watch.finish(),
        })
    }

    /// Compact the table when a write has left it with many small files. A failure only
    /// warns: the table is whole either way.
    async fn compact_if_needed(
        &self,
        store: &TableStore,
        table: &str,
        run_id: &str,
        write: &mut goalpost_table::TableWrite,
    ) {
        let settings = &self.config.tables;
        if settings.compact_small_files == 0 {
            return;
        }
        let small = settings.small_file_mib * 1024 * 1024;
        let stats = match store.file_stats(table, small).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not count the table's files");
                return;
            }
        };
        if stats.small_files < settings.compact_small_files as u64 {
            return;
        }
        match store
            .compact(table, settings.target_file_mib * 1024 * 1024, run_id)
            .await
        {
            Ok(report) => {
                if let Some(v) = report.version_after {
                    tracing::info!(
                        files_removed = report.files_removed,
                        files_added = report.files_added,
                        version = v,
                        "compacted the table"
                    );
                    write.version = v;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not compact the table"),
        }
    }
}

/// Row-check and table-check results together, in the order the pipeline declares its
/// checks. With `accept`, history checks (schema drift, row count) pass and say so.
fn in_declared_order(
    pipeline: &Pipeline,
    rows: Vec<goalpost_table::CheckResult>,
    table: Vec<goalpost_table::CheckResult>,
    accept: bool,
) -> Vec<goalpost_table::CheckResult> {
    use goalpost_spec::CheckKind;
    use goalpost_table::CheckStatus;
    let mut all: Vec<goalpost_table::CheckResult> = rows.into_iter().chain(table).collect();
    let order: Vec<String> = pipeline.spec.checks.iter().map(|c| c.id()).collect();
    all.sort_by_key(|r| order.iter().position(|id| *id == r.id));
    if accept {
        for r in &mut all {
            if matches!(r.kind, CheckKind::SchemaDrift | CheckKind::RowCount)
                && matches!(r.status, CheckStatus::Failed | CheckStatus::Warned)
            {
                r.status = CheckStatus::Passed;
                r.message = format!("accepted with --accept-changes: {}", r.message);
            }
        }
    }
    all
}

fn records(results: &[goalpost_table::CheckResult]) -> Vec<goalpost_state::CheckRecord> {
    results
        .iter()
        .map(|r| goalpost_state::CheckRecord {
            check_id: r.id.clone(),
            kind: r.kind.as_str().to_string(),
            severity: r.severity.as_str().to_string(),
            status: r.status.as_str().to_string(),
            message: r.message.clone(),
            rows_checked: r.rows_checked,
            rows_failed: r.rows_failed,
        })
        .collect()
}

fn check_report(r: &goalpost_table::CheckResult) -> goalpost_publish::CheckReport {
    goalpost_publish::CheckReport {
        id: r.id.clone(),
        kind: r.kind.as_str().to_string(),
        severity: r.severity.as_str().to_string(),
        status: r.status.as_str().to_string(),
        message: r.message.clone(),
        rows_checked: r.rows_checked,
        rows_failed: r.rows_failed,
        description: r.description.clone(),
    }
}

/// Whether two schemas have the same column names and types (nullability aside: Delta may
/// report columns nullable that the pipeline declares required).
fn same_columns(a: &arrow::datatypes::Schema, b: &arrow::datatypes::Schema) -> bool {
    use arrow::datatypes::DataType;
    // Delta reads text back as a view type; both spell the same column.
    let norm = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        other => other.clone(),
    };
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && norm(x.data_type()) == norm(y.data_type()))
}

/// The site settings as published in the digest.
fn site_info(site: &goalpost_spec::SiteSpec) -> goalpost_publish::SiteInfo {
    goalpost_publish::SiteInfo {
        title: site.title.clone(),
        organization: site.organization.clone(),
        base_url: site.base_url.clone(),
        contact_name: site.contact_name.clone(),
        contact_email: site.contact_email.clone(),
        license: site.license.clone(),
        spatial: site.spatial.clone(),
    }
}

/// Refreshes shown on a dataset's page.
const HISTORY: usize = 10;

/// This run (about to publish) and the pipeline's runs before it, newest first.
fn refresh_history(
    state: &StateStore,
    pipeline: &Pipeline,
    run_id: &str,
    started: DateTime<Utc>,
    progress: &RunEnd,
    held: bool,
) -> Result<Vec<goalpost_publish::Refresh>, RunError> {
    let mut out = vec![goalpost_publish::Refresh {
        run_id: run_id.to_string(),
        started_at: started,
        outcome: if held { "held" } else { "succeeded" }.into(),
        mode: progress.mode.clone(),
        rows_fetched: progress.rows_fetched,
        table_version: progress.table_version,
    }];
    for r in state.runs(Some(&pipeline.id), HISTORY)? {
        if r.id == run_id || out.len() >= HISTORY {
            continue;
        }
        let outcome = match r.status {
            goalpost_state::RunStatus::Succeeded if r.held.is_some() => "held",
            goalpost_state::RunStatus::Succeeded => "succeeded",
            goalpost_state::RunStatus::Running => continue,
            _ => "failed",
        };
        out.push(goalpost_publish::Refresh {
            run_id: r.id,
            started_at: r.started_at,
            outcome: outcome.into(),
            mode: r.mode,
            rows_fetched: r.rows_fetched,
            table_version: r.table_version,
        });
    }
    Ok(out)
}

/// The publisher for `config`'s `publish_dir`: a folder, or a bucket reached with the
/// credentials in the environment.
pub fn publisher_for(config: &Config) -> Result<Publisher, RunError> {
    Ok(match &config.publish_dir {
        goalpost_spec::Location::Local(dir) => Publisher::new(dir, config.keep_versions),
        goalpost_spec::Location::Remote(url) => Publisher::remote(
            goalpost_table::object_store(url)?,
            url.to_string(),
            config.keep_versions,
        )
        .with_lease(config.publish_lease),
    })
}
