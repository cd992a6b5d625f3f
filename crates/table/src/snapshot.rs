//! A table version as one Parquet file: the data behind a published digest, for anyone to
//! download and check the figures against.

use crate::store::{TableError, writer_properties};
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::parquet::arrow::AsyncArrowWriter;
use futures::StreamExt;
use std::path::{Path, PathBuf};

/// Write `table` (opened at the version wanted) to `path` as one Parquet file, rows ordered
/// by `order` (the key columns, so the same version always gives the same file). The file is
/// written beside `path` and renamed into place, so `path` is never half written.
pub async fn write_snapshot(
    name: &str,
    table: &DeltaTable,
    order: &[String],
    path: &Path,
) -> Result<u64, TableError> {
    let err = |message: String| TableError::Snapshot {
        table: name.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let ctx = SessionContext::new();
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
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
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
