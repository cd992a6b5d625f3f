//! Delta Lake tables under `data/tables/<name>/`.

use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use std::path::PathBuf;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableWrite {
    /// The table's version after the commit.
    pub version: u64,
    pub rows: u64,
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
        let commit = CommitProperties::default().with_metadata([(
            "goalpost.run_id".to_string(),
            serde_json::Value::String(run_id.to_string()),
        )]);
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
        })
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
}
