//! The `opendatasoft` connector against the Explore API v2.1 emulator.

use super::{Harness, Stored, assert_same, expected};
use chrono::DateTime;
use goalpost_testkit::dataset::BASE_EPOCH;
use goalpost_testkit::opendatasoft::{self, OdsOptions, UPDATED_FIELD};
use goalpost_testkit::{Dataset, Fault, LoggedRequest, SharedDataset, TestServer};
use std::collections::BTreeMap;
use std::time::Duration;

const DATASET: &str = "sf-fire-department-calls";

fn name(label: &str) -> String {
    goalpost_testkit::dataset::field_name(label)
}

async fn serve(rows: Option<usize>, max_window: usize) -> (SharedDataset, TestServer) {
    let full = Dataset::sf_fire();
    let dataset = match rows {
        Some(n) => full.subset(n),
        None => full,
    }
    .shared();
    let options = OdsOptions {
        max_window,
        ..Default::default()
    };
    let server = opendatasoft::start(dataset.clone(), options).await;
    (dataset, server)
}

/// The `[[source]]` body reading the emulator's dataset, with `extra` keys appended.
fn source(server: &TestServer, extra: &str) -> String {
    format!(
        "kind = \"opendatasoft\"\nurl = \"{}\"\ndataset = \"{DATASET}\"\noverlap = \"10m\"\n{extra}",
        server.base_url()
    )
}

fn harness(server: &TestServer, extra: &str) -> Harness {
    Harness::new(&source(server, extra), name)
}

/// Refresh by the emulator's row-update field.
const INCREMENTAL: &str = "incremental_field = \"updated\"\n";

/// Point the harness's pipeline at a different source (`body` as [`source`] writes it).
fn rewrite_source(h: &Harness, body: &str) {
    let path = h.dir.path().join("pipelines/fire.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[[source]]\n").unwrap() + "[[source]]\n".len();
    let end = text.find("\n[table]").unwrap();
    let text = format!("{}{body}\n{}", &text[..start], &text[end..]);
    std::fs::write(&path, text).unwrap();
}

fn is_records(r: &LoggedRequest) -> bool {
    r.path.ends_with("/records")
}

fn is_export(r: &LoggedRequest) -> bool {
    r.path.ends_with("/exports/json")
}

/// `/records` requests that asked for rows (not counts).
/// The `/records` requests that read rows: not counts (`limit=0`), and not the one-row
/// request a full load makes first for the newest value of the incremental field.
fn record_pages(server: &TestServer) -> Vec<LoggedRequest> {
    server
        .log
        .requests()
        .into_iter()
        .filter(|r| is_records(r) && r.param("limit") != Some("0") && !is_newest_probe(r))
        .collect()
}

fn is_newest_probe(r: &LoggedRequest) -> bool {
    r.param("limit") == Some("1") && r.param("select").is_some()
}

/// The refresh's expected window: rows updated at or after the first run's watermark less
/// the 10-minute overlap, and the literal the connector should send for its start.
fn refresh_window(dataset: &SharedDataset, changed: &[String]) -> (usize, String) {
    let data = dataset.read().unwrap();
    let watermark = data
        .rows()
        .iter()
        .filter(|r| !changed.contains(&data.key_of(r).to_string()))
        .map(|r| r.updated_at)
        .max()
        .unwrap();
    let in_overlap = data
        .rows()
        .iter()
        .filter(|r| r.updated_at >= watermark - 600 && r.updated_at <= watermark)
        .count();
    let start = DateTime::from_timestamp(watermark - 600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    (in_overlap, start)
}

#[tokio::test]
async fn full_load_pages_records_then_refresh_fetches_only_what_changed() {
    let (dataset, server) = serve(None, 10_000).await;
    let h = harness(&server, INCREMENTAL);

    let first = h.run().await.expect("first run");
    assert_eq!(first.mode, "full");
    assert_eq!(first.rows_fetched, 7704);
    let probes: Vec<_> = server
        .log
        .requests()
        .into_iter()
        .filter(is_newest_probe)
        .collect();
    assert_eq!(
        probes.len(),
        1,
        "a full load asks for the newest update first"
    );
    assert_eq!(probes[0].param("order_by"), Some("`updated` DESC"));
    let pages = record_pages(&server);
    assert_eq!(pages.len(), 78, "7,704 rows in pages of 100");
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.param("offset"), Some((i * 100).to_string().as_str()));
        assert_eq!(p.param("limit"), Some("100"));
        assert_eq!(p.param("order_by"), None, "a full load keeps natural order");
        assert_eq!(p.param("timezone"), Some("UTC"));
    }
    assert!(
        server.log.requests().iter().all(|r| !is_export(r)),
        "7,704 rows fit in the records window"
    );
    assert_eq!(
        server.log.rows_served(),
        7704 + 1,
        "the pages and the one-row probe"
    );
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Change 1 % of the rows a day later; a refresh reads only rows updated since the last
    // watermark less the overlap.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    assert_eq!(changed.len(), 77);
    let (in_overlap, start) = refresh_window(&dataset, &changed);
    server.log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    assert_eq!(
        server.log.rows_served(),
        changed.len() + in_overlap,
        "the changed rows plus the overlap window, nothing else"
    );
    let pages = record_pages(&server);
    assert_eq!(pages.len(), (changed.len() + in_overlap).div_ceil(100));
    for p in &pages {
        assert_eq!(p.param("order_by"), Some("`updated` DESC"), "newest first");
        assert_eq!(
            p.param("where"),
            Some(format!("`updated` >= date'{start}'").as_str())
        );
    }
    assert!(second.table_version > first.table_version);
    let table = h.table().await;
    assert_same(&table, &expected(&dataset.read().unwrap()));
    assert!(table[&changed[0]].disposition.starts_with("Changed"));

    // Nothing changed since: only the overlap window again.
    server.log.clear();
    let third = h.run().await.expect("quiet refresh");
    assert_eq!(
        server.log.rows_served(),
        changed.len(),
        "the overlap holds the changed rows"
    );
    // They come back as the table has them: nothing is written.
    assert_eq!(
        third.rows_written, 0,
        "the overlap's rows came back unchanged"
    );

    // --full starts over.
    server.log.clear();
    let full = h.run_full().await.expect("full run");
    assert_eq!((full.mode, full.rows_fetched), ("full", 7704));
}

#[tokio::test]
async fn a_result_beyond_the_records_window_loads_through_exports() {
    let (dataset, server) = serve(None, 5_000).await;
    let h = harness(&server, INCREMENTAL);

    let first = h.run().await.expect("first run");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    assert!(record_pages(&server).is_empty(), "no page of /records");
    let requests = server.log.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == 400).collect();
    assert_eq!(refused.len(), 1, "one probe of the window, refused");
    assert_eq!(refused[0].param("offset"), Some("7800"));
    let exports: Vec<_> = requests.iter().filter(|r| is_export(r)).collect();
    assert_eq!(exports.len(), 1, "the whole result in one export");
    assert_eq!(exports[0].rows, 7704);
    assert_eq!(exports[0].param("timezone"), Some("UTC"));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // A refresh is small again: back to /records.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    let (in_overlap, _) = refresh_window(&dataset, &changed);
    server.log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    assert_eq!(server.log.rows_served(), changed.len() + in_overlap);
    assert!(server.log.requests().iter().all(|r| !is_export(r)));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn export_never_beyond_the_window_fails_clearly_and_keeps_the_table() {
    let (dataset, server) = serve(None, 5_000).await;
    let h = harness(&server, "export = \"always\"\n");
    let good = h.run().await.expect("exported");
    assert_eq!(good.rows_fetched, 7704);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;

    rewrite_source(&h, &source(&server, "export = \"never\"\n"));
    server.log.clear();
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("7704 rows")
            && err.contains("export = \"never\"")
            && err.contains("set export = \"auto\"")
            && err.contains("narrow `where`"),
        "{err}"
    );
    assert!(err.contains("allows 5000"), "{err}");
    assert!(record_pages(&server).is_empty() && server.log.rows_served() == 0);
    assert_eq!(h.table_version().await, version, "no table commit");
    assert_eq!(h.digest_bytes().unwrap(), digest, "the digest is untouched");
}

#[tokio::test]
async fn transient_faults_are_retried_to_the_same_table() {
    let faults = super::transient_faults();
    // Records: data request 1 counts, 2 checks the window, 3… are pages; the fault hits the
    // second page twice. Exports: 1 counts, 2 is the export, hit twice.
    for (mode, at) in [("auto", 4), ("always", 2)] {
        for fault in &faults {
            let (dataset, server) = serve(Some(700), 10_000).await;
            let h = harness(&server, &format!("export = \"{mode}\"\n"));
            let want = expected(&dataset.read().unwrap());
            let report = super::retried_twice(&h, &server.faults, at, fault, &want, mode).await;
            assert_eq!(report.rows_fetched, 700, "{mode}: {fault:?}");
            let waits = h.waits.lock().unwrap().clone();
            assert_eq!(waits.len(), 2, "{mode}: {fault:?}");
            if matches!(fault, Fault::TooManyRequests { .. }) {
                assert!(
                    waits.iter().all(|w| *w >= Duration::from_millis(25)),
                    "Retry-After: 0 waits at least the floor: {waits:?}"
                );
            }
            let exported = server.log.requests().iter().any(is_export);
            assert_eq!(exported, mode == "always", "{mode}: {fault:?}");
        }
    }
}

#[tokio::test]
async fn failures_leave_the_table_and_digest_as_they_were() {
    let (dataset, server) = serve(Some(500), 10_000).await;
    let h = harness(&server, INCREMENTAL);
    let good = h.run().await.expect("good run");
    assert_eq!(good.rows_fetched, 500);
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;
    let unchanged = |what: &'static str| {
        let h = &h;
        let digest = &digest;
        async move {
            assert_eq!(h.table_version().await, version, "{what}: no table commit");
            assert_eq!(
                &h.digest_bytes().unwrap(),
                digest,
                "{what}: digest untouched"
            );
        }
    };

    // A 5xx burst longer than the retry budget, in a full load.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    super::push_502_burst(&server.faults);
    let err = h.run_full().await.unwrap_err().to_string();
    super::assert_gave_up_on_502(&err);
    unchanged("502 burst").await;

    // A 400 is never retried, and the portal's error becomes advice.
    server.faults.clear();
    server.log.clear();
    server.faults.push(
        Fault::Status {
            code: 400,
            body: r#"{"status_code": 400, "error_code": "ODSQLError", "message": "Unknown field: updated"}"#.into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("has no field \"updated\"")
            && err.contains("schema changed or the pipeline names it wrongly"),
        "{err}"
    );
    assert_eq!(server.log.data_requests().len(), 1, "a 400 is not retried");
    unchanged("injected ODSQLError").await;

    // The emulator's own ODSQL error for a filter naming a field the dataset lacks.
    rewrite_source(
        &h,
        &source(
            &server,
            &format!("{INCREMENTAL}where = \"call_typ = 'Medical Incident'\"\n"),
        ),
    );
    server.log.clear();
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("has no field \"call_typ\"") && err.contains("names it wrongly"),
        "{err}"
    );
    assert_eq!(server.log.len(), 2, "schema, then one refused count");
    unchanged("unknown field in where").await;

    // A misnamed incremental field is caught against the dataset's schema.
    rewrite_source(&h, &source(&server, "incremental_field = \"updated_at\"\n"));
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("no field \"updated_at\" (incremental_field)")
            && err.contains(UPDATED_FIELD)
            && err.contains("rowid"),
        "{err}"
    );
    rewrite_source(&h, &source(&server, "incremental_field = \"call_type\"\n"));
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("\"call_type\" is a text field") && err.contains("date or datetime"),
        "{err}"
    );
    unchanged("bad incremental_field").await;

    // An unknown dataset.
    rewrite_source(&h, &source(&server, "").replace(DATASET, "sf-fire-calls"));
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("dataset sf-fire-calls was not found") && err.contains("check `dataset`"),
        "{err}"
    );
    unchanged("unknown dataset").await;
}

/// Rows whose stored state differs between two snapshots of the fixture.
fn moved(before: &BTreeMap<String, Stored>, after: &BTreeMap<String, Stored>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

#[tokio::test]
async fn a_row_changing_between_pages_is_never_lost() {
    let (dataset, server) = serve(Some(1000), 10_000).await;
    let h = harness(&server, INCREMENTAL);
    h.run().await.expect("first run");

    // Mark a tenth of the rows changed, then, while the refresh pages through them newest
    // first, change every seventh row after the first page: changed rows jump to the front,
    // and rows entering the window push the rest back, so pages shift under the reader.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    let before = expected(&dataset.read().unwrap());
    // Data requests of the refresh: the count, the window check, then the pages.
    server.faults.push_at(
        server.faults.data_requests() + 3,
        Fault::MutateAfterServe {
            every: 7,
            at_epoch: BASE_EPOCH + 2 * 86_400,
        },
    );
    let report = h.run().await.expect("refresh");
    assert_eq!(report.mode, "incremental");
    assert_eq!(server.faults.pending(), 0, "the rows changed mid-read");
    let after = expected(&dataset.read().unwrap());
    let changed_mid_read = moved(&before, &after);
    assert!(!changed_mid_read.is_empty());
    assert!(
        report.rows_fetched > report.rows_written,
        "pages shifted under the reader, so some rows came twice: {} fetched, {} distinct",
        report.rows_fetched,
        report.rows_written
    );
    // Nothing changed before the refresh is missing; a row changed while it ran is stored
    // either way.
    let table = h.table().await;
    assert_eq!(table.len(), after.len());
    for (key, row) in &table {
        assert!(
            row == &after[key] || (changed_mid_read.contains(key) && row == &before[key]),
            "row {key}: {row:?}"
        );
    }
    // Rows changed during the read are newer than the watermark: the next refresh has them.
    let report = h.run().await.expect("next refresh");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &after);

    // In a full load (natural order) rows do not move, and a row changed after it was read
    // is stored as it was: the next refresh's window brings the change in.
    server.faults.push_at(
        server.faults.data_requests() + 4,
        Fault::MutateAfterServe {
            every: 3,
            at_epoch: BASE_EPOCH + 3 * 86_400,
        },
    );
    h.run_full().await.expect("full load");
    assert_eq!(server.faults.pending(), 0);
    let report = h.run().await.expect("refresh after the full load");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn api_keys_come_from_the_environment() {
    let (_dataset, server) = serve(Some(300), 10_000).await;
    // The variable named but not set.
    let h = harness(&server, "api_key_env = \"GOALPOST_TEST_UNSET_ODS_KEY\"\n");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("GOALPOST_TEST_UNSET_ODS_KEY is not set"),
        "{err}"
    );

    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("GOALPOST_TEST_ODS_KEY", "s3cret-key") };
    let h = harness(&server, "api_key_env = \"GOALPOST_TEST_ODS_KEY\"\n");
    let report = h.run().await.expect("with the key");
    assert_eq!(report.rows_fetched, 300);
    let requests = server.log.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Apikey s3cret-key")),
        "every request carries the key"
    );

    // A refused key becomes advice.
    server.faults.push(
        Fault::Status {
            code: 401,
            body: r#"{"status_code": 401, "error_code": "InvalidApiKey", "message": "The API key is invalid."}"#.into(),
        },
        1,
    );
    let err = h.run_full().await.unwrap_err().to_string();
    assert!(
        err.contains("access denied (The API key is invalid.)") && err.contains("api_key_env"),
        "{err}"
    );
}

#[tokio::test]
async fn a_recorded_run_replays_offline() {
    // Through /records, and through an export after the window check was refused.
    for (max_window, exported) in [(10_000, false), (300, true)] {
        let (dataset, server) = serve(Some(400), max_window).await;
        let h = harness(&server, INCREMENTAL);
        let first = h.run().await.expect("recorded run");
        assert_eq!(server.log.requests().iter().any(is_export), exported);
        let recording = h.dir.path().join("data/raw/fire").join(&first.run_id);
        assert!(recording.join("responses.ndjson").is_file());
        assert!(recording.join("000001.zst").is_file());
        let want = expected(&dataset.read().unwrap());
        drop(server);
        let replay = h
            .replay(&first.run_id)
            .await
            .expect("replay without the server");
        assert_eq!(replay.mode, "full");
        assert_eq!(replay.rows_fetched, 400);
        assert_eq!(replay.fetch.requests, 0, "nothing went to the network");
        assert_same(&h.table().await, &want);
    }
}
