//! The emulators behave like the portals they stand for: paging, ordering, filters, caps,
//! error shapes, and the visible effect of every fault.

use std::collections::HashSet;
use std::time::Duration;

use goalpost_testkit::arcgis::{self, ArcGisOptions};
use goalpost_testkit::ckan::{self, CkanOptions};
use goalpost_testkit::dataset::{BASE_EPOCH, local_to_utc};
use goalpost_testkit::opendatasoft::{self, OdsOptions};
use goalpost_testkit::server::encode_query;
use goalpost_testkit::socrata::{self, SocrataOptions};
use goalpost_testkit::{ColumnKind, Dataset, Fault, SharedDataset, TestServer, Value};
use serde_json::Value as Json;

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", &self.body[..self.body.len().min(300)]))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

fn url(server: &TestServer, path: &str, params: &[(&str, &str)]) -> String {
    format!(
        "{}?{}",
        server.url(path),
        encode_query(params.iter().copied())
    )
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply {
        status,
        headers,
        body: response.text().await.expect("body"),
    }
}

async fn get(url: &str) -> Reply {
    send(reqwest::Client::new().get(url)).await
}

fn fire() -> SharedDataset {
    Dataset::sf_fire().shared()
}

fn column(dataset: &Dataset, field: &str) -> usize {
    dataset
        .column_index(field)
        .unwrap_or_else(|| panic!("no column {field}"))
}

#[test]
fn dataset_holds_the_published_calls() {
    let d = Dataset::sf_fire();
    assert_eq!(
        (d.len(), d.columns().len(), d.key_field(), d.key_label()),
        (7704, 34, "rowid", "RowID")
    );
    let kind = |f: &str| d.columns()[column(&d, f)].kind;
    assert_eq!(kind("received_dttm"), ColumnKind::Timestamp);
    assert_eq!(kind("als_unit"), ColumnKind::Boolean);
    assert_eq!(kind("location"), ColumnKind::Point);
    assert_eq!(kind("unit_id"), ColumnKind::Text);
    assert!(d.columns()[column(&d, "call_date")].date_only);
    assert!(d.columns()[column(&d, "call_number")].integer);
    assert!(d.column_index("neighborhood_district").is_some());

    let first = &d.rows()[0];
    assert_eq!(
        first.get(column(&d, "received_dttm")),
        Some("2016-12-31T23:57:56")
    );
    assert_eq!(
        first.get(column(&d, "call_date")),
        Some("2016-12-31T00:00:00")
    );
    assert_eq!(first.get(column(&d, "transport_dttm")), None);
    assert_eq!(d.key_of(first), "163664050-E39");
    assert!(first.id.starts_with("row-") && first.id.len() == 18);

    let keys: HashSet<&str> = d.rows().iter().map(|r| d.key_of(r)).collect();
    let ids: HashSet<&str> = d.rows().iter().map(|r| r.id.as_str()).collect();
    let updated: HashSet<i64> = d.rows().iter().map(|r| r.updated_at).collect();
    assert_eq!((keys.len(), ids.len(), updated.len()), (7704, 7704, 97));

    let typed: Vec<_> = d.typed_rows().take(1).collect();
    let point = &typed[0][column(&d, "location")];
    assert!(
        matches!(point, Some(Value::Point { lat, lon }) if (*lat - 37.745858648581).abs() < 1e-9 && *lon < -122.0)
    );
    let csv = d.to_csv_string();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().get(31),
        Some("Neighborhood  District")
    );
    assert_eq!(reader.records().count(), 7704);
}

#[test]
fn mutations_are_deterministic_and_visible() {
    let mut d = Dataset::sf_fire();
    let etag = d.etag();
    let at = BASE_EPOCH + 86_400;
    let changed = d.change_rows(100, at);
    assert_eq!(changed.len(), 77);
    let disposition = d.label_index("Call Final Disposition").unwrap();
    let row = &d.rows()[99];
    assert_eq!(
        (row.get(disposition), row.updated_at),
        (Some("Changed 1"), at)
    );
    assert_eq!(changed[0], d.key_of(row));
    assert_eq!((d.modified_at(), d.mutation_version()), (at, 1));
    assert_ne!(d.etag(), etag);
    let original = Dataset::sf_fire();
    let available = d.label_index("Available DtTm").unwrap();
    let minute = d.rows()[99].timestamp(available).unwrap()
        - original.rows()[99].timestamp(available).unwrap();
    assert_eq!(minute.num_seconds(), 60);
    assert_eq!(d.delete_rows(1000, at).len(), 7);
    assert_eq!((d.len(), d.mutation_version()), (7697, 2));
}

// ---------------------------------------------------------------- Socrata

async fn soda_pages(server: &TestServer, order: Option<&str>, limit: usize) -> Vec<Json> {
    let mut rows = Vec::new();
    let limit_text = limit.to_string();
    for page in 0.. {
        let offset = (page * limit).to_string();
        let mut params = vec![
            ("$limit", limit_text.as_str()),
            ("$offset", offset.as_str()),
        ];
        params.extend(order.map(|o| ("$order", o)));
        let reply = get(&url(server, "/resource/nuek-vuh3.json", &params)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let Json::Array(page) = reply.json() else {
            panic!("not an array")
        };
        let last = page.len() < limit;
        rows.extend(page);
        if last {
            break;
        }
    }
    rows
}

fn distinct_keys(rows: &[Json], field: &str) -> usize {
    rows.iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect::<HashSet<_>>()
        .len()
}

#[tokio::test]
async fn socrata_pages_completely_only_with_a_unique_order() {
    let server = socrata::start(fire(), SocrataOptions::default()).await;
    let count = get(&url(
        &server,
        "/resource/nuek-vuh3.json",
        &[("$select", "count(*)")],
    ))
    .await;
    assert_eq!(count.json(), serde_json::json!([{"count": "7704"}]));

    let ordered = soda_pages(&server, Some(":id"), 1000).await;
    assert_eq!(
        (ordered.len(), distinct_keys(&ordered, "rowid")),
        (7704, 7704)
    );
    assert_eq!(server.log.data_requests().len(), 8);
    assert_eq!(server.log.rows_served(), 7704);
    assert_eq!(server.log.len(), 9);

    let small = socrata::start(
        Dataset::sf_fire().subset(2000).shared(),
        SocrataOptions::default(),
    )
    .await;
    let unordered = soda_pages(&small, None, 250).await;
    assert_eq!(unordered.len(), 2000);
    assert!(
        distinct_keys(&unordered, "rowid") < 1900,
        "no order must mean repeats and gaps"
    );
    let ties = soda_pages(&small, Some(":updated_at"), 250).await;
    assert!(
        distinct_keys(&ties, "rowid") < 2000,
        "ties on :updated_at must reorder between pages"
    );
    let stable = soda_pages(&small, Some(":updated_at DESC, :id"), 250).await;
    assert_eq!(distinct_keys(&stable, "rowid"), 2000);
    assert!(
        stable[0][":updated_at"].is_null(),
        "system fields only with :*"
    );
}

#[tokio::test]
async fn socrata_filters_select_and_renders_like_soda() {
    let dataset = Dataset::sf_fire();
    let server = socrata::start(dataset.clone().shared(), SocrataOptions::default()).await;
    let count = |where_: &'static str| {
        let u = url(
            &server,
            "/resource/nuek-vuh3.json",
            &[("$select", "count(*) AS n"), ("$where", where_)],
        );
        async move {
            get(&u).await.json()[0]["n"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        }
    };
    let received = column(&dataset, "received_dttm");
    let transport = column(&dataset, "transport_dttm");
    let expected = dataset
        .rows()
        .iter()
        .filter(|r| r.get(received).unwrap() >= "2017-01-07T00:00:00" && r.get(transport).is_none())
        .count();
    assert_eq!(
        count("received_dttm >= '2017-01-07T00:00:00' AND transport_dttm IS NULL").await,
        expected
    );
    let late = dataset
        .rows()
        .iter()
        .filter(|r| r.updated_at >= BASE_EPOCH + 3600)
        .count();
    assert_eq!(
        count(":updated_at >= '2017-01-08T01:00:00.000Z'").await,
        late
    );
    let b04 = dataset
        .rows()
        .iter()
        .filter(|r| r.get(column(&dataset, "battalion")) == Some("B04"))
        .count();
    assert_eq!(
        count("(battalion = 'B04' OR battalion = 'B04') AND call_number > 0").await,
        b04
    );
    let simple = get(&url(
        &server,
        "/resource/nuek-vuh3.json",
        &[("battalion", "B04"), ("$limit", "50000")],
    ))
    .await;
    assert_eq!(simple.json().as_array().unwrap().len(), b04);

    let first = &dataset.rows()[0];
    let reply = get(&url(
        &server,
        "/resource/nuek-vuh3.json",
        &[
            ("$select", ":*,*"),
            ("$where", &format!(":id = '{}'", first.id)),
        ],
    ))
    .await;
    let row = &reply.json()[0];
    assert_eq!(row[":id"], first.id.as_str());
    assert_eq!(row[":created_at"], "2017-01-08T00:00:00.000Z");
    assert_eq!(row["received_dttm"], "2016-12-31T23:57:56.000");
    assert_eq!(row["call_number"], "163664050");
    assert_eq!(row["als_unit"], true);
    assert_eq!(row["location"]["type"], "Point");
    assert_eq!(
        row["location"]["coordinates"][0].as_f64().unwrap(),
        -122.456664252061
    );
    assert!(
        row.get("transport_dttm").is_none(),
        "null fields are left out"
    );
    let types: Vec<String> = serde_json::from_str(reply.header("x-soda2-types")).unwrap();
    let fields: Vec<String> = serde_json::from_str(reply.header("x-soda2-fields")).unwrap();
    assert_eq!(
        (types.len(), &fields[0], &types[0], &types[3 + 6]),
        (
            37,
            &":id".to_owned(),
            &"meta_data".to_owned(),
            &"floating_timestamp".to_owned()
        )
    );
    assert!(
        types.contains(&"point".into())
            && types.contains(&"checkbox".into())
            && types.contains(&"number".into())
    );
    assert!(
        reply.header("etag").starts_with('"') && reply.header("last-modified").ends_with("GMT")
    );
}

#[tokio::test]
async fn socrata_errors_csv_metadata_and_app_tokens() {
    let server = socrata::start(fire(), SocrataOptions::default()).await;
    let resource = |params: &[(&str, &str)]| url(&server, "/resource/nuek-vuh3.json", params);
    for (name, value) in [
        ("$where", "nope = 'x'"),
        ("$order", "nope DESC"),
        ("$select", "rowid, nope"),
    ] {
        let reply = get(&resource(&[(name, value)])).await;
        assert_eq!(reply.status, 400);
        let body = reply.json();
        assert_eq!(
            (body["code"].as_str(), body["error"].as_bool()),
            (Some("query.soql.no-such-column"), Some(true))
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("No such column: nope; position:")
        );
    }
    let malformed = get(&resource(&[("$where", "battalion = ")])).await;
    assert_eq!(
        (malformed.status, malformed.json()["code"].as_str()),
        (400, Some("query.compiler.malformed"))
    );
    let mismatch = get(&resource(&[("$where", "call_number > 'abc'")])).await;
    assert_eq!(mismatch.json()["code"], "query.soql.type-mismatch");
    let missing = get(&server.url("/resource/abcd-1234.json")).await;
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("not_found"))
    );
    assert!(
        server.log.data_requests().is_empty(),
        "rejected queries are not data requests"
    );

    let csv = get(&url(
        &server,
        "/resource/nuek-vuh3.csv",
        &[("$order", ":id"), ("$limit", "5")],
    ))
    .await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("\"call_number\",\"unit_id\""));
    assert!(csv.body.contains("POINT (-122."));

    let view = get(&server.url("/api/views/nuek-vuh3.json")).await.json();
    assert_eq!(view["id"], "nuek-vuh3");
    assert_eq!(view["columns"].as_array().unwrap().len(), 34);
    assert_eq!(view["columns"][6]["fieldName"], "received_dttm");
    assert_eq!(view["columns"][6]["dataTypeName"], "floating_timestamp");
    let before = view["rowsUpdatedAt"].as_i64().unwrap();
    server
        .dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    let after = get(&server.url("/api/views/nuek-vuh3.json")).await.json()["rowsUpdatedAt"]
        .as_i64()
        .unwrap();
    assert_eq!((before < after, after), (true, BASE_EPOCH + 86_400));

    let options = SocrataOptions {
        app_token: Some("t0ken".into()),
        ..Default::default()
    };
    let guarded = socrata::start(fire(), options).await;
    let denied = get(&guarded.url("/resource/nuek-vuh3.json")).await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, socrata::FORBIDDEN_BODY)
    );
    let client = reqwest::Client::new();
    let allowed = send(
        client
            .get(guarded.url("/resource/nuek-vuh3.json?$limit=1"))
            .header("X-App-Token", "t0ken"),
    )
    .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        guarded.log.requests()[1].header("x-app-token"),
        Some("t0ken")
    );
}

// ---------------------------------------------------------------- CKAN

#[tokio::test]
async fn ckan_datastore_search_pages_by_links_and_validates() {
    let options = CkanOptions::default();
    let server = ckan::start(fire(), options.clone()).await;
    let rid = options.resource_id.as_str();
    let search = |params: &[(&str, &str)]| url(&server, "/api/3/action/datastore_search", params);

    let mut next = search(&[("resource_id", rid), ("limit", "3000")]);
    let mut ids = HashSet::new();
    let mut pages = 0;
    loop {
        let body = get(&next).await.json();
        assert_eq!(body["success"], true);
        let result = &body["result"];
        let records = result["records"].as_array().unwrap();
        if records.is_empty() {
            break;
        }
        pages += 1;
        ids.extend(records.iter().map(|r| r["_id"].as_u64().unwrap()));
        assert_eq!(result["total"], 7704);
        next = server.url(result["_links"]["next"].as_str().unwrap());
    }
    assert_eq!((ids.len(), pages), (7704, 3));
    assert_eq!(server.log.data_requests().len(), 4);

    let body = get(&search(&[
        ("resource_id", rid),
        ("limit", "50000"),
        ("sort", "\"Received DtTm\" desc"),
    ]))
    .await
    .json();
    let result = &body["result"];
    assert_eq!(
        (
            result["limit"].as_u64(),
            result["records"].as_array().unwrap().len()
        ),
        (Some(32_000), 7704)
    );
    assert_eq!(
        result["fields"][0],
        serde_json::json!({"id": "_id", "type": "int"})
    );
    assert_eq!(
        result["fields"][7],
        serde_json::json!({"id": "Received DtTm", "type": "timestamp"})
    );
    let records = result["records"].as_array().unwrap();
    assert!(
        records[0]["Received DtTm"].as_str().unwrap()
            >= records[1]["Received DtTm"].as_str().unwrap()
    );
    assert!(
        records[0]["Call Number"].is_number()
            && records.iter().any(|r| r["Transport DtTm"].is_null())
    );
    assert_eq!(
        records.iter().find(|r| r["_id"] == 1).unwrap()["Received DtTm"],
        "2016-12-31T23:57:56"
    );

    let filtered = get(&search(&[
        ("resource_id", rid),
        ("filters", r#"{"Battalion": ["B04", "B05"]}"#),
        ("include_total", "true"),
        ("limit", "0"),
    ]))
    .await
    .json();
    let dataset = Dataset::sf_fire();
    let battalion = column(&dataset, "battalion");
    let expected = dataset
        .rows()
        .iter()
        .filter(|r| matches!(r.get(battalion), Some("B04" | "B05")))
        .count();
    assert_eq!(filtered["result"]["total"].as_u64(), Some(expected as u64));
    let no_total = get(&search(&[
        ("resource_id", rid),
        ("include_total", "false"),
        ("limit", "1"),
    ]))
    .await
    .json();
    assert!(no_total["result"].get("total").is_none());

    let posted = send(reqwest::Client::new().post(server.url("/api/3/action/datastore_search")).body(
        serde_json::json!({"resource_id": rid, "limit": 2, "fields": ["_id", "RowID"], "sort": "_id desc"}).to_string(),
    ))
    .await
    .json();
    assert_eq!(
        posted["result"]["records"],
        serde_json::json!([{"_id": 7704, "RowID": dataset.key_of(&dataset.rows()[7703])}, {"_id": 7703, "RowID": dataset.key_of(&dataset.rows()[7702])}])
    );

    for (params, status, key, message) in [
        (
            vec![("resource_id", rid), ("limit", "abc")],
            409,
            "limit",
            "Invalid integer",
        ),
        (
            vec![("resource_id", rid), ("sort", "Received DtTm desc")],
            409,
            "sort",
            "not valid syntax for sort clause",
        ),
        (
            vec![("resource_id", rid), ("sort", "nope")],
            409,
            "sort",
            "field nope not it table",
        ),
        (
            vec![("resource_id", rid), ("fields", "nope")],
            409,
            "fields",
            "field \"nope\" not in table",
        ),
    ] {
        let reply = get(&search(&params)).await;
        let body = reply.json();
        assert_eq!(
            (reply.status, &body["success"]),
            (status, &Json::Bool(false))
        );
        assert_eq!(
            (
                body["error"]["__type"].as_str(),
                body["error"][key][0].as_str()
            ),
            (Some("Validation Error"), Some(message))
        );
    }
    let missing = get(&search(&[("resource_id", "nope")])).await;
    assert_eq!(
        (missing.status, missing.json()["error"]["__type"].as_str()),
        (404, Some("Not Found Error"))
    );
}

#[tokio::test]
async fn ckan_package_show_and_conditional_download() {
    let options = CkanOptions::default();
    let server = ckan::start(fire(), options.clone()).await;
    let show = || {
        url(
            &server,
            "/api/3/action/package_show",
            &[("id", &options.package_name)],
        )
    };
    let package = get(&show()).await.json();
    let result = &package["result"];
    assert_eq!(result["metadata_modified"], "2017-01-08T01:36:00.000000");
    let resources = result["resources"].as_array().unwrap();
    assert_eq!(
        (
            resources[0]["datastore_active"].as_bool(),
            resources[1]["datastore_active"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let download = resources[1]["url"].as_str().unwrap().to_owned();
    assert!(
        download.starts_with(&server.base_url()) && download.ends_with("/download/fire-calls.csv")
    );
    let shown = get(&url(
        &server,
        "/api/3/action/resource_show",
        &[("id", &options.csv_resource_id)],
    ))
    .await
    .json();
    assert_eq!(shown["result"]["url"], download.as_str());
    let unknown = get(&url(
        &server,
        "/api/3/action/resource_show",
        &[("id", "nope")],
    ))
    .await;
    assert_eq!(
        (unknown.status, unknown.json()["error"]["message"].as_str()),
        (404, Some("Not found: Resource was not found."))
    );

    let csv = get(&download).await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with("Call Number,Unit ID,"));
    let etag = csv.header("etag").to_owned();
    let last_modified = csv.header("last-modified").to_owned();
    let client = reqwest::Client::new();
    let cached = send(client.get(&download).header("If-None-Match", &etag)).await;
    assert_eq!((cached.status, cached.body.len()), (304, 0));
    let cached = send(
        client
            .get(&download)
            .header("If-Modified-Since", &last_modified),
    )
    .await;
    assert_eq!(cached.status, 304);

    server
        .dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    let changed = get(&show()).await.json();
    assert_eq!(
        changed["result"]["metadata_modified"],
        "2017-01-09T00:00:00.000000"
    );
    assert_eq!(
        changed["result"]["resources"][0]["last_modified"],
        "2017-01-09T00:00:00.000000"
    );
    let fresh = send(client.get(&download).header("If-None-Match", &etag)).await;
    assert_eq!(fresh.status, 200);
    assert!(fresh.body.contains("Changed 1"));
    let rows: Vec<usize> = server.log.data_requests().iter().map(|r| r.rows).collect();
    assert_eq!(rows, [7704, 0, 0, 7704]);
}

// ---------------------------------------------------------------- Opendatasoft

const ODS: &str = "/api/explore/v2.1/catalog/datasets/sf-fire-department-calls";

#[tokio::test]
async fn ods_records_enforce_limit_and_window() {
    let server = opendatasoft::start(
        fire(),
        OdsOptions {
            max_window: 1000,
            ..Default::default()
        },
    )
    .await;
    let records = |params: &[(&str, &str)]| url(&server, &format!("{ODS}/records"), params);
    let default = get(&records(&[])).await.json();
    assert_eq!(
        (
            default["total_count"].as_u64(),
            default["results"].as_array().unwrap().len()
        ),
        (Some(7704), 10)
    );

    let too_big = get(&records(&[("limit", "200")])).await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.json()["error_code"], "InvalidRESTParameterError");
    assert_eq!(
        too_big.json()["message"],
        "Invalid value for limit API parameter: 200 was found but -1 <= limit <= 100 is expected."
    );
    let beyond = get(&records(&[("limit", "100"), ("offset", "950")])).await;
    assert_eq!(beyond.status, 400);
    assert!(
        beyond.json()["message"]
            .as_str()
            .unwrap()
            .contains("sum of offset + limit API parameter: 1050")
    );

    let mut keys = HashSet::new();
    for offset in (0..1000).step_by(100) {
        let page = get(&records(&[
            ("limit", "100"),
            ("offset", &offset.to_string()),
            ("order_by", "rowid DESC"),
        ]))
        .await
        .json();
        keys.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["rowid"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(keys.len(), 1000);
    assert_eq!(server.log.rows_served(), 1010);
}

#[tokio::test]
async fn ods_values_where_and_timezones() {
    let dataset = Dataset::sf_fire();
    let server = opendatasoft::start(dataset.clone().shared(), OdsOptions::default()).await;
    let records = |params: &[(&str, &str)]| url(&server, &format!("{ODS}/records"), params);
    let one = [("where", "rowid = \"163664050-E39\"")];
    let utc = get(&records(&one)).await.json();
    let row = &utc["results"][0];
    assert_eq!(row["received_dttm"], "2017-01-01T07:57:56+00:00");
    assert_eq!(row["call_date"], "2016-12-31");
    assert_eq!(row["call_number"], 163664050);
    assert_eq!(row["als_unit"], true);
    assert_eq!(row["location"]["lat"].as_f64(), Some(37.745858648581));
    assert!(row["transport_dttm"].is_null());
    assert_eq!(row["updated"], "2017-01-08T00:01:00+00:00");
    let local = get(&records(&[one[0], ("timezone", "America/Los_Angeles")]))
        .await
        .json();
    assert_eq!(
        local["results"][0]["received_dttm"],
        "2016-12-31T23:57:56-08:00"
    );

    let received = column(&dataset, "received_dttm");
    let cutoff = chrono::DateTime::parse_from_rfc3339("2017-01-07T00:00:00Z").unwrap();
    let expected = dataset
        .rows()
        .iter()
        .filter(|r| local_to_utc(r.timestamp(received).unwrap()) >= cutoff)
        .count();
    let count = |where_: &str| {
        let u = records(&[("where", where_), ("limit", "0")]);
        async move { get(&u).await.json()["total_count"].as_u64().unwrap() as usize }
    };
    assert_eq!(count("received_dttm >= date'2017-01-07'").await, expected);
    assert_eq!(
        count("received_dttm >= date'2017-01-06T16:00:00-08:00'").await,
        expected
    );
    let updated = dataset
        .rows()
        .iter()
        .filter(|r| r.updated_at >= BASE_EPOCH + 3600)
        .count();
    assert_eq!(
        count("updated >= date'2017-01-08T01:00:00Z'").await,
        updated
    );
    let new_year = dataset
        .rows()
        .iter()
        .filter(|r| r.get(column(&dataset, "call_date")) == Some("2017-01-01T00:00:00"))
        .count();
    assert_eq!(count("call_date = date'2017-01-01'").await, new_year);

    let unknown = get(&records(&[("where", "nope > 1")])).await;
    assert_eq!(
        (unknown.status, unknown.json()["error_code"].as_str()),
        (400, Some("ODSQLError"))
    );
    assert_eq!(unknown.json()["message"], "Unknown field: nope");
    let unknown_order = get(&records(&[("order_by", "nope")])).await;
    assert_eq!(unknown_order.json()["message"], "Unknown field: nope");

    let info = get(&server.url(ODS)).await.json();
    let types: Vec<(String, String)> = info["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in [
        ("call_number", "int"),
        ("call_date", "date"),
        ("received_dttm", "datetime"),
        ("location", "geo_point_2d"),
        ("als_unit", "boolean"),
        ("updated", "datetime"),
    ] {
        assert!(types.contains(&(pair.0.into(), pair.1.into())), "{pair:?}");
    }
    let metas = &info["metas"]["default"];
    assert_eq!(
        (metas["records_count"].as_u64(), metas["timezone"].as_str()),
        (Some(7704), Some("America/Los_Angeles"))
    );
    assert_eq!(metas["data_processed"], "2017-01-08T01:36:00+00:00");
}

#[tokio::test]
async fn ods_exports_have_no_window() {
    let server = opendatasoft::start(
        fire(),
        OdsOptions {
            max_window: 1000,
            ..Default::default()
        },
    )
    .await;
    let json = get(&url(
        &server,
        &format!("{ODS}/exports/json"),
        &[("order_by", "rowid"), ("select", "rowid,received_dttm")],
    ))
    .await
    .json();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 7704);
    assert_eq!(rows[0].as_object().unwrap().len(), 2);
    let csv = get(&url(
        &server,
        &format!("{ODS}/exports/csv"),
        &[("where", "battalion = 'B04'")],
    ))
    .await;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(csv.body.as_bytes());
    assert_eq!(&reader.headers().unwrap()[0], "call_number");
    assert!(reader.records().all(|r| &r.unwrap()[18] == "B04"));
    let offset = get(&url(
        &server,
        &format!("{ODS}/exports/json"),
        &[("offset", "10")],
    ))
    .await;
    assert_eq!(
        offset.status, 400,
        "a non-zero offset brings the window back"
    );
    assert_eq!(server.log.data_requests().len(), 2);
}

// ---------------------------------------------------------------- ArcGIS

const LAYER: &str = "/arcgis/rest/services/FireCalls/FeatureServer/0";

async fn arcgis_page(server: &TestServer, params: &[(&str, &str)]) -> Json {
    let reply = get(&url(server, &format!("{LAYER}/query"), params)).await;
    assert_eq!(reply.status, 200);
    reply.json()
}

#[tokio::test]
async fn arcgis_pages_until_the_transfer_limit_clears() {
    let server = arcgis::start(fire(), ArcGisOptions::default()).await;
    let layer = get(&url(&server, LAYER, &[("f", "json")])).await.json();
    assert_eq!(
        (
            layer["maxRecordCount"].as_u64(),
            layer["objectIdField"].as_str()
        ),
        (Some(2000), Some("OBJECTID"))
    );
    assert_eq!(
        layer["advancedQueryCapabilities"]["supportsPagination"],
        true
    );
    let fields = layer["fields"].as_array().unwrap();
    assert_eq!(fields[0]["type"], "esriFieldTypeOID");
    let types: HashSet<(String, String)> = fields
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, kind) in [
        ("Received_DtTm", "esriFieldTypeDate"),
        ("Neighborhood_District", "esriFieldTypeString"),
        ("Call_Number", "esriFieldTypeInteger"),
        ("EditDate", "esriFieldTypeDate"),
    ] {
        assert!(types.contains(&(name.into(), kind.into())), "{name}");
    }

    let mut ids = HashSet::new();
    let mut offset = 0;
    let mut sizes = Vec::new();
    loop {
        let page = arcgis_page(
            &server,
            &[
                ("where", "1=1"),
                ("outFields", "*"),
                ("orderByFields", "OBJECTID"),
                ("resultOffset", &offset.to_string()),
                ("resultRecordCount", "5000"),
                ("f", "json"),
            ],
        )
        .await;
        let features = page["features"].as_array().unwrap();
        if offset == 0 {
            let first = &features[0];
            assert_eq!(first["attributes"]["Received_DtTm"], 1_483_257_476_000_i64);
            assert_eq!(first["attributes"]["ALS_Unit"], "true");
            assert_eq!(first["geometry"]["x"].as_f64(), Some(-122.456664252061));
        }
        ids.extend(
            features
                .iter()
                .map(|f| f["attributes"]["OBJECTID"].as_u64().unwrap()),
        );
        sizes.push(features.len());
        offset += features.len();
        if page.get("exceededTransferLimit") != Some(&Json::Bool(true)) {
            break;
        }
    }
    assert_eq!((ids.len(), sizes), (7704, vec![2000, 2000, 2000, 1704]));
    let count = arcgis_page(&server, &[("where", "1=1"), ("returnCountOnly", "true")]).await;
    assert_eq!(count, serde_json::json!({"count": 7704}));
    let all_ids = arcgis_page(&server, &[("where", "1=1"), ("returnIdsOnly", "true")]).await;
    assert_eq!(all_ids["objectIds"].as_array().unwrap().len(), 7704);
    assert_eq!(server.log.data_requests().len(), 4);
}

#[tokio::test]
async fn arcgis_filters_geojson_and_errors() {
    let dataset = Dataset::sf_fire();
    let server = arcgis::start(dataset.clone().shared(), ArcGisOptions::default()).await;
    let (battalion, received) = (
        column(&dataset, "battalion"),
        column(&dataset, "received_dttm"),
    );
    let since = chrono::DateTime::parse_from_rfc3339("2017-01-05T00:00:00Z").unwrap();
    let expected = dataset
        .rows()
        .iter()
        .filter(|r| {
            r.get(battalion) == Some("B04") && local_to_utc(r.timestamp(received).unwrap()) >= since
        })
        .count();
    let count = |where_: String| {
        let u = url(
            &server,
            &format!("{LAYER}/query"),
            &[
                ("where", &where_),
                ("returnCountOnly", "true"),
                ("f", "json"),
            ],
        );
        async move { get(&u).await.json()["count"].as_u64().unwrap() as usize }
    };
    assert_eq!(
        count("battalion = 'B04' AND Received_DtTm >= timestamp '2017-01-05 00:00:00'".into())
            .await,
        expected
    );
    assert_eq!(
        count(format!(
            "BATTALION = 'B04' AND RECEIVED_DTTM >= {}",
            since.timestamp_millis()
        ))
        .await,
        expected
    );
    let edited = dataset
        .rows()
        .iter()
        .filter(|r| r.updated_at >= BASE_EPOCH + 3600)
        .count();
    assert_eq!(
        count(format!("EditDate >= {}", (BASE_EPOCH + 3600) * 1000)).await,
        edited
    );

    let geojson = arcgis_page(
        &server,
        &[
            ("where", "1=1"),
            ("outFields", "RowID,Call_Date"),
            ("resultRecordCount", "10"),
            ("f", "geojson"),
        ],
    )
    .await;
    assert_eq!(geojson["type"], "FeatureCollection");
    assert_eq!(geojson["features"].as_array().unwrap().len(), 10);
    assert_eq!(geojson["properties"]["exceededTransferLimit"], true);
    let feature = &geojson["features"][0];
    assert_eq!(
        (feature["id"].as_u64(), feature["geometry"]["type"].as_str()),
        (Some(1), Some("Point"))
    );
    assert_eq!(feature["properties"]["Call_Date"], 1_483_171_200_000_i64);

    for (where_, details) in [
        ("nope = 1", "'Invalid field: nope' parameter is invalid"),
        ("battalion = ", "'where' parameter is invalid"),
    ] {
        let reply = get(&url(
            &server,
            &format!("{LAYER}/query"),
            &[("where", where_), ("f", "json")],
        ))
        .await;
        assert_eq!(reply.status, 200, "ArcGIS reports errors with HTTP 200");
        let error = &reply.json()["error"];
        assert_eq!(
            (error["code"].as_u64(), error["message"].as_str()),
            (Some(400), Some("Unable to complete operation."))
        );
        assert_eq!(error["details"][0], details);
    }
}

#[tokio::test]
async fn arcgis_without_pagination_reads_by_object_ids() {
    let options = ArcGisOptions {
        supports_pagination: false,
        ..Default::default()
    };
    let server = arcgis::start(fire(), options).await;
    let refused = arcgis_page(&server, &[("where", "1=1"), ("resultOffset", "0")]).await;
    assert_eq!(refused["error"]["code"], 400);
    let capped = arcgis_page(&server, &[("where", "1=1")]).await;
    assert_eq!(
        (
            capped["features"].as_array().unwrap().len(),
            &capped["exceededTransferLimit"]
        ),
        (2000, &Json::Bool(true))
    );
    let ids: Vec<u64> = arcgis_page(&server, &[("where", "1=1"), ("returnIdsOnly", "true")]).await
        ["objectIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut seen = HashSet::new();
    for chunk in ids.chunks(2000) {
        let list = chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let page = arcgis_page(
            &server,
            &[
                ("objectIds", &list),
                ("outFields", "OBJECTID"),
                ("returnGeometry", "false"),
            ],
        )
        .await;
        assert!(page.get("exceededTransferLimit").is_none());
        seen.extend(
            page["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["attributes"]["OBJECTID"].as_u64().unwrap()),
        );
    }
    assert_eq!(seen.len(), 7704);
}

#[tokio::test]
async fn arcgis_empty_flagged_page_does_not_end_a_correct_client() {
    let options = ArcGisOptions {
        max_record_count: 1000,
        quirk_empty_last_page: true,
        ..Default::default()
    };
    let server = arcgis::start(fire(), options).await;
    let mut ids = HashSet::new();
    let mut offset = 0;
    let mut empty_pages = 0;
    loop {
        let page = arcgis_page(
            &server,
            &[
                ("where", "1=1"),
                ("outFields", "OBJECTID"),
                ("orderByFields", "OBJECTID"),
                ("resultOffset", &offset.to_string()),
            ],
        )
        .await;
        let features = page["features"].as_array().unwrap();
        empty_pages += usize::from(features.is_empty());
        ids.extend(
            features
                .iter()
                .map(|f| f["attributes"]["OBJECTID"].as_u64().unwrap()),
        );
        offset += features.len();
        if page.get("exceededTransferLimit").is_none() {
            break;
        }
    }
    assert_eq!((ids.len(), empty_pages), (7704, 1));
    assert_eq!(
        server.log.requests()[1].rows,
        0,
        "the second request met the empty page"
    );
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn status_and_rate_limit_faults_hit_only_data_requests() {
    let server = socrata::start(fire(), SocrataOptions::default()).await;
    server.faults.push(
        Fault::Status {
            code: 503,
            body: "{\"error\":true}".into(),
        },
        2,
    );
    server.faults.push(
        Fault::TooManyRequests {
            retry_after: Some("0".into()),
        },
        1,
    );
    let data = url(
        &server,
        "/resource/nuek-vuh3.json",
        &[("$limit", "10"), ("$order", ":id")],
    );
    let view = get(&server.url("/api/views/nuek-vuh3.json")).await;
    let count = get(&url(
        &server,
        "/resource/nuek-vuh3.json",
        &[("$select", "count(*)")],
    ))
    .await;
    assert_eq!(
        (view.status, count.status, server.faults.pending()),
        (200, 200, 3)
    );
    let first = get(&data).await;
    assert_eq!(
        (
            first.status,
            first.header("content-type"),
            first.body.as_str()
        ),
        (503, "application/json", "{\"error\":true}")
    );
    assert_eq!(get(&data).await.status, 503);
    let limited = get(&data).await;
    assert_eq!((limited.status, limited.header("retry-after")), (429, "0"));
    let ok = get(&data).await;
    assert_eq!((ok.status, ok.json().as_array().unwrap().len()), (200, 10));
    let statuses: Vec<(u16, bool, usize)> = server
        .log
        .requests()
        .iter()
        .map(|r| (r.status, r.data, r.rows))
        .collect();
    assert_eq!(
        statuses,
        [
            (200, false, 0),
            (200, false, 0),
            (503, true, 0),
            (503, true, 0),
            (429, true, 0),
            (200, true, 10)
        ]
    );
    assert_eq!(
        (server.faults.pending(), server.faults.data_requests()),
        (0, 4)
    );
}

#[tokio::test]
async fn delay_fault_turns_into_a_client_timeout() {
    let server = opendatasoft::start(fire(), OdsOptions::default()).await;
    server.faults.push(Fault::Delay(Duration::from_secs(30)), 1);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let records = server.url(&format!("{ODS}/records"));
    let error = client
        .get(&records)
        .send()
        .await
        .expect_err("the delayed request must time out");
    assert!(error.is_timeout());
    assert_eq!(client.get(&records).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn truncated_and_malformed_bodies_fail_to_read() {
    let options = CkanOptions::default();
    let server = ckan::start(fire(), options.clone()).await;
    let search = url(
        &server,
        "/api/3/action/datastore_search",
        &[("resource_id", &options.resource_id), ("limit", "500")],
    );
    server.faults.push(Fault::Truncate, 1);
    server.faults.push(Fault::MalformedJson, 1);
    let client = reqwest::Client::new();

    let truncated = client.get(&search).send().await.expect("headers arrive");
    assert_eq!(truncated.status(), 200);
    let announced = truncated
        .content_length()
        .expect("full Content-Length announced");
    assert!(announced > 100_000);
    assert!(truncated.bytes().await.is_err(), "the body must end early");

    let malformed = client.get(&search).send().await.unwrap();
    assert_eq!(malformed.status(), 200);
    let text = malformed.text().await.unwrap();
    assert!(text.starts_with("{\"help\"") && serde_json::from_str::<Json>(&text).is_err());

    let fine = get(&search).await.json();
    assert_eq!(fine["result"]["records"].as_array().unwrap().len(), 500);
    let rows: Vec<usize> = server.log.data_requests().iter().map(|r| r.rows).collect();
    assert_eq!(rows, [0, 0, 500]);
}

#[tokio::test]
async fn rows_change_between_pages_on_the_pinned_request() {
    let server = socrata::start(fire(), SocrataOptions::default()).await;
    let at = BASE_EPOCH + 86_400;
    server.faults.push_at(
        2,
        Fault::MutateAfterServe {
            every: 100,
            at_epoch: at,
        },
    );
    let page = |offset: &str| {
        url(
            &server,
            "/resource/nuek-vuh3.json",
            &[
                ("$select", ":*,*"),
                ("$order", ":id"),
                ("$limit", "1000"),
                ("$offset", offset),
            ],
        )
    };
    let changed = |rows: &Json| {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["call_final_disposition"] == "Changed 1")
            .count()
    };
    let first = get(&page("0")).await.json();
    let second = get(&page("1000")).await.json();
    assert_eq!(
        (changed(&first), changed(&second)),
        (0, 0),
        "the change lands after the second page is served"
    );
    assert_eq!(server.dataset.read().unwrap().mutation_version(), 1);
    let again = get(&page("0")).await.json();
    assert!(changed(&again) > 0);
    let updated = again
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call_final_disposition"] == "Changed 1")
        .unwrap();
    assert_eq!(updated[":updated_at"], "2017-01-09T00:00:00.000Z");
    assert_eq!(server.faults.pending(), 0);
}
