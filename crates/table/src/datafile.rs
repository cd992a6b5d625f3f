//! One partition's rows written into Parquet data files, each batch's columns encoded on
//! several threads at once.
//!
//! A Parquet writer encodes a batch one column after the other on the thread that calls it:
//! dictionary lookups, page statistics, compression. In a full load that thread is the
//! busiest of the three at work (reading the source, typing its rows, encoding them): at
//! 1 M rows of 11 columns it spent about 1 s of the load's 2.5 s of processor time, and the
//! load could not end sooner than it did. Here a row group's columns are split among the
//! machine's cores by their size in its first batch, and each part is encoded on a thread
//! of its own that takes every batch's columns from a queue ([`RowGroup`]): the writer hands
//! a batch over and goes on, and the threads only meet when the row group ends. Its column
//! chunks are then appended in column order, so the file is the one a single thread would
//! have written.
//!
//! Otherwise this is delta-rs's `PartitionWriter` as goalpost configures it: a file is
//! uploaded in parts of [`PART_SIZE`] as its row groups complete, a new file starts between
//! row groups once one reaches the table's target size, files are named as delta-rs names
//! them (`part-<n>-<uuid>-c000.zstd.parquet`, `n` counting the files of one writer) and
//! each file's `add` action carries the statistics delta-rs would give it
//! ([`crate::stats`]).

use crate::stats::add_action;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use delta_kernel::expressions::Scalar;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::buffered::BufWriter;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::file::writer::SerializedFileWriter;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::{DeltaTableError, Path};
use futures::StreamExt as _;
use indexmap::IndexMap;
use std::ops::Range;
use std::sync::mpsc::{SyncSender, sync_channel};
use tokio::io::AsyncWriteExt as _;

/// Parts of a file sent to storage: 5 MB, as delta-rs sends them.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Batches each of a row group's encoder threads may have waiting before the writer waits.
const QUEUED_BATCHES: usize = 4;

/// A row group's encoder threads, at most: every open file of a load holds its own (rows in
/// no time order keep many partitions' files open at once), and reading and typing the rows
/// want cores too.
const MAX_ENCODERS: usize = 4;

/// What every file of one writer shares.
#[derive(Clone)]
pub(crate) struct FileConfig {
    pub store: ObjectStoreRef,
    /// The columns of the files (the partition column is not among them).
    pub schema: SchemaRef,
    pub properties: WriterProperties,
    /// The partition's value, when the table is partitioned.
    pub partition_values: IndexMap<String, Scalar>,
    /// The folder the files go in.
    pub prefix: Path,
    /// A file grows to about this size, then the rows go on in a new one.
    pub target_file_size: u64,
    /// Parts of a file on their way to storage at once.
    pub uploads_in_flight: usize,
    pub num_indexed_cols: DataSkippingNumIndexedCols,
    pub stats_columns: Option<Vec<String>>,
}

/// Writes rows into data files of one partition; [`close`](Self::close) gives their `add`
/// actions, in the order the files were written.
pub(crate) struct FileWriter {
    config: FileConfig,
    threads: usize,
    writer_id: String,
    /// Files started so far.
    files: usize,
    open: Option<OpenFile>,
    adds: Vec<Add>,
}

/// The file being written.
struct OpenFile {
    path: Path,
    upload: BufWriter,
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    /// The open row group's encoders; none between row groups.
    group: Option<RowGroup>,
    /// Rows in the open row group.
    group_rows: usize,
    row_groups: usize,
}

impl FileWriter {
    pub(crate) fn new(config: FileConfig) -> Self {
        Self {
            config,
            threads: crate::store::cores().min(MAX_ENCODERS),
            writer_id: uuid::Uuid::new_v4().to_string(),
            files: 0,
            open: None,
            adds: Vec::new(),
        }
    }

    /// Encode on at most `threads` threads (at least one).
    #[cfg(test)]
    pub(crate) fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The rows a row group holds, from the writer properties (all rows when unbounded).
    fn group_size(&self) -> usize {
        self.config
            .properties
            .max_row_group_row_count()
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Write `batch`, which has the files' columns.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<(), DeltaTableError> {
        if batch.schema() != self.config.schema {
            return Err(DeltaTableError::generic(format!(
                "a data file's rows have the columns {:?}, not the table's {:?}",
                batch.schema().fields(),
                self.config.schema.fields()
            )));
        }
        let group_size = self.group_size();
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.open.is_none() {
                self.open = Some(self.start()?);
            }
            let threads = self.threads;
            let file = self.open.as_mut().expect("a file was just opened");
            let rows = (group_size - file.group_rows).min(batch.num_rows() - offset);
            file.encode(&batch.slice(offset, rows), &self.config.schema, threads)?;
            offset += rows;
            if file.group_rows >= group_size {
                file.end_row_group().await?;
                if file.writer.bytes_written() as u64 >= self.config.target_file_size {
                    self.finish_file().await?;
                }
            }
        }
        Ok(())
    }

    /// Rows in the open row group, which the writer holds in memory.
    pub(crate) fn buffered_rows(&self) -> usize {
        self.open.as_ref().map_or(0, |f| f.group_rows)
    }

    /// A new file in the folder.
    fn start(&mut self) -> Result<OpenFile, DeltaTableError> {
        let path = self.config.prefix.clone().join(file_name(
            self.files,
            &self.writer_id,
            &self.config.properties,
        ));
        self.files += 1;
        // ArrowWriter sets the file up as it would write it (the Arrow schema in the
        // footer's metadata among it), then hands over the parts that write row groups.
        let (writer, factory) = ArrowWriter::try_new(
            Vec::new(),
            self.config.schema.clone(),
            Some(self.config.properties.clone()),
        )?
        .into_serialized_writer()?;
        let upload = BufWriter::with_capacity(self.config.store.clone(), path.clone(), PART_SIZE)
            .with_max_concurrency(self.config.uploads_in_flight);
        Ok(OpenFile {
            path,
            upload,
            writer,
            factory,
            group: None,
            group_rows: 0,
            row_groups: 0,
        })
    }

    /// End the open file: its last row group and its footer are written and uploaded. On an
    /// error nothing of the file is left behind (but what a store keeps of an upload that
    /// failed to complete, until its own expiry).
    async fn finish_file(&mut self) -> Result<(), DeltaTableError> {
        let Some(mut file) = self.open.take() else {
            return Ok(());
        };
        // Everything but completing the upload: the `add` is made first, so no file can be
        // complete in storage without one.
        let written = async {
            if file.group_rows > 0 {
                file.end_row_group().await?;
            }
            let metadata = file.writer.finish()?;
            file.writer.flush().map_err(ParquetError::from)?;
            file.send().await?;
            let size = file.writer.bytes_written() as i64;
            add_action(
                &self.config.partition_values,
                file.path.to_string(),
                size,
                &metadata,
                self.config.num_indexed_cols,
                self.config.stats_columns.as_deref(),
            )
        }
        .await;
        let add = match written {
            Ok(add) => add,
            Err(e) => {
                if let Err(a) = file.upload.abort().await {
                    tracing::debug!(error = %a, "stopping a data file's upload");
                }
                return Err(e);
            }
        };
        if let Err(e) = file.upload.shutdown().await {
            // The upload cannot be stopped once its completion began; whatever of it became a
            // file goes.
            delete_files(&self.config.store, std::slice::from_ref(&add)).await;
            return Err(ParquetError::from(e).into());
        }
        tracing::trace!(path = %file.path, size = add.size, row_groups = file.row_groups, "wrote a data file");
        self.adds.push(add);
        Ok(())
    }

    /// End the open file; the `add` actions of every file written, in order. On an error
    /// the files already written are deleted.
    pub(crate) async fn close(mut self) -> Result<Vec<Add>, DeltaTableError> {
        if let Err(e) = self.finish_file().await {
            self.abort().await;
            return Err(e);
        }
        Ok(self.adds)
    }

    /// Give up: the open file's upload is stopped and the finished files are deleted (no
    /// version lists them; what cannot be deleted now, a vacuum does).
    pub(crate) async fn abort(mut self) {
        if let Some(mut file) = self.open.take()
            && let Err(e) = file.upload.abort().await
        {
            tracing::debug!(error = %e, "stopping a data file's upload");
        }
        delete_files(&self.config.store, &self.adds).await;
    }
}

/// Delete the files of `adds` from `store`, as far as it goes: files no version lists.
pub(crate) async fn delete_files(store: &ObjectStoreRef, adds: &[Add]) {
    let paths: Vec<_> = adds
        .iter()
        .filter_map(|a| Path::parse(&a.path).ok())
        .map(Ok)
        .collect();
    let mut deleted = store.delete_stream(futures::stream::iter(paths).boxed());
    while let Some(result) = deleted.next().await {
        if let Err(e) = result {
            tracing::debug!(error = %e, "deleting a data file of an aborted write");
        }
    }
}

impl OpenFile {
    /// Encode `batch`, which fits in the open row group (one is started if none is open).
    fn encode(
        &mut self,
        batch: &RecordBatch,
        schema: &SchemaRef,
        threads: usize,
    ) -> Result<(), ParquetError> {
        let starting = self.group.is_none();
        let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(schema.fields().len());
        // Only a row group's first batch splits its columns among the threads.
        let mut costs: Vec<usize> = Vec::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let before = leaves.len();
            leaves.extend(compute_leaves(field, column)?);
            if starting {
                let n = leaves.len() - before;
                let cost = column.get_array_memory_size() / n.max(1);
                costs.extend(std::iter::repeat_n(cost, n));
            }
        }
        if starting {
            let columns = self.factory.create_column_writers(self.row_groups)?;
            if leaves.len() != columns.len() {
                return Err(ParquetError::General(format!(
                    "{} leaf columns for {} column writers",
                    leaves.len(),
                    columns.len()
                )));
            }
            self.group = Some(RowGroup::start(columns, &costs, threads)?);
        }
        let group = self.group.as_mut().expect("a row group was just started");
        if group.send(leaves).is_err() {
            // An encoder stopped on an error: the row group cannot be finished, and the
            // encoder's error says why.
            let group = self.group.take().expect("the row group is open");
            return Err(group.finish().err().unwrap_or_else(|| {
                ParquetError::General("a column encoder stopped early".into())
            }));
        }
        self.group_rows += batch.num_rows();
        Ok(())
    }

    /// Close the open row group: its column chunks are appended to the file in column order
    /// and what the file has so far is sent on to storage.
    async fn end_row_group(&mut self) -> Result<(), DeltaTableError> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let chunks = group.finish()?;
        let mut group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.writer.flush().map_err(ParquetError::from)?;
        self.group_rows = 0;
        self.row_groups += 1;
        self.send().await?;
        Ok(())
    }

    /// Send what the file has written so far on to storage.
    async fn send(&mut self) -> Result<(), DeltaTableError> {
        // The file writer counts the bytes itself (the footer's offsets come from its
        // count), so taking what reached the buffer changes nothing it relies on.
        let bytes = std::mem::take(self.writer.inner_mut());
        if !bytes.is_empty() {
            self.upload.put(bytes.into()).await?;
        }
        Ok(())
    }
}

/// The name delta-rs gives the `n`-th file (from 0) of writer `id`.
fn file_name(n: usize, id: &str, properties: &WriterProperties) -> String {
    let suffix = match properties.compression(&ColumnPath::new(Vec::new())) {
        Compression::UNCOMPRESSED => "",
        Compression::SNAPPY => ".snappy",
        Compression::GZIP(_) => ".gz",
        Compression::LZO => ".lzo",
        Compression::BROTLI(_) => ".br",
        Compression::LZ4 => ".lz4",
        Compression::ZSTD(_) => ".zstd",
        Compression::LZ4_RAW => ".lz4raw",
    };
    format!("part-{n:05}-{id}-c000{suffix}.parquet")
}

/// `costs` cut into at most `parts` runs of neighbours, each close to an equal share of the
/// total; every run holds at least one item.
fn balanced(costs: &[usize], parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, costs.len().max(1));
    let total: usize = costs.iter().sum::<usize>().max(1);
    let mut runs = Vec::with_capacity(parts);
    let mut start = 0;
    let mut sum = 0;
    for (i, cost) in costs.iter().enumerate() {
        sum += cost;
        let left = costs.len() - (i + 1);
        let runs_after = parts - (runs.len() + 1);
        // Cut once this run has its share, or when the items left are only enough for
        // one run each.
        if runs_after > 0
            && left >= runs_after
            && (sum * parts >= total * (runs.len() + 1) || left == runs_after)
        {
            runs.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < costs.len() || runs.is_empty() {
        runs.push(start..costs.len());
    }
    runs
}

/// A row group being encoded. Its column writers are split among threads by the size of
/// their columns in the group's first batch, and each thread encodes its columns of every
/// batch in turn, taking the batches from a queue of its own: a thread that falls behind on
/// one batch catches up on the next while the writer goes on, and the threads only meet
/// when the row group ends.
struct RowGroup {
    parts: Vec<Part>,
}

/// One thread's share of a row group: some neighbouring columns.
struct Part {
    columns: usize,
    queue: SyncSender<Vec<ArrowLeafColumn>>,
    /// Gives the part's column chunks once the queue is closed, or the first error.
    thread: std::thread::JoinHandle<Result<Vec<ArrowColumnChunk>, ParquetError>>,
}

impl RowGroup {
    fn start(
        columns: Vec<ArrowColumnWriter>,
        costs: &[usize],
        threads: usize,
    ) -> Result<Self, ParquetError> {
        let mut columns = columns.into_iter();
        let mut parts = Vec::with_capacity(threads);
        for range in balanced(costs, threads) {
            let mut writers: Vec<ArrowColumnWriter> = columns.by_ref().take(range.len()).collect();
            let (queue, batches) = sync_channel::<Vec<ArrowLeafColumn>>(QUEUED_BATCHES);
            let thread = std::thread::Builder::new()
                .name("goalpost-encode".into())
                .spawn(move || {
                    for leaves in batches {
                        for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                            writer.write(leaf)?;
                        }
                    }
                    writers.into_iter().map(|w| w.close()).collect()
                })
                .map_err(|e| ParquetError::General(format!("starting an encoder thread: {e}")))?;
            parts.push(Part {
                columns: range.len(),
                queue,
                thread,
            });
        }
        Ok(Self { parts })
    }

    /// Queue a batch's leaf columns (in column order) for the threads; `Err` when a thread
    /// stopped, which [`finish`](Self::finish) then reports.
    fn send(&mut self, mut leaves: Vec<ArrowLeafColumn>) -> Result<(), ()> {
        for part in &self.parts {
            let rest = leaves.split_off(part.columns.min(leaves.len()));
            let mine = std::mem::replace(&mut leaves, rest);
            part.queue.send(mine).map_err(|_| ())?;
        }
        Ok(())
    }

    /// Wait for the threads: every column's chunk, in column order, or the first error.
    fn finish(self) -> Result<Vec<ArrowColumnChunk>, ParquetError> {
        let threads: Vec<_> = self.parts.into_iter().map(|p| p.thread).collect();
        let mut chunks = Vec::new();
        let mut failed = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(part)) => chunks.extend(part),
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(chunks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::datafile::writer::{PartitionWriter, PartitionWriterConfig};
    use deltalake::logstore::object_store::ObjectStore;
    use deltalake::logstore::object_store::ObjectStoreExt as _;
    use deltalake::logstore::object_store::memory::InMemory;
    use deltalake::parquet::file::properties::EnabledStatistics;
    use std::sync::Arc;

    /// Columns of every type goalpost writes, each with nulls, and values that put the
    /// statistics to the test: negative numbers, NaN, text beyond ASCII and empty,
    /// timestamps with microseconds (the statistics keep milliseconds) and without.
    fn rows(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Int32, true),
            Field::new("x", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "local",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let words = [
            "Zürich",
            "",
            "a,b \"c\"",
            "311",
            "ÿ",
            "zz",
            "Ωmega",
            "new\nline",
        ];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| i * 7 - 500),
            )),
            Arc::new(Int32Array::from_iter(
                (0..n as i32).map(|i| (i % 5 != 0).then_some(i % 97 - 40)),
            )),
            Arc::new(Float64Array::from_iter((0..n).map(|i| match i % 11 {
                0 => None,
                3 => Some(f64::NAN),
                k => Some(k as f64 * -1.25 + i as f64 / 3.0),
            }))),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (i % 13 != 0).then(|| format!("{}{}", words[i % words.len()], i % 17))
            }))),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    (0..n as i64)
                        .map(|i| (i % 7 != 0).then_some(1_700_000_000_000_000 + i * 1_234_567)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(TimestampMicrosecondArray::from_iter((0..n as i64).map(
                |i| (i % 9 != 0).then_some(1_600_000_000_000_000 + i * 1_000_000),
            ))),
            Arc::new(Date32Array::from_iter(
                (0..n as i32).map(|i| (i % 4 != 0).then_some(19_000 + i)),
            )),
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| (i % 6 != 0).then_some(i % 3 == 0)),
            )),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn properties(group: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .set_max_row_group_row_count(Some(group))
            .set_max_row_group_bytes(None)
            .set_statistics_enabled(EnabledStatistics::Page)
            .build()
    }

    struct Case {
        rows: usize,
        group: usize,
        /// Bytes after which a new file starts.
        target: u64,
        /// Batches the rows come in.
        batch: usize,
        num_indexed_cols: DataSkippingNumIndexedCols,
        stats_columns: Option<Vec<String>>,
        partition: Option<(&'static str, &'static str)>,
    }

    /// The files written by delta-rs's writer and by this one: their bytes and `add` actions.
    async fn both(case: &Case, threads: usize) -> Vec<[(Vec<u8>, serde_json::Value); 2]> {
        let data = rows(case.rows);
        let mut schema = (*data.schema()).clone();
        let mut columns = data.columns().to_vec();
        let values: IndexMap<String, Scalar> = match case.partition {
            Some((name, value)) => {
                // The partition column is in the table, not in the files.
                schema = Schema::new(schema.fields()[1..].to_vec());
                columns.remove(0);
                IndexMap::from([(name.to_string(), Scalar::String(value.into()))])
            }
            None => IndexMap::new(),
        };
        let data = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        let prefix = match case.partition {
            Some((name, value)) => Path::parse(format!("{name}={value}")).unwrap(),
            None => Path::default(),
        };
        let theirs: ObjectStoreRef = Arc::new(InMemory::new());
        let ours: ObjectStoreRef = Arc::new(InMemory::new());
        let config = PartitionWriterConfig::try_new(
            data.schema(),
            values.clone(),
            Some(properties(case.group)),
            Some(std::num::NonZeroU64::new(case.target).unwrap()),
            None,
            Some(2),
            Some(prefix.clone()),
        )
        .unwrap()
        .with_roll_on_row_group_boundary(true);
        let mut reference = PartitionWriter::try_with_config(
            theirs.clone(),
            config,
            case.num_indexed_cols,
            case.stats_columns.clone(),
        )
        .unwrap();
        let mut writer = FileWriter::new(FileConfig {
            store: ours.clone(),
            schema: data.schema(),
            properties: properties(case.group),
            partition_values: values,
            prefix,
            target_file_size: case.target,
            uploads_in_flight: 2,
            num_indexed_cols: case.num_indexed_cols,
            stats_columns: case.stats_columns.clone(),
        })
        .with_threads(threads);
        let mut offset = 0;
        while offset < data.num_rows() {
            let n = case.batch.min(data.num_rows() - offset);
            reference.write(&data.slice(offset, n)).await.unwrap();
            writer.write(&data.slice(offset, n)).await.unwrap();
            offset += n;
        }
        let (a, b) = (
            reference.close().await.unwrap(),
            writer.close().await.unwrap(),
        );
        assert_eq!(a.len(), b.len(), "as many files");
        async fn file(store: &ObjectStoreRef, add: &Add) -> (Vec<u8>, serde_json::Value) {
            let path = Path::parse(&add.path).unwrap();
            let bytes = store
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec();
            assert_eq!(
                add.size as usize,
                bytes.len(),
                "{}: the size said",
                add.path
            );
            let stats = serde_json::from_str(add.stats.as_deref().unwrap()).unwrap();
            (bytes, stats)
        }
        let mut files = Vec::new();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.partition_values, b.partition_values);
            // Named alike: the same folder, the same counter; only the writer's id differs.
            let shape = |p: &str| {
                let at = p.find("part-").unwrap() + "part-00000-".len();
                (p[..at].to_string(), p[at + 36..].to_string())
            };
            assert_eq!(shape(&a.path), shape(&b.path));
            files.push([file(&theirs, a).await, file(&ours, b).await]);
        }
        let listed = |s: ObjectStoreRef| async move {
            s.list(None)
                .map(|m| m.unwrap().location.to_string())
                .collect::<Vec<_>>()
                .await
                .len()
        };
        assert_eq!(listed(ours).await, b.len(), "no file beyond those added");
        files
    }

    #[tokio::test]
    async fn files_and_statistics_are_the_ones_delta_rs_writes() {
        let cases = [
            // Several row groups in one file, batches across their boundaries.
            Case {
                rows: 5_000,
                group: 1_500,
                target: u64::MAX,
                batch: 1_700,
                num_indexed_cols: DataSkippingNumIndexedCols::NumColumns(32),
                stats_columns: None,
                partition: None,
            },
            // A new file after each row group, in a partition (its column gets none).
            Case {
                rows: 3_100,
                group: 1_000,
                target: 1,
                batch: 4_000,
                num_indexed_cols: DataSkippingNumIndexedCols::NumColumns(32),
                stats_columns: None,
                partition: Some(("month", "2024-07")),
            },
            // Statistics for the first three columns only; small batches.
            Case {
                rows: 2_000,
                group: 2_000,
                target: u64::MAX,
                batch: 300,
                num_indexed_cols: DataSkippingNumIndexedCols::NumColumns(3),
                stats_columns: None,
                partition: None,
            },
            // Statistics for the columns named.
            Case {
                rows: 2_000,
                group: 700,
                target: u64::MAX,
                batch: 2_000,
                num_indexed_cols: DataSkippingNumIndexedCols::AllColumns,
                stats_columns: Some(vec!["`text`".into(), "day".into(), "at".into()]),
                partition: None,
            },
        ];
        for (k, case) in cases.iter().enumerate() {
            for threads in [1, 2, 3, 16] {
                let files = both(case, threads).await;
                assert!(!files.is_empty());
                for (i, [(theirs, a), (ours, b)]) in files.iter().enumerate() {
                    assert_eq!(
                        a, b,
                        "case {k}, {threads} threads, file {i}: the statistics"
                    );
                    assert!(
                        theirs == ours,
                        "case {k}, {threads} threads, file {i}: the bytes"
                    );
                }
            }
        }
        // The statistics hold what the rows say (not only what delta-rs says).
        let files = both(&cases[0], 2).await;
        let stats = &files[0][1].1;
        assert_eq!(stats["numRecords"], 5_000);
        assert_eq!(stats["minValues"]["id"], -500);
        assert_eq!(stats["maxValues"]["id"], 4_999 * 7 - 500);
        assert_eq!(
            stats["nullCount"]["text"],
            (0..5_000).filter(|i| i % 13 == 0).count()
        );
        // 1_700_000_000 s + 1 µs·1_234_567: the least stamp is row 1 (row 0 is null),
        // written to the millisecond, cut.
        assert_eq!(stats["minValues"]["at"], "2023-11-14T22:13:21.234Z");
        // Day 19,000 is 2022-01-08; row 0 is null, row 1 the least.
        assert_eq!(stats["minValues"]["day"], "2022-01-09");
    }

    #[tokio::test]
    async fn an_aborted_writer_leaves_no_file() {
        let store: ObjectStoreRef = Arc::new(InMemory::new());
        let data = rows(3_000);
        let mut writer = FileWriter::new(FileConfig {
            store: store.clone(),
            schema: data.schema(),
            properties: properties(1_000),
            partition_values: IndexMap::new(),
            prefix: Path::default(),
            target_file_size: 1,
            uploads_in_flight: 2,
            num_indexed_cols: DataSkippingNumIndexedCols::NumColumns(32),
            stats_columns: None,
        });
        writer.write(&data.slice(0, 2_500)).await.unwrap();
        let before: Vec<_> = store.list(None).collect().await;
        assert_eq!(before.len(), 2, "a file per finished row group: {before:?}");
        writer.abort().await;
        let left: Vec<_> = store.list(None).collect().await;
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn runs_are_neighbours_near_an_equal_share_each_never_empty() {
        assert_eq!(balanced(&[1, 1, 1, 1], 2), vec![0..2, 2..4]);
        assert_eq!(balanced(&[10, 1, 1, 1, 1], 2), vec![0..1, 1..5]);
        assert_eq!(balanced(&[1, 1, 1, 10], 2), vec![0..3, 3..4]);
        assert_eq!(balanced(&[5], 4), vec![0..1]);
        assert_eq!(balanced(&[], 2), vec![0..0]);
        assert_eq!(balanced(&[0, 0, 0], 3), vec![0..1, 1..2, 2..3]);
        assert_eq!(balanced(&[3, 3, 3], 1), vec![0..3]);
        // Whatever the costs, the runs cover every item once, in order.
        for costs in [
            vec![7, 0, 0, 9, 1],
            vec![1, 2, 3, 4, 5, 6],
            vec![100, 0, 0, 0],
        ] {
            for parts in 1..=6 {
                let runs = balanced(&costs, parts);
                assert!(runs.len() <= parts && runs.iter().all(|r| !r.is_empty()));
                let flat: Vec<usize> = runs.into_iter().flatten().collect();
                assert_eq!(flat, (0..costs.len()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn an_encoder_that_fails_says_why_when_the_row_group_ends() {
        let ints = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let (_, factory) = ArrowWriter::try_new(Vec::new(), ints, None)
            .unwrap()
            .into_serialized_writer()
            .unwrap();
        let columns = factory.create_column_writers(0).unwrap();
        let mut group = RowGroup::start(columns, &[1, 1], 2).unwrap();
        // Text where the second column's writer expects integers.
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let leaves = |f: &str, a: &ArrayRef| {
            compute_leaves(&Field::new(f, a.data_type().clone(), false), a).unwrap()
        };
        let mut batch = leaves("a", &ints);
        batch.extend(leaves("b", &text));
        // The queue may take the batch before the encoder fails on it.
        let _ = group.send(batch);
        let Err(e) = group.finish() else {
            panic!("the second column cannot take text");
        };
        assert!(!e.to_string().is_empty());
    }
}
