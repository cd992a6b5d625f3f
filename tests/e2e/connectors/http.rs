//! The `http` connector against a plain document server with ETag / Last-Modified.

use super::{Harness, assert_same, expected};
use goalpost_testkit::dataset::BASE_EPOCH;
use goalpost_testkit::{Dataset, Fault, SharedDataset, TestServer, files};

fn label(l: &str) -> String {
    l.to_string()
}

async fn serve(rows: Option<usize>) -> (SharedDataset, TestServer) {
    let full = Dataset::sf_fire();
    let dataset = match rows {
        Some(n) => full.subset(n),
        None => full,
    }
    .shared();
    let server = files::start(dataset.clone()).await;
    (dataset, server)
}

fn harness(server: &TestServer, document: &str, extra: &str) -> Harness {
    Harness::new(
        &format!(
            "kind = \"http\"\nurl = \"{}\"\n{extra}",
            server.url(&format!("/{document}"))
        ),
        label,
    )
}

#[tokio::test]
async fn an_unchanged_document_costs_one_304_and_no_work() {
    let (dataset, server) = serve(None).await;
    let h = harness(&server, "fire.csv", "");
    let first = h.run().await.expect("first run");
    assert_eq!((first.mode, first.rows_fetched), ("full", 7704));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    server.log.clear();
    let second = h.run().await.expect("second run");
    assert_eq!(second.mode, "unchanged");
    assert_eq!((second.rows_fetched, second.rows_written), (0, 0));
    assert_eq!(
        second.table_version, first.table_version,
        "no new table version"
    );
    let requests = server.log.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, 304);
    assert!(requests[0].header("if-none-match").is_some());

    // A changed document is read again in full.
    dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    let third = h.run().await.expect("third run");
    assert_eq!((third.mode, third.rows_fetched), ("full", 7704));
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // --full ignores the validators.
    server.log.clear();
    let forced = h.run_full().await.expect("forced run");
    assert_eq!(forced.rows_fetched, 7704);
    assert!(server.log.requests()[0].header("if-none-match").is_none());
}

#[tokio::test]
async fn every_document_format_loads_the_same_rows() {
    let (dataset, server) = serve(Some(300)).await;
    let want = expected(&dataset.read().unwrap());
    for (document, extra) in [
        ("fire.json", ""),
        ("wrapped.json", "records = \"result.records\""),
        ("fire.ndjson", ""),
        ("fire.geojson", ""),
        ("noext", ""),
    ] {
        let h = harness(&server, document, extra);
        let report = h.run().await.unwrap_or_else(|e| panic!("{document}: {e}"));
        assert_eq!(report.rows_fetched, 300, "{document}");
        assert_same(&h.table().await, &want);
    }
    // A wrong records path says what the document holds.
    let h = harness(&server, "wrapped.json", "records = \"result.rows\"");
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("has no \"result.rows\""), "{err}");
}

#[tokio::test]
async fn faults_recover_or_fail_cleanly() {
    let (dataset, server) = serve(Some(400)).await;
    let h = harness(&server, "fire.csv", "");
    server.faults.push(
        Fault::Status {
            code: 503,
            body: "busy".into(),
        },
        2,
    );
    server.faults.push(Fault::Truncate, 1);
    let report = h.run().await.expect("retried to success");
    assert_eq!(report.fetch.retries, 3);
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
    let version = h.table_version().await;
    let digest = h.digest_bytes().unwrap();

    // A complete response cut in half is not the network's fault: the cut last row is
    // quarantined, the half that arrived is stored, and the row_count check holds the
    // figures at their last good values.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    server.faults.push(Fault::MalformedJson, 1);
    let report = h.run().await.expect("stored, figures held");
    assert_eq!(report.rows_quarantined, 1, "{report:?}");
    let held = report.held.expect("held");
    assert!(
        held.starts_with("check \"row_count\" failed: the table fell from 400 to"),
        "{held}"
    );
    assert!(h.table_version().await > version);
    let before: serde_json::Value = serde_json::from_slice(&digest).unwrap();
    let after: serde_json::Value = serde_json::from_slice(&h.digest_bytes().unwrap()).unwrap();
    assert_eq!(
        after["pipelines"][0]["indicators"][0]["series"],
        before["pipelines"][0]["indicators"][0]["series"],
        "the figures keep their last good values"
    );
    assert_eq!(after["pipelines"][0]["held"]["reason"], "data quality");
}
