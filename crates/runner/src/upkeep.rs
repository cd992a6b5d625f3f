//! Table upkeep and reproducibility: compaction, vacuum that respects every kept digest, and
//! recomputing a published run's figures from the table versions it names.

use crate::{RunError, Runner, digest_build};
use goalpost_publish::Digest;
use goalpost_spec::{Pipeline, Spanned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What compacting one table did.
#[derive(Debug, Clone)]
pub struct Compacted {
    pub table: String,
    pub files_before: u64,
    pub files_removed: u64,
    pub files_added: u64,
    /// The new version, or `None` when there was nothing to compact.
    pub version: Option<u64>,
}

/// What vacuuming one table did (or would do).
#[derive(Debug, Clone)]
pub struct Vacuumed {
    pub table: String,
    /// Every version from this one on stays readable.
    pub kept_from: u64,
    pub files_deleted: u64,
    pub bytes: u64,
}

/// What recomputing a run's figures found.
#[derive(Debug, Clone)]
pub struct Recomputed {
    pub run_id: String,
    pub out: PathBuf,
    /// (pipeline, table, version) of every table read.
    pub tables: Vec<(String, String, u64)>,
    /// Whether `indicators.parquet` is byte for byte the published one.
    pub parquet_identical: bool,
    /// Figures that came out differently, as sentences (empty when all agree).
    pub differences: Vec<String>,
}

impl Runner {
    /// Compact the tables of `pipelines` (or only `table`): rewrite small files into large
    /// ones, one commit each.
    pub async fn compact(
        &self,
        pipelines: &[Pipeline],
        table: Option<&str>,
        run_id: &str,
    ) -> Result<Vec<Compacted>, RunError> {
        let store = self.tables();
        let settings = &self.config().tables;
        let mut out = Vec::new();
        for (pipeline, name) in table_names(pipelines, table)? {
            if !store.table_exists(&name).await? {
                continue;
            }
            let lock = self.upkeep_lock(&pipeline, run_id)?;
            let before = store
                .file_stats(&name, settings.small_file_mib * 1024 * 1024)
                .await?;
            let report = store
                .compact(&name, settings.target_file_mib * 1024 * 1024, run_id)
                .await?;
            out.push(Compacted {
                table: name,
                files_before: before.files,
                files_removed: report.files_removed as u64,
                files_added: report.files_added as u64,
                version: report.version_after,
            });
            lock.release(&self.state()?);
        }
        Ok(out)
    }

    /// Delete the data files of the tables of `pipelines` (or only `table`) that no kept
    /// published version needs: every version from the oldest one a kept digest names (or
    /// the latest, if none does) stays readable.
    pub async fn vacuum(
        &self,
        pipelines: &[Pipeline],
        table: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Vacuumed>, RunError> {
        let store = self.tables();
        let needed = self.versions_needed().await?;
        let id = format!("vacuum-{}", self.clock.now().format("%Y%m%dT%H%M%SZ"));
        let mut out = Vec::new();
        for (pipeline, name) in table_names(pipelines, table)? {
            let Some(latest) = store.latest_version(&name).await? else {
                continue;
            };
            let lock = if dry_run {
                None
            } else {
                Some(self.upkeep_lock(&pipeline, &id)?)
            };
            let kept_from = needed.get(&name).copied().unwrap_or(latest).min(latest);
            let report = store.vacuum(&name, kept_from, dry_run).await?;
            if let Some(lock) = lock {
                lock.release(&self.state()?);
            }
            out.push(Vacuumed {
                table: name,
                kept_from,
                files_deleted: report.files_deleted.len() as u64,
                bytes: report.bytes,
            });
        }
        Ok(out)
    }

    /// The run lock of `pipeline`, for upkeep of its table: refused while one of its runs
    /// (or other upkeep) is going.
    fn upkeep_lock(&self, pipeline: &str, id: &str) -> Result<crate::lock::RunLock, RunError> {
        crate::lock::RunLock::take_for_upkeep(
            &mut self.state()?,
            self.config().state_db.clone(),
            pipeline,
            id,
            self.clock.now(),
        )
    }

    /// The oldest version of each table that a kept published digest names.
    async fn versions_needed(&self) -> Result<BTreeMap<String, u64>, RunError> {
        let publisher = self.publisher()?;
        let mut needed: BTreeMap<String, u64> = BTreeMap::new();
        for id in publisher.kept_versions().await? {
            let Some(digest) = publisher.version_digest(&id).await? else {
                continue;
            };
            for p in &digest.pipelines {
                let v = needed.entry(p.table.name.clone()).or_insert(u64::MAX);
                *v = (*v).min(p.table.version);
                // Other pipelines' tables the indicators read, at the versions read.
                for r in p.indicators.iter().flat_map(|i| &i.reads) {
                    let v = needed.entry(r.table.clone()).or_insert(u64::MAX);
                    *v = (*v).min(r.version);
                }
            }
        }
        Ok(needed)
    }

    /// Recompute the figures of published version `run_id` from the table versions its
    /// digest names, and write `digest.json`, `indicators.parquet` and `index.html` into
    /// `out`. Nothing published is touched.
    pub async fn recompute(
        &self,
        pipelines: &[Pipeline],
        run_id: &str,
        out: &Path,
    ) -> Result<Recomputed, RunError> {
        let publisher = self.publisher()?;
        let Some(recorded) = publisher.version_digest(run_id).await? else {
            let kept = publisher.kept_versions().await?;
            return Err(RunError::Internal(format!(
                "no published version {run_id:?} is kept in {} (the newest {} are kept besides the current one); kept: {}",
                publisher.location("versions"),
                self.config().keep_versions,
                if kept.is_empty() {
                    "none".into()
                } else {
                    kept.join(", ")
                }
            )));
        };
        // Never write into the published folder: `current` is a link to a live version.
        std::fs::create_dir_all(out)
            .map_err(|e| RunError::Internal(format!("cannot create {}: {e}", out.display())))?;
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if let Some(publish_dir) = self.config().publish_dir.local().map(canonical)
            && canonical(out).starts_with(&publish_dir)
        {
            return Err(RunError::Internal(format!(
                "--out {} is inside the publish folder {}; recompute writes elsewhere so nothing published changes",
                out.display(),
                publish_dir.display()
            )));
        }
        let published = publisher
            .version_file(run_id, "indicators.parquet")
            .await
            .map(Option::unwrap_or_default);
        let store = self.tables();
        let mut digest: Digest = recorded.clone();
        let mut tables = Vec::new();
        let mut differences = Vec::new();
        for section in &mut digest.pipelines {
            if section.held.is_some() && section.indicators.iter().all(|i| i.series.is_empty()) {
                // Held before any good figures existed: there is nothing to recompute.
                continue;
            }
            let pipeline = as_recorded(pipelines, section)?;
            let name = &section.table.name;
            let table = store
                .open_version(name, section.table.version)
                .await
                .map_err(|e| {
                    RunError::Internal(format!(
                        "pipeline {}: table {name} version {} cannot be read ({e}); it may have been vacuumed",
                        section.id, section.table.version
                    ))
                })?;
            tables.push((section.id.clone(), name.clone(), section.table.version));
            // The other tables the indicators read, at the versions they read.
            let mut reads: Vec<goalpost_publish::TableRead> = Vec::new();
            for r in section.indicators.iter().flat_map(|i| &i.reads) {
                if !reads.contains(r) {
                    reads.push(r.clone());
                    tables.push((section.id.clone(), r.table.clone(), r.version));
                }
            }
            let lookups = crate::lookups::open_recorded(&store, &reads).await?;
            let series =
                goalpost_indicators::compute(&pipeline, &table, &lookups, section.as_of).await?;
            let fresh = digest_build::pipeline_digest(
                &pipeline,
                digest_build::Built {
                    run_id: &section.run_id,
                    now: section.refreshed_at,
                    as_of: section.as_of,
                    version: section.table.version,
                    rows: section.table.rows,
                    sources: section.sources.clone(),
                    quality: section.data_quality.clone(),
                    reads: &reads,
                },
                &series,
            );
            for ind in &mut section.indicators {
                let Some(new) = fresh.indicators.iter().find(|i| i.id == ind.id) else {
                    continue;
                };
                if new.series != ind.series {
                    differences.push(format!(
                        "pipeline {}: indicator {}: the series differs",
                        section.id, ind.id
                    ));
                }
                ind.series = new.series.clone();
            }
            for goal in &mut section.goals {
                let Some(new) = fresh.goals.iter().find(|g| g.id == goal.id) else {
                    continue;
                };
                if (&new.status, &new.latest, new.expected, new.progress)
                    != (&goal.status, &goal.latest, goal.expected, goal.progress)
                {
                    differences.push(format!(
                        "pipeline {}: goal {}: recorded {} {:?}, recomputed {} {:?}",
                        section.id,
                        goal.id,
                        goal.status.as_str(),
                        goal.latest.as_ref().map(|l| l.value),
                        new.status.as_str(),
                        new.latest.as_ref().map(|l| l.value)
                    ));
                }
                goal.status = new.status;
                goal.status_reason = new.status_reason.clone();
                goal.latest = new.latest.clone();
                goal.expected = new.expected;
                goal.progress = new.progress;
                goal.trend = new.trend.clone();
                goal.best = new.best.clone();
                goal.worst = new.worst.clone();
                goal.periods_to_target = new.periods_to_target;
                goal.cagr = new.cagr.clone();
                goal.series = new.series.clone();
            }
        }
        goalpost_publish::write_digest_files(&digest, out)?;
        let mine = std::fs::read(out.join("indicators.parquet"));
        let parquet_identical =
            matches!((published, mine), (Ok(a), Ok(b)) if !a.is_empty() && a == b);
        Ok(Recomputed {
            run_id: run_id.to_string(),
            out: out.to_path_buf(),
            tables,
            parquet_identical,
            differences,
        })
    }
}

/// The table names to work on: every pipeline's, or the one asked for (which must be one).
/// (pipeline, table) of every pipeline, or of the one writing `table`.
fn table_names(
    pipelines: &[Pipeline],
    table: Option<&str>,
) -> Result<Vec<(String, String)>, RunError> {
    let all: Vec<(String, String)> = pipelines
        .iter()
        .map(|p| (p.id.clone(), p.spec.table.name.get_ref().clone()))
        .collect();
    match table {
        None => Ok(all),
        Some(t) if all.iter().any(|(_, a)| a == t) => {
            Ok(all.into_iter().filter(|(_, a)| a == t).collect())
        }
        Some(t) => Err(RunError::Internal(format!(
            "no pipeline writes a table {t:?}; the tables are: {}",
            all.iter()
                .map(|(_, a)| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The pipeline as the digest section recorded it: the current file's definitions with each
/// indicator's SQL as it was when the figures were published.
fn as_recorded(
    pipelines: &[Pipeline],
    section: &goalpost_publish::PipelineDigest,
) -> Result<Pipeline, RunError> {
    let Some(current) = pipelines.iter().find(|p| p.id == section.id) else {
        return Err(RunError::Internal(format!(
            "pipeline {:?} of the recorded digest is no longer configured",
            section.id
        )));
    };
    let mut pipeline = current.clone();
    for recorded in &section.indicators {
        let Some(spec) = pipeline
            .spec
            .indicators
            .iter_mut()
            .find(|i| i.id.get_ref() == &recorded.id)
        else {
            return Err(RunError::Internal(format!(
                "pipeline {}: indicator {:?} of the recorded digest is no longer in {}",
                section.id,
                recorded.id,
                current.file.path.display()
            )));
        };
        if spec.period.as_str() != recorded.period {
            return Err(RunError::Internal(format!(
                "pipeline {}: indicator {:?} was computed per {} and is now per {}; recompute needs the definition it was published with",
                section.id,
                recorded.id,
                recorded.period,
                spec.period.as_str()
            )));
        }
        let span = spec.sql.span();
        spec.sql = Spanned::new(span, recorded.sql.clone());
    }
    Ok(pipeline)
}

/// One stored quarantined row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuarantineEntry {
    pub run_id: String,
    pub quarantined_at: String,
    pub source: String,
    pub page: i64,
    pub row: String,
    pub reason: String,
    pub raw: String,
}

impl Runner {
    /// The rows a pipeline's table has quarantined: those of run `run` (by default the
    /// newest run that quarantined any), in source order, at most `limit`; with the number
    /// there are in all.
    pub async fn quarantined(
        &self,
        table: &str,
        run: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<QuarantineEntry>, u64), RunError> {
        use arrow::array::{Array, AsArray};
        use goalpost_table::deltalake::datafusion::prelude::SessionContext;
        let store = self.quarantine_store();
        let Some(version) = store.latest_version(table).await? else {
            return Ok((Vec::new(), 0));
        };
        let handle = store.open_version(table, version).await?;
        let fail = |e: &dyn std::fmt::Display| {
            RunError::Internal(format!("reading the quarantine of {table}: {e}"))
        };
        let ctx = SessionContext::new();
        handle
            .update_datafusion_session(&ctx.state())
            .map_err(|e| fail(&e))?;
        ctx.register_table("q", handle.table_provider().await.map_err(|e| fail(&e))?)
            .map_err(|e| fail(&e))?;
        let run_id = match run {
            Some(r) => r.to_string(),
            None => {
                let b = ctx
                    .sql("SELECT run_id FROM q ORDER BY quarantined_at DESC, run_id DESC LIMIT 1")
                    .await
                    .map_err(|e| fail(&e))?
                    .collect()
                    .await
                    .map_err(|e| fail(&e))?;
                match b.iter().find(|b| b.num_rows() > 0) {
                    Some(b) => arrow::util::display::array_value_to_string(b.column(0), 0)
                        .map_err(|e| fail(&e))?,
                    None => return Ok((Vec::new(), 0)),
                }
            }
        };
        let df = ctx
            .sql("SELECT run_id, CAST(quarantined_at AS VARCHAR), source, page, \"row\", reason, raw FROM q")
            .await
            .map_err(|e| fail(&e))?
            .filter(
                goalpost_table::deltalake::datafusion::prelude::col("run_id")
                    .eq(goalpost_table::deltalake::datafusion::prelude::lit(run_id.clone())),
            )
            .map_err(|e| fail(&e))?;
        let batches = df.collect().await.map_err(|e| fail(&e))?;
        let text = |c: &arrow::array::ArrayRef, i: usize| {
            if c.is_null(i) {
                String::new()
            } else {
                arrow::util::display::array_value_to_string(c, i).unwrap_or_default()
            }
        };
        let mut all = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                all.push(QuarantineEntry {
                    run_id: text(b.column(0), i),
                    quarantined_at: text(b.column(1), i),
                    source: text(b.column(2), i),
                    page: b
                        .column(3)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(i),
                    row: text(b.column(4), i),
                    reason: text(b.column(5), i),
                    raw: text(b.column(6), i),
                });
            }
        }
        // Source order: by source, page, then line or record number.
        let number = |r: &str| {
            r.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        all.sort_by(|a, b| {
            (&a.source, a.page, number(&a.row)).cmp(&(&b.source, b.page, number(&b.row)))
        });
        let total = all.len() as u64;
        all.truncate(limit);
        Ok((all, total))
    }
}
