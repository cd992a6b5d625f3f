//! The load stage: fetch every source of a pipeline and store what arrived in its table.
//!
//! - A **full** load streams typed pages into a Delta write through a bounded channel, so
//!   memory stays flat however large the source; the write commits once, at the end, and a
//!   failure anywhere commits nothing.
//! - A **refresh** (every source has a watermark) gathers the changed rows, keeps one row per
//!   key (the last one fetched, which is the newest: refreshes are ordered by update time)
//!   and merges them by key in one commit.
//! - When nothing changed (every source says so), nothing is written.
//!
//! Each source's rows are checked against the count its portal reported: fewer distinct keys
//! than promised means rows were skipped (typically a row changed between two pages and
//! shifted the offsets), and the load is retried once from the start before it fails.

use crate::RunError;
use crate::progress::Progress;
use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use goalpost_fetch::{
    FetchError, LoadKind, RawPage, Source, SourceContext, SourceState, open_source,
};
use goalpost_spec::Pipeline;
use goalpost_table::{BatchResult, TableStore, TableWrite};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
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
    pub ctx: SourceContext,
    /// Each source's saved state by source key; empty for a full load.
    pub prior: BTreeMap<String, SourceState>,
    pub run_id: &'a str,
    pub progress: Arc<dyn Progress>,
}

/// Fetch and store, retrying once from the start when a source proves incomplete.
pub(crate) async fn load(input: &LoadInput<'_>) -> Result<Loaded, RunError> {
    match load_once(input).await {
        Err(RunError::Fetch(FetchError::Incomplete { .. })) => {
            tracing::warn!("a source came back incomplete; fetching it all again once");
            load_once(input).await
        }
        other => other,
    }
}

struct Opened {
    /// Position of the source in the pipeline file.
    index: usize,
    key: String,
    source: Box<dyn Source>,
    first: Option<RawPage>,
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
        opened.push(Opened {
            index,
            key,
            source,
            first,
        });
    }
    Ok(opened)
}

async fn load_once(input: &LoadInput<'_>) -> Result<Loaded, RunError> {
    let mut opened = open_all(input, &input.prior).await?;
    let kinds: Vec<LoadKind> = opened.iter().map(|o| o.source.load_kind()).collect();
    let any_full = kinds.contains(&LoadKind::Full);
    if any_full && kinds.iter().any(|k| *k != LoadKind::Full) {
        // One table, one way of loading: a source that must load everything makes the
        // others do so too, or the replace would drop their rows.
        tracing::info!("one source needs a full load, so every source loads in full");
        opened = open_all(input, &BTreeMap::new()).await?;
    }
    let table_spec = &input.pipeline.spec.table;
    let table = table_spec.name.get_ref();
    let schema = table_spec.arrow_schema();
    let key_columns: Vec<String> = table_spec.key.iter().map(|k| k.get_ref().clone()).collect();

    if !any_full && kinds.iter().all(|k| *k == LoadKind::Unchanged) {
        let version = input.store.latest_version(table).await?.unwrap_or(0);
        return Ok(Loaded {
            kind: LoadKind::Unchanged,
            write: TableWrite {
                version,
                ..Default::default()
            },
            rows_fetched: 0,
            pages: 0,
            sources: opened.iter().map(|o| info(input, o, 0)).collect(),
            states: opened
                .iter()
                .map(|o| (o.key.clone(), o.source.state()))
                .collect(),
        });
    }

    if any_full {
        let (tx, rx) = mpsc::channel::<BatchResult>(4);
        let writer = input
            .store
            .replace_stream(table, schema.clone(), rx, input.run_id);
        let producer = async {
            let result = feed(input, &mut opened, &key_columns, Some(&tx), &mut Vec::new()).await;
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
        let ((rows_fetched, pages, per_source), write) = match (fed, written) {
            (Err(e @ RunError::Internal(_)), Err(w)) => {
                tracing::debug!(error = %e, "the producer saw the writer stop");
                return Err(w.into());
            }
            (Err(e), _) => return Err(e),
            (Ok(_), Err(w)) => return Err(w.into()),
            (Ok(fed), Ok(w)) => (fed, w),
        };
        return Ok(Loaded {
            kind: LoadKind::Full,
            write,
            rows_fetched,
            pages,
            sources: opened
                .iter()
                .zip(per_source)
                .map(|(o, n)| info(input, o, n))
                .collect(),
            states: opened
                .iter()
                .map(|o| (o.key.clone(), o.source.state()))
                .collect(),
        });
    }

    // A refresh: gather the changes (small by nature), one row per key, merge.
    let mut batches = Vec::new();
    let (rows_fetched, pages, per_source) =
        feed(input, &mut opened, &key_columns, None, &mut batches).await?;
    let changes = newest_per_key(&schema, batches, &key_columns)?;
    let write = input
        .store
        .merge(
            table,
            schema,
            changes.into_iter().collect(),
            &key_columns,
            input.run_id,
        )
        .await?;
    Ok(Loaded {
        kind: LoadKind::Changes,
        write,
        rows_fetched,
        pages,
        sources: opened
            .iter()
            .zip(per_source)
            .map(|(o, n)| info(input, o, n))
            .collect(),
        states: opened
            .iter()
            .map(|o| (o.key.clone(), o.source.state()))
            .collect(),
    })
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

/// Read every page of every source, type it and either send it to the writer (`tx`) or keep
/// it (`keep`). Checks each source's distinct keys against the count its portal reported.
async fn feed(
    input: &LoadInput<'_>,
    opened: &mut [Opened],
    key_columns: &[String],
    tx: Option<&mpsc::Sender<BatchResult>>,
    keep: &mut Vec<RecordBatch>,
) -> Result<(u64, u64, Vec<u64>), RunError> {
    let pipeline = input.pipeline;
    let table_spec = &pipeline.spec.table;
    let mut total = 0u64;
    let mut pages = 0u64;
    let mut per_source = Vec::new();
    for (o, spec) in opened.iter_mut().zip(&pipeline.spec.sources) {
        let spec = spec.get_ref();
        let mut keys: HashSet<u64> = HashSet::new();
        let mut rows = 0u64;
        let mut next = o.first.take();
        while let Some(page) = next {
            let n = page.num_rows() as u64;
            rows += n;
            pages += 1;
            let batch = goalpost_table::map_page(&page, table_spec, spec.fields(), pipeline.tz)?;
            for h in key_hashes(&batch, key_columns) {
                keys.insert(h);
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
        let distinct = keys.len() as u64;
        if let Some(expected) = o.source.expected_rows()
            && distinct < expected
        {
            return Err(FetchError::Incomplete {
                source_name: o.source.describe(),
                expected,
                received: distinct,
                detail: format!(
                    " as distinct keys ({rows} rows in all: rows shifted between pages while they were read)"
                ),
            }
            .into());
        }
        if distinct < rows {
            tracing::warn!(source = %o.source.describe(), rows, distinct, "the source sent some keys more than once");
        }
        input.progress.source_done(&o.source.describe(), rows);
        tracing::info!(source = %o.source.describe(), rows, mode = o.source.load_kind().as_str(), "fetched");
        total += rows;
        per_source.push(rows);
    }
    Ok((total, pages, per_source))
}

/// The key of every row as a hash (for counting distinct keys in bounded memory).
fn key_hashes(batch: &RecordBatch, key_columns: &[String]) -> Vec<u64> {
    let texts = key_texts(batch, key_columns);
    texts
        .iter()
        .map(|t| {
            let mut h = DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        })
        .collect()
}

/// Each row's key as text (columns joined by a unit separator; NULL as an empty field).
fn key_texts(batch: &RecordBatch, key_columns: &[String]) -> Vec<String> {
    let columns: Vec<ArrayRef> = key_columns
        .iter()
        .filter_map(|k| batch.column_by_name(k))
        .map(|c| {
            arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).expect("keys cast to text")
        })
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            columns
                .iter()
                .map(|c| {
                    let c = c
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .expect("utf8");
                    if c.is_null(i) { "" } else { c.value(i) }
                })
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect()
}

/// One row per key, the last one fetched winning.
fn newest_per_key(
    schema: &arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
    key_columns: &[String],
) -> Result<Option<RecordBatch>, RunError> {
    let all = concat_batches(schema, &batches).map_err(|e| RunError::Internal(e.to_string()))?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let keys = key_texts(&all, key_columns);
    let mut last: HashMap<&str, u32> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        last.insert(k.as_str(), i as u32);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    let picked = take_record_batch(&all, &UInt32Array::from(keep))
        .map_err(|e| RunError::Internal(e.to_string()))?;
    Ok(Some(picked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn the_last_row_of_each_key_wins() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let b = |ids: Vec<i64>, vs: Vec<&str>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(vs)),
                ],
            )
            .unwrap()
        };
        let out = newest_per_key(
            &schema,
            vec![
                b(vec![1, 2, 3], vec!["a", "b", "c"]),
                b(vec![2, 4], vec!["B", "d"]),
            ],
            &["id".to_string()],
        )
        .unwrap()
        .unwrap();
        let ids = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let vs = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let got: Vec<(i64, &str)> = (0..out.num_rows())
            .map(|i| (ids.value(i), vs.value(i)))
            .collect();
        assert_eq!(got, [(1, "a"), (3, "c"), (2, "B"), (4, "d")]);
        assert_eq!(key_hashes(&out, &["id".into()]).len(), 4);
    }
}
