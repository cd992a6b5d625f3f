//! One row per key: `newest_per_key` over batches, and `TableStore::dedupe` over a table a
//! full load wrote, both against the rule computed here in plain Rust.

use crate::common::{by_partition, files, rows, run_id};
use arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableStore, drop_deleted, newest_per_key};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, true),
        Field::new("changed", DataType::Int64, true),
        Field::new("v", DataType::Utf8, true),
        Field::new("gone", DataType::Boolean, true),
    ]))
}

#[derive(Clone, Copy)]
struct R {
    id: i64,
    zone: Option<&'static str>,
    changed: Option<i64>,
    v: &'static str,
    gone: bool,
}

const fn r(id: i64, zone: &'static str, changed: Option<i64>, v: &'static str) -> R {
    R {
        id,
        zone: Some(zone),
        changed,
        v,
        gone: false,
    }
}

const fn gone(mut row: R) -> R {
    row.gone = true;
    row
}

fn batch(rows: &[R]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.zone))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.changed))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.v))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.gone)))),
        ],
    )
    .unwrap()
}

/// The load, in two batches: duplicates with newer, older, NULL and tied `changed` values,
/// keys deleted by their newest row or only by an older one, and a partition (`b`) with
/// nothing to settle.
const FIRST: [R; 7] = [
    r(1, "a", Some(5), "1@5"),
    r(2, "a", None, "2@null"),
    r(3, "a", Some(7), "3@7 first"),
    r(10, "b", Some(1), "10"),
    r(11, "b", Some(1), "11"),
    r(4, "a", Some(1), "4 live"),
    gone(r(6, "a", Some(1), "6 deleted, then back")),
];
const SECOND: [R; 9] = [
    r(1, "a", Some(3), "1@3"),
    r(2, "a", Some(1), "2@1"),
    r(3, "a", Some(7), "3@7 second"),
    r(12, "b", Some(2), "12"),
    r(5, "a", Some(1), "5 once"),
    gone(r(4, "a", Some(2), "4 deleted")),
    r(6, "a", Some(2), "6 back"),
    gone(r(20, "c", Some(1), "20 deleted, once")),
    r(2, "a", None, "2@null later"),
];

/// The rule, in plain Rust: per key the greatest `changed` (None below any value), the later
/// row on a tie; then keys whose newest row is deleted dropped. Returns (id, v) by id.
fn expected(rows: &[R], drop_gone: bool) -> Vec<Vec<String>> {
    let mut newest: HashMap<i64, R> = HashMap::new();
    for row in rows {
        match newest.get(&row.id) {
            Some(cur) if row.changed < cur.changed => {}
            _ => {
                newest.insert(row.id, *row);
            }
        }
    }
    let sorted: BTreeMap<i64, R> = newest.into_iter().collect();
    sorted
        .values()
        .filter(|r| !(drop_gone && r.gone))
        .map(|r| vec![r.id.to_string(), r.v.to_string()])
        .collect()
}

fn layout() -> Layout {
    Layout {
        key: vec!["id".into()],
        partition: Some("zone".into()),
        updated: Some("changed".into()),
        deletes: Some(("gone".into(), vec!["true".into()])),
    }
}

fn id_and_v(b: &RecordBatch) -> Vec<Vec<String>> {
    let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let vs = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
    let mut out: Vec<Vec<String>> = (0..b.num_rows())
        .map(|i| vec![ids.value(i).to_string(), vs.value(i).to_string()])
        .collect();
    out.sort_by_key(|r| r[0].parse::<i64>().unwrap());
    out
}

#[test]
fn newest_per_key_follows_the_rule() {
    let all: Vec<R> = FIRST.iter().chain(SECOND.iter()).copied().collect();
    let newest = newest_per_key(&schema(), vec![batch(&FIRST), batch(&SECOND)], &layout())
        .unwrap()
        .unwrap();
    assert_eq!(id_and_v(&newest), expected(&all, false));
    let live = drop_deleted(newest, &layout()).unwrap();
    assert_eq!(id_and_v(&live), expected(&all, true));
}

#[tokio::test]
async fn dedupe_settles_a_full_load_in_one_commit_rewriting_only_the_partitions_concerned() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let (tx, rx) = mpsc::channel(1);
    let feed = tokio::spawn(async move {
        tx.send(Ok(batch(&FIRST))).await.unwrap();
        tx.send(Ok(batch(&SECOND))).await.unwrap();
    });
    store
        .replace_stream("t", schema(), rx, &layout(), "load")
        .await
        .unwrap();
    feed.await.unwrap();
    let before = by_partition(&files(&store.open_version("t", 0).await.unwrap()));

    let w = store.dedupe("t", &layout(), "load").await.unwrap().unwrap();
    assert_eq!(w.version, 1, "one commit");
    assert_eq!(run_id(&store, "t", 1).as_deref(), Some("load"));

    let all: Vec<R> = FIRST.iter().chain(SECOND.iter()).copied().collect();
    let want = expected(&all, true);
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(rows(&table, "SELECT id, v FROM t ORDER BY id").await, want);
    // Keys settled: held twice or more, or with a deleted row. Every row of theirs was
    // replaced by at most one.
    let mut count: HashMap<i64, usize> = HashMap::new();
    for row in &all {
        *count.entry(row.id).or_default() += 1;
    }
    let settled: Vec<i64> = count
        .keys()
        .copied()
        .filter(|id| count[id] > 1 || all.iter().any(|r| r.id == *id && r.gone))
        .collect();
    let settled_rows: usize = settled.iter().map(|id| count[id]).sum();
    let kept = settled
        .iter()
        .filter(|id| want.iter().any(|w| w[0] == id.to_string()))
        .count();
    assert_eq!(w.rows, kept as u64);
    assert_eq!(w.deleted, (settled_rows - kept) as u64);

    let after = by_partition(&files(&table));
    let b = Some("b".to_string());
    assert_eq!(after.get(&b), before.get(&b), "partition b is untouched");
    let concerned: usize = [Some("a".to_string()), Some("c".to_string())]
        .iter()
        .map(|p| before.get(p).map_or(0, Vec::len))
        .sum();
    assert_eq!(w.files_rewritten, concerned as u64);
    assert!(
        !after.contains_key(&Some("c".to_string())),
        "the only record of c was deleted"
    );

    // Settled: nothing more to do, and no commit.
    assert_eq!(store.dedupe("t", &layout(), "again").await.unwrap(), None);
    assert_eq!(store.latest_version("t").await.unwrap(), Some(1));
}

#[tokio::test]
async fn dedupe_by_a_composite_key_keeps_the_last_row_and_tells_null_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into(), "zone".into()],
        ..Default::default()
    };
    let null_zone = |id, v| R {
        id,
        zone: None,
        changed: None,
        v,
        gone: false,
    };
    let load = [
        r(1, "a", None, "1a first"),
        null_zone(1, "1-null first"),
        r(1, "", None, "1-empty"),
        r(1, "a", None, "1a second"),
        null_zone(1, "1-null second"),
        r(2, "a", None, "2a"),
    ];
    store
        .replace("t", schema(), vec![batch(&load)], &layout, "load")
        .await
        .unwrap();
    let w = store.dedupe("t", &layout, "load").await.unwrap().unwrap();
    assert_eq!((w.version, w.rows, w.deleted), (1, 2, 2));
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT v FROM t ORDER BY v").await,
        [["1-empty"], ["1-null second"], ["1a second"], ["2a"]]
            .iter()
            .map(|r| vec![r[0].to_string()])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_dedupe_within_given_keys_settles_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        partition: Some("zone".into()),
        ..Default::default()
    };
    // Keys 1 and 2 each sit in two partitions (a record that moved), 3 once.
    let load = [
        r(1, "a", None, "1 old"),
        r(2, "a", None, "2 old"),
        r(3, "a", None, "3"),
        r(1, "b", None, "1 new"),
        r(2, "b", None, "2 new"),
    ];
    store
        .replace("t", schema(), vec![batch(&load)], &layout, "load")
        .await
        .unwrap();
    let keys = |ids: &[i64]| {
        let s = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(s, vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap()
    };
    // Keys without copies: nothing to settle, no commit.
    let none = store
        .dedupe_within("t", &layout, "r1", Some(keys(&[3, 99])))
        .await
        .unwrap();
    assert_eq!(none, None);
    // Key 1 only: its older copy goes, key 2 keeps both.
    let w = store
        .dedupe_within("t", &layout, "r2", Some(keys(&[1, 3])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w.version, w.deleted), (1, 1));
    let table = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&table, "SELECT v FROM t ORDER BY v").await,
        ["1 new", "2 new", "2 old", "3"]
            .iter()
            .map(|v| vec![v.to_string()])
            .collect::<Vec<_>>()
    );
}
