//! Appends, deterministic Parquet, partitioning that follows the layout, and history kept.

use crate::common::{by_partition, files, number, run_id};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableStore};
use std::collections::BTreeMap;
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let zones = ["north", "south", "east"];
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| zones[(i % 3) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.map(|i| format!("row {i} of the quarantine")),
            )),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn append_creates_the_table_then_adds_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    assert_eq!(store.append("q", vec![], "r0").await.unwrap(), None);
    assert!(
        !store.table_exists("q").await.unwrap(),
        "nothing to add creates nothing"
    );

    let first = store
        .append("q", vec![batch(0..10)], "r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.version, first.rows, first.files_added), (0, 10, 1));
    let second = store
        .append("q", vec![batch(10..15), batch(15..15)], "r2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.version, second.rows), (1, 5));
    assert_eq!(run_id(&store, "q", 1).as_deref(), Some("r2"));
    assert_eq!(
        store.append("q", vec![batch(0..0)], "r3").await.unwrap(),
        None
    );
    let table = store.open_version("q", 1).await.unwrap();
    assert_eq!(number(&table, "SELECT COUNT(*) FROM t").await, 15);
    assert_eq!(
        number(&table, "SELECT SUM(id) FROM t").await,
        (0..15i64).sum::<i64>()
    );
    assert_eq!(
        number(
            &store.open_version("q", 0).await.unwrap(),
            "SELECT COUNT(*) FROM t"
        )
        .await,
        10
    );
}

/// The bytes of every data file of the table's latest version, by partition.
async fn file_bytes(store: &TableStore, table: &str) -> BTreeMap<Option<String>, Vec<Vec<u8>>> {
    let version = store.latest_version(table).await.unwrap().unwrap();
    let loaded = store.open_version(table, version).await.unwrap();
    by_partition(&files(&loaded))
        .into_iter()
        .map(|(part, fs)| {
            let mut bytes: Vec<Vec<u8>> = fs
                .iter()
                .map(|f| std::fs::read(store.path(table).local().unwrap().join(&f.path)).unwrap())
                .collect();
            bytes.sort();
            (part, bytes)
        })
        .collect()
}

#[tokio::test]
async fn the_same_rows_give_the_same_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        partition: Some("zone".into()),
        ..Default::default()
    };
    for table in ["one", "two"] {
        store
            .replace(
                table,
                schema(),
                vec![batch(0..500), batch(500..900)],
                &layout,
                table,
            )
            .await
            .unwrap();
    }
    let one = file_bytes(&store, "one").await;
    assert_eq!(one.len(), 3, "three zones");
    assert_eq!(one, file_bytes(&store, "two").await);
    let some_file = &one.values().next().unwrap()[0];
    let created_by = b"goalpost";
    assert!(
        some_file.windows(created_by.len()).any(|w| w == created_by),
        "the files name goalpost as their writer"
    );
}

#[tokio::test]
async fn a_replace_follows_the_layouts_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let by_zone = Layout {
        partition: Some("zone".into()),
        ..Default::default()
    };
    store
        .replace("t", schema(), vec![batch(0..30)], &by_zone, "r1")
        .await
        .unwrap();
    assert_eq!(
        by_partition(&files(&store.open_version("t", 0).await.unwrap())).len(),
        3
    );
    store
        .replace("t", schema(), vec![batch(0..30)], &Layout::default(), "r2")
        .await
        .unwrap();
    let unpartitioned = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        by_partition(&files(&unpartitioned))
            .keys()
            .collect::<Vec<_>>(),
        [&None],
        "no partitions any more"
    );
    assert_eq!(number(&unpartitioned, "SELECT COUNT(*) FROM t").await, 30);
}

#[tokio::test]
async fn tables_keep_their_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    for run in 0..3 {
        store
            .replace(
                "t",
                schema(),
                vec![batch(0..(run + 1))],
                &Layout::default(),
                "r",
            )
            .await
            .unwrap();
    }
    let table = store.open_version("t", 2).await.unwrap();
    let config = table.snapshot().unwrap().metadata().configuration().clone();
    assert_eq!(
        config
            .get("delta.enableExpiredLogCleanup")
            .map(String::as_str),
        Some("false"),
        "{config:?}"
    );
    assert!(
        config.contains_key("delta.logRetentionDuration"),
        "{config:?}"
    );
    // Even an explicit cleanup after a checkpoint keeps every commit: the retention is long.
    goalpost_table::deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .unwrap();
    let removed = goalpost_table::deltalake::checkpoints::cleanup_metadata(&table, None)
        .await
        .unwrap();
    assert_eq!(removed, 0);
    for version in 0..3 {
        let old = store.open_version("t", version).await.unwrap();
        assert_eq!(
            number(&old, "SELECT COUNT(*) FROM t").await,
            version as i64 + 1
        );
    }
}
