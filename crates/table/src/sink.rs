//! A full load's rows written straight into the table's Parquet files, with the memory the
//! unfinished files hold kept within a bound however many rows come.
//!
//! A Parquet writer holds its unfinished row group in memory: encoded pages, the value
//! dictionaries and a compression context per column. delta-rs's own write keeps one writer
//! open per partition until the write ends, so a load whose rows span 24 months holds 24
//! unfinished row groups at once, and more rows per month mean fuller ones. Here a file is
//! finished as soon as its partition looks done, and when the unfinished row groups together
//! grow past [`BUFFERED_CELLS`]:
//! - a file that got no rows for [`IDLE_BATCHES`] batches is finished. Sources are mostly in
//!   time order, so a month's rows come together and its file is finished a few batches after
//!   the month ends: one file per partition, or several of the table's target file size
//!   (`delta.targetFileSize`, 100 MB by default) each, cut between row groups;
//! - past the bound, the least recently written files are finished first. Rows in no order at
//!   all then make more, smaller files per partition; `goalpost compact` packs them.
//!
//! A partition whose file was finished and that gets rows again gets another file. Its files
//! must still sort in the order they were written (see [`TableStore::dedupe`]): the first
//! lies in the partition's folder as delta-rs names it (`part-00000-<uuid>…`), the n-th in a
//! subfolder `r<n>` (8 digits), and `part-` sorts before `r`.
//!
//! Nothing is visible until [`TableStore::commit_replace`] commits the files in one version.

use crate::datafile::{FileConfig, FileWriter, delete_files};
use crate::layout::Layout;
use crate::store::{
    TableError, TableStore, TableWrite, commit_properties_with, history_configuration,
    writer_properties,
};
use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use delta_kernel::engine::arrow_conversion::TryIntoKernel as _;
use delta_kernel::expressions::Scalar;
use delta_kernel::schema::StructType;
use delta_kernel::table_properties::{DataSkippingNumIndexedCols, TableProperties};
use deltalake::kernel::scalars::ScalarExt as _;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, Metadata};
use deltalake::logstore::ObjectStoreRef;
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::{DeltaTableError, Path};
use indexmap::IndexMap;
use std::collections::HashMap;

/// Cells (rows × columns) the unfinished row groups of all open files may hold together
/// before the least recently written files are finished: about 180,000 rows of a table of 11
/// columns.
pub(crate) const BUFFERED_CELLS: usize = 2_000_000;

/// Parts of a file (5 MB each) on their way to storage at once. delta-rs sends 10, which a
/// file of more than one row group fills as its row groups complete: 50 MB held for a
/// local disk that takes each part in milliseconds.
const UPLOADS_IN_FLIGHT: usize = 2;

/// A file that got no rows in this many batches is finished: its partition is most likely done.
pub(crate) const IDLE_BATCHES: u64 = 4;

/// A column whose first batch holds at least this many values, more than half of them
/// distinct, is written without a value dictionary (see [`Sink::properties_for`]).
const DICTIONARY_SAMPLE: usize = 1_000;

/// Split a batch into runs of one partition value by slicing when it holds at most this many
/// runs; otherwise gather each value's rows (rows in no order would make a slice per row).
const MAX_SLICES: usize = 32;

/// One open file: the rows of one partition since the file was started.
struct OpenFile {
    /// The partition's folder (`name=value`, or empty for an unpartitioned table).
    folder: String,
    writer: FileWriter,
    /// Rows written to the file.
    rows: usize,
    /// The number of the last batch that gave it rows.
    last_batch: u64,
}

/// Writes the batches of a full load into data files, partition by partition.
pub(crate) struct Sink {
    store: ObjectStoreRef,
    /// The file columns (the table's columns but the partition column).
    file_schema: SchemaRef,
    file_columns: Vec<usize>,
    /// The partition column's index in the table's columns.
    partition: Option<usize>,
    partition_name: String,
    num_indexed_cols: DataSkippingNumIndexedCols,
    /// The table's `delta.dataSkippingStatsColumns`, when set.
    stats_columns: Option<Vec<String>>,
    /// The Parquet writer properties of the files, chosen from the first batch.
    properties: Option<deltalake::parquet::file::properties::WriterProperties>,
    /// A file grows to about this size (the table's `delta.targetFileSize`), then the
    /// partition's rows go on in a new one.
    target_file_size: std::num::NonZeroU64,
    /// See [`BUFFERED_CELLS`].
    bound: usize,
    open: Vec<OpenFile>,
    /// How many files each partition folder has had.
    started: HashMap<String, u32>,
    /// The files finished so far.
    adds: Vec<Add>,
    batches: u64,
    rows: u64,
}

impl Sink {
    /// A sink for rows of `schema` into the table whose object store is `store`, split by
    /// `layout`'s partition column. `properties` are the table's, when it exists: they say
    /// how large a file grows and which columns get statistics.
    pub(crate) fn new(
        store: ObjectStoreRef,
        schema: &SchemaRef,
        layout: &Layout,
        properties: Option<&TableProperties>,
    ) -> Result<Self, TableError> {
        let defaults = TableProperties::default();
        let properties = properties.unwrap_or(&defaults);
        let partition = match &layout.partition {
            None => None,
            Some(p) => Some(
                schema
                    .index_of(p)
                    .map_err(|_| crate::dedupe::unknown_column("partition", p, schema))?,
            ),
        };
        let file_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| Some(*i) != partition)
            .collect();
        let file_schema = schema
            .project(&file_columns)
            .map_err(TableError::arrow("the columns of the data files"))?;
        Ok(Self {
            store,
            file_schema: file_schema.into(),
            file_columns,
            partition,
            partition_name: layout.partition.clone().unwrap_or_default(),
            num_indexed_cols: properties.num_indexed_cols(),
            target_file_size: properties.target_file_size(),
            stats_columns: properties
                .data_skipping_stats_columns
                .as_ref()
                .map(|columns| columns.iter().map(|c| c.to_string()).collect()),
            bound: BUFFERED_CELLS,
            open: Vec::new(),
            started: HashMap::new(),
            adds: Vec::new(),
            properties: None,
            batches: 0,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Write `batch` (with the table's columns) into the files of its partitions, then finish
    /// the files the bound calls for.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<(), DeltaTableError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.batches += 1;
        if self.properties.is_none() {
            self.properties = Some(self.properties_for(batch)?);
        }
        for (value, rows) in self.split(batch)? {
            let folder = match &value {
                None => String::new(),
                Some(v) => format!("{}={}", self.partition_name, v.serialize_encoded()),
            };
            let at = match self.open.iter().position(|f| f.folder == folder) {
                Some(at) => at,
                None => {
                    let file = self.start(folder, value)?;
                    self.open.push(file);
                    self.open.len() - 1
                }
            };
            let file = &mut self.open[at];
            let columns: Vec<ArrayRef> = self
                .file_columns
                .iter()
                .map(|i| rows.column(*i).clone())
                .collect();
            let rows = RecordBatch::try_new(self.file_schema.clone(), columns)?;
            file.writer.write(&rows).await?;
            file.rows += rows.num_rows();
            file.last_batch = self.batches;
        }
        self.rows += batch.num_rows() as u64;
        self.settle().await
    }

    /// A new file for the partition in `folder` (`value` its partition value).
    fn start(
        &mut self,
        folder: String,
        value: Option<Scalar>,
    ) -> Result<OpenFile, DeltaTableError> {
        let n = self.started.entry(folder.clone()).or_default();
        let prefix = match *n {
            0 => Path::parse(&folder)?,
            n if folder.is_empty() => Path::parse(format!("r{n:08}"))?,
            n => Path::parse(format!("{folder}/r{n:08}"))?,
        };
        *n += 1;
        let values: IndexMap<String, Scalar> = value
            .map(|v| (self.partition_name.clone(), v))
            .into_iter()
            .collect();
        // A new file starts only between row groups, so none ends in a short one.
        let writer = FileWriter::new(FileConfig {
            store: self.store.clone(),
            schema: self.file_schema.clone(),
            properties: self.properties.clone().unwrap_or_else(writer_properties),
            partition_values: values,
            prefix,
            target_file_size: self.target_file_size.get(),
            uploads_in_flight: UPLOADS_IN_FLIGHT,
            num_indexed_cols: self.num_indexed_cols,
            stats_columns: self.stats_columns.clone(),
        });
        Ok(OpenFile {
            folder,
            writer,
            rows: 0,
            last_batch: self.batches,
        })
    }

    /// The writer properties for files of rows like `batch`'s: goalpost's own
    /// ([`writer_properties`]), but that a column of mostly distinct values gets no value
    /// dictionary. A dictionary pays where values repeat (a category, a status: an index of a
    /// few bits per row); of ids, timestamps and coordinates it is a second copy of the
    /// values plus an index, and building it hashes every value. At 1 million 311 rows,
    /// leaving it out for the six such columns made the files 20 % smaller and the load 5 %
    /// faster. Parquet's writer gives a dictionary up only past 1 MB of it, which a row
    /// group of 131,072 8-byte ids just fits in.
    fn properties_for(
        &self,
        batch: &RecordBatch,
    ) -> Result<deltalake::parquet::file::properties::WriterProperties, DeltaTableError> {
        use deltalake::parquet::schema::types::ColumnPath;
        let mut properties = writer_properties().into_builder();
        for i in &self.file_columns {
            let column = batch.column(*i);
            let values = column.len() - column.null_count();
            if values < DICTIONARY_SAMPLE {
                continue;
            }
            // A type the row format cannot hold keeps its dictionary.
            let Ok(converter) = RowConverter::new(vec![SortField::new(column.data_type().clone())])
            else {
                continue;
            };
            let Ok(rows) = converter.convert_columns(std::slice::from_ref(column)) else {
                continue;
            };
            let distinct: std::collections::HashSet<&[u8]> = (0..rows.num_rows())
                .filter(|r| column.is_valid(*r))
                .map(|r| rows.row(r).data())
                .collect();
            if distinct.len() * 2 > values {
                let name = batch.schema().field(*i).name().clone();
                properties =
                    properties.set_column_dictionary_enabled(ColumnPath::from(name), false);
            }
        }
        Ok(properties.build())
    }

    /// `batch` as runs of rows of one partition value each, in the order of their first row,
    /// each run's rows in their order. One run of the whole batch when the table has no
    /// partition column.
    fn split(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(Option<Scalar>, RecordBatch)>, DeltaTableError> {
        let Some(p) = self.partition else {
            return Ok(vec![(None, batch.clone())]);
        };
        let column = batch.column(p);
        let value = |row: usize| {
            Scalar::from_array(column.as_ref(), row).ok_or_else(|| {
                DeltaTableError::generic(format!(
                    "the partition column {} holds values of type {}, which cannot partition a table",
                    self.partition_name,
                    column.data_type()
                ))
            })
        };
        let runs = arrow::compute::partition(std::slice::from_ref(column))?;
        if runs.len() <= MAX_SLICES {
            return runs
                .ranges()
                .into_iter()
                .map(|r| Ok((Some(value(r.start)?), batch.slice(r.start, r.end - r.start))))
                .collect();
        }
        // Rows of many values interleaved: gather each value's rows.
        let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())])?;
        let keys = converter.convert_columns(std::slice::from_ref(column))?;
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        for row in 0..batch.num_rows() {
            let key = keys.row(row);
            let g = *index.entry(key.data()).or_insert_with(|| {
                groups.push((row, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(row as u32);
        }
        groups
            .into_iter()
            .map(|(first, rows)| {
                let rows = take_record_batch(batch, &UInt32Array::from(rows))?;
                Ok((Some(value(first)?), rows))
            })
            .collect()
    }

    /// Finish the files whose partition looks done, then the least recently written ones
    /// while the unfinished row groups hold more than the bound ([`BUFFERED_CELLS`]), as
    /// long as more than one file is open.
    async fn settle(&mut self) -> Result<(), DeltaTableError> {
        let now = self.batches;
        loop {
            // Not in the loop's condition: its borrow of the files would last over the await.
            let idle = self
                .open
                .iter()
                .position(|f| now - f.last_batch >= IDLE_BATCHES);
            match idle {
                Some(at) => self.finish(at).await?,
                None => break,
            }
        }
        let width = self.file_columns.len().max(1);
        loop {
            let buffered: usize = self
                .open
                .iter()
                .map(|f| f.writer.buffered_rows() * width)
                .sum();
            if buffered <= self.bound {
                return Ok(());
            }
            if self.open.len() < 2 {
                // One file alone is bounded by its row group.
                return Ok(());
            }
            // The least recently written; of those, the one holding the most.
            let oldest = self
                .open
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (f.last_batch, std::cmp::Reverse(f.writer.buffered_rows())))
                .map(|(at, _)| at);
            if let Some(at) = oldest {
                self.finish(at).await?;
            }
        }
    }

    /// Finish the open file at `at`: its last row group and footer are written.
    async fn finish(&mut self, at: usize) -> Result<(), DeltaTableError> {
        let file = self.open.swap_remove(at);
        tracing::trace!(folder = %file.folder, rows = file.rows, "finished a data file");
        self.adds.extend(file.writer.close().await?);
        Ok(())
    }

    /// Finish every open file: the data files written, in the order they were started
    /// within each partition.
    pub(crate) async fn close(mut self) -> Result<Vec<Add>, DeltaTableError> {
        while !self.open.is_empty() {
            if let Err(e) = self.finish(0).await {
                // The file that failed cleaned up after itself; the others go too.
                self.abort().await;
                return Err(e);
            }
        }
        self.adds.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.adds)
    }

    /// Give up: stop the open files' uploads and delete the files already finished. Nothing
    /// was committed, so no version lists them; what cannot be deleted now, a vacuum does.
    pub(crate) async fn abort(self) {
        for file in self.open {
            file.writer.abort().await;
        }
        delete_files(&self.store, &self.adds).await;
    }
}

impl TableStore {
    /// Commit `adds`, the data files of a full load of `rows` rows with `schema`, as the whole
    /// table: every file of the current version is removed. Creates the table when it does
    /// not exist yet; takes the new columns and partitioning when they changed.
    pub(crate) async fn commit_replace(
        &self,
        table: &str,
        schema: &SchemaRef,
        layout: &Layout,
        adds: Vec<Add>,
        rows: u64,
        run_id: &str,
    ) -> Result<TableWrite, TableError> {
        let handle = self.handle(table).await?;
        let err = |e: DeltaTableError| self.err(table, e);
        let kernel_schema: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
            err(DeltaTableError::generic(format!(
                "the columns as a Delta schema: {e}"
            )))
        })?;
        let partition_columns = layout.partition_columns();
        let files_added = adds.len() as u64;
        let properties = |removed: u64| {
            commit_properties_with(
                run_id,
                [(
                    "operationMetrics".to_string(),
                    serde_json::json!({
                        "num_added_files": files_added,
                        "num_removed_files": removed,
                        "num_added_rows": rows,
                    }),
                )],
            )
        };
        if handle.version().is_none() {
            let created = CreateBuilder::new()
                .with_log_store(handle.log_store())
                .with_columns(kernel_schema.fields().cloned())
                .with_partition_columns(partition_columns)
                .with_configuration(history_configuration())
                .with_commit_properties(properties(0))
                .with_actions(adds.into_iter().map(Action::Add))
                .await
                .map_err(err)?;
            return Ok(TableWrite {
                version: created.version().unwrap_or(0),
                rows,
                files_added,
                ..Default::default()
            });
        }
        let snapshot = handle.snapshot().map_err(err)?;
        let mut actions: Vec<Action> = Vec::new();
        if snapshot.schema().as_ref() != &kernel_schema
            || snapshot.metadata().partition_columns() != partition_columns
        {
            actions.push(Action::Metadata(
                with_columns(snapshot.metadata(), &kernel_schema, &partition_columns)
                    .map_err(err)?,
            ));
        }
        let removes: Vec<Action> = snapshot
            .log_data()
            .into_iter()
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect();
        let files_rewritten = removes.len() as u64;
        actions.extend(removes);
        actions.extend(adds.into_iter().map(Action::Add));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
            predicate: None,
        };
        let committed = CommitBuilder::from(properties(files_rewritten))
            .with_actions(actions)
            .build(Some(snapshot), handle.log_store(), operation)
            .await
            .map_err(err)?;
        Ok(TableWrite {
            version: committed.version as u64,
            rows,
            files_rewritten,
            files_added,
            ..Default::default()
        })
    }
}

/// `metadata` with other columns and partition columns (the table's id and properties
/// stay), as delta-rs's own overwrite makes it.
fn with_columns(
    metadata: &Metadata,
    schema: &StructType,
    partition_columns: &[String],
) -> Result<Metadata, DeltaTableError> {
    let mut value = serde_json::to_value(metadata)?;
    value["schemaString"] = serde_json::Value::String(serde_json::to_string(schema)?);
    value["partitionColumns"] = serde_json::json!(partition_columns);
    Ok(serde_json::from_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ROW_GROUP_ROWS;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("month", DataType::Utf8, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn layout() -> Layout {
        Layout {
            key: vec!["id".into()],
            partition: Some("month".into()),
            ..Default::default()
        }
    }

    /// Rows `(id, month, v)`.
    fn batch(rows: &[(i64, &str, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    async fn sink(store: &TableStore, bound: usize) -> Sink {
        let handle = store.handle("t").await.unwrap();
        let mut sink = Sink::new(
            handle.log_store().object_store(None),
            &schema(),
            &layout(),
            None,
        )
        .unwrap();
        sink.bound = bound;
        sink
    }

    /// The data files of the table's latest version, as paths below the table's folder.
    async fn paths(store: &TableStore) -> Vec<String> {
        let table = store.existing("t").await.unwrap();
        let mut paths: Vec<String> = table
            .snapshot()
            .unwrap()
            .log_data()
            .into_iter()
            .map(|f| f.path().to_string())
            .collect();
        paths.sort();
        paths
    }

    /// Every row of the table as `id month v`, by id.
    async fn contents(store: &TableStore) -> Vec<String> {
        let table = store.existing("t").await.unwrap();
        crate::store::tests::text_rows(&table, "SELECT id, month, v FROM t ORDER BY id, v")
            .await
            .into_iter()
            .map(|r| r.join(" "))
            .collect()
    }

    async fn commit(store: &TableStore, sink: Sink) -> TableWrite {
        let rows = sink.rows();
        let adds = sink.close().await.unwrap();
        store
            .commit_replace("t", &schema(), &layout(), adds, rows, "r")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rows_in_time_order_make_one_file_per_partition_finished_when_the_month_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let mut sink = sink(&store, BUFFERED_CELLS).await;
        let months = [
            "2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06",
        ];
        let mut expected = Vec::new();
        let mut id = 0;
        for (m, month) in months.iter().enumerate() {
            for _ in 0..3 {
                let rows: Vec<(i64, &str, &str)> = (0..10)
                    .map(|_| {
                        id += 1;
                        (id, *month, "x")
                    })
                    .collect();
                expected.extend(rows.iter().map(|r| format!("{} {} {}", r.0, r.1, r.2)));
                sink.write(&batch(&rows)).await.unwrap();
            }
            // A month's file stays open until IDLE_BATCHES batches went by without its rows.
            let open: Vec<&str> = sink.open.iter().map(|f| f.folder.as_str()).collect();
            let expect_open = if m == 0 { 1 } else { 2 };
            assert_eq!(open.len(), expect_open, "after {month}: {open:?}");
        }
        let write = commit(&store, sink).await;
        assert_eq!((write.version, write.rows, write.files_added), (0, 180, 6));
        let paths = paths(&store).await;
        assert_eq!(paths.len(), 6, "{paths:?}");
        for (path, month) in paths.iter().zip(months) {
            assert!(
                path.starts_with(&format!("month={month}/part-00000-")),
                "{path}"
            );
        }
        assert_eq!(contents(&store).await, expected);
    }

    #[tokio::test]
    async fn columns_of_mostly_distinct_values_are_written_without_a_dictionary() {
        use deltalake::parquet::file::reader::{FileReader as _, SerializedFileReader};
        // Whether each file column (id, v) of the one data file has a dictionary.
        async fn dictionaries(rows: usize) -> Vec<bool> {
            let dir = tempfile::tempdir().unwrap();
            let store = TableStore::new(dir.path());
            let mut sink = sink(&store, BUFFERED_CELLS).await;
            let words = ["a", "b", "c"];
            let rows: Vec<(i64, &str, &str)> = (0..rows)
                .map(|i| (i as i64, "2024-01", words[i % 3]))
                .collect();
            sink.write(&batch(&rows)).await.unwrap();
            commit(&store, sink).await;
            let files: Vec<_> = walk(dir.path())
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect();
            assert_eq!(files.len(), 1, "{files:?}");
            let reader =
                SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
            let group = reader.metadata().row_group(0);
            (0..group.num_columns())
                .map(|c| group.column(c).dictionary_page_offset().is_some())
                .collect()
        }
        // 3,000 distinct ids: no dictionary; three words: one.
        assert_eq!(dictionaries(3_000).await, vec![false, true]);
        // Too few rows to tell: the dictionary stays, as Parquet's writer has it.
        assert_eq!(dictionaries(500).await, vec![true, true]);
    }

    #[tokio::test]
    async fn a_month_that_comes_back_gets_a_file_that_sorts_after_its_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let mut sink = sink(&store, BUFFERED_CELLS).await;
        sink.write(&batch(&[(1, "2024-01", "old"), (2, "2024-01", "a")]))
            .await
            .unwrap();
        for i in 0..IDLE_BATCHES as i64 {
            sink.write(&batch(&[(10 + i, "2024-02", "b")]))
                .await
                .unwrap();
        }
        assert!(
            sink.open.iter().all(|f| f.folder != "month=2024-01"),
            "January's file is finished"
        );
        sink.write(&batch(&[(1, "2024-01", "new")])).await.unwrap();
        commit(&store, sink).await;
        let january: Vec<String> = paths(&store)
            .await
            .into_iter()
            .filter(|p| p.starts_with("month=2024-01/"))
            .collect();
        assert_eq!(january.len(), 2, "{january:?}");
        assert!(
            january[0].starts_with("month=2024-01/part-00000-"),
            "{january:?}"
        );
        assert!(
            january[1].starts_with("month=2024-01/r00000001/part-00000-"),
            "{january:?}"
        );

        // The later file's row is the later row: a dedupe keeps it.
        store.dedupe("t", &layout(), "r2").await.unwrap().unwrap();
        let rows = contents(&store).await;
        assert!(rows.contains(&"1 2024-01 new".to_string()), "{rows:?}");
        assert!(!rows.contains(&"1 2024-01 old".to_string()), "{rows:?}");
        assert_eq!(rows.len(), 2 + IDLE_BATCHES as usize, "{rows:?}");
    }

    #[tokio::test]
    async fn rows_in_no_order_past_the_bound_make_more_files_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        // Two file columns: a bound of 100 cells is 50 unfinished rows.
        let mut sink = sink(&store, 100).await;
        let months = ["2024-01", "2024-02", "2024-03"];
        let mut expected = Vec::new();
        for b in 0..10i64 {
            let rows: Vec<(i64, &str, &str)> = (0..40)
                .map(|i| (b * 40 + i, months[(i % 3) as usize], "v"))
                .collect();
            expected.extend(rows.iter().map(|r| format!("{} {} {}", r.0, r.1, r.2)));
            sink.write(&batch(&rows)).await.unwrap();
            let buffered: usize = sink.open.iter().map(|f| f.rows * 2).sum();
            assert!(
                buffered <= 100 || sink.open.len() == 1,
                "batch {b}: {buffered} cells unfinished"
            );
        }
        commit(&store, sink).await;
        let paths = paths(&store).await;
        assert!(paths.len() > 3, "{paths:?}");
        assert_eq!(contents(&store).await, expected);
    }

    #[tokio::test]
    async fn a_file_past_the_target_size_goes_on_in_a_new_one_between_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let mut sink = sink(&store, BUFFERED_CELLS).await;
        // Any size is past one byte: every full row group ends a file.
        sink.target_file_size = std::num::NonZeroU64::new(1).unwrap();
        let n = 2 * ROW_GROUP_ROWS as i64 + 1_000;
        for start in (0..n).step_by(10_000) {
            let rows: Vec<(i64, &str, &str)> = (start..(start + 10_000).min(n))
                .map(|i| (i, "2024-01", "v"))
                .collect();
            sink.write(&batch(&rows)).await.unwrap();
        }
        let write = commit(&store, sink).await;
        assert_eq!(write.files_added, 3);
        let paths = paths(&store).await;
        for (i, path) in paths.iter().enumerate() {
            assert!(
                path.starts_with(&format!("month=2024-01/part-{i:05}-")),
                "{paths:?}"
            );
        }
        let table = store.existing("t").await.unwrap();
        let counts: Vec<i64> = table
            .snapshot()
            .unwrap()
            .log_data()
            .into_iter()
            .map(|f| f.num_records().map_or(-1, |n| n as i64))
            .collect();
        let mut sorted = counts.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![1_000, ROW_GROUP_ROWS as i64, ROW_GROUP_ROWS as i64],
            "whole row groups per file"
        );
        assert_eq!(contents(&store).await.len(), n as usize);
    }

    #[tokio::test]
    async fn an_aborted_write_leaves_no_data_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let mut sink = sink(&store, BUFFERED_CELLS).await;
        sink.write(&batch(&[(1, "2024-01", "a")])).await.unwrap();
        for i in 0..IDLE_BATCHES as i64 {
            sink.write(&batch(&[(10 + i, "2024-02", "b")]))
                .await
                .unwrap();
        }
        assert_eq!(sink.adds.len(), 1, "January's file is finished");
        sink.abort().await;
        let parquet: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert!(parquet.is_empty(), "{parquet:?}");
        assert!(!store.table_exists("t").await.unwrap());
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
