//! A table version as one Parquet file: the data behind a published digest, for anyone to
//! download and check the figures against.

use crate::store::{TableError, writer_properties};
use deltalake::DeltaTable;
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::parquet::arrow::AsyncArrowWriter;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The memory the sort of a snapshot may take; past it, sorted runs go to temporary files
/// (in the system's temporary folder) and are merged from there. A table of 40 million
/// rows then needs no more memory than one of a million.
const SORT_MEMORY: usize = 192 * 1024 * 1024;

/// Write `table` (opened at the version wanted) to `path` as one Parquet file, rows ordered
/// by `order` (the key columns, so the same version always gives the same file). The file is
/// written beside `path` and renamed into place, so `path` is never half written.
pub async fn write_snapshot(
    name: &str,
    table: &DeltaTable,
    order: &[String],
    path: &Path,
) -> Result<u64, TableError> {
    match write_snapshot_within(name, table, order, path, SORT_MEMORY).await {
        // DataFusion's sort can still run out within a bound (very wide rows, say): then
        // without one, as before there was a bound, rather than publish nothing.
        Err(TableError::Snapshot { message, .. }) if message.contains("Resources exhausted") => {
            tracing::warn!(table = name, reason = %message, "the snapshot's sort ran out of its memory; sorting again without a bound");
            write_snapshot_within(name, table, order, path, usize::MAX).await
        }
        written => written,
    }
}

/// [`write_snapshot`] with the sort's memory bounded by `memory` bytes.
async fn write_snapshot_within(
    name: &str,
    table: &DeltaTable,
    order: &[String],
    path: &Path,
    memory: usize,
) -> Result<u64, TableError> {
    let err = |message: String| TableError::Snapshot {
        table: name.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
        .build_arc()
        .map_err(|e| err(e.to_string()))?;
    // What each sort sets aside to merge its sorted runs: DataFusion's 10 MB, or less
    // within a small bound.
    // One sort: the memory is not split between parallel sorts.
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_sort_spill_reservation_bytes((memory / 8).min(10 << 20));
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| err(e.to_string()))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| err(e.to_string()))?;
    ctx.register_table("t", provider)
        .map_err(|e| err(e.to_string()))?;
    let order_by = if order.is_empty() {
        String::new()
    } else {
        let cols: Vec<String> = order.iter().map(|c| crate::store::quote(c)).collect();
        format!(" ORDER BY {}", cols.join(", "))
    };
    let df = ctx
        .sql(&format!("SELECT * FROM t{order_by}"))
        .await
        .map_err(|e| err(e.to_string()))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| err(e.to_string()))?;
    }
    let partial = partial_path(path);
    let file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut writer = AsyncArrowWriter::try_new(file, schema, Some(writer_properties()))
        .map_err(|e| err(e.to_string()))?;
    let mut rows = 0u64;
    let written: Result<(), String> = async {
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(|e| e.to_string())?;
        }
        writer.finish().await.map_err(|e| e.to_string())?;
        let file = writer.into_inner();
        file.sync_all().await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err(e));
    }
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(rows)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, TableStore};
    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_snapshot_larger_than_its_sort_memory_is_sorted_through_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path().join("tables"));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        // 400,000 rows in a scrambled order, about 20 MB as Arrow: more than twice the 8 MB.
        let n = 400_000i64;
        let ids: Vec<i64> = (0..n).map(|i| (i * 7_919) % n).collect();
        let batches: Vec<RecordBatch> = ids
            .chunks(20_000)
            .map(|c| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(c.to_vec())),
                        Arc::new(StringArray::from_iter_values(
                            c.iter().map(|i| format!("request number {i}, \"quoted\"")),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        store
            .replace("t", schema.clone(), batches, &Layout::default(), "r")
            .await
            .unwrap();
        let table = store.existing("t").await.unwrap();
        let out = dir.path().join("t.parquet");
        let rows = write_snapshot_within("t", &table, &["id".into()], &out, 8 * 1024 * 1024)
            .await
            .unwrap();
        assert_eq!(rows, n as u64);
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut next = 0i64;
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let notes = arrow::compute::cast(batch.column(1), &DataType::Utf8).unwrap();
            let notes = notes.as_string::<i32>();
            for i in 0..batch.num_rows() {
                assert_eq!(ids.value(i), next);
                assert_eq!(notes.value(i), format!("request number {next}, \"quoted\""));
                next += 1;
            }
        }
        assert_eq!(next, n);
    }
}
