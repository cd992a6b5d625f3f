//! The `arcgis` connector against the FeatureServer emulator (paging edge cases, error
//! envelopes, faults) and against a real Koop server (the happy path, a refresh and a fault
//! through the proxy).

use super::{Harness, assert_same, expected};
use chrono::DateTime;
use goalpost_testkit::arcgis::{self, ArcGisOptions, arcgis_name};
use goalpost_testkit::dataset::{BASE_EPOCH, local_to_utc};
use goalpost_testkit::real::koop::{self, KoopOptions, write_geojson};
use goalpost_testkit::{
    ColumnKind, Dataset, Fault, FaultPlan, LoggedRequest, RequestLog, SharedDataset, TestServer,
};
use serde_json::{Map, Value, json};

fn name(label: &str) -> String {
    arcgis_name(label)
}

async fn serve(rows: Option<usize>, options: ArcGisOptions) -> (SharedDataset, TestServer) {
    let full = Dataset::sf_fire();
    let dataset = match rows {
        Some(n) => full.subset(n),
        None => full,
    }
    .shared();
    let server = arcgis::start(dataset.clone(), options).await;
    (dataset, server)
}

fn layer_url(server: &TestServer) -> String {
    server.url("/arcgis/rest/services/FireCalls/FeatureServer/0")
}

fn harness(url: &str, extra: &str) -> Harness {
    Harness::new(
        &format!("kind = \"arcgis\"\nurl = \"{url}\"\noverlap = \"10m\"\n{extra}"),
        name,
    )
}

fn options(max_record_count: usize) -> ArcGisOptions {
    ArcGisOptions {
        max_record_count,
        ..Default::default()
    }
}

/// Rows a refresh must read besides the changed ones: those whose update time lies within
/// `overlap_secs` of the newest update time the last run saw (which excludes `changed`).
fn in_overlap(dataset: &Dataset, changed: &[String], overlap_secs: i64) -> usize {
    let key = dataset.key_index();
    let unchanged = |r: &&goalpost_testkit::Row| !changed.contains(&r.values[key].clone().unwrap());
    let watermark = dataset
        .rows()
        .iter()
        .filter(unchanged)
        .map(|r| r.updated_at)
        .max()
        .unwrap();
    dataset
        .rows()
        .iter()
        .filter(|r| r.updated_at >= watermark - overlap_secs && r.updated_at <= watermark)
        .count()
}

/// The data requests that read pages: without the one-feature request for the newest edit
/// date that comes before the pages when the layer tracks edits.
fn page_requests(requests: Vec<LoggedRequest>) -> Vec<LoggedRequest> {
    requests
        .into_iter()
        .filter(|r| !is_newest_probe(r))
        .collect()
}

fn is_newest_probe(r: &LoggedRequest) -> bool {
    r.param("resultRecordCount") == Some("1")
        && r.param("orderByFields")
            .is_some_and(|o| o.ends_with(" DESC"))
}

fn offsets(requests: &[LoggedRequest]) -> Vec<u64> {
    requests
        .iter()
        .filter_map(|r| r.param("resultOffset")?.parse().ok())
        .collect()
}

#[tokio::test]
async fn full_load_then_refresh_fetches_only_what_changed() {
    let (dataset, server) = serve(None, options(1500)).await;
    let h = harness(&layer_url(&server), "");

    let first = h.run().await.expect("first run");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    let pages = page_requests(server.log.data_requests());
    assert_eq!(
        pages.len(),
        6,
        "7,704 features in pages of maxRecordCount = 1,500"
    );
    assert_eq!(offsets(&pages), [0, 1500, 3000, 4500, 6000, 7500]);
    for p in &pages {
        assert_eq!(p.param("orderByFields"), Some("OBJECTID"), "a stable order");
        assert_eq!(p.param("resultRecordCount"), Some("1500"));
        assert_eq!(
            (p.param("outFields"), p.param("f")),
            (Some("*"), Some("json"))
        );
        assert_eq!(p.param("where"), Some("1=1"));
    }
    let counts: Vec<_> = server
        .log
        .requests()
        .into_iter()
        .filter(|r| r.param("returnCountOnly") == Some("true"))
        .collect();
    assert_eq!(counts.len(), 1, "counted once, first");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // 1 % of the features are edited a day later: the refresh reads those, and the features
    // within the overlap of the last run's newest edit date, nothing else.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    assert_eq!(changed.len(), 77);
    let overlap = in_overlap(&dataset.read().unwrap(), &changed, 600);
    server.log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    // (+1: the one-feature request for the newest edit date, before the pages.)
    assert_eq!(
        server.log.rows_served(),
        changed.len() + overlap + 1,
        "the changed features plus the overlap window"
    );
    let pages = page_requests(server.log.data_requests());
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].param("where"),
        // The last run's newest EditDate was 2017-01-08T01:36:00Z; the overlap is 10 minutes.
        Some("(1=1) AND EditDate >= timestamp '2017-01-08 01:26:00'")
    );
    assert_eq!(pages[0].param("orderByFields"), Some("OBJECTID"));
    assert!(second.table_version > first.table_version);
    let table = h.table().await;
    assert_same(&table, &expected(&dataset.read().unwrap()));
    assert!(table[&changed[0]].disposition.starts_with("Changed"));

    // Nothing changed since: the overlap holds only the edited features.
    server.log.clear();
    let third = h.run().await.expect("quiet refresh");
    assert_eq!(server.log.rows_served(), changed.len() + 1);
    // They come back as the table has them: nothing is written.
    assert_eq!(
        third.rows_written, 0,
        "the overlap's rows came back unchanged"
    );

    // --full starts over.
    let again = h.run_full().await.expect("full run");
    assert_eq!((again.mode, again.rows_fetched), ("full", 7704));
}

#[tokio::test]
async fn an_empty_page_flagged_for_more_is_asked_again_but_not_forever() {
    let (dataset, server) = serve(
        Some(2000),
        ArcGisOptions {
            max_record_count: 500,
            quirk_empty_last_page: true,
            ..Default::default()
        },
    )
    .await;
    let h = harness(&layer_url(&server), "");
    let report = h.run().await.expect("run");
    assert_eq!(report.rows_fetched, 2000);
    let pages = page_requests(server.log.data_requests());
    assert_eq!(
        offsets(&pages),
        [0, 500, 500, 1000, 1500],
        "the empty page at offset 500 is asked again, from the same offset"
    );
    assert_eq!(pages[1].rows, 0);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // A server that keeps answering empty pages while saying more follow is given up on.
    let version = h.table_version().await;
    let digest = h.digest_bytes().unwrap();
    // The next run's data requests: the newest-date request, the page at 0, then 500.
    let next = server.faults.data_requests() + 3;
    for k in 0..3 {
        server.faults.push_at(
            next + k,
            Fault::Status {
                code: 200,
                body: r#"{"features": [], "exceededTransferLimit": true}"#.into(),
            },
        );
    }
    let err = h.run_full().await.unwrap_err().to_string();
    assert!(
        err.contains("3 empty pages in a row at offset 500"),
        "{err}"
    );
    assert_eq!(h.table_version().await, version);
    assert_eq!(h.digest_bytes().unwrap(), digest);
}

#[tokio::test]
async fn layers_without_pagination_are_read_by_object_id() {
    let (dataset, server) = serve(
        None,
        ArcGisOptions {
            max_record_count: 1000,
            supports_pagination: false,
            ..Default::default()
        },
    )
    .await;
    let h = harness(&layer_url(&server), "");
    let first = h.run().await.expect("first run");
    assert_eq!(first.rows_fetched, 7704);
    let requests = server.log.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.param("returnIdsOnly") == Some("true")),
        "the ids come first"
    );
    let pages = page_requests(server.log.data_requests());
    assert_eq!(pages.len(), 8, "7,704 ids in ranges of 1,000");
    assert!(pages.iter().all(|p| p.param("resultOffset").is_none()));
    assert_eq!(
        pages[0].param("where"),
        Some("(1=1) AND OBJECTID >= 1 AND OBJECTID <= 1000")
    );
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // A refresh reads the changed ids the same way.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    let overlap = in_overlap(&dataset.read().unwrap(), &changed, 600);
    server.log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    assert_eq!(server.log.rows_served(), changed.len() + overlap);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // A range whose answer is cut by the transfer limit is split in two and read again.
    server.log.clear();
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::Status {
            code: 200,
            body: r#"{"features": [], "exceededTransferLimit": true}"#.into(),
        },
    );
    let again = h.run_full().await.expect("full run with a cut range");
    assert_eq!(again.rows_fetched, 7704);
    let wheres: Vec<String> = server
        .log
        .data_requests()
        .iter()
        .filter_map(|r| r.param("where").map(str::to_string))
        .collect();
    assert_eq!(wheres.len(), 10);
    assert_eq!(wheres[1], "(1=1) AND OBJECTID >= 1001 AND OBJECTID <= 2000");
    assert_eq!(wheres[2], "(1=1) AND OBJECTID >= 1001 AND OBJECTID <= 1500");
    assert_eq!(wheres[3], "(1=1) AND OBJECTID >= 1501 AND OBJECTID <= 2000");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn error_envelopes_in_http_200_are_reported_or_retried() {
    let (dataset, server) = serve(Some(300), options(100)).await;

    // A query the layer cannot answer: reported with the server's details, never retried.
    let h = harness(&layer_url(&server), "where = \"Nope = 1\"\n");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("ArcGIS error 400")
            && err.contains("Invalid field: Nope")
            && err.contains("check `where`"),
        "{err}"
    );
    let counts = server
        .log
        .requests()
        .iter()
        .filter(|r| r.param("returnCountOnly").is_some())
        .count();
    assert_eq!(counts, 1, "a 400 envelope is not retried");

    // A wrong service name.
    let h = harness(
        &server.url("/arcgis/rest/services/Nope/FeatureServer/0"),
        "",
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("Invalid URL"), "{err}");

    // The incremental field must be a date field of the layer.
    server.log.clear();
    let h = harness(&layer_url(&server), "incremental_field = \"Call_Type\"\n");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("\"Call_Type\" is of type esriFieldTypeString, not a date field")
            && err.contains("its date fields are: Available_DtTm,")
            && err.contains("EditDate"),
        "{err}"
    );
    let h = harness(&layer_url(&server), "incremental_field = \"updated\"\n");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("\"updated\" is not a field of the layer"),
        "{err}"
    );
    assert!(
        server.log.data_requests().is_empty(),
        "no feature was asked for"
    );

    // A 5xx-coded envelope is a busy server: retried.
    let h = harness(&layer_url(&server), "");
    let busy = Fault::Status {
        code: 200,
        body: r#"{"error": {"code": 503, "message": "Service busy", "details": []}}"#.into(),
    };
    server
        .faults
        .push_at(server.faults.data_requests() + 2, busy.clone());
    server
        .faults
        .push_at(server.faults.data_requests() + 3, busy);
    let report = h.run().await.expect("retried past the busy envelopes");
    assert_eq!(report.fetch.retries, 2);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn transient_faults_are_retried_to_the_same_table() {
    let faults = super::transient_faults();
    for fault in faults {
        let (dataset, server) = serve(Some(700), options(2000)).await;
        let h = harness(&layer_url(&server), "page_size = 100\n");
        // Twice on the third page.
        let want = expected(&dataset.read().unwrap());
        super::retried_twice(&h, &server.faults, 3, &fault, &want, "page 3").await;
        if !matches!(fault, Fault::Delay(_)) {
            // (A delayed answer is logged when the server finishes it, after the client left.)
            assert_eq!(
                page_requests(server.log.data_requests()).len(),
                9,
                "{fault:?}: 7 pages, 2 retried"
            );
        }
        super::assert_waited_twice(&h, &fault);
    }
}

#[tokio::test]
async fn failures_leave_the_table_and_digest_as_they_were() {
    let (dataset, server) = serve(Some(500), options(100)).await;
    let h = harness(&layer_url(&server), "");
    h.run().await.expect("good run");
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;

    // A 5xx burst longer than the retry budget, in a full load.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    super::push_502_burst(&server.faults);
    let err = h.run_full().await.unwrap_err().to_string();
    super::assert_gave_up_on_502(&err);
    assert_eq!(h.table_version().await, version, "no table commit");
    assert_eq!(h.digest_bytes().unwrap(), digest, "the digest is untouched");

    // A 403 is never retried, and says what to check.
    server.faults.clear();
    server.log.clear();
    server.faults.push(
        Fault::Status {
            code: 403,
            body: "<html>Forbidden</html>".into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("token_env"), "{err}");
    assert_eq!(server.log.data_requests().len(), 1, "a 403 is not retried");
    assert_eq!(h.table_version().await, version);
    assert_eq!(h.digest_bytes().unwrap(), digest);
}

#[tokio::test]
async fn a_feature_edited_mid_read_is_never_skipped() {
    let (dataset, server) = serve(Some(1000), options(100)).await;
    let h = harness(&layer_url(&server), "");
    h.run().await.expect("first run");

    // A tenth of the features are edited; while the refresh reads them, every seventh feature
    // is edited again after the first page. In object-id order nothing moves back, so no
    // feature is skipped and the refresh needs no second pass; the features of the first page
    // edited after they were read come in with the next refresh's overlap.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    server.log.clear();
    server.faults.push_at(
        server.faults.data_requests() + 1,
        Fault::MutateAfterServe {
            every: 7,
            at_epoch: BASE_EPOCH + 2 * 86_400,
        },
    );
    let report = h.run().await.expect("refresh");
    assert_eq!(report.mode, "incremental");
    let pages = page_requests(server.log.data_requests());
    assert_eq!(
        offsets(&pages).iter().filter(|o| **o == 0).count(),
        1,
        "one pass, no reload"
    );
    let want = expected(&dataset.read().unwrap());
    let table = h.table().await;
    let stale: Vec<&String> = table
        .iter()
        .filter(|(k, v)| want[*k] != **v)
        .map(|(k, _)| k)
        .collect();
    assert!(
        stale.len() <= 100,
        "only features of the first page can be stale: {}",
        stale.len()
    );
    let report = h.run().await.expect("next refresh");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // In a full load (object-id order) features do not move either.
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::MutateAfterServe {
            every: 3,
            at_epoch: BASE_EPOCH + 3 * 86_400,
        },
    );
    h.run_full().await.expect("full load");
    let report = h.run().await.expect("refresh after the full load");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn geojson_pages_follow_the_flag_in_their_properties() {
    let (dataset, server) = serve(Some(1200), options(500)).await;
    let h = harness(&layer_url(&server), "format = \"geojson\"\n");
    let report = h.run().await.expect("geojson run");
    assert_eq!(report.rows_fetched, 1200);
    let pages = page_requests(server.log.data_requests());
    assert_eq!(offsets(&pages), [0, 500, 1000]);
    assert!(pages.iter().all(|p| p.param("f") == Some("geojson")));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn tokens_go_in_a_header_never_in_the_url() {
    let (_dataset, server) = serve(Some(300), options(100)).await;
    let h = harness(
        &layer_url(&server),
        "token_env = \"GOALPOST_TEST_UNSET_ARCGIS_TOKEN\"\n",
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("GOALPOST_TEST_UNSET_ARCGIS_TOKEN is not set"),
        "{err}"
    );

    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("GOALPOST_TEST_ARCGIS_TOKEN", "s3cret-arcgis") };
    let h = harness(
        &layer_url(&server),
        "token_env = \"GOALPOST_TEST_ARCGIS_TOKEN\"\n",
    );
    let report = h.run().await.expect("with the token");
    assert_eq!(report.rows_fetched, 300);
    let requests = server.log.requests();
    assert!(requests.iter().all(|r| {
        r.header("x-esri-authorization") == Some("Bearer s3cret-arcgis")
            && r.query
                .iter()
                .all(|(k, v)| k != "token" && !v.contains("s3cret"))
    }));
    let recording = h.dir.path().join("data/raw/fire").join(&report.run_id);
    let index = std::fs::read_to_string(recording.join("responses.ndjson")).unwrap();
    assert!(!index.contains("s3cret"), "the recording holds no token");
}

#[tokio::test]
async fn a_recorded_run_replays_offline() {
    let (dataset, server) = serve(Some(400), options(100)).await;
    let h = harness(&layer_url(&server), "");
    let first = h.run().await.expect("recorded run");
    let want = expected(&dataset.read().unwrap());
    drop(server);
    let replay = h
        .replay(&first.run_id)
        .await
        .expect("replay without the server");
    assert_eq!(replay.rows_fetched, 400);
    assert_eq!(replay.fetch.requests, 0, "nothing went to the network");
    assert_same(&h.table().await, &want);
}

// ---- Koop: a real FeatureServer implementation --------------------------------------------

/// The fixture as GeoJSON points for Koop: properties named as the emulator names fields,
/// timestamps as UTC ISO text in the form Koop compares `timestamp` literals with
/// (`2017-01-08T01:26:00.000Z`), the row number as `OBJECTID` and the update time as
/// `EditDate`.
pub(super) fn koop_features(dataset: &Dataset) -> Vec<(f64, f64, Map<String, Value>)> {
    let location = dataset
        .columns()
        .iter()
        .position(|c| c.kind == ColumnKind::Point)
        .expect("the fixture has a location");
    let utc_text =
        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    dataset
        .rows()
        .iter()
        .map(|row| {
            let mut props = Map::new();
            props.insert("OBJECTID".into(), json!(row.sid));
            for (i, column) in dataset.columns().iter().enumerate() {
                let value = match (column.kind, row.get(i)) {
                    (_, None) => Value::Null,
                    (ColumnKind::Number, Some(text)) => {
                        serde_json::from_str(text).unwrap_or_else(|_| json!(text))
                    }
                    (ColumnKind::Timestamp, Some(_)) => {
                        json!(utc_text(local_to_utc(row.timestamp(i).unwrap())))
                    }
                    (_, Some(text)) => json!(text),
                };
                props.insert(arcgis_name(&column.label), value);
            }
            let edited = DateTime::from_timestamp(row.updated_at, 0).unwrap();
            props.insert("EditDate".into(), json!(utc_text(edited)));
            let (lat, lon) = row
                .point(location)
                .expect("every fixture row has a location");
            (lon, lat, props)
        })
        .collect()
}

#[tokio::test]
async fn koop_full_load_and_refresh_equal_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = Dataset::sf_fire().shared();
    let file = dir.path().join("calls.geojson");
    write_geojson(&file, koop_features(&dataset.read().unwrap())).unwrap();
    let Some(koop) = koop::start_or_skip(dir.path(), KoopOptions::default()).await else {
        return;
    };
    let log = RequestLog::new();
    let proxy =
        goalpost_testkit::proxy::start(koop.base_url(), FaultPlan::new(), log.clone()).await;
    // Koop has no edit tracking: the EditDate property is named as the incremental field.
    let h = harness(
        &proxy.proxied(&koop.layer_url("calls")),
        "incremental_field = \"EditDate\"\n",
    );

    let first = h.run().await.expect("first run");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    let pages = page_requests(log.data_requests());
    assert_eq!(
        pages.len(),
        8,
        "7,704 features in pages of Koop's maxRecordCount, 1,000"
    );
    assert_eq!(
        offsets(&pages),
        [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]
    );
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Rewrite the file with 1 % of the features edited a day later; the refresh reads those
    // and the overlap window, and the table ends equal to the file.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    write_geojson(&file, koop_features(&dataset.read().unwrap())).unwrap();
    let overlap = in_overlap(&dataset.read().unwrap(), &changed, 600);
    log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    // (+1: the one-feature request for the newest edit date, before the pages.)
    assert_eq!(log.rows_served(), changed.len() + overlap + 1);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // A full reload ends the same.
    let again = h.run_full().await.expect("full run");
    assert_eq!(again.rows_fetched, 7704);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn koop_behind_a_faulty_proxy_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = Dataset::sf_fire().subset(2500);
    write_geojson(&dir.path().join("calls.geojson"), koop_features(&dataset)).unwrap();
    let Some(koop) = koop::start_or_skip(dir.path(), KoopOptions::default()).await else {
        return;
    };
    let faults = FaultPlan::new();
    let log = RequestLog::new();
    let proxy = goalpost_testkit::proxy::start(koop.base_url(), faults.clone(), log.clone()).await;
    faults.push_at(
        2,
        Fault::Status {
            code: 503,
            body: "busy".into(),
        },
    );
    faults.push_at(3, Fault::Truncate);
    faults.push_at(4, Fault::MalformedJson);
    let h = harness(&proxy.proxied(&koop.layer_url("calls")), "");
    let report = h.run().await.expect("recovers");
    assert_eq!((report.rows_fetched, report.fetch.retries), (2500, 3));
    assert_same(&h.table().await, &expected(&dataset));
}

#[tokio::test]
async fn koop_geojson_is_paged_until_a_short_page() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = Dataset::sf_fire().subset(2500);
    write_geojson(&dir.path().join("calls.geojson"), koop_features(&dataset)).unwrap();
    let Some(koop) = koop::start_or_skip(dir.path(), KoopOptions::default()).await else {
        return;
    };
    let log = RequestLog::new();
    let proxy =
        goalpost_testkit::proxy::start(koop.base_url(), FaultPlan::new(), log.clone()).await;
    let h = harness(
        &proxy.proxied(&koop.layer_url("calls")),
        "format = \"geojson\"\n",
    );
    let report = h.run().await.expect("geojson run");
    assert_eq!(report.rows_fetched, 2500);
    // Koop's GeoJSON has no exceededTransferLimit: full pages are followed, a short one ends.
    assert_eq!(offsets(&log.data_requests()), [0, 1000, 2000]);
    assert_same(&h.table().await, &expected(&dataset));
}
