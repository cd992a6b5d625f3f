//! Merges into a table with an `updated` column: the stored stamps decide which fetched rows
//! are changes, and only those reach the merge, so partitions whose rows all came back at
//! the stored version are neither read in full nor rewritten.

use crate::common::{by_partition, files, rows};
use arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableStore};
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, true),
        Field::new("v", DataType::Utf8, true),
        Field::new("at", DataType::Int64, true),
        Field::new("gone", DataType::Boolean, true),
    ]))
}

/// (id, zone, value, stamp, deleted)
type R = (i64, &'static str, &'static str, Option<i64>, Option<bool>);

fn batch(rows: &[R]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.4))),
        ],
    )
    .unwrap()
}

fn layout() -> Layout {
    Layout {
        key: vec!["id".into()],
        partition: Some("zone".into()),
        updated: Some("at".into()),
        deletes: Some(("gone".into(), vec!["true".into()])),
    }
}

fn stored() -> Vec<R> {
    // Zones a, b, c hold ids 1–9; id 9 has no stamp.
    vec![
        (1, "a", "a1", Some(10), None),
        (2, "a", "a2", Some(10), None),
        (3, "a", "a3", Some(10), None),
        (4, "b", "b4", Some(10), None),
        (5, "b", "b5", Some(10), None),
        (6, "b", "b6", Some(10), None),
        (7, "c", "c7", Some(10), None),
        (8, "c", "c8", Some(10), None),
        (9, "c", "c9", None, None),
    ]
}

async fn table_with(store: &TableStore, rows: &[R]) {
    store
        .replace("t", schema(), vec![batch(rows)], &layout(), "r1")
        .await
        .unwrap();
}

#[tokio::test]
async fn rows_at_the_stored_version_or_older_change_nothing_and_their_partitions_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    table_with(&store, &stored()).await;
    let before = by_partition(&files(&store.open_version("t", 0).await.unwrap()));

    let fetched = [
        (1, "a", "a1", Some(10), None),           // the same version again
        (2, "a", "edited?", Some(10), None),      // the same stamp: the same version
        (3, "a", "older", Some(9), None),         // an older version
        (4, "b", "no stamp", None, None),         // no stamp, the stored row has one
        (5, "b", "B5", Some(11), None),           // newer: a change
        (7, "c", "c7", Some(10), Some(true)),     // a deletion, whatever its stamp
        (9, "c", "C9", Some(1), None),            // the stored row has no stamp: a change
        (10, "b", "b10", Some(11), None),         // a new record
        (11, "c", "ghost", Some(11), Some(true)), // deleted before it was ever stored
    ];
    let merged = store
        .merge("t", schema(), vec![batch(&fetched)], &layout(), "r2")
        .await
        .unwrap();
    let w = merged.write;
    assert_eq!((w.version, w.inserted, w.updated, w.deleted), (1, 1, 2, 1));
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT id, zone, v FROM t ORDER BY id").await,
        [
            "1 a a1", "2 a a2", "3 a a3", "4 b b4", "5 b B5", "6 b b6", "8 c c8", "9 c C9",
            "10 b b10",
        ]
        .iter()
        .map(|r| r.split(' ').map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    assert_eq!(
        w.files_scanned, 2,
        "zones b and c have a change; a has none"
    );
    let after = by_partition(&files(&table));
    assert_eq!(
        after.get(&Some("a".to_string())),
        before.get(&Some("a".to_string())),
        "zone a is not rewritten"
    );
    // Id 10 was added: it could be a record that moved zones, so it is the one to settle.
    let settle = merged.to_settle.expect("a row was added");
    assert_eq!(settle.num_columns(), 1);
    assert_eq!(
        settle
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec(),
        vec![10]
    );
}

#[tokio::test]
async fn a_fetch_holding_only_stored_versions_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    table_with(&store, &stored()).await;
    let again: Vec<R> = stored().into_iter().filter(|r| r.3.is_some()).collect();
    let merged = store
        .merge("t", schema(), vec![batch(&again)], &layout(), "r2")
        .await
        .unwrap();
    assert_eq!(merged.write.version, 0, "no commit");
    assert_eq!(merged.write.rows, 0);
    assert!(merged.to_settle.is_none());
    assert_eq!(store.latest_version("t").await.unwrap(), Some(0));
}

#[tokio::test]
async fn a_record_that_moved_partitions_is_added_then_settled_to_its_newest_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    table_with(&store, &stored()).await;
    // Id 2 moved from zone a to zone c at the source; id 3 came back unchanged.
    let fetched = [
        (2, "c", "moved", Some(12), None),
        (3, "a", "a3", Some(10), None),
    ];
    let merged = store
        .merge("t", schema(), vec![batch(&fetched)], &layout(), "r2")
        .await
        .unwrap();
    assert_eq!((merged.write.inserted, merged.write.updated), (1, 0));
    let settle = merged.to_settle.expect("id 2 was added to zone c");
    assert_eq!(settle.num_rows(), 1);
    let settled = store
        .dedupe_within("t", &layout(), "r3", Some(settle))
        .await
        .unwrap()
        .expect("id 2 was stored twice");
    assert_eq!(settled.deleted, 1);
    let table = store.open_version("t", settled.version).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT zone, v FROM t WHERE id = 2").await,
        vec![vec!["c".to_string(), "moved".to_string()]]
    );
}

#[tokio::test]
async fn without_inserted_rows_there_is_nothing_to_settle() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    table_with(&store, &stored()).await;
    // Without an `updated` column the merge compares whole rows itself.
    let layout = Layout {
        updated: None,
        ..layout()
    };
    let fetched = [
        (4, "b", "B4", Some(10), None),
        (5, "b", "b5", Some(10), None),
    ];
    let merged = store
        .merge("t", schema(), vec![batch(&fetched)], &layout, "r2")
        .await
        .unwrap();
    assert_eq!((merged.write.inserted, merged.write.updated), (0, 1));
    assert!(merged.to_settle.is_none());
}

#[tokio::test]
async fn newer_rows_rewrite_only_the_files_they_replace_a_row_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    // A zone whose name needs escaping in a path.
    let odd = "d e/f%";
    let mut initial = stored();
    initial.push((20, odd, "d20", Some(10), None));
    initial.push((21, odd, "d21", Some(10), None));
    table_with(&store, &initial).await;
    let before = by_partition(&files(&store.open_version("t", 0).await.unwrap()));

    let fetched = [
        (1, "a", "a1", Some(10), None),      // the same version: nothing
        (4, "b", "B4", Some(11), None),      // newer: replaces its row in zone b
        (21, odd, "D21", Some(12), None),    // newer, in the oddly named zone
        (30, "c", "c30", Some(11), None),    // new: added to zone c
        (31, "e", "e31", None, Some(false)), // new, in a new zone, without a stamp
    ];
    let merged = store
        .merge("t", schema(), vec![batch(&fetched)], &layout(), "r2")
        .await
        .unwrap();
    let w = merged.write;
    assert_eq!((w.version, w.inserted, w.updated, w.deleted), (1, 2, 2, 0));
    assert_eq!(w.files_scanned, 2, "the files of zones b and {odd:?} only");
    assert_eq!(w.files_rewritten, 2);
    let table = store.open_version("t", 1).await.unwrap();
    let mut expected: Vec<R> = initial
        .iter()
        .map(|r| match r.0 {
            4 => (4, "b", "B4", Some(11), None),
            21 => (21, odd, "D21", Some(12), None),
            _ => *r,
        })
        .collect();
    expected.push((30, "c", "c30", Some(11), None));
    expected.push((31, "e", "e31", None, Some(false)));
    assert_eq!(
        rows(
            &table,
            "SELECT id, zone, v, CAST(at AS VARCHAR) FROM t ORDER BY id"
        )
        .await,
        expected
            .iter()
            .map(|r| vec![
                r.0.to_string(),
                r.1.to_string(),
                r.2.to_string(),
                r.3.map_or("NULL".to_string(), |a| a.to_string())
            ])
            .collect::<Vec<_>>()
    );
    let after = by_partition(&files(&table));
    for zone in ["a", "c"] {
        let zone = Some(zone.to_string());
        assert!(
            before[&zone].iter().all(|f| after[&zone].contains(f)),
            "zone {zone:?} keeps its files: rows added there go into a new one"
        );
    }
    for zone in ["b", odd] {
        let zone = Some(zone.to_string());
        assert!(
            before[&zone].iter().all(|f| !after[&zone].contains(f)),
            "zone {zone:?} is rewritten"
        );
    }
    // The commit says what it did, as delta-rs's merge does.
    let log =
        std::fs::read_to_string(dir.path().join("t/_delta_log/00000000000000000001.json")).unwrap();
    assert!(log.contains("\"operation\":\"MERGE\""), "{log}");
    // goalpost's own merge: delta-rs's would have timed its scan of the files.
    assert!(!log.contains("scan_time_ms"), "{log}");
    assert!(log.contains("\"num_target_rows_copied\":3"), "{log}");
}
