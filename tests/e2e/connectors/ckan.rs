//! The `ckan` connector against the CKAN Action API emulator.

use super::{Harness, assert_same, expected};
use goalpost_testkit::ckan::{self, CkanOptions};
use goalpost_testkit::dataset::BASE_EPOCH;
use goalpost_testkit::{Dataset, Fault, LoggedRequest, SharedDataset, TestServer};

/// CKAN keeps the original column labels (`Received DtTm`).
fn name(label: &str) -> String {
    label.to_string()
}

async fn serve(rows: Option<usize>, options: CkanOptions) -> (SharedDataset, TestServer) {
    let full = Dataset::sf_fire();
    let dataset = match rows {
        Some(n) => full.subset(n),
        None => full,
    }
    .shared();
    let server = ckan::start(dataset.clone(), options).await;
    (dataset, server)
}

/// A pipeline reading the DataStore resource by id.
fn harness(server: &TestServer, page_size: usize, extra: &str) -> Harness {
    Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\nresource_id = \"{}\"\npage_size = {page_size}\n{extra}",
            server.base_url(),
            CkanOptions::default().resource_id
        ),
        name,
    )
}

/// A pipeline naming the dataset (and `extra`, e.g. a `resource`).
fn dataset_harness(server: &TestServer, page_size: usize, extra: &str) -> Harness {
    Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\ndataset = \"{}\"\npage_size = {page_size}\n{extra}",
            server.base_url(),
            CkanOptions::default().package_name
        ),
        name,
    )
}

fn action(r: &LoggedRequest) -> &str {
    r.path.rsplit('/').next().unwrap_or_default()
}

fn offsets(pages: &[LoggedRequest]) -> Vec<u64> {
    pages
        .iter()
        .map(|p| p.param("offset").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn full_load_then_unchanged_then_changed_metadata() {
    let (dataset, server) = serve(None, CkanOptions::default()).await;
    let h = harness(&server, 1500, "");

    let first = h.run().await.expect("first run");
    assert_eq!(first.mode, "full");
    assert_eq!(first.rows_fetched, 7704);
    let requests = server.log.requests();
    assert_eq!(action(&requests[0]), "resource_show", "metadata first");
    let pages = server.log.data_requests();
    assert_eq!(pages.len(), 6, "7,704 rows in pages of 1,500");
    assert_eq!(requests.len(), 7, "one metadata request and the pages");
    for p in &pages {
        assert_eq!(action(p), "datastore_search");
        assert_eq!(
            p.param("sort"),
            Some("_id"),
            "every page has a stable order"
        );
        assert_eq!(p.param("include_total"), Some("true"));
        assert_eq!(p.param("limit"), Some("1500"));
        assert_eq!(
            p.param("resource_id"),
            Some(CkanOptions::default().resource_id.as_str())
        );
    }
    assert_eq!(offsets(&pages), [0, 1500, 3000, 4500, 6000, 7500]);
    assert_eq!(server.log.rows_served(), 7704);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Nothing changed: one metadata request, no rows, no new table version.
    server.log.clear();
    let second = h.run().await.expect("quiet refresh");
    assert_eq!(second.mode, "unchanged");
    assert_eq!(second.rows_fetched, 0);
    assert_eq!(second.fetch.requests, 1);
    let requests = server.log.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(action(&requests[0]), "resource_show");
    assert!(server.log.data_requests().is_empty(), "no datastore_search");
    assert_eq!(second.table_version, first.table_version);
    assert_eq!(h.table_version().await, Some(first.table_version));

    // 1 % of the rows change a day later: the resource's stamp moves, everything is read
    // again and the table replaced.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    assert_eq!(changed.len(), 77);
    server.log.clear();
    let third = h.run().await.expect("refresh after a change");
    assert_eq!(third.mode, "full");
    assert_eq!(third.rows_fetched, 7704);
    assert_eq!(server.log.data_requests().len(), 6);
    assert!(third.table_version > first.table_version);
    let table = h.table().await;
    assert_same(&table, &expected(&dataset.read().unwrap()));
    assert!(table[&changed[0]].disposition.starts_with("Changed"));

    // And then it is quiet again.
    server.log.clear();
    let fourth = h.run().await.expect("quiet again");
    assert_eq!(fourth.mode, "unchanged");
    assert_eq!(server.log.requests().len(), 1);

    // --full always reloads.
    server.log.clear();
    let reload = h.run_full().await.expect("full run");
    assert_eq!((reload.mode, reload.rows_fetched), ("full", 7704));
    assert_eq!(server.log.data_requests().len(), 6);
}

#[tokio::test]
async fn a_server_cap_below_the_page_size_is_followed_to_the_end() {
    // rows_max 2,000 stands in for CKAN's 32,000: the server silently returns fewer rows than
    // asked for and says so in result.limit.
    let (dataset, server) = serve(
        None,
        CkanOptions {
            max_limit: 2000,
            ..Default::default()
        },
    )
    .await;
    let h = harness(&server, 5000, "");
    let report = h.run().await.expect("capped run");
    assert_eq!(report.rows_fetched, 7704);
    let pages = server.log.data_requests();
    assert_eq!(
        offsets(&pages),
        [0, 2000, 4000, 6000],
        "advance by what arrived"
    );
    assert!(pages.iter().all(|p| p.param("limit") == Some("5000")));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn a_dataset_is_resolved_with_package_show() {
    let (dataset, server) = serve(Some(1000), CkanOptions::default()).await;
    let options = CkanOptions::default();

    // By default: the first resource in the DataStore.
    let h = dataset_harness(&server, 400, "");
    let report = h.run().await.expect("run by dataset");
    assert_eq!((report.mode, report.rows_fetched), ("full", 1000));
    let requests = server.log.requests();
    assert_eq!(action(&requests[0]), "package_show");
    assert_eq!(requests[0].param("id"), Some(options.package_name.as_str()));
    let pages = server.log.data_requests();
    assert_eq!(pages.len(), 3);
    assert!(
        pages
            .iter()
            .all(|p| p.param("resource_id") == Some(options.resource_id.as_str()))
    );
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Unchanged: package_show alone.
    server.log.clear();
    let quiet = h.run().await.expect("quiet run");
    assert_eq!(quiet.mode, "unchanged");
    assert_eq!(server.log.requests().len(), 1);

    // By the resource's name, and by its id.
    for extra in [
        format!("resource = \"{}\"", options.title),
        format!("resource = \"{}\"", options.resource_id),
    ] {
        server.log.clear();
        let h = dataset_harness(&server, 400, &extra);
        h.run().await.expect("run by resource name or id");
        assert_eq!(server.log.data_requests().len(), 3, "{extra}");
        assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
    }

    // A resource the dataset does not have: the message lists what it has.
    let h = dataset_harness(&server, 400, "resource = \"Budget\"");
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("has no resource named \"Budget\"")
            && err.contains(&format!(
                "\"{}\" (id {}, CSV, in the DataStore)",
                options.title, options.resource_id
            )),
        "{err}"
    );

    // A dataset the portal does not have.
    let h = Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\ndataset = \"no-such-dataset\"",
            server.base_url()
        ),
        name,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("dataset no-such-dataset was not found") && err.contains("/dataset/<name>"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_resource_is_downloaded_and_an_unchanged_file_costs_one_304() {
    let (dataset, server) = serve(None, CkanOptions::default()).await;
    let csv_name = "Fire Department Calls for Service (CSV)";
    let h = dataset_harness(&server, 2000, &format!("resource = \"{csv_name}\""));

    let first = h.run().await.expect("download");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    let requests = server.log.requests();
    assert_eq!(requests.len(), 2, "package_show and the file");
    assert_eq!(action(&requests[0]), "package_show");
    assert!(requests[1].path.ends_with("/download/fire-calls.csv"));
    assert_eq!(requests[1].status, 200);
    assert_eq!(requests[1].header("if-none-match"), None);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Unchanged: the conditional GET answers 304 and nothing is written.
    server.log.clear();
    let second = h.run().await.expect("conditional download");
    assert_eq!(second.mode, "unchanged");
    assert_eq!(second.rows_fetched, 0);
    let requests = server.log.requests();
    assert_eq!(requests.len(), 2);
    let etag = dataset.read().unwrap().etag();
    assert_eq!(requests[1].status, 304);
    assert_eq!(requests[1].header("if-none-match"), Some(etag.as_str()));
    assert!(requests[1].header("if-modified-since").is_some());
    assert_eq!(server.log.rows_served(), 0);
    assert_eq!(second.table_version, first.table_version);

    // Changed: the whole file again.
    dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    server.log.clear();
    let third = h.run().await.expect("changed file");
    assert_eq!((third.mode, third.rows_fetched), ("full", 7704));
    assert_eq!(server.log.requests()[1].status, 200);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // --full asks unconditionally.
    server.log.clear();
    let reload = h.run_full().await.expect("full download");
    assert_eq!(reload.mode, "full");
    assert_eq!(server.log.requests()[1].header("if-none-match"), None);

    // The same file by resource_id, through resource_show.
    let by_id = Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\nresource_id = \"{}\"",
            server.base_url(),
            CkanOptions::default().csv_resource_id
        ),
        name,
    );
    server.log.clear();
    let report = by_id.run().await.expect("download by resource id");
    assert_eq!(report.rows_fetched, 7704);
    assert_eq!(action(&server.log.requests()[0]), "resource_show");
    assert_same(&by_id.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn transient_faults_are_retried_to_the_same_table() {
    let faults = super::transient_faults();
    for fault in faults {
        // The DataStore: twice on the third page.
        let (dataset, server) = serve(Some(700), CkanOptions::default()).await;
        let h = harness(&server, 100, "");
        let want = expected(&dataset.read().unwrap());
        let report = super::retried_twice(&h, &server.faults, 3, &fault, &want, "page 3").await;
        assert_eq!(report.rows_fetched, 700, "{fault:?}");
        super::assert_waited_twice(&h, &fault);

        // A downloaded file: twice on the download. (A complete 200 whose body does not parse
        // is the publisher's file, reported with its line, not retried.)
        if fault == Fault::MalformedJson {
            continue;
        }
        let (dataset, server) = serve(Some(700), CkanOptions::default()).await;
        let h = Harness::new(
            &format!(
                "kind = \"ckan\"\nurl = \"{}\"\nresource_id = \"{}\"",
                server.base_url(),
                CkanOptions::default().csv_resource_id
            ),
            name,
        );
        let want = expected(&dataset.read().unwrap());
        let report =
            super::retried_twice(&h, &server.faults, 1, &fault, &want, "the download").await;
        assert_eq!(report.rows_fetched, 700, "{fault:?} on the download");
    }
}

#[tokio::test]
async fn failures_leave_the_table_and_digest_as_they_were() {
    let (dataset, server) = serve(Some(500), CkanOptions::default()).await;
    let h = harness(&server, 100, "");
    let good = h.run().await.expect("good run");
    assert_eq!(good.rows_fetched, 500);
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;
    let untouched = |what: &str, v: Option<u64>, d: Vec<u8>| {
        assert_eq!(v, version, "{what}: no table commit");
        assert!(d == digest, "{what}: the digest is untouched");
    };

    // A 5xx burst longer than the retry budget.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    super::push_502_burst(&server.faults);
    let err = h.run().await.unwrap_err().to_string();
    super::assert_gave_up_on_502(&err);
    untouched("5xx", h.table_version().await, h.digest_bytes().unwrap());

    // A Validation Error (HTTP 409) is never retried and says what is wrong.
    server.faults.clear();
    server.log.clear();
    server.faults.push(
        Fault::Status {
            code: 409,
            body: r#"{"help": "h", "success": false, "error": {"__type": "Validation Error", "sort": ["field _id not it table"]}}"#.into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("the DataStore refused the query for resource")
            && err.contains("sort: field _id not it table")
            && err.contains("not a column of the resource"),
        "{err}"
    );
    assert_eq!(server.log.data_requests().len(), 1, "a 409 is not retried");
    untouched("409", h.table_version().await, h.digest_bytes().unwrap());

    // success: false is an error even when HTTP says 200.
    server.log.clear();
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::Status {
            code: 200,
            body: r#"{"help": "h", "success": false, "error": {"__type": "Validation Error", "fields": ["field \"Received DtTm\" not in table"]}}"#.into(),
        },
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("field \"Received DtTm\" not in table") && err.contains("not a column"),
        "{err}"
    );
    assert_eq!(server.log.data_requests().len(), 2, "not retried");
    untouched(
        "success:false",
        h.table_version().await,
        h.digest_bytes().unwrap(),
    );

    // The DataStore does not know the resource.
    server.faults.push(
        Fault::Status {
            code: 404,
            body: r#"{"help": "h", "success": false, "error": {"__type": "Not Found Error", "message": "Not found: Resource \"x\" was not found."}}"#.into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("has no DataStore table") && err.contains("resource_id"),
        "{err}"
    );
    untouched("404", h.table_version().await, h.digest_bytes().unwrap());

    // Fewer rows than the total, on the first read and on the second: incomplete.
    let first_bad = server.faults.data_requests() + 3;
    let short = Fault::Status {
        code: 200,
        body: r#"{"help": "h", "success": true, "result": {"records": [], "total": 500, "limit": 100}}"#.into(),
    };
    server.faults.push_at(first_bad, short.clone());
    server.faults.push_at(first_bad + 3, short);
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("reported 500 rows but 200 arrived") && err.contains("offset 200"),
        "{err}"
    );
    untouched(
        "incomplete",
        h.table_version().await,
        h.digest_bytes().unwrap(),
    );

    // A server that ignores the order or the offset: page 2 starts before page 1 ended.
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::Status {
            code: 200,
            body: r#"{"help": "h", "success": true, "result": {"records": [{"_id": 1, "RowID": "x"}], "total": 500, "limit": 100}}"#.into(),
        },
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("starts at _id 1, not after the previous page's last _id 100"),
        "{err}"
    );
    untouched(
        "out of order",
        h.table_version().await,
        h.digest_bytes().unwrap(),
    );

    // A resource id the portal does not have (the pipeline edited).
    let pipeline = h.dir.path().join("pipelines/fire.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace(&CkanOptions::default().resource_id, "no-such-resource"),
    )
    .unwrap();
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("resource no-such-resource was not found") && err.contains("resource_id"),
        "{err}"
    );
    untouched(
        "unknown resource",
        h.table_version().await,
        h.digest_bytes().unwrap(),
    );
}

#[tokio::test]
async fn a_short_read_is_read_again_once() {
    let (dataset, server) = serve(Some(500), CkanOptions::default()).await;
    let h = harness(&server, 100, "");
    // Page 3 comes back empty although the total says 500: the runner reads again.
    server.faults.push_at(
        3,
        Fault::Status {
            code: 200,
            body: r#"{"help": "h", "success": true, "result": {"records": [], "total": 500, "limit": 100}}"#.into(),
        },
    );
    let report = h.run().await.expect("second read completes");
    assert_eq!(report.rows_fetched, 500);
    assert_eq!(server.log.data_requests().len(), 3 + 5);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // The total moving between pages (rows deleted mid-read) is caught the same way.
    server.log.clear();
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::Status {
            code: 200,
            body: r#"{"help": "h", "success": true, "result": {"records": [], "total": 499, "limit": 100}}"#.into(),
        },
    );
    let report = h.run_full().await.expect("read again");
    assert_eq!(report.rows_fetched, 500);
    assert_eq!(server.log.data_requests().len(), 2 + 5);
}

#[tokio::test]
async fn a_row_changed_during_a_full_load_is_read_on_the_next_run() {
    let (dataset, server) = serve(Some(1000), CkanOptions::default()).await;
    let h = harness(&server, 100, "");
    // Rows change after the second page is served: pages already read keep the old values,
    // but the resource's stamp moves, so the next run reads everything again.
    server.faults.push_at(
        2,
        Fault::MutateAfterServe {
            every: 7,
            at_epoch: BASE_EPOCH + 86_400,
        },
    );
    h.run().await.expect("full load");
    let stale = h.table().await;
    let now = expected(&dataset.read().unwrap());
    assert_ne!(
        stale, now,
        "rows of the first two pages were read before the change"
    );
    let second = h.run().await.expect("next run");
    assert_eq!(second.mode, "full");
    assert_same(&h.table().await, &now);
}

#[tokio::test]
async fn api_keys_come_from_the_environment() {
    let (_dataset, server) = serve(Some(300), CkanOptions::default()).await;

    let h = harness(
        &server,
        100,
        "api_key_env = \"GOALPOST_TEST_UNSET_CKAN_KEY\"\n",
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("GOALPOST_TEST_UNSET_CKAN_KEY is not set"),
        "{err}"
    );

    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("GOALPOST_TEST_CKAN_KEY", "ckan-token-1") };
    let h = harness(&server, 100, "api_key_env = \"GOALPOST_TEST_CKAN_KEY\"\n");
    let report = h.run().await.expect("with the key");
    assert_eq!(report.rows_fetched, 300);
    let requests = server.log.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("ckan-token-1")),
        "the metadata request and every page carry the token"
    );
}

#[tokio::test]
async fn a_recorded_run_replays_offline() {
    let (dataset, server) = serve(Some(400), CkanOptions::default()).await;
    let h = harness(&server, 100, "");
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

#[tokio::test]
async fn skip_unchanged_false_loads_everything_every_run() {
    let (_dataset, server) = serve(Some(300), CkanOptions::default()).await;
    let h = harness(&server, 100, "skip_unchanged = false\n");
    h.run().await.expect("first run");
    server.log.clear();
    let second = h.run().await.expect("second run");
    assert_eq!((second.mode, second.rows_fetched), ("full", 300));
    assert_eq!(server.log.data_requests().len(), 3);

    // For a file: no validators are sent, so the file comes whole.
    let h = Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\nresource_id = \"{}\"\nskip_unchanged = false",
            server.base_url(),
            CkanOptions::default().csv_resource_id
        ),
        name,
    );
    h.run().await.expect("first download");
    server.log.clear();
    let second = h.run().await.expect("second download");
    assert_eq!((second.mode, second.rows_fetched), ("full", 300));
    let file = &server.log.data_requests()[0];
    assert_eq!((file.status, file.header("if-none-match")), (200, None));
}

#[tokio::test]
async fn a_recorded_download_replays_offline() {
    let (dataset, server) = serve(Some(400), CkanOptions::default()).await;
    let h = Harness::new(
        &format!(
            "kind = \"ckan\"\nurl = \"{}\"\nresource_id = \"{}\"",
            server.base_url(),
            CkanOptions::default().csv_resource_id
        ),
        name,
    );
    let first = h.run().await.expect("recorded download");
    let unchanged = h.run().await.expect("recorded 304");
    assert_eq!(unchanged.mode, "unchanged");
    let want = expected(&dataset.read().unwrap());
    drop(server);
    for (run, mode) in [(&first, "full"), (&unchanged, "unchanged")] {
        let replay = h
            .replay(&run.run_id)
            .await
            .expect("replay without the server");
        assert_eq!(replay.mode, mode);
        assert_eq!(replay.fetch.requests, 0, "nothing went to the network");
    }
    assert_same(&h.table().await, &want);
}
