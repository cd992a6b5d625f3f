//! The load stage: fetch every source of a pipeline and store what arrived in its table.
//!
//! - A **full** load streams typed pages into a Delta write through a bounded channel, so
//!   memory stays flat however large the source; the write commits once, at the end, and a
//!   failure anywhere commits nothing.
//! - A **refresh** (every source has a watermark) gathers the changed rows, keeps one row per
//!   key (the newest by the table's `updated` column, else the last fetched) and merges them
//!   by key in one commit, deleting records the source marks deleted.
//! - Every page is typed and row-checked on the way ([`Intake`]): rows that fail go to the
//!   quarantine, the others go on; more rejected rows than the pipeline's limit aborts the
//!   write.
//! - When nothing changed (every source says so), nothing is written.
//!
//! Each source's rows are checked against the count its portal reported: fewer distinct keys
//! than promised means rows were skipped (typically a row changed between two pages and
//! shifted the offsets), and the load is retried once from the start before it fails.

use crate::RunError;
use crate::keys::KeySet;
use crate::progress::Progress;
use arrow::array::RecordBatch;
use goalpost_fetch::{
    FetchError, LoadKind, RawPage, Source, SourceContext, SourceState, open_source,
};
use goalpost_spec::Pipeline;
use goalpost_table::{BatchResult, Intake, IntakeReport, Layout, Shape, TableStore, TableWrite};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the load stage did.
pub(crate) struct Loaded {
    pub kind: LoadKind,
    pub write: TableWrite,
    pub rows_fetched: u64,
    pub pages: u64,
    /// Per source, in pipeline order: (kind, location, link, rows).
    pub sources: Vec<goalpost_publish::SourceInfo>,
    /// The states to save once the run is committed.
    pub states: Vec<(String, SourceState)>,
}

pub(crate) struct LoadInput<'a> {
    pub pipeline: &'a Pipeline,
    pub store: &'a TableStore,
    /// Where rejected rows are stored (`data/quarantine/`).
    pub quarantine: &'a TableStore,
    /// Rows in the table before this run: a refresh's quarantined share is judged against
    /// at least this many.
    pub table_rows: u64,
    pub now: chrono::DateTime<chrono::Utc>,
    pub ctx: SourceContext,
    /// Each source's saved state by source key; empty for a full load.
    pub prior: BTreeMap<String, SourceState>,
    pub run_id: &'a str,
    pub progress: Arc<dyn Progress>,
}

/// What a load saw, kept whether it succeeded or not.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// Rejected rows and row-check results.
    pub intake: IntakeReport,
    /// Per source: its key, its description and the shape of its first page.
    pub shapes: Vec<(String, String, Option<Shape>)>,
}

/// Fetch and store, retrying once from the start when a source proves incomplete. What
/// came in is left in `trace`, whether the load succeeded or not.
pub(crate) async fn load(input: &LoadInput<'_>, trace: &mut Trace) -> Result<Loaded, RunError> {
    let mut taken = Intake::new(input.pipeline);
    let result = match load_once(input, &mut taken, &mut trace.shapes).await {
        Err(RunError::Fetch(FetchError::Incomplete { .. })) => {
            tracing::warn!("a source came back incomplete; fetching it all again once");
            taken = Intake::new(input.pipeline);
            load_once(input, &mut taken, &mut trace.shapes).await
        }
        other => other,
    };
    trace.intake = taken.finish();
    result
}

struct Opened {
    /// Position of the source in the pipeline file.
    index: usize,
    key: String,
    source: Box<dyn Source>,
    first: Option<RawPage>,
    shape: Option<Shape>,
}

async fn open_all(
    input: &LoadInput<'_>,
    prior: &BTreeMap<String, SourceState>,
) -> Result<Vec<Opened>, RunError> {
    let mut opened = Vec::new();
    for (index, spec) in input.pipeline.spec.sources.iter().enumerate() {
        let spec = spec.get_ref();
        let key = spec.watermark_key();
        let ctx = SourceContext {
            prior: prior.get(&key).cloned(),
            ..input.ctx.clone()
        };
        let mut source = open_source(spec, &ctx)?;
        input.progress.source_started(&source.describe());
        let first = source.next_page().await?;
        let shape = first.as_ref().filter(|p| p.num_rows() > 0).map(Shape::of);
        opened.push(Opened {
            index,
            key,
            source,
            first,
            shape,
        });
    }
    Ok(opened)
}

async fn load_once(
    input: &LoadInput<'_>,
    intake: &mut Intake<'_>,
    shapes: &mut Vec<(String, String, Option<Shape>)>,
) -> Result<Loaded, RunError> {
    let mut opened = open_all(input, &input.prior).await?;
    let kinds: Vec<LoadKind> = opened.iter().map(|o| o.source.load_kind()).collect();
    let any_full = kinds.contains(&LoadKind::Full);
    if any_full && kinds.iter().any(|k| *k != LoadKind::Full) {
        // One table, one way of loading: a source that must load everything makes the
        // others do so too, or the replace would drop their rows.
        tracing::info!("one source needs a full load, so every source loads in full");
        opened = open_all(input, &BTreeMap::new()).await?;
    }
    if !any_full {
        intake.set_floor(input.table_rows);
    }
    *shapes = opened
        .iter()
        .map(|o| (o.key.clone(), o.source.describe(), o.shape.clone()))
        .collect();
    let table_spec = &input.pipeline.spec.table;
    let table = table_spec.name.get_ref();
    let schema = table_spec.arrow_schema();
    let layout = Layout::of(table_spec);
    let loaded = |kind, write, fed: Fed, opened: &[Opened]| Loaded {
        kind,
        write,
        rows_fetched: fed.rows,
        pages: fed.pages,
        sources: opened
            .iter()
            .zip(fed.per_source.iter().copied().chain(std::iter::repeat(0)))
            .map(|(o, n)| info(input, o, n))
            .collect(),
        states: opened
            .iter()
            .map(|o| (o.key.clone(), o.source.state()))
            .collect(),
    };

    if !any_full && kinds.iter().all(|k| *k == LoadKind::Unchanged) {
        let version = input.store.latest_version(table).await?.unwrap_or(0);
        let write = TableWrite {
            version,
            ..Default::default()
        };
        return Ok(loaded(LoadKind::Unchanged, write, Fed::default(), &opened));
    }

    if any_full {
        let (tx, rx) = mpsc::channel::<BatchResult>(4);
        let writer = input
            .store
            .replace_stream(table, schema.clone(), rx, &layout, input.run_id);
        let producer = async {
            let mut result = feed(
                input,
                intake,
                &mut opened,
                &layout,
                Some(&tx),
                &mut Vec::new(),
            )
            .await;
            if result.is_ok()
                && let Some(why) = intake.over_limit()
            {
                result = Err(RunError::Quarantine(why));
            }
            if let Err(e) = &result {
                // Abort the write: nothing of this load may be committed.
                let _ = tx.send(Err(e.to_string())).await;
            }
            drop(tx);
            result
        };
        let (fed, written) = tokio::join!(producer, writer);
        // A fetch error aborted the write: report the fetch error. Otherwise the writer's
        // own error (if any) is the cause.
        let (fed, mut write) = match (fed, written) {
            (Err(e @ RunError::Internal(_)), Err(w)) => {
                tracing::debug!(error = %e, "the producer saw the writer stop");
                return Err(w.into());
            }
            (Err(e), _) => return Err(e),
            (Ok(_), Err(w)) => return Err(w.into()),
            (Ok(fed), Ok(w)) => (fed, w),
        };
        if (fed.duplicates || layout.deletes.is_some()) && !layout.key.is_empty() {
            // Rows streamed straight to the table, so a key sent twice is in it twice, and a
            // row marking a deletion is in it too: keep the newest row of each key, and drop
            // the keys whose newest row is a deletion, in one more commit. (Dropping deletion
            // rows as they stream by would revive a record updated, then deleted, within one
            // load.) The load is committed already: if settling fails, the next run must
            // load everything again rather than refresh a table that holds duplicates.
            let settled = input
                .store
                .dedupe(table, &layout, input.run_id)
                .await
                .map_err(|e| RunError::Unsettled(Box::new(e.into())))?;
            if let Some(fixed) = settled {
                tracing::info!(
                    removed = fixed.deleted,
                    version = fixed.version,
                    "kept the newest row of each key sent more than once"
                );
                write.version = fixed.version;
                write.rows = write.rows.saturating_sub(fixed.deleted);
            }
        }
        return Ok(loaded(LoadKind::Full, write, fed, &opened));
    }

    // A refresh: gather the changes (small by nature), one row per key, merge.
    let began = std::time::Instant::now();
    let mut batches = Vec::new();
    let fed = feed(input, intake, &mut opened, &layout, None, &mut batches).await?;
    tracing::debug!(seconds = began.elapsed().as_secs_f64(), "refresh: fetched");
    if let Some(why) = intake.over_limit() {
        return Err(RunError::Quarantine(why));
    }
    let changes = goalpost_table::newest_per_key(&schema, batches, &layout)?;
    tracing::debug!(
        seconds = began.elapsed().as_secs_f64(),
        "refresh: one row per key"
    );
    let merged = input
        .store
        .merge(
            table,
            schema,
            changes.into_iter().collect(),
            &layout,
            input.run_id,
        )
        .await?;
    let mut write = merged.write;
    tracing::debug!(seconds = began.elapsed().as_secs_f64(), "refresh: merged");
    if let Some(keys) = merged.to_settle {
        // Rows are matched within their partition; a record whose partition value changed
        // at the source was added to its new partition and is still in its old one.
        let settled = input
            .store
            .dedupe_within(table, &layout, input.run_id, Some(keys))
            .await
            // The merge is committed but may have left a moved record twice: the next run
            // loads everything again, and settles the whole table.
            .map_err(|e| RunError::Unsettled(Box::new(e.into())))?;
        if let Some(fixed) = settled {
            tracing::warn!(
                removed = fixed.deleted,
                "records that moved between partitions were stored twice; kept the newest"
            );
            write.version = fixed.version;
        }
    }
    tracing::debug!(seconds = began.elapsed().as_secs_f64(), "refresh: settled");
    Ok(loaded(LoadKind::Changes, write, fed, &opened))
}

fn info(input: &LoadInput<'_>, o: &Opened, rows: u64) -> goalpost_publish::SourceInfo {
    let spec = input.pipeline.spec.sources[o.index].get_ref();
    goalpost_publish::SourceInfo {
        kind: spec.kind().to_string(),
        location: spec.location(),
        link: spec.link().map(str::to_string),
        rows,
    }
}

/// What feeding the sources' pages produced.
#[derive(Debug, Default)]
struct Fed {
    rows: u64,
    pages: u64,
    per_source: Vec<u64>,
    /// Some source sent a key more than once.
    duplicates: bool,
}

/// Read every page of every source, type and check it and either send the good rows to the
/// writer (`tx`) or keep them (`keep`). Checks each source's distinct keys (plus the rows it
/// had rejected) against the count its portal reported.
async fn feed(
    input: &LoadInput<'_>,
    intake: &mut Intake<'_>,
    opened: &mut [Opened],
    layout: &Layout,
    tx: Option<&mpsc::Sender<BatchResult>>,
    keep: &mut Vec<RecordBatch>,
) -> Result<Fed, RunError> {
    let pipeline = input.pipeline;
    let mut fed = Fed::default();
    // Keys over every source: two sources sending one key is a duplicate too. With one
    // source, its own set says it.
    let several = opened.len() > 1;
    let mut all_keys = KeySet::default();
    let mut all_good = 0u64;
    for (o, spec) in opened.iter_mut().zip(&pipeline.spec.sources) {
        let spec = spec.get_ref();
        let describe = o.source.describe();
        let mut keys = KeySet::default();
        let mut rows = 0u64;
        let mut good = 0u64;
        let rejected_before = intake.quarantined();
        let mut next = o.first.take();
        while let Some(page) = next {
            let n = page.num_rows() as u64;
            rows += n;
            fed.pages += 1;
            goalpost_spec::pause_point("fetch");
            let batch = intake.take(&describe, &page, spec.fields())?;
            good += batch.num_rows() as u64;
            keys.insert(&batch, &layout.key)?;
            all_good += batch.num_rows() as u64;
            if intake.pending() >= QUARANTINE_FLUSH {
                store_quarantined(input, intake.drain()).await?;
            }
            input.progress.page(n);
            match tx {
                Some(tx) => {
                    if tx.send(Ok(batch)).await.is_err() {
                        // The writer stopped; its own error, reported first, says why.
                        return Err(RunError::Internal(
                            "the table writer stopped before the load ended".into(),
                        ));
                    }
                }
                None => keep.push(batch),
            }
            next = o.source.next_page().await?;
        }
        // Without a key every row counts as one.
        let distinct = if layout.key.is_empty() {
            good
        } else {
            keys.len()
        };
        if several {
            all_keys.absorb(keys);
        } else {
            all_keys = keys;
        }
        let rejected = intake.quarantined() - rejected_before;
        if let Some(expected) = o.source.expected_rows()
            && distinct + rejected < expected
        {
            return Err(FetchError::Incomplete {
                source_name: describe,
                expected,
                received: distinct + rejected,
                detail: format!(
                    " as distinct keys ({rows} rows in all: rows shifted between pages while they were read)"
                ),
            }
            .into());
        }
        if !layout.key.is_empty() && distinct < good {
            tracing::info!(source = %describe, rows = good, distinct, "the source sent some keys more than once; the newest row of each is kept");
        }
        input.progress.source_done(&describe, rows);
        tracing::info!(source = %describe, rows, rejected, mode = o.source.load_kind().as_str(), "fetched");
        fed.rows += rows;
        fed.per_source.push(rows);
    }
    if !layout.key.is_empty() && all_keys.len() < all_good {
        fed.duplicates = true;
    }
    Ok(fed)
}

/// Rejected rows are stored in batches of this many as they come, so a source gone bad
/// cannot fill memory with them.
const QUARANTINE_FLUSH: usize = 50_000;

/// Append rejected rows to the table's quarantine.
pub(crate) async fn store_quarantined(
    input: &LoadInput<'_>,
    rows: Vec<goalpost_table::QuarantinedRow>,
) -> Result<(), RunError> {
    if rows.is_empty() {
        return Ok(());
    }
    let table = input.pipeline.spec.table.name.get_ref();
    let batch = goalpost_table::quarantine_batch(input.run_id, input.now, &rows);
    input
        .quarantine
        .append(table, vec![batch], input.run_id)
        .await?;
    Ok(())
}
