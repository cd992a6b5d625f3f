//! Merges with deletes, and a partitioned merge of records whose partition value is NULL.

use crate::common::{by_partition, files, rows};
use arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableError, TableStore};
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, true),
        Field::new("v", DataType::Utf8, true),
        Field::new("gone", DataType::Boolean, true),
    ]))
}

type R = (i64, Option<&'static str>, &'static str, Option<bool>);

fn batch(rows: &[R]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap()
}

fn expected(rows: &[(i64, &str)]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|(id, v)| vec![id.to_string(), v.to_string()])
        .collect()
}

#[tokio::test]
async fn rows_marked_deleted_remove_their_key_and_are_never_inserted() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        deletes: Some(("gone".into(), vec!["true".into()])),
        ..Default::default()
    };
    let initial = [
        (1, None, "a", Some(false)),
        (2, None, "b", None),
        (3, None, "c", Some(false)),
        (4, None, "d", Some(false)),
    ];
    store
        .replace("t", schema(), vec![batch(&initial)], &layout, "r1")
        .await
        .unwrap();
    let changes = [
        (2, None, "B", Some(false)),    // update
        (3, None, "c", Some(true)),     // delete
        (5, None, "e", None),           // insert (NULL is not a mark)
        (6, None, "ghost", Some(true)), // deleted before we ever saw it: not inserted
    ];
    let w = store
        .merge("t", schema(), vec![batch(&changes)], &layout, "r2")
        .await
        .unwrap()
        .write;
    assert_eq!(
        (w.version, w.inserted, w.updated, w.deleted, w.rows),
        (1, 1, 1, 1, 2)
    );
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT id, v FROM t ORDER BY id").await,
        expected(&[(1, "a"), (2, "B"), (4, "d"), (5, "e")])
    );

    // A merge needs a key.
    let err = store
        .merge(
            "t",
            schema(),
            vec![batch(&changes)],
            &Layout::default(),
            "r3",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TableError::NoKey { .. }), "{err}");
}

#[tokio::test]
async fn a_partitioned_merge_matches_records_in_the_null_partition_and_deletes_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        partition: Some("zone".into()),
        deletes: Some(("gone".into(), vec!["true".into()])),
        ..Default::default()
    };
    let initial = [
        (1, Some("a"), "a1", None),
        (2, Some("a"), "a2", None),
        (3, Some("b"), "b3", None),
        (4, None, "n4", None),
        (5, None, "n5", None),
    ];
    store
        .replace("t", schema(), vec![batch(&initial)], &layout, "r1")
        .await
        .unwrap();
    let before = by_partition(&files(&store.open_version("t", 0).await.unwrap()));
    assert_eq!(before.len(), 3, "partitions a, b and NULL");

    let changes = [
        (4, None, "N4", Some(false)),
        (5, None, "n5", Some(true)),
        (6, None, "n6", None),
        (1, Some("a"), "A1", None),
    ];
    let w = store
        .merge("t", schema(), vec![batch(&changes)], &layout, "r2")
        .await
        .unwrap()
        .write;
    assert_eq!((w.inserted, w.updated, w.deleted), (1, 2, 1));
    assert_eq!(w.files_rewritten, 2, "the files of partitions a and NULL");
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT id, v FROM t ORDER BY id").await,
        expected(&[(1, "A1"), (2, "a2"), (3, "b3"), (4, "N4"), (6, "n6")])
    );
    let after = by_partition(&files(&table));
    assert_eq!(
        after.get(&Some("b".to_string())),
        before.get(&Some("b".to_string())),
        "partition b is untouched"
    );
}
