//! Delta Lake tables under `data/tables/<name>/`.
//!
//! Two ways to write, each one commit:
//! - [`TableStore::replace_stream`] replaces the table with rows that arrive as a stream of
//!   batches (a full load): the batches go straight into Parquet files as they come, so a
//!   source of millions of rows never sits in memory whole. Nothing is visible until the
//!   single commit at the end; a stream that ends in an error commits nothing.
//! - [`TableStore::merge`] upserts changed rows by the table's key (an incremental refresh).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::common::DataFusionError;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What a stream of batches for [`TableStore::replace_stream`] carries: a batch, or the reason
/// the load failed (which aborts the write).
pub type BatchResult = Result<RecordBatch, String>;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table} does not exist yet")]
    Missing { table: String },
    #[error("table {table} at {}: {source}", path.display())]
    Delta {
        table: String,
        path: PathBuf,
        #[source]
        source: Box<DeltaTableError>,
    },
}

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableWrite {
    /// The table's version after the commit.
    pub version: u64,
    /// Rows written: all of them for a replace; inserted plus updated for a merge.
    pub rows: u64,
    /// For a merge: rows inserted, rows updated and data files rewritten.
    pub inserted: u64,
    pub updated: u64,
    pub files_rewritten: u64,
}

/// The folder that holds every table.
#[derive(Debug, Clone)]
pub struct TableStore {
    root: PathBuf,
}

impl TableStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self, table: &str) -> PathBuf {
        self.root.join(table)
    }

    fn err(&self, table: &str, source: DeltaTableError) -> TableError {
        TableError::Delta {
            table: table.to_string(),
            path: self.path(table),
            source: Box::new(source),
        }
    }

    fn exists(&self, table: &str) -> bool {
        self.path(table).join("_delta_log").is_dir()
    }

    /// A handle on the table: loaded at its latest version when it exists, otherwise an
    /// uninitialised one that a first write creates.
    async fn handle(&self, table: &str) -> Result<DeltaTable, TableError> {
        let url = deltalake::ensure_table_uri(self.path(table).to_string_lossy())
            .map_err(|e| self.err(table, e))?;
        if self.exists(table) {
            deltalake::open_table(url)
                .await
                .map_err(|e| self.err(table, e))
        } else {
            DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(|e| self.err(table, e))
        }
    }

    /// Replace the table's contents with `batches` in one commit (a full refresh from a
    /// source that sends everything each time). The schema follows the batches, so a column
    /// added to the pipeline appears on the next run. `run_id` is recorded in the commit.
    pub async fn replace(
        &self,
        table: &str,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        // An empty refresh still commits, so the table says "no rows" rather than keeping
        // yesterday's rows.
        let batches = if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        let commit = commit_properties(run_id);
        let written = self
            .handle(table)
            .await?
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_commit_properties(commit)
            .await
            .map_err(|e| self.err(table, e))?;
        Ok(TableWrite {
            version: written.version().unwrap_or(0),
            rows,
            ..Default::default()
        })
    }

    /// Replace the table with the batches arriving on `rows`, in one commit at the end. The
    /// sender ends the stream by dropping its side; it aborts the write by sending `Err`.
    pub async fn replace_stream(
        &self,
        table: &str,
        schema: SchemaRef,
        rows: mpsc::Receiver<BatchResult>,
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        let counted = Arc::new(AtomicU64::new(0));
        let partition = ChannelPartition {
            schema: schema.clone(),
            rx: Mutex::new(Some(rows)),
            counted: counted.clone(),
        };
        let provider = StreamingTable::try_new(schema, vec![Arc::new(partition)])
            .map_err(|e| self.err(table, e.into()))?;
        let plan =
            LogicalPlanBuilder::scan("incoming", provider_as_source(Arc::new(provider)), None)
                .and_then(LogicalPlanBuilder::build)
                .map_err(|e| self.err(table, e.into()))?;
        let written = self
            .handle(table)
            .await?
            .write(vec![])
            .with_input_plan(plan)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_commit_properties(commit_properties(run_id))
            .await
            .map_err(|e| self.err(table, e))?;
        Ok(TableWrite {
            version: written.version().unwrap_or(0),
            rows: counted.load(Ordering::Relaxed),
            ..Default::default()
        })
    }

    /// Upsert `batches` by `key`: a row whose key is in the table replaces it, any other row
    /// is added. The batches must hold each key once (dedupe before). One commit.
    pub async fn merge(
        &self,
        table: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        key: &[String],
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        if !self.exists(table) {
            return Err(TableError::Missing {
                table: table.to_string(),
            });
        }
        let handle = self.handle(table).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            // Nothing changed: no commit, the table stays at its version.
            return Ok(TableWrite {
                version: handle.version().unwrap_or(0),
                ..Default::default()
            });
        }
        let ctx = SessionContext::new();
        let source = ctx
            .read_batches(batches)
            .map_err(|e| self.err(table, e.into()))?;
        let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        let predicate = key
            .iter()
            .map(|k| format!("target.{} = source.{}", quote(k), quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let (written, metrics) = handle
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_commit_properties(commit_properties(run_id))
            .when_matched_update(|mut u| {
                for c in &columns {
                    u = u.update(quote(c), format!("source.{}", quote(c)));
                }
                u
            })
            .and_then(|b| {
                b.when_not_matched_insert(|mut i| {
                    for c in &columns {
                        i = i.set(quote(c), format!("source.{}", quote(c)));
                    }
                    i
                })
            })
            .map_err(|e| self.err(table, e))?
            .await
            .map_err(|e| self.err(table, e))?;
        let inserted = metrics.num_target_rows_inserted as u64;
        let updated = metrics.num_target_rows_updated as u64;
        Ok(TableWrite {
            version: written.version().unwrap_or(0),
            rows: inserted + updated,
            inserted,
            updated,
            files_rewritten: metrics.num_target_files_removed as u64,
        })
    }

    /// The table's current Arrow schema, or `None` when it does not exist yet.
    pub async fn schema(&self, table: &str) -> Result<Option<SchemaRef>, TableError> {
        if !self.exists(table) {
            return Ok(None);
        }
        let handle = self.handle(table).await?;
        let snapshot = handle.snapshot().map_err(|e| self.err(table, e))?;
        Ok(Some(snapshot.snapshot().arrow_schema()))
    }

    /// The table's latest version, or `None` when it does not exist yet.
    pub async fn latest_version(&self, table: &str) -> Result<Option<u64>, TableError> {
        if !self.exists(table) {
            return Ok(None);
        }
        Ok(self.handle(table).await?.version())
    }

    pub fn table_exists(&self, table: &str) -> bool {
        self.exists(table)
    }

    /// Open a table as it was at `version` (Delta time travel), so figures are computed from
    /// exactly the version their provenance names even if another write has landed since.
    pub async fn open_version(&self, table: &str, version: u64) -> Result<DeltaTable, TableError> {
        if !self.exists(table) {
            return Err(TableError::Missing {
                table: table.to_string(),
            });
        }
        let url = deltalake::ensure_table_uri(self.path(table).to_string_lossy())
            .map_err(|e| self.err(table, e))?;
        deltalake::open_table_with_version(url, version)
            .await
            .map_err(|e| self.err(table, e))
    }
}

fn commit_properties(run_id: &str) -> CommitProperties {
    CommitProperties::default().with_metadata([(
        "goalpost.run_id".to_string(),
        serde_json::Value::String(run_id.to_string()),
    )])
}

/// A scan whose one partition is the batches arriving on a channel.
struct ChannelPartition {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<BatchResult>>>,
    counted: Arc<AtomicU64>,
}

impl std::fmt::Debug for ChannelPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelPartition")
    }
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().expect("channel partition lock").take();
        let counted = self.counted.clone();
        let stream = futures::stream::unfold(rx, move |rx| {
            let counted = counted.clone();
            async move {
                // A second execution has nothing to read: it must not see the rows twice.
                let mut rx = rx?;
                let item = rx.recv().await?;
                let item = item
                    .inspect(|b| {
                        counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                    })
                    .map_err(|m| DataFusionError::External(m.into()));
                Some((item, Some(rx)))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    async fn rows(table: &DeltaTable) -> usize {
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT n FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches.iter().map(RecordBatch::num_rows).sum()
    }

    #[tokio::test]
    async fn replacing_commits_a_new_version_and_old_versions_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = batch(&[]).schema();
        let first = store
            .replace("t", schema.clone(), vec![batch(&[1, 2, 3])], "r1")
            .await
            .unwrap();
        let second = store
            .replace("t", schema.clone(), vec![batch(&[4, 5])], "r2")
            .await
            .unwrap();
        assert_eq!((first.version, first.rows), (0, 3));
        assert_eq!((second.version, second.rows), (1, 2));
        assert_eq!(rows(&store.open_version("t", 0).await.unwrap()).await, 3);
        assert_eq!(rows(&store.open_version("t", 1).await.unwrap()).await, 2);
        // An empty refresh empties the table rather than keeping old rows.
        let empty = store.replace("t", schema, vec![], "r3").await.unwrap();
        assert_eq!(
            rows(&store.open_version("t", empty.version).await.unwrap()).await,
            0
        );
        assert!(matches!(
            store.open_version("missing", 0).await,
            Err(TableError::Missing { .. })
        ));
    }

    fn keyed(rows: &[(i64, &str)]) -> RecordBatch {
        use arrow::array::StringArray;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    async fn contents(table: &DeltaTable) -> Vec<(i64, String)> {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT id, v FROM t ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let vs = arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap();
            let vs = vs.as_string::<i32>();
            for i in 0..b.num_rows() {
                out.push((ids.value(i), vs.value(i).to_string()));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_streamed_replace_commits_once_and_an_aborted_one_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = keyed(&[]).schema();
        let (tx, rx) = mpsc::channel(2);
        let feed = tokio::spawn(async move {
            for i in 0..5 {
                tx.send(Ok(keyed(&[(i * 2, "a"), (i * 2 + 1, "b")])))
                    .await
                    .unwrap();
            }
        });
        let w = store
            .replace_stream("t", schema.clone(), rx, "r1")
            .await
            .unwrap();
        feed.await.unwrap();
        assert_eq!((w.version, w.rows), (0, 10));
        assert_eq!(
            contents(&store.open_version("t", 0).await.unwrap())
                .await
                .len(),
            10
        );

        let (tx, rx) = mpsc::channel(2);
        let feed = tokio::spawn(async move {
            tx.send(Ok(keyed(&[(100, "x")]))).await.unwrap();
            let _ = tx.send(Err("page 2 failed".into())).await;
        });
        let err = store
            .replace_stream("t", schema, rx, "r2")
            .await
            .unwrap_err();
        feed.await.unwrap();
        assert!(err.to_string().contains("page 2 failed"), "{err}");
        let table = store.handle("t").await.unwrap();
        assert_eq!(table.version(), Some(0), "a failed load commits nothing");
    }

    #[tokio::test]
    async fn merge_updates_matching_keys_and_inserts_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = keyed(&[]).schema();
        store
            .replace(
                "t",
                schema.clone(),
                vec![keyed(&[(1, "a"), (2, "b"), (3, "c")])],
                "r1",
            )
            .await
            .unwrap();
        let key = vec!["id".to_string()];
        let w = store
            .merge(
                "t",
                schema.clone(),
                vec![keyed(&[(2, "B"), (4, "d")])],
                &key,
                "r2",
            )
            .await
            .unwrap();
        assert_eq!((w.version, w.inserted, w.updated), (1, 1, 1));
        let rows = contents(&store.open_version("t", 1).await.unwrap()).await;
        let expected: Vec<(i64, String)> = [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
            .iter()
            .map(|(i, v)| (*i, v.to_string()))
            .collect();
        assert_eq!(rows, expected);
        // No changes: no commit.
        let w = store.merge("t", schema, vec![], &key, "r3").await.unwrap();
        assert_eq!((w.version, w.rows), (1, 0));
    }
}
