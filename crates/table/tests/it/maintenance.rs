//! Compaction and vacuum.

use crate::common::{DataFile, by_partition, files, number, rows, run_id};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use goalpost_table::{Layout, TableError, TableStore};
use std::collections::BTreeSet;
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, true),
        Field::new("v", DataType::Utf8, true),
    ]))
}

fn batch(ids: std::ops::Range<i64>, v: &str) -> RecordBatch {
    let zones = ["a", "b", "c"];
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| zones[(i % 3) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.map(|i| format!("{v}{i}")),
            )),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn compaction_packs_small_files_per_partition_without_changing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        partition: Some("zone".into()),
        ..Default::default()
    };
    store
        .replace("t", schema(), vec![batch(0..30, "v")], &layout, "r0")
        .await
        .unwrap();
    for k in 1..6 {
        store
            .append("t", vec![batch(k * 30..(k + 1) * 30, "v")], "r")
            .await
            .unwrap();
    }
    let before = files(&store.open_version("t", 5).await.unwrap());
    assert_eq!(before.len(), 18, "six writes into three partitions");

    let stats = store.file_stats("t", 1 << 20).await.unwrap();
    assert_eq!(stats.files, 18);
    assert_eq!(stats.small_files, 18);
    assert_eq!(
        stats.bytes,
        before.iter().map(|f| f.size as u64).sum::<u64>()
    );
    assert_eq!(store.file_stats("t", 1).await.unwrap().small_files, 0);

    let report = store.compact("t", 64 << 20, "compact").await.unwrap();
    assert_eq!(report.version_before, 5);
    assert_eq!(report.version_after, Some(6));
    assert_eq!(run_id(&store, "t", 6).as_deref(), Some("compact"));
    assert_eq!((report.files_removed, report.files_added), (18, 3));
    let after = store.open_version("t", 6).await.unwrap();
    assert_eq!(by_partition(&files(&after)).len(), 3);
    assert!(
        by_partition(&files(&after))
            .values()
            .all(|fs| fs.len() == 1)
    );
    let all = "SELECT id, zone, v FROM t ORDER BY id";
    let old = store.open_version("t", 5).await.unwrap();
    assert_eq!(rows(&after, all).await, rows(&old, all).await);
    assert_eq!(number(&after, "SELECT COUNT(*) FROM t").await, 180);

    // Nothing left to pack: no commit.
    let again = store.compact("t", 64 << 20, "compact").await.unwrap();
    assert_eq!((again.version_before, again.version_after), (6, None));
    assert_eq!(store.latest_version("t").await.unwrap(), Some(6));
}

fn paths(files: &[DataFile]) -> BTreeSet<String> {
    files.iter().map(|f| f.path.clone()).collect()
}

#[tokio::test]
async fn vacuum_deletes_only_files_that_no_kept_version_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        ..Default::default()
    };
    let on_disk = |path: &str| store.path("t").local().unwrap().join(path).exists();

    // v0: file A. v1: + file B. v2: a merge rewrites A as A'. v3: a replace removes A', B.
    store
        .replace("t", schema(), vec![batch(0..10, "a")], &layout, "r0")
        .await
        .unwrap();
    store
        .append("t", vec![batch(10..20, "b")], "r1")
        .await
        .unwrap();
    store
        .merge("t", schema(), vec![batch(1..2, "changed")], &layout, "r2")
        .await
        .unwrap();
    store
        .replace("t", schema(), vec![batch(100..105, "c")], &layout, "r3")
        .await
        .unwrap();
    let at = |v: u64| {
        let store = store.clone();
        async move { files(&store.open_version("t", v).await.unwrap()) }
    };
    let (v0, v1, v2, v3) = (at(0).await, at(1).await, at(2).await, at(3).await);
    let a = paths(&v0);
    let b: BTreeSet<_> = paths(&v1).difference(&a).cloned().collect();
    let a2: BTreeSet<_> = paths(&v2).difference(&b).cloned().collect();
    assert_eq!((a.len(), b.len(), a2.len()), (1, 1, 1));
    assert!(a.is_disjoint(&a2));
    let size_of_a: u64 = v0.iter().map(|f| f.size as u64).sum();

    // Keeping v2 on: only A goes (B and A' are v2's, though v3 removed them).
    let dry = store.vacuum("t", 2, true).await.unwrap();
    assert_eq!(
        dry.files_deleted.iter().cloned().collect::<BTreeSet<_>>(),
        a
    );
    assert_eq!(dry.bytes, size_of_a);
    assert!(a.iter().all(|p| on_disk(p)), "a dry run deletes nothing");
    assert_eq!(store.latest_version("t").await.unwrap(), Some(3));

    let real = store.vacuum("t", 2, false).await.unwrap();
    assert_eq!(real, dry);
    assert!(a.iter().all(|p| !on_disk(p)));
    assert!(b.iter().chain(&a2).chain(&paths(&v3)).all(|p| on_disk(p)));
    let v2_table = store.open_version("t", 2).await.unwrap();
    assert_eq!(number(&v2_table, "SELECT COUNT(*) FROM t").await, 20);
    assert_eq!(
        rows(&v2_table, "SELECT v FROM t WHERE id = 1").await,
        [["changed1".to_string()]]
    );
    assert_eq!(
        number(
            &store.open_version("t", 3).await.unwrap(),
            "SELECT COUNT(*) FROM t"
        )
        .await,
        5
    );
    assert_eq!(
        store.latest_version("t").await.unwrap(),
        Some(3),
        "a vacuum commits nothing"
    );

    // Keeping v3 on: B and A' go too (A is not reported again); v3 stays readable.
    let report = store.vacuum("t", 3, false).await.unwrap();
    let expected: BTreeSet<_> = b.union(&a2).cloned().collect();
    assert_eq!(
        report
            .files_deleted
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected
    );
    let removed_sizes: u64 = v1
        .iter()
        .chain(&v2)
        .filter(|f| expected.contains(&f.path))
        .map(|f| (f.path.clone(), f.size as u64))
        .collect::<std::collections::BTreeMap<_, _>>()
        .values()
        .sum();
    assert_eq!(report.bytes, removed_sizes);
    let latest = store.latest_version("t").await.unwrap().unwrap();
    assert_eq!(latest, 3);
    assert!(b.iter().chain(&a2).all(|p| !on_disk(p)));
    assert!(paths(&v3).iter().all(|p| on_disk(p)));
    let v3_table = store.open_version("t", 3).await.unwrap();
    assert_eq!(number(&v3_table, "SELECT COUNT(*) FROM t").await, 5);
    assert_eq!(
        store.vacuum("t", 3, true).await.unwrap(),
        Default::default(),
        "nothing left to delete"
    );
    assert!(matches!(
        store.vacuum("t", latest + 1, true).await,
        Err(TableError::NoSuchVersion { .. })
    ));
}

#[tokio::test]
async fn vacuum_keeps_what_kept_versions_need_even_when_commit_times_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout::default();
    // v0: file A. v1: file B replaces A. v2: file C replaces B.
    for (v, name) in ["a", "b", "c"].iter().enumerate() {
        let start = 10 * v as i64;
        store
            .replace(
                "t",
                schema(),
                vec![batch(start..start + 10, name)],
                &layout,
                "r",
            )
            .await
            .unwrap();
    }
    let b = paths(&files(&store.open_version("t", 1).await.unwrap()));
    // Version 1's commit claims a time a day after every removal (a clock that stepped
    // back before version 2 was written): by time alone, B, removed at version 2, would go.
    let log = store
        .path("t")
        .local()
        .unwrap()
        .join("_delta_log")
        .join(format!("{:020}.json", 1));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in &mut lines {
        if let Some(info) = action.get_mut("commitInfo") {
            let t = info["timestamp"].as_i64().unwrap();
            info["timestamp"] = serde_json::json!(t + 86_400_000);
        }
    }
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&log, text.join("\n")).unwrap();

    let report = store.vacuum("t", 1, false).await.unwrap();
    let a = paths(&files(&store.open_version("t", 0).await.unwrap()));
    assert_eq!(
        report
            .files_deleted
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        a
    );
    assert!(
        b.iter()
            .all(|p| store.path("t").local().unwrap().join(p).exists())
    );
    let v1 = store.open_version("t", 1).await.unwrap();
    assert_eq!(
        rows(&v1, "SELECT v FROM t WHERE id = 10").await,
        [["b10".to_string()]]
    );
}

#[tokio::test]
async fn vacuum_removes_files_of_failed_writes_older_than_the_kept_versions_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path());
    let layout = Layout {
        key: vec!["id".into()],
        ..Default::default()
    };
    store
        .replace("t", schema(), vec![batch(0..10, "a")], &layout, "r0")
        .await
        .unwrap();
    // A file a crashed write left behind before v1, and one a write in progress is
    // writing now (newer than every commit).
    let now = std::time::SystemTime::now();
    let orphan = |name: &str, at: std::time::SystemTime| {
        let path = store.path("t").local().unwrap().join(name);
        std::fs::write(&path, b"PAR1 not really").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
        path
    };
    let old = orphan(
        "part-crashed.parquet",
        now - std::time::Duration::from_secs(3600),
    );
    let fresh = orphan(
        "part-in-progress.parquet",
        now + std::time::Duration::from_secs(3600),
    );
    store
        .append("t", vec![batch(10..20, "b")], "r1")
        .await
        .unwrap();
    let report = store.vacuum("t", 1, false).await.unwrap();
    assert!(
        report
            .files_deleted
            .iter()
            .any(|f| f.ends_with("part-crashed.parquet")),
        "{report:?}"
    );
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "a file newer than the kept versions may be a write in progress"
    );
    assert_eq!(
        number(
            &store.open_version("t", 1).await.unwrap(),
            "SELECT COUNT(*) FROM t"
        )
        .await,
        20
    );
}
