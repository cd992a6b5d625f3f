//! A merge into a large partitioned table rewrites only the partitions its rows fall in.

use crate::common::{by_partition, files, number, rows, run_id};
use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableStore};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;

const ROWS: i64 = 1_000_000;
const MONTHS: i64 = 24;
const BATCH: i64 = 250_000;
/// The two months the changes fall in.
const CHANGED: [i64; 2] = [4, 13];
/// Rows changed per changed month, and rows inserted per changed month.
const UPDATES_PER_MONTH: i64 = 5_000;
const INSERTS_PER_MONTH: i64 = 250;
/// A month whose rows come back unchanged (a refresh's overlap window), and how many.
const SAME: i64 = 7;
const SAME_ROWS: i64 = 1_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("created_at_month", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]))
}

/// The label of month number `m` (0 = 2023-01).
fn label(m: i64) -> String {
    format!("{}-{:02}", 2023 + m / 12, m % 12 + 1)
}

/// Row `i` of the initial load falls in month `i % MONTHS` and has value `i / 2`.
fn initial(range: std::ops::Range<i64>) -> RecordBatch {
    let labels: Vec<String> = (0..MONTHS).map(label).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(range.clone())),
            Arc::new(StringArray::from_iter_values(
                range
                    .clone()
                    .map(|i| labels[(i % MONTHS) as usize].as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                range.map(|i| i as f64 / 2.0),
            )),
        ],
    )
    .unwrap()
}

fn rows_of(data: &[(i64, String, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(data.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(
                data.iter().map(|r| r.1.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(data.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

/// The first `UPDATES_PER_MONTH` ids of month `m` get value `-1 - id`; `INSERTS_PER_MONTH`
/// new ids (`(m + 1) * 10_000_000 + k`) join month `m` with value `k`.
fn changes() -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    for m in CHANGED {
        for k in 0..UPDATES_PER_MONTH {
            let id = m + k * MONTHS;
            out.push((id, label(m), -1.0 - id as f64));
        }
        for k in 0..INSERTS_PER_MONTH {
            out.push(((m + 1) * 10_000_000 + k, label(m), k as f64));
        }
    }
    for k in 0..SAME_ROWS {
        let id = SAME + k * MONTHS;
        out.push((id, label(SAME), id as f64 / 2.0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_rewrites_only_the_partitions_its_rows_fall_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        partition: Some("created_at_month".into()),
        ..Default::default()
    };

    // A full load of a million rows, streamed in four batches.
    let (tx, rx) = mpsc::channel(1);
    let feed = tokio::spawn(async move {
        for start in (0..ROWS).step_by(BATCH as usize) {
            tx.send(Ok(initial(start..(start + BATCH).min(ROWS))))
                .await
                .unwrap();
        }
    });
    let loaded = store
        .replace_stream("calls", schema(), rx, &layout, "load")
        .await
        .unwrap();
    feed.await.unwrap();
    assert_eq!((loaded.version, loaded.rows), (0, ROWS as u64));

    let before = files(&store.open_version("calls", 0).await.unwrap());
    let before_parts = by_partition(&before);
    assert_eq!(
        before_parts.len(),
        MONTHS as usize,
        "one partition per month"
    );
    let changed: BTreeSet<Option<String>> = CHANGED.iter().map(|m| Some(label(*m))).collect();
    let in_changed: Vec<_> = before
        .iter()
        .filter(|f| changed.contains(&f.partition))
        .cloned()
        .collect();
    let untouched: Vec<_> = before
        .iter()
        .filter(|f| !changed.contains(&f.partition))
        .cloned()
        .collect();

    let changes = changes();
    let write = store
        .merge(
            "calls",
            schema(),
            vec![rows_of(&changes)],
            &layout,
            "refresh",
        )
        .await
        .unwrap()
        .write;
    assert_eq!(write.version, 1);
    assert_eq!(run_id(&store, "calls", 1).as_deref(), Some("refresh"));
    assert_eq!(
        write.updated,
        (CHANGED.len() as i64 * UPDATES_PER_MONTH) as u64
    );
    assert_eq!(
        write.inserted,
        (CHANGED.len() as i64 * INSERTS_PER_MONTH) as u64
    );
    assert_eq!(write.deleted, 0);
    let in_same = before
        .iter()
        .filter(|f| f.partition == Some(label(SAME)))
        .count();
    assert_eq!(
        write.files_scanned,
        (in_changed.len() + in_same) as u64,
        "the early filter pruned every file outside the three months"
    );
    assert_eq!(
        write.files_rewritten,
        in_changed.len() as u64,
        "the month whose rows came back unchanged is not rewritten"
    );

    let table = store.open_version("calls", 1).await.unwrap();
    let after = files(&table);
    let after_set: BTreeSet<_> = after.iter().cloned().collect();
    for f in &untouched {
        assert!(after_set.contains(f), "{f:?} of an unchanged month is gone");
    }
    for f in &in_changed {
        assert!(!after_set.contains(f), "{f:?} of a changed month was kept");
    }
    assert_eq!(
        after.len() - untouched.len(),
        write.files_added as usize,
        "every new file belongs to a changed month"
    );

    // Contents, against counts computed from the generating rules.
    let month_rows = |m: i64| (0..ROWS).filter(|i| i % MONTHS == m).count() as i64;
    let total = ROWS + CHANGED.len() as i64 * INSERTS_PER_MONTH;
    assert_eq!(number(&table, "SELECT COUNT(*) FROM t").await, total);
    assert_eq!(
        number(&table, "SELECT COUNT(DISTINCT id) FROM t").await,
        total
    );
    assert_eq!(
        number(&table, "SELECT COUNT(*) FROM t WHERE value < 0").await,
        CHANGED.len() as i64 * UPDATES_PER_MONTH
    );
    for m in CHANGED {
        let q = format!(
            "SELECT COUNT(*) FROM t WHERE created_at_month = '{}'",
            label(m)
        );
        assert_eq!(
            number(&table, &q).await,
            month_rows(m) + INSERTS_PER_MONTH,
            "{q}"
        );
    }
    let unchanged_month = 7;
    let q = format!(
        "SELECT COUNT(*) FROM t WHERE created_at_month = '{}' AND value >= 0",
        label(unchanged_month)
    );
    assert_eq!(number(&table, &q).await, month_rows(unchanged_month));
    // Spot checks (values doubled to stay integers): an updated row, its unchanged
    // neighbour, an inserted row.
    let last_updated = CHANGED[1] + (UPDATES_PER_MONTH - 1) * MONTHS;
    let first_kept = CHANGED[1] + UPDATES_PER_MONTH * MONTHS;
    let q = format!(
        "SELECT id, created_at_month, CAST(value * 2 AS BIGINT) FROM t WHERE id IN ({last_updated}, {first_kept}, {}) ORDER BY id",
        (CHANGED[0] + 1) * 10_000_000 + 7
    );
    assert_eq!(
        rows(&table, &q).await,
        vec![
            vec![
                last_updated.to_string(),
                label(CHANGED[1]),
                (-2 - 2 * last_updated).to_string()
            ],
            vec![
                first_kept.to_string(),
                label(CHANGED[1]),
                first_kept.to_string()
            ],
            vec![
                ((CHANGED[0] + 1) * 10_000_000 + 7).to_string(),
                label(CHANGED[0]),
                "14".to_string()
            ],
        ]
    );
}
