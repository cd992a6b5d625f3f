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

pub use clock::{Clock, FixedClock, SystemClock};

use chrono::{DateTime, Utc};
use goalpost_fetch::{FetchError, open_source};
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
}

/// What a successful run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub table: String,
    pub table_version: u64,
    pub indicators: usize,
    pub summary: Summary,
    /// The published version's folder.
    pub published: PathBuf,
}

pub struct Runner {
    config: Config,
    clock: Arc<dyn Clock>,
}

impl Runner {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock }
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    /// Run one pipeline. `configured` lists every pipeline id currently configured: the
    /// digest keeps their last published parts and drops parts of pipelines no longer there.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        configured: &[String],
    ) -> Result<RunReport, RunError> {
        let started = self.clock.now();
        let run_id = self.new_run_id(&pipeline.id, started);
        let state = self.state()?;
        state.start_run(&run_id, &pipeline.id, started)?;
        let span = tracing::info_span!("run", run_id = %run_id, pipeline = %pipeline.id);
        let mut progress = RunEnd::default();
        let result = self
            .stages(pipeline, configured, &run_id, &mut progress)
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
        if let Err(e) = state.finish_run(&run_id, end, &progress) {
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
        configured: &[String],
        run_id: &str,
        progress: &mut RunEnd,
    ) -> Result<RunReport, RunError> {
        // Plan the indicator SQL first: a typo should fail before any table is touched.
        let problems = goalpost_indicators::check_sql(pipeline).await;
        if !problems.is_empty() {
            return Err(RunError::Invalid(problems));
        }

        // Fetch and type every page of every source.
        let table_spec = &pipeline.spec.table;
        let schema = table_spec.arrow_schema();
        let mut batches = Vec::new();
        let mut sources = Vec::new();
        for source_spec in &pipeline.spec.sources {
            let spec = source_spec.get_ref();
            let mut source = open_source(spec, &pipeline.dir)?;
            let mut rows = 0u64;
            while let Some(page) = source.next_page().await? {
                rows += page.num_rows() as u64;
                batches.push(goalpost_table::map_page(
                    &page,
                    table_spec,
                    spec.fields(),
                    pipeline.tz,
                )?);
            }
            tracing::info!(source = %source.describe(), rows, "fetched");
            progress.rows_fetched += rows;
            sources.push(goalpost_publish::SourceInfo {
                kind: spec.kind().to_string(),
                location: spec.location().to_string(),
                link: spec.link().map(str::to_string),
                rows,
            });
        }

        // One commit replaces the table.
        let store = TableStore::new(self.config.data_dir.join("tables"));
        let table_name = table_spec.name.get_ref();
        let write = store.replace(table_name, schema, batches, run_id).await?;
        progress.rows_written = write.rows;
        progress.table_version = Some(write.version);

        // Figures and judgements from the version just written.
        let table = store.open_version(table_name, write.version).await?;
        let now = self.clock.now();
        let as_of = pipeline
            .as_of
            .unwrap_or_else(|| now.with_timezone(&pipeline.tz).date_naive());
        let series = goalpost_indicators::compute(pipeline, &table, as_of).await?;
        let section =
            digest_build::pipeline_digest(pipeline, run_id, now, as_of, &write, sources, &series);

        // Merge into the current digest and publish, under the publish lock.
        let publisher = Publisher::new(&self.config.publish_dir, self.config.keep_versions);
        let _lock = publisher.lock()?;
        let mut pipelines = publisher
            .current_digest()?
            .map(|d| d.pipelines)
            .unwrap_or_default();
        let mine = Summary::of(&section.goals);
        pipelines.retain(|p| p.id != pipeline.id && configured.contains(&p.id));
        pipelines.push(section);
        pipelines.sort_by(|a, b| a.id.cmp(&b.id));
        let digest = Digest {
            schema_version: DIGEST_SCHEMA_VERSION,
            version: run_id.to_string(),
            generated_at: now,
            site: goalpost_publish::SiteInfo {
                title: self.config.site.title.clone(),
                organization: self.config.site.organization.clone(),
            },
            summary: Summary::of(pipelines.iter().flat_map(|p| &p.goals)),
            pipelines,
        };
        let published = publisher.publish(&digest)?;
        Ok(RunReport {
            run_id: run_id.to_string(),
            pipeline: pipeline.id.clone(),
            rows_fetched: progress.rows_fetched,
            rows_written: write.rows,
            table: table_name.clone(),
            table_version: write.version,
            indicators: series.len(),
            summary: mine,
            published,
        })
    }
}
