//! The real servers (Datasette, Koop) and the fault-injecting proxy, over the San Francisco
//! fire calls fixture.
//!
//! These tests need `tools/install-test-servers`; without it they print `SKIPPED: ...` and
//! pass, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDateTime;
use goalpost_testkit::fault::{Fault, FaultPlan};
use goalpost_testkit::log::RequestLog;
use goalpost_testkit::proxy;
use goalpost_testkit::real::datasette::{self, DatasetteOptions, write_sqlite};
use goalpost_testkit::real::koop::{self, KoopOptions, write_geojson};
use serde_json::{Map, Value, json};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/fire_department_calls_2016.csv"
);

/// The fixture as (header labels, rows of cells).
struct Fixture {
    labels: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn fixture() -> Fixture {
    let mut reader = csv::Reader::from_path(FIXTURE).expect("fixture CSV");
    let labels = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("record").iter().map(str::to_owned).collect())
        .collect();
    Fixture { labels, rows }
}

impl Fixture {
    fn index(&self, label: &str) -> usize {
        self.labels
            .iter()
            .position(|l| l == label)
            .unwrap_or_else(|| panic!("no column {label}"))
    }
}

/// `Received DtTm` → `received_dttm`; `RowID` → `row_id` (SQLite reserves `rowid`).
fn field_name(label: &str) -> String {
    if label == "RowID" {
        return "row_id".to_owned();
    }
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// `12/31/2016 11:57:56 PM` → `2016-12-31T23:57:56`; `12/31/2016` → `2016-12-31T00:00:00`.
fn iso_timestamp(text: &str) -> Option<String> {
    let parsed = NaiveDateTime::parse_from_str(text, "%m/%d/%Y %I:%M:%S %p")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%m/%d/%Y")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(parsed.format("%Y-%m-%dT%H:%M:%S").to_string())
}

fn is_timestamp_label(label: &str) -> bool {
    label.ends_with("DtTm") || label.ends_with("Date")
}

/// Writes the fixture as table `calls` (primary key `row_id`, the CSV's `RowID`), with
/// integer columns stored as integers and timestamps as ISO text. Returns the row count.
fn write_calls_db(path: &Path, fixture: &Fixture, rows: &[Vec<String>]) -> usize {
    let names: Vec<String> = fixture.labels.iter().map(|l| field_name(l)).collect();
    let types: Vec<&str> = (0..fixture.labels.len())
        .map(|i| {
            let integer = fixture
                .rows
                .iter()
                .map(|r| r[i].as_str())
                .filter(|v| !v.is_empty())
                .all(|v| v.parse::<i64>().is_ok());
            if integer && !is_timestamp_label(&fixture.labels[i]) {
                "INTEGER"
            } else {
                "TEXT"
            }
        })
        .collect();
    let columns: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(types.iter().copied())
        .collect();
    let labels = fixture.labels.clone();
    let cells = rows.iter().map(move |row| {
        row.iter()
            .zip(&labels)
            .map(|(cell, label)| match cell.as_str() {
                "" => None,
                text if is_timestamp_label(label) => {
                    Some(iso_timestamp(text).unwrap_or_else(|| text.to_owned()))
                }
                text => Some(text.to_owned()),
            })
            .collect::<Vec<_>>()
    });
    write_sqlite(path, "calls", &columns, cells, &["row_id"]).expect("write sqlite")
}

/// The fixture as point features with `OBJECTID` = row number, and a few typed properties.
fn calls_features(fixture: &Fixture, rows: &[Vec<String>]) -> Vec<(f64, f64, Map<String, Value>)> {
    let (location, row_id, call_number, call_type, received, alarms) = (
        fixture.index("Location"),
        fixture.index("RowID"),
        fixture.index("Call Number"),
        fixture.index("Call Type"),
        fixture.index("Received DtTm"),
        fixture.index("Number of Alarms"),
    );
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let (lat, lon) = parse_point(&row[location]).expect("every row has a location");
            let mut properties = Map::new();
            properties.insert("OBJECTID".into(), json!(i + 1));
            properties.insert("row_id".into(), json!(row[row_id]));
            properties.insert(
                "call_number".into(),
                json!(row[call_number].parse::<i64>().unwrap()),
            );
            properties.insert("call_type".into(), json!(row[call_type]));
            properties.insert(
                "received_dttm".into(),
                json!(iso_timestamp(&row[received]).unwrap()),
            );
            properties.insert(
                "number_of_alarms".into(),
                json!(row[alarms].parse::<i64>().unwrap()),
            );
            (lon, lat, properties)
        })
        .collect()
}

/// `(37.745858648581, -122.456664252061)` → `(lat, lon)`.
fn parse_point(text: &str) -> Option<(f64, f64)> {
    let (lat, lon) = text
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?
        .split_once(',')?;
    Some((lat.trim().parse().ok()?, lon.trim().parse().ok()?))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"));
    (status, value)
}

/// Follows Datasette's `next_url` from `first_url` to the end; returns the pages' rows.
async fn page_datasette(client: &reqwest::Client, first_url: String) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut url = Some(first_url);
    while let Some(current) = url {
        let (status, page) = get_json(client, &current).await;
        assert_eq!(status, 200, "{current}: {page}");
        pages.push(page["rows"].as_array().expect("rows").clone());
        url = page["next_url"].as_str().map(str::to_owned);
        assert!(pages.len() <= 100, "runaway paging");
    }
    pages
}

#[tokio::test]
async fn datasette_pages_the_fire_calls_with_next() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sf_fire.db");
    assert_eq!(write_calls_db(&db, &fixture, &fixture.rows), 7704);
    let options = DatasetteOptions {
        max_returned_rows: 1000,
        default_page_size: 100,
        ..Default::default()
    };
    let Some(ds) = datasette::start_or_skip(&db, options).await else {
        return;
    };
    let client = client();

    let (status, versions) = get_json(&client, &ds.url("/-/versions.json")).await;
    assert_eq!(status, 200);
    assert_eq!(versions["datasette"]["version"], "0.65.5");

    // Keyset paging with _next in primary-key order.
    let table = ds.table_url("calls");
    let pages = page_datasette(&client, format!("{table}?_shape=objects&_size=1000")).await;
    assert_eq!(pages.len(), 8, "7,704 rows in pages of 1,000");
    assert!(pages[..7].iter().all(|p| p.len() == 1000));
    let keys: Vec<&str> = pages
        .iter()
        .flatten()
        .map(|r| r["row_id"].as_str().unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "ordered by the primary key"
    );
    let expected: BTreeSet<&str> = fixture
        .rows
        .iter()
        .map(|r| r[fixture.index("RowID")].as_str())
        .collect();
    assert_eq!(keys.len(), expected.len());
    assert_eq!(
        keys.iter().copied().collect::<BTreeSet<_>>(),
        expected,
        "every row exactly once"
    );
    let first = &pages[0][0];
    assert!(
        first["call_number"].is_i64(),
        "INTEGER columns come back as numbers"
    );
    assert!(
        first["received_dttm"].as_str().unwrap().contains('T'),
        "timestamps as stored: ISO text"
    );

    // With _sort, Datasette 0.65.5 adds the primary key as tie-breaker only to the pages
    // fetched with _next: the first page is ordered by the sort column alone, so ties that
    // straddle the first page boundary can repeat one row and skip another.
    let (_, page) = get_json(
        &client,
        &format!("{table}?_shape=objects&_size=1000&_sort=received_dttm"),
    )
    .await;
    assert!(
        page["query"]["sql"]
            .as_str()
            .unwrap()
            .ends_with("order by received_dttm limit 1001")
    );
    let next = page["next"].as_str().unwrap();
    assert!(
        next.contains("~3A"),
        "sort values in tokens are tilde-encoded: {next}"
    );
    let (_, page) = get_json(&client, page["next_url"].as_str().unwrap()).await;
    assert!(
        page["query"]["sql"]
            .as_str()
            .unwrap()
            .ends_with("order by received_dttm, row_id limit 1001")
    );

    // Without _size: default_page_size; _size=0 still counts; too large a page is a 400.
    let (_, page) = get_json(&client, &format!("{table}?_shape=objects")).await;
    assert_eq!(page["rows"].as_array().unwrap().len(), 100);
    let (_, page) = get_json(
        &client,
        &format!("{table}?_size=0&received_dttm__gte=2017-01-07T23:00:00"),
    )
    .await;
    assert_eq!(page["filtered_table_rows_count"], 36);
    assert_eq!(page["next"], Value::Null);
    let (status, error) = get_json(&client, &format!("{table}?_size=1001")).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"ok": false, "error": "_size must be <= 1000", "status": 400, "title": null})
    );
    let (status, error) = get_json(&client, &ds.table_url("nosuch")).await;
    assert_eq!((status, &error["error"]), (404, &json!("Table not found")));

    // The file is not opened immutable: a rewrite shows on the next request.
    let (_, database) = get_json(&client, &ds.database_url()).await;
    assert_eq!(database["tables"][0]["count"], 7704);
    write_calls_db(&db, &fixture, &fixture.rows[..5000]);
    let pages = page_datasette(&client, format!("{table}?_shape=objects&_size=max")).await;
    assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), 5000);
    assert_eq!(pages.len(), 5);
}

/// Pages a FeatureServer layer with resultOffset until exceededTransferLimit is false.
async fn page_arcgis(client: &reqwest::Client, query_url: &str, extra: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut offset = 0;
    loop {
        let url = format!(
            "{query_url}?where=1%3D1&outFields=*&orderByFields=OBJECTID&resultOffset={offset}&resultRecordCount=1000&f=json{extra}"
        );
        let (status, page) = get_json(client, &url).await;
        assert_eq!(status, 200);
        assert!(page.get("error").is_none(), "{url}: {page}");
        let features = page["features"].as_array().expect("features").clone();
        offset += features.len();
        let more = page["exceededTransferLimit"]
            .as_bool()
            .expect("exceededTransferLimit");
        pages.push(features);
        if !more {
            return pages;
        }
        assert!(pages.len() <= 100, "runaway paging");
    }
}

#[tokio::test]
async fn koop_pages_the_fire_calls_with_result_offset() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sf_fire.geojson");
    assert_eq!(
        write_geojson(&file, calls_features(&fixture, &fixture.rows)).unwrap(),
        7704
    );
    let options = KoopOptions {
        max_record_count: 1000,
        ..Default::default()
    };
    let Some(koop) = koop::start_or_skip(dir.path(), options).await else {
        return;
    };
    let client = client();
    let query = koop.query_url("sf_fire");

    let (_, layer) = get_json(&client, &format!("{}?f=json", koop.layer_url("sf_fire"))).await;
    assert_eq!(layer["maxRecordCount"], 1000);
    assert_eq!(layer["objectIdField"], "OBJECTID");
    let date_field = layer["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "received_dttm");
    assert_eq!(date_field.unwrap()["type"], "esriFieldTypeDate");

    let pages = page_arcgis(&client, &query, "").await;
    assert_eq!(pages.len(), 8);
    let ids: Vec<i64> = pages
        .iter()
        .flatten()
        .map(|f| f["attributes"]["OBJECTID"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=7704).collect::<Vec<_>>());
    let first = &pages[0][0];
    // 2016-12-31T23:57:56 read as UTC, in epoch milliseconds.
    assert_eq!(first["attributes"]["received_dttm"], 1_483_228_676_000_i64);
    assert_eq!(
        first["geometry"],
        json!({"x": -122.456664252061, "y": 37.745858648581})
    );

    // No resultRecordCount: capped at maxRecordCount, as ArcGIS does.
    let (_, page) = get_json(&client, &format!("{query}?where=1%3D1&f=json")).await;
    assert_eq!(page["features"].as_array().unwrap().len(), 1000);
    assert_eq!(page["exceededTransferLimit"], true);
    let (_, count) = get_json(
        &client,
        &format!("{query}?where=1%3D1&returnCountOnly=true&f=json"),
    )
    .await;
    assert_eq!(count, json!({"count": 7704}));
    let (_, ids) = get_json(&client, &format!("{query}?returnIdsOnly=true&f=json")).await;
    assert_eq!(
        ids["objectIds"].as_array().unwrap().len(),
        7704,
        "ids are not paged"
    );
    let since = "received_dttm%20%3E%3D%20timestamp%20%272017-01-07%2023%3A00%3A00%27";
    let (_, count) = get_json(
        &client,
        &format!("{query}?where={since}&returnCountOnly=true"),
    )
    .await;
    assert_eq!(count, json!({"count": 36}));
    let (_, geojson) = get_json(&client, &format!("{query}?objectIds=1,2&f=geojson")).await;
    assert_eq!(
        geojson["features"][0]["properties"]["received_dttm"],
        "2016-12-31T23:57:56"
    );
    assert!(geojson.get("exceededTransferLimit").is_none());
    let (status, error) = get_json(&client, &format!("{query}?where=(((")).await;
    assert_eq!(status, 200, "ArcGIS-style errors come with HTTP 200");
    assert_eq!(error["error"]["code"], 400);

    // The file is read on every request.
    write_geojson(&file, calls_features(&fixture, &fixture.rows[..5000])).unwrap();
    let pages = page_arcgis(&client, &query, "").await;
    assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), 5000);
    assert_eq!(pages.len(), 5);
}

#[tokio::test]
async fn proxy_injects_faults_in_front_of_datasette() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sf_fire.db");
    write_calls_db(&db, &fixture, &fixture.rows);
    let Some(ds) = datasette::start_or_skip(&db, DatasetteOptions::default()).await else {
        return;
    };
    let faults = FaultPlan::new();
    let log = RequestLog::new();
    let proxy = proxy::start(ds.base_url(), faults.clone(), log.clone()).await;
    faults.push_at(
        2,
        Fault::Status {
            code: 503,
            body: "{\"error\": \"busy\"}".into(),
        },
    );
    faults.push_at(
        4,
        Fault::TooManyRequests {
            retry_after: Some("0".into()),
        },
    );
    faults.push_at(6, Fault::MalformedJson);
    faults.push_at(8, Fault::Truncate);
    let client = client();

    // Metadata passes untouched and is not a data request.
    let (status, _) = get_json(&client, &proxy.url("/-/versions.json")).await;
    assert_eq!(status, 200);

    // A client that retries every failed page, following next_url.
    let mut url = Some(proxy.proxied(&format!(
        "{}?_shape=objects&_size=1000",
        ds.table_url("calls")
    )));
    let mut rows = 0;
    let mut failures = Vec::new();
    while let Some(current) = url.take() {
        assert!(
            current.starts_with(&proxy.base_url()),
            "next_url leads back through the proxy: {current}"
        );
        let outcome = match client.get(&current).send().await {
            Err(err) => Err(format!("send: {err}")),
            Ok(response) if !response.status().is_success() => {
                Err(format!("status {}", response.status()))
            }
            Ok(response) => match response.text().await {
                Err(err) => Err(format!("body: {err}")),
                Ok(body) => serde_json::from_str::<Value>(&body).map_err(|e| format!("json: {e}")),
            },
        };
        match outcome {
            Ok(page) => {
                rows += page["rows"].as_array().unwrap().len();
                url = page["next_url"].as_str().map(str::to_owned);
            }
            Err(failure) => {
                failures.push(failure);
                assert!(failures.len() <= 10);
                url = Some(current);
            }
        }
    }
    assert_eq!(rows, 7704);
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert_eq!(failures[0], "status 503 Service Unavailable");
    assert_eq!(failures[1], "status 429 Too Many Requests");
    assert!(failures[2].starts_with("json:"), "{failures:?}");
    assert!(failures[3].starts_with("body:"), "{failures:?}");

    let data = log.data_requests();
    assert_eq!(data.len(), 12, "8 pages and 4 faulted attempts");
    let statuses: Vec<u16> = data.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 503, 200, 429, 200, 200, 200, 200, 200, 200, 200, 200]
    );
    assert_eq!(log.rows_served(), 7704, "faulted responses count no rows");
    assert_eq!(
        log.requests().len(),
        13,
        "the versions request is logged too"
    );
    assert_eq!(data[2].param("_size"), Some("1000"));
    assert!(data[2].param("_next").is_some());
    assert_eq!(faults.pending(), 0);
}

#[tokio::test]
async fn proxy_forwards_koop_queries_and_delays() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    write_geojson(
        &dir.path().join("calls.geojson"),
        calls_features(&fixture, &fixture.rows[..2500]),
    )
    .unwrap();
    let Some(koop) = koop::start_or_skip(dir.path(), KoopOptions::default()).await else {
        return;
    };
    let faults = FaultPlan::new();
    let log = RequestLog::new();
    let proxy = proxy::start(koop.base_url(), faults.clone(), log.clone()).await;
    faults.push_at(1, Fault::Delay(std::time::Duration::from_millis(300)));
    let client = client();
    let query = proxy.proxied(&koop.query_url("calls"));

    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let first = format!("{query}?where=1%3D1&resultOffset=0&resultRecordCount=1000&f=json");
    assert!(short.get(&first).send().await.unwrap_err().is_timeout());

    let pages = page_arcgis(&client, &query, "").await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    let (_, count) = get_json(&client, &format!("{query}?returnCountOnly=true")).await;
    assert_eq!(count["count"], 2500);
    assert_eq!(
        faults.data_requests(),
        4,
        "the timed-out try and three pages; not the count"
    );
    // The timed-out try is logged only if the proxy finished it before noticing the client
    // had gone; the three pages always are.
    let logged: Vec<usize> = log.data_requests().iter().map(|r| r.rows).collect();
    assert!(logged.ends_with(&[1000, 1000, 500]), "{logged:?}");
}
