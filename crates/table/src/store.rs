//! Delta Lake tables under `data/tables/<name>/`.
//!
//! Every write is one commit that records the run id:
//! - [`TableStore::replace_stream`] replaces the table with rows that arrive as a stream of
//!   batches (a full load): the batches go straight into Parquet files as they come, so a
//!   source of millions of rows never sits in memory whole. Nothing is visible until the
//!   single commit at the end; a stream that ends in an error commits nothing.
//!   [`TableStore::replace`] does the same for batches in hand.
//! - [`TableStore::merge`] upserts changed rows by the table's key (an incremental refresh),
//!   deletes the records the source marks deleted, and on a partitioned table rewrites only
//!   the partitions the changed rows fall in.
//! - [`TableStore::dedupe`] settles a table a full load left with some keys more than once.
//! - [`TableStore::append`] adds rows (the quarantine of rejected rows).
//!
//! Files and history are looked after in [`maintenance`](crate::maintenance).
//!
//! Two settings hold for every write:
//! - one fixed set of Parquet writer properties ([`writer_properties`]), so the same rows in
//!   the same order give the same file bytes;
//! - one DataFusion partition ([`session`]), so rows reach the files in the order they were
//!   given: a write's output does not depend on thread scheduling, and "the later row" of a
//!   full load can still be told from the files (see [`TableStore::dedupe`]).

use crate::layout::Layout;
use crate::sink::Sink;
use arrow::array::AsArray as _;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use deltalake::datafusion::execution::context::SessionState;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::LogStore as _;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use goalpost_spec::Location;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a stream of batches for [`TableStore::replace_stream`] carries: a batch, or the reason
/// the load failed (which aborts the write).
pub type BatchResult = Result<RecordBatch, String>;

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table} does not exist yet")]
    Missing { table: String },
    #[error("table {table} at {path}: {source}")]
    Delta {
        table: String,
        path: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    /// Object storage could not be reached with the settings in the environment.
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    /// A table version could not be written out as one Parquet file.
    #[error("table {table}: writing {}: {message}", path.display())]
    Snapshot {
        table: String,
        path: PathBuf,
        message: String,
    },
    /// A column the layout names is not in the rows or the table.
    #[error("the {role} column \"{column}\" is not among the columns: {available}")]
    UnknownColumn {
        /// What the column is for: "key", "updated", "deletes", "partition".
        role: &'static str,
        column: String,
        available: String,
    },
    /// Arrow could not do something with the rows (a cast, a concatenation, a selection).
    #[error("{context}: {source}")]
    Arrow {
        context: &'static str,
        #[source]
        source: ArrowError,
    },
    /// A merge or dedupe needs the key that identifies a record.
    #[error("table {table} has no key: rows can only be merged or deduplicated by a key")]
    NoKey { table: String },
    #[error("table {table} has no version {version}: its latest version is {latest}")]
    NoSuchVersion {
        table: String,
        version: u64,
        latest: u64,
    },
    /// A commit in the table's Delta log could not be read as expected.
    #[error("table {table}: commit {version} in {path}: {detail}")]
    Log {
        table: String,
        path: String,
        version: u64,
        detail: String,
    },
}

impl TableError {
    pub(crate) fn arrow(context: &'static str) -> impl FnOnce(ArrowError) -> Self {
        move |source| Self::Arrow { context, source }
    }
}

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableWrite {
    /// The table's version after the commit.
    pub version: u64,
    /// Rows written: all of them for a replace or an append; inserted plus updated for a
    /// merge; the rows kept for a dedupe.
    pub rows: u64,
    /// For a merge: rows inserted.
    pub inserted: u64,
    /// For a merge: rows updated.
    pub updated: u64,
    /// For a merge: rows deleted because the source marked their record deleted. For a
    /// dedupe: the older copies (and deleted records) removed.
    pub deleted: u64,
    /// For a merge: data files read to find the matching rows (the rest were pruned).
    pub files_scanned: u64,
    /// Data files the commit removed: rewritten by a merge or dedupe, replaced by a replace.
    pub files_rewritten: u64,
    /// Data files the commit added.
    pub files_added: u64,
}

/// What a [`TableStore::merge`] did.
#[derive(Debug, Clone)]
pub struct Merged {
    pub write: TableWrite,
    /// On a partitioned table, the keys the merge added rather than matched in their
    /// partition: a record that moved from another partition is now stored twice, and
    /// [`TableStore::dedupe_within`] these keys settles it. `None` when nothing was added.
    pub to_settle: Option<RecordBatch>,
}

/// Table properties every table is created with, so its history stays readable.
///
/// After each commit delta-rs deletes commit files older than `delta.logRetentionDuration`
/// (once a checkpoint covers them) unless `delta.enableExpiredLogCleanup` is false. Our own
/// commits switch it off per commit as well, but an OPTIMIZE commit reads it from the table
/// only. Other Delta engines honour the retention duration. Removals are kept in checkpoints
/// for `delta.deletedFileRetentionDuration`; keeping them long means
/// [`TableStore::vacuum`] still knows every removed file and never leaks one.
pub(crate) const HISTORY_PROPERTIES: [(&str, &str); 3] = [
    ("delta.enableExpiredLogCleanup", "false"),
    ("delta.logRetentionDuration", "interval 3650 days"),
    ("delta.deletedFileRetentionDuration", "interval 3650 days"),
];

/// Rows in a row group of the files goalpost writes (the last one of a file may have fewer).
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The Parquet writer properties of every file goalpost writes. Everything that shapes the
/// bytes is fixed here rather than left to library defaults, so an upgrade does not silently
/// change them and the same rows give the same file.
pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by("goalpost".to_string())
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is within zstd's levels 1..=22"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(None)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .build()
}

/// The cores this machine gives the process (at least one).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A DataFusion session with one partition: scans and writes keep rows in order (see the
/// module docs). A write then runs on one thread, a small price on the two cores goalpost
/// targets.
pub(crate) fn session() -> Result<SessionContext, DeltaTableError> {
    session_with_partitions(1)
}

/// A session reading with `partitions` threads, for queries whose result does not depend on
/// the order rows are read in.
pub(crate) fn session_with_partitions(
    partitions: usize,
) -> Result<SessionContext, DeltaTableError> {
    let overrides = HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        partitions.max(1).to_string(),
    )]);
    Ok(DeltaSessionContext::new_with_session_overrides(&overrides)?.into_inner())
}

fn session_state() -> Result<Arc<SessionState>, DeltaTableError> {
    Ok(Arc::new(session()?.state()))
}

/// Commit metadata naming the run, with expired-log cleanup off (see [`HISTORY_PROPERTIES`]).
pub(crate) fn commit_properties(run_id: &str) -> CommitProperties {
    commit_properties_with(run_id, [])
}

/// [`commit_properties`] with more commit metadata.
pub(crate) fn commit_properties_with(
    run_id: &str,
    more: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> CommitProperties {
    let run = (
        "goalpost.run_id".to_string(),
        serde_json::Value::String(run_id.to_string()),
    );
    CommitProperties::default()
        .with_metadata(std::iter::once(run).chain(more))
        .with_cleanup_expired_logs(Some(false))
}

/// Quote a column name for SQL.
pub(crate) fn quote(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// Quote a text value for SQL.
pub(crate) fn quote_text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// SQL that is true when `column` (qualified as given) marks a deleted record: its value cast
/// to text is one of `values`. NULL is not a mark.
pub(crate) fn deleted_sql(column: &str, values: &[String]) -> String {
    if values.is_empty() {
        return "FALSE".to_string();
    }
    let list: Vec<String> = values.iter().map(|v| quote_text(v)).collect();
    format!(
        "COALESCE(CAST({column} AS VARCHAR) IN ({}), FALSE)",
        list.join(", ")
    )
}

/// The folder, or object-storage prefix, that holds every table.
#[derive(Debug, Clone)]
pub struct TableStore {
    root: Location,
}

impl TableStore {
    /// A store of tables under `root` (one folder or prefix per table). Object storage is
    /// reached through delta-rs's object stores, with credentials from the environment.
    pub fn new(root: impl Into<Location>) -> Self {
        Self { root: root.into() }
    }

    /// Where `table` is kept.
    pub fn path(&self, table: &str) -> Location {
        self.root.join(table)
    }

    fn url(&self, table: &str) -> Result<url::Url, TableError> {
        let location = self.path(table);
        match &location {
            Location::Local(path) => deltalake::ensure_table_uri(path.to_string_lossy()),
            Location::Remote(url) => Ok(url.clone()),
        }
        .map_err(|e| self.err(table, e))
    }

    pub(crate) fn err(&self, table: &str, source: DeltaTableError) -> TableError {
        TableError::Delta {
            table: table.to_string(),
            path: self.path(table).to_string(),
            source: Box::new(source),
        }
    }

    /// Whether the table has a Delta log: a folder on disk, a listing in object storage.
    pub(crate) async fn exists(&self, table: &str) -> Result<bool, TableError> {
        match self.path(table) {
            Location::Local(path) => Ok(path.join("_delta_log").is_dir()),
            Location::Remote(_) => {
                let handle = DeltaTableBuilder::from_url(self.url(table)?)
                    .and_then(|b| b.build())
                    .map_err(|e| self.err(table, e))?;
                handle
                    .log_store()
                    .is_delta_table_location()
                    .await
                    .map_err(|e| self.err(table, e))
            }
        }
    }

    pub(crate) fn missing(&self, table: &str) -> TableError {
        TableError::Missing {
            table: table.to_string(),
        }
    }

    /// A handle on the table: loaded at its latest version when it exists, otherwise an
    /// uninitialised one that a first write creates.
    pub(crate) async fn handle(&self, table: &str) -> Result<DeltaTable, TableError> {
        let url = self.url(table)?;
        if self.exists(table).await? {
            deltalake::open_table(url)
                .await
                .map_err(|e| self.err(table, e))
        } else {
            DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(|e| self.err(table, e))
        }
    }

    /// The handle of a table that must exist.
    pub(crate) async fn existing(&self, table: &str) -> Result<DeltaTable, TableError> {
        if !self.exists(table).await? {
            return Err(self.missing(table));
        }
        self.handle(table).await
    }

    /// The `commitInfo` of commit `version`, read from the Delta log itself (delta-rs's
    /// `history` lists from the newest commit, whatever version the handle is at).
    pub(crate) async fn commit_info(
        &self,
        table: &str,
        handle: &DeltaTable,
        version: u64,
    ) -> Result<serde_json::Value, TableError> {
        let log_error = |detail: String| TableError::Log {
            table: table.to_string(),
            path: self.path(table).join("_delta_log").to_string(),
            version,
            detail,
        };
        let bytes = handle
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(|e| self.err(table, e))?
            .ok_or_else(|| log_error("the commit file is missing".into()))?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| log_error(format!("a line is not JSON: {e}")))?;
            if let Some(info) = action.get_mut("commitInfo") {
                return Ok(info.take());
            }
        }
        Err(log_error("it has no commitInfo action".into()))
    }

    /// A write's file counts from its commit's `operationMetrics`: (removed, added).
    pub(crate) async fn write_file_counts(
        &self,
        table: &str,
        handle: &DeltaTable,
        version: u64,
    ) -> Result<(u64, u64), TableError> {
        let info = self.commit_info(table, handle, version).await?;
        let metric = |name: &str| {
            info.pointer(&format!("/operationMetrics/{name}"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Ok((metric("num_removed_files"), metric("num_added_files")))
    }

    /// Replace the table's contents with `batches` in one commit (a full refresh from a
    /// source that sends everything each time). The schema follows the batches, so a column
    /// added to the pipeline appears on the next run, and the partitioning follows `layout`.
    /// `run_id` is recorded in the commit. An empty refresh still commits, so the table says
    /// "no rows" rather than keeping yesterday's rows.
    pub async fn replace(
        &self,
        table: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        layout: &Layout,
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        let (tx, rx) = mpsc::channel(batches.len().max(1));
        for batch in batches {
            // The channel holds them all: this never waits and never fails.
            let _ = tx.try_send(Ok(batch));
        }
        drop(tx);
        self.replace_stream(table, schema, rx, layout, run_id).await
    }

    /// Replace the table with the batches arriving on `rows`, in one commit at the end, split
    /// into files by `layout`'s partition column (see [`sink`](crate::sink) for how the files
    /// are cut so that memory stays bounded). The sender ends the stream by dropping its
    /// side; it aborts the write by sending `Err`: nothing is committed and the files written
    /// so far are deleted.
    pub async fn replace_stream(
        &self,
        table: &str,
        schema: SchemaRef,
        rows: mpsc::Receiver<BatchResult>,
        layout: &Layout,
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        let handle = self.handle(table).await?;
        let (adds, count) = self
            .write_files(table, &handle, &schema, rows, layout)
            .await?;
        goalpost_spec::pause_point("table-write");
        self.commit_replace(table, &schema, layout, adds, count, run_id)
            .await
    }

    /// Write the batches arriving on `rows` into new data files of `handle`'s table, split by
    /// `layout`'s partition column, without committing them: the files written and the rows
    /// they hold. An `Err` on the channel, or a failed write, deletes the files written so
    /// far.
    pub(crate) async fn write_files(
        &self,
        table: &str,
        handle: &DeltaTable,
        schema: &SchemaRef,
        rows: mpsc::Receiver<BatchResult>,
        layout: &Layout,
    ) -> Result<(Vec<deltalake::kernel::Add>, u64), TableError> {
        let properties = handle.snapshot().ok().map(|s| s.table_config().clone());
        let sink = Sink::new(
            handle.log_store().object_store(None),
            schema,
            layout,
            properties.as_ref(),
        )?;
        // The files are encoded on a task of their own, so that on a second core they are
        // written while the sender reads and types the next rows.
        let writing = AbortOnDrop(tokio::spawn(async move {
            let (mut sink, mut rows) = (sink, rows);
            while let Some(item) = rows.recv().await {
                let written = match item {
                    Ok(batch) => sink.write(&batch).await,
                    Err(why) => Err(DeltaTableError::generic(format!("the load stopped: {why}"))),
                };
                if let Err(e) = written {
                    return (sink, Some(e));
                }
            }
            (sink, None)
        }));
        let (sink, failed) = writing.wait().await.map_err(|e| {
            self.err(
                table,
                DeltaTableError::generic(format!("the writer stopped: {e}")),
            )
        })?;
        if let Some(e) = failed {
            sink.abort().await;
            return Err(self.err(table, e));
        }
        let count = sink.rows();
        let adds = sink.close().await.map_err(|e| self.err(table, e))?;
        Ok((adds, count))
    }

    /// The [`TableWrite`] of a plain write that committed `rows` rows.
    async fn written(
        &self,
        table: &str,
        written: &DeltaTable,
        rows: u64,
    ) -> Result<TableWrite, TableError> {
        let version = written.version().unwrap_or(0);
        let (removed, added) = self.write_file_counts(table, written, version).await?;
        Ok(TableWrite {
            version,
            rows,
            files_rewritten: removed,
            files_added: added,
            ..Default::default()
        })
    }

    /// Add `batches` to the table, creating it (unpartitioned) when it does not exist yet.
    /// Columns the table lacks are added. `None` when there is nothing to add: no commit.
    pub async fn append(
        &self,
        table: &str,
        batches: Vec<RecordBatch>,
        run_id: &str,
    ) -> Result<Option<TableWrite>, TableError> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(None);
        }
        let written = self
            .handle(table)
            .await?
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_configuration(history_configuration())
            .with_writer_properties(writer_properties())
            .with_session_state(session_state().map_err(|e| self.err(table, e))?)
            .with_commit_properties(commit_properties(run_id))
            .await
            .map_err(|e| self.err(table, e))?;
        self.written(table, &written, rows).await.map(Some)
    }

    /// Upsert `batches` by `layout.key` in one commit: a row whose key is in the table
    /// replaces it, any other row is added; with `layout.deletes`, a row marked deleted
    /// removes its key from the table and is never added. The batches must hold each key
    /// once (see [`newest_per_key`](crate::newest_per_key)).
    ///
    /// On a partitioned table the rows are matched within their partition as well, which
    /// lets delta-rs read and rewrite only the files of the partitions the rows fall in. A
    /// record must therefore never change partitions (the spec says so): if it did, it would
    /// be added to its new partition and stay in its old one (a later
    /// [`dedupe`](Self::dedupe) settles that). Rows marking deletions are matched by key
    /// alone, in every partition, so a deletion whose partition value differs from the
    /// stored row's still finds it.
    ///
    /// With `layout.updated`, a source row older than the stored one does not replace it
    /// (an overlapping or out-of-order fetch cannot turn a record back).
    ///
    /// A source row the same as the stored one (every column equal, NULL equal to NULL)
    /// changes nothing and does not count as updated. A refresh re-fetches the records of an
    /// overlap window it already has, and a daily refresh of a feed touches old records as
    /// well as new: files whose rows all came back unchanged are then neither read into the
    /// new version nor rewritten, only those with a real change.
    pub async fn merge(
        &self,
        table: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        layout: &Layout,
        run_id: &str,
    ) -> Result<Merged, TableError> {
        if layout.key.is_empty() {
            return Err(TableError::NoKey {
                table: table.to_string(),
            });
        }
        let handle = self.existing(table).await?;
        let unchanged = Merged {
            write: TableWrite {
                version: handle.version().unwrap_or(0),
                ..Default::default()
            },
            to_settle: None,
        };
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(TableError::arrow("gathering the rows to merge"))?;
        drop(batches);
        if batch.num_rows() == 0 {
            // Nothing changed: no commit, the table stays at its version.
            return Ok(unchanged);
        }
        // The comparison only saves work: if it fails, the merge compares the rows itself.
        let compared = self
            .stale_rows(table, &handle, &batch, layout)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(table, error = %e, "could not compare the fetched rows' stamps with the stored ones first");
                None
            });
        let (batch, added, compared) = match compared {
            Some(compared) => {
                let fresh = arrow::compute::not(&compared.stale)
                    .map_err(TableError::arrow("leaving out the rows the table has"))?;
                let added = arrow::compute::filter_record_batch(&batch, &compared.added)
                    .map_err(TableError::arrow("finding the rows to add"))?;
                let replacing = arrow::compute::filter(&compared.replacing, &fresh)
                    .map_err(TableError::arrow("finding the replacing rows"))?
                    .as_boolean()
                    .clone();
                tracing::debug!(
                    table,
                    fetched = batch.num_rows(),
                    stale = compared.stale.true_count(),
                    "compared the fetched rows' stamps with the stored ones"
                );
                let batch = arrow::compute::filter_record_batch(&batch, &fresh)
                    .map_err(TableError::arrow("leaving out the rows the table has"))?;
                (batch, Some(added), Some((compared, replacing)))
            }
            None => (batch, None, None),
        };
        if batch.num_rows() == 0 {
            return Ok(unchanged);
        }
        let any_deletion =
            crate::dedupe::deleted_flags(&batch, layout)?.is_some_and(|f| f.true_count() > 0);
        let key_columns = |b: &RecordBatch| -> Result<RecordBatch, TableError> {
            let idx = layout
                .key
                .iter()
                .map(|k| b.schema().index_of(k))
                .collect::<Result<Vec<usize>, _>>()
                .map_err(TableError::arrow("finding the key columns"))?;
            b.project(&idx)
                .map_err(TableError::arrow("finding the key columns"))
        };
        // Rows matched in their partition are replaced in place; a row added may be a record
        // that moved from another partition. Which rows are added is known after a comparison;
        // without one, any of them may be.
        let may_move = match &layout.partition {
            Some(_) => Some(key_columns(added.as_ref().unwrap_or(&batch))?),
            None => None,
        };
        let to_settle = |inserted: u64| {
            may_move
                .clone()
                .filter(|k| inserted > 0 && k.num_rows() > 0)
        };
        if let Some((compared, replacing)) = &compared
            && compared.all_older
            && !any_deletion
            && same_columns(&handle, &schema, layout)
        {
            // The stamps say which stored rows each fetched row replaces, and that each of
            // them differs: rewrite the files they are in, read nothing else.
            if let Some(write) = self
                .merge_by_rewrite(
                    table,
                    &handle,
                    &schema,
                    batch.clone(),
                    replacing,
                    &compared.files,
                    layout,
                    run_id,
                )
                .await?
            {
                return Ok(Merged {
                    to_settle: to_settle(write.inserted),
                    write,
                });
            }
        }
        let source = SessionContext::new()
            .read_batch(batch)
            .map_err(|e| self.err(table, e.into()))?;
        let predicate = merge_predicate(layout, !any_deletion);
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let deleted = layout
            .deletes
            .as_ref()
            .map(|(column, values)| deleted_sql(&format!("source.{}", quote(column)), values));
        let mut builder = handle
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_writer_properties(writer_properties())
            .with_session_state(session_state().map_err(|e| self.err(table, e))?)
            .with_commit_properties(commit_properties(run_id));
        // The first matching clause wins: a row marked deleted deletes, any other updates.
        if let Some(deleted) = &deleted {
            builder = builder
                .when_matched_delete(|d| d.predicate(deleted.clone()))
                .map_err(|e| self.err(table, e))?;
        }
        let changed = columns
            .iter()
            .map(|c| format!("(source.{c} IS DISTINCT FROM target.{c})", c = quote(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let newer = match &layout.updated {
            Some(c) => {
                let c = quote(c);
                format!("(target.{c} IS NULL OR source.{c} > target.{c}) AND ({changed})")
            }
            None => changed,
        };
        let (written, metrics) = builder
            .when_matched_update(|mut u| {
                for c in &columns {
                    u = u.update(quote(c), format!("source.{}", quote(c)));
                }
                u.predicate(newer.clone())
            })
            .and_then(|b| {
                b.when_not_matched_insert(|mut i| {
                    for c in &columns {
                        i = i.set(quote(c), format!("source.{}", quote(c)));
                    }
                    match &deleted {
                        Some(deleted) => i.predicate(format!("NOT ({deleted})")),
                        None => i,
                    }
                })
            })
            .map_err(|e| self.err(table, e))?
            .await
            .map_err(|e| self.err(table, e))?;
        let inserted = metrics.num_target_rows_inserted as u64;
        let updated = metrics.num_target_rows_updated as u64;
        let to_settle = to_settle(inserted);
        Ok(Merged {
            write: TableWrite {
                version: written.version().unwrap_or(0),
                rows: inserted + updated,
                inserted,
                updated,
                deleted: metrics.num_target_rows_deleted as u64,
                files_scanned: metrics.num_target_files_scanned as u64,
                files_rewritten: metrics.num_target_files_removed as u64,
                files_added: metrics.num_target_files_added as u64,
            },
            to_settle,
        })
    }

    /// The table's current Arrow schema, or `None` when it does not exist yet.
    pub async fn schema(&self, table: &str) -> Result<Option<SchemaRef>, TableError> {
        if !self.exists(table).await? {
            return Ok(None);
        }
        let handle = self.handle(table).await?;
        let snapshot = handle.snapshot().map_err(|e| self.err(table, e))?;
        Ok(Some(snapshot.snapshot().arrow_schema()))
    }

    /// The table's latest version, or `None` when it does not exist yet.
    pub async fn latest_version(&self, table: &str) -> Result<Option<u64>, TableError> {
        if !self.exists(table).await? {
            return Ok(None);
        }
        Ok(self.handle(table).await?.version())
    }

    /// Whether the table has been created.
    pub async fn table_exists(&self, table: &str) -> Result<bool, TableError> {
        self.exists(table).await
    }

    /// Open a table as it was at `version` (Delta time travel), so figures are computed from
    /// exactly the version their provenance names even if another write has landed since.
    pub async fn open_version(&self, table: &str, version: u64) -> Result<DeltaTable, TableError> {
        if !self.exists(table).await? {
            return Err(self.missing(table));
        }
        let url = self.url(table)?;
        deltalake::open_table_with_version(url, version)
            .await
            .map_err(|e| self.err(table, e))
    }
}

/// The object store at `url` (`s3://`, `gs://`, `az://` …), rooted at its path, built the way
/// delta-rs builds a table's store: credentials and settings from the usual environment
/// variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
pub fn object_store(url: &url::Url) -> Result<deltalake::logstore::ObjectStoreRef, TableError> {
    deltalake::logstore::store_for(url, std::iter::empty::<(String, String)>()).map_err(|e| {
        TableError::Store {
            path: url.to_string(),
            source: Box::new(e),
        }
    })
}

/// Whether the table's columns are `schema`'s (names and types, in order) and its files are
/// split by `layout`'s partition column.
fn same_columns(handle: &DeltaTable, schema: &SchemaRef, layout: &Layout) -> bool {
    let Ok(snapshot) = handle.snapshot() else {
        return false;
    };
    let stored = snapshot.snapshot().arrow_schema();
    snapshot.metadata().partition_columns() == layout.partition_columns()
        && stored.fields().len() == schema.fields().len()
        && stored
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

/// [`HISTORY_PROPERTIES`] as a write's table configuration (used when the write creates the
/// table).
pub(crate) fn history_configuration() -> Vec<(String, Option<String>)> {
    HISTORY_PROPERTIES
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// A spawned task that is aborted when its handle is dropped before it ends: a cancelled
/// write stops writing, a failed run stops its other work.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// The task's result, once it ends.
    pub async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The merge's match condition: the key, and (with `prune`) the partition column when the
/// table has one.
///
/// delta-rs builds an early filter from the condition (`merge/filter.rs`): a comparison of
/// `target.<partition column>` with a bare `source.<column>` becomes one term per distinct
/// partition value in the source, and only the files of those partitions are read and
/// rewritten. Key equalities add min/max ranges that prune further by file statistics. The
/// comparison must be a plain binary expression between the two column references (no
/// function or OR around it) for delta-rs to recognise it. `IS NOT DISTINCT FROM` is such a
/// comparison and also matches a record whose partition value is NULL.
pub(crate) fn merge_predicate(layout: &Layout, prune: bool) -> String {
    let mut terms: Vec<String> = layout
        .key
        .iter()
        .map(|k| format!("target.{} = source.{}", quote(k), quote(k)))
        .collect();
    if let Some(p) = &layout.partition
        && prune
        && !layout.key.contains(p)
    {
        terms.push(format!(
            "target.{} IS NOT DISTINCT FROM source.{}",
            quote(p),
            quote(p)
        ));
    }
    terms.join(" AND ")
}

#[cfg(test)]
pub(crate) mod tests {
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
            .replace(
                "t",
                schema.clone(),
                vec![batch(&[1, 2, 3])],
                &Layout::default(),
                "r1",
            )
            .await
            .unwrap();
        let second = store
            .replace(
                "t",
                schema.clone(),
                vec![batch(&[4, 5])],
                &Layout::default(),
                "r2",
            )
            .await
            .unwrap();
        assert_eq!((first.version, first.rows), (0, 3));
        assert_eq!((second.version, second.rows), (1, 2));
        assert_eq!(rows(&store.open_version("t", 0).await.unwrap()).await, 3);
        assert_eq!(rows(&store.open_version("t", 1).await.unwrap()).await, 2);
        // An empty refresh empties the table rather than keeping old rows.
        let empty = store
            .replace("t", schema, vec![], &Layout::default(), "r3")
            .await
            .unwrap();
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

    /// Every cell of `sql`'s result over `table` (registered as `t`) as text, row by row.
    pub(crate) async fn text_rows(table: &DeltaTable, sql: &str) -> Vec<Vec<String>> {
        use arrow::array::AsArray;
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let columns: Vec<_> = b
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
                .collect();
            for i in 0..b.num_rows() {
                out.push(
                    columns
                        .iter()
                        .map(|c| c.as_string::<i32>().value(i).to_string())
                        .collect(),
                );
            }
        }
        out
    }

    async fn contents(table: &DeltaTable) -> Vec<(i64, String)> {
        text_rows(table, "SELECT id, v FROM t ORDER BY id")
            .await
            .into_iter()
            .map(|r| (r[0].parse().unwrap(), r[1].clone()))
            .collect()
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
            .replace_stream("t", schema.clone(), rx, &Layout::default(), "r1")
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
            .replace_stream("t", schema, rx, &Layout::default(), "r2")
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
                &Layout::default(),
                "r1",
            )
            .await
            .unwrap();
        let layout = Layout {
            key: vec!["id".to_string()],
            ..Default::default()
        };
        let w = store
            .merge(
                "t",
                schema.clone(),
                vec![keyed(&[(2, "B"), (4, "d")])],
                &layout,
                "r2",
            )
            .await
            .unwrap()
            .write;
        assert_eq!((w.version, w.inserted, w.updated), (1, 1, 1));
        let rows = contents(&store.open_version("t", 1).await.unwrap()).await;
        let expected: Vec<(i64, String)> = [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
            .iter()
            .map(|(i, v)| (*i, v.to_string()))
            .collect();
        assert_eq!(rows, expected);
        // No changes: no commit.
        let w = store
            .merge("t", schema, vec![], &layout, "r3")
            .await
            .unwrap()
            .write;
        assert_eq!((w.version, w.rows), (1, 0));
    }
}
