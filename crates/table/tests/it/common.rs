//! Helpers: building batches and reading tables back through SQL and their file lists.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use goalpost_table::deltalake::DeltaTable;
use goalpost_table::deltalake::datafusion::prelude::SessionContext;
use std::collections::BTreeMap;

/// Run `query` over `table` registered as `t`.
pub async fn sql(table: &DeltaTable, query: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

/// Every cell of the query's result as text (`NULL` for null), row by row.
pub async fn rows(table: &DeltaTable, query: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in sql(table, query).await {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        if c.is_null(i) {
                            "NULL".to_string()
                        } else {
                            c.value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The one integer a query returns.
pub async fn number(table: &DeltaTable, query: &str) -> i64 {
    let rows = rows(table, query).await;
    assert_eq!(rows.len(), 1, "{query} returned {rows:?}");
    rows[0][0].parse().unwrap()
}

/// A data file of a table version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataFile {
    pub path: String,
    pub size: i64,
    /// The value of the table's one partition column, if it has one.
    pub partition: Option<String>,
}

/// The data files of the table's loaded version.
pub fn files(table: &DeltaTable) -> Vec<DataFile> {
    let mut out: Vec<DataFile> = table
        .snapshot()
        .unwrap()
        .log_data()
        .into_iter()
        .map(|f| DataFile {
            path: f.path().to_string(),
            size: f.size(),
            partition: f.partition_values_map().into_values().next().flatten(),
        })
        .collect();
    out.sort();
    out
}

/// Files per partition value.
pub fn by_partition(files: &[DataFile]) -> BTreeMap<Option<String>, Vec<DataFile>> {
    let mut out: BTreeMap<Option<String>, Vec<DataFile>> = BTreeMap::new();
    for f in files {
        out.entry(f.partition.clone()).or_default().push(f.clone());
    }
    out
}

/// The run id commit `version` of `table` records.
pub fn run_id(store: &goalpost_table::TableStore, table: &str, version: u64) -> Option<String> {
    let path = store
        .path(table)
        .local()
        .unwrap()
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|a| {
            a.pointer("/commitInfo/goalpost.run_id")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
}
