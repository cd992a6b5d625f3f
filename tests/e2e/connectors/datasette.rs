//! The `datasette` connector against a real Datasette serving the fixture from SQLite, with
//! the fault-injecting proxy in front (Datasette keeps no request log of its own: the proxy's
//! log counts what crossed the wire).

use super::{Harness, assert_same, expected};
use chrono::DateTime;
use goalpost_testkit::dataset::BASE_EPOCH;
use goalpost_testkit::proxy::{self, Proxy};
use goalpost_testkit::real::datasette::{self, Datasette, DatasetteOptions, write_sqlite};
use goalpost_testkit::{ColumnKind, Dataset, Fault, FaultPlan, LoggedRequest, RequestLog};
use std::path::Path;

pub(super) const TABLE: &str = "fire_calls";

/// Datasette tables keep the CSV's headers as column names (as `csv-to-sqlite` and
/// `sqlite-utils` make them).
fn name(label: &str) -> String {
    label.to_string()
}

/// The fixture as a SQLite table: one column per CSV header (numbers as INTEGER or REAL,
/// everything else as the fixture's canonical text), keyed by `RowID`, plus `updated_at`, the
/// row's update time as `YYYY-MM-DD HH:MM:SS` UTC text.
pub(super) fn write_db(path: &Path, dataset: &Dataset) {
    let mut columns: Vec<(&str, &str)> = dataset
        .columns()
        .iter()
        .map(|c| {
            let ty = match c.kind {
                ColumnKind::Number if c.integer => "INTEGER",
                ColumnKind::Number => "REAL",
                _ => "TEXT",
            };
            (c.label.as_str(), ty)
        })
        .collect();
    columns.push(("updated_at", "TEXT"));
    let rows = dataset.rows().iter().map(|row| {
        let mut cells = row.values.clone();
        let updated = DateTime::from_timestamp(row.updated_at, 0).unwrap();
        cells.push(Some(updated.format("%Y-%m-%d %H:%M:%S").to_string()));
        cells
    });
    let written = write_sqlite(path, TABLE, &columns, rows, &["RowID"]).unwrap();
    assert_eq!(written, dataset.len());
}

/// A Datasette over `dataset` behind a proxy, or `None` when Datasette is not installed.
struct Served {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    _server: Datasette,
    proxy: Proxy,
}

impl Served {
    fn table_url(&self) -> String {
        let database = self.db.file_stem().unwrap().to_string_lossy();
        self.proxy.url(&format!("/{database}/{TABLE}"))
    }

    fn log(&self) -> &RequestLog {
        &self.proxy.log
    }

    fn faults(&self) -> &FaultPlan {
        &self.proxy.faults
    }
}

async fn serve(dataset: &Dataset, options: DatasetteOptions) -> Option<Served> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calls.db");
    write_db(&db, dataset);
    let server = datasette::start_or_skip(&db, options).await?;
    let proxy = proxy::start(server.base_url(), FaultPlan::new(), RequestLog::new()).await;
    Some(Served {
        _dir: dir,
        db,
        _server: server,
        proxy,
    })
}

fn harness(url: &str, extra: &str) -> Harness {
    Harness::new(
        &format!("kind = \"datasette\"\nurl = \"{url}\"\noverlap = \"10m\"\n{extra}"),
        name,
    )
}

fn changed_rows_plus_overlap(dataset: &Dataset, changed: &[String], overlap_secs: i64) -> usize {
    let key = dataset.key_index();
    let unchanged = |r: &&goalpost_testkit::Row| !changed.contains(&r.values[key].clone().unwrap());
    let watermark = dataset
        .rows()
        .iter()
        .filter(unchanged)
        .map(|r| r.updated_at)
        .max()
        .unwrap();
    changed.len()
        + dataset
            .rows()
            .iter()
            .filter(|r| r.updated_at >= watermark - overlap_secs && r.updated_at <= watermark)
            .count()
}

fn params<'a>(requests: &'a [LoggedRequest], name: &str) -> Vec<Option<&'a str>> {
    requests.iter().map(|r| r.param(name)).collect()
}

#[tokio::test]
async fn full_load_then_refresh_fetches_only_what_changed() {
    let mut dataset = Dataset::sf_fire();
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    let h = harness(&served.table_url(), "incremental_field = \"updated_at\"\n");

    let first = h.run().await.expect("first run");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    // Before the pages: the largest updated_at, taken as the full load's watermark.
    let requests = served.log().data_requests();
    assert_eq!(requests[0].param("_sort_desc"), Some("updated_at"));
    assert_eq!(requests[0].param("_size"), Some("1"));
    let pages: Vec<_> = requests[1..].to_vec();
    assert_eq!(
        pages.len(),
        8,
        "7,704 rows in pages of max_returned_rows = 1,000"
    );
    for p in &pages {
        assert_eq!(p.param("_size"), Some("1000"));
        assert_eq!(p.param("_shape"), Some("objects"));
        assert_eq!(p.param("_nosuggest"), Some("1"), "no facet suggestions");
        assert_eq!(p.param("_sort"), None, "key order, never _sort");
    }
    assert_eq!(pages[0].param("_next"), None);
    assert!(pages[1..].iter().all(|p| p.param("_next").is_some()));
    let probes: Vec<_> = served
        .log()
        .requests()
        .into_iter()
        .filter(|r| r.param("_size") == Some("0"))
        .collect();
    assert_eq!(probes.len(), 1, "columns and count asked for once");
    assert_same(&h.table().await, &expected(&dataset));

    // 1 % of the rows change a day later: the refresh reads those and the overlap window.
    let changed = dataset.change_rows(100, BASE_EPOCH + 86_400);
    assert_eq!(changed.len(), 77);
    write_db(&served.db, &dataset);
    let want_rows = changed_rows_plus_overlap(&dataset, &changed, 600);
    served.log().clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    assert_eq!(
        served.log().rows_served(),
        want_rows,
        "the changed rows plus the overlap window, nothing else"
    );
    let pages = served.log().data_requests();
    assert_eq!(pages.len(), 1);
    // The newest updated_at seen was 2017-01-08 01:36:00; the overlap is 10 minutes, and the
    // window keeps the column's own shape (a space, no zone) since SQLite compares text.
    assert_eq!(
        params(&pages, "updated_at__gte"),
        [Some("2017-01-08 01:26:00")]
    );
    assert_eq!(pages[0].param("_sort"), None);
    assert!(second.table_version > first.table_version);
    let table = h.table().await;
    assert_same(&table, &expected(&dataset));
    assert!(table[&changed[0]].disposition.starts_with("Changed"));

    // Nothing changed since: only the overlap window, which holds the changed rows.
    served.log().clear();
    let third = h.run().await.expect("quiet refresh");
    assert_eq!(served.log().rows_served(), changed.len());
    // They come back as the table has them: nothing is written.
    assert_eq!(
        third.rows_written, 0,
        "the overlap's rows came back unchanged"
    );
    assert_eq!(
        params(&served.log().data_requests(), "updated_at__gte"),
        [Some("2017-01-08 23:50:00")]
    );

    // --full starts over.
    let again = h.run_full().await.expect("full run");
    assert_eq!((again.mode, again.rows_fetched), ("full", 7704));
    assert_same(&h.table().await, &expected(&dataset));
}

#[tokio::test]
async fn transient_faults_through_the_proxy_are_retried_to_the_same_table() {
    let dataset = Dataset::sf_fire().subset(700);
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    let faults = super::transient_faults();
    for fault in faults {
        let h = harness(&served.table_url(), "page_size = 100\n");
        // Twice on the third page.
        let seen = served.faults().data_requests();
        let want = expected(&dataset);
        let report =
            super::retried_twice(&h, served.faults(), seen + 3, &fault, &want, "page 3").await;
        assert_eq!(report.rows_fetched, 700, "{fault:?}");
        super::assert_waited_twice(&h, &fault);
    }
}

#[tokio::test]
async fn failures_leave_the_table_and_digest_as_they_were() {
    let dataset = Dataset::sf_fire().subset(500);
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    let h = harness(&served.table_url(), "page_size = 100\n");
    h.run().await.expect("good run");
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;

    // A 5xx burst longer than the retry budget.
    super::push_502_burst(served.faults());
    let err = h.run().await.unwrap_err().to_string();
    super::assert_gave_up_on_502(&err);
    assert_eq!(h.table_version().await, version, "no table commit");
    assert_eq!(h.digest_bytes().unwrap(), digest, "the digest is untouched");

    // Datasette's 400 for a page above max_returned_rows (as a server whose settings are
    // hidden would answer) becomes advice, and is not retried.
    served.faults().clear();
    served.log().clear();
    served.faults().push(
        Fault::Status {
            code: 400,
            body: r#"{"ok": false, "error": "_size must be <= 50", "status": 400, "title": null}"#
                .into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("page_size = 100 is above this Datasette's max_returned_rows (50)"),
        "{err}"
    );
    assert_eq!(
        served.log().data_requests().len(),
        1,
        "a 400 is not retried"
    );
    assert_eq!(h.table_version().await, version);
    assert_eq!(h.digest_bytes().unwrap(), digest);
}

#[tokio::test]
async fn a_missing_incremental_field_or_table_fails_clearly() {
    let dataset = Dataset::sf_fire().subset(50);
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    // Datasette would take `updated__gte=` on a missing column and match every row or none.
    let h = harness(&served.table_url(), "incremental_field = \"updated\"\n");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("incremental_field \"updated\" is not a column")
            && err.contains("RowID")
            && err.contains("updated_at"),
        "{err}"
    );
    assert!(served.log().data_requests().is_empty(), "no row was read");
    assert_eq!(h.table_version().await, None);

    let missing = served.table_url().replace(TABLE, "fire_call");
    let h = harness(&missing, "");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("Table not found") && err.contains("https://host/<database>/<table>"),
        "{err}"
    );
}

#[tokio::test]
async fn page_size_stays_within_max_returned_rows() {
    let dataset = Dataset::sf_fire().subset(1200);
    let Some(served) = serve(
        &dataset,
        DatasetteOptions {
            max_returned_rows: 500,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    // Neither the default (1,000) nor an explicit larger size go past the server's limit.
    for extra in ["", "page_size = 5000\n"] {
        served.log().clear();
        let h = harness(&served.table_url(), extra);
        let report = h.run().await.expect("run");
        assert_eq!(report.rows_fetched, 1200);
        assert_eq!(
            params(&served.log().data_requests(), "_size"),
            [Some("500"); 3]
        );
        assert_same(&h.table().await, &expected(&dataset));
    }
}

#[tokio::test]
async fn filters_in_the_url_are_kept_and_counted() {
    let dataset = Dataset::sf_fire();
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    let h = harness(
        &format!("{}?Battalion=B02&Call+Type=Alarms", served.table_url()),
        "",
    );
    let report = h.run().await.expect("filtered run");
    let battalion = dataset.label_index("Battalion").unwrap();
    let call_type = dataset.label_index("Call Type").unwrap();
    let keep: Vec<_> = dataset
        .rows()
        .iter()
        .filter(|r| r.get(battalion) == Some("B02") && r.get(call_type) == Some("Alarms"))
        .collect();
    assert!(keep.len() > 20, "a real slice: {}", keep.len());
    assert_eq!(report.rows_fetched, keep.len() as u64);
    let want = expected(&dataset);
    let got = h.table().await;
    assert_eq!(got.len(), keep.len());
    for (k, v) in &got {
        assert_eq!(Some(v), want.get(k), "row {k}");
    }
    assert!(
        served
            .log()
            .data_requests()
            .iter()
            .all(|r| r.param("Battalion") == Some("B02") && r.param("Call Type") == Some("Alarms"))
    );

    // _sort in the URL is refused: Datasette 0.65 can skip rows when paging with it.
    let h = harness(&format!("{}?_sort=Received+DtTm", served.table_url()), "");
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("leave out _sort="), "{err}");
}

#[tokio::test]
async fn a_default_sort_in_the_metadata_is_overridden_by_key_order() {
    let dataset = Dataset::sf_fire().subset(3000);
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("metadata.json");
    // Sorted by a column with ties, which Datasette 0.65 pages wrongly.
    std::fs::write(
        &metadata,
        serde_json::json!({"databases": {"calls": {"tables": {TABLE: {"sort": "Received DtTm"}}}}})
            .to_string(),
    )
    .unwrap();
    let Some(served) = serve(
        &dataset,
        DatasetteOptions {
            metadata: Some(metadata),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let h = harness(&served.table_url(), "");
    let report = h.run().await.expect("run");
    assert_eq!(report.rows_fetched, 3000);
    assert_eq!(
        params(&served.log().data_requests(), "_sort"),
        [Some("RowID"); 3]
    );
    assert_same(&h.table().await, &expected(&dataset));
}

#[tokio::test]
async fn a_recorded_run_replays_offline() {
    let dataset = Dataset::sf_fire().subset(400);
    let Some(served) = serve(&dataset, DatasetteOptions::default()).await else {
        return;
    };
    let h = harness(
        &served.table_url(),
        "page_size = 100\nincremental_field = \"updated_at\"\n",
    );
    let first = h.run().await.expect("recorded run");
    drop(served);
    let replay = h
        .replay(&first.run_id)
        .await
        .expect("replay without the server");
    assert_eq!(replay.rows_fetched, 400);
    assert_eq!(replay.fetch.requests, 0, "nothing went to the network");
    assert_same(&h.table().await, &expected(&dataset));
}
